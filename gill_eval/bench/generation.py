"""Generation as a resumable, shardable stage.

Output folder: ``<data_root>/generations/<benchmark>/<model fingerprint hash>/<context>-<data hash>/``.
Units of work are (seed, block of ``BLOCK`` examples in example-id order); each writes one Parquet shard
of rows keyed by (example id, seed) with the PNG bytes and per-row provenance, then its done marker.
The unit layout depends only on the example set and the seeds, never on the batch size or the number of
workers, and every image is seeded by ``example_seed(seed, example_id)``: so a rerun generates only
the missing units, and ``--shard i/N`` / torchrun workers produce the same images as one process.

A model that raises on an example gets a ``failed`` row with the error (a batch that fails is retried
one example at a time to isolate the culprit): coverage is reported, never hidden. An image with NaN/inf
pixels fails alone without a retry (``models.pixels.NonFiniteImageError`` carries the batch's other images).
"""

from __future__ import annotations

import dataclasses
import json
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from gill_eval.console import info, make_progress
from gill_eval.errors import ConfigError, InputError
from gill_eval.models.base import CapabilityError, Context, Model, example_seed
from gill_eval.models.pixels import NonFiniteImageError
from gill_eval.store import ShardSpec, UnitOfWork, WorkPlan, atomic_write_json, data_root, iter_rows, write_shard
from gill_eval.store.names import check_name

BLOCK = 8
SCHEMA = pa.schema([
    ("example_id", pa.string()), ("seed", pa.int64()), ("example_seed", pa.int64()), ("status", pa.string()),
    ("error_message", pa.string()), ("image", pa.binary()), ("width", pa.int32()), ("height", pa.int32()),
    ("truncated", pa.bool_()), ("model_fingerprint", pa.string()), ("context", pa.string()),
])


@dataclass
class GenerationJob:
    """What to generate: the examples of one benchmark under one context, and how to build their inputs."""

    benchmark: str
    context: str
    example_ids: list[str]
    build_contexts: Callable[[list[str]], list[Context]] = field(repr=False)
    data_hash: str
    protocol: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(set(self.example_ids)) != len(self.example_ids):
            raise ConfigError(f"{self.benchmark}: duplicate example ids")
        self.example_ids = sorted(self.example_ids)


def limit_suffix(limit: int | None) -> str:
    """Folder-name suffix of a partial ``--limit N`` run (its generations and results never mix with full ones)."""
    return f"-limit{limit}" if limit else ""


def limited(job: GenerationJob, limit: int | None) -> GenerationJob:
    """``job`` on its first ``limit`` examples in its fixed (sorted id) order; ``limit`` is recorded in the protocol."""
    if not limit:
        return job
    if limit < 1:
        raise ConfigError(f"--limit {limit}: must be at least 1")
    return dataclasses.replace(job, example_ids=job.example_ids[:limit], protocol={**job.protocol, "limit": limit})


def generation_dir(job: GenerationJob, model: Model) -> Path:
    context = check_name("context", job.context, f"benchmark {job.benchmark}")
    return (data_root() / "generations" / check_name("benchmark", job.benchmark, "benchmark registry")
            / model.fingerprint_hash() / f"{context}-{job.data_hash[:12]}{limit_suffix(job.protocol.get('limit'))}")


def plan_for(job: GenerationJob, out_dir: Path, seeds: Sequence[int]) -> WorkPlan:
    """The units of ``job`` for ``seeds``; the layout depends only on the example ids and the seeds."""
    units = []
    for seed in seeds:
        for block, start in enumerate(range(0, len(job.example_ids), BLOCK)):
            units.append(UnitOfWork(f"seed{seed}-block{block:05d}", len(units),
                                    {"seed": seed, "start": start, "run_seeds": list(seeds)}))
    return WorkPlan(out_dir, units)


def _write_provenance(out_dir: Path, job: GenerationJob, model: Model) -> None:
    path = out_dir / "provenance.json"
    record = {"benchmark": job.benchmark, "context": job.context, "data_hash": job.data_hash,
              "model": model.fingerprint(), "model_fingerprint_hash": model.fingerprint_hash(), "protocol": job.protocol}
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as exc:  # the folder name already keys model and data: rewrite it
            info(f"[yellow]{path}: unreadable ({type(exc).__name__}); writing it again from this run[/]")
        else:
            if old != json.loads(json.dumps(record, default=str)):
                raise ConfigError(f"{path}: differs from this run's model/protocol; remove the folder to regenerate")
            return
    atomic_write_json(path, record)


