"""The official retrieve-or-generate decision model (``decision_model.pth.tar``, docs/protocols.md).

The file is ``{'state_dict': {'1.weight': (2, D), '1.bias': (2,)}}`` saved from
``Sequential(Dropout(0.5), Linear(D, 2))`` with D = 4096 (the [IMG0] final hidden state). Output index
0 is 'gen', 1 is 'ret'; the label is the argmax of the logits (ties: gen), nothing else. GILL casts the
whole model to bf16 (``load_gill`` in gill/models.py), so the official numerics are bf16 logits and a
bf16 softmax; ``load_decision_model`` takes the dtype, and the ``gill`` model passes its ``precision``
(bf16 = official, fp32 recorded as an option; in fp32 a small share of decisions flip).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from gill_eval.errors import InputError

LABELS = ("gen", "ret")


def build_decision_model(in_dim: int, dtype: torch.dtype = torch.float32) -> nn.Sequential:
    """The official module (saved in fp32) in ``dtype``; dropout is inert in eval mode but keeps the ``1.``
    key prefix."""
    return nn.Sequential(nn.Dropout(p=0.5), nn.Linear(in_dim, 2)).to(dtype).eval()


def load_decision_model(path: Path, in_dim: int, dtype: torch.dtype = torch.bfloat16) -> nn.Sequential:
    """Load the official file with strict key matching, in ``dtype`` (bf16: the official numerics).

    A wrong key or shape names the file and key.
    """
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"{path}: not found") from None
    except Exception as exc:  # corrupt file or non-weights-only content
        raise InputError(f"{path}: cannot be read as a weights-only torch checkpoint ({exc})") from None
    state = blob.get("state_dict") if isinstance(blob, dict) else None
    if not isinstance(state, dict):
        raise InputError(f"{path}: expected a dict with a 'state_dict' entry")
    expected = {"1.weight": (2, in_dim), "1.bias": (2,)}
    for key, shape in expected.items():
        if key not in state:
            raise InputError(f"{path}: missing required key {key!r}")
        if tuple(state[key].shape) != shape:
            raise InputError(f"{path}: key {key!r} has shape {tuple(state[key].shape)}, expected {shape}")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise InputError(f"{path}: unexpected keys {extra}")
    model = build_decision_model(in_dim, dtype)
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True)
    return model


@torch.no_grad()
def decision_logits(model: nn.Sequential, features: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, D) [IMG0] features -> (N, 2) [gen, ret] logits, computed in the module's dtype."""
    weight = model[1].weight
    return model(torch.as_tensor(np.asarray(features)).to(device=weight.device, dtype=weight.dtype))


def decision_probabilities(model: nn.Sequential, features: np.ndarray | torch.Tensor) -> np.ndarray:
    """(N, 2) [p_gen, p_ret]: the softmax taken in the module's dtype, then float32 (as the official)."""
    return decision_logits(model, features).softmax(dim=-1).float().cpu().numpy()


def decision_labels(logits: np.ndarray | torch.Tensor) -> list[str]:
    """'gen' or 'ret' per row: the argmax of the logits (first on ties), exactly as the official code.

    Logits, not probabilities: two different bf16 logits can round to equal bf16 probabilities.
    """
    values = torch.as_tensor(logits).float()
    return [LABELS[int(i)] for i in torch.argmax(values, dim=1)]
