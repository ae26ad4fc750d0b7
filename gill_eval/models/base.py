"""The model interface every benchmark talks to.

A context is a list whose items are ``str`` or ``PIL.Image.Image``. A model declares its capabilities
and implements only those methods; asking for anything else raises ``CapabilityError``, which
benchmarks turn into "-" in tables (never a silent fallback). Options are a typed dataclass per model so
that ``--model-opt key=value`` is parsed by type and an unknown key is an error (see ``registry``).

Seeds: the caller derives one seed per (run seed, example) with ``example_seed`` and passes it in
``generate(contexts, seeds)``; the model builds one CPU ``torch.Generator`` per item from it
(``cpu_generator``), so a batch equals single calls and results do not depend on batch size, order,
sharding or resumption.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Union

from PIL import Image

from gill_eval.errors import ConfigError, GillEvalError

if TYPE_CHECKING:  # torch is imported where it is used, so that listing models and --help stay fast
    import numpy as np
    import torch

ContextItem = Union[str, Image.Image]
Context = list[ContextItem]

GENERATE = "generate"
RETRIEVE = "retrieve"
DECIDE = "decide"
ACCEPTS_IMAGES = "accepts_images"
TEXT = "text"
ALL_CAPABILITIES = (GENERATE, RETRIEVE, DECIDE, ACCEPTS_IMAGES, TEXT)
_ABILITY = {
    GENERATE: "generate images",
    RETRIEVE: "embed queries and images for retrieval",
    DECIDE: "produce decision features",
    ACCEPTS_IMAGES: "take images in its context",
    TEXT: "answer in text",
}


class CapabilityError(GillEvalError):
    """The model cannot do what was asked (e.g. Stable Diffusion given an image in its context)."""

    def __init__(self, model: str, capability: str, reason: str) -> None:
        self.model = model
        self.capability = capability
        self.reason = reason
        super().__init__(f"model {model!r} cannot {_ABILITY.get(capability, capability)}: {reason}")


def example_seed(seed: int, example_id: str) -> int:
    """The seed of one (run seed, example) pair: independent of batch, order, sharding and resumption."""
    digest = hashlib.sha256(f"{seed}:{example_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


def cpu_generator(seed: int) -> torch.Generator:
    """One CPU generator per example, so a batch equals single calls on any device."""
    import torch

    return torch.Generator(device="cpu").manual_seed(int(seed))


def context_texts(context: Context) -> list[str]:
    """The text items of a context, in order."""
    return [item for item in context if isinstance(item, str)]


def context_has_images(context: Context) -> bool:
    """Whether any item of the context is an image."""
    return any(isinstance(item, Image.Image) for item in context)


def join_captions(context: Context) -> str:
    """The text a text-only model sees: the captions in order, each stripped, joined with one space.

    This is gill-eval's stated choice for multi-caption contexts (the CLIP baseline's exact input is not
    documented by GILL); captions carry stray whitespace and newlines in the raw data.
    """
    return " ".join(text.strip() for text in context_texts(context) if text.strip())


def option(default: Any, doc: str, runtime: bool = False) -> Any:
    """A documented ``Options`` field. ``runtime=True`` marks options that cannot change outputs
    (batch size, device placement): they are left out of the fingerprint so that a resumed run with
    another batch size reuses earlier results."""
    return dataclasses.field(default=default, metadata={"help": doc, "runtime": runtime})


def resolve_device(device: str | None) -> torch.device:
    """``None`` or ``"auto"`` means CUDA when available, else CPU."""
    import torch

    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"option device={device!r}: {exc}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"option device={device!r}: CUDA is not available on this machine")
    return resolved


def truncation_stats(truncated: Sequence[bool]) -> dict[str, Any]:
    """The ``last_run_stats`` of a call whose text inputs may have been cut at the tokenizer's limit."""
    flags = [bool(flag) for flag in truncated]
    return {"contexts": len(flags), "truncated_contexts": sum(flags), "truncated": flags}


def weights_fingerprint(source: str, registered_as: str | None = None) -> str:
    """A content hash of a model's weights, for its fingerprint.

    A local file or folder is hashed here (a folder: sha256 over its files' relative paths and sha256,
    hidden files skipped); a registered weight name, or a hub id that ``registered_as`` stands for, gives
    the checksum recorded by ``gill-eval models fetch``, or ``"unrecorded"`` when it was staged otherwise.
    """
    from gill_eval.models import weights
    from gill_eval.store.atomic import sha256_file

    path = Path(source).expanduser()
    if path.is_file():
        return sha256_file(path)
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        listing = "\n".join(f"{p.relative_to(path).as_posix()}\t{sha256_file(p)}" for p in files)
        return hashlib.sha256(listing.encode()).hexdigest()
    name = source if source in weights.REGISTRY else registered_as
    recorded = weights.fingerprint(name) if name is not None else None
    return recorded or "unrecorded"


