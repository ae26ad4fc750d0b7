"""The Python API of ``gill-eval features``: ``clip`` and ``sd_text`` (docs/python-api.md), which the
commands call too. Each returns the stage's summary (what ``--json`` prints)."""

from __future__ import annotations

from typing import Any


def clip(dataset: str, *, model: str = "ViT-L-14", pretrained: str = "openai", precision: str | None = None,
         batch_size: int = 256, device: str = "auto", shard: str | None = None, num_workers: int = 0) -> dict[str, Any]:
    """CLIP image embeddings for every image of ``dataset`` -> ``<data>/features/clip/<dataset>/``."""
    from gill_eval.features.clip_image import ClipImageStage
    from gill_eval.features.runner import default_precision, input_shards, resolve_device, run_stage

    input_shards(ClipImageStage, dataset)
    dev = resolve_device(device)
    stage = ClipImageStage(model, pretrained, precision or default_precision(dev), dev)
    return run_stage(stage, dataset, batch_size, num_workers, shard)


def sd_text(dataset: str, *, model: str | None = None, precision: str | None = None, batch_size: int = 512,
            device: str = "auto", shard: str | None = None, num_workers: int = 4) -> dict[str, Any]:
    """SD 1.5 text-encoder targets (77x768 float16) for every caption of ``dataset`` -> ``<data>/features/sd-text/``
    (``model``: a hub id or a local diffusers folder; default SD 1.5)."""
    from gill_eval.features.runner import default_precision, input_shards, resolve_device, run_stage
    from gill_eval.features.sd_text import SD15_ID, SdTextStage

    input_shards(SdTextStage, dataset)
    dev = resolve_device(device)
    stage = SdTextStage(model or SD15_ID, precision or default_precision(dev), dev)
    return run_stage(stage, dataset, batch_size, num_workers, shard)
