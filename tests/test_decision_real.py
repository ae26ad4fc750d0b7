"""`gill-eval decision` on the real PartiPrompts annotation files (the bundled, sha256-checked copies).

Features come from a user Parquet file (``parquet:``) whose vectors are built from the labels plus noise,
so the classifier rows are checked against independent computations, not against fixed numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold
from typer.testing import CliRunner

from gill_eval.cli import app
from gill_eval.decision.annotations import load_labelled, load_prompts

runner = CliRunner()
from conftest import REPO, bundled_partiprompts

PAPER_TABLES = REPO / "gill_eval" / "report" / "paper_tables.json"
SHARED_REFERENCE = REPO.parent / "shared" / "reference" / "gill_paper_tables.json"


@pytest.fixture(scope="module")
def parti(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real files prepared once for this module; tests pass ``--dataset`` explicitly."""
    root = tmp_path_factory.mktemp("parti-data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GILL_EVAL_DATA", str(root))
        from gill_eval.datasets.partiprompts_prepare import prepare
        from gill_eval.store import dataset_dir

        prepare(str(bundled_partiprompts()))
        return dataset_dir("partiprompts")


def _cli(*args: str):
    result = runner.invoke(app, ["decision", *args])
    return result


def _score_json(*args: str) -> dict:
    result = _cli("score", *args, "--json", "--bootstrap", "200", "--random-draws", "200")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _write_vectors(path: Path, keys: list[str], vectors: np.ndarray) -> Path:
    pq.write_table(pa.table({"key": keys, "embedding": pa.array(list(vectors.astype(np.float32)),
                                                                pa.list_(pa.float32()))}), path)
    return path


@pytest.fixture(scope="module")
def user_vectors(parti: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """8-d vectors for every prompt: the first axis carries the label (where there is one) plus noise."""
    prompts = load_prompts(parti)
    data = load_labelled(parti)
    label = dict(zip(data.keys, data.labels))
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(prompts.keys), 8))
    vectors[:, 0] += np.array([1.2 * (2 * label[k] - 1) if k in label else 0.0 for k in prompts.keys])
    path = _write_vectors(tmp_path_factory.mktemp("vec") / "user.parquet", prompts.keys, vectors)
    return path, vectors


def test_counts_and_baselines_from_the_files(parti: Path, tmp_path: Path) -> None:
    data = load_labelled(parti)
    assert len(data.keys) == 911
    assert (data.labels == 0).sum() == 592 and (data.labels == 1).sum() == 319
    val = data.subset("val")
    assert ((data.labels[val] == 0).sum(), (data.labels[val] == 1).sum()) == (201, 110)

    out = _score_json("--dataset", str(parti), "--report", str(tmp_path / "base.md"))
    rows = out["rows"]
    assert round(rows["always_retrieve"]["f1"], 4) == 0.2613
    assert round(rows["always_generate"]["f1"], 4) == 0.3926
    assert round(rows["human"]["f1"], 4) == 0.8512
    assert rows["classifier"] is None and rows["heuristic"] is None
    assert out["counts"]["val"] == {"gen": 201, "ret": 110}
    # Human agreement by an independent route: pandas over the raw Alignment file.
    import pandas as pd

    lines = (bundled_partiprompts() / "PartiPromptsAllDecisions_Alignment.tsv").read_text().splitlines()[1:]
    conf = (bundled_partiprompts() / "PartiPromptsDecisionsConfident.tsv").read_text().splitlines()[1:]
    pairs = pd.DataFrame(
        [(c.split("\t")[4], v) for line, c in zip(lines, conf) for v in line.split("\t")[4].split(",")],
        columns=["truth", "vote"],
    )
    pairs = pairs[(pairs.truth != "same") & (pairs.vote != "same")]
    assert rows["human"]["votes"] == len(pairs)
    assert rows["human"]["f1"] == pytest.approx(f1_score(pairs.truth, pairs.vote, average="macro"), abs=1e-12)
    lo, hi = rows["human"]["ci95"]
    assert lo < rows["human"]["f1"] < hi
    # Random with the train prior (209/600 ret): the expected value sits within the draws' spread.
    assert rows["random"]["p_ret"] == pytest.approx(209 / 600)
    draws = rows["random"]["draws"]
    assert abs(rows["random"]["f1"] - draws["mean"]) < 3 * draws["std"] / np.sqrt(200)

    report = (tmp_path / "base.md").read_text()
    assert "| Always retrieve | 0.2613 |" in report and "| 0.267 |" in report and "0.393-0.552" in report
    assert "none (baseline rows only)" in report


