"""Feature-stage throughput: gill-eval's pipeline vs. the official scripts' way vs. the raw network. JSON out.

For each stage (CLIP image features, SD text-encoder targets), on the same generated inputs in one run:

* ``pipeline``: ``run_stage`` end to end: Parquet shards in, DataLoader decoding/tokenising workers, batched
  model in fp16 on GPU (fp32 on CPU), background writer, output shards and done markers;
* ``naive``: the way GILL's scripts work: one item at a time, fp32, batch 1, one ``.npy`` file per item
  (run on the first ``--naive-items`` inputs only: it is slow);
* ``raw``: the same network object as ``pipeline`` on pre-made tensors already on the device, no I/O: the
  limit the pipeline can reach.

Each of ``pipeline`` and ``naive`` runs in its own process, so its memory belongs to one method:
``peak_rss_mb`` is the main process's peak RSS (``VmHWM``), ``peak_total_pss_mb`` the sampled peak of the
main process plus its DataLoader workers (PSS, shared pages not double-counted). ``raw`` runs after
``pipeline`` in the same process.
All weights are random (nothing is downloaded). CPU default: small models at the real input sizes
(224x224 crops, 77 tokens). ``--real-size``: open_clip ViT-L-14 (QuickGELU) and SD 1.5's text encoder
config (hidden 768, 12 layers, 12 heads, MLP 3072, vocab 49408).

H100 (about 2 minutes): ``python benchmarks/features.py --device cuda --real-size --quick``.
Needs only torch, torchvision, open_clip, transformers, pyarrow, numpy, Pillow; gill-eval is imported from
this checkout, and ``rich``/``platformdirs`` fall back to pip's vendored copies when not installed.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _ensure_imports() -> None:
    """Make gill-eval importable from this checkout on a bare GPU machine (see module doc)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    for name in ("rich", "platformdirs"):
        try:
            importlib.import_module(name)
        except ImportError:
            sys.modules[name] = importlib.import_module(f"pip._vendor.{name}")


_ensure_imports()

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

SMALL_CLIP = {
    "embed_dim": 256, "quick_gelu": True,
    "vision_cfg": {"image_size": 224, "layers": 4, "width": 256, "head_width": 64, "patch_size": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 1},
}
SMALL_TEXT = {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 4}
REAL_TEXT = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12}
WORDS = ("a photo of the red blue small large dog cat man woman street city beach tree car bus train sky "
         "house kitchen table with on in at near under over next to two three young old").split()


# ------------------------------------------------------------------------------------------------ inputs


def _synthetic_jpegs(n_distinct: int, size: int, seed: int) -> list[bytes]:
    """Smooth photo-like JPEGs (low-frequency colour fields plus mild noise), typical of CC3M file sizes."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_distinct):
        low = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(low).resize((size, size), Image.Resampling.BICUBIC), dtype=np.int16)
        img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def _make_dataset(name: str, n_images: int, n_captions: int, image_size: int, rows_per_shard: int) -> None:
    from gill_eval.store import Manifest, dataset_dir, write_manifest, write_shard

    rng = np.random.default_rng(0)
    jpegs = _synthetic_jpegs(min(256, n_images), image_size, seed=1)
    folder = dataset_dir(name)
    for s, start in enumerate(range(0, n_images, rows_per_shard)):
        idx = range(start, min(n_images, start + rows_per_shard))
        table = pa.table({"key": [f"{i:09d}" for i in idx],
                          "image": pa.array([jpegs[i % len(jpegs)] for i in idx], pa.binary()),
                          "status": ["success"] * len(idx)})
        write_shard(table, folder / "images" / f"{s:05d}.parquet")
    per = rows_per_shard * 4
    for s, start in enumerate(range(0, n_captions, per)):
        idx = range(start, min(n_captions, start + per))
        caps = [" ".join(rng.choice(WORDS, size=int(rng.integers(5, 40)))) for _ in idx]
        write_shard(pa.table({"key": [f"{i:09d}" for i in idx], "caption": caps}),
                    folder / "examples" / f"{s:05d}.parquet")
    write_manifest(folder, Manifest(dataset=name))


def _text_encoder_dir(root: Path, real_size: bool) -> Path:
    """A diffusers-style folder (tokenizer/, text_encoder/) with a random-weight CLIP text encoder."""
    from transformers import CLIPTextConfig, CLIPTextModel

    from gill_eval.models.tiny import build_clip_tokenizer

    folder = root / "sd-text-model"
    torch.manual_seed(0)
    config = CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, hidden_act="quick_gelu",
                            bos_token_id=49406, eos_token_id=49407, pad_token_id=1,
                            **(REAL_TEXT if real_size else SMALL_TEXT))
    CLIPTextModel(config).save_pretrained(folder / "text_encoder")
    build_clip_tokenizer().save_pretrained(folder / "tokenizer")
    return folder


# ---------------------------------------------------------------------------------------------- measures


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_rss_mb() -> float:
    """This process's peak resident set (``VmHWM``: unlike ``ru_maxrss`` it is not inherited across exec)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # not Linux


