"""`gill-eval prepare ...` and `gill-eval export ...`: each dataset module contributes its command."""

import typer

from gill_eval.datasets.partiprompts_cli import prepare_partiprompts

app = typer.Typer(help="Turn raw files and image URLs into Parquet shards.", no_args_is_help=True)
export_app = typer.Typer(help="Export prepared data in other tools' layouts.", no_args_is_help=True)

app.command("partiprompts")(prepare_partiprompts)
