"""GLIDE's Gaussian diffusion: noise schedules, timestep respacing and the two sampling steps it uses.

* Schedules over 1000 steps: ``squaredcos_cap_v2`` (Nichol & Dhariwal's cosine alpha-bar,
  beta_t = min(1 - abar(t+1)/abar(t), 0.999), the base model's) and ``linear`` (Ho et al.'s 1e-4..0.02 scaled
  to the step count, the upsampler's).
* Respacing: a spec of comma-separated counts spreads that many steps evenly over equal sections of the
  1000 (rounded positions); ``ddimN`` takes the integer stride that gives N steps; ``fast27`` is
  ``10,10,3,2,2`` with the noisiest step 999 replaced by 997. The kept steps get betas
  1 - abar(kept_i)/abar(kept_{i-1}), and the network is called with the original step number.
* The learned-variance step (``p_sample``): the network's second three channels v in [-1, 1] interpolate
  the log-variance between the clipped posterior variance and beta; x0 is predicted from eps and clipped
  to [-1, 1]; the mean is the posterior mean; noise is added at every step but the last.
* The DDIM step (eta 0): x_{t-1} = sqrt(abar_prev) x0 + sqrt(1 - abar_prev) eps, eps re-derived from x0.

Per-step constants are computed in float64 and used as float32, as glide-text2im does.
"""

from __future__ import annotations

import math
import numpy as np
import torch

from gill_eval.errors import ConfigError

SCHEDULES = ("squaredcos_cap_v2", "linear")


def named_betas(name: str, steps: int) -> np.ndarray:
    """The betas of schedule ``name`` over ``steps`` diffusion steps (float64)."""
    if name == "linear":
        scale = 1000 / steps
        return np.linspace(scale * 0.0001, scale * 0.02, steps, dtype=np.float64)
    if name == "squaredcos_cap_v2":
        def alpha_bar(s: float) -> float:
            return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

        return np.array([min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), 0.999) for i in range(steps)])
    raise ConfigError(f"noise_schedule {name!r}: not one of {', '.join(SCHEDULES)}")


def _section_steps(total: int, counts: list[int]) -> set[int]:
    per, extra = divmod(total, len(counts))
    kept: set[int] = set()
    start = 0
    for i, count in enumerate(counts):
        size = per + (1 if i < extra else 0)
        if count > size:
            raise ConfigError(f"timestep respacing: a section of {size} steps cannot hold {count}")
        stride = 1 if count <= 1 else (size - 1) / (count - 1)
        position = 0.0
        for _ in range(count):  # a running sum and Python's round, as the package (same ties)
            kept.add(start + round(position))
            position += stride
        start += size
    return kept


def space_timesteps(total: int, spec: str) -> set[int]:
    """The original steps kept by respacing ``spec`` (e.g. ``100``, ``250``, ``fast27``, ``ddim50``,
    ``10,10,3,2,2``) out of ``total``; an empty spec keeps them all."""
    spec = str(spec).strip()
    if not spec:
        return set(range(total))
    if spec == "fast27":
        kept = _section_steps(total, [10, 10, 3, 2, 2])
        kept.remove(total - 1)
        kept.add(total - 3)
        return kept
    if spec.startswith("ddim"):
        want = _count(spec[4:], spec)
        for stride in range(1, total):
            if len(range(0, total, stride)) == want:
                return set(range(0, total, stride))
        raise ConfigError(f"timestep respacing {spec!r}: no integer stride gives exactly {want} of {total} steps")
    return _section_steps(total, [_count(part, spec) for part in spec.split(",")])


