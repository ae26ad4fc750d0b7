"""Units of work: the one mechanism behind resume and ``--shard i/N`` splitting in every stage.

A stage lists its work as ``UnitOfWork`` items with stable ids (an input shard, a block of examples).
A ``WorkPlan`` knows the output folder; a unit is done when its marker ``_done/<id>.json`` exists. The
marker is written *after* the unit's output has been atomically renamed into place, so a process killed
at any moment leaves each unit either complete-and-marked or redone on the next run. Units are assigned
to workers by ``index % count``, which does not depend on which units are already done, so a resume with a
different number of workers still covers every unit exactly once.

A marker records the unit's outputs (path, size, row count, a hash of the head and tail: see
``store.verify``); ``pending`` checks them for the units it would skip and redoes a unit whose output was
truncated, deleted or edited since, saying so. Two runs on one root split the units through ``claim``
(a per-unit lock, ``store.lock``) instead of doing the same work twice. See docs/reliability.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gill_eval.console import info
from gill_eval.errors import ConfigError
from gill_eval.store.atomic import TMP_PREFIX, atomic_write_json
from gill_eval.store.lock import release_claim, try_claim
from gill_eval.store.verify import check_output, describe_output

DONE_DIR = "_done"
LOCK_DIR = "_locks"


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


SLURM_SHARD = "slurm"
_SLURM_VARS = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT")


def slurm_array_shard() -> ShardSpec:
    """This Slurm array task as a shard (``--shard slurm``): its position in the array of
    ``SLURM_ARRAY_TASK_COUNT`` tasks, so ``sbatch --array=1-8`` or ``--array=0-30:2`` work as well as ``0-7``."""
    missing = [var for var in _SLURM_VARS if var not in os.environ]
    if missing:
        raise ConfigError(f"--shard slurm: {', '.join(missing)} not set; this is not a Slurm array task "
                          f"(submit with `sbatch --array=0-N`, or pass --shard i/N)")
    try:
        task, first, count = (int(os.environ[var]) for var in _SLURM_VARS)
        step = int(os.environ.get("SLURM_ARRAY_TASK_STEP", "1"))
    except ValueError:
        raise ConfigError(f"--shard slurm: {', '.join(_SLURM_VARS)} must be integers") from None
    index, rest = divmod(task - first, max(step, 1))
    if rest or not 0 <= index < count:
        raise ConfigError(f"--shard slurm: task {task} is not evenly spaced in an array of {count} from {first} "
                          f"(step {step}); use a range like --array=0-{count - 1}, or pass --shard i/N")
    return ShardSpec(index, count)


def resolve_shard_spec(text: str | None = None) -> ShardSpec:
    """Combine ``--shard i/N`` (or ``--shard slurm``: this Slurm array task) with the launcher's rank:
    ``--shard i/N`` under W ranks (torchrun, accelerate) is ``i*W+r`` of ``N*W``."""
    if text == SLURM_SHARD:
        base = slurm_array_shard()
    else:
        base = ShardSpec.parse(text) if text else ShardSpec()
    rank, world = distributed_rank()
    return ShardSpec(base.index * world + rank, base.count * world)


#: How long a rank waits at a barrier: the other ranks may be scoring a benchmark meanwhile (hours at
#: the paper's sizes), which torch's default of 30 minutes would cut short.
BARRIER_TIMEOUT_S = 24 * 3600


def launched_ranks() -> bool:
    """Whether this process is one of several ranks started by torchrun/accelerate (``WORLD_SIZE`` > 1 and
    ``MASTER_ADDR`` set), which can meet at ``distributed_barrier``."""
    return distributed_rank()[1] > 1 and "MASTER_ADDR" in os.environ


def distributed_barrier() -> bool:
    """Under torchrun/accelerate, wait for every rank through a gloo group (CPU-only: works beside any
    device, across nodes); False, at once, when not launched so."""
    if not launched_ranks():
        return False
    import datetime

    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=BARRIER_TIMEOUT_S))
    dist.barrier()
    return True


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
        """Whether ``unit`` finished in an earlier or the current run (its marker exists)."""
        return self.marker(unit).is_file()

    def problem(self, unit: UnitOfWork) -> str | None:
        """Why a marked unit cannot be trusted (unreadable marker, output changed since), or None."""
        try:
            record = self.done_info(unit)
        except (OSError, ValueError) as exc:
            return f"its done marker {self.marker(unit)} is unreadable ({type(exc).__name__})"
        if not isinstance(record, dict) or record.get("uid") != unit.uid:
            return f"its done marker {self.marker(unit)} is not this unit's"
        for output in record.get("outputs", []):
            if (why := check_output(self.out_dir, output)) is not None:
                return why
        return None

    def pending(self, spec: ShardSpec | None = None) -> list[UnitOfWork]:
        """Units owned by ``spec`` that are not done, in order; a done unit whose outputs broke is redone."""
        spec = spec or ShardSpec()
        out = []
        for unit in self.units:
            if not spec.owns(unit.index):
                continue
            if self.is_done(unit):
                why = self.problem(unit)
                if why is None:
                    continue
                info(f"[yellow]{self.out_dir}: redoing unit {unit.uid}: {why}[/]")
                self.marker(unit).unlink(missing_ok=True)
            out.append(unit)
        return out

    def mark_done(self, unit: UnitOfWork, info: dict[str, Any] | None = None,
                  outputs: Iterable[str | os.PathLike[str]] = ()) -> None:
        """Write the marker of ``unit`` recording ``outputs``: call only after they are in place."""
        record = {"uid": unit.uid, **(info or {})}
        if described := [describe_output(self.out_dir, p) for p in outputs]:
            record["outputs"] = described
        atomic_write_json(self.marker(unit), record)

    def done_info(self, unit: UnitOfWork) -> dict[str, Any]:
        """What ``mark_done`` recorded for a unit (e.g. its counts)."""
        return json.loads(self.marker(unit).read_text(encoding="utf-8"))

    def all_done(self) -> bool:
        """Whether every unit of the plan (all workers) is done."""
        return all(self.is_done(u) for u in self.units)

    def _lock(self, unit: UnitOfWork) -> Path:
        return self.out_dir / LOCK_DIR / f"{unit.uid}.lock"

    def claim(self, unit: UnitOfWork) -> bool:
        """Take ``unit`` for this run: False when another live run holds it or finished it meanwhile."""
        if not try_claim(self._lock(unit)):
            return False
        if self.is_done(unit) and self.problem(unit) is None:  # finished by another run since we listed it
            release_claim(self._lock(unit))
            return False
        self._remove_stale_temporaries(unit)
        return True

    def _remove_stale_temporaries(self, unit: UnitOfWork) -> None:
        """Remove half-written files of ``unit`` left by a killed run (``kill -9`` skips every clean-up).
        Safe only under this run's claim: no live run writes this unit's files now."""
        for pattern in (f"{TMP_PREFIX}{unit.uid}.*", f"*/{TMP_PREFIX}{unit.uid}.*"):
            for stale in self.out_dir.glob(pattern):
                stale.unlink(missing_ok=True)

    def release(self, unit: UnitOfWork) -> None:
        """Release the claim on ``unit`` (after its marker is written, or when the run stops)."""
        release_claim(self._lock(unit))