def _pss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("Pss:")) / 1024
    except (OSError, StopIteration):
        return 0.0


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return kids


class _PssSampler:
    """Peak of (this process + its DataLoader workers) proportional set size, sampled every 250 ms.

    PSS splits pages shared since the fork between the processes, so the sum is not double-counted
    (per-process RSS of forked workers would count torch's libraries once per worker)."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.wait(0.25):
            self.peak = max(self.peak, sum(_pss_mb(p) for p in [me, *_children(me)]))

    def __enter__(self) -> _PssSampler:
        if os.path.exists("/proc/self/smaps_rollup"):
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def _rss(sampler: _PssSampler) -> dict[str, float]:
    return {"peak_rss_mb": _peak_rss_mb(), "peak_total_pss_mb": round(sampler.peak, 1)}


def _rate(items: int, seconds: float) -> dict[str, Any]:
    return {"items": items, "seconds": round(seconds, 3), "items_per_s": round(items / seconds, 1)}


def _stage(cfg: dict[str, Any]):
    if cfg["stage"] == "clip":
        from gill_eval.features.clip_image import ClipImageStage

        return ClipImageStage(cfg["clip_model"], None, cfg["precision"], cfg["device"])
    from gill_eval.features.sd_text import SdTextStage

    return SdTextStage(cfg["sd_model"], cfg["precision"], cfg["device"])


def _pipeline_and_raw(cfg: dict[str, Any]) -> dict[str, Any]:
    from gill_eval.features.runner import run_stage

    device = torch.device(cfg["device"])
    stage = _stage(cfg)
    run_stage(stage, "warm", cfg["batch_size"], cfg["workers"])  # CUDA context, kernels, allocator
    _sync(device)
    with _PssSampler() as sampler:
        start = time.perf_counter()
        summary = run_stage(stage, "bench", cfg["batch_size"], cfg["workers"])
        _sync(device)
        seconds = time.perf_counter() - start
    pipeline = {**_rate(summary["rows"], seconds), **_rss(sampler),
                "batch_size": cfg["batch_size"], "num_workers": cfg["workers"], "precision": cfg["precision"]}

    b = cfg["batch_size"]
    if cfg["stage"] == "clip":
        size = cfg["crop"]
        inputs = torch.randn(b, 3, size, size, device=device).to(stage.dtype)
        net = stage.visual
    else:
        inputs = torch.randint(0, 49406, (b, 77), device=device)
        inputs[:, 0], inputs[:, -1] = 49406, 49407
        net = stage.encoder
    batches = math.ceil(cfg["items"] / b)
    with torch.inference_mode():
        for _ in range(2):
            net(inputs)
        _sync(device)
        start = time.perf_counter()
        for _ in range(batches):
            net(inputs)
        _sync(device)
    raw = {**_rate(batches * b, time.perf_counter() - start), "batch_size": b, "precision": cfg["precision"]}
    return {"pipeline": pipeline, "raw": raw}


def _naive(cfg: dict[str, Any]) -> dict[str, Any]:
    """GILL's scripts: one item at a time, fp32, batch 1, ``np.save`` per item."""
    from gill_eval.models.weights import load_open_clip, load_sd_text_encoder
    from gill_eval.store import dataset_dir, iter_rows

    device = torch.device(cfg["device"])
    out = Path(cfg["naive_out"])
    out.mkdir(parents=True, exist_ok=True)
    n = cfg["naive_items"]
    if cfg["stage"] == "clip":
        model, preprocess, _ = load_open_clip(cfg["clip_model"], None, device=device, precision="fp32")
        rows = iter_rows(dataset_dir("bench") / "images", columns=["key", "image"])

        def one(row: dict[str, Any]) -> np.ndarray:
            x = preprocess(Image.open(io.BytesIO(row["image"]))).unsqueeze(0).to(device)
            return model.encode_image(x)[0].float().cpu().numpy()
    else:
        tokenizer, encoder = load_sd_text_encoder(cfg["sd_model"], device=device, dtype=torch.float32)
        rows = iter_rows(dataset_dir("bench") / "examples", columns=["key", "caption"])

        def one(row: dict[str, Any]) -> np.ndarray:
            ids = tokenizer(row["caption"], padding="max_length", max_length=77, truncation=True,
                            return_tensors="pt").input_ids.to(device)
            return encoder(ids)[0][0].to(torch.float16).cpu().numpy()

    with torch.inference_mode(), _PssSampler() as sampler:
        for _, row in zip(range(3), rows):  # warm-up (these items are not timed or counted)
            one(row)
        _sync(device)
        start = time.perf_counter()
        count = 0
        for row in rows:
            np.save(out / f"{row['key']}.npy", one(row))
            count += 1
            if count == n:
                break
        _sync(device)
        seconds = time.perf_counter() - start
    return {"naive": {**_rate(count, seconds), **_rss(sampler), "batch_size": 1,
                      "precision": "fp32"}}


