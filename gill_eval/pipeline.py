"""`gill-eval run pipelines/FILE.toml`: a declared matrix of models x benchmarks x contexts x seeds -> report.

A pipeline file makes a paper table reproducible as one command. Every key is checked against
``schema.PIPELINE`` (gill_eval/schema.py): a typo or a wrong type is an error naming the file, table and key,
never ignored. Generation is resumable, so rerunning a pipeline after an interruption only does what is
missing, and the report is rendered from exactly the results of this run.

Format::

    [pipeline]
    title = "Table 1: VIST"          # report title
    report = "reports/table1.md"     # relative to the current folder
    html = "reports/table1-gallery"  # image gallery folder (default: <report stem>-gallery beside the report)
    baseline = "sd"                  # row label for the Δ columns (optional)
    seeds = "0-4"
    scorers = "real"                 # or "tiny" (random networks: meaningless numbers)
    device = "auto"                  # scoring networks: CUDA when available (auto), cpu, cuda:N
    batch_size = 8

    [models.sd]                      # a row label
    name = "sd"                      # registered model name
    options = { preset = "gill" }    # typed model options

    [[run]]
    benchmark = "vist"               # a registered benchmark (`gill-eval bench list`)
    models = ["sd"]
    contexts = ["1c", "5c", "5c4i"]  # VIST NcMi labels, VisDial "r1".."r10"; default: the paper's
    num = 30000                      # FID benchmarks only
    limit = 10                       # optional: the first 10 examples only (a partial run)
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from gill_eval.console import emit_json, info
from gill_eval.errors import ConfigError, InputError
from gill_eval.schema import PIPELINE, validate


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
    device: str = "auto"
    batch_size: int = 8
    preamble: list[str] = field(default_factory=list)
    html: Path | None = None  # the gallery's folder (default: beside the report, see gallery_dir)

    @property
    def gallery_dir(self) -> Path:
        return self.html if self.html is not None else self.report.with_name(f"{self.report.stem}-gallery")


def load_pipeline(path: Path) -> Pipeline:
    """Parse and validate a pipeline file."""
    from gill_eval.bench.contexts import parse_seeds
    from gill_eval.bench.registry import benchmark_names

    try:
        raw = path.read_bytes()
        doc = tomllib.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such pipeline file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: a folder, not a pipeline file") from None
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise InputError(f"{path}: line {line}: not UTF-8 text (byte {exc.start}); save the pipeline as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: invalid TOML ({exc})") from None
    except ValueError as exc:  # an integer of over 4300 digits
        raise InputError(f"{path}: invalid TOML ({str(exc).split(':')[0]})") from None
    validate(PIPELINE, doc, path)  # every key and type (gill_eval/schema.py); what follows checks names
    head, models, runs = doc["pipeline"], doc.get("models", {}), doc.get("run", [])
    if not runs:
        raise ConfigError(f"{path}: no [[run]] entries")
    for i, run in enumerate(runs):
        known = benchmark_names()
        if run.get("benchmark") not in known:
            raise ConfigError(f"{path} [[run]] #{i + 1}: benchmark {run.get('benchmark')!r}; expected one of {', '.join(known)}")
        for label in run.get("models", []):
            if label not in models:
                raise ConfigError(f"{path} [[run]] #{i + 1}: model {label!r} is not declared under [models]")
    baseline = head.get("baseline")
    if baseline is not None and baseline not in models:
        raise ConfigError(f"{path} [pipeline]: baseline {baseline!r} is not declared under [models]")
    return Pipeline(path, head.get("title", path.stem), Path(head["report"]), parse_seeds(str(head.get("seeds", "0"))),
                    models, runs, baseline, head.get("scorers", "real"), head.get("device", "auto"),
                    int(head.get("batch_size", 8)),
                    list(head.get("preamble", [])), Path(head["html"]) if "html" in head else None)


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
                               scorer=scorer, label=label, num=run.get("num"),
                               limit=run.get("limit"))
    done = [r for r in results if r is not None]
    if len(done) < len(results):
        info(f"{len(results) - len(done)} results wait for other workers; rerun the pipeline to render the report")
        return done, None
    from gill_eval.bench.results import results_root
    from gill_eval.report.html import write_gallery

    gallery = write_gallery(done, results_root(), pipeline.gallery_dir, title=pipeline.title)
    markdown, _ = render_report(done, pipeline.title, pipeline.baseline, pipeline.preamble, plots_dir=pipeline.report.parent,
                                gallery_links=gallery.links(pipeline.report.parent))
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