def _count(text: str, spec: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise ConfigError(f"timestep respacing {spec!r}: expected step counts like 100, 10,10,3,2,2, fast27 "
                          "or ddim50") from None
    if count < 1:
        raise ConfigError(f"timestep respacing {spec!r}: step counts must be at least 1")
    return count


class SpacedDiffusion:
    """A respaced schedule: ``betas`` of the kept steps (float64) and ``timestep_map`` (sampler index ->
    original step), with the per-step constants the two samplers read."""

    def __init__(self, betas: np.ndarray, timestep_map: tuple[int, ...]) -> None:
        self.betas = betas
        self.timestep_map = timestep_map
        abar = np.cumprod(1.0 - betas)
        abar_prev = np.append(1.0, abar[:-1])
        posterior_variance = betas * (1.0 - abar_prev) / (1.0 - abar)
        table = {
            "abar_prev": abar_prev,
            "sqrt_recip_abar": np.sqrt(1.0 / abar),
            "sqrt_recipm1_abar": np.sqrt(1.0 / abar - 1),
            # the posterior variance is 0 at the first step: its log is clipped to the second step's
            "min_log": np.log(np.append(posterior_variance[1], posterior_variance[1:])),
            "max_log": np.log(betas),
            "coef_x0": betas * np.sqrt(abar_prev) / (1.0 - abar),
            "coef_xt": (1.0 - abar_prev) * np.sqrt(1.0 - betas) / (1.0 - abar),
        }
        self._table = {name: torch.from_numpy(values).float() for name, values in table.items()}

    @classmethod
    def create(cls, schedule: str, steps: int, respacing: str) -> SpacedDiffusion:
        """``schedule`` over ``steps`` steps, keeping those of ``respacing``."""
        alphas_cumprod = np.cumprod(1.0 - named_betas(schedule, steps))
        kept = sorted(space_timesteps(steps, respacing))
        previous = np.concatenate([[1.0], alphas_cumprod[kept[:-1]]])
        return cls(betas=1 - alphas_cumprod[kept] / previous, timestep_map=tuple(kept))

    @property
    def num_timesteps(self) -> int:
        return len(self.betas)

    def _at(self, name: str, index: int, like: torch.Tensor) -> torch.Tensor:
        """The float32 constant ``name`` of sampler step ``index`` (a 0-d tensor on ``like``'s device)."""
        return self._table[name][index].to(like.device)

    def model_timesteps(self, index: int, batch: int, device: torch.device) -> torch.Tensor:
        """The original step number of sampler step ``index``, one per batch row (what the network reads)."""
        return torch.full((batch,), self.timestep_map[index], dtype=torch.long, device=device)

    def predict_x0(self, x: torch.Tensor, index: int, eps: torch.Tensor) -> torch.Tensor:
        """x0 = x / sqrt(abar) - eps sqrt(1/abar - 1), clipped to [-1, 1]."""
        x0 = self._at("sqrt_recip_abar", index, x) * x - self._at("sqrt_recipm1_abar", index, x) * eps
        return x0.clamp(-1, 1)

    def p_sample(self, x: torch.Tensor, index: int, model_out: torch.Tensor,
                 noise: torch.Tensor | None) -> torch.Tensor:
        """One step of the learned-variance sampler from ``model_out`` (eps | v); ``noise`` is ignored at
        the last step (index 0)."""
        eps, v = model_out.split(x.shape[1], dim=1)
        frac = (v + 1) / 2
        log_variance = frac * self._at("max_log", index, x) + (1 - frac) * self._at("min_log", index, x)
        x0 = self.predict_x0(x, index, eps)
        mean = self._at("coef_x0", index, x) * x0 + self._at("coef_xt", index, x) * x
        if index == 0 or noise is None:
            return mean
        return mean + torch.exp(0.5 * log_variance) * noise

    def ddim_sample(self, x: torch.Tensor, index: int, model_out: torch.Tensor) -> torch.Tensor:
        """One deterministic DDIM step (eta 0) from ``model_out`` (its variance channels unused)."""
        eps = model_out[:, : x.shape[1]]
        x0 = self.predict_x0(x, index, eps)
        eps = (self._at("sqrt_recip_abar", index, x) * x - x0) / self._at("sqrt_recipm1_abar", index, x)
        abar_prev = self._at("abar_prev", index, x)
        return x0 * torch.sqrt(abar_prev) + torch.sqrt(1 - abar_prev) * eps
