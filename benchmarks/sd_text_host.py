"""Host-side cost of ``features sd-text`` per CPU core, at real sizes (batch 1024, 77x768 float16). JSON out.

The H100 run (``results/h100-features-sd-text-tmpfs.json``) reached 0.48 of the raw text encoder; this
script measures, on any CPU and in one process, each host step the pipeline runs for a batch and turns it
into the CPU cores that step needs to keep up with the raw encoder's rate (``--target``, captions/s):

* ``tokenise``: ``SdTextStage.prepare`` (the function the DataLoader workers run) on a batch of real
  captions (the bundled PartiPrompts and sample CC3M/COCO captions, repeated to the batch size), with the
  tokenizer exactly as ``load_sd_text_encoder`` loads it, single-threaded (``TOKENIZERS_PARALLELISM=false``):
  ``before`` is the call as it was (with an attention mask, unused), ``after`` the stage's own; the Rust
  encode alone; and open_clip's pure-Python ``SimpleTokenizer`` (ftfy + Python BPE: the algorithm of
  transformers 4.x's slow ``CLIPTokenizer``) for scale;
* ``read``: the worker's Parquet read of the caption column;
* ``build``: ``runner._batch_builder`` turning a float16 host tensor into the Arrow record batch;
* ``write``: ``BackgroundWriter`` streaming those batches into Arrow IPC shards (atomic rename, fsync,
  done marker) on ``--disk-dir`` and on ``/dev/shm`` (``os_write_floor``: the same bytes by plain
  ``os.write``, no Arrow), with one writer thread (``before``) and with the
  stage's ``writer_threads``/``writer_queue`` (``after``). A 2-core machine cannot show the threads'
  wall-clock gain; ``writer_ceiling_captions_per_s`` is threads x the per-CPU-second rate (free cores).

Rates are per CPU second (``time.process_time``: user plus system time of this process), so they hold on a
loaded machine; wall-clock rates are recorded next to them, with the load average before and after.
Not measured here (GPU only): the pinned host buffer per batch (``torch.empty(pin_memory=True)``, served
by torch's caching host allocator after the first few batches), the device-to-host copy, and pinning the
token ids in the DataLoader's pin-memory thread (630 KB per batch).

``python benchmarks/sd_text_host.py --out benchmarks/results/cpu-sd-text-host.json``
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ["TOKENIZERS_PARALLELISM"] = "false"  # per-core figures: one thread
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402

SAMPLE = REPO / "gill_eval" / "sample" / "files"


def real_captions() -> list[str]:
    """PartiPrompts (1,632 prompts) plus the sample CC3M and COCO captions shipped with gill-eval."""
    with open(SAMPLE / "partiprompts" / "PartiPrompts.tsv", encoding="utf-8") as fh:
        captions = [row[0] for row in list(csv.reader(fh, delimiter="\t"))[1:]]
    for split in ("train", "val"):
        with open(SAMPLE / "cc3m" / f"{split}.tsv", encoding="utf-8") as fh:
            captions += [line.split("\t")[0] for line in fh if line.strip()]
    coco = json.loads((SAMPLE / "coco" / "annotations" / "captions_val2014.json").read_text(encoding="utf-8"))
    return captions + [a["caption"] for a in coco["annotations"]]


def _interleaved(fns: dict[str, Callable[[], Any]], items: int, seconds: float) -> dict[str, dict[str, float]]:
    """Call each of ``fns`` in turn (``items`` per call) for about ``seconds`` of wall time in all.

    Per CPU second (``time.process_time`` of each call), from the median call: on a shared, loaded machine
    the mean is skewed by calls that lost their caches to other processes. Wall-clock rates are the total's.
    """
    for fn in fns.values():  # warm-up
        fn()
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    wall: dict[str, float] = dict.fromkeys(fns, 0.0)
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or min(len(v) for v in cpu.values()) < 5:
        for name, fn in fns.items():
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            cpu[name].append(time.process_time() - c0)
            wall[name] += time.perf_counter() - w0
    out = {}
    for name, times in cpu.items():
        median = float(np.median(times))
        out[name] = {"calls": len(times), "cpu_s": round(sum(times), 3), "wall_s": round(wall[name], 3),
                     "ms_per_batch_cpu_median": round(1000 * median, 2),
                     "items_per_cpu_s": round(items / median, 1),
                     "items_per_wall_s": round(len(times) * items / wall[name], 1)}
    return out


def _cpu_rate(fn: Callable[[], Any], items: int, seconds: float) -> dict[str, float]:
    return _interleaved({"fn": fn}, items, seconds)["fn"]


def _model_dir(root: Path) -> Path:
    """A diffusers-style folder: the CLIP BPE tokenizer gill-eval builds offline, a 1-layer hidden-768 encoder."""
    from transformers import CLIPTextConfig, CLIPTextModel

    from gill_eval.models.tiny import build_clip_tokenizer

    folder = root / "sd-text-768"
    config = CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, hidden_act="quick_gelu",
                            bos_token_id=49406, eos_token_id=49407, pad_token_id=1, hidden_size=768,
                            intermediate_size=3072, num_hidden_layers=1, num_attention_heads=12)
    CLIPTextModel(config).half().save_pretrained(folder / "text_encoder")
    build_clip_tokenizer().save_pretrained(folder / "tokenizer")
    return folder


def bench_tokenise(stage: Any, captions: list[str], batch: int, seconds: float) -> dict[str, Any]:
    from open_clip.tokenizer import SimpleTokenizer

    texts = (captions * (batch // len(captions) + 1))[:batch]
    table = pa.table({"key": [str(i) for i in range(batch)], "caption": texts})
    tok = stage.prepare.tokenizer
    kw = {"padding": "max_length", "max_length": 77, "truncation": True, "return_tensors": "pt"}
    backend = tok.backend_tokenizer
    simple = SimpleTokenizer(context_length=77)
    assert torch.equal(stage.prepare(table)[1], tok(texts, **kw).input_ids)
    rates = _interleaved({
        "before_prepare_with_attention_mask": lambda: (table.column("caption").to_pylist(), tok(texts, **kw).input_ids),
        "after_prepare": lambda: stage.prepare(table),
        "rust_encode_batch_alone": lambda: backend.encode_batch(texts),
        "open_clip_python_bpe_for_scale": lambda: simple(texts),
    }, batch, seconds)
    return {
        "tokenizer": f"{type(tok).__module__}.{type(tok).__name__}",
        "rust_backed": bool(getattr(tok, "is_fast", False)),
        "captions": {"distinct": len(captions), "mean_words": round(float(np.mean([len(c.split()) for c in texts])), 1),
                     "max_words": max(len(c.split()) for c in texts)},
        **rates,
    }


def bench_read(folder: Path, captions: list[str], batch: int, seconds: float) -> dict[str, Any]:
    from gill_eval.features.loader import exact_batches

    n = 8 * batch
    texts = (captions * (n // len(captions) + 1))[:n]
    path = folder / "captions.parquet"
    pq.write_table(pa.table({"key": [f"{i:09d}" for i in range(n)], "caption": texts}), path)
    return _cpu_rate(lambda: sum(1 for _ in exact_batches(path, ["key", "caption"], batch)), n, seconds)


def _host_tensor(batch: int, hidden: int) -> torch.Tensor:
    return torch.randn(batch, 77, hidden, generator=torch.Generator().manual_seed(0)).to(torch.float16)


def bench_build(stage: Any, batch: int, seconds: float) -> dict[str, Any]:
    from gill_eval.features.loader import Prepared
    from gill_eval.features.runner import _batch_builder

    host = _host_tensor(batch, stage.hidden)
    item = Prepared(0, [f"{i:09d}" for i in range(batch)], [None] * batch, None)
    item_failed = Prepared(0, item.keys, [None] * (batch - 1) + ["missing caption"], None)
    host_failed = host[: batch - 1]

    def build(it: Any, values: torch.Tensor) -> pa.RecordBatch:
        return _batch_builder(stage, it, values, lambda: None)()

    rb = build(item, host)
    column = rb.column("embedding").values
    zero_copy = column.buffers()[1].address == host.data_ptr()
    before = pa.total_allocated_bytes()
    kept = build(item, host)
    allocated = pa.total_allocated_bytes() - before
    del kept
    return {"all_ok": _cpu_rate(lambda: build(item, host), batch, seconds),
            "one_failed_row": _cpu_rate(lambda: build(item_failed, host_failed), batch, seconds),
            "values_zero_copy": bool(zero_copy), "arrow_bytes_allocated_per_batch": int(allocated),
            "mb_per_batch": round(host.numel() * 2 / 1e6, 1)}


def bench_write(stage: Any, folder: Path, batch: int, units: int, per_unit: int, threads: int,
                max_queued: int) -> dict[str, Any]:
    from gill_eval.features.loader import Prepared
    from gill_eval.features.runner import _batch_builder
    from gill_eval.features.writer import BackgroundWriter
    from gill_eval.store.work import UnitOfWork, WorkPlan

    host = _host_tensor(batch, stage.hidden)
    item = Prepared(0, [f"{i:09d}" for i in range(batch)], [None] * batch, None)
    out = Path(tempfile.mkdtemp(prefix="gill-sdhost-write-", dir=folder))
    try:
        plan = WorkPlan(out, [UnitOfWork(f"{u:05d}", u, {}) for u in range(units)])
        cpu0, wall0 = time.process_time(), time.perf_counter()
        with BackgroundWriter(plan, stage.schema, "arrow", max_queued=max_queued, threads=threads) as writer:
            for unit in plan.units:
                writer.begin(unit)
                for _ in range(per_unit):
                    writer.write(_batch_builder(stage, item, host, lambda: None))
                writer.end({"rows": per_unit * batch, "failed": 0})
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        size = sum(p.stat().st_size for p in out.glob("*.arrow"))
    finally:
        shutil.rmtree(out)
    n = units * per_unit * batch
    return {"dir": str(folder), "writer_threads": threads, "max_queued": max_queued, "units": units,
            "batches": units * per_unit, "bytes": size, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
            "items_per_cpu_s": round(n / cpu, 1), "items_per_wall_s": round(n / wall, 1),
            "gb_per_cpu_s": round(size / cpu / 1e9, 2), "gb_per_wall_s": round(size / wall / 1e9, 2)}


def bench_os_write(folder: Path, batch: int, hidden: int, batches: int) -> dict[str, Any]:
    """The floor under any writer: plain ``os.write`` of a batch's float16 bytes into a new file, no Arrow."""
    data = memoryview(_host_tensor(batch, hidden).numpy()).cast("B")
    fd, name = tempfile.mkstemp(prefix="gill-sdhost-oswrite-", dir=folder)
    try:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(batches):
            os.write(fd, data)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        os.close(fd)
        os.unlink(name)
    return {"dir": str(folder), "batches": batches, "items_per_cpu_s": round(batches * batch / cpu, 1),
            "gb_per_cpu_s": round(batches * len(data) / cpu / 1e9, 2),
            "gb_per_wall_s": round(batches * len(data) / wall / 1e9, 2)}