def test_train_score_report_and_official_parity(parti: Path, user_vectors, tmp_path: Path) -> None:
    vec_path, vectors = user_vectors
    feats = tmp_path / "feats"
    result = _cli("features", "--source", f"parquet:{vec_path}", "--out", str(feats), "--dataset", str(parti))
    assert result.exit_code == 0, result.output
    model = tmp_path / "clf.pth.tar"
    result = _cli("train", "--features", str(feats), "--out", str(model), "--dataset", str(parti),
                  "--classifier", "logreg")
    assert result.exit_code == 0, result.output
    report = tmp_path / "rep" / "decision.md"
    out = _score_json("--features", str(feats), "--model", str(model), "--dataset", str(parti),
                      "--thresholds", "11", "--report", str(report), "--cv", "3")

    # Independent route: sklearn on the same rows, and GILL's torch module from the saved state dict.
    data = load_labelled(parti)
    index = {k: i for i, k in enumerate(load_prompts(parti).keys)}
    x = vectors[[index[k] for k in data.keys]].astype(np.float32)
    tr, va = data.subset("train"), data.subset("val")
    sk = LogisticRegression(max_iter=5000, random_state=0).fit(x[tr], data.labels[tr])
    module = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(8, 2))
    module.load_state_dict(torch.load(model, weights_only=True, map_location="cpu")["state_dict"])
    with torch.no_grad():
        probs = torch.softmax(module.eval()(torch.from_numpy(x[va])), 1)
    p_torch = probs[:, 1].numpy()
    assert np.allclose(p_torch, sk.predict_proba(x[va])[:, 1], atol=1e-5)
    clf = out["rows"]["classifier"]
    for t, f in zip(clf["thresholds"], clf["f1"]):  # the notebook's rule: argmax of (softmax > t)
        notebook = torch.argmax((probs > t).float(), dim=1).numpy()
        assert f == pytest.approx(f1_score(data.labels[va], notebook, average="macro", zero_division=0), abs=1e-9)
    assert clf["f1"][0] == pytest.approx(out["rows"]["always_generate"]["f1"])
    assert clf["f1"][-1] == pytest.approx(out["rows"]["always_generate"]["f1"])
    assert clf["at_half"] > out["rows"]["always_generate"]["f1"] + 0.1  # the signal is learnable

    # --cv 3: the same folds by hand.
    folds = StratifiedKFold(3, shuffle=True, random_state=0)
    by_hand = []
    for a, b in folds.split(x, data.labels):
        m = LogisticRegression(max_iter=5000, random_state=0).fit(x[a], data.labels[a])
        by_hand.append(f1_score(data.labels[b], m.predict(x[b]), average="macro"))
    assert out["cv"]["at_half"]["mean"] == pytest.approx(np.mean(by_hand), abs=1e-4)
    assert out["cv"]["rows"] == 911

    text = report.read_text()
    assert "Features: `parquet:" in text and "0.393-0.552 (0.547 at 0.5)" in text
    assert "OPT-6.7B" in text and "decision.png" in text
    with Image.open(report.with_suffix(".png")) as img:
        assert img.format == "PNG" and img.width > 300


def test_realism_annotations(parti: Path, tmp_path: Path) -> None:
    out = _score_json("--dataset", str(parti), "--annotations", "realism", "--report", str(tmp_path / "r.md"))
    n = out["counts"]
    assert n["train"]["gen"] + n["train"]["ret"] == 600
    assert n["train"]["gen"] + n["val"]["gen"] == 402 and n["train"]["ret"] + n["val"]["ret"] == 370


def test_heuristic_sweep_from_max_cosine(parti: Path, user_vectors, tmp_path: Path) -> None:
    """--retrieval-candidates with the user vectors as both query and candidate space (8-d)."""
    vec_path, vectors = user_vectors
    rng = np.random.default_rng(1)
    cands = rng.normal(size=(40, 8))
    cand_path = _write_vectors(tmp_path / "cands.parquet", [f"c{i}" for i in range(40)], cands)
    feats = tmp_path / "feats"
    result = _cli("features", "--source", f"parquet:{vec_path}", "--out", str(feats), "--dataset", str(parti),
                  "--retrieval-candidates", str(cand_path), "--retrieval-query", f"parquet:{vec_path}")
    assert result.exit_code == 0, result.output
    table = pq.read_table(feats / "00000.parquet")
    q = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    c = cands / np.linalg.norm(cands, axis=1, keepdims=True)
    assert np.allclose(table.column("max_cosine").to_numpy(), (q @ c.T).max(1), atol=1e-6)
    out = _score_json("--heuristic", str(feats), "--dataset", str(parti), "--thresholds", "9",
                      "--report", str(tmp_path / "h.md"))
    h = out["rows"]["heuristic"]
    assert h["f1"][0] == pytest.approx(out["rows"]["always_retrieve"]["f1"])
    assert h["f1"][-1] == pytest.approx(out["rows"]["always_generate"]["f1"])
    # dimension mismatch between query and candidates
    _write_vectors(tmp_path / "bad.parquet", ["c0"], rng.normal(size=(1, 5)))
    result = _cli("features", "--source", f"parquet:{vec_path}", "--out", str(tmp_path / "f2"),
                  "--dataset", str(parti), "--retrieval-candidates", str(tmp_path / "bad.parquet"),
                  "--retrieval-query", f"parquet:{vec_path}")
    assert result.exit_code == 2 and "dimension 8" in result.output


