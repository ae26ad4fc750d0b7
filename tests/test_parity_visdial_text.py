"""VisDial prompt text: the string GILL receives equals the official script's for awkward question texts.

Oracle (docs/protocols.md, VisDial): GILL's generate_visdial_images.py writes ``'Q: ' + question + '?'``
and ``'A: ' + answer`` for every round, joined by newlines; it never strips and always appends the '?'.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from gill_eval.bench.visdial import VisDialBenchmark
from gill_eval.datasets.visdial import parse_dialogs
from gill_eval.store import Manifest, dataset_dir, write_manifest, write_shard

QUESTIONS = ["is it red", "how many people?", " any dogs ", "is it sunny\n", "what colour"]
ANSWERS = ["yes", " two ", "no\t", "can't tell", "blue ", "maybe"]


def _official_text(raw: dict, dialog_index: int, rounds: int) -> str:
    """Written from the official script, independently of gill-eval's code."""
    data = raw["data"]
    lines = []
    for turn in data["dialogs"][dialog_index]["dialog"][:rounds]:
        lines.append("Q: " + data["questions"][turn["question"]] + "?")
        lines.append("A: " + data["answers"][turn["answer"]])
    return "\n".join(lines)


def _raw() -> dict:
    dialogs = [{"image_id": 7 + d, "caption": "c", "dialog": [
        {"question": (d + r) % len(QUESTIONS), "answer": (2 * d + r) % len(ANSWERS)} for r in range(10)]}
        for d in range(3)]
    return {"split": "val2018", "data": {"questions": QUESTIONS, "answers": ANSWERS, "dialogs": dialogs}}


@pytest.mark.parametrize("rounds", [1, 4, 10])
def test_visdial_prompt_equals_the_official_string(tmp_path: Path, monkeypatch, rounds: int) -> None:
    monkeypatch.setenv("GILL_EVAL_DATA", str(tmp_path))
    raw = _raw()
    _, examples = parse_dialogs(tmp_path / "visdial_1.0_val.json", raw)
    folder = dataset_dir("visdial")
    write_shard(pa.Table.from_pylist(examples), folder / "examples" / "00000.parquet")
    images = [{"key": e["key"], "image": b"x", "status": "success", "error_message": ""} for e in examples]
    write_shard(pa.Table.from_pylist(images), folder / "images" / "00000.parquet")
    write_manifest(folder, Manifest(dataset="visdial", options={}, counts={"examples": len(examples)}))

    bench = VisDialBenchmark()
    job = bench.job(f"r{rounds}")
    contexts = job.build_contexts(job.example_ids)
    by_id = dict(zip(job.example_ids, contexts))
    for d, dialog in enumerate(raw["data"]["dialogs"]):
        assert by_id[str(dialog["image_id"])] == [_official_text(raw, d, rounds)]
    # the question that already ends in '?' gets a second one, as the official script writes it
    assert "Q: how many people??" in "".join(c[0] for c in contexts) or rounds == 1
