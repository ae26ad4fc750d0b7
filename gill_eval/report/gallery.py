"""What the HTML gallery shows: one page of rows per benchmark x context, Table 5 and Table 6, from result files.

Rows are plain data (``html.py`` writes them as ``data/<page>.js`` for ``assets/gallery.js`` to render).
Every row carries ``k``, its numeric sort keys in the order of the page's ``keys`` (a metric of one model
averaged over seeds, a rank, a probability; null where missing), and a generated image's cell carries
``v``, its metric values in the order of ``metrics``: lists, not objects, to keep a 75,000-image page
small. The browser sorts by one key or by the difference of two (e.g. where GILL beats SD most). Images are written once through ``ImageFiles``; a row names an
image by its stem. Partial runs (``--limit``) get their own pages and are never mixed with full runs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from gill_eval.bench.results import SCORES_FILE, load_scores
from gill_eval.console import make_progress
from gill_eval.errors import GillEvalError
from gill_eval.report.generated import is_generation_result, iter_generated, safe_name
from gill_eval.report.tables import METRIC_TITLES
from gill_eval.report.thumbnails import ImageFiles

SHOWN_METRICS = {"clip_similarity": True, "lpips": False, "clip_score": True}  # metric -> higher is better
CONTEXT_CHUNK = 32
DIGITS = 6  # decimals kept in the page data (the site shows 3-4; full precision stays in scores.parquet)


@dataclass
class Page:
    """One HTML page: its file stem, title and the data its script renders."""

    slug: str
    title: str
    kind: str  # "generation" | "retrieval" | "decision"
    benchmark: str
    context: str
    data: dict[str, Any] = field(default_factory=dict)
    limit: int = 0  # N of a partial --limit N run, else 0


def partial_tag(result: dict[str, Any]) -> str:
    """"" for a full run, "limit<N>" for a ``--limit N`` run (its pages and table rows stay apart)."""
    limit = result.get("limit")
    return f"limit{limit}" if limit else ""


def page_slug(benchmark: str, context: str, tag: str = "") -> str:
    return safe_name("-".join(p for p in (benchmark, context, tag) if p))


def natural_key(text: str) -> list[str | int]:
    """Sort key reading digit runs as numbers, so contexts order as r1, r5, r10 (not r1, r10, r5)."""
    return [int(part) if i % 2 else part for i, part in enumerate(re.split(r"([0-9]+)", text))]


def _finite(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def example_scores(result: dict[str, Any]) -> tuple[set[str], dict[tuple[str, int], dict[str, float]]]:
    """The result's example ids and its per-(example, seed) values of the shown metrics."""
    path = Path(result["_dir"]) / SCORES_FILE
    if not path.is_file():
        return set(), {}
    df = pd.read_parquet(path, columns=["example_id", "seed", "metric", "value", "status"])
    values: dict[tuple[str, int], dict[str, float]] = {}
    ok = df[df["metric"].isin(list(SHOWN_METRICS)) & (df["status"] == "success")]
    for eid, seed, metric, value in zip(ok["example_id"], ok["seed"], ok["metric"], ok["value"], strict=True):
        values.setdefault((str(eid), int(seed)), {})[metric] = float(value)
    return set(map(str, df["example_id"])), values


def _context_items(context: Iterable[Any], files: ImageFiles) -> list[dict[str, str]]:
    return [{"text": item} if isinstance(item, str) else {"img": files.dataset_image(item)} for item in context]


def _views(result: dict[str, Any], ids: list[str], files: ImageFiles) -> tuple[dict[str, dict[str, Any]], str | None]:
    """What the model saw and the ground truth for each example, or a note saying why they are missing."""
    from gill_eval.bench.api import make_benchmark

    try:
        bench = make_benchmark(result["benchmark"], result.get("protocol", {}).get("num"))
        job = bench.job(result["context"])
        if job.data_hash != result["data"]["manifest_hash"]:
            return {}, f"the prepared {bench.dataset.name} changed since this run: context and ground truth not shown"
        views: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), CONTEXT_CHUNK):
            chunk = ids[start : start + CONTEXT_CHUNK]
            refs = bench.references(chunk) if bench.kind == "similarity" else {}
            for eid, ctx in zip(chunk, job.build_contexts(chunk), strict=True):
                views[eid] = {"ctx": _context_items(ctx, files),
                              "truth": files.dataset_image(refs[eid]) if eid in refs else None}
        return views, None
    except GillEvalError as exc:
        return {}, f"context and ground truth unavailable ({exc})"


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), DIGITS) if values else None


