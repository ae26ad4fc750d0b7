"""One read of a generation folder's pixels for every scorer that needs them (docs/benchmarks.md, scoring).

``generated_blocks`` streams the successful rows of the generation shards once, in storage order; worker
threads (``metrics.inputs``) decode each image once and turn it into every network's input ahead of the
networks, so decoding overlaps the network and no scorer reads the shards again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from PIL import Image

from gill_eval.bench.data import decode_image
from gill_eval.bench.generation import read_generations
from gill_eval.metrics.inputs import blocks_of, ordered_map
from gill_eval.store import WorkPlan


def generated_blocks(plan: WorkPlan, prepares: Sequence[Callable[[Image.Image], Any]],
                     size: int) -> Iterator[tuple[list[dict[str, Any]], list[list[Any]]]]:
    """Blocks of ``size`` successful rows (example_id, seed, status; in storage order), each with one list of
    inputs per function of ``prepares`` (``prepares[j](image)`` for every row of the block, in order)."""
    rows = (r for r in read_generations(plan, columns=["example_id", "seed", "status", "image"]) if r["status"] == "success")

    def prepare(block: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[list[Any]]]:
        inputs: list[list[Any]] = [[] for _ in prepares]
        for row in block:
            image = decode_image(row.pop("image"), f"{plan.out_dir} {row['example_id']}")
            for out, fn in zip(inputs, prepares, strict=True):
                out.append(fn(image))
        return block, inputs

    yield from ordered_map(prepare, blocks_of(rows, size))