@dataclasses.dataclass
class NoOptions:
    """Options of a model that takes none."""


class Model:
    """Base class of every model. Subclasses set ``name``, ``capabilities`` and ``Options``.

    ``requires`` lists importable modules of an optional dependency and ``install_hint`` the command
    that installs it; the registry checks them before constructing the model, so a missing extra is a
    one-line message instead of an ImportError deep inside a benchmark.

    After each ``generate`` or ``embed_queries`` call, ``last_run_stats`` describes that call (for text
    models: how many contexts were truncated at the tokenizer's limit), for benchmarks to record.
    """

    name: ClassVar[str] = "model"
    capabilities: ClassVar[frozenset[str]] = frozenset()
    Options: ClassVar[type] = NoOptions
    description: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    install_hint: ClassVar[str] = ""

    def __init__(self, options: Any | None = None) -> None:
        self.options = options if options is not None else self.Options()
        self.last_run_stats: dict[str, Any] = {}

    @classmethod
    def missing_requirements(cls) -> list[str]:
        """The modules of ``requires`` that cannot be imported here."""
        return [module for module in cls.requires if importlib.util.find_spec(module) is None]

    def fingerprint(self) -> dict[str, Any]:
        """Name, output-affecting options and weight hashes: recorded in every result of this model."""
        options = {
            field.name: getattr(self.options, field.name)
            for field in dataclasses.fields(self.options)
            if not field.metadata.get("runtime", False)
        }
        return {"name": self.name, "options": options, "weights": self.weight_hashes()}

    def fingerprint_hash(self) -> str:
        """A short stable hash of the fingerprint, used to key generated images."""
        blob = json.dumps(self.fingerprint(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def weight_hashes(self) -> dict[str, str]:
        """sha256 (or another content hash) of each weight component; override in subclasses."""
        return {}

    @classmethod
    def can(cls, capability: str) -> bool:
        """Whether the model declares ``capability``."""
        return capability in cls.capabilities

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

    def generate_text(self, contexts: Sequence[Context], seeds: Sequence[int], max_new_tokens: int) -> list[str]:
        """One text answer per context, at most ``max_new_tokens`` new tokens each (capability ``TEXT``).

        Greedy unless the model's options say otherwise; ``seeds[i]`` seeds a CPU generator for context ``i``
        alone (a sampling model must draw from it, so a batch equals single calls). Call
        ``check_text_args`` first."""
        raise self._unsupported(TEXT)

    def check_text_args(self, contexts: Sequence[Context], seeds: Sequence[int], max_new_tokens: int) -> None:
        """Shared argument checks of ``generate_text``."""
        if not self.can(TEXT):
            raise self._unsupported(TEXT)
        if len(contexts) != len(seeds):
            raise GillEvalError(f"model {self.name!r}: {len(contexts)} contexts but {len(seeds)} seeds")
        if max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens={max_new_tokens}: must be at least 1")
        for context in contexts:
            self.check_context(context)

    def decision_features(self, prompts: Sequence[str]) -> np.ndarray:
        """Per-prompt features for the retrieve-or-generate classifier, shape (N, D), float32."""
        raise self._unsupported(DECIDE)

    @classmethod
    def check_context(cls, context: Context) -> None:
        """Raise ``CapabilityError`` if the context holds images and the model does not accept them.

        A class method, so callers can reject a context before loading any weights."""
        if context_has_images(context) and not cls.can(ACCEPTS_IMAGES):
            raise CapabilityError(cls.name, ACCEPTS_IMAGES, "it is text-only, and the context holds images")

    def check_generate_args(self, contexts: Sequence[Context], seeds: Sequence[int]) -> None:
        """Shared argument checks of ``generate``: one seed per context, contexts the model accepts."""
        if not self.can(GENERATE):
            raise self._unsupported(GENERATE)
        if len(contexts) != len(seeds):
            raise GillEvalError(f"model {self.name!r}: {len(contexts)} contexts but {len(seeds)} seeds")
        for context in contexts:
            self.check_context(context)
            if not context_texts(context) and not context_has_images(context):
                raise GillEvalError(f"model {self.name!r}: empty context")
