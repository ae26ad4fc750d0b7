"""Output shards, written by a background thread so that disk writes overlap the model.

Why a thread: SD text targets are 118 KB each (2.8 GB/s at the H100's 23,600 captions/s); writing them in
the compute loop would stall the GPU. The main thread queues per-batch closures (which wait for their
device-to-host copy to finish, then build an Arrow record batch); a writer thread streams them into a
temporary file that ``atomic_path`` renames into place when the unit ends, and only then writes the
unit's done marker. A bound on the batches in flight keeps memory constant.

Why several threads: one thread's ``write`` into the page cache (allocating and filling fresh pages, in
the kernel) moves about 1.3 GB/s per core, and the kernel serialises writes to one file, so a single
writer capped ``features sd-text`` at about half the H100's encoder rate (``benchmarks/sd_text_host.py``,
``benchmarks/results/README.md``). With ``threads`` > 1, units are dealt to the threads in turn: each
unit still goes into its own file, its batches in order, renamed and then marked by the thread that
wrote it, so the outputs are the same files whatever the number of threads; only the order in which
units finish changes (resume does not depend on it).

Formats: ``parquet`` (CLIP features: small rows, read by anything) and ``arrow`` (Arrow IPC file,
uncompressed: SD targets, so readers can memory-map them and view the float16 values without a copy;
Parquet always decodes pages into new memory).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from gill_eval.store.atomic import TMP_PREFIX, atomic_path
from gill_eval.store.work import UnitOfWork, WorkPlan

Format = Literal["parquet", "arrow"]
SUFFIX: dict[str, str] = {"parquet": ".parquet", "arrow": ".arrow"}

BatchFn = Callable[[], pa.RecordBatch]


def output_path(out_dir: Path, unit: UnitOfWork, fmt: Format) -> Path:
    """The output shard of ``unit`` (named after its input shard)."""
    return out_dir / f"{unit.uid}{SUFFIX[fmt]}"


def remove_stale_temporaries(target: Path) -> None:
    """Delete temporaries a killed run left for ``target`` (only this unit's, never another worker's)."""
    for stale in target.parent.glob(f"{TMP_PREFIX}{target.name}.*"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()


@contextlib.contextmanager
def _open(tmp: Path, schema: pa.Schema, fmt: Format) -> Iterator[Any]:
    if fmt == "parquet":
        with pq.ParquetWriter(tmp, schema) as writer:
            yield writer
    else:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            yield writer


_STOP = object()


class _Aborted(Exception):
    """The run stopped in the middle of a unit (its temporary file is removed, no marker written)."""


class BackgroundWriter:
    """Writes the units begun in ``threads`` threads (unit ``k`` in thread ``k % threads``); use as a context
    manager (joins the threads on exit). At most ``max_queued`` batches wait or are being written at once."""

    def __init__(self, plan: WorkPlan, schema: pa.Schema, fmt: Format, max_queued: int = 4,
                 threads: int = 1) -> None:
        if threads < 1 or max_queued < 1:
            raise ValueError("BackgroundWriter needs threads >= 1 and max_queued >= 1")
        self.plan = plan
        self.schema = schema
        self.fmt = fmt
        self._slots = threading.BoundedSemaphore(max_queued)  # taken per queued batch, given back once written
        self._lanes: list[queue.SimpleQueue[Any]] = [queue.SimpleQueue() for _ in range(threads)]
        self._threads = [threading.Thread(target=self._run, args=(lane,), name=f"feature-writer-{i}", daemon=True)
                         for i, lane in enumerate(self._lanes)]
        self._lane = self._lanes[0]
        self._begun = 0
        self._error: BaseException | None = None
        self._error_lock = threading.Lock()

    def __enter__(self) -> BackgroundWriter:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        for lane in self._lanes:  # a thread in the middle of a unit discards it (see _run)
            lane.put(_STOP)
        for thread in self._threads:
            thread.join()
        if exc is None and self._error is not None:
            raise self._error

    # -- main thread

    def begin(self, unit: UnitOfWork) -> None:
        """Start the output of ``unit``; every ``write`` until ``end`` goes into it."""
        self._check()
        self._lane = self._lanes[self._begun % len(self._lanes)]
        self._begun += 1
        self._lane.put(("begin", unit))

    def write(self, make_batch: BatchFn) -> None:
        """Queue one record batch (built in the unit's writer thread); waits while ``max_queued`` are queued."""
        while not self._slots.acquire(timeout=0.5):
            self._check()
        try:
            self._check()
        except BaseException:
            self._slots.release()
            raise
        self._lane.put(("write", make_batch))

    def end(self, info: dict[str, Any]) -> None:
        """Finish the current unit: rename its shard into place, then write its done marker with ``info``."""
        self._check()
        self._lane.put(("end", info))

    def _check(self) -> None:
        if self._error is not None:
            raise self._error
        if not all(thread.is_alive() for thread in self._threads):
            raise RuntimeError("feature writer stopped")

    # -- writer threads

    def _run(self, lane: queue.SimpleQueue[Any]) -> None:
        try:
            while (item := lane.get()) is not _STOP:
                _, unit = item
                target = output_path(self.plan.out_dir, unit, self.fmt)
                with atomic_path(target) as tmp, _open(tmp, self.schema, self.fmt) as writer:
                    while (msg := lane.get()) is not _STOP and msg[0] == "write":
                        try:
                            writer.write_batch(msg[1]())
                        finally:
                            self._slots.release()
                    if msg is _STOP:  # the main thread stopped mid-unit: discard the partial shard
                        raise _Aborted
                self.plan.mark_done(unit, msg[1], [target])
        except _Aborted:
            return
        except BaseException as exc:  # handed to the main thread, which raises it
            with self._error_lock:
                if self._error is None:
                    self._error = exc