def generation_page(results: list[dict[str, Any]], files: ImageFiles) -> Page:
    """Rows of one benchmark x context: context, ground truth, each model's image per seed with its scores."""
    first = results[0]
    benchmark, context, tag = first["benchmark"], first["context"], partial_tag(first)
    labels = sorted({r["model"]["label"] for r in results})
    shown_metrics = {m: hb for m, hb in SHOWN_METRICS.items() if any(m in (r.get("metrics") or {}) for r in results)}
    cells: dict[str, dict[str, list[dict[str, Any]]]] = {label: {} for label in labels}
    models: dict[str, dict[str, Any]] = {}
    values_of: dict[str, dict[tuple[str, int], dict[str, float]]] = {}
    seeds: set[int] = set()
    with make_progress() as progress:
        task = progress.add_task(f"gallery {benchmark} {context}", total=None)
        for r in sorted(results, key=lambda r: r["model"]["label"]):
            label, fp = r["model"]["label"], r["model"]["fingerprint_hash"]
            prefix = f"gen/{safe_name(benchmark)}/{fp}/{safe_name(context)}"
            models[label] = {"name": r["model"]["name"], "fingerprint_hash": fp, "prefix": prefix}
            example_set, values = example_scores(r)
            values_of[label] = values
            for g in iter_generated(r):
                if example_set and g.example_id not in example_set:
                    continue  # generated in a shared block but outside this run's examples
                seeds.add(g.seed)
                shown = values.get((g.example_id, g.seed), {})
                cell: dict[str, Any] = {"s": g.seed, "v": [round(shown[m], DIGITS) if m in shown else None
                                                           for m in shown_metrics]}
                if g.png is not None:
                    files.generated(f"{prefix}/s{g.seed}/{safe_name(g.example_id)}", g.png)
                else:
                    cell["err"] = f"{g.status}: {g.error_message}"
                cells[label].setdefault(g.example_id, []).append(cell)
                progress.advance(task)
    ids = sorted({eid for per in cells.values() for eid in per})
    views, note = _views(first, ids, files)
    key_defs = [{"id": f"{m}|{label}", "title": f"{METRIC_TITLES[m]} {label}", "higher": hb}
                for m, hb in shown_metrics.items() for label in labels]
    rows = []
    for eid in ids:
        view = views.get(eid, {"ctx": [], "truth": None})
        keys = {}
        for label in labels:
            for metric in shown_metrics:
                keys[f"{metric}|{label}"] = _mean([values_of[label][(eid, c["s"])][metric] for c in cells[label].get(eid, [])
                                                   if metric in values_of[label].get((eid, c["s"]), {})])
        text = " ".join(item["text"] for item in view["ctx"] if "text" in item)
        rows.append({"id": eid, "f": safe_name(eid), "ctx": view["ctx"], "truth": view["truth"], "q": f"{eid} {text}",
                     "cells": {label: cells[label].get(eid, []) for label in labels},
                     "k": [keys[kd["id"]] for kd in key_defs]})
    title = f"{benchmark} {context}" + (f" (partial: first {first['limit']} examples)" if tag else "")
    data = {"kind": "generation", "title": title, "benchmark": benchmark, "context": context, "models": models,
            "labels": labels, "seeds": sorted(seeds), "metrics": list(shown_metrics),
            "metric_titles": {m: METRIC_TITLES[m] for m in shown_metrics}, "keys": key_defs, "rows": rows,
            "note": note, "meaningless": any(r.get("meaningless") for r in results), "partial": bool(tag)}
    return Page(page_slug(benchmark, context, tag), title, "generation", benchmark, context, data, first.get("limit") or 0)


