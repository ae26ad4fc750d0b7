"""``gill-eval bench ...``: one command per paper table, plus ``score`` and FID reference-statistics tools."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Optional

import typer

from gill_eval.bench.contexts import parse_rounds, parse_seeds, parse_vist_context
from gill_eval.bench.visdial import rounds_label
from gill_eval.console import emit_json, info
from gill_eval.models.registry import parse_option_pairs
from gill_eval.store import resolve_shard_spec

app = typer.Typer(help="Run the paper's benchmarks (generation is resumable and shardable; scoring is separate).",
                  no_args_is_help=True)
fid_stats_app = typer.Typer(help="Cached FID reference statistics: list, export and import as .npz.", no_args_is_help=True)
app.add_typer(fid_stats_app, name="fid-stats")

Model = Annotated[str, typer.Option("--model", help="Registered model name (see `gill-eval models list`).")]
ModelOpt = Annotated[Optional[list[str]], typer.Option("--model-opt", help="Model option KEY=VALUE (repeatable).")]
Seeds = Annotated[str, typer.Option("--seeds", help="Seeds, e.g. 0-4 or 0,1.")]
Shard = Annotated[Optional[str], typer.Option("--shard", help="Worker i/N (combined with torchrun's RANK/WORLD_SIZE).")]
Batch = Annotated[int, typer.Option("--batch-size", help="Contexts per generate call (does not change scores).")]
class ScorerPreset(StrEnum):
    """``--scorers`` (bench/scorers.py SCORER_PRESETS)."""

    real = "real"
    tiny = "tiny"


class ScorePrecision(StrEnum):
    """``--precision`` of CLIP scoring (metrics/clip_similarity.py PRECISIONS)."""

    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"


Scorer = Annotated[ScorerPreset, typer.Option("--scorers", help="real: ViT-L/14, AlexNet, Inception weights; tiny: random (tests).")]
Device = Annotated[str, typer.Option("--device", help="Device for the scoring networks: auto (CUDA when available; "
                                                     "under torchrun this rank's GPU), cpu, cuda, cuda:N.")]
Precision = Annotated[ScorePrecision, typer.Option("--precision", help="CLIP scoring precision.")]
Label = Annotated[Optional[str], typer.Option("--label", help="Row label in reports (default: the model name).")]
Json = Annotated[bool, typer.Option("--json", help="Print the results as JSON.")]
Limit = Annotated[Optional[int], typer.Option("--limit", min=1, help="Only the first N examples in the benchmark's fixed order (a partial run, reported apart).")]


def _api():  # noqa: ANN202 - the module; imported on use so that `gill-eval --help` needs no torch
    from gill_eval.bench import api

    return api


def _scorer(preset: str, device: str, precision: str):  # noqa: ANN202 - ScorerSpec, imported on use
    from gill_eval.bench.scorers import ScorerSpec

    return ScorerSpec(preset=str(preset), device=device, precision=str(precision))


def _finish(results: list, as_json: bool) -> None:
    if as_json:
        emit_json([{k: v for k, v in r.items() if k != "_dir"} if r is not None else {"status": "pending"} for r in results])


@app.command("vist")
def vist(
    model: Model, model_opt: ModelOpt = None,
    context: Annotated[str, typer.Option("--context", help="Comma-separated: 1c, 5c, 5c4i or any NcMi.")] = "1c,5c,5c4i",
    seeds: Seeds = "0", shard: Shard = None, batch_size: Batch = 8,
    scorers: Scorer = ScorerPreset.real, device: Device = "auto", precision: Precision = ScorePrecision.fp32,
    label: Label = None, limit: Limit = None, json: Json = False,
) -> None:
    """Table 1: the last image of each VIST story from its context; CLIP similarity and LPIPS."""
    contexts = [parse_vist_context(c).label for c in context.split(",") if c.strip()]
    _run("vist", contexts, model, model_opt, seeds, shard, batch_size, _scorer(scorers, device, precision), label,
         limit, json)


@app.command("visdial")
def visdial(
    model: Model, model_opt: ModelOpt = None,
    rounds: Annotated[str, typer.Option("--rounds", help="Round counts, e.g. 1,5,10.")] = "1,5,10",
    seeds: Seeds = "0", shard: Shard = None, batch_size: Batch = 8,
    scorers: Scorer = ScorerPreset.real, device: Device = "auto", precision: Precision = ScorePrecision.fp32,
    label: Label = None, limit: Limit = None, json: Json = False,
) -> None:
    """Table 2: the dialog's image from the Q/A lines of its first R rounds (no caption)."""
    contexts = [rounds_label(r) for r in parse_rounds(rounds)]
    _run("visdial", contexts, model, model_opt, seeds, shard, batch_size, _scorer(scorers, device, precision), label,
         limit, json)


