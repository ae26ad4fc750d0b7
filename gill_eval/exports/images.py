"""``gill-eval export images DIR``: every generated image of the scored results as a PNG file, with a CSV index.

Layout: ``DIR/<benchmark>/<context>/<model label>/seed<S>/<example id>.png`` (a partial ``--limit N``
run's context folder is ``<context>-limit<N>``), so each (benchmark, context, model, seed) is one folder,
as clean-fid and torchmetrics take image sets. The files are the stored PNG bytes, unchanged; a file that
exists is not written again. ``DIR/index.csv`` lists every row (failed generations too, without a file)
with its prompt and its per-example CLIP similarity and LPIPS where the benchmark has them.

Prompts (``example_prompts``, shared by every images export): neither the generation shards nor the scores
hold the model's input, so each example's context is rebuilt from the prepared dataset exactly as the
benchmark built it for the run (``bench.job(context).build_contexts``), once the prepared data is checked to
be the run's (its manifest hash). The prompt is the context's text (``models.base.join_captions``: its
captions in order joined with one space; for VIST the story sentences the context holds, the last one being
the target's, while the context name says where images were interleaved). When the prepared data changed or
is gone, the prompt is left empty and a warning names the run.
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
from gill_eval.errors import GillEvalError, InputError
from gill_eval.report.gallery import SHOWN_METRICS, example_scores, partial_tag
from gill_eval.report.generated import is_generation_result, iter_generated, safe_name
from gill_eval.report.render import latest_results
from gill_eval.store import atomic_write_bytes, atomic_write_text

INDEX = "index.csv"
COLUMNS = ["benchmark", "context", "model", "model_fingerprint", "seed", "example_id", "prompt", "status", "path",
           "limit", *SHOWN_METRICS]
PROMPT_CHUNK = 32  # examples whose contexts are rebuilt at once (a VIST context may hold four images)


@dataclass
class ExportSummary:
    folder: Path
    rows: int
    written: int

    def as_dict(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "index": str(self.folder / INDEX), "rows": self.rows, "written": self.written}


def example_prompts(result: dict[str, Any], example_ids: set[str]) -> tuple[dict[str, str], str | None]:
    """(example id -> prompt, None), or ({}, why not) when the run's prepared data cannot be read back."""
    from gill_eval.bench.api import make_benchmark
    from gill_eval.models.base import join_captions

    try:
        bench = make_benchmark(result["benchmark"], result.get("protocol", {}).get("num"))
        job = bench.job(result["context"])
        if job.data_hash != result["data"]["manifest_hash"]:
            return {}, f"the prepared {bench.dataset.name} changed since this run"
        ids = sorted(example_ids)
        prompts: dict[str, str] = {}
        for start in range(0, len(ids), PROMPT_CHUNK):
            chunk = ids[start:start + PROMPT_CHUNK]
            prompts.update(zip(chunk, (join_captions(context) for context in job.build_contexts(chunk)), strict=True))
        return prompts, None
    except GillEvalError as exc:
        return {}, str(exc)


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
        # generated in a shared block but outside this run's examples: left out
        rows = [g for g in iter_generated(r) if not examples or g.example_id in examples]
        prompts, why = example_prompts(r, {g.example_id for g in rows})
        if why is not None:
            info(f"[yellow]{r['benchmark']} {r['context']} {r['model']['label']}: prompts left empty ({why})[/]")
        for g in rows:
            record = {"benchmark": r["benchmark"], "context": r["context"], "model": r["model"]["label"],
                      "model_fingerprint": r["model"]["fingerprint_hash"], "seed": g.seed,
                      "example_id": g.example_id, "prompt": prompts.get(g.example_id), "status": g.status,
                      "limit": r.get("limit") or "", **metrics.get((g.example_id, g.seed), {})}
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