def retrieval_page(results: list[dict[str, Any]], files: ImageFiles) -> Page:
    """Table 5: each story's query context, target and every model's top candidates with their scores."""
    from gill_eval.bench.vist import VistBenchmark
    from gill_eval.bench.vist_retrieval import CONTEXT, NAME, TOPK_FILE

    first = results[0]
    tag = partial_tag(first)
    labels = sorted({r["model"]["label"] for r in results})
    per: dict[str, dict[str, dict[str, Any]]] = {}
    for r in results:
        path = Path(r["_dir"]) / TOPK_FILE
        if path.is_file():
            per[r["model"]["label"]] = {str(row["example_id"]): row for row in pd.read_parquet(path).to_dict("records")}
    ids = sorted({eid for rows in per.values() for eid in rows})
    note, stems = None, {}
    views: dict[str, dict[str, Any]] = {}
    try:
        bench = VistBenchmark()
        wanted = sorted({k for rows in per.values() for row in rows.values() for k in row["candidates"]})
        for start in range(0, len(wanted), CONTEXT_CHUNK):
            images = bench.dataset.images(wanted[start : start + CONTEXT_CHUNK])
            stems.update({key: files.dataset_image(im) for key, im in images.items()})
        first_probe = dict(first, benchmark="vist", context=CONTEXT)
        views, note = _views(first_probe, ids, files)
    except GillEvalError as exc:
        note = f"images unavailable ({exc})"
    rows = []
    for eid in ids:
        view = views.get(eid, {"ctx": [], "truth": None})
        cells, keys, target = {}, {}, None
        for label in labels:
            row = per.get(label, {}).get(eid)
            if row is None:
                continue
            target = row["target"]
            cells[label] = {"rank": int(row["rank"]) + 1, "top": [
                {"key": k, "score": _finite(s), "img": stems.get(k), "hit": k == row["target"]}
                for k, s in zip(row["candidates"], row["scores"], strict=True)]}
            keys[f"rank|{label}"] = float(int(row["rank"]) + 1)
        text = " ".join(item["text"] for item in view["ctx"] if "text" in item)
        rows.append({"id": eid, "ctx": view["ctx"], "truth": view["truth"], "target": target, "cells": cells,
                     "k": [keys.get(f"rank|{label}") for label in labels], "q": f"{eid} {text}"})
    title = "Table 5. VIST contextual image retrieval" + (f" (partial: first {first['limit']} stories)" if tag else "")
    data = {"kind": "retrieval", "title": title, "labels": labels, "rows": rows, "note": note,
            "keys": [{"id": f"rank|{label}", "title": f"target rank {label}", "higher": False} for label in labels],
            "meaningless": any(r.get("meaningless") for r in results), "partial": bool(tag)}
    return Page(page_slug("table5", "", tag), title, "retrieval", NAME, CONTEXT, data, first.get("limit") or 0)


def text_page(results: list[dict[str, Any]], files: ImageFiles) -> Page:
    """Table 7: per example the image and prompt, the references, and each model's answer with its score."""
    from gill_eval.bench.api import make_benchmark
    from gill_eval.bench.text import read_answers

    first = results[0]
    tag = partial_tag(first)
    bench = make_benchmark(first["benchmark"])
    bench.limit = first.get("limit")
    bench.options = {**bench.options, **{k: v for k, v in first.get("protocol", {}).items() if k in bench.options}}
    primary = "vqa_accuracy" if "vqa_accuracy" in first.get("metrics", {}) else "cider"
    labels = sorted({r["model"]["label"] for r in results})
    answers = {r["model"]["label"]: read_answers(r) for r in results}
    scores = {}
    for r in results:
        frame = load_scores(r, primary)
        scores[r["model"]["label"]] = {(str(e), int(s)): {primary: float(v)}
                                       for e, s, v in zip(frame["example_id"], frame["seed"], frame["value"], strict=True)}
    rows, note = [], None
    try:
        examples = bench.selected()
    except GillEvalError as exc:
        examples, note = [], f"examples unavailable ({exc})"
    for start in range(0, len(examples), CONTEXT_CHUNK):
        chunk = examples[start:start + CONTEXT_CHUNK]
        for example, context in zip(chunk, bench.contexts(chunk), strict=True):
            eid = example["key"]
            given = list(example.get("captions") or example.get("answers") or [])
            refs = [ref if given.count(ref) == 1 else f"{ref} (x{given.count(ref)})" for ref in dict.fromkeys(given)]
            cells, keys = {}, []
            for label in labels:
                frame = answers[label][answers[label]["example_id"] == eid]
                cells[label] = [{"s": int(seed), "a": answer, "v": _finite(scores[label].get((eid, int(seed)), {}).get(primary))}
                                for seed, answer in zip(frame["seed"], frame["answer"], strict=True)]
                values = [c["v"] for c in cells[label] if c["v"] is not None]
                keys.append(sum(values) / len(values) if values else None)
            rows.append({"id": eid, "ctx": [{"img": files.dataset_image(context[0])}, {"text": context[1]}],
                         "refs": refs, "cells": cells, "k": keys,
                         "q": " ".join([eid, context[1], *refs, *(c["a"] for cs in cells.values() for c in cs)])})
    title = f"Table 7. {first['benchmark']}" + (f" (partial: first {first['limit']})" if tag else "")
    data = {"kind": "text", "title": title, "labels": labels, "rows": rows, "note": note, "metric": primary,
            "keys": [{"id": f"{primary}|{label}", "title": f"{primary} {label}", "higher": True} for label in labels],
            "meaningless": any(r.get("meaningless") for r in results), "partial": bool(tag)}
    return Page(page_slug(first["benchmark"], first["context"], tag), title, "text", first["benchmark"],
                first["context"], data, first.get("limit") or 0)


