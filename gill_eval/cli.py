"""The ``gill-eval`` command line: a thin Typer layer over the library.

Each area owns its sub-app in its own module (``datasets/cli.py``, ``features/cli.py``, ...); this file
only mounts them, handles the global options, and turns ``GillEvalError`` into a one-line message and a
non-zero exit code.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

from gill_eval import __version__
from gill_eval.errors import GillEvalError, os_error_line

OS_ERROR_EXIT = 4


class _ErrorReportingGroup(TyperGroup):
    """Report user errors as ``error: <one line>`` with the error's exit code, no traceback."""

    def invoke(self, ctx: typer.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except GillEvalError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:  # disk full, read-only root, ...: one line naming the path and the fix
            from gill_eval.store.root import data_root

            line = os_error_line(exc, data_root())
            if line is None:
                raise
            typer.echo(f"error: {line}", err=True)
            raise typer.Exit(OS_ERROR_EXIT) from None

    def list_commands(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        return [*self.commands, *(name for name in _COMMANDS if name not in self.commands)]

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:  # type: ignore[override]
        if cmd_name not in self.commands and cmd_name in _COMMANDS:
            self.commands[cmd_name] = load_command(cmd_name)
        return self.commands.get(cmd_name)

    def resolve_command(self, ctx: typer.Context, args: list[str]) -> Any:  # type: ignore[override]
        if args and args[0] not in _COMMANDS:  # an unknown name: "did you mean" needs every command's name
            for name in self.list_commands(ctx):
                self.get_command(ctx, name)
        return super().resolve_command(ctx, args)

    def main(self, args: Sequence[str] | None = None, *rest: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Global options after the subcommand too; usage errors (a bad choice, a missing option) in one line."""
        kwargs.pop("standalone_mode", None)
        argv = hoist_global_options(list(sys.argv[1:] if args is None else args))
        try:
            code = super().main(argv, *rest, standalone_mode=False, **kwargs)
        except _CLICK_ERRORS as exc:
            hint = f" (see `{exc.ctx.command_path} --help`)" if getattr(exc, "ctx", None) is not None else ""
            typer.echo(f"error: {exc.format_message().replace('Value error, ', '')}{hint}", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


# click's ClickException (vendored by recent typer, imported from click by older ones)
_CLICK_ERRORS = tuple(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
_GLOBAL_FLAGS, _GLOBAL_VALUES = ("--offline", "--quiet", "--verbose"), ("--data-dir",)


def hoist_global_options(argv: list[str]) -> list[str]:
    """Move ``--offline``, ``--quiet``, ``--verbose`` and ``--data-dir DIR`` given after a subcommand in front of
    it (up to a ``--``)."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest += argv[i:]
            break
        if arg in _GLOBAL_FLAGS or arg.split("=", 1)[0] in _GLOBAL_VALUES:
            front.append(arg)
            if arg in _GLOBAL_VALUES and i + 1 < len(argv):
                front.append(argv[i + 1])
                i += 1
        else:
            rest.append(arg)
        i += 1
    return front + rest


app = typer.Typer(
    cls=_ErrorReportingGroup,
    help="Data preparation, features, decision classifier and benchmarks for GILL-style models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gill-eval {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    data_dir: Annotated[
        Optional[Path],
        typer.Option("--data-dir", help="Data root (default: $GILL_EVAL_DATA or the user data folder)."),
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Never download: fail fast if a weight is not staged.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors (and --json output).")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also the bars and banners of diffusers, transformers, img2dataset.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """gill-eval: reproducible data and evaluation for multimodal image-generation models."""
    from gill_eval.console import configure

    configure(quiet=quiet, verbose=verbose)
    from gill_eval.store.root import set_data_root

    set_data_root(data_dir)
    if offline:
        os.environ["GILL_EVAL_OFFLINE"] = "1"


# Each command's module, imported only when the command runs (or for the full ``--help``), so that
# ``gill-eval prepare cc3m`` does not pay for the imports of ``bench``, ``report`` or ``export``.
# name -> (module, attribute: a sub-app or a command function, the command function's click class or "").
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "prepare": ("gill_eval.datasets.cli", "app", ""),
    "datasets": ("gill_eval.datasets.catalog", "app", ""),
    "features": ("gill_eval.features.cli", "app", ""),
    "decision": ("gill_eval.decision.cli", "app", ""),
    "annotate": ("gill_eval.annotate.cli", "app", ""),
    "bench": ("gill_eval.bench.cli", "app", ""),
    "report": ("gill_eval.report.cli", "report", ""),
    "models": ("gill_eval.models.cli", "app", ""),
    "generate": ("gill_eval.models.generate", "generate", "GenerateCommand"),
    "export": ("gill_eval.exports.cli", "app", ""),
    "run": ("gill_eval.pipeline", "run_pipeline", ""),
    "quickstart": ("gill_eval.quickstart", "quickstart", ""),
    "doctor": ("gill_eval.doctor", "doctor", ""),
}


def load_command(name: str) -> TyperGroup | TyperCommand:
    """The click command behind ``gill-eval NAME``, built from its module on first use."""
    module_name, attribute, command_class = _COMMANDS[name]
    module = importlib.import_module(module_name)
    target = getattr(module, attribute)
    command: TyperGroup | TyperCommand
    if isinstance(target, typer.Typer):
        command = typer.main.get_group(target)
    else:
        single = typer.Typer(add_completion=False)
        single.command(name, cls=getattr(module, command_class) if command_class else None)(target)
        command = typer.main.get_command(single)  # type: ignore[assignment]
    command.name = name
    return command


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM as an exception: ``finally`` blocks remove temporaries, release locks and end child groups."""
    raise SystemExit(128 + signum)


def main() -> None:
    """Console-script entry point."""
    signal.signal(signal.SIGTERM, _terminate)
    app()
