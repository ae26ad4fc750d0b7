"""`gill-eval run pipelines/FILE.toml`: a declared matrix of models x benchmarks x contexts x seeds -> report.

A pipeline file makes a paper table reproducible as one command. Every key is checked: a typo is an error
naming the file and key, never ignored. Generation is resumable, so rerunning a pipeline after an
interruption only does what is missing, and the report is rendered from exactly the results of this run.

Format::

    [pipeline]
    title = "Table 1: VIST"          # report title
    report = "reports/table1.md"     # relative to the current folder
    baseline = "sd"                  # row label for the Δ columns (optional)
    seeds = "0-4"
    scorers = "real"                 # or "tiny" (random networks: meaningless numbers)
    device = "cpu"
    batch_size = 8

    [models.sd]                      # a row label
    name = "sd"                      # registered model name
    options = { preset = "gill" }    # typed model options

    [[run]]
    benchmark = "vist"               # vist | visdial | coco-fid | cc3m-fid | vist-retrieval
    models = ["sd"]
    contexts = ["1c", "5c", "5c4i"]  # VIST NcMi labels, VisDial "r1".."r10"; default: the paper's
    num = 30000                      # FID benchmarks only
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from gill_eval.console import emit_json, info
from gill_eval.errors import ConfigError, InputError

_PIPELINE_KEYS = {"title", "report", "baseline", "seeds", "scorers", "device", "batch_size", "reference", "preamble",
                  "fid_bootstrap"}
_MODEL_KEYS = {"name", "options"}
_RUN_KEYS = {"benchmark", "models", "contexts", "num"}


@dataclass
class Pipeline:
    path: Path
    title: str
    report: Path
    seeds: list[int]
    models: dict[str, dict[str, Any]]
    runs: list[dict[str, Any]]
    baseline: str | None = None
    scorers: str = "real"
    device: str = "cpu"
    batch_size: int = 8
    reference: str = "gill"
    fid_bootstrap: int = 50
    preamble: list[str] = field(default_factory=list)


def _check_keys(where: str, table: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")


def load_pipeline(path: Path) -> Pipeline:
    """Parse and validate a pipeline file."""
    from gill_eval.bench.api import BENCHMARKS
    from gill_eval.bench.contexts import parse_seeds

    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such pipeline file") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: invalid TOML ({exc})") from None
    _check_keys(str(path), doc, {"pipeline", "models", "run"})
    head = doc.get("pipeline", {})
    _check_keys(f"{path} [pipeline]", head, _PIPELINE_KEYS)
    if "report" not in head:
        raise ConfigError(f"{path} [pipeline]: missing key 'report'")
    models = doc.get("models", {})
    for label, spec in models.items():
        _check_keys(f"{path} [models.{label}]", spec, _MODEL_KEYS)
        if "name" not in spec:
            raise ConfigError(f"{path} [models.{label}]: missing key 'name'")
    runs = doc.get("run", [])
    if not runs:
        raise ConfigError(f"{path}: no [[run]] entries")
    for i, run in enumerate(runs):
        _check_keys(f"{path} [[run]] #{i + 1}", run, _RUN_KEYS)
        if run.get("benchmark") not in BENCHMARKS:
            raise ConfigError(f"{path} [[run]] #{i + 1}: benchmark {run.get('benchmark')!r}; expected one of {', '.join(BENCHMARKS)}")
        for label in run.get("models", []):
            if label not in models:
                raise ConfigError(f"{path} [[run]] #{i + 1}: model {label!r} is not declared under [models]")
    baseline = head.get("baseline")
    if baseline is not None and baseline not in models:
        raise ConfigError(f"{path} [pipeline]: baseline {baseline!r} is not declared under [models]")
    return Pipeline(path, head.get("title", path.stem), Path(head["report"]), parse_seeds(str(head.get("seeds", "0"))),
                    models, runs, baseline, head.get("scorers", "real"), head.get("device", "cpu"),
                    int(head.get("batch_size", 8)), head.get("reference", "gill"), int(head.get("fid_bootstrap", 50)),
                    list(head.get("preamble", [])))


def execute(pipeline: Pipeline, shard: str | None = None) -> tuple[list[dict[str, Any]], Path | None]:
    """Run every (run, model) of the pipeline; render the report when all results are in."""
    from gill_eval.bench import api
    from gill_eval.bench.scorers import ScorerSpec
    from gill_eval.report.render import render_report
    from gill_eval.store import atomic_write_text, resolve_shard_spec

    scorer = ScorerSpec(preset=pipeline.scorers, device=pipeline.device)
    spec = resolve_shard_spec(shard)
    results: list[dict[str, Any] | None] = []
    for run in pipeline.runs:
        for label in run.get("models", []):
            model = pipeline.models[label]
            info(f"pipeline {pipeline.path.name}: {run['benchmark']} x {label}")
            results += api.run(run["benchmark"], model["name"], {k: v for k, v in model.get("options", {}).items()},
                               run.get("contexts"), pipeline.seeds, shard=spec, batch_size=pipeline.batch_size,
                               scorer=scorer, reference=pipeline.reference, label=label, num=run.get("num"),
                               fid_bootstrap=pipeline.fid_bootstrap)
    done = [r for r in results if r is not None]
    if len(done) < len(results):
        info(f"{len(results) - len(done)} results wait for other workers; rerun the pipeline to render the report")
        return done, None
    markdown, _ = render_report(done, pipeline.title, pipeline.baseline, pipeline.preamble, plots_dir=pipeline.report.parent)
    atomic_write_text(pipeline.report, markdown)
    info(f"report written to {pipeline.report}")
    return done, pipeline.report


def run_pipeline(
    file: Annotated[Path, typer.Argument(help="A pipeline TOML file (see pipelines/).")],
    shard: Annotated[Optional[str], typer.Option("--shard", help="Worker i/N for the generation stages.")] = None,
    json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Run a declared pipeline: models x benchmarks x contexts x seeds, then the report."""
    results, report_path = execute(load_pipeline(file), shard)
    if json:
        emit_json({"report": str(report_path) if report_path else None,
                   "results": [{k: v for k, v in r.items() if k != "_dir"} for r in results]})