def decision_pages(results_dir: Path) -> list[Page]:
    """Table 6: one page per ``decision score`` output found under ``<results>/decision/``."""
    import json

    from gill_eval.decision.prompt_rows import PROMPTS_FILE, SUMMARY_FILE

    folders = sorted(p.parent for p in (Path(results_dir) / "decision").glob(f"*/{PROMPTS_FILE}"))
    pages = []
    for folder in folders:
        summary = json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8"))
        df = pd.read_parquet(folder / PROMPTS_FILE)
        rows = []
        for r in df.to_dict("records"):
            p = _finite(r["p_ret"])
            verdict = "" if r["decision"] is None else ("right" if r["decision"] == r["label"] else "wrong")
            rows.append({"id": r["key"], "prompt": r["prompt"], "split": r["split"], "label": r["label"],
                         "votes": list(r["votes"]), "p": p, "decision": r["decision"], "verdict": verdict,
                         "cos": _finite(r["max_cosine"]),
                         "k": [p, _finite(r["max_cosine"])],
                         "q": f"{r['key']} {r['prompt']} split:{r['split']} label:{r['label']} "
                              f"decision:{r['decision']} {verdict}"})
        slug = "table6" if len(folders) == 1 else page_slug("table6", folder.name)
        title = f"Table 6. Retrieve or generate ({summary.get('annotations')}, {summary.get('classifier') or 'no classifier'})"
        data = {"kind": "decision", "title": title, "rows": rows, "summary": summary, "note": None,
                "keys": [{"id": "p_ret", "title": "classifier p(ret)", "higher": True},
                         {"id": "max_cosine", "title": "heuristic max cosine", "higher": True}],
                "meaningless": False, "partial": False}
        pages.append(Page(slug, title, "decision", "decision", summary.get("annotations", ""), data))
    return pages


def build_pages(results: list[dict[str, Any]], results_dir: Path, files: ImageFiles) -> list[Page]:
    """Every page the results support, in report order (Tables 1, 2, 5, FID, then Table 6)."""
    from gill_eval.bench.registry import RETRIEVAL, TEXT, benchmarks

    specs = {spec.name: spec for spec in benchmarks()}
    retrieval = {name for name, spec in specs.items() if spec.kind == RETRIEVAL}
    text = {name for name, spec in specs.items() if spec.kind == TEXT}
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in results:
        if is_generation_result(r) or (r.get("status") == "ok" and r.get("benchmark") in retrieval | text):
            groups.setdefault((r["benchmark"], r["context"], partial_tag(r)), []).append(r)
    order = {name: spec.order for name, spec in specs.items()}
    pages = []
    def page_order(item: tuple[tuple[str, str, str], Any]) -> tuple[Any, ...]:
        (benchmark, context, tag), _ = item
        return order.get(benchmark, 1000), benchmark, natural_key(context), tag

    for (benchmark, _context, _tag), group in sorted(groups.items(), key=page_order):
        if benchmark in text:
            pages.append(text_page(group, files))
        else:
            pages.append(retrieval_page(group, files) if benchmark in retrieval else generation_page(group, files))
    return pages + decision_pages(results_dir)
