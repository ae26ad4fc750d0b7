"""LPIPS (AlexNet, v0.1) between generated and real images, as GILL computed it (both resized to 256x256).

The ``lpips`` package ships the linear-layer weights; the AlexNet trunk normally comes from torchvision's
download, which an offline machine cannot do. ``build_lpips`` therefore builds the network with a random
trunk (``pnet_rand=True``, no download) and loads the trunk from a local file: an explicit path, or
torchvision's own cache file. Offline with no file, it fails with the command that stages it. A random
trunk is only used when the caller asks for one by name and is recorded as such.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import lpips as _lpips
import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from gill_eval.errors import InputError
from gill_eval.metrics.inputs import ordered_map
from gill_eval.models.weights import resolve

LPIPS_SIZE = 256
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
RANDOM_TRUNK = "random"
# torchvision AlexNet ``features.{i}`` -> lpips ``net.slice{k}.{i}`` (docs/protocols.md, LPIPS).
_TRUNK_SLICES = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}


def _trunk_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input problem
        raise InputError(f"{path}: not a readable AlexNet state dict ({exc})") from exc
    mapped: dict[str, torch.Tensor] = {}
    for i, k in _TRUNK_SLICES.items():
        for part in ("weight", "bias"):
            key = f"features.{i}.{part}"
            if key not in state:
                raise InputError(f"{path}: missing key {key!r} (expected torchvision AlexNet weights)")
            mapped[f"net.slice{k}.{i}.{part}"] = state[key]
    return mapped


def _check_linear_loaded(net: _lpips.LPIPS) -> None:
    """lpips loads its linear weights with strict=False: make sure they really arrived (docs/protocols.md, LPIPS)."""
    shipped = Path(_lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
    state = torch.load(shipped, map_location="cpu", weights_only=True)
    if not torch.equal(net.lin0.model[1].weight, state["lin0.model.1.weight"]):
        raise RuntimeError(f"{shipped}: LPIPS linear weights were not loaded into the network")


def build_lpips(trunk: str | os.PathLike[str] | None = None) -> tuple[_lpips.LPIPS, str]:
    """The LPIPS network and a description of its trunk for provenance.

    ``trunk``: a path to torchvision AlexNet weights, ``"random"`` (explicit opt-in), or ``None`` for the
    staged ``lpips-alex`` weight (torchvision's own cache file).
    """
    with warnings.catch_warnings():  # lpips calls torchvision's deprecated `pretrained=` argument
        warnings.simplefilter("ignore", UserWarning)
        net = _lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
    _check_linear_loaded(net)
    if trunk == RANDOM_TRUNK:
        return net, "random AlexNet trunk (meaningless scores)"
    # None: the staged torchvision file (`gill-eval models fetch lpips-alex`; OfflineError when offline).
    path = Path(trunk) if trunk is not None else resolve("lpips-alex") / ALEXNET_FILE
    if not path.is_file():
        raise InputError(f"{path}: AlexNet trunk file not found")
    missing, unexpected = net.load_state_dict(_trunk_state(path), strict=False)
    if unexpected or any(k.startswith("net.") for k in missing):
        raise InputError(f"{path}: AlexNet trunk did not load (missing {missing[:3]}, unexpected {unexpected[:3]})")
    net.eval()
    return net, f"torchvision AlexNet from {path.name}"


def to_lpips_tensor(images: Sequence[Image.Image]) -> torch.Tensor:
    """RGB images -> float NCHW in [-1, 1] at 256x256, in the order of GILL's ``evals/lpips_2dirs.py``:
    ``lpips.im2tensor`` (x / 127.5 - 1 in float64, then float32), then a bilinear antialiased resize to
    256x256, aspect not kept (docs/protocols.md)."""
    tensors = []
    for im in images:
        t = _lpips.im2tensor(np.asarray(im.convert("RGB")))
        tensors.append(TF.resize(t, [LPIPS_SIZE, LPIPS_SIZE], interpolation=TF.InterpolationMode.BILINEAR,
                                 antialias=True))
    return torch.cat(tensors)


class LpipsScorer:
    """Batched LPIPS over image pairs in fixed-size chunks (results independent of the caller's grouping)."""

    def __init__(self, net: _lpips.LPIPS, device: str = "cpu", batch_size: int = 32) -> None:
        self.net = net.to(device).eval()
        self.device = device
        self.batch_size = batch_size

    @staticmethod
    def prepare(image: Image.Image) -> torch.Tensor:
        """One image as the network's input, (1, 3, 256, 256); thread-safe, so workers can run it ahead."""
        return to_lpips_tensor([image])

    def score(self, generated: Sequence[Image.Image], reference: Sequence[Image.Image],
              workers: int | None = None) -> np.ndarray:
        """Per-pair LPIPS distances, float64, shape (N,); inputs prepared in ``workers`` threads (``metrics.inputs``)."""
        if len(generated) != len(reference):
            raise ValueError(f"{len(generated)} generated images but {len(reference)} references")
        pairs = list(ordered_map(lambda pair: (self.prepare(pair[0]), self.prepare(pair[1])),
                                 zip(generated, reference), workers))
        return self.score_prepared([a for a, _ in pairs], [b for _, b in pairs])

    @torch.no_grad()
    def score_prepared(self, generated: Sequence[torch.Tensor], reference: Sequence[torch.Tensor]) -> np.ndarray:
        """Per-pair distances of inputs made by ``prepare``, in fixed chunks of ``batch_size``."""
        out = []
        for start in range(0, len(generated), self.batch_size):
            a = torch.cat(list(generated[start : start + self.batch_size])).to(self.device)
            b = torch.cat(list(reference[start : start + self.batch_size])).to(self.device)
            out.append(self.net(a, b).reshape(-1).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)
