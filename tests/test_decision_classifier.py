"""Classifiers and GILL's decision_model.pth.tar format (no data files needed)."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from gill_eval.decision.classifier import load_model, train_linear_dropout, train_logreg
from gill_eval.errors import InputError


def _data(n: int = 120, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, d)).astype(np.float32)
    x[:, 0] += 2.0 * (2 * y - 1)  # separable along the first axis
    return x, y


def _torch_p_ret(module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(module(torch.from_numpy(x)), dim=1)[:, 1].double().numpy()


def test_logreg_round_trips_through_official_format(tmp_path: Path) -> None:
    x, y = _data()
    model = train_logreg(x, y, seed=0)
    path = model.save(tmp_path / "decision_model.pth.tar")

    raw = torch.load(path, weights_only=True, map_location="cpu")
    assert set(raw["state_dict"]) == {"1.weight", "1.bias"}
    assert raw["state_dict"]["1.weight"].shape == (2, 16) and raw["state_dict"]["1.bias"].shape == (2,)
    assert raw["state_dict"]["1.weight"].dtype == torch.float32

    loaded = load_model(path)
    sk = LogisticRegression(C=1.0, max_iter=5000, random_state=0).fit(x, y)  # the oracle
    expected = sk.predict_proba(x)[:, 1]
    assert np.allclose(loaded.p_ret(x), expected, atol=1e-5)
    assert ((loaded.p_ret(x) > 0.5) == sk.predict(x).astype(bool)).all()
    # GILL's module built from the file gives the same probabilities.
    gill_module = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(16, 2))
    gill_module.load_state_dict(raw["state_dict"])
    assert np.allclose(_torch_p_ret(gill_module.eval(), x), expected, atol=1e-5)


def test_hand_made_official_file_predicts_like_torch(tmp_path: Path) -> None:
    """A file shaped like GILL's release (OrderedDict state_dict, no extra keys) loads and predicts."""
    gen = torch.Generator().manual_seed(0)
    state = OrderedDict([("1.weight", torch.randn(2, 64, generator=gen)), ("1.bias", torch.tensor([-0.0100, -0.0029]))])
    torch.save({"state_dict": state}, tmp_path / "decision_model.pth.tar")
    model = load_model(tmp_path / "decision_model.pth.tar")
    assert model.meta["classifier"] == "official"
    x = np.random.default_rng(1).normal(size=(50, 64)).astype(np.float32)
    module = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(64, 2))
    module.load_state_dict(state)
    assert np.allclose(model.p_ret(x), _torch_p_ret(module.eval(), x), atol=1e-6)
    assert np.allclose(_torch_p_ret(model.to_torch(), x), _torch_p_ret(module.eval(), x), atol=1e-7)
    # saving it again keeps the official keys and values
    model.save(tmp_path / "again.pth.tar")
    again = torch.load(tmp_path / "again.pth.tar", weights_only=True, map_location="cpu")["state_dict"]
    assert torch.equal(again["1.weight"], state["1.weight"]) and torch.equal(again["1.bias"], state["1.bias"])


def test_linear_dropout_is_seeded_and_learns() -> None:
    x, y = _data()
    torch.manual_seed(123)
    before = torch.rand(1)
    a = train_linear_dropout(x, y, seed=5, steps=150, lr=1e-2)
    b = train_linear_dropout(x, y, seed=5, steps=150, lr=1e-2)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(1), before)  # the caller's RNG stream is untouched
    assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
    c = train_linear_dropout(x, y, seed=6, steps=150, lr=1e-2)
    assert not np.array_equal(a.weight, c.weight)
    assert ((a.p_ret(x) > 0.5) == y.astype(bool)).mean() > 0.9
    assert a.meta == {"classifier": "linear-dropout", "steps": 150, "lr": 1e-2, "optimizer": "AdamW", "seed": 5,
                      "weight_decay": 0.0, "eps": 1e-8}


@pytest.mark.parametrize(
    ("blob", "needle"),
    [
        ({"weights": {}}, "state_dict"),
        ({"state_dict": {"1.weight": torch.zeros(3, 4), "1.bias": torch.zeros(3)}}, "expected (2, D)"),
    ],
)
def test_bad_model_files(tmp_path: Path, blob, needle: str) -> None:
    torch.save(blob, tmp_path / "m.pth.tar")
    with pytest.raises(InputError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        load_model(tmp_path / "m.pth.tar")
    (tmp_path / "junk.pth.tar").write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="junk.pth.tar"):
        load_model(tmp_path / "junk.pth.tar")


def test_wrong_feature_dimension_is_an_error() -> None:
    x, y = _data()
    with pytest.raises(InputError, match=r"expects \(N, 16\)"):
        train_logreg(x, y).p_ret(x[:, :8])
