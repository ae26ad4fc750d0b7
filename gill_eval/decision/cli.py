"""`gill-eval decision ...`."""

import typer

from gill_eval._pending import not_yet

app = typer.Typer(help="decision (not yet available).")


@app.callback(invoke_without_command=True)
def _pending() -> None:
    not_yet("decision")