def _cores(rate: float, target: float) -> float:
    return round(target / rate, 2)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--seconds", type=float, default=3.0, help="wall time per tokenise/build measurement")
    p.add_argument("--units", type=int, default=3, help="output shards per write measurement")
    p.add_argument("--batches-per-unit", type=int, default=2, help="batches (121 MB each at 1024) per shard")
    p.add_argument("--target", type=float, default=22835.8, help="captions/s to sustain (H100 raw encoder)")
    p.add_argument("--disk-dir", default=tempfile.gettempdir())
    p.add_argument("--label", default="", help="recorded as is (e.g. before/after a change)")
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    import tokenizers
    import transformers

    from gill_eval.features.sd_text import SdTextStage

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="gill-sdhost-") as tmp:
        stage = SdTextStage(str(_model_dir(Path(tmp))), precision="fp16", device="cpu")
        captions = real_captions()
        result: dict[str, Any] = {
            "benchmark": "sd_text_host", "label": args.label,
            "command": "python benchmarks/sd_text_host.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                        "torch": torch.__version__, "transformers": transformers.__version__,
                        "tokenizers": tokenizers.__version__, "pyarrow": pa.__version__},
            "batch": args.batch, "target_captions_per_s": args.target,
            "tokenise": bench_tokenise(stage, captions, args.batch, args.seconds),
            "read": bench_read(Path(tmp), captions, args.batch, args.seconds / 2),
            "build": bench_build(stage, args.batch, args.seconds),
            "write": {},
        }
        w = (args.units, args.batches_per_unit)
        configs = {"before_1_thread": (1, 4), "after": (stage.writer_threads, stage.writer_queue)}
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for _ in range(2):  # alternated, best of two each: page-cache reclaim and neighbours add noise
            for label, (threads, queued) in configs.items():
                for where, folder in (("disk", Path(args.disk_dir)), ("tmpfs", Path("/dev/shm"))):
                    runs.setdefault((label, where), []).append(
                        bench_write(stage, folder, args.batch, *w, threads, queued))
        n = args.units * args.batches_per_unit
        result["write"]["os_write_floor"] = {
            "disk": bench_os_write(Path(args.disk_dir), args.batch, stage.hidden, n),
            "tmpfs": bench_os_write(Path("/dev/shm"), args.batch, stage.hidden, n)}
        for (label, where), got in runs.items():
            best = max(got, key=lambda r: r["items_per_cpu_s"])
            result["write"].setdefault(label, {})[where] = {
                **best, "items_per_cpu_s_runs": [r["items_per_cpu_s"] for r in got],
                "items_per_wall_s_runs": [r["items_per_wall_s"] for r in got]}
    result["loadavg"] = {"before": [round(x, 2) for x in load_before],
                         "after": [round(x, 2) for x in os.getloadavg()]}
    t, wb, wa = result["tokenise"], result["write"]["before_1_thread"], result["write"]["after"]
    result["cores_for_target"] = {
        "tokenise_before": _cores(t["before_prepare_with_attention_mask"]["items_per_cpu_s"], args.target),
        "tokenise_after": _cores(t["after_prepare"]["items_per_cpu_s"], args.target),
        "tokenise_python_bpe_for_scale": _cores(t["open_clip_python_bpe_for_scale"]["items_per_cpu_s"], args.target),
        "read_parquet": _cores(result["read"]["items_per_cpu_s"], args.target),
        "build_record_batch": _cores(result["build"]["all_ok"]["items_per_cpu_s"], args.target),
        "write_disk_incl_build": _cores(wb["disk"]["items_per_cpu_s"], args.target),
        "write_tmpfs_incl_build": _cores(wb["tmpfs"]["items_per_cpu_s"], args.target),
    }
    # A writer thread uses at most one core: N threads on N free cores write N times its per-CPU-second rate.
    result["writer_ceiling_captions_per_s"] = {
        f"{label}_{where}": round(w[where]["writer_threads"] * w[where]["items_per_cpu_s"], 1)
        for label, w in (("before", wb), ("after", wa)) for where in ("disk", "tmpfs")
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
