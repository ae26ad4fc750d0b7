"""The ``gill-eval`` command line: a thin Typer layer over the library.

Each area owns its sub-app in its own module (``datasets/cli.py``, ``features/cli.py``, ...); this file
only mounts them, handles the global options, and turns ``GillEvalError`` into a one-line message and a
non-zero exit code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from gill_eval import __version__
from gill_eval.errors import GillEvalError


class _ErrorReportingGroup(TyperGroup):
    """Report user errors as ``error: <one line>`` with the error's exit code, no traceback."""

    def invoke(self, ctx: typer.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except GillEvalError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None


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
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """gill-eval: reproducible data and evaluation for multimodal image-generation models."""
    from gill_eval.store.root import set_data_root

    set_data_root(data_dir)
    if offline:
        os.environ["GILL_EVAL_OFFLINE"] = "1"


def _mount() -> None:
    from gill_eval.bench.cli import app as bench_app
    from gill_eval.datasets.cli import app as prepare_app
    from gill_eval.datasets.cli import export_app
    from gill_eval.decision.cli import app as decision_app
    from gill_eval.features.cli import app as features_app
    from gill_eval.models.cli import app as models_app
    from gill_eval.models.generate_cli import GenerateCommand, generate
    from gill_eval.pipeline import run_pipeline
    from gill_eval.quickstart import quickstart
    from gill_eval.report.cli import report

    app.add_typer(prepare_app, name="prepare")
    app.add_typer(features_app, name="features")
    app.add_typer(decision_app, name="decision")
    app.add_typer(bench_app, name="bench")
    app.command("report")(report)
    app.add_typer(models_app, name="models")
    app.command("generate", cls=GenerateCommand)(generate)
    app.add_typer(export_app, name="export")
    app.command("run")(run_pipeline)
    app.command("quickstart")(quickstart)


_mount()


def main() -> None:
    """Console-script entry point."""
    app()
