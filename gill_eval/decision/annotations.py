"""The labelled rows of the prepared PartiPrompts table, as arrays the classifier and the scores use.

Labels follow GILL's decision model: 0 = ``gen``, 1 = ``ret``. Only usable rows (not ``same``) are kept.
``alignment`` is the published labelling (the paper's Table 6); ``realism`` applies the same agreement
rule to the Realism votes, with its own first-600 split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gill_eval.annotate.labels import read_collected
from gill_eval.datasets.partiprompts import LABELS, TRAIN_SIZE, confident_decision, published_split
from gill_eval.errors import ConfigError, InputError
from gill_eval.store import dataset_dir, iter_rows, read_manifest

ANNOTATIONS = ("alignment", "realism")
_COLUMNS = {"alignment": ("decision", "split"), "realism": ("realism_decision", "realism_split")}


@dataclass(frozen=True)
class Prompts:
    """Every prompt of the prepared table, in file order."""

    keys: list[str]
    prompts: list[str]


@dataclass(frozen=True)
class Labelled:
    """The usable rows of one annotation kind."""

    annotations: str
    keys: list[str]
    labels: np.ndarray  # int64, 0 = gen, 1 = ret
    splits: np.ndarray  # "train" / "val"
    votes: list[list[str]]  # the raw votes of the same kind, for human agreement
    source_sha256: dict[str, str]  # annotation file name -> sha256, from the dataset manifest

    def subset(self, split: str) -> np.ndarray:
        """Row indices of ``split``."""
        return np.flatnonzero(self.splits == split)


def _dataset(folder: Path | None) -> Path:
    return Path(folder) if folder is not None else dataset_dir("partiprompts")


def clean_prompt(prompt: str) -> str:
    """A prompt as the notebook reads it: its ``line.strip()`` drops the leading space one prompt has in the
    TSV (docs/protocols.md, Table 6); the trailing end of the line is other columns."""
    return prompt.lstrip()


def load_prompts(folder: Path | None = None) -> Prompts:
    """Keys and prompts of the prepared PartiPrompts table, each through ``clean_prompt``."""
    rows = list(iter_rows(_examples(folder), columns=["key", "prompt"]))
    return Prompts([r["key"] for r in rows], [clean_prompt(r["prompt"]) for r in rows])


def _examples(folder: Path | None) -> Path:
    root = _dataset(folder)
    read_manifest(root)  # a clear error when `prepare partiprompts` has not run
    return root / "examples"


def load_labelled(folder: Path | None = None, annotations: str = "alignment", labels: Path | None = None) -> Labelled:
    """The usable rows of ``annotations`` with their labels, split and votes; from ``labels`` (a folder
    written by ``annotate collect``) instead of the prepared table when given."""
    if annotations not in ANNOTATIONS:
        raise ConfigError(f"--annotations {annotations!r}: expected one of {', '.join(ANNOTATIONS)}")
    if labels is not None:
        return _load_collected(Path(labels), annotations)
    decision_col, split_col = _COLUMNS[annotations]
    votes_col = f"{annotations}_votes"
    rows = [
        r
        for r in iter_rows(_examples(folder), columns=["key", decision_col, split_col, votes_col])
        if r[decision_col] != "same"
    ]
    if not rows:
        raise InputError(f"{_dataset(folder)}: no usable {annotations} rows")
    manifest = read_manifest(_dataset(folder))
    return Labelled(
        annotations=annotations,
        keys=[r["key"] for r in rows],
        labels=np.array([LABELS.index(r[decision_col]) for r in rows], dtype=np.int64),
        splits=np.array([r[split_col] for r in rows]),
        votes=[r[votes_col] for r in rows],
        source_sha256={Path(s["path"]).name: s["sha256"] for s in manifest.sources},
    )


def _load_collected(labels: Path, annotations: str) -> Labelled:
    """The usable rows of a collected folder, by the paper's agreement rule and split (small studies: 4/5 train)."""
    collected = read_collected(labels, annotations)
    decisions = [confident_decision(v) for v in collected.votes]
    usable = [i for i, d in enumerate(decisions) if d != "same"]
    if len(usable) < 3:
        raise InputError(f"{labels}: {len(usable)} usable {annotations} rows under the agreement rule; "
                         "a train and a val split need at least 3")
    # the paper's first 600 usable rows, at most four fifths of them: a smaller study keeps a fifth for val
    # (docs/protocols.md)
    splits = published_split(decisions, min(TRAIN_SIZE, (4 * len(usable)) // 5))
    return Labelled(
        annotations=annotations,
        keys=[collected.keys[i] for i in usable],
        labels=np.array([LABELS.index(decisions[i]) for i in usable], dtype=np.int64),
        splits=np.array([splits[i] for i in usable]),
        votes=[collected.votes[i] for i in usable],
        source_sha256=collected.source_sha256,
    )
