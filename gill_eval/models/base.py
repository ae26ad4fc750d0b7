"""The model interface every benchmark talks to.

A context is a list whose items are ``str`` or ``PIL.Image.Image``. A model declares its capabilities
and implements only those methods; asking for anything else raises ``CapabilityError``, which
benchmarks turn into "-" in tables (never a silent fallback). Options are a typed dataclass per model so
that ``--model-opt key=value`` is parsed by type and an unknown key is an error.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from typing import Any, ClassVar, Union

import numpy as np
import torch
from PIL import Image

from gill_eval.errors import GillEvalError

ContextItem = Union[str, Image.Image]
Context = list[ContextItem]

GENERATE = "generate"
RETRIEVE = "retrieve"
DECIDE = "decide"
ACCEPTS_IMAGES = "accepts_images"
ALL_CAPABILITIES = (GENERATE, RETRIEVE, DECIDE, ACCEPTS_IMAGES)


class CapabilityError(GillEvalError):
    """The model cannot do what was asked (e.g. Stable Diffusion given an image in its context)."""

    def __init__(self, model: str, capability: str, reason: str) -> None:
        self.model = model
        self.capability = capability
        self.reason = reason
        super().__init__(f"model {model!r} cannot {capability}: {reason}")


def example_seed(seed: int, example_id: str) -> int:
    """The seed of one (run seed, example) pair: independent of batch, order, sharding and resumption."""
    digest = hashlib.sha256(f"{seed}:{example_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


def cpu_generator(seed: int) -> torch.Generator:
    """One CPU generator per example, so a batch equals single calls on any device."""
    return torch.Generator(device="cpu").manual_seed(int(seed))


def context_texts(context: Context) -> list[str]:
    """The text items of a context, in order."""
    return [item for item in context if isinstance(item, str)]


def context_has_images(context: Context) -> bool:
    """Whether any item of the context is an image."""
    return any(isinstance(item, Image.Image) for item in context)


@dataclasses.dataclass
class NoOptions:
    """Options of a model that takes none."""


class Model:
    """Base class of every model. Subclasses set ``name``, ``capabilities`` and ``Options``."""

    name: ClassVar[str] = "model"
    capabilities: ClassVar[frozenset[str]] = frozenset()
    Options: ClassVar[type] = NoOptions
    description: ClassVar[str] = ""

    def __init__(self, options: Any | None = None) -> None:
        self.options = options if options is not None else self.Options()

    def fingerprint(self) -> dict[str, Any]:
        """Name, options and weight hashes: recorded in every result this model produces."""
        return {"name": self.name, "options": dataclasses.asdict(self.options), "weights": self.weight_hashes()}

    def fingerprint_hash(self) -> str:
        """A short stable hash of the fingerprint, used to key generated images."""
        import json

        blob = json.dumps(self.fingerprint(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def weight_hashes(self) -> dict[str, str]:
        """sha256 (or another content hash) of each weight component; override in subclasses."""
        return {}

    def can(self, capability: str) -> bool:
        """Whether the model declares ``capability``."""
        return capability in self.capabilities

    def _unsupported(self, capability: str, reason: str | None = None) -> CapabilityError:
        return CapabilityError(self.name, capability, reason or "not implemented by this model")

    def generate(self, contexts: Sequence[Context], seeds: Sequence[int]) -> list[Image.Image]:
        """One image per context; ``seeds[i]`` seeds a CPU generator for context ``i`` alone."""
        raise self._unsupported(GENERATE)

    def embed_queries(self, contexts: Sequence[Context]) -> np.ndarray:
        """L2-normalised retrieval embeddings of contexts, shape (N, D), float32."""
        raise self._unsupported(RETRIEVE)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """L2-normalised retrieval embeddings of candidate images, shape (N, D), float32."""
        raise self._unsupported(RETRIEVE)

    def decision_features(self, prompts: Sequence[str]) -> np.ndarray:
        """Per-prompt features for the retrieve-or-generate classifier, shape (N, D), float32."""
        raise self._unsupported(DECIDE)

    def check_context(self, context: Context) -> None:
        """Raise ``CapabilityError`` if the context holds images and the model does not accept them."""
        if context_has_images(context) and not self.can(ACCEPTS_IMAGES):
            raise CapabilityError(self.name, ACCEPTS_IMAGES, "it takes text only, and the context holds images")