def test_bad_feature_files(parti: Path, user_vectors, tmp_path: Path) -> None:
    vec_path, vectors = user_vectors
    keys = load_prompts(parti).keys

    def features_error(path: Path) -> str:
        result = _cli("features", "--source", f"parquet:{path}", "--out", str(tmp_path / "out"),
                      "--dataset", str(parti))
        assert result.exit_code == 2, result.output
        assert len(result.output.strip().splitlines()) == 1
        return result.output

    assert "parti-0007" in features_error(_write_vectors(tmp_path / "missing.parquet", keys[:7] + keys[8:],
                                                         np.delete(vectors, 7, axis=0)))
    nan = vectors.copy()
    nan[3, 2] = np.nan
    assert "'parti-0003' has NaN" in features_error(_write_vectors(tmp_path / "nan.parquet", keys, nan))
    ragged = pa.table({"key": keys[:2], "embedding": [[0.0] * 8, [0.0] * 7]})
    pq.write_table(ragged, tmp_path / "ragged.parquet")
    assert "'parti-0001' has dimension 7" in features_error(tmp_path / "ragged.parquet")
    pq.write_table(pa.table({"key": keys, "vec": [[0.0]] * len(keys)}), tmp_path / "nocol.parquet")
    assert "missing column(s) embedding" in features_error(tmp_path / "nocol.parquet")

    # Features of another dimension than the classifier's: a clear error at score time.
    feats8, feats4 = tmp_path / "f8", tmp_path / "f4"
    result = _cli("features", "--source", f"parquet:{vec_path}", "--out", str(feats8), "--dataset", str(parti))
    assert result.exit_code == 0
    assert _cli("train", "--features", str(feats8), "--out", str(tmp_path / "m.pth.tar"),
                "--dataset", str(parti)).exit_code == 0
    _write_vectors(tmp_path / "v4.parquet", keys, vectors[:, :4])
    assert _cli("features", "--source", f"parquet:{tmp_path / 'v4.parquet'}", "--out", str(feats4),
                "--dataset", str(parti)).exit_code == 0
    result = _cli("score", "--features", str(feats4), "--model", str(tmp_path / "m.pth.tar"), "--dataset", str(parti))
    assert result.exit_code == 2 and "trained on features" in result.output
    # An official-format file (no fingerprint) with the wrong dimension.
    torch.save({"state_dict": {"1.weight": torch.zeros(2, 4096), "1.bias": torch.zeros(2)}}, tmp_path / "off.pth.tar")
    result = _cli("score", "--features", str(feats8), "--model", str(tmp_path / "off.pth.tar"), "--dataset", str(parti))
    assert result.exit_code == 2 and "expects 4096-d features" in result.output


@pytest.mark.skipif(not SHARED_REFERENCE.is_file(), reason="the project reference ../shared is not beside this checkout")
def test_shipped_paper_table_matches_the_project_reference() -> None:
    from gill_eval.decision.report import load_paper_table6

    assert load_paper_table6() == load_paper_table6(SHARED_REFERENCE)


def test_paper_tables_option(parti: Path, tmp_path: Path) -> None:
    reference = tmp_path / "tables.json"
    reference.write_bytes(PAPER_TABLES.read_bytes())
    _score_json("--dataset", str(parti), "--paper-tables", str(reference), "--report", str(tmp_path / "p.md"))
    assert "| 0.851 |" in (tmp_path / "p.md").read_text()
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    result = _cli("score", "--dataset", str(parti), "--paper-tables", str(bad), "--report", str(tmp_path / "q.md"))
    assert result.exit_code == 2 and "table6_partiprompts_decision_f1" in result.output
