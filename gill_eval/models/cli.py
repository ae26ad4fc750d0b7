"""`gill-eval models ...` and `gill-eval generate`."""

import typer

from gill_eval._pending import not_yet

app = typer.Typer(help="Model registry and weight staging (not yet available).")


@app.callback(invoke_without_command=True)
def _pending() -> None:
    not_yet("models")