def _run(benchmark: str, contexts: list[str] | None, model: str, model_opt: list[str] | None, seeds: str,
         shard: str | None, batch_size: int, scorer, label: str | None, limit: int | None,  # noqa: ANN001 - ScorerSpec
         as_json: bool, num: int | None = None) -> None:
    """The body every generation command shares: parse the shared options, run, print."""
    _finish(_api().run(benchmark, model, parse_option_pairs(model_opt or []), contexts, parse_seeds(seeds),
                       shard=resolve_shard_spec(shard), batch_size=batch_size, scorer=scorer,
                       label=label, num=num, limit=limit), as_json)


def _fid(benchmark: str, model: str, model_opt, num, seeds, shard, batch_size, scorers, device, label, json,
         limit: int | None = None) -> None:
    # One FID per seed; with 2+ seeds the result adds their std and a Student-t interval (docs/protocols.md).
    _run(benchmark, None, model, model_opt, seeds, shard, batch_size, _scorer(scorers, device, "fp32"), label, limit,
         json, num=num)


@app.command("coco-fid")
def coco_fid(
    model: Model, model_opt: ModelOpt = None,
    num: Annotated[int, typer.Option("--num", help="Captions from the prepared manifest (paper: 30000).")] = 30000,
    seeds: Seeds = "0", shard: Shard = None, batch_size: Batch = 8,
    scorers: Scorer = ScorerPreset.real, device: Device = "auto", label: Label = None, limit: Limit = None, json: Json = False,
) -> None:
    """Table 8: zero-shot FID on MS-COCO 2014 val captions (SD/GILL default: guidance 3.0, 250 DDIM steps)."""
    _fid("coco-fid", model, model_opt, num, seeds, shard, batch_size, scorers, device, label, json, limit)


MaxNew = Annotated[Optional[int], typer.Option("--max-new-tokens", min=1, help="Most tokens per answer (default: "
                                                                               "the benchmark's, docs/protocols.md).")]


def _text(benchmark: str, model: str, model_opt: list[str] | None, seeds: str, batch_size: int, options: dict,
          scorers: str, device: str, label: str | None, limit: int | None, as_json: bool) -> None:
    given = {k: v for k, v in options.items() if v is not None}
    _finish(_api().run(benchmark, model, parse_option_pairs(model_opt or []), None, parse_seeds(seeds),
                       batch_size=batch_size, scorer=_scorer(scorers, device, "fp32"), label=label, limit=limit,
                       bench_options=given), as_json)


@app.command("coco-caption")
def coco_caption(
    model: Annotated[str, typer.Option("--model", help="A model with the text capability, or the baseline clip-nn.")],
    model_opt: ModelOpt = None,
    prompt: Annotated[Optional[str], typer.Option("--prompt", help="Text after the image (default 'A picture of').")] = None,
    max_new_tokens: MaxNew = None, seeds: Seeds = "0", batch_size: Batch = 8,
    scorers: Scorer = ScorerPreset.real, device: Device = "auto", label: Label = None, limit: Limit = None, json: Json = False,
) -> None:
    """Table 7: MS-COCO 2017 val captions; BLEU-1..4, METEOR, CIDEr (pycocoevalcap, needs Java)."""
    _text("coco-caption", model, model_opt, seeds, batch_size, {"prompt": prompt, "max_new_tokens": max_new_tokens},
          scorers, device, label, limit, json)


