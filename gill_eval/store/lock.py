"""Locks on what a stage writes: one writer per output, a one-line refusal naming the holder.

Two kinds, both ``filelock`` locks (``flock`` on POSIX: the kernel drops a lock when its process dies, so
a lock left by a killed run is free again and is taken over without any guessing about staleness):

- a *folder lock* (``hold_folder``) for stages that cannot share their output (``prepare``): a second
  run refuses at once with ``LockedError`` naming the holder's pid, host, start time and command;
- *unit claims* (``try_claim``) for stages whose units are independent (features, bench generation):
  a run skips a unit another live run holds, so two runs on one root split the work, never duplicate it.

The lock file is a hidden sibling (``.<name>.lock``), outside the folder it guards, so ``--overwrite``
can delete the folder while holding it; the holder record beside it (``.<name>.lock.json``) is only
for messages. Locks are re-entrant within a process (quickstart and pipelines run stages in one
process) and are released when the process ends, at the latest. See docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
import sys
from pathlib import Path

import filelock

from gill_eval.console import info
from gill_eval.errors import GillEvalError
from gill_eval.store.atomic import atomic_write_json

_HELD: dict[Path, filelock.BaseFileLock] = {}


class LockedError(GillEvalError):
    """Another live run holds the lock of what this run would write."""

    exit_code = 3


def lock_path(folder: str | os.PathLike[str]) -> Path:
    """The lock file guarding ``folder``: ``<parent>/.<name>.lock``."""
    target = Path(folder)
    return target.parent / f".{target.name}.lock"


def _holder_path(lock: Path) -> Path:
    return lock.with_name(lock.name + ".json")


def describe_holder(lock: Path) -> str:
    """``pid N on HOST since TIME (COMMAND)`` from the holder record, or a plain note when it is unreadable."""
    try:
        rec = json.loads(_holder_path(lock).read_text(encoding="utf-8"))
        return f"pid {rec['pid']} on {rec['host']} since {rec['started']} ({rec['command']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process whose record is unreadable"


def _acquire(lock: Path) -> bool:
    """Take ``lock`` without waiting; True when this process holds it now (also when it already did)."""
    if lock in _HELD:
        return True
    lock.parent.mkdir(parents=True, exist_ok=True)
    handle = filelock.FileLock(str(lock), timeout=0, thread_local=False)
    try:
        handle.acquire()
    except filelock.Timeout:
        return False
    _HELD[lock] = handle
    return True


def _release(lock: Path) -> None:
    handle = _HELD.pop(lock, None)
    if handle is not None:
        handle.release()


def hold_folder(folder: str | os.PathLike[str], what: str) -> Path:
    """Lock ``folder`` for this process (until ``release_folder`` or exit); refuse if another run holds it."""
    lock = lock_path(folder)
    if not _acquire(lock):
        raise LockedError(f"{folder}: {what} is already running there, held by {describe_holder(lock)}; "
                          "wait for it to finish or stop it (a lock of a killed run frees itself)")
    record = _holder_path(lock)
    if record.is_file() and f"pid {os.getpid()} on {socket.gethostname()} " not in describe_holder(lock):
        info(f"{folder}: taking over the lock of {describe_holder(lock)}, which ended without releasing it")
    atomic_write_json(record, {
        "pid": os.getpid(), "host": socket.gethostname(), "what": what, "command": " ".join(sys.argv[:4]),
        "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")})
    return lock


def release_folder(folder: str | os.PathLike[str]) -> None:
    """Give up the lock ``hold_folder`` took (a no-op when this process does not hold it)."""
    lock = lock_path(folder)
    if lock in _HELD:
        _holder_path(lock).unlink(missing_ok=True)  # a record left behind means its holder died
        _release(lock)


@contextlib.contextmanager
def holding_folder(folder: str | os.PathLike[str], what: str):
    """``hold_folder`` for the duration of a ``with`` block (released when it exits, however it exits)."""
    held_before = lock_path(folder) in _HELD
    hold_folder(folder, what)
    try:
        yield
    finally:
        if not held_before:
            release_folder(folder)


def try_claim(lock: Path) -> bool:
    """Claim one unit's lock without waiting; False when another live run holds it."""
    return _acquire(lock)


def release_claim(lock: Path) -> None:
    """Release a unit claim (after its done marker is written, or when the run stops)."""
    _release(lock)
