"""Temporary: commands whose issue has not landed yet say so plainly."""

import typer


def not_yet(name: str) -> None:
    typer.echo(f"`gill-eval {name}` is not yet available in this version.", err=True)
    raise typer.Exit(1)
