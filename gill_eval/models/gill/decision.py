"""The official retrieve-or-generate decision model (``decision_model.pth.tar``, spec §1.4).

The file is ``{'state_dict': {'1.weight': (2, D), '1.bias': (2,)}}`` saved from
``Sequential(Dropout(0.5), Linear(D, 2))`` with D = 4096 (the [IMG0] final hidden state). Output index
0 is 'gen', 1 is 'ret'; the label is the argmax of the softmax (a 0.5 threshold), nothing else.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from gill_eval.errors import InputError

LABELS = ("gen", "ret")


def build_decision_model(in_dim: int) -> nn.Sequential:
    """The official module; dropout is inert in eval mode but keeps the ``1.`` key prefix."""
    return nn.Sequential(nn.Dropout(p=0.5), nn.Linear(in_dim, 2)).eval()


def load_decision_model(path: Path, in_dim: int) -> nn.Sequential:
    """Load the official file with strict key matching; a wrong key or shape names the file and key."""
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
    model = build_decision_model(in_dim)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model


@torch.no_grad()
def decision_probabilities(model: nn.Sequential, features: np.ndarray | torch.Tensor) -> np.ndarray:
    """(N, D) [IMG0] features -> (N, 2) softmax probabilities [p_gen, p_ret] (float32)."""
    x = torch.as_tensor(np.asarray(features), dtype=model[1].weight.dtype, device=model[1].weight.device)
    return torch.softmax(model(x), dim=-1).float().cpu().numpy()


def decision_labels(probabilities: np.ndarray) -> list[str]:
    """'gen' or 'ret' per row: the argmax, exactly as the official code."""
    return [LABELS[int(i)] for i in np.argmax(probabilities, axis=1)]