@app.command("vqav2")
def vqav2(
    model: Annotated[str, typer.Option("--model", help="A model with the text capability, or the baseline vqa-prior.")],
    model_opt: ModelOpt = None,
    template: Annotated[Optional[str], typer.Option("--template", help="Text after the image; {question} is replaced "
                                                                       "(default 'Q: {question} A:').")] = None,
    max_new_tokens: MaxNew = None, seeds: Seeds = "0", batch_size: Batch = 8,
    scorers: Scorer = ScorerPreset.real, device: Device = "auto", label: Label = None, limit: Limit = None, json: Json = False,
) -> None:
    """Table 7: zero-shot VQAv2 val; the official VQA accuracy, overall and per answer type."""
    _text("vqav2", model, model_opt, seeds, batch_size, {"template": template, "max_new_tokens": max_new_tokens},
          scorers, device, label, limit, json)


@app.command("cc3m-fid")
def cc3m_fid(
    model: Model, model_opt: ModelOpt = None,
    num: Annotated[Optional[int], typer.Option("--num", help="Captions to use (default: all).")] = None,
    seeds: Seeds = "0", shard: Shard = None, batch_size: Batch = 8,
    scorers: Scorer = ScorerPreset.real, device: Device = "auto", label: Label = None, limit: Limit = None, json: Json = False,
) -> None:
    """Tables 3-4: FID on the CC3M validation captions (SD/GILL default: guidance 3.0, 250 DDIM steps)."""
    _fid("cc3m-fid", model, model_opt, num, seeds, shard, batch_size, scorers, device, label, json, limit)


@app.command("vist-retrieval")
def vist_retrieval(
    model: Model, model_opt: ModelOpt = None, shard: Shard = None, label: Label = None, limit: Limit = None,
    json: Json = False,
) -> None:
    """Table 5: recall@1/5/10 of the story's last image from 5 captions and 4 images (FROMAGe protocol)."""
    _finish(_api().run("vist-retrieval", model, parse_option_pairs(model_opt or []), shard=resolve_shard_spec(shard),
                    label=label, limit=limit), json)


@app.command("run")
def run_any(
    benchmark: Annotated[str, typer.Argument(help="A registered benchmark, built-in or plugin (`gill-eval bench list`).")],
    model: Model, model_opt: ModelOpt = None,
    context: Annotated[Optional[str], typer.Option("--context", help="Comma-separated context labels as results "
                                                                     "name them (default: the benchmark's own).")] = None,
    seeds: Seeds = "0", shard: Shard = None, batch_size: Batch = 8,
    scorers: Scorer = ScorerPreset.real, device: Device = "auto", precision: Precision = ScorePrecision.fp32,
    num: Annotated[Optional[int], typer.Option("--num", help="FID benchmarks: the caption count.")] = None,
    label: Label = None, limit: Limit = None, json: Json = False,
) -> None:
    """Any registered benchmark by name, plugins included; contexts given as the labels results carry."""
    contexts = [c.strip() for c in context.split(",") if c.strip()] if context else None
    _run(benchmark, contexts, model, model_opt, seeds, shard, batch_size, _scorer(scorers, device, precision), label,
         limit, json, num)


@app.command("score")
def score(
    generation_dir: Annotated[Path, typer.Argument(help="A folder under <data>/generations/... (has provenance.json).")],
    seeds: Seeds = "0", scorers: Scorer = ScorerPreset.real,
    device: Device = "auto", precision: Precision = ScorePrecision.fp32, num: Annotated[Optional[int], typer.Option("--num")] = None,
    label: Label = None, json: Json = False,
) -> None:
    """Score generated images again (other scorers, protocol or seeds) without regenerating."""
    result = _api().rescore(generation_dir, parse_seeds(seeds), _scorer(scorers, device, precision), label, num)
    _finish([result], json)


