"""The shared steps of the generation benchmarks: capability check, generation stage, scoring, result.

A benchmark module (vist, visdial, coco_fid, cc3m_fid) only says which examples exist, how an example's
context is built, and what the reference is; this module does the rest identically for all of them, so
every model in a table is generated, scored and counted the same way.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from PIL import Image

from gill_eval.bench.data import PreparedDataset, decode_image
from gill_eval.bench.generation import (GenerationJob, limit_suffix, limited, plan_for, read_generations, read_provenance,
                                        run_generation)
from gill_eval.bench.pixels import generated_blocks
from gill_eval.bench.provenance import run_metadata
from gill_eval.bench.results import result_dir, write_result
from gill_eval.bench.scorers import SCORE_BATCH, Scorers
from gill_eval.console import info, make_progress
from gill_eval.errors import InputError
from gill_eval.metrics import fid as fidlib
from gill_eval.metrics import kid as kidlib
from gill_eval.metrics.clip_score import clip_score_prepared
from gill_eval.metrics.clip_similarity import cosine_rows
from gill_eval.metrics.inputs import blocks_of, ordered_map
from gill_eval.metrics.stats import aggregate, over_seeds
from gill_eval.models.base import ACCEPTS_IMAGES, GENERATE, Model
from gill_eval.store import ShardSpec, WorkPlan

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
    result.update(status="ok", protocol=job.protocol,
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


def _score_similarity(
    bench: GenerationBenchmark, plan: WorkPlan, opts: RunOptions, scorers: Scorers
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """CLIP similarity and LPIPS of each generated image against its reference, streamed in storage order in
    fixed chunks of ``SCORE_BATCH``: only one chunk of images is in memory (a full Table 1 context holds
    25,000 images)."""
    rows = list(read_generations(plan, columns=["example_id", "seed", "status", "error_message"]))
    values: dict[str, dict[tuple[str, int], float]] = {"clip_similarity": {}, "lpips": {}}
    ref_embeddings: dict[str, np.ndarray] = {}
    clip, lpips = scorers.clip, scorers.lpips

    def blocks() -> Iterator[tuple[list[dict[str, Any]], list[str]]]:
        """Chunks of successful rows in storage order, each with the references first seen in it (a reference
        is embedded once and reused for every seed); decided here, in order, not in the workers."""
        seen: set[str] = set()
        for chunk in blocks_of((r for r in read_generations(plan, columns=["example_id", "seed", "status", "image"])
                                if r["status"] == "success"), SCORE_BATCH):
            need = [e for e in dict.fromkeys(r["example_id"] for r in chunk) if e not in seen]
            seen.update(need)
            yield chunk, need

    def prepare(item: tuple[list[dict[str, Any]], list[str]]) -> tuple[list[dict[str, Any]], list[str], dict[str, Any]]:
        """In a worker thread: decode the chunk's images and references once, make every network's inputs."""
        chunk, need = item
        ids = [r["example_id"] for r in chunk]
        gen = [decode_image(r.pop("image"), f"{plan.out_dir} {r['example_id']}") for r in chunk]
        refs_raw = bench.references(ids)
        refs = [refs_raw[e] for e in ids]  # as stored: VIST's are GILL's 224 squash, VisDial's the originals
        return chunk, need, {"gen_clip": [clip.prepare(im) for im in gen],
                             "ref_clip": [clip.prepare(refs[ids.index(e)]) for e in need],
                             "gen_lpips": [lpips.prepare(im) for im in gen], "ref_lpips": [lpips.prepare(im) for im in refs]}

    with make_progress() as progress:
        task = progress.add_task(f"score {bench.name}", total=sum(r["status"] == "success" for r in rows))
        for chunk, need, inputs in ordered_map(prepare, blocks()):
            ids = [r["example_id"] for r in chunk]
            if need:
                ref_embeddings.update(zip(need, clip.embed_prepared(inputs["ref_clip"]), strict=True))
            keys = [(e, r["seed"]) for e, r in zip(ids, chunk, strict=True)]
            sims = cosine_rows(clip.embed_prepared(inputs["gen_clip"]), np.stack([ref_embeddings[e] for e in ids]))
            values["clip_similarity"].update(zip(keys, sims.tolist(), strict=True))
            values["lpips"].update(zip(keys, lpips.score_prepared(inputs["gen_lpips"], inputs["ref_lpips"]).tolist(),
                                       strict=True))
            progress.advance(task, len(chunk))
    scores = pd.concat([_metric_frame(metric, rows, vals) for metric, vals in values.items()], ignore_index=True)
    scores = scores.sort_values(["metric", "seed", "example_id"], ignore_index=True)
    metrics = {}
    for metric in values:
        sub = scores[(scores["metric"] == metric) & (scores["status"] == "success")]
        metrics[metric] = {"n_evaluated": int(len(sub)),
                           "aggregate": aggregate(sub[["example_id", "seed", "value"]]).as_dict() if len(sub) else None}
    return scores, metrics


def _metric_frame(metric: str, rows: list[dict[str, Any]], values: dict[tuple[str, int], float]) -> pd.DataFrame:
    """One score row per generated row: its value, or NaN with the generation's failure."""
    return pd.DataFrame({"example_id": [r["example_id"] for r in rows], "seed": [r["seed"] for r in rows],
                         "metric": metric, "value": [values.get((r["example_id"], r["seed"]), np.nan) for r in rows],
                         "status": [r["status"] for r in rows], "error_message": [r["error_message"] or "" for r in rows]})


