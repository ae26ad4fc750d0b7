"""The feature-stage loop shared by ``features clip`` and ``features sd-text``.

One unit of work per input shard, one output shard per unit. The loop: plan the units and pick this
worker's pending ones (``--shard i/N`` combined with torchrun/accelerate ranks), stream their batches
through the DataLoader, run the network, and hand the results to the background writer, which renames
each shard into place and then marks its unit done. A rerun skips done units, so a killed run resumes
and every key ends up in exactly one shard. The manifest is written when every unit (all workers) is done.

The model runs one batch ahead of the device-to-host copy: each batch's output is copied into pinned
host memory asynchronously and the writer thread waits for that copy, so the GPU never waits for disk.
"""

from __future__ import annotations

import json
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from gill_eval.console import info, make_progress
from gill_eval.datasets.catalog import require_prepared
from gill_eval.errors import ConfigError, InputError
from gill_eval.features.loader import PrepareFn, Prepared, ShardBatches, batches_in, ordered_batches
from gill_eval.features.writer import BackgroundWriter, Format, output_path, remove_stale_temporaries
from gill_eval.store import (Manifest, ShardSpec, UnitOfWork, WorkPlan, atomic_write_json,
                             list_shards, read_manifest, resolve_shard_spec, verify_manifest, write_manifest)
from gill_eval.store.features import CONFIG_NAME, feature_dir
from gill_eval.store.work import distributed_barrier, distributed_rank


class FeatureStage(ABC):
    """What differs between the feature stages; the runner does everything else."""

    kind: str  # output folder under <data_root>/features/
    input_subdir: str  # input folder inside the prepared dataset
    columns: list[str]  # input columns the worker needs (``key`` first)
    fmt: Format
    schema: pa.Schema
    writer_threads: int = 1  # output shards written at once (see features/writer.py)
    writer_queue: int = 4  # output batches waiting for or being written: bounds host memory

    def __init__(self, device: torch.device) -> None:
        self.device = device

    @property
    @abstractmethod
    def prepare(self) -> PrepareFn:
        """The picklable function the DataLoader workers run on each input batch."""

    @abstractmethod
    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Model outputs for a batch of prepared inputs already on the device, in the storage dtype."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """What determines the output values (model, weights fingerprint, precision): checked on resume."""

    @abstractmethod
    def embedding_array(self, values: np.ndarray, ok: np.ndarray) -> pa.Array:
        """The embedding column for a batch: ``values`` holds the ok rows only, ``ok`` marks them."""


def resolve_device(text: str) -> torch.device:
    """``auto`` -> the GPU if there is one, else the CPU; under torchrun a bare ``cuda`` means this rank's GPU."""
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cuda" and "LOCAL_RANK" in os.environ:
        text = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ConfigError(f"--device {text!r}: not a torch device (cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {text}: CUDA is not available on this machine")
    return device


def default_precision(device: torch.device) -> str:
    """fp16 on GPUs (the reference throughput), fp32 on CPUs (half matmuls are slow there)."""
    return "fp16" if device.type == "cuda" else "fp32"


def input_shards(stage: type[FeatureStage] | FeatureStage, dataset: str) -> tuple[list[Path], Manifest]:
    """The input shards of ``dataset`` for a stage, checked (manifest present, columns present)."""
    folder = require_prepared(dataset)
    manifest = read_manifest(folder)  # a prepared dataset has its manifest written last
    verify_manifest(folder, manifest, f"rerun the `gill-eval prepare` command that made {dataset} to repair it")
    shards = list_shards(folder / stage.input_subdir)
    if not shards:
        raise InputError(f"{folder / stage.input_subdir}: no input shards (prepare the dataset first)")
    for path in shards:
        try:
            names = pq.read_schema(path).names
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{path}: not a readable Parquet shard ({exc})") from exc
        missing = [c for c in stage.columns if c not in names]
        if missing:
            raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    return shards, manifest


def _check_config(out_dir: Path, config: dict[str, Any]) -> None:
    """Refuse to mix outputs of different models or inputs in one folder; record the config otherwise."""
    path = out_dir / CONFIG_NAME
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
        if changed:
            raise ConfigError(f"{out_dir} holds features made with other settings ({', '.join(changed)}); "
                              f"remove that folder to recompute")
        return
    atomic_write_json(path, config)


def _host_copy(out: torch.Tensor) -> tuple[torch.Tensor, Callable[[], None]]:
    """Start copying ``out`` to host memory; returns the host tensor and a wait function."""
    if out.device.type != "cuda":
        return out.detach(), lambda: None
    host = torch.empty(out.shape, dtype=out.dtype, pin_memory=True)
    host.copy_(out, non_blocking=True)
    event = torch.cuda.Event()
    event.record()
    return host, event.synchronize


