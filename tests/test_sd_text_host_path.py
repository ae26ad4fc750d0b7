"""The host path of ``features sd-text`` made faster (issue 13 item 4): several writer threads and token
ids without an attention mask. Pinned against independent oracles: the values written, the files a single
writer makes, and token ids padded/truncated by hand from the tokenizer's plain per-caption call."""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from gill_eval.clip_text import gill_clip_text
from gill_eval.store.features import iter_sd_text
from gill_eval.features.runner import feature_dir, run_stage
from gill_eval.features.sd_text import CaptionTokenizer, SdTextStage
from gill_eval.features.writer import BackgroundWriter
from gill_eval.models.tiny import build_clip_tokenizer, tiny_text_encoder
from gill_eval.models.weights import load_sd_text_encoder
from gill_eval.store import Manifest, UnitOfWork, WorkPlan, dataset_dir, write_manifest, write_shard

WIDTH = 12
SCHEMA = pa.schema([("key", pa.string()), ("embedding", pa.list_(pa.float16(), WIDTH))])

HARD = [
    "", " ", "a dog", "  two\tspaces \n and\u00a0a non-breaking   space  ", "Café crème brûlée à la carte",
    "naïve façade in Zürich", "東京の夜景", "emoji 🐶🔥 party 👩‍👩‍👧",
    "fish &amp; chips &lt;b&gt; &quot;bold&quot;",
    "it’s a “curly” quote and it's a straight one", "UPPER lower MiXeD 123 4,567.89",
    "Mc'Donald's rock'n'roll", "tab\tand\r\nnewlines", "ＦＵＬＬＷＩＤＴＨ letters", "x" * 500,
    " ".join(f"word{i}" for i in range(120)),  # far beyond 77 tokens: cut on the right
]


def _units(n: int) -> list[UnitOfWork]:
    return [UnitOfWork(f"{i:05d}", i) for i in range(n)]


def _data(unit: int, batch: int, rows: int) -> np.ndarray:
    return np.random.default_rng(1000 * unit + batch).standard_normal((rows, WIDTH)).astype(np.float16)


def _builder(unit: int, batch: int, rows: int, delay: float = 0.0):
    def build() -> pa.RecordBatch:
        time.sleep(delay)
        values = _data(unit, batch, rows)
        keys = [f"{unit}-{batch}-{r}" for r in range(rows)]
        return pa.RecordBatch.from_arrays(
            [pa.array(keys), pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), WIDTH)],
            schema=SCHEMA)
    return build


def _write(out: Path, units: list[UnitOfWork], shape: dict[int, list[int]], threads: int, max_queued: int,
           jitter: bool = False) -> WorkPlan:
    rng = random.Random(threads)
    plan = WorkPlan(out, units)
    with BackgroundWriter(plan, SCHEMA, "arrow", max_queued=max_queued, threads=threads) as writer:
        for unit in units:
            writer.begin(unit)
            for b, rows in enumerate(shape[unit.index]):
                writer.write(_builder(unit.index, b, rows, rng.uniform(0, 0.02) if jitter else 0.0))
            writer.end({"rows": sum(shape[unit.index])})
    return plan


def _read(path: Path) -> tuple[list[str], np.ndarray]:
    table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
    values = np.asarray(table.column("embedding").combine_chunks().values).reshape(-1, WIDTH)
    return table.column("key").to_pylist(), values


