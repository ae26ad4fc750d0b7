"""`gill-eval annotate build|export|collect`: the retrieve-or-generate human study (docs/annotation.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gill_eval.console import emit_json, info
from gill_eval.errors import ConfigError

app = typer.Typer(help="Human labels for retrieve-or-generate: build tasks, hand them out, collect votes.",
                  no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]
TARGETS = ("page", "labelstudio", "crowd")


@app.command("build")
def build_cmd(
    out: Annotated[Path, typer.Option("--out", help="Kit folder (tasks.json, images/, annotate.html).")],
    index: Annotated[str, typer.Option("--index", help="Prepared dataset with `features clip` to retrieve from.")],
    prompts: Annotated[str, typer.Option("--prompts", help="partiprompts, a PartiPrompts-style TSV or a text file.")]
    = "partiprompts",
    gen_model: Annotated[str, typer.Option("--gen-model", help="Registered model that generates (sd: official protocol).")]
    = "sd",
    gen_opt: Annotated[Optional[list[str]], typer.Option("--gen-opt", help="KEY=VALUE option of --gen-model.")] = None,
    retrieval_model: Annotated[
        str, typer.Option("--retrieval-model", help="Registered model embedding the prompts (the CLIP of the features).")
    ] = "clip-retrieval",
    retrieval_opt: Annotated[
        Optional[list[str]], typer.Option("--retrieval-opt", help="KEY=VALUE option of --retrieval-model.")
    ] = None,
    order_seed: Annotated[int, typer.Option("--order-seed", help="Seed of the per-item A/B order (recorded).")] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Run seed of models other than SD (per-prompt seeds).")] = 0,
    gold: Annotated[int, typer.Option("--gold", min=0, help="Attention-check items to add.")] = 0,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Only the first N prompts.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Generated and top-1 retrieved image per prompt, in randomised A/B slots; resumable."""
    from gill_eval.annotate.tasks import build
    from gill_eval.models.registry import load_model, parse_option_pairs

    generator = load_model(gen_model, parse_option_pairs(gen_opt or []))
    retriever = load_model(retrieval_model, parse_option_pairs(retrieval_opt or []))
    summary = build(prompts, generator, retriever, index, out, order_seed=order_seed, seed=seed, gold=gold,
                    limit=limit)
    if as_json:
        emit_json(summary)
    else:
        info(f"annotate build: {summary['items']} items ({summary['gold']} gold) -> {out}; page {summary['page']}")


@app.command("export")
def export_cmd(
    kit: Annotated[Path, typer.Argument(help="Kit folder written by `annotate build`.")],
    to: Annotated[str, typer.Option("--to", help="page, labelstudio or crowd.")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Output folder (default: the kit folder).")] = None,
    image_base: Annotated[
        Optional[str], typer.Option("--image-base", help="http(s) address where the kit folder is served.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The files one collection path needs: the static page, Label Studio's config and tasks, or the crowd CSV
    and HIT layout."""
    from gill_eval.annotate.crowd import write_crowd
    from gill_eval.annotate.items import Kit
    from gill_eval.annotate.labelstudio import write_labelstudio
    from gill_eval.annotate.page import write_page

    if to not in TARGETS:
        raise ConfigError(f"--to {to!r}: expected one of {', '.join(TARGETS)}")
    loaded = Kit.read(kit)
    folder = out if out is not None else kit
    if to == "page":
        if out is not None and out != kit:
            raise ConfigError("--to page writes annotate.html beside the kit's images/; leave --out out")
        files = [write_page(loaded)]
    elif to == "labelstudio":
        files = write_labelstudio(loaded, folder, image_base)
    else:
        if image_base is None:
            raise ConfigError("--to crowd needs --image-base URL (where workers can load the kit's images/)")
        files = write_crowd(loaded, folder, image_base)
    if as_json:
        emit_json({"to": to, "files": [str(f) for f in files], "items": len(loaded.items)})
    else:
        info(f"annotate export: {', '.join(str(f) for f in files)}")


@app.command("collect")
def collect_cmd(
    votes: Annotated[list[Path], typer.Argument(help="Page exports, Label Studio JSON exports, crowd results CSVs.")],
    tasks: Annotated[Path, typer.Option("--tasks", help="Kit folder the votes were cast on.")],
    out: Annotated[Path, typer.Option("--out", help="Labels folder, e.g. annotations/NAME.")],
    as_json: JsonOpt = False,
) -> None:
    """Merge votes (idempotent), undo the A/B order, write the official vote and label files and agreement."""
    from gill_eval.annotate.collect import collect

    summary = collect(votes, tasks, out)
    if as_json:
        emit_json(summary)
        return
    kappa, alpha = summary["fleiss_kappa"]["relevance"], summary["krippendorff_alpha"]["relevance"]
    info(f"annotate collect: {summary['votes']} votes ({summary['votes_added']} new) from {summary['annotators']} "
         f"annotators on {summary['items_with_votes']} items; labels {summary['labels']}; relevance kappa "
         f"{'-' if kappa is None else f'{kappa:.3f}'}, alpha {'-' if alpha is None else f'{alpha:.3f}'} -> {out}")
    for question, flagged in summary["flagged"].items():
        for annotator, flags in flagged.items():
            info(f"  flagged ({question}): {annotator} {', '.join(flags)}")