def _batch_builder(stage: FeatureStage, item: Prepared, host: torch.Tensor | None,
                   wait: Callable[[], None]) -> Callable[[], pa.RecordBatch]:
    def build() -> pa.RecordBatch:
        wait()
        ok = np.array([e is None for e in item.errors], dtype=bool)
        values = host.numpy() if host is not None else np.zeros((0,), dtype=np.float32)
        return pa.RecordBatch.from_arrays(
            [
                pa.array(item.keys, pa.string()),
                pa.array(["success" if e is None else "failed" for e in item.errors], pa.string()),
                pa.array(item.errors, pa.string()),
                stage.embedding_array(values, ok),
            ],
            schema=stage.schema,
        )

    return build


def run_stage(stage: FeatureStage, dataset: str, batch_size: int, num_workers: int,
              shard: str | None = None) -> dict[str, Any]:
    """Compute the stage's features for ``dataset``; returns a summary (also what ``--json`` prints)."""
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size}: must be at least 1")
    if num_workers < 0:
        raise ConfigError(f"--num-workers {num_workers}: must be at least 0")
    shards, in_manifest = input_shards(stage, dataset)
    spec = resolve_shard_spec(shard)
    out_dir = feature_dir(stage.kind, dataset)
    config = {"stage": stage.kind, "dataset": dataset, "input_manifest": in_manifest.content_hash(),
              **stage.config()}
    plan = WorkPlan(out_dir, [UnitOfWork(p.stem, i, {"path": str(p)}) for i, p in enumerate(shards)])
    _check_config(out_dir, config)
    candidates = plan.pending(spec)
    pending = [u for u in candidates if plan.claim(u)]  # units another run holds are left to it
    try:
        summary = _run_units(stage, dataset, plan, pending, spec, batch_size, num_workers, config)
    finally:
        for unit in pending:
            plan.release(unit)
    if len(pending) < len(candidates):
        info(f"{len(candidates) - len(pending)} unit(s) of {out_dir} are being computed by another run; "
             "rerun after it ends to complete the folder")
    return {**summary, "units_busy": len(candidates) - len(pending)}


def _run_units(stage: FeatureStage, dataset: str, plan: WorkPlan, pending: list[UnitOfWork], spec: ShardSpec,
               batch_size: int, num_workers: int, config: dict[str, Any]) -> dict[str, Any]:
    out_dir = plan.out_dir
    rows = {u.uid: pq.ParquetFile(u.payload["path"]).metadata.num_rows for u in pending}
    for unit in pending:
        remove_stale_temporaries(output_path(out_dir, unit, stage.fmt))

    dataset_iter = ShardBatches([(Path(u.payload["path"]), rows[u.uid]) for u in pending], stage.columns,
                                batch_size, stage.prepare)
    stream = ordered_batches(dataset_iter, num_workers if pending else 0, pin_memory=stage.device.type == "cuda")
    start = time.perf_counter()
    done_rows = failed = 0
    with make_progress() as progress, BackgroundWriter(plan, stage.schema, stage.fmt, stage.writer_queue,
                                                    stage.writer_threads) as writer, \
            torch.inference_mode():
        task = progress.add_task(f"features {stage.kind} {dataset} [{spec}]", total=sum(rows.values()))
        for unit in pending:
            writer.begin(unit)
            unit_failed = 0
            for _ in range(batches_in(rows[unit.uid], batch_size)):
                item = next(stream)
                host, wait = None, (lambda: None)
                if item.inputs is not None:
                    out = stage.forward(item.inputs.to(stage.device, non_blocking=True))
                    host, wait = _host_copy(out)
                writer.write(_batch_builder(stage, item, host, wait))
                unit_failed += len(item.keys) - item.n_ok
                progress.advance(task, len(item.keys))
            writer.end({"rows": rows[unit.uid], "failed": unit_failed})
            done_rows += rows[unit.uid]
            failed += unit_failed
    seconds = time.perf_counter() - start

    distributed = distributed_barrier()
    complete = plan.all_done()
    if complete and (not distributed or distributed_rank()[0] == 0):
        _write_stage_manifest(plan, dataset, config)
    summary = {"stage": stage.kind, "dataset": dataset, "out_dir": str(out_dir), "shard": str(spec),
               "units_total": len(plan.units), "units_run": len(pending), "rows": done_rows, "failed": failed,
               "seconds": round(seconds, 3), "items_per_s": round(done_rows / seconds, 1) if seconds else None,
               "complete": complete}
    if failed:
        info(f"[yellow]{failed} of {done_rows} rows failed (recorded as failed rows with their keys)[/]")
    return summary


def _write_stage_manifest(plan: WorkPlan, dataset: str, config: dict[str, Any]) -> None:
    done = [plan.done_info(u) for u in plan.units]
    counts = {"shards": len(plan.units), "rows": sum(d["rows"] for d in done),
              "failed": sum(d["failed"] for d in done)}
    counts["success"] = counts["rows"] - counts["failed"]
    write_manifest(plan.out_dir, Manifest(dataset=dataset, options=config, counts=counts))
