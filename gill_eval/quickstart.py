"""`gill-eval quickstart`: the real pipeline on the bundled sample, offline.

The sample (``gill_eval.sample``) is served by a loopback HTTP server started here (127.0.0.1, a free
port), so CC3M and VIST go through the same img2dataset download path as the real datasets, including a
few dead links that show up in the coverage. Everything is written under ``<data root>/quickstart/``,
which is cleared first. The sample's image URLs name a fixed host that the server answers for as the
downloads' HTTP proxy, so the prepared data and its hashes are the same whatever port the server got.
The run is a list of steps, one function each: prepare each dataset, features and decision with tiny
models, then the pipeline ``gill_eval/quickstart.toml`` (bench and report).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import http.server
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer

from gill_eval.console import emit_json, info
from gill_eval.datasets.download import DownloadOptions
from gill_eval.pipeline import Pipeline, execute, load_pipeline
from gill_eval.sample.make import SAMPLE_ORIGIN, Sample, build_sample
from gill_eval.store import data_root, remove_in_root
from gill_eval.store.root import set_data_root

PIPELINE_FILE = "quickstart.toml"  # package data: the quickstart matrix


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the sample folder without a log line per request, also as the HTTP proxy of ``SAMPLE_ORIGIN``
    (a proxied request names the whole URL: ``GET http://gill-eval-sample.invalid/cc3m/000.jpg``)."""

    def translate_path(self, path: str) -> str:
        if path.startswith(SAMPLE_ORIGIN + "/"):
            path = path[len(SAMPLE_ORIGIN):]
        return super().translate_path(path)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        return


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[int]:
    """Serve ``folder`` on 127.0.0.1 at a free port (yielded) in a background thread."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="gill-eval-sample-server", daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def _sample_proxy(port: int) -> Iterator[None]:
    """Send plain-HTTP downloads (img2dataset's children inherit the environment) through the sample server,
    which answers for ``SAMPLE_ORIGIN``: the sample's URLs then hold no port, so the prepared files and their
    hashes do not change from run to run. The previous values are restored afterwards."""
    saved = {var: os.environ.get(var) for var in ("http_proxy", "HTTP_PROXY")}
    os.environ.update(dict.fromkeys(saved, f"http://127.0.0.1:{port}"))
    try:
        yield
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def _bypass_proxy_for_loopback() -> None:
    """urllib (and so img2dataset) would send 127.0.0.1 through an http_proxy unless no_proxy names it."""
    for var in ("no_proxy", "NO_PROXY"):
        current = [h for h in os.environ.get(var, "").split(",") if h]
        os.environ[var] = ",".join(current + [h for h in ("127.0.0.1", "localhost") if h not in current])


@dataclass
class Context:
    """What the steps share: the sample's paths, the server's base URL and each step's result by name."""

    sample: Sample
    work_dir: Path
    base_url: str
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def download_options(self) -> DownloadOptions:
        """Small settings for a few dozen images on any machine."""
        return DownloadOptions(processes=1, threads=8, timeout=10.0, shard_size=1000)


def step_prepare_cc3m(ctx: Context) -> dict[str, Any]:
    from gill_eval.datasets.cc3m import prepare_cc3m

    return {split: prepare_cc3m(str(path), split, ctx.download_options)
            for split, path in (("train", ctx.sample.cc3m_train), ("val", ctx.sample.cc3m_val))}


def step_prepare_vist(ctx: Context) -> dict[str, Any]:
    from gill_eval.datasets.vist import prepare_vist

    return prepare_vist(str(ctx.sample.vist_sis), "val", ctx.download_options)  # --store auto: GILL's 224 PNGs


def step_prepare_visdial(ctx: Context) -> dict[str, Any]:
    from gill_eval.datasets.visdial import prepare_visdial

    return prepare_visdial(str(ctx.sample.visdial_dialogs), str(ctx.sample.visdial_images),
                           str(ctx.sample.visdial_dense))


def step_prepare_coco(ctx: Context) -> dict[str, Any]:
    from gill_eval.datasets.coco import prepare_coco

    return prepare_coco(str(ctx.sample.coco_captions), str(ctx.sample.coco_images), num_captions=10, seed=0)


def step_prepare_coco2017(ctx: Context) -> dict[str, Any]:
    from gill_eval.datasets.coco2017 import prepare_coco2017

    return prepare_coco2017(str(ctx.sample.coco2017_captions), str(ctx.sample.coco2017_images))


def step_prepare_vqav2(ctx: Context) -> dict[str, Any]:
    from gill_eval.datasets.vqav2 import prepare_vqav2

    return prepare_vqav2(str(ctx.sample.vqav2_questions), str(ctx.sample.vqav2_annotations),
                         str(ctx.sample.vqav2_train_annotations))


def step_prepare_partiprompts(ctx: Context) -> dict[str, Any]:
    from gill_eval.datasets.partiprompts_prepare import prepare

    return prepare(ctx.base_url + ctx.sample.partiprompts_url_path, verify=True)


def run_features_quickstart(dataset_names: Iterable[str], num_workers: int = 0) -> dict[str, Any]:
    """CLIP features (datasets with ``images/``) and SD targets (datasets whose ``examples/`` have captions)
    for each dataset with the tiny random models, on the CPU: ``{dataset: {stage: summary}}`` plus
    ``"models": "tiny random weights (not real results)"``."""
    import pyarrow.parquet as pq
    import torch

    from gill_eval.features.clip_image import ClipImageStage
    from gill_eval.features.runner import run_stage
    from gill_eval.features.sd_text import SdTextStage
    from gill_eval.models.tiny import tiny_clip_dir, tiny_sd_dir
    from gill_eval.store import dataset_dir, list_shards

    def has_input(stage: type[ClipImageStage] | type[SdTextStage], name: str) -> bool:
        shards = list_shards(dataset_dir(name) / stage.input_subdir)
        return bool(shards) and all(c in pq.read_schema(shards[0]).names for c in stage.columns)

    device = torch.device("cpu")
    clip_stage: ClipImageStage | None = None
    sd_stage: SdTextStage | None = None
    results: dict[str, Any] = {"models": "tiny random weights (not real results)"}
    for name in dataset_names:
        results[name] = {}
        if has_input(ClipImageStage, name):
            clip_stage = clip_stage or ClipImageStage(pretrained=str(tiny_clip_dir()), device=device)
            results[name]["clip"] = run_stage(clip_stage, name, batch_size=32, num_workers=num_workers)
        if has_input(SdTextStage, name):
            sd_stage = sd_stage or SdTextStage(str(tiny_sd_dir()), device=device)
            results[name]["sd-text"] = run_stage(sd_stage, name, batch_size=32, num_workers=num_workers)
    return results


def run_decision_quickstart(
    work_dir: str | Path, feature_source: str = "clip-text", source_options: dict[str, str] | None = None
) -> dict[str, Any]:
    """The decision stages (features -> train -> score) on the prepared PartiPrompts into ``work_dir``.

    With ``feature_source="clip-text"`` and no options the tiny open_clip text tower is used, so nothing is
    downloaded and the classifier rows are meaningless; the baseline rows (always retrieve/generate,
    random, human) are the real values from the annotation files."""
    from gill_eval.decision.steps import run_features, run_score, run_train
    from gill_eval.decision.table6 import Settings

    work = Path(work_dir)
    options = dict(source_options or {})
    if feature_source == "clip-text" and "pretrained" not in options:
        from gill_eval.models.tiny import tiny_clip_dir

        options["pretrained"] = str(tiny_clip_dir())
    features, _ = run_features(feature_source, options, out=work / "decision-features")
    model, _ = run_train(features, out=work / "decision-classifier.pth.tar")
    result = run_score(features, model, settings=Settings(thresholds=21, bootstrap=200, random_draws=200),
                       report=work / "decision-report.md")
    rows = result["rows"]
    return {
        "features": str(features),
        "model": str(model),
        "report": result["report"],
        "always_retrieve": rows["always_retrieve"]["f1"],
        "always_generate": rows["always_generate"]["f1"],
        "random": rows["random"]["f1"],
        "human": rows["human"]["f1"],
        "classifier_range": [rows["classifier"]["min"], rows["classifier"]["max"]],
        "classifier_at_half": rows["classifier"]["at_half"],
    }


def run_annotate_quickstart(work_dir: str | Path, decision_features: str | Path, index: str = "cc3m-train",
                            prompts: int = 24) -> dict[str, Any]:
    """The human-study kit (docs/annotation.md) on the first ``prompts`` PartiPrompts prompts: build it (tiny SD,
    tiny CLIP retrieval from ``index``), five simulated annotators cast the published votes, collect, and train
    the decision classifier on the collected labels. Images and classifier are meaningless; the files are real."""
    from gill_eval.annotate.collect import collect
    from gill_eval.annotate.items import Kit
    from gill_eval.annotate.simulate import simulate_page_exports
    from gill_eval.annotate.tasks import build, bundled_partiprompts
    from gill_eval.decision.steps import run_train
    from gill_eval.models.registry import load_model

    work = Path(work_dir)
    kit = work / "kit"
    built = build("partiprompts", load_model("tiny-sd", {"steps": 2, "device": "cpu"}),
                  load_model("tiny-clip-retrieval", {"device": "cpu"}), index, kit, gold=2, limit=prompts)
    exports = simulate_page_exports(Kit.read(kit), bundled_partiprompts().parent, work / "votes")
    labels = work / "annotations" / "quickstart"
    collected = collect(exports, kit, labels)
    model, trained = run_train(Path(decision_features), out=work / "classifier.pth.tar", labels=labels)
    return {"kit": str(kit), "page": built["page"], "items": built["items"], "labels": str(labels),
            "votes": collected["votes"], "label_counts": collected["labels"],
            "fleiss_kappa": collected["fleiss_kappa"]["relevance"], "model": str(model),
            "train_rows": trained["train_rows"], "val_f1_at_half": trained["val_f1_at_half"]}


def quickstart_pipeline(report: Path) -> Pipeline:
    """The quickstart matrix, ``gill_eval/quickstart.toml`` (package data, its only description), writing
    its report to ``report``: tiny SD / GLIDE / GILL / CLIP retrieval on every benchmark, tiny scorers."""
    with resources.as_file(resources.files("gill_eval").joinpath(PIPELINE_FILE)) as path:
        return dataclasses.replace(load_pipeline(path), path=Path(PIPELINE_FILE), report=report)


def without_missing_packages(pipeline: Pipeline) -> tuple[Pipeline, list[str]]:
    """The pipeline less the models whose optional package is not installed (``tiny-glide`` needs the
    ``glide`` extra's ``regex``), with a preamble line per model saying how to install it."""
    from gill_eval.models.registry import model_class, model_names

    registered = set(model_names())  # the others are benchmark baselines (clip-nn, vqa-prior): no package
    missing = {label: model_class(spec["name"]) for label, spec in pipeline.models.items()
               if spec["name"] in registered and model_class(spec["name"]).missing_requirements()}
    if not missing:
        return pipeline, []
    notes = [f"_{label} left out: it needs {', '.join(cls.missing_requirements())} ({cls.install_hint})._"
             for label, cls in missing.items()]
    runs = [{**run, "models": [m for m in run.get("models", []) if m not in missing]} for run in pipeline.runs]
    models = {label: spec for label, spec in pipeline.models.items() if label not in missing}
    kept = dataclasses.replace(pipeline, models=models, runs=[r for r in runs if r["models"]],
                               preamble=[*pipeline.preamble, "", *notes])
    return kept, list(missing)


def run_bench_quickstart(out_dir: Path) -> dict[str, Any]:
    """Run the quickstart pipeline, writing ``out_dir/quickstart.md`` (plus plots and gallery); a summary."""
    out_dir = Path(out_dir)
    pipeline, left_out = without_missing_packages(quickstart_pipeline(out_dir / "quickstart.md"))
    for label in left_out:
        info(f"[yellow]quickstart: {label} left out (its optional package is not installed; see the report)[/]")
    results, report = execute(pipeline)
    return {
        "left_out": left_out,
        "report": str(report) if report else None,
        "gallery": str(pipeline.gallery_dir / "index.html") if report else None,
        "results": len(results),
        "unsupported": sum(r["status"] == "unsupported" for r in results),
        "meaningless": True,
    }


def step_features(ctx: Context) -> dict[str, Any]:
    return run_features_quickstart(["cc3m-train", "cc3m-val", "vist", "visdial", "coco"])


def step_decision(ctx: Context) -> dict[str, Any]:
    return run_decision_quickstart(ctx.work_dir / "decision")


def step_annotate(ctx: Context) -> dict[str, Any]:
    return run_annotate_quickstart(ctx.work_dir / "annotate", ctx.results["decision"]["features"])


def step_bench(ctx: Context) -> dict[str, Any]:
    return run_bench_quickstart(ctx.work_dir / "reports")


Step = tuple[str, Callable[[Context], dict[str, Any]]]

STEPS: list[Step] = [
    ("prepare cc3m", step_prepare_cc3m),
    ("prepare vist", step_prepare_vist),
    ("prepare visdial", step_prepare_visdial),
    ("prepare coco", step_prepare_coco),
    ("prepare coco 2017", step_prepare_coco2017),
    ("prepare vqav2", step_prepare_vqav2),
    ("prepare partiprompts", step_prepare_partiprompts),
    ("features", step_features),
    ("decision", step_decision),
    ("annotate", step_annotate),
    ("bench + report", step_bench),
]


def run_quickstart(root: Path, steps: list[Step] | None = None) -> dict[str, Any]:
    """Build and serve the sample, run ``steps`` in order with ``root`` as data root; return their results."""
    if root.exists():
        remove_in_root(root)  # only a folder inside the current data root (docs/reliability.md)
    set_data_root(root)
    _bypass_proxy_for_loopback()
    sample_dir = root / "sample"
    (sample_dir / "served").mkdir(parents=True)
    with serve_folder(sample_dir / "served") as port, _sample_proxy(port):
        ctx = Context(sample=build_sample(sample_dir), work_dir=root, base_url=f"http://127.0.0.1:{port}/")
        info(f"quickstart: sample served at http://127.0.0.1:{port}/, data in {root}")
        for name, step in steps if steps is not None else STEPS:
            info(f"[bold]quickstart: {name}[/bold]")
            ctx.results[name] = step(ctx)
    return ctx.results


def _coverage_line(summary: dict[str, Any]) -> str:
    images = summary.get("images") or summary.get("reference_images") or {}
    line = f"{summary['examples']} examples"
    if images:
        line += f", images {images['success']}/{images['total']}"
        if images["failed_by_reason"]:
            line += " (" + ", ".join(f"{k} {v}" for k, v in images["failed_by_reason"].items()) + ")"
    return line


def quickstart(
    as_json: Annotated[bool, typer.Option("--json", help="Print every step's result as JSON on stdout.")] = False,
) -> None:
    """Run the pipeline on the bundled sample (offline, CPU) into <data root>/quickstart/."""
    root = data_root() / "quickstart"
    results = run_quickstart(root)
    if as_json:
        emit_json({"data_root": str(root), "steps": results})
        return
    typer.echo(f"quickstart data root: {root}")
    typer.echo("NOTE: every model here has tiny random weights; the scores are meaningless and only show "
               "that the pipeline runs end to end offline.")
    for name, result in results.items():
        parts = list(result.values()) if name == "prepare cc3m" else [result]
        for summary in parts:
            if isinstance(summary, dict) and "dataset" in summary and "examples" in summary:
                typer.echo(f"  {name}: {summary['dataset']}: {_coverage_line(summary)}")
            elif name == "prepare partiprompts":
                d = summary["decisions"]
                typer.echo(f"  {name}: {summary['rows']} prompts, {d['gen']} gen / {d['ret']} ret / {d['same']} same")
            elif name == "features":
                parts = [f"{stage} {ds} {res['rows'] - res['failed']}/{res['rows']}"
                         for ds, stages in summary.items() if isinstance(stages, dict)
                         for stage, res in stages.items()]
                typer.echo(f"  {name} (tiny random models): " + ", ".join(parts))
            elif name == "decision":
                typer.echo(f"  {name}: Table 6 report {summary['report']} (baselines from the real annotations; "
                           "classifier rows from a tiny random text tower)")
            elif name == "annotate":
                typer.echo(f"  {name}: {summary['items']} items, page {summary['page']}; simulated votes -> "
                           f"{summary['labels']} {summary['label_counts']}; classifier trained on them")
            elif name == "bench + report":
                typer.echo(f"  {name}: {summary['results']} results, report {summary['report']}, "
                           f"gallery {summary['gallery']} (open it in a browser)")
            else:
                typer.echo(f"  {name}: done")
