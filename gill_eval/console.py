"""Terminal output: one rich console for messages, progress bars that go to stderr, and ``--json``.

Progress and messages go to stderr so that ``--json`` output on stdout stays machine-readable.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")

err_console = Console(stderr=True)
_level = {"quiet": False, "verbose": False}

# What the libraries gill-eval drives read to decide whether to draw their own bars and banners; unless
# --verbose, they stay silent so that one gill-eval progress display per stage is all the user sees.
THIRD_PARTY_QUIET_ENV = {
    "TQDM_DISABLE": "1",  # tqdm bars of img2dataset, huggingface_hub, diffusers, transformers (child processes too)
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "DIFFUSERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}


def configure(quiet: bool = False, verbose: bool = False) -> None:
    """``--quiet``: errors and --json only; default: gill-eval's own lines and bars; ``--verbose``: libraries' too."""
    _level.update(quiet=quiet and not verbose, verbose=verbose)
    if verbose:
        return
    for var, value in THIRD_PARTY_QUIET_ENV.items():
        os.environ.setdefault(var, value)
    for name in ("diffusers", "transformers"):  # already imported (e.g. by a test): set their loggers directly
        module = sys.modules.get(name)
        if module is not None:
            module.utils.logging.set_verbosity_error()
            module.utils.logging.disable_progress_bar()


def is_verbose() -> bool:
    """Whether ``--verbose`` asked for the libraries' own output (child processes write to the terminal)."""
    return _level["verbose"]


def info(message: str) -> None:
    """A status line for the user (stderr); nothing under ``--quiet``."""
    if not _level["quiet"]:
        err_console.print(message, highlight=False)


def emit_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout (the ``--json`` contract)."""
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def make_progress() -> Progress:
    """A progress bar on stderr with count, elapsed and remaining time."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
        disable=_level["quiet"],
    )


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar (disabled automatically when stderr is not a terminal)."""
    with make_progress() as progress:
        task = progress.add_task(description, total=total if total is not None else _len(items))
        for item in items:
            yield item
            progress.advance(task)


def _len(items: Iterable[Any]) -> int | None:
    try:
        return len(items)  # type: ignore[arg-type]
    except TypeError:
        return None
