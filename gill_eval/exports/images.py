"""``gill-eval export images DIR``: every generated image of the scored results as a PNG file, with a CSV index.

Layout: ``DIR/<benchmark>/<context>/<model label>/seed<S>/<example id>.png`` (a partial ``--limit N``
run's context folder is ``<context>-limit<N>``), so each (benchmark, context, model, seed) is one folder,
as clean-fid and torchmetrics take image sets. The files are the stored PNG bytes, unchanged; a file that
exists is not written again. ``DIR/index.csv`` lists every row (failed generations too, without a file)
with its per-example CLIP similarity and LPIPS where the benchmark has them.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import pandas as pd
import typer

from gill_eval.bench.results import load_results, results_root
from gill_eval.console import emit_json, info, make_progress
from gill_eval.errors import InputError
from gill_eval.report.gallery import SHOWN_METRICS, example_scores, partial_tag
from gill_eval.report.generated import is_generation_result, iter_generated, safe_name
from gill_eval.report.render import latest_results
from gill_eval.store import atomic_write_bytes, atomic_write_text

INDEX = "index.csv"
COLUMNS = ["benchmark", "context", "model", "model_fingerprint", "seed", "example_id", "status", "path", "limit",
           *SHOWN_METRICS]


@dataclass
class ExportSummary:
    folder: Path
    rows: int
    written: int

    def as_dict(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "index": str(self.folder / INDEX), "rows": self.rows, "written": self.written}


def generated_records(results: list[dict[str, Any]],
                      benchmarks: list[str] | None = None) -> Iterator[tuple[Path, dict[str, Any], bytes | None]]:
    """(file path without suffix, record, PNG bytes or None) of every generated image of the latest scored
    generation results, one (benchmark, context, model, seed) folder each; shared by every images export."""
    chosen = [r for r in latest_results(results) if is_generation_result(r) and (not benchmarks or r["benchmark"] in benchmarks)]
    if not chosen:
        raise InputError("no scored generation results to export (run `gill-eval bench vist|visdial|coco-fid|cc3m-fid` first)")
    for r in sorted(chosen, key=lambda r: (r["benchmark"], r["context"], r["model"]["label"], partial_tag(r))):
        context_dir = safe_name("-".join(p for p in (r["context"], partial_tag(r)) if p))
        base = Path(safe_name(r["benchmark"])) / context_dir / safe_name(r["model"]["label"])
        examples, metrics = example_scores(r)
        for g in iter_generated(r):
            if examples and g.example_id not in examples:
                continue  # generated in a shared block but outside this run's examples
            record = {"benchmark": r["benchmark"], "context": r["context"], "model": r["model"]["label"],
                      "model_fingerprint": r["model"]["fingerprint_hash"], "seed": g.seed,
                      "example_id": g.example_id, "status": g.status, "limit": r.get("limit") or "",
                      **metrics.get((g.example_id, g.seed), {})}
            yield base / f"seed{g.seed}" / safe_name(g.example_id), record, g.png


def export_images(results: list[dict[str, Any]], out: Path, benchmarks: list[str] | None = None) -> ExportSummary:
    """Write the PNG files and ``index.csv`` for ``results`` (the latest per model/context); return counts."""
    records, written = [], 0
    with make_progress() as progress:
        task = progress.add_task("export images", total=None)
        for stem, record, png in generated_records(results, benchmarks):
            rel = stem.with_name(stem.name + ".png") if png is not None else None
            if rel is not None and not (out / rel).is_file():
                atomic_write_bytes(out / rel, png)
                written += 1
            records.append({**record, "path": rel.as_posix() if rel is not None else ""})
            progress.advance(task)
    table = pd.DataFrame.from_records(records).reindex(columns=COLUMNS)
    buf = io.StringIO()
    table.to_csv(buf, index=False)
    atomic_write_text(out / INDEX, buf.getvalue())
    return ExportSummary(out, len(records), written)


def export_images_command(
    out: Annotated[Path, typer.Argument(help="Destination folder (PNG files and index.csv).")],
    results: Annotated[Optional[Path], typer.Option("--results", help="Results folder (default: <data>/results).")] = None,
    benchmark: Annotated[
        Optional[list[str]], typer.Option("--benchmark", help="Only these benchmarks (repeatable).")
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Generated images as PNG files named by benchmark, context, model, seed and example, with a CSV index."""
    folder = results or results_root()
    found = load_results(folder)
    if not found:
        raise InputError(f"{folder}: no result.json files; run a `gill-eval bench` command first")
    summary = export_images(found, out, benchmark)
    if json:
        emit_json(summary.as_dict())
    else:
        info(f"export images: {summary.rows} rows, {summary.written} new PNG files -> {out} (index {out / INDEX})")
