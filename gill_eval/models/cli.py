"""`gill-eval models list` and `gill-eval models fetch`: what models and weights this install has."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from gill_eval.console import emit_json, info
from gill_eval.errors import ConfigError

app = typer.Typer(help="Model registry (entry points) and weight staging.", no_args_is_help=True)


def _models_table(rows: list[dict]) -> Table:
    table = Table(title="models (entry-point group gill_eval.models)")
    for column in ("name", "capabilities", "installed"):
        table.add_column(column, no_wrap=column == "name")
    table.add_column("description", overflow="fold")
    for row in rows:
        if row["error"]:
            installed, description = "[red]broken[/red]", row["error"]
        elif row["installed"]:
            installed, description = "yes", row["description"]
        else:
            installed, description = "[yellow]no[/yellow]", f"{row['description']} ({row['install_hint']})"
        table.add_row(row["name"], ", ".join(row["capabilities"]) or "-", installed, description)
    return table


def _weights_table(rows: list[dict]) -> Table:
    table = Table(title="weights (stage with `gill-eval models fetch NAME`)")
    for column in ("name", "staged", "sha256", "used by"):
        table.add_column(column)
    for row in rows:
        digest = (row["sha256"] or "-")[:16]
        table.add_row(row["name"], "yes" if row["staged"] else "no", digest, row["used_by"])
    return table


@app.command("list")
def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print models and weights as JSON.")] = False,
    verify: Annotated[bool, typer.Option("--verify", help="Re-hash staged weights against their records.")] = False,
) -> None:
    """Registered models with their capabilities and options, and the staged weights."""
    from gill_eval.models.registry import list_models
    from gill_eval.models.weights import staged

    models = list_models()
    weights = staged(verify=verify)
    if as_json:
        emit_json({"models": models, "weights": weights})
        return
    console = Console()
    console.print(_models_table(models))
    console.print(_weights_table(weights))


@app.command("show")
def show_command(
    name: Annotated[str, typer.Argument(help="A registered model name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the model's row as JSON.")] = False,
) -> None:
    """One model's capabilities and the options `--model-opt KEY=VALUE` accepts."""
    from gill_eval.models.registry import describe_options, model_class

    cls = model_class(name)
    row = {"name": name, "capabilities": sorted(cls.capabilities), "description": cls.description,
           "installed": not cls.missing_requirements(), "install_hint": cls.install_hint,
           "options": describe_options(cls)}
    if as_json:
        emit_json(row)
        return
    table = Table(title=f"{name}: {cls.description}")
    for column in ("option", "type", "default", "help"):
        table.add_column(column, overflow="fold")
    for opt in row["options"]:
        table.add_row(opt["name"], opt["type"], str(opt["default"]), opt["help"])
    Console().print(table)


@app.command("fetch")
def fetch_command(
    names: Annotated[Optional[list[str]], typer.Argument(help="Weight names (see `models list`).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Stage every registered weight.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the fetch records as JSON.")] = False,
) -> None:
    """Stage weights into the standard caches and record their sha256 (for offline runs)."""
    from gill_eval.models.weights import REGISTRY, fetch

    if all_ and names:
        raise ConfigError("give weight names or --all, not both")
    chosen = list(REGISTRY) if all_ else list(names or [])
    if not chosen:
        raise ConfigError(f"name the weights to fetch, or --all (registered: {', '.join(REGISTRY)})")
    records = fetch(chosen)
    if as_json:
        emit_json(records)
        return
    for record in records:
        info(f"{record['name']}: {len(record['files'])} files at {record['path']} (sha256 {record['sha256'][:16]})")
