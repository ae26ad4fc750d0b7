"""Table 6 as GILL's TrainDecisionClassifier.ipynb computes it, against oracles written from the notebook.

The notebook (docs/protocols.md, Table 6): torch.manual_seed(1337); Sequential(Dropout(0.5), Linear(D, 2));
AdamW(lr=1e-3, weight_decay=0, eps=1e-8); 2000 full-batch steps; at steps 0, 100, ... and the last, before
that step's update, val predictions ``(softmax(logits) > t).float()`` for t in np.linspace(0, 1, 50),
scored by torchmetrics' macro F1, which takes the argmax over the two columns (first index on ties).
The real labels come from the PartiPrompts files bundled with the package.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from gill_eval.cli import app
from gill_eval.decision.annotations import load_labelled, load_prompts
from gill_eval.decision.classifier import train_linear_dropout
from gill_eval.decision.sweep import predict, probability_thresholds, sweep

ALWAYS_GENERATE_VAL = 0.3926  # 201 gen / 110 ret: F1(gen) = 2*201/(2*201+110) = 0.785, F1(ret) = 0


def _macro_f1_first_principles(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean over classes 0 and 1 of 2TP / (2TP + FP + FN) (0 when the denominator is 0)."""
    values = []
    for c in (0, 1):
        tp = int(((pred == c) & (y == c)).sum())
        fp = int(((pred == c) & (y != c)).sum())
        fn = int(((pred != c) & (y == c)).sum())
        values.append(2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 0.0)
    return sum(values) / 2


def _notebook_predictions(logits: torch.Tensor, t: float) -> np.ndarray:
    """The notebook's rule, literally: argmax over the columns of (softmax > t) as floats."""
    hits = (torch.softmax(logits, dim=-1) > t).float()
    return torch.argmax(hits, dim=1).numpy()


def test_official_rule_equals_the_notebook_argmax() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(400, 2, generator=gen) * 3
    logits[:5] = 0.0  # p_gen = p_ret = 0.5 exactly
    logits[5:10] = torch.tensor([0.0, 200.0])  # p_ret = 1.0 in float32
    logits[10:15] = torch.tensor([200.0, 0.0])  # p_gen = 1.0
    probs = torch.softmax(logits, dim=-1).numpy()
    for t in np.linspace(0, 1, 50):
        assert np.array_equal(predict(probs, t), _notebook_predictions(logits, float(t))), t
    # ties go to gen: at t = 0 only a saturated p_ret = 1 (p_gen = 0) is ret
    assert set(np.flatnonzero(predict(probs, 0.0))) == set(range(5, 10))
    assert not predict(probs[:5], 0.49).any() and not predict(probs[:5], 0.5).any()


@pytest.fixture(scope="module")
def parti(tmp_path_factory: pytest.TempPathFactory, partiprompts_dir: Path) -> Path:
    """The bundled PartiPrompts files (conftest: sha256-checked), prepared once for this module."""
    root = tmp_path_factory.mktemp("parti-bundled")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GILL_EVAL_DATA", str(root))
        from gill_eval.datasets.partiprompts_prepare import prepare
        from gill_eval.store import dataset_dir

        prepare(str(partiprompts_dir))
        return dataset_dir("partiprompts")


def test_t0_is_always_generate_on_the_real_val_labels(parti: Path) -> None:
    data = load_labelled(parti)
    y = data.labels[data.subset("val")]
    assert ((y == 0).sum(), (y == 1).sum()) == (201, 110)
    rng = np.random.default_rng(3)
    logits = torch.from_numpy(rng.normal(size=(len(y), 2)).astype(np.float32) + 1.5 * np.eye(2, dtype=np.float32)[y])
    probs = torch.softmax(logits, dim=-1).numpy()
    result = sweep(y, probs, probability_thresholds())
    assert len(result.thresholds) == 50 and result.thresholds[0] == 0.0 and result.thresholds[-1] == 1.0
    oracle = [_macro_f1_first_principles(y, _notebook_predictions(logits, t)) for t in np.linspace(0, 1, 50)]
    assert np.allclose(result.f1, oracle, atol=1e-12)
    assert round(result.f1[0], 4) == ALWAYS_GENERATE_VAL == round(_macro_f1_first_principles(y, 0 * y), 4)
    assert result.min == pytest.approx(min(oracle)) and result.max == pytest.approx(max(oracle))
    assert result.at_half == pytest.approx(_macro_f1_first_principles(y, _notebook_predictions(logits, 0.5)))


