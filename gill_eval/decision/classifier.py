"""Linear retrieve-or-generate classifiers, all stored in GILL's official ``decision_model.pth.tar`` format.

GILL's released decision model is ``Sequential(Dropout(0.5), Linear(D, 2))`` saved as
``{'state_dict': {'1.weight': (2, D), '1.bias': (2,)}}`` with output 0 = gen, 1 = ret; p(ret) is the
softmax of the two logits. Both trainers here produce exactly that: ``linear-dropout`` is the paper's
module trained with AdamW, and scikit-learn's logistic regression p(ret) = sigmoid(w.x + b) is the same
softmax with logits (0, w.x + b). So one file format and one prediction path serve every classifier,
including the official file. Our files add a ``gill_eval`` entry (classifier, feature-source
fingerprint, annotations); the official loader ignores extra keys and so do we when it is absent.
Files are read with ``weights_only=True`` (no pickle code execution).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from gill_eval.errors import ConfigError, InputError
from gill_eval.store import atomic_path

CLASSIFIERS = ("logreg", "linear-dropout")
DROPOUT_STEPS = 2000
DROPOUT_LR = 1e-3


@dataclass
class LinearDecisionModel:
    """Two-logit linear model: ``weight`` (2, D), ``bias`` (2,); row 0 = gen, row 1 = ret."""

    weight: np.ndarray
    bias: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.weight.shape[1])

    def p_ret(self, features: np.ndarray) -> np.ndarray:
        """Softmax probability of ret per row, computed in float64."""
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise InputError(f"features have shape {features.shape}, the classifier expects (N, {self.dim})")
        logits = features.astype(np.float64) @ self.weight.T.astype(np.float64) + self.bias.astype(np.float64)
        # softmax over two logits = sigmoid of their difference (stable for large logits)
        return 1.0 / (1.0 + np.exp(-(logits[:, 1] - logits[:, 0])))

    def to_torch(self) -> torch.nn.Sequential:
        """The equivalent ``Sequential(Dropout(0.5), Linear(D, 2))`` in eval mode, as GILL builds it."""
        module = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(self.dim, 2))
        module.load_state_dict(self.state_dict())
        return module.eval()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"1.weight": torch.from_numpy(np.ascontiguousarray(self.weight, dtype=np.float32)),
                "1.bias": torch.from_numpy(np.ascontiguousarray(self.bias, dtype=np.float32))}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the official format (plus our ``gill_eval`` metadata) atomically."""
        target = Path(path)
        with atomic_path(target) as tmp:
            torch.save({"state_dict": self.state_dict(), "gill_eval": self.meta}, tmp)
        return target


def load_model(path: str | os.PathLike[str]) -> LinearDecisionModel:
    """Load our file or GILL's official ``decision_model.pth.tar`` (``weights_only``, onto the CPU)."""
    path = Path(path)
    try:
        blob = torch.load(path, weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise InputError(f"{path}: no such decision model file") from None
    except Exception as exc:  # torch raises many types for a corrupt or non-weights file
        raise InputError(f"{path}: not a loadable decision model ({type(exc).__name__}: {exc})") from exc
    state = blob.get("state_dict") if isinstance(blob, dict) else None
    if not isinstance(state, dict) or "1.weight" not in state or "1.bias" not in state:
        raise InputError(f"{path}: expected {{'state_dict': {{'1.weight', '1.bias'}}}} (GILL's decision model format)")
    weight, bias = state["1.weight"], state["1.bias"]
    if weight.ndim != 2 or weight.shape[0] != 2 or tuple(bias.shape) != (2,):
        raise InputError(f"{path}: 1.weight {tuple(weight.shape)} / 1.bias {tuple(bias.shape)}; expected (2, D) / (2,)")
    meta = blob.get("gill_eval") or {"classifier": "official", "feature_fingerprint": None}
    return LinearDecisionModel(weight.float().numpy(), bias.float().numpy(), dict(meta))


def train_logreg(features: np.ndarray, labels: np.ndarray, seed: int = 0, c: float = 1.0) -> LinearDecisionModel:
    """scikit-learn's logistic regression (lbfgs, L2, C = ``c``) as a two-logit model."""
    clf = LogisticRegression(C=c, max_iter=5000, random_state=seed)
    clf.fit(features, labels)
    if list(clf.classes_) != [0, 1]:
        raise InputError("the training rows must contain both gen and ret")
    w = clf.coef_[0].astype(np.float64)
    weight = np.stack([np.zeros_like(w), w])
    bias = np.array([0.0, float(clf.intercept_[0])])
    return LinearDecisionModel(weight, bias, {"classifier": "logreg", "C": c, "seed": seed})


def train_linear_dropout(
    features: np.ndarray, labels: np.ndarray, seed: int = 0, steps: int = DROPOUT_STEPS, lr: float = DROPOUT_LR
) -> LinearDecisionModel:
    """The paper's ``Dropout(0.5) + Linear`` trained with AdamW on the full batch.

    Seeded inside a forked RNG, so the result depends on ``seed`` only and the caller's global torch RNG
    is left as it was.
    """
    x = torch.as_tensor(features, dtype=torch.float32)
    y = torch.as_tensor(labels, dtype=torch.long)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(x.shape[1], 2)).train()
        optimizer = torch.optim.AdamW(module.parameters(), lr=lr)
        loss_fn = torch.nn.CrossEntropyLoss()
        for _ in range(steps):
            optimizer.zero_grad()
            loss_fn(module(x), y).backward()
            optimizer.step()
    linear = module[1]
    return LinearDecisionModel(
        linear.weight.detach().double().numpy(), linear.bias.detach().double().numpy(),
        {"classifier": "linear-dropout", "steps": steps, "lr": lr, "optimizer": "AdamW", "seed": seed},
    )


def train(kind: str, features: np.ndarray, labels: np.ndarray, seed: int = 0, c: float = 1.0) -> LinearDecisionModel:
    """Train classifier ``kind`` (see ``CLASSIFIERS``)."""
    if kind == "logreg":
        return train_logreg(features, labels, seed=seed, c=c)
    if kind in ("linear-dropout", "official"):
        return train_linear_dropout(features, labels, seed=seed)
    raise ConfigError(f"--classifier {kind!r}: expected one of {', '.join(CLASSIFIERS)}")