def _child(kind: str, cfg: dict[str, Any], queue: Any) -> None:
    try:
        queue.put(_pipeline_and_raw(cfg) if kind == "pipeline" else _naive(cfg))
    except BaseException as exc:  # reported by the parent, which fails loudly
        queue.put({"error": f"{type(exc).__name__}: {exc}"})
        raise


def _in_process(kind: str, cfg: dict[str, Any]) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(kind, cfg, queue))
    proc.start()
    result = queue.get()
    proc.join()
    if "error" in result:
        raise SystemExit(f"{cfg['stage']} {kind} failed: {result['error']}")
    return result


# ------------------------------------------------------------------------------------------------- main


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--real-size", action="store_true", help="ViT-L-14 and SD 1.5's text encoder (random weights)")
    p.add_argument("--quick", action="store_true", help="fewer items (a real-size GPU run well under 3 min)")
    p.add_argument("--images", type=int, help="images for pipeline and raw")
    p.add_argument("--captions", type=int, help="captions for pipeline and raw")
    p.add_argument("--naive-items", type=int, help="items for each naive loop")
    p.add_argument("--clip-batch", type=int)
    p.add_argument("--text-batch", type=int)
    p.add_argument("--workers", type=int, help="CLIP decoding workers (SD: --text-workers)")
    p.add_argument("--text-workers", type=int)
    p.add_argument("--image-size", type=int, default=256, help="side of the stored JPEGs (img2dataset's default)")
    p.add_argument("--stages", default="clip,sd-text")
    p.add_argument("--workdir", help="where inputs and outputs go (default: a temp folder)")
    p.add_argument("--out", help="also write the JSON here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _args(argv)
    gpu = args.device.startswith("cuda")
    scale = 0.5 if args.quick else 1.0
    n_img = args.images or int((8192 if gpu else 384) * scale)
    n_cap = args.captions or int((32768 if gpu else 1536) * scale)
    n_naive = args.naive_items or int((512 if gpu else 96) * scale)
    cpus = os.cpu_count() or 2
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="gill-bench-features-"))
    os.environ["GILL_EVAL_DATA"] = str(workdir / "data")
    os.environ["GILL_EVAL_CACHE"] = str(workdir / "cache")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

    clip_batch = args.clip_batch or (512 if gpu else 64)
    text_batch = args.text_batch or (1024 if gpu else 128)
    _make_dataset("bench", n_img, n_cap, args.image_size, rows_per_shard=1024 if gpu else 128)
    # One full batch of each, so the timed run reuses the kernels and buffers of its batch shape; on GPUs
    # twelve text batches (3 shards), so the pinned host buffers of all batches in flight to the writer
    # threads are allocated before the timed run (features/sd_text.py: writer_queue).
    warm_text = text_batch * (12 if gpu else 1)
    _make_dataset("warm", clip_batch, warm_text, args.image_size, rows_per_shard=max(clip_batch, text_batch))
    clip_cfg_path = workdir / "bench-small-clip.json"
    clip_cfg_path.write_text(json.dumps(SMALL_CLIP))
    clip_model = "ViT-L-14-quickgelu" if args.real_size else str(clip_cfg_path)
    sd_model = str(_text_encoder_dir(workdir, args.real_size))
    precision = "fp16" if gpu else "fp32"

    result: dict[str, Any] = {
        "benchmark": "features",
        "machine": {"platform": platform.platform(), "cpus": cpus, "torch": torch.__version__,
                    "transformers": importlib.import_module("transformers").__version__,
                    "device": torch.cuda.get_device_name(torch.device(args.device)) if gpu else "cpu"},
        "models": ("real-size architectures, random weights: open_clip ViT-L-14-quickgelu, SD 1.5 text encoder"
                   if args.real_size else "small random-weight models at real input sizes (224 px, 77 tokens)"),
        "inputs": {"images": n_img, "captions": n_cap, "naive_items": n_naive, "jpeg_side": args.image_size},
    }
    for stage in args.stages.split(","):
        clip = stage == "clip"
        cfg = {
            "stage": stage, "device": args.device, "precision": precision, "clip_model": clip_model,
            "sd_model": sd_model, "items": n_img if clip else n_cap, "naive_items": n_naive, "crop": 224,
            "batch_size": clip_batch if clip else text_batch,
            "workers": (args.workers or (max(1, min(14, cpus - 2)) if gpu else 1)) if clip
            else (args.text_workers or (4 if gpu else 1)),
            "naive_out": str(workdir / "naive" / stage),
        }
        measured = {**_in_process("pipeline", cfg), **_in_process("naive", cfg)}
        p, r, nv = measured["pipeline"]["items_per_s"], measured["raw"]["items_per_s"], measured["naive"]["items_per_s"]
        result[stage] = {**measured, "pipeline_over_raw": round(p / r, 3), "speedup_over_naive": round(p / nv, 2)}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
