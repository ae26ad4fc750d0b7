"""`gill-eval features clip|sd-text`: a thin layer over ``gill_eval.features``.

Inputs are checked and weights loaded before anything is written, so a missing dataset or, offline, a
missing weight fails with one line and leaves no output behind.
"""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer

from gill_eval.console import emit_json, info

app = typer.Typer(help="CLIP image features and SD text-encoder targets, resumable and shardable.",
                  no_args_is_help=True)

DatasetOpt = Annotated[str, typer.Option("--dataset", help="Prepared dataset name (see `gill-eval prepare`).")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Rows per model batch.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N (auto: GPU if present).")]
PrecisionOpt = Annotated[Optional[str], typer.Option("--precision", help="fp32, fp16 or bf16 (default: fp16 "
                                                                         "on GPU, fp32 on CPU).")]
ShardOpt = Annotated[Optional[str], typer.Option("--shard", help="Process only part i of N (0-based), e.g. 0/4; "
                                                                 "combined with torchrun/accelerate ranks.")]
WorkersOpt = Annotated[Optional[int], typer.Option("--num-workers", help="DataLoader decoding processes "
                                                                         "(default: up to 8, one per core).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the run summary as JSON.")]


def _workers(value: int | None) -> int:
    return value if value is not None else max(1, min(8, (os.cpu_count() or 2) - 1))


def _finish(summary: dict, as_json: bool) -> None:
    if as_json:
        emit_json(summary)
    else:
        state = "complete" if summary["complete"] else "partial (other shards pending)"
        info(f"{summary['stage']} features for {summary['dataset']}: {summary['rows']} rows in "
             f"{summary['units_run']} shard(s), {summary['failed']} failed, {state} -> {summary['out_dir']}")


@app.command("clip")
def clip(
    dataset: DatasetOpt,
    model: Annotated[str, typer.Option("--model", help="open_clip model name or model-config JSON.")] = "ViT-L-14",
    pretrained: Annotated[str, typer.Option("--pretrained", help="open_clip tag (openai), weights file, or "
                                                                 "open_clip folder.")] = "openai",
    precision: PrecisionOpt = None,
    batch_size: BatchOpt = 256,
    device: DeviceOpt = "auto",
    shard: ShardOpt = None,
    num_workers: WorkersOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """CLIP image embeddings for every image of DATASET -> <data>/features/clip/DATASET/."""
    from gill_eval.features.api import clip as compute

    _finish(compute(dataset, model=model, pretrained=pretrained, precision=precision, batch_size=batch_size,
                    device=device, shard=shard, num_workers=_workers(num_workers)), as_json)


@app.command("sd-text")
def sd_text(
    dataset: DatasetOpt,
    model: Annotated[str, typer.Option("--model", help="SD 1.5 hub id or a local diffusers folder.")] =
    "stable-diffusion-v1-5/stable-diffusion-v1-5",
    precision: PrecisionOpt = None,
    batch_size: BatchOpt = 512,
    device: DeviceOpt = "auto",
    shard: ShardOpt = None,
    num_workers: Annotated[int, typer.Option("--num-workers", help="Tokenising processes (each ~8k captions "
                                                 "per CPU second).")] = 4,
    as_json: JsonOpt = False,
) -> None:
    """SD 1.5 text-encoder targets (77x768 float16) for every caption of DATASET -> <data>/features/sd-text/."""
    from gill_eval.features.api import sd_text as compute

    _finish(compute(dataset, model=model, precision=precision, batch_size=batch_size, device=device, shard=shard,
                    num_workers=num_workers), as_json)


@app.command("gill")
def gill(
    dataset: DatasetOpt,
    model: Annotated[str, typer.Option("--model", help="gill or tiny-gill (registered GILL models).")] = "gill",
    model_opt: Annotated[Optional[list[str]], typer.Option(
        "--model-opt", help="Model option KEY=VALUE (repeatable), e.g. checkpoint=DIR.")] = None,
    batch_size: BatchOpt = 64,
    shard: ShardOpt = None,
    num_workers: WorkersOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """GILL retrieval embeddings (visual_fc of CLIP) of every image of DATASET -> <data>/features/gill/DATASET/:
    the image index of `gill-eval generate --interleaved --index DATASET`."""
    from gill_eval.errors import ConfigError
    from gill_eval.features.gill_image import GillImageStage
    from gill_eval.features.runner import input_shards, run_stage
    from gill_eval.models.gill.adapter import GILLModel
    from gill_eval.models.registry import load_model, model_class, parse_option_pairs

    input_shards(GillImageStage, dataset)
    if not issubclass(model_class(model), GILLModel):
        raise ConfigError(f"--model {model}: not a GILL model (use gill or tiny-gill)")
    loaded = load_model(model, parse_option_pairs(list(model_opt or [])))
    _finish(run_stage(GillImageStage(loaded), dataset, batch_size, _workers(num_workers), shard), as_json)
