"""Which networks score a benchmark: the real ones (ViT-L/14 OpenAI, AlexNet, Inception) or tiny ones.

``ScorerSpec`` names them; it is written into every result so that a number can be traced to the exact
scoring weights. The ``tiny`` preset builds seeded random networks of small or real architecture into the
cache and loads them through the same file-loading code as real weights; their scores are meaningless and
every result made with them says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from gill_eval.errors import ConfigError
from gill_eval.metrics.clip_score import ClipTextEmbedder
from gill_eval.metrics.clip_similarity import PRECISIONS, ClipImageEmbedder, official_clip_preprocess
from gill_eval.metrics.fid import build_random_inception_weights, load_inception
from gill_eval.metrics.lpips import LpipsScorer, build_lpips
from gill_eval.store import atomic_path, cache_root, sha256_file

SCORER_PRESETS = ("real", "tiny")
#: Chunk size used for scoring: fixed, so scores never depend on generation batch size or worker count.
SCORE_BATCH = 16


@dataclass(frozen=True)
class ScorerSpec:
    """Scoring networks and where they run. ``preset='tiny'`` replaces every network by a seeded random one."""

    preset: str = "real"  # real | tiny
    clip_model: str = "ViT-L-14"
    clip_pretrained: str = "openai"
    lpips_trunk: str | None = None  # None: staged lpips-alex; or a path
    inception: str | None = None  # None: staged fid-inception; or a path
    device: str = "auto"  # auto: CUDA when available (under torchrun, this rank's GPU), else CPU
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.preset not in SCORER_PRESETS:
            raise ConfigError(f"--scorers {self.preset!r}: expected one of {', '.join(SCORER_PRESETS)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}")

    def required_weights(self, kind: str) -> list[str]:
        """The registered weights this spec loads to score a benchmark of ``kind`` (similarity | fid)."""
        if self.meaningless:
            return []
        clip = ["clip-vit-l-14"] if (self.clip_model, self.clip_pretrained) == ("ViT-L-14", "openai") else []
        if kind == "similarity":
            return clip + (["lpips-alex"] if self.lpips_trunk is None else [])
        if kind == "fid":  # FID and KID need Inception; the CLIPScore column needs CLIP
            return (["fid-inception"] if self.inception is None else []) + clip
        return []

    @property
    def meaningless(self) -> bool:
        return self.preset == "tiny"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _tiny_file(name: str, build) -> Path:
    path = cache_root() / "tiny" / name
    if not path.is_file():
        build(path)
    return path


def _build_random_alexnet(path: Path) -> None:
    from torchvision.models import alexnet

    torch.manual_seed(0)
    with atomic_path(path) as tmp:
        torch.save(alexnet().state_dict(), tmp)


class Scorers:
    """Lazily built scoring networks for one ``ScorerSpec`` (each built on first use)."""

    def __init__(self, spec: ScorerSpec) -> None:
        from gill_eval.features.runner import resolve_device

        self.spec = spec
        # resolved here, not in the spec: the spec keys result folders, which must not differ between ranks
        self.device = str(resolve_device(spec.device))
        self.provenance: dict[str, Any] = {"spec": spec.as_dict(), "device": self.device}

    @cached_property
    def _clip_model(self) -> tuple[torch.nn.Module, Any]:
        """The CLIP model (both towers) and its tokenizer, loaded once for CLIP similarity and CLIPScore."""
        from gill_eval.models.weights import fingerprint, load_open_clip

        if self.spec.meaningless:
            from gill_eval.models.tiny import tiny_clip_dir

            folder = tiny_clip_dir()
            model, _, tokenizer = load_open_clip(pretrained=str(folder))
            self.provenance["clip"] = {"model": "tiny random CLIP", "weights": str(folder)}
        else:
            model, _, tokenizer = load_open_clip(self.spec.clip_model, self.spec.clip_pretrained)
            ident = "clip-vit-l-14" if self.spec.clip_pretrained == "openai" else self.spec.clip_pretrained
            self.provenance["clip"] = {"model": self.spec.clip_model, "pretrained": self.spec.clip_pretrained,
                                       "sha256": fingerprint(ident)}
        return model, tokenizer

    @cached_property
    def clip(self) -> ClipImageEmbedder:
        model, _ = self._clip_model
        # GILL's scripts feed CLIP through Hugging Face's CLIPProcessor, not open_clip's transform
        return ClipImageEmbedder(model, official_clip_preprocess(model), self.device, self.spec.precision,
                                 SCORE_BATCH)

    @cached_property
    def clip_text(self) -> ClipTextEmbedder:
        model, tokenizer = self._clip_model
        return ClipTextEmbedder(model, tokenizer, self.device, self.spec.precision, SCORE_BATCH)

    @cached_property
    def lpips(self) -> LpipsScorer:
        trunk = _tiny_file("lpips-alexnet-random-seed0.pth", _build_random_alexnet) if self.spec.meaningless else self.spec.lpips_trunk
        net, desc = build_lpips(trunk)
        self.provenance["lpips"] = {"net": "alex", "version": "0.1", "trunk": desc,
                                    "trunk_sha256": sha256_file(trunk) if trunk else None,
                                    "random": self.spec.meaningless}
        return LpipsScorer(net, self.device, SCORE_BATCH)

    @cached_property
    def inception(self) -> tuple[Any, str]:
        path = (
            _tiny_file("fid-inception-random-seed0.pt", lambda p: build_random_inception_weights(p, 0))
            if self.spec.meaningless
            else self.spec.inception
        )
        net, sha = load_inception(path, self.device)
        self.provenance["inception"] = {"extractor": "inception-v3-compat", "sha256": sha, "random": self.spec.meaningless}
        return net, sha
