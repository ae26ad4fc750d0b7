"""Units of work: the one mechanism behind resume and ``--shard i/N`` splitting in every stage.

A stage lists its work as ``UnitOfWork`` items with stable ids (an input shard, a block of examples).
A ``WorkPlan`` knows the output folder; a unit is done when its marker ``_done/<id>.json`` exists. The
marker is written *after* the unit's output has been atomically renamed into place, so a process killed
at any moment leaves each unit either complete-and-marked or redone on the next run. Units are assigned
to workers by ``index % count``, which does not depend on which units are already done, so a resume with a
different number of workers still covers every unit exactly once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gill_eval.errors import ConfigError
from gill_eval.store.atomic import atomic_write_json

DONE_DIR = "_done"


@dataclass(frozen=True)
class ShardSpec:
    """Worker ``index`` of ``count``: owns the units whose index is ``index`` modulo ``count``."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> ShardSpec:
        """Parse ``"i/N"`` (0-based i) with a clear error for anything else."""
        try:
            left, right = text.split("/")
            spec = cls(int(left), int(right))
        except ValueError:
            raise ConfigError(f"--shard {text!r}: expected i/N with integers, e.g. 0/4") from None
        if spec.count < 1 or not 0 <= spec.index < spec.count:
            raise ConfigError(f"--shard {text!r}: need 0 <= i < N")
        return spec

    def owns(self, unit_index: int) -> bool:
        """Whether this worker processes the unit with this index."""
        return unit_index % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) from the variables torchrun and ``accelerate launch`` set; (0, 1) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))
    return (rank, world) if world > 1 else (0, 1)


def resolve_shard_spec(text: str | None = None) -> ShardSpec:
    """Combine ``--shard i/N`` with the launcher's rank: ``--shard i/N`` under W ranks is ``i*W+r`` of ``N*W``."""
    base = ShardSpec.parse(text) if text else ShardSpec()
    rank, world = distributed_rank()
    return ShardSpec(base.index * world + rank, base.count * world)


@dataclass(frozen=True)
class UnitOfWork:
    """One independently restartable piece of a stage; ``uid`` must be stable across runs."""

    uid: str
    index: int
    payload: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


class WorkPlan:
    """The units of one stage output folder and which of them are done."""

    def __init__(self, out_dir: str | os.PathLike[str], units: Iterable[UnitOfWork]) -> None:
        self.out_dir = Path(out_dir)
        self.units = list(units)
        uids = [u.uid for u in self.units]
        if len(set(uids)) != len(uids):
            raise ValueError("unit ids must be unique")

    def marker(self, unit: UnitOfWork) -> Path:
        """Path of the done marker of ``unit``."""
        return self.out_dir / DONE_DIR / f"{unit.uid}.json"

    def is_done(self, unit: UnitOfWork) -> bool:
        """Whether ``unit`` finished in an earlier or the current run."""
        return self.marker(unit).is_file()

    def pending(self, spec: ShardSpec | None = None) -> list[UnitOfWork]:
        """Units owned by ``spec`` that are not done yet, in order."""
        spec = spec or ShardSpec()
        return [u for u in self.units if spec.owns(u.index) and not self.is_done(u)]

    def mark_done(self, unit: UnitOfWork, info: dict[str, Any] | None = None) -> None:
        """Write the marker of ``unit``: call only after its outputs are in place."""
        atomic_write_json(self.marker(unit), {"uid": unit.uid, **(info or {})})

    def done_info(self, unit: UnitOfWork) -> dict[str, Any]:
        """What ``mark_done`` recorded for a unit (e.g. its counts)."""
        return json.loads(self.marker(unit).read_text(encoding="utf-8"))

    def all_done(self) -> bool:
        """Whether every unit of the plan (all workers) is done."""
        return all(self.is_done(u) for u in self.units)