def _notebook_training(x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, steps: int):
    """The notebook's training cell on the CPU (seed 1337), returning weights and (step, best, worst) rows."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1337)
        train_data, train_labels = torch.tensor(x).float(), torch.tensor(y, dtype=torch.long)
        test_data = torch.tensor(xv).float()
        clf = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(x.shape[1], 2))
        optimizer = torch.optim.AdamW(clf.parameters(), lr=1e-3, weight_decay=0, eps=1e-8)
        ce = torch.nn.CrossEntropyLoss()
        rows = []
        for i in range(steps):
            train_preds = clf(train_data)
            loss = ce(train_preds, train_labels)
            if i % 100 == 0 or i == steps - 1:
                clf.eval()
                best, worst = 0.0, 1.0
                for thresh in np.linspace(0, 1, num=50):  # the grid the notebook names in a comment
                    with torch.no_grad():
                        preds = _notebook_predictions(clf(test_data), float(thresh))
                    f = _macro_f1_first_principles(yv, preds)
                    best, worst = max(best, f), min(worst, f)
                with torch.no_grad():  # the notebook's own loop: `for thresh in [0.5]`
                    at_half = _macro_f1_first_principles(yv, _notebook_predictions(clf(test_data), 0.5))
                clf.train()
                rows.append((i, best, worst, at_half))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    return clf[1].weight.detach().numpy(), clf[1].bias.detach().numpy(), rows


def test_training_equals_the_notebook_cell() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 160)
    x = (rng.normal(size=(160, 6)) + 0.8 * y[:, None]).astype(np.float32)
    xv, yv = x[120:], y[120:]
    model = train_linear_dropout(x[:120], y[:120], steps=250, val=(xv, yv))
    weight, bias, rows = _notebook_training(x[:120], y[:120], xv, yv, 250)
    assert np.array_equal(model.weight.astype(np.float32), weight)
    assert np.array_equal(model.bias.astype(np.float32), bias)
    got = [(c["step"], c["max"], c["min"]) for c in model.meta["checkpoints"]]
    assert [r[0] for r in got] == [0, 100, 200, 249] == [r[0] for r in rows]
    assert np.allclose([r[1:] for r in got], [r[1:3] for r in rows], atol=1e-12)
    assert np.allclose([c["at_half"] for c in model.meta["checkpoints"]], [r[3] for r in rows], atol=1e-12)
    best = max(rows, key=lambda r: r[3])  # the notebook's "Best F1": the best checkpoint at t = 0.5
    assert model.meta["best_checkpoint"]["step"] == best[0]
    assert model.meta["best_checkpoint"]["f1"] == pytest.approx(best[3])
    assert model.meta["seed"] == 1337 and model.meta["weight_decay"] == 0.0


def test_cli_defaults_are_the_notebook_and_the_report_says_so(parti: Path, tmp_path: Path) -> None:
    prompts, data = load_prompts(parti), load_labelled(parti)
    label = dict(zip(data.keys, data.labels))
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(prompts.keys), 8))
    vectors[:, 0] += np.array([1.2 * (2 * label[k] - 1) if k in label else 0.0 for k in prompts.keys])
    path = tmp_path / "v.parquet"
    pq.write_table(pa.table({"key": prompts.keys,
                             "embedding": pa.array(list(vectors.astype(np.float32)), pa.list_(pa.float32()))}), path)
    runner = CliRunner()
    feats, model = tmp_path / "feats", tmp_path / "clf.pth.tar"
    assert runner.invoke(app, ["decision", "features", "--source", f"parquet:{path}", "--out", str(feats),
                               "--dataset", str(parti)]).exit_code == 0
    result = runner.invoke(app, ["decision", "train", "--features", str(feats), "--out", str(model),
                                 "--dataset", str(parti), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["classifier"] == "linear-dropout"
    report = tmp_path / "r.md"
    result = runner.invoke(app, ["decision", "score", "--features", str(feats), "--model", str(model), "--dataset",
                                 str(parti), "--bootstrap", "50", "--random-draws", "50", "--report", str(report),
                                 "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    clf = out["rows"]["classifier"]
    assert len(clf["thresholds"]) == 50 and round(clf["f1"][0], 4) == ALWAYS_GENERATE_VAL
    assert clf["f1"][0] == pytest.approx(out["rows"]["always_generate"]["f1"])
    assert out["provenance"]["classifier"]["seed"] == 1337
    assert [c["step"] for c in clf["checkpoints"]] == [*range(0, 2000, 100), 1999]
    text = report.read_text()
    assert "not published" not in text and "argmax(softmax > t)" in text and "Best val F1" in text
