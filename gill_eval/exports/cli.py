"""`gill-eval export ...`: each export module contributes its command; this layer only maps options to calls."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from gill_eval.errors import ConfigError, InputError
from gill_eval.exports.images import export_images_command

app = typer.Typer(help="Export prepared data and generated images in other tools' layouts.", no_args_is_help=True)
app.command("images")(export_images_command)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the counts as JSON on stdout.")]


@app.command("gill-layout")
def export_gill_layout_command(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write datasets/ and data/ into.")],
    split: Annotated[str, typer.Option("--split", help="train or val.")],
    as_json: JsonFlag = False,
) -> None:
    """Prepared CC3M as the official GILL trainer reads it (cc3m_<split>.tsv with caption/image, image files)."""
    from gill_eval.console import emit_json
    from gill_eval.exports.gill_layout import export_gill_layout

    result = export_gill_layout(out_dir, split)
    if as_json:
        emit_json(result)
        return
    typer.echo(f"{result['rows']} rows -> {result['tsv']} ({result['skipped_without_image']} without image skipped)")
    typer.echo(f"images in {result['image_dir']}")
    if result["clip_embs_written"] is None:
        typer.echo(f"clip_embs/*.npy not written: run `gill-eval features sd-text --dataset {result['dataset']}`, then export again")
    typer.echo(f"train with: {result['trainer_flags']}")


Dataset = Annotated[Optional[str], typer.Option(
    "--dataset", help="A prepared dataset with one image per example (e.g. cc3m-val); default: the generated images.")]
ResultsDir = Annotated[Optional[Path], typer.Option(
    "--results", help="Results folder for the generated images (default: <data>/results).")]
Benchmarks = Annotated[Optional[list[str]], typer.Option("--benchmark", help="Only these benchmarks (repeatable).")]


def _results(dataset: str | None, results: Path | None) -> list[dict[str, Any]] | None:
    """The scored results to export, or None when a prepared dataset is exported."""
    if dataset is not None:
        if results is not None:
            raise ConfigError("--dataset and --results: choose one (a prepared dataset, or the generated images)")
        return None
    from gill_eval.bench.results import load_results, results_root

    folder = results or results_root()
    found = load_results(folder)
    if not found:
        raise InputError(f"{folder}: no result.json files; run a `gill-eval bench` command first, or pass --dataset")
    return found


@app.command("hf")
def export_hf_command(
    out: Annotated[Path, typer.Argument(help="Destination folder (data/*.parquet and README.md).")],
    dataset: Dataset = None,
    results: ResultsDir = None,
    benchmark: Benchmarks = None,
    as_json: JsonFlag = False,
) -> None:
    """Hugging Face Parquet with a dataset card: `datasets.load_dataset("parquet", data_dir=OUT)` opens it."""
    from gill_eval.console import emit_json, info
    from gill_eval.exports.hf import export_hf

    summary = export_hf(out, dataset, _results(dataset, results), benchmark)
    if as_json:
        emit_json(summary)
    else:
        info(f"export hf: {summary['rows']} rows in {summary['files']} Parquet file(s) -> {out} (card {summary['card']})")


@app.command("webdataset")
def export_webdataset_command(
    out: Annotated[Path, typer.Argument(help="Destination folder (<name>-NNNNN.tar shards).")],
    dataset: Dataset = None,
    results: ResultsDir = None,
    benchmark: Benchmarks = None,
    as_json: JsonFlag = False,
) -> None:
    """Reference or generated images as webdataset tar shards (image, caption, JSON metadata per sample)."""
    from gill_eval.console import emit_json, info
    from gill_eval.exports.wds import export_webdataset

    summary = export_webdataset(out, dataset, _results(dataset, results), benchmark)
    if as_json:
        emit_json(summary)
    else:
        info(f"export webdataset: {summary['samples']} samples in {summary['shards']} shard(s) -> {out} "
             f"({summary['without_image']} rows without an image left out)")