def test_writer_threads_write_the_same_files_as_one_thread(tmp_path):
    units = _units(7)
    shape = {u.index: [3, 5, 1][: 1 + u.index % 3] for u in units}  # 1 to 3 batches per unit
    one = _write(tmp_path / "one", units, shape, threads=1, max_queued=4)
    many = _write(tmp_path / "many", units, shape, threads=3, max_queued=2, jitter=True)
    for unit in units:
        name = f"{unit.uid}.arrow"
        keys, values = _read(many.out_dir / name)
        # Oracle: the values and keys handed in, in batch order.
        want = np.concatenate([_data(unit.index, b, r) for b, r in enumerate(shape[unit.index])])
        assert keys == [f"{unit.index}-{b}-{i}" for b, r in enumerate(shape[unit.index]) for i in range(r)]
        np.testing.assert_array_equal(values, want)
        assert (many.out_dir / name).read_bytes() == (one.out_dir / name).read_bytes()
        assert many.done_info(unit) == one.done_info(unit)
        assert many.done_info(unit)["rows"] == len(keys)
    assert not list(many.out_dir.rglob(".tmp-*"))


def test_writer_threads_bound_batches_in_flight(tmp_path):
    built: list[int] = []  # batches whose build finished (their write follows)
    ahead: list[int] = []  # after the main thread's k-th `write` returned: k minus batches built

    def slow(i: int):
        def build() -> pa.RecordBatch:
            time.sleep(0.02)
            batch = _builder(i, 0, 1)()
            built.append(i)
            return batch
        return build

    units = _units(8)
    plan = WorkPlan(tmp_path / "out", units)
    with BackgroundWriter(plan, SCHEMA, "arrow", max_queued=2, threads=4) as writer:
        for k, unit in enumerate(units, start=1):
            writer.begin(unit)
            writer.write(slow(unit.index))
            ahead.append(k - len(built))
            writer.end({"rows": 1})
    assert max(ahead) <= 2 and plan.all_done()


def test_writer_error_in_one_thread_is_raised_and_leaves_no_partial_file(tmp_path):
    units = _units(5)
    plan = WorkPlan(tmp_path / "out", units)

    def broken() -> pa.RecordBatch:
        raise ValueError("cannot build batch 0 of unit 2")

    with pytest.raises(ValueError, match="unit 2"):
        with BackgroundWriter(plan, SCHEMA, "arrow", max_queued=2, threads=3) as writer:
            for unit in units:
                writer.begin(unit)
                writer.write(broken if unit.index == 2 else _builder(unit.index, 0, 2, 0.05))
                writer.write(_builder(unit.index, 1, 2))
                writer.end({"rows": 4})
    assert not plan.is_done(units[2]) and not list(plan.out_dir.rglob(".tmp-*"))
    for unit in units:  # whatever finished is complete and right
        if plan.is_done(unit):
            keys, values = _read(plan.out_dir / f"{unit.uid}.arrow")
            np.testing.assert_array_equal(values, np.concatenate([_data(unit.index, b, 2) for b in (0, 1)]))


def test_interrupt_keeps_units_already_ended_and_discards_the_open_one(tmp_path):
    units = _units(3)
    plan = WorkPlan(tmp_path / "out", units)
    with pytest.raises(KeyboardInterrupt), BackgroundWriter(plan, SCHEMA, "arrow", max_queued=4, threads=3) as w:
        w.begin(units[0])
        w.write(_builder(0, 0, 3, delay=0.2))  # still being written when the interrupt comes
        w.end({"rows": 3})
        w.begin(units[1])
        w.write(_builder(1, 0, 3))
        raise KeyboardInterrupt
    assert plan.is_done(units[0]) and not plan.is_done(units[1]) and not plan.is_done(units[2])
    assert sorted(p.name for p in plan.out_dir.glob("*.arrow")) == ["00000.arrow"]
    np.testing.assert_array_equal(_read(plan.out_dir / "00000.arrow")[1], _data(0, 0, 3))
    assert not list(plan.out_dir.rglob(".tmp-*"))


def test_writer_rejects_bad_settings(tmp_path):
    with pytest.raises(ValueError, match="threads >= 1"):
        BackgroundWriter(WorkPlan(tmp_path, []), SCHEMA, "arrow", threads=0)


# ------------------------------------------------------------------------------------------- tokenizer