def read_provenance(gen_dir: Path) -> dict[str, Any]:
    """A generation folder's ``provenance.json`` (benchmark, context, data hash, model, protocol)."""
    path = Path(gen_dir) / "provenance.json"
    if not path.is_file():
        raise InputError(f"{gen_dir}: no provenance.json; not a gill-eval generation folder")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(f"{path}: unreadable ({exc}); rerun the bench command that made {gen_dir} to rewrite it") from None


def _generate_rows(model: Model, contexts: list[Context], seeds: list[int]) -> list[tuple[str, str, Any, bool]]:
    """(status, error, image, truncated) per context; a failing batch is retried one by one, except that
    NaN/inf images fail alone (``NonFiniteImageError`` holds the batch's finite images)."""
    try:
        error = "the model returned no image"
        try:
            images = model.generate(contexts, seeds)
        except NonFiniteImageError as exc:
            images, error = exc.images, f"{type(exc).__name__}: {exc.reason}"
        if len(images) != len(contexts):
            raise RuntimeError(f"returned {len(images)} images for {len(contexts)} contexts")
        truncated = list(model.last_run_stats.get("truncated", [False] * len(contexts)))
        return [("success", "", im, bool(t)) if im is not None else ("failed", error, None, bool(t))
                for im, t in zip(images, truncated, strict=True)]
    except CapabilityError:
        raise
    except Exception as exc:  # noqa: BLE001 - recorded per example and reported as coverage
        if len(contexts) > 1:
            return [row for c, s in zip(contexts, seeds, strict=True) for row in _generate_rows(model, [c], [s])]
        return [("failed", f"{type(exc).__name__}: {exc}", None, False)]


def run_generation(
    model: Model, job: GenerationJob, seeds: Sequence[int], spec: ShardSpec | None = None, batch_size: int = 8
) -> WorkPlan:
    """Generate the pending units owned by ``spec``; return the plan (``plan.all_done()`` tells if complete).

    Units another run on the same root is generating are left to it (per-unit claims, docs/reliability.md).
    """
    plan = plan_for(job, generation_dir(job, model), seeds)
    _write_provenance(plan.out_dir, job, model)
    pending = plan.pending(spec)
    fp = model.fingerprint_hash()
    if pending:
        info(f"{job.benchmark} {job.context}: generating {len(pending)} of {len(plan.units)} units with {model.name}")
    busy = 0
    with make_progress() as progress:
        task = progress.add_task(f"generate {job.benchmark} {job.context}", total=len(pending))
        for unit in pending:
            if not plan.claim(unit):  # another run on this root holds or finished it: split, never redo
                busy += 1
                progress.advance(task)
                continue
            try:
                _generate_unit(model, job, plan, unit, spec, batch_size, fp)
            finally:
                plan.release(unit)
            progress.advance(task)
    if pending:
        info(f"{job.benchmark} {job.context}: generated {len(pending) - busy} unit(s)"
             + (f"; {busy} left to another run on this data root" if busy else ""))
    return plan


def _generate_unit(model: Model, job: GenerationJob, plan: WorkPlan, unit: UnitOfWork, spec: ShardSpec | None,
                   batch_size: int, fp: str) -> None:
    """Generate one unit's images and write its shard, then its done marker."""
    from gill_eval.bench.data import encode_png

    seed, start = unit.payload["seed"], unit.payload["start"]
    ids = job.example_ids[start : start + BLOCK]
    ex_seeds = [example_seed(seed, eid) for eid in ids]
    contexts = job.build_contexts(ids)
    rows: list[dict[str, Any]] = []
    for b in range(0, len(ids), batch_size):
        outs = _generate_rows(model, contexts[b : b + batch_size], ex_seeds[b : b + batch_size])
        for eid, es, (status, err, im, trunc) in zip(ids[b : b + batch_size], ex_seeds[b : b + batch_size], outs, strict=True):
            rows.append({"example_id": eid, "seed": seed, "example_seed": es, "status": status,
                         "error_message": err, "image": encode_png(im) if im is not None else None,
                         "width": im.width if im is not None else None,
                         "height": im.height if im is not None else None,
                         "truncated": trunc, "model_fingerprint": fp, "context": job.context})
    path = write_shard(pa.Table.from_pylist(rows, schema=SCHEMA), plan.out_dir / f"{unit.uid}.parquet")
    plan.mark_done(unit, {"rows": len(rows), "failed": sum(r["status"] != "success" for r in rows),
                          "batch_size": batch_size, "worker": str(spec or ShardSpec()), "host": socket.gethostname(),
                          "run_seeds": unit.payload["run_seeds"]},
                   [path])


def read_generations(plan: WorkPlan, columns: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Rows of the done units of ``plan`` in unit order (seed, then example id)."""
    for unit in plan.units:
        if plan.is_done(unit):
            yield from iter_rows([plan.out_dir / f"{unit.uid}.parquet"], columns=columns)
