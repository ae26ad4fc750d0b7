"""A whole report: the paper tables that have results, provenance, and the plots, as Markdown and JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gill_eval.report.plots import plot_context_curves
from gill_eval.bench.registry import TEXT, benchmarks
from gill_eval.report.tables import layouts, paper_tables, provenance_rows, render_table

_OPTION_TEXT = 32  # characters of an option value shown in a label that tells two runs apart
_UNSET = "(unset)"  # an option a run does not record (e.g. one added to the model after that run)


def run_options(result: dict[str, Any], text_benchmarks: set[str]) -> dict[str, Any]:
    """What a run asked for: the model's output-affecting options (its fingerprint) and, for a text benchmark
    (``text_benchmarks``), the benchmark's prompt options (its protocol less the seeds)."""
    options = dict((result["model"].get("fingerprint") or {}).get("options") or {})
    if result["benchmark"] in text_benchmarks:
        options.update((k, v) for k, v in (result.get("protocol") or {}).items() if k != "seeds")
    return options


def _canonical(options: dict[str, Any]) -> str:
    return json.dumps(options, sort_keys=True, default=str)


def _option_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= _OPTION_TEXT else text[: _OPTION_TEXT - 1] + "…"


def _told_apart(results: list[dict[str, Any]], options: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """``results`` with the label of every run whose label, in its benchmark (scorer preset, --limit), also
    names runs with other options extended by the options that differ: ``sd [text_cleanup=none]``."""
    def group(r: dict[str, Any]) -> tuple:
        return r["benchmark"], r["model"]["label"], r["scorers"].get("preset"), r.get("limit") or 0

    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault(group(r), []).append(r)
    differing: dict[tuple, list[str]] = {}
    for key, members in groups.items():
        names = sorted({name for r in members for name in options[id(r)]})
        differing[key] = [n for n in names
                          if len({_canonical({"v": options[id(r)].get(n, _UNSET)}) for r in members}) > 1]
    out: list[dict[str, Any]] = []
    for r in results:  # in the given order
        names = differing[group(r)]
        if names:
            tag = ", ".join(f"{n}={_option_text(options[id(r)].get(n, _UNSET))}" for n in names)
            r = {**r, "model": {**r["model"], "label": f"{r['model']['label']} [{tag}]"}}
        out.append(r)
    return out


def latest_results(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One result per (benchmark, label, context, scorer preset, --limit, run options): the most recent run.

    Runs of one label with other options (``run_options``: sd's ``text_cleanup``, a Table 7 prompt) are
    never mixed: each keeps its own latest result, labelled with the options that tell the runs apart
    (docs/python-api.md, "Which results a report shows")."""
    text_benchmarks = {spec.name for spec in benchmarks() if spec.kind == TEXT}
    best: dict[tuple, dict[str, Any]] = {}
    options: dict[int, dict[str, Any]] = {}
    for r in results:
        mine = run_options(r, text_benchmarks)
        key = (r["benchmark"], r["model"]["label"], r["context"], r["scorers"].get("preset"), r.get("limit") or 0,
               _canonical(mine))
        if key not in best or r.get("run", {}).get("time", "") >= best[key].get("run", {}).get("time", ""):
            best[key], options[id(r)] = r, mine
    return _told_apart(list(best.values()), options)


def render_report(
    results: list[dict[str, Any]],
    title: str = "gill-eval report",
    baseline: str | None = None,
    preamble: list[str] | None = None,
    plots_dir: Path | None = None,
    gallery_links: dict[tuple[str, int], list[tuple[str, str]]] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Markdown text and the same content as JSON; ``gallery_links`` (see ``html.Gallery.links``) adds page links.

    Partial runs (``--limit N``) get their own section per N, never rows in the full tables."""
    results = latest_results(results)
    full = [r for r in results if not r.get("limit")]
    paper = paper_tables()
    lines = [f"# {title}", ""]
    lines += (preamble or []) + ([""] if preamble else [])
    lines += [f"Published numbers: {paper['source']}", ""]
    data: dict[str, Any] = {"title": title, "baseline": baseline, "tables": [], "plots": [], "partial_tables": []}
    for limit in [0, *sorted({r["limit"] for r in results if r.get("limit")})]:
        section = [r for r in results if (r.get("limit") or 0) == limit]
        if limit:
            lines += [f"## Partial runs: first {limit} examples (--limit {limit})", "",
                      "> Not comparable with the paper or with full runs; shown apart from them.", ""]
        for layout in layouts():
            table = render_table(layout, section, baseline, paper if not limit else {})
            if table is not None:
                lines += [table.markdown, ""]
                links = (gallery_links or {}).get((layout.benchmark, limit))
                if links:
                    lines += ["Gallery: " + " · ".join(f"[{name}]({path})" for name, path in links), ""]
                data["partial_tables" if limit else "tables"].append({**table.data, "limit": limit or None})
    if plots_dir is not None:
        for spec, metric in ((spec, metric) for spec in benchmarks() if spec.plot for metric in spec.metrics):
            benchmark = spec.name
            png = plot_context_curves(full, benchmark, metric, Path(plots_dir) / f"{benchmark}_{metric}.png", spec.plot)
            if png is not None:
                data["plots"].append(str(png))
                lines += [f"![{benchmark} {metric}]({png.name if png.parent == Path(plots_dir) else png})", ""]
    lines += ["### Provenance", ""] + provenance_rows(results) + [""]
    runs = sorted({(r["run"]["gill_eval_version"], r["run"].get("git_hash") or "no git") for r in results if "run" in r})
    lines += ["- Run: " + "; ".join(f"gill-eval {v} ({g[:10]})" for v, g in runs), ""]
    data["results"] = [{k: v for k, v in r.items() if k != "_dir"} for r in results]
    return "\n".join(lines).rstrip() + "\n", data


def render(results: Path | list[dict[str, Any]] | None = None, *, out: Path | None = None, baseline: str | None = None,
           title: str = "gill-eval report") -> tuple[str, dict[str, Any]]:
    """The report of ``results`` (a results folder, default the data root's, or loaded result dicts) as
    Markdown and JSON, as ``gill-eval report`` renders it; with ``out``, also written there with its plots."""
    from gill_eval.bench.results import load_results
    from gill_eval.errors import InputError
    from gill_eval.store import atomic_write_text

    found = results if isinstance(results, list) else load_results(results)
    if not found:
        raise InputError(f"{results or 'the results root'}: no result.json files; run a `gill-eval bench` command first")
    markdown, data = render_report(found, title=title, baseline=baseline,
                                   plots_dir=Path(out).parent if out is not None else None)
    if out is not None:
        atomic_write_text(Path(out), markdown)
    return markdown, data