def _score_fid(
    bench: GenerationBenchmark, plan: WorkPlan, opts: RunOptions, scorers: Scorers, result: dict
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One FID and one KID per seed (that seed's images of the examples generated under every seed, against
    the reference), then their mean, seed std and Student-t interval (docs/protocols.md, statistics); and
    each image's CLIPScore against its caption. KID and CLIPScore are extra columns (docs/protocols.md)."""
    from gill_eval.bench.fid_common import reference_features, reference_statistics

    net, weights_sha = scorers.inception
    reference, ref_meta = reference_statistics(bench, net, weights_sha, scorers.device)
    rows = list(read_generations(plan, columns=["example_id", "seed", "status", "error_message"]))
    features, clip_values = _generated_pass(bench, plan, scorers, rows)
    ok = [r for r in rows if r["status"] == "success"]  # features[i] belongs to ok[i]
    seeds_of: dict[str, set[int]] = {}
    for r in ok:
        seeds_of.setdefault(r["example_id"], set()).add(r["seed"])
    complete = {e for e, seeds in seeds_of.items() if seeds >= set(opts.seeds)}
    labels = [r["seed"] if r["example_id"] in complete and r["seed"] in opts.seeds else None for r in ok]
    n_evaluated = len(complete) * len(opts.seeds)
    metrics: dict[str, Any] = {"fid": {"n_evaluated": n_evaluated, "aggregate": None},
                               "kid": {"n_evaluated": n_evaluated, "aggregate": None}}
    if len(complete) >= 2:
        per_seed = dict(sorted((seed, fidlib.frechet_distance(stats, reference))
                               for seed, stats in fidlib.statistics_by_group(features, labels).items()))
        metrics["fid"]["aggregate"] = over_seeds(list(per_seed.values()), len(complete)).as_dict()
        metrics["fid"]["per_seed"] = {str(seed): value for seed, value in per_seed.items()}
        if len(complete) < fidlib.FEATURE_DIM:
            metrics["fid"]["warning"] = (f"only {len(complete)} generated images per seed (< {fidlib.FEATURE_DIM} "
                                         "feature dims): the covariance is rank-deficient and FID is biased upwards")
        metrics["kid"] = _kid_per_seed(features, labels, reference_features(bench, net, weights_sha, scorers.device),
                                       len(complete), n_evaluated)
    result["fid_reference"] = ref_meta
    scores = pd.DataFrame({"example_id": [r["example_id"] for r in rows], "seed": [r["seed"] for r in rows],
                           "metric": "generated", "value": [1.0 if r["status"] == "success" else np.nan for r in rows],
                           "status": [r["status"] for r in rows], "error_message": [r["error_message"] for r in rows]})
    clip = _metric_frame("clip_score", rows, clip_values)
    scores = pd.concat([scores, clip], ignore_index=True).sort_values(["metric", "seed", "example_id"], ignore_index=True)
    sub = clip[clip["status"] == "success"]
    metrics["clip_score"] = {"n_evaluated": int(len(sub)),
                             "aggregate": aggregate(sub[["example_id", "seed", "value"]]).as_dict() if len(sub) else None}
    return scores, metrics


def _kid_per_seed(features: np.ndarray, labels: list[int | None], reference: np.ndarray, n_examples: int,
                  n_evaluated: int) -> dict[str, Any]:
    """KID of each seed's generated set (mean and std over torch-fidelity's subsets), then over seeds."""
    per_seed = {}
    for seed in sorted({x for x in labels if x is not None}):
        rows = np.flatnonzero(np.array([x == seed for x in labels], dtype=bool))
        per_seed[seed] = kidlib.kid(np.asarray(features[rows]), reference)
    first = next(iter(per_seed.values()))
    out: dict[str, Any] = {"n_evaluated": n_evaluated,
                           "aggregate": {**over_seeds([k.mean for k in per_seed.values()], n_examples).as_dict(),
                                         "subset_std": float(np.mean([k.std for k in per_seed.values()]))},
                           "per_seed": {str(seed): k.as_dict() for seed, k in per_seed.items()},
                           "subsets": first.subsets, "subset_size": first.subset_size}
    if first.subset_size < kidlib.SUBSET_SIZE:
        out["warning"] = (f"KID subsets of {first.subset_size} images (fewer than torch-fidelity's "
                          f"{kidlib.SUBSET_SIZE} on one side): its spread is larger than at the usual size")
    return out


def _generated_pass(bench: GenerationBenchmark, plan: WorkPlan, scorers: Scorers,
                    rows: list[dict[str, Any]]) -> tuple[np.ndarray, dict[tuple[str, int], float]]:
    """One read of the generated images for every scorer that needs pixels: the Inception features of the
    successful rows in row order (cached beside the images; computed here unless cached) and each image's
    CLIPScore against the caption it was generated from. Worker threads decode each image once and make
    both networks' inputs ahead of them (``metrics.inputs``); blocks of ``fid_common.CHUNK`` rows are one
    Inception batch each and two CLIP chunks of ``SCORE_BATCH``, the batches scored before."""
    from gill_eval.bench.fid_common import CHUNK, cached_generated_features, generated_features_path, generated_features_writer

    net, weights_sha = scorers.inception
    path = generated_features_path(plan, rows, weights_sha)
    features = cached_generated_features(path, rows)
    captions: dict[str, str] = bench.captions  # type: ignore[attr-defined]  # caption benchmarks only
    prepares = [scorers.clip.prepare] + ([fidlib.fid_uint8] if features is None else [])
    values: dict[tuple[str, int], float] = {}
    with contextlib.ExitStack() as stack:
        write = None
        if features is None:
            write = stack.enter_context(generated_features_writer(path, rows, net, scorers.device))
        progress = stack.enter_context(make_progress())
        task = progress.add_task(f"score {bench.name} (CLIPScore" + (")" if write is None else ", Inception)"),
                                 total=sum(r["status"] == "success" for r in rows))
        for block, inputs in generated_blocks(plan, prepares, CHUNK):
            if write is not None:
                write(inputs[1])
            keys = [(r["example_id"], r["seed"]) for r in block]
            got = clip_score_prepared(scorers.clip, scorers.clip_text, inputs[0], [captions[e] for e, _ in keys])
            values.update(zip(keys, got.tolist(), strict=True))
            progress.advance(task, len(block))
    return (features if features is not None else np.load(path, mmap_mode="r")), values
