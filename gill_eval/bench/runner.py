"""The shared steps of the generation benchmarks: capability check, generation stage, scoring, result.

A benchmark module (vist, visdial, coco_fid, cc3m_fid) only says which examples exist, how an example's
context is built, and what the reference is; this module does the rest identically for all of them, so
every model in a table is generated, scored and counted the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from PIL import Image

from gill_eval.bench.data import PreparedDataset, decode_image
from gill_eval.bench.generation import (GenerationJob, limit_suffix, limited, plan_for, read_generations, read_provenance,
                                        run_generation)
from gill_eval.bench.provenance import run_metadata
from gill_eval.bench.registry import find as find_benchmark
from gill_eval.bench.results import result_dir, write_result
from gill_eval.bench.scorers import SCORE_BATCH, Scorers
from gill_eval.console import info, make_progress
from gill_eval.errors import InputError
from gill_eval.metrics import fid as fidlib
from gill_eval.metrics.clip_similarity import cosine_rows
from gill_eval.metrics.stats import aggregate, over_seeds
from gill_eval.models.base import ACCEPTS_IMAGES, GENERATE, Model
from gill_eval.store import ShardSpec, WorkPlan

REFERENCE_PROTOCOLS = ("gill", "original")


class GenerationBenchmark(Protocol):
    """What a benchmark module provides."""

    name: str
    table: str
    kind: str  # "similarity" | "fid"
    dataset: PreparedDataset

    def job(self, context: str) -> GenerationJob: ...
    def needs_images(self, context: str) -> bool: ...
    def coverage(self) -> dict[str, Any]: ...
    def references(self, example_ids: Sequence[str]) -> dict[str, Image.Image]: ...


@dataclass(frozen=True)
class RunOptions:
    """How to run (none of these change a score)."""

    seeds: tuple[int, ...] = (0,)
    shard: ShardSpec | None = None
    batch_size: int = 8
    reference_protocol: str = "gill"
    limit: int | None = None  # --limit N: the first N examples only (a partial run, kept apart in reports)


def _model_block(model: Model, label: str | None) -> dict[str, Any]:
    return {"name": model.name, "label": label or model.name, "fingerprint": model.fingerprint(),
            "fingerprint_hash": model.fingerprint_hash()}


def _base_result(bench: GenerationBenchmark, context: str, model_block: dict, opts: RunOptions, scorers: Scorers) -> dict:
    return {"benchmark": bench.name, "table": bench.table, "context": context, "model": model_block,
            "seeds": list(opts.seeds), "data": {"dataset": bench.dataset.name, "manifest_hash": bench.dataset.content_hash,
                                                **bench.coverage()},
            "scorers": scorers.spec.as_dict(), "meaningless": scorers.spec.meaningless, "run": run_metadata(),
            "limit": opts.limit}


def unsupported_reason(model: Model, bench: GenerationBenchmark, context: str) -> str | None:
    """Why ``model`` cannot run ``context`` (shown as "-" with this reason), or None."""
    if not model.can(GENERATE):
        return f"{model.name} does not generate images"
    if bench.needs_images(context) and not model.can(ACCEPTS_IMAGES):
        return f"{model.name} takes text only; context {context} holds images"
    return None


def run_benchmark(
    bench: GenerationBenchmark, model: Model, context: str, opts: RunOptions, scorers: Scorers, label: str | None = None,
    score: bool = True,
) -> dict[str, Any] | None:
    """Generate what is missing, then score if every unit (all workers) is done and ``score`` (False: a
    torchrun rank that leaves scoring to rank 0). Returns the result or None."""
    block = _model_block(model, label)
    reason = unsupported_reason(model, bench, context)
    if reason is not None:
        result = {**_base_result(bench, context, block, opts, scorers), "status": "unsupported", "reason": reason,
                  "n_expected": len(limited(bench.job(context), opts.limit).example_ids) * len(opts.seeds)}
        folder = result_dir(bench.name, block["fingerprint_hash"], context + limit_suffix(opts.limit), scorers.spec.as_dict())
        write_result(folder, result, None)
        info(f"{bench.name} {context}: {reason} (reported as '-')")
        return {**result, "_dir": str(folder)}
    job = limited(bench.job(context), opts.limit)
    plan = run_generation(model, job, opts.seeds, opts.shard, opts.batch_size)
    if not score:
        return None
    if not plan.all_done():
        left = sum(not plan.is_done(u) for u in plan.units)
        info(f"{bench.name} {context}: {left} units still pending in other workers; "
             f"score with `gill-eval bench score {plan.out_dir}` once they finish")
        return None
    return score_plan(bench, job, plan, block, opts, scorers)


def score_generation_dir(
    gen_dir: Path, make_bench: Callable[[str, int | None], GenerationBenchmark], opts: RunOptions, scorers: Scorers, label: str | None = None
) -> dict[str, Any]:
    """Score an existing generation folder again (no model needed; its provenance says what it holds)."""
    prov = read_provenance(gen_dir)
    bench = make_bench(prov["benchmark"], prov.get("protocol", {}).get("num"))  # FID runs record --num
    limit = prov.get("protocol", {}).get("limit")  # a partial run stays partial when scored again
    job, opts = limited(bench.job(prov["context"]), limit), dataclasses.replace(opts, limit=limit)
    if job.data_hash != prov["data_hash"]:
        raise InputError(f"{gen_dir}: generated from another version of dataset {bench.dataset.name}")
    plan = plan_for(job, Path(gen_dir), opts.seeds)
    if not plan.all_done():
        missing = sum(not plan.is_done(u) for u in plan.units)
        raise InputError(f"{gen_dir}: {missing} of {len(plan.units)} units not generated for seeds {list(opts.seeds)}")
    block = {"name": prov["model"]["name"], "label": label or prov["model"]["name"], "fingerprint": prov["model"],
             "fingerprint_hash": prov["model_fingerprint_hash"]}
    return score_plan(bench, job, plan, block, opts, scorers)


def score_plan(
    bench: GenerationBenchmark, job: GenerationJob, plan: WorkPlan, block: dict, opts: RunOptions, scorers: Scorers
) -> dict[str, Any]:
    _check_generated_rows(job, plan, opts)
    result = _base_result(bench, job.context, block, opts, scorers)
    result.update(status="ok", protocol={**job.protocol, "reference": opts.reference_protocol},
                  generation={"dir": str(plan.out_dir), "units": len(plan.units)})
    if bench.kind == "similarity":
        scores, metrics = _score_similarity(bench, plan, opts, scorers)
    else:
        scores, metrics = _score_fid(bench, plan, opts, scorers, result)
    result["n_expected"] = len(job.example_ids) * len(opts.seeds)
    result["metrics"] = metrics
    gen = scores.drop_duplicates(["example_id", "seed"])
    failed = gen[gen["status"] != "success"]
    result["failures"] = {"count": int(len(failed)),
                          "first_error": None if failed.empty else str(failed.iloc[0]["error_message"])}
    result["provenance_scorers"] = scorers.provenance
    folder = result_dir(bench.name, block["fingerprint_hash"], job.context + limit_suffix(opts.limit), scorers.spec.as_dict())
    write_result(folder, result, scores)
    result["_dir"] = str(folder)
    info(f"{bench.name} {job.context} [{block['label']}]: " + ", ".join(
        f"{m} {v['aggregate']['mean']:.4f} (n {v['n_evaluated']}/{result['n_expected']})" if v.get("aggregate") else f"{m} -"
        for m, v in metrics.items()))
    return result


def _check_generated_rows(job: GenerationJob, plan: WorkPlan, opts: RunOptions) -> None:
    """The generation folder must hold exactly one row per (example, seed) of this job: n evaluated can
    never exceed n expected (docs/reliability.md)."""
    want = {(eid, seed) for seed in opts.seeds for eid in job.example_ids}
    got = [(r["example_id"], r["seed"]) for r in read_generations(plan, columns=["example_id", "seed"])]
    if len(got) != len(want) or set(got) != want:
        raise InputError(f"{plan.out_dir}: holds {len(got)} generated rows, this job expects {len(want)} "
                         "(the dataset or the folder changed); remove the folder to regenerate")


def _prepare_reference(image: Image.Image, protocol: str, benchmark: str) -> Image.Image:
    # Under --reference gill a benchmark's declared ``reference_size`` applies: VIST's 224 (GILL's squashed
    # downloads, stored exactly by `prepare vist`, so the identity for them); VisDial declares none, as it was
    # scored against the original VisualDialog_val2018 JPEGs (docs/protocols.md).
    spec = find_benchmark(benchmark)
    size = spec.reference_size if spec is not None else None
    if protocol == "gill" and size:
        return image.resize((size, size), Image.Resampling.BICUBIC)
    return image


def _score_similarity(
    bench: GenerationBenchmark, plan: WorkPlan, opts: RunOptions, scorers: Scorers
) -> tuple[pd.DataFrame, dict[str, Any]]:
    rows = list(read_generations(plan, columns=["example_id", "seed", "status", "error_message", "image"]))
    rows.sort(key=lambda r: (r["seed"], r["example_id"]))
    ok = [r for r in rows if r["status"] == "success"]
    values: dict[str, list[float]] = {"clip_similarity": [], "lpips": []}
    ref_embeddings: dict[str, np.ndarray] = {}
    with make_progress() as progress:
        task = progress.add_task(f"score {bench.name}", total=len(ok))
        for start in range(0, len(ok), SCORE_BATCH):
            chunk = ok[start : start + SCORE_BATCH]
            gen = [decode_image(r["image"], f"{plan.out_dir} {r['example_id']}") for r in chunk]
            refs_raw = bench.references([r["example_id"] for r in chunk])
            refs = [_prepare_reference(refs_raw[r["example_id"]], opts.reference_protocol, bench.name) for r in chunk]
            g = scorers.clip.embed(gen)
            need = [r["example_id"] for r in chunk if r["example_id"] not in ref_embeddings]
            if need:  # a reference is embedded once and reused for every seed
                uniq = list(dict.fromkeys(need))
                emb = scorers.clip.embed([refs[[r["example_id"] for r in chunk].index(e)] for e in uniq])
                ref_embeddings.update(zip(uniq, emb, strict=True))
            r_emb = np.stack([ref_embeddings[r["example_id"]] for r in chunk])
            values["clip_similarity"].extend(cosine_rows(g, r_emb).tolist())
            values["lpips"].extend(scorers.lpips.score(gen, refs).tolist())
            progress.advance(task, len(chunk))
    frames = []
    for metric, vals in values.items():
        good = pd.DataFrame({"example_id": [r["example_id"] for r in ok], "seed": [r["seed"] for r in ok],
                             "metric": metric, "value": vals, "status": "success", "error_message": ""})
        bad = pd.DataFrame({"example_id": [r["example_id"] for r in rows if r["status"] != "success"],
                            "seed": [r["seed"] for r in rows if r["status"] != "success"], "metric": metric,
                            "value": np.nan, "status": [r["status"] for r in rows if r["status"] != "success"],
                            "error_message": [r["error_message"] for r in rows if r["status"] != "success"]})
        frames.append(pd.concat([good, bad], ignore_index=True) if not bad.empty else good)
    scores = pd.concat(frames, ignore_index=True).sort_values(["metric", "seed", "example_id"], ignore_index=True)
    metrics = {}
    for metric in values:
        sub = scores[(scores["metric"] == metric) & (scores["status"] == "success")]
        metrics[metric] = {"n_evaluated": int(len(sub)),
                           "aggregate": aggregate(sub[["example_id", "seed", "value"]]).as_dict() if len(sub) else None}
    return scores, metrics


def _score_fid(
    bench: GenerationBenchmark, plan: WorkPlan, opts: RunOptions, scorers: Scorers, result: dict
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One FID per seed (that seed's images of the examples generated under every seed, against the
    reference), then their mean, seed std and Student-t interval (docs/protocols.md, statistics)."""
    from gill_eval.bench.fid_common import generated_features, reference_statistics

    net, weights_sha = scorers.inception
    reference, ref_meta = reference_statistics(bench, net, weights_sha, scorers.device)
    rows, features = generated_features(plan, net, weights_sha, scorers.device)
    ok = [r for r in rows if r["status"] == "success"]  # features[i] belongs to ok[i]
    seeds_of: dict[str, set[int]] = {}
    for r in ok:
        seeds_of.setdefault(r["example_id"], set()).add(r["seed"])
    complete = {e for e, seeds in seeds_of.items() if seeds >= set(opts.seeds)}
    labels = [r["seed"] if r["example_id"] in complete and r["seed"] in opts.seeds else None for r in ok]
    metrics: dict[str, Any] = {"fid": {"n_evaluated": len(complete) * len(opts.seeds), "aggregate": None}}
    if len(complete) >= 2:
        per_seed = dict(sorted((seed, fidlib.frechet_distance(stats, reference))
                               for seed, stats in fidlib.statistics_by_group(features, labels).items()))
        metrics["fid"]["aggregate"] = over_seeds(list(per_seed.values()), len(complete)).as_dict()
        metrics["fid"]["per_seed"] = {str(seed): value for seed, value in per_seed.items()}
        if len(complete) < fidlib.FEATURE_DIM:
            metrics["fid"]["warning"] = (f"only {len(complete)} generated images per seed (< {fidlib.FEATURE_DIM} "
                                         "feature dims): the covariance is rank-deficient and FID is biased upwards")
    result["fid_reference"] = ref_meta
    scores = pd.DataFrame({"example_id": [r["example_id"] for r in rows], "seed": [r["seed"] for r in rows],
                           "metric": "generated", "value": [1.0 if r["status"] == "success" else np.nan for r in rows],
                           "status": [r["status"] for r in rows], "error_message": [r["error_message"] for r in rows]})
    return scores.sort_values(["seed", "example_id"], ignore_index=True), metrics
