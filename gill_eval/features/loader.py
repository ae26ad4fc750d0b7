"""Streaming input: record batches of input shards, prepared in DataLoader workers, delivered in order.

Why this shape: decoding JPEGs (or tokenising captions) is the CPU-bound half of feature extraction and
must run in parallel worker processes, yet outputs must keep the input's keys and order so that a run is
independent of the number of workers. Every input unit (one shard) is cut into batches of exactly
``batch_size`` rows (the last one shorter), numbered with one global sequence number across the units of
this run; worker ``w`` of ``W`` prepares the batches whose number is ``w`` modulo ``W``. The main process
puts them back in sequence order. Memory is bounded by the DataLoader's prefetch, not by dataset size.

Each worker streams the whole shard (Parquet pages are read sequentially) but decodes only its own
batches: reading is cheap next to decoding.
"""

from __future__ import annotations

import heapq
import math
import multiprocessing as mp
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info


@dataclass
class Prepared:
    """One batch after worker-side preparation.

    ``inputs`` stacks the model inputs of the rows that could be prepared (``errors[i] is None``), in row
    order; rows with an error (corrupt image, missing caption) have no input.
    """

    seq: int
    keys: list[str]
    errors: list[str | None]
    inputs: torch.Tensor | None = field(default=None)

    @property
    def n_ok(self) -> int:
        return sum(e is None for e in self.errors)

    def pin_memory(self) -> Prepared:
        """Called by DataLoader's pin-memory thread (``pin_memory=True``) so host-to-GPU copies can overlap."""
        if self.inputs is not None:
            self.inputs = self.inputs.pin_memory()
        return self


#: What a stage runs in the workers: a table of ``batch_size`` rows -> (per-row error or None, inputs).
PrepareFn = Callable[[pa.Table], tuple[list[str | None], torch.Tensor | None]]


def batches_in(rows: int, batch_size: int) -> int:
    """How many batches a unit of ``rows`` rows is cut into."""
    return math.ceil(rows / batch_size)


def exact_batches(path: Path, columns: list[str], batch_size: int) -> Iterator[pa.Table]:
    """Stream ``path`` as tables of exactly ``batch_size`` rows (the last shorter), whatever its row groups."""
    parts: list[pa.RecordBatch] = []
    held = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=columns):
        parts.append(batch)
        held += batch.num_rows
        while held >= batch_size:
            table = pa.Table.from_batches(parts)
            yield table.slice(0, batch_size)
            rest = table.slice(batch_size)
            parts, held = rest.to_batches(), rest.num_rows
    if held:
        yield pa.Table.from_batches(parts)


class ShardBatches(IterableDataset):
    """The batches of a list of input shards, each prepared by the worker that owns it (see module doc)."""

    def __init__(self, shards: Sequence[tuple[Path, int]], columns: list[str], batch_size: int,
                 prepare: PrepareFn) -> None:
        super().__init__()
        self.shards = [(Path(p), int(n)) for p, n in shards]
        self.columns = columns
        self.batch_size = batch_size
        self.prepare = prepare

    def __iter__(self) -> Iterator[Prepared]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        seq = 0
        for path, rows in self.shards:
            count = batches_in(rows, self.batch_size)
            if not any((seq + i) % workers == worker for i in range(min(count, workers))):
                seq += count
                continue
            for table in exact_batches(path, self.columns, self.batch_size):
                if seq % workers == worker:
                    errors, inputs = self.prepare(table)
                    yield Prepared(seq, table.column("key").to_pylist(), errors, inputs)
                seq += 1


def _collate(item: Prepared) -> Prepared:
    return item


def ordered_batches(dataset: ShardBatches, num_workers: int, pin_memory: bool,
                    prefetch_factor: int = 2) -> Iterator[Prepared]:
    """Iterate the prepared batches in sequence order, decoding in ``num_workers`` processes.

    The workers start here, not at the first ``next``: call this before starting other threads (writer,
    progress bar), so the fork happens while the process is still single-threaded. Workers are forked
    where the platform allows it (cheap, nothing re-imported), whatever the caller's default start method.
    """
    context = "fork" if num_workers > 0 and "fork" in mp.get_all_start_methods() else None
    loader = DataLoader(
        dataset,
        batch_size=None,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=pin_memory,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
        persistent_workers=False,
        multiprocessing_context=context,
    )
    return _in_sequence(iter(loader))


def _in_sequence(items: Iterator[Prepared]) -> Iterator[Prepared]:
    heap: list[tuple[int, int, Prepared]] = []
    expected = 0
    for n, item in enumerate(items):
        heapq.heappush(heap, (item.seq, n, item))
        while heap and heap[0][0] == expected:
            yield heapq.heappop(heap)[2]
            expected += 1
    if heap:  # unreachable unless a worker skipped a batch: never drop rows silently
        raise RuntimeError(f"feature loader lost batch {expected}")