@app.command("list")
def list_benchmarks(json: Json = False) -> None:
    """Registered benchmarks (built-in and plugins) with their table, contexts, metrics and default protocol."""
    from gill_eval.bench.registry import benchmarks

    rows = [{"benchmark": spec.name, "table": spec.layout.title, "kind": spec.kind, "contexts": spec.contexts,
             "metrics": spec.metrics, "extra_metrics": spec.layout.extra_metrics, "protocol": spec.protocol_text,
             "protocol_version": spec.protocol.version}
            for spec in benchmarks()]
    if json:
        emit_json(rows)
        return
    for row in rows:
        info(f"[bold]{row['benchmark']}[/bold]  {row['table']}\n  contexts {', '.join(row['contexts'])}; "
             f"metrics {', '.join(row['metrics'])}"
             + (f" (extra columns: {', '.join(row['extra_metrics'])})" if row["extra_metrics"] else "")
             + f"\n  {row['protocol']}")


@app.command("status")
def status(
    generation_dir: Annotated[Optional[list[Path]], typer.Argument(
        help="Generation folders (default: every folder under <data>/generations).")] = None,
    seeds: Annotated[Optional[str], typer.Option(
        "--seeds", help="The run's seeds, e.g. 0-4 (default: the seeds its workers recorded).")] = None,
    shards: Annotated[Optional[int], typer.Option(
        "--shards", help="N of the workers' --shard i/N (default: the N their done markers record).")] = None,
    json: Json = False,
) -> None:
    """Units done and missing per shard, and what is left to score, for each generation folder."""
    rows = _api().status(generation_dir or None, parse_seeds(seeds) if seeds else None, shards)
    if json:
        emit_json(rows)
        return
    if not rows:
        info("no generation folders under this data root")
    for row in rows:
        shards_text = ", ".join(f"{s['shard']} {s['done']}/{s['units']}" for s in row["shards"])
        info(f"{row['benchmark']} {row['context']} {row['model']} seeds {row['seeds']}: "
             f"{row['done']}/{row['units']} units ({shards_text}); {row['next']}  ({row['dir']})")


@fid_stats_app.command("list")
def fid_stats_list(json: Json = False) -> None:
    """Cached reference statistics with what they were computed from."""
    from gill_eval.metrics.fid import load_statistics, reference_cache_dir

    rows = []
    for path in sorted(reference_cache_dir().glob("*.npz")):
        _, meta = load_statistics(path)
        rows.append({"file": str(path), **meta})
    if json:
        emit_json(rows)
    for row in rows:
        info(f"{Path(row['file']).stem}  n={row.get('n')}  extractor={row['extractor']}  weights={row['weights_sha256'][:12]}")


@fid_stats_app.command("export")
def fid_stats_export(
    key: Annotated[str, typer.Argument(help="Cache key (file stem shown by `fid-stats list`).")],
    out: Annotated[Path, typer.Argument(help="Destination .npz")],
) -> None:
    """Write cached statistics to a portable .npz (no pickle)."""
    from gill_eval.errors import InputError
    from gill_eval.metrics.fid import reference_cache_dir, save_statistics, load_statistics, ReferenceKey

    path = reference_cache_dir() / f"{key}.npz"
    if not path.is_file():
        raise InputError(f"{path}: no cached statistics with key {key!r} (see `gill-eval bench fid-stats list`)")
    stats, meta = load_statistics(path)
    ref = ReferenceKey(meta["manifest_hash"], meta["resize_mode"], meta["extractor"], meta["weights_sha256"])
    save_statistics(out, stats, ref, int(meta.get("n", 0)))
    info(f"exported {key} -> {out}")


@fid_stats_app.command("import")
def fid_stats_import(path: Annotated[Path, typer.Argument(help="An .npz written by `fid-stats export`.")]) -> None:
    """Put exported statistics into this machine's cache under their content key."""
    from gill_eval.metrics.fid import import_reference

    info(f"imported -> {import_reference(path)}")