def _hand_padded(tokenizer, caption: str) -> list[int]:
    """Oracle: the tokenizer's plain call (no padding, no truncation), then SD's rule by hand: keep
    ``<|startoftext|>`` and the first 75 tokens, end with ``<|endoftext|>``, pad with it to 77."""
    ids = tokenizer(caption).input_ids
    if len(ids) > 77:
        ids = ids[:76] + [49407]
    return ids + [49407] * (77 - len(ids))


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory) -> Path:
    """The text half of the tiny SD folder (``tokenizer/``, ``text_encoder/``): all ``sd-text`` loads."""
    folder = tmp_path_factory.mktemp("tiny-sd-text")
    build_clip_tokenizer().save_pretrained(folder / "tokenizer")
    tiny_text_encoder().save_pretrained(folder / "text_encoder")
    return folder


def test_caption_tokenizer_ids_equal_hand_padded_ids(sd_dir):
    tokenizer, _ = load_sd_text_encoder(str(sd_dir))
    parti = Path(__file__).resolve().parents[1] / "gill_eval/sample/files/partiprompts/PartiPrompts.tsv"
    prompts = [line.split("\t")[0] for line in parti.read_text(encoding="utf-8").splitlines()[1:]]
    captions = prompts[::4] + HARD
    errors, ids = CaptionTokenizer(tokenizer)(pa.table({"caption": [*captions, None]}))
    assert errors == [None] * len(captions) + ["missing caption"]
    assert ids.dtype == torch.int64 and ids.shape == (len(captions), 77)
    # GILL's environment cleaned text before BPE (gill_eval/clip_text.py, pinned in test_parity_official_env)
    want = torch.tensor([_hand_padded(tokenizer, gill_clip_text(c)) for c in captions])
    assert torch.equal(ids, want)
    assert (ids[:, 0] == 49406).all() and (ids[:, -1] == 49407).all()
    assert ids[captions.index(HARD[-1])].ne(49407).sum() == 76  # truncated: 75 words + start token


def test_sd_text_run_with_writer_threads_is_bit_identical_to_one_writer(sd_dir, tmp_path):
    folder = dataset_dir("caps")
    rng = np.random.default_rng(0)
    captions: list[str] = []
    for s in range(5):
        words = ["dog", "cat", "café", "🐶"]
        rows = [f"a photo {s} {i} " + " ".join(rng.choice(words, size=int(rng.integers(0, 40))))
                for i in range(int(rng.integers(3, 9)))]
        captions += rows
        start = len(captions) - len(rows)
        write_shard(pa.table({"key": [f"{start + i:09d}" for i in range(len(rows))], "caption": rows}),
                    folder / "examples" / f"{s:05d}.parquet")
    write_manifest(folder, Manifest(dataset="caps"))

    stage = SdTextStage(str(sd_dir), device="cpu")
    assert stage.writer_threads > 1
    run_stage(stage, "caps", batch_size=4, num_workers=0)
    many = feature_dir("sd-text", "caps")
    single = tmp_path / "single"
    many.rename(single)
    stage.writer_threads, stage.writer_queue = 1, 4  # the writer as it was before threads
    run_stage(stage, "caps", batch_size=4, num_workers=0)
    for path in sorted(single.glob("*.arrow")):
        assert (many / path.name).read_bytes() == path.read_bytes()
    assert len(list(single.glob("*.arrow"))) == 5

    # Oracle: text_encoder(tokenizer(...).input_ids)[0], caption by caption, in float16.
    tokenizer, encoder = load_sd_text_encoder(str(sd_dir))
    got = np.concatenate([b.embeddings for b in iter_sd_text(many)])
    with torch.no_grad():
        for row, caption in enumerate(captions):
            ids = tokenizer(gill_clip_text(caption), padding="max_length", max_length=77, truncation=True,
                            return_tensors="pt").input_ids
            want = encoder(ids)[0][0].to(torch.float16).numpy()
            np.testing.assert_allclose(got[row].astype(np.float32), want.astype(np.float32), rtol=2e-3, atol=2e-3)
