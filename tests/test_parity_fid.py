"""FID protocol parity: the paper's FID sampler for every SD-based model, and an honest interval over seeds.

Oracles: the sampler is GILL's Table 8 caption (classifier-free guidance 3.0, 250 DDIM steps), written here
as literals; the expected FID of two Gaussians is the closed form, computed with ``scipy.linalg.sqrtm``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import linalg

from gill_eval.bench.api import model_options_for
from gill_eval.metrics import fid, stats
from gill_eval.models.registry import build_options, load_model, model_class

PAPER_FID_SAMPLER = (3.0, 250, "ddim")  # GILL Table 8: guidance 3.0, 250 DDIM steps
GILL_GENERATION_SAMPLER = (7.5, 50, "pndm")  # GILL's generation defaults (Tables 1-2)


def _sampler(benchmark: str, model: str, given: dict | None = None) -> tuple[float, int, str]:
    options = build_options(model_class(model), model_options_for(benchmark, model, given or {}))
    return options.guidance, options.steps, options.scheduler


@pytest.mark.parametrize("benchmark", ["coco-fid", "cc3m-fid"])
def test_fid_benchmarks_give_gill_and_sd_the_papers_fid_sampler(benchmark: str) -> None:
    samplers = {model: _sampler(benchmark, model) for model in ("sd", "tiny-sd", "gill", "tiny-gill")}
    assert set(samplers.values()) == {PAPER_FID_SAMPLER}, samplers
    # an explicit preset or step count is the user's recorded choice, not overridden
    assert _sampler(benchmark, "gill", {"preset": "gill"}) == GILL_GENERATION_SAMPLER
    assert _sampler(benchmark, "tiny-gill", {"steps": 2}) == (3.0, 2, "ddim")
    # GLIDE's images do not come from SD: its options are left alone
    assert model_options_for(benchmark, "glide", {}) == {}


def test_generation_benchmarks_keep_gills_own_sampler() -> None:
    for model in ("sd", "gill"):
        assert _sampler("vist", model) == GILL_GENERATION_SAMPLER
        assert _sampler("visdial", model) == GILL_GENERATION_SAMPLER


@pytest.fixture(scope="module")
def tiny_gill_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gill_eval.models.gill.tiny import tiny_gill_dir

    return tiny_gill_dir(root=tmp_path_factory.mktemp("tiny-gill"))


def test_the_sd_pipelines_of_tiny_gill_and_tiny_sd_run_the_same_fid_sampler(tiny_gill_folder: Path) -> None:
    """What reaches diffusers: the pipeline's scheduler (class and config) and the call's guidance and steps."""
    gill = load_model("tiny-gill", model_options_for("coco-fid", "tiny-gill",
                                                     {"checkpoint": str(tiny_gill_folder), "device": "cpu"}))
    sd = load_model("tiny-sd", model_options_for("coco-fid", "tiny-sd", {"device": "cpu"}))
    gill_pipe = gill.gill.sd_pipe
    assert type(gill_pipe.scheduler).__name__ == type(sd.pipe.scheduler).__name__ == "DDIMScheduler"
    assert dict(gill_pipe.scheduler.config) == dict(sd.pipe.scheduler.config)
    settings = gill.sd_settings()
    kwargs = sd.pipeline_kwargs()
    assert (settings.guidance, settings.steps) == (kwargs["guidance_scale"], kwargs["num_inference_steps"]) == (3.0, 250)


# ------------------------------------------------------------------------------ the interval over seeds


def _closed_form_fid(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    root = linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * np.real(root)))


def _population(dim: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    a = rng.normal(size=(dim, dim))
    return rng.normal(size=dim), a @ a.T / dim + 0.5 * np.eye(dim)


def test_seed_interval_contains_the_estimate_and_covers_the_expected_fid_at_its_nominal_rate() -> None:
    """Generated features: k seeds of n draws from one Gaussian; the reference: another Gaussian's population
    statistics. Over repeated draws, the Student-t interval over per-seed FIDs covers the closed-form FID
    at about its nominal rate, at two levels (the features' finite-n bias is far inside the interval here)."""
    rng = np.random.default_rng(20260)
    dim, n, seeds, draws = 3, 2000, 5, 300
    mu_g, sigma_g = _population(dim, rng)
    mu_r, sigma_r = _population(dim, rng)
    reference = {"mu": mu_r, "sigma": sigma_r}
    expected = _closed_form_fid(mu_g, sigma_g, mu_r, sigma_r)
    assert expected > 1.0
    chol = np.linalg.cholesky(sigma_g)
    labels = [s for s in range(seeds) for _ in range(n)]
    covered = {0.95: 0, 0.80: 0}
    for _ in range(draws):
        features = mu_g + rng.normal(size=(seeds * n, dim)) @ chol.T
        per_seed = [fid.frechet_distance(st, reference) for _, st in sorted(fid.statistics_by_group(features, labels).items())]
        for level in covered:
            agg = stats.over_seeds(per_seed, n_examples=n, level=level)
            assert agg.ci_low <= agg.mean <= agg.ci_high and agg.n_seeds == seeds
            covered[level] += agg.ci_low <= expected <= agg.ci_high
    rate95, rate80 = covered[0.95] / draws, covered[0.80] / draws
    # binomial sd over 300 draws: 0.013 at 95%, 0.023 at 80%
    assert 0.91 <= rate95 <= 0.99, rate95
    assert 0.73 <= rate80 <= 0.87, rate80


def test_resampling_images_with_replacement_would_not_contain_fid() -> None:
    """Why the interval is over seeds: a resample with replacement repeats about 37% of the images, which
    inflates FID (here 3.4 -> 5.7..6.5), so its percentile interval misses the estimate it should describe;
    independent seeds do not (the estimate lies inside their interval)."""
    rng = np.random.default_rng(7)
    dim, n = 64, 500
    mu_g, sigma_g = _population(dim, rng)
    reference = {"mu": mu_g + 0.1, "sigma": sigma_g}
    chol = np.linalg.cholesky(sigma_g)
    features = mu_g + rng.normal(size=(n, dim)) @ chol.T
    point = fid.frechet_distance(_stats(features), reference)
    resampled = [fid.frechet_distance(_stats(features[rng.integers(0, n, n)]), reference) for _ in range(50)]
    assert np.percentile(resampled, 2.5) > point  # biased: the "interval" misses its own estimate
    others = [point] + [fid.frechet_distance(_stats(mu_g + rng.normal(size=(n, dim)) @ chol.T), reference)
                        for _ in range(4)]
    agg = stats.over_seeds(others, n_examples=n)
    assert agg.ci_low <= point <= agg.ci_high


def _stats(features: np.ndarray) -> dict[str, np.ndarray]:
    running = fid.RunningStats(features.shape[1])
    running.update(features)
    return running.statistics()
