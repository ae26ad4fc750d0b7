"""`gill-eval quickstart`: the real pipeline on the bundled sample, offline.

The sample (``gill_eval.sample``) is served by a loopback HTTP server started here (127.0.0.1, a free
port), so CC3M and VIST go through the same img2dataset download path as the real datasets, including a
few dead links that show up in the coverage. Everything is written under ``<data root>/quickstart/``,
which is cleared first (the sample's URLs name this run's port, and a prepared folder refuses inputs
that changed). The run is a list of steps, one function each, so later stages append steps.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from gill_eval.console import emit_json, info
from gill_eval.datasets.download import DownloadOptions
from gill_eval.sample.make import Sample, build_sample
from gill_eval.store import data_root
from gill_eval.store.root import set_data_root


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the sample folder without a log line per request."""

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

    options = DownloadOptions(processes=1, threads=8, timeout=10.0, image_size=512, resize_mode="keep_ratio",
                              shard_size=1000)
    return prepare_vist(str(ctx.sample.vist_sis), "val", options)


def step_prepare_visdial(ctx: Context) -> dict[str, Any]:
    from gill_eval.datasets.visdial import prepare_visdial

    return prepare_visdial(str(ctx.sample.visdial_dialogs), str(ctx.sample.visdial_images),
                           str(ctx.sample.visdial_dense))


def step_prepare_coco(ctx: Context) -> dict[str, Any]:
    from gill_eval.datasets.coco import prepare_coco

    return prepare_coco(str(ctx.sample.coco_captions), str(ctx.sample.coco_images), num_captions=10, seed=0)


def step_prepare_partiprompts(ctx: Context) -> dict[str, Any]:
    from gill_eval.datasets.partiprompts_cli import prepare

    return prepare(ctx.base_url + ctx.sample.partiprompts_url_path, verify=True)


def step_features(ctx: Context) -> dict[str, Any]:
    from gill_eval.features.quickstart_steps import run_features_quickstart

    return run_features_quickstart(["cc3m-train", "cc3m-val", "vist", "visdial", "coco"])


def step_decision(ctx: Context) -> dict[str, Any]:
    from gill_eval.decision.quickstart_steps import run_decision_quickstart

    return run_decision_quickstart(ctx.work_dir / "decision")


def step_bench(ctx: Context) -> dict[str, Any]:
    from gill_eval.bench.quickstart_steps import run_bench_quickstart

    return run_bench_quickstart(ctx.work_dir / "reports")


Step = tuple[str, Callable[[Context], dict[str, Any]]]

STEPS: list[Step] = [
    ("prepare cc3m", step_prepare_cc3m),
    ("prepare vist", step_prepare_vist),
    ("prepare visdial", step_prepare_visdial),
    ("prepare coco", step_prepare_coco),
    ("prepare partiprompts", step_prepare_partiprompts),
    ("features", step_features),
    ("decision", step_decision),
    ("bench + report", step_bench),
]


def run_quickstart(root: Path, steps: list[Step] | None = None) -> dict[str, Any]:
    """Build and serve the sample, run ``steps`` in order with ``root`` as data root; return their results."""
    if root.exists():
        shutil.rmtree(root)
    set_data_root(root)
    _bypass_proxy_for_loopback()
    sample_dir = root / "sample"
    (sample_dir / "served").mkdir(parents=True)
    with serve_folder(sample_dir / "served") as port:
        ctx = Context(sample=build_sample(sample_dir, port), work_dir=root, base_url=f"http://127.0.0.1:{port}/")
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
            elif name == "bench + report":
                typer.echo(f"  {name}: {summary['results']} results, report {summary['report']}")
            else:
                typer.echo(f"  {name}: done")
