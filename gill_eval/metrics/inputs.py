"""Network inputs prepared off the critical path: an ordered, bounded map over worker threads.

Decoding a PNG and resizing it for Inception, CLIP or LPIPS costs milliseconds of CPU per image; done
between network batches it leaves the network idle (docs/benchmarks.md, scoring). ``ordered_map`` runs
the per-item work in threads (Pillow releases the GIL while it decodes and resizes; numpy and torch while
they convert) while the caller feeds the network, yields results in input order, and holds at most
``2 x workers`` items in flight, so memory stays bounded. Each item's result depends on the item alone,
so the bytes reaching a network are the same for any number of workers (``tests/test_scoring_workers.py``).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
WORKERS_ENV = "GILL_EVAL_SCORING_WORKERS"  # threads preparing network inputs (0: in the caller's thread)


def input_workers() -> int:
    """Threads that prepare network inputs: ``$GILL_EVAL_SCORING_WORKERS``, else this process's CPU count."""
    value = os.environ.get(WORKERS_ENV, "")
    if value.strip().isdigit():
        return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None) -> Iterator[R]:
    """``map(fn, items)`` computed ahead by ``workers`` threads (default ``input_workers()``), in order."""
    workers = input_workers() if workers is None else workers
    if workers <= 0:
        yield from map(fn, items)
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix="gill-eval-inputs")
    pending: deque[Future[R]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:  # also when the consumer stops early or fails: nothing queued keeps running
        pool.shutdown(wait=True, cancel_futures=True)


def blocks_of(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last one shorter)."""
    block: list[T] = []
    for item in items:
        block.append(item)
        if len(block) == size:
            yield block
            block = []
    if block:
        yield block
