"""Scoring throughput and memory, side by side with the way others do it. Prints JSON.

* CLIP similarity: gill-eval's batched ``ClipImageEmbedder`` vs. a per-pair fp32 loop (preprocess one
  image, ``encode_image`` on a batch of 1, twice per pair), as GILL's ``evals/`` script does. Same inputs.
* LPIPS: ``LpipsScorer`` (batched) vs. one ``lpips.LPIPS`` call per pair, same inputs and resize.
* Input ceiling: images/s of the scoring input path (PNG decode, FID's and CLIP's resizes) with the network
  replaced by a no-op, for 0 worker threads (the caller's thread), 1, 2 and all cores (``metrics.inputs``).
* FID vs ``torch_fidelity.calculate_metrics`` on the same two folders and the same random Inception weights,
  each run in a fresh process, paired rounds in alternating order: wall ratio, images/s, both FID values, peak
  memory (``VmHWM`` of the process; the sampled peak PSS of its tree, DataLoader workers included).
* FID statistics memory: streaming float64 sums (``RunningStats``) vs. every feature held and ``np.cov``, at
  N and 4N features from a cheap network (the statistics step is what is measured), own process each, peak
  from ``VmHWM`` (``ru_maxrss`` would be the parent's: it survives exec). Without ``VmHWM`` it says so.

All networks have random weights (nothing can be downloaded): CPU default uses ViT-B-32 for CLIP;
``--real-size`` uses ViT-L/14 (QuickGELU), AlexNet and Inception-v3 as in the paper's protocol.
Examples: ``OMP_NUM_THREADS=1 python benchmarks/scoring.py --skip clip,lpips`` (2 CPU cores);
``python benchmarks/scoring.py --device cuda --real-size --quick`` (H100, a few minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def _images(n: int, size: int, seed: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((size, size), Image.Resampling.BILINEAR)
            for _ in range(n)]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_clip(args, gen, ref) -> dict:
    import open_clip

    from gill_eval.metrics.clip_similarity import ClipImageEmbedder, clip_similarity

    name = "ViT-L-14-quickgelu" if args.real_size else "ViT-B-32"
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None, device=args.device)
    model.eval()
    precision = "fp16" if args.device.startswith("cuda") else "fp32"
    emb = ClipImageEmbedder(model, preprocess, args.device, precision, args.batch_size)
    clip_similarity(emb, gen[:8], ref[:8])  # warm-up
    _sync(args.device)
    t = time.perf_counter()
    ours = clip_similarity(emb, gen, ref)
    _sync(args.device)
    harness = len(gen) / (time.perf_counter() - t)
    n_base = min(len(gen), args.baseline_pairs)
    base_vals = []
    t = time.perf_counter()
    with torch.no_grad():
        for g, r in zip(gen[:n_base], ref[:n_base], strict=True):
            a = model.encode_image(preprocess(g).unsqueeze(0).to(args.device))
            b = model.encode_image(preprocess(r).unsqueeze(0).to(args.device))
            base_vals.append(torch.nn.functional.cosine_similarity(a, b).item())
    _sync(args.device)
    baseline = n_base / (time.perf_counter() - t)
    return {"model": name, "precision": precision, "batch_size": args.batch_size, "pairs": len(gen),
            "baseline_pairs": n_base, "harness_pairs_per_s": harness, "baseline_pairs_per_s": baseline,
            "speedup": harness / baseline, "max_abs_diff_vs_baseline": float(np.max(np.abs(ours[:n_base] - base_vals)))}


def bench_lpips(args, gen, ref) -> dict:
    from gill_eval.metrics.lpips import LpipsScorer, build_lpips, to_lpips_tensor

    torch.manual_seed(0)
    net, _ = build_lpips("random")  # AlexNet architecture, random trunk (no download); same cost as real
    scorer = LpipsScorer(net, args.device, args.batch_size)
    scorer.score(gen[:8], ref[:8])
    _sync(args.device)
    t = time.perf_counter()
    ours = scorer.score(gen, ref)
    _sync(args.device)
    harness = len(gen) / (time.perf_counter() - t)
    n_base = min(len(gen), args.baseline_pairs)
    base_vals = []
    t = time.perf_counter()
    with torch.no_grad():
        for g, r in zip(gen[:n_base], ref[:n_base], strict=True):
            base_vals.append(net(to_lpips_tensor([g]).to(args.device), to_lpips_tensor([r]).to(args.device)).item())
    _sync(args.device)
    baseline = n_base / (time.perf_counter() - t)
    return {"pairs": len(gen), "baseline_pairs": n_base, "batch_size": args.batch_size, "harness_pairs_per_s": harness,
            "baseline_pairs_per_s": baseline, "speedup": harness / baseline,
            "max_abs_diff_vs_baseline": float(np.max(np.abs(ours[:n_base] - base_vals)))}


def _vm_hwm_mb() -> float | None:
    """This process's peak resident set from ``VmHWM`` (None where /proc has none). Not ``ru_maxrss``: on Linux
    that survives exec, so a child started by fork+exec reports its parent's peak (issue 26)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            return next(round(int(line.split()[1]) / 1024, 1) for line in fh if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return None


def _stats_child(mode: str, n: int, dim: int, block: int) -> dict:
    """The FID statistics step alone, on ``n`` features made by a cheap network (a fixed random projection of
    random inputs, block by block, as a shard reader would hand them over): streaming float64 sums
    (``RunningStats``) or every feature held and ``np.cov`` (what ``torch_fidelity.calculate_metrics`` does)."""
    from gill_eval.metrics import fid

    rng = np.random.default_rng(0)
    projection = rng.normal(size=(64, dim)).astype(np.float32)
    running, kept = fid.RunningStats(dim), []
    start = time.perf_counter()
    for first in range(0, n, block):
        feats = np.maximum(rng.normal(size=(min(block, n - first), 64)).astype(np.float32) @ projection, 0)
        running.update(feats) if mode == "stream" else kept.append(feats)
    if mode == "stream":
        stats = running.statistics()
    else:
        allf = np.concatenate(kept)
        stats = {"mu": allf.mean(0), "sigma": np.cov(allf, rowvar=False)}
    return {"mode": mode, "n": n, "seconds": round(time.perf_counter() - start, 2),
            "trace_sigma": float(np.trace(stats["sigma"])), "peak_rss_mb": _vm_hwm_mb()}


def _fid_ours_child(folders: list[str], weights: str, device: str, workers: int) -> dict:
    """gill-eval's FID path on two folders: files read and decoded, ``fid_uint8`` in ``workers`` threads ahead
    of Inception, batches of ``fid_common.CHUNK``, ``RunningStats``, ``frechet_distance``."""
    from gill_eval.bench.fid_common import CHUNK
    from gill_eval.metrics import fid
    from gill_eval.metrics.inputs import blocks_of, ordered_map

    net, _ = fid.load_inception(weights, device)
    start = time.perf_counter()
    stats = []
    for folder in folders:
        running = fid.RunningStats()
        paths = sorted(Path(folder).glob("*.png"))
        prepared = ordered_map(lambda p: fid.fid_uint8(Image.open(p).convert("RGB")), paths, workers)
        for arrays in blocks_of(prepared, CHUNK):
            running.update(fid.inception_batch(net, arrays, device))
        stats.append(running.statistics())
    value = fid.frechet_distance(*stats)
    _sync(device)
    return {"fid": value, "seconds": time.perf_counter() - start, "peak_rss_mb": _vm_hwm_mb(), "workers": workers}


def _fid_torch_fidelity_child(folders: list[str], weights: str, device: str) -> dict:
    import torch_fidelity

    start = time.perf_counter()
    got = torch_fidelity.calculate_metrics(input1=folders[0], input2=folders[1], fid=True, cuda=device.startswith("cuda"),
                                           feature_extractor_weights_path=weights, cache=False, verbose=False)
    _sync(device)
    return {"fid": float(got[torch_fidelity.KEY_METRIC_FID]), "seconds": time.perf_counter() - start,
            "peak_rss_mb": _vm_hwm_mb()}


def _run_child(job: dict) -> dict:
    """Run ``job`` in a fresh interpreter (``--child``); its result plus the sampled peak PSS of its process tree
    (torch-fidelity's DataLoader workers included; PSS splits shared pages, so nothing is counted twice)."""
    import psutil

    proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(job)], stdout=subprocess.PIPE)
    tree, peak = psutil.Process(proc.pid), 0.0
    while proc.poll() is None:
        total = 0.0
        for p in [tree, *tree.children(recursive=True)]:
            try:
                total += p.memory_full_info().pss
            except psutil.Error:
                continue
        peak = max(peak, total / 2**20)
        time.sleep(0.1)
    out = proc.stdout.read() if proc.stdout else b""
    if proc.returncode != 0:
        raise SystemExit(f"child {job}: exit {proc.returncode}")
    return {**json.loads(out), "peak_tree_pss_mb": round(peak, 1) if peak else None}


def bench_fid_memory(args) -> dict:
    """Peak memory of the statistics step, streaming vs holding every feature, at N and 4N (own process each)."""
    runs = [_run_child({"kind": "stats", "mode": mode, "n": n, "dim": 2048, "block": 256})
            for mode in ("stream", "in-memory") for n in (args.stats_n, 4 * args.stats_n)]
    by = {(r["mode"], r["n"]): r["peak_rss_mb"] for r in runs}
    measured = all(v is not None for v in by.values())
    n, n4 = args.stats_n, 4 * args.stats_n
    return {"runs": runs, "note": None if measured else "no VmHWM on this system: peak memory not measured",
            "stream_growth_n_to_4n_mb": round(by["stream", n4] - by["stream", n], 1) if measured else None,
            "in_memory_growth_n_to_4n_mb": round(by["in-memory", n4] - by["in-memory", n], 1) if measured else None,
            "in_memory_minus_stream_at_4n_mb": round(by["in-memory", n4] - by["stream", n4], 1) if measured else None}


def _write_folder(folder: Path, n: int, seed: int) -> None:
    from gill_eval.metrics import fid

    folder.mkdir()
    for i, image in enumerate(_images(n, 512, seed)):  # FID's declared input (centre square, LANCZOS 256), lossless
        Image.fromarray(fid.fid_uint8(image)).save(folder / f"{i:05d}.png")


def bench_fid_vs_torch_fidelity(args) -> dict:
    """gill-eval's FID and ``torch_fidelity.calculate_metrics`` on the same folders and weights, paired rounds in
    alternating order, each run in a fresh process: wall ratio (median torch-fidelity / median ours), images/s,
    peak memory, both FID values."""
    from gill_eval.metrics.fid import build_random_inception_weights

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        weights = str(build_random_inception_weights(Path(tmp) / "inception.pt"))
        folders = [str(Path(tmp) / "a"), str(Path(tmp) / "b")]
        _write_folder(Path(folders[0]), args.fid_images, 1)
        _write_folder(Path(folders[1]), args.fid_images, 2)
        for rnd in range(args.rounds):
            jobs = {"gill_eval": {"kind": "ours", "folders": folders, "weights": weights, "device": args.device,
                                  "workers": args.fid_workers},
                    "torch_fidelity": {"kind": "torch-fidelity", "folders": folders, "weights": weights,
                                       "device": args.device}}
            order = list(jobs) if rnd % 2 == 0 else list(jobs)[::-1]
            runs.append({"order": order, **{who: _run_child(jobs[who]) for who in order}})
    ours = statistics.median(r["gill_eval"]["seconds"] for r in runs)
    theirs = statistics.median(r["torch_fidelity"]["seconds"] for r in runs)
    images = 2 * args.fid_images
    return {"images_per_side": args.fid_images, "rounds": runs,
            "wall_ratio_torch_fidelity_over_ours": round(theirs / ours, 3),
            "ratio_per_round": [round(r["torch_fidelity"]["seconds"] / r["gill_eval"]["seconds"], 3) for r in runs],
            "gill_eval_images_per_s": round(images / ours, 1), "torch_fidelity_images_per_s": round(images / theirs, 1),
            "fid_abs_diff": max(abs(r["gill_eval"]["fid"] - r["torch_fidelity"]["fid"]) for r in runs)}


def bench_input_ceiling(args) -> dict:
    """Images/s of the scoring input path with the network replaced by a no-op: generated PNG bytes (512x512)
    decoded once and made into Inception's and CLIP's inputs (``bench.pixels``), blocks of 32, for 0 workers
    (the caller's thread, as before), 1, 2 and all cores."""
    import io

    from gill_eval.metrics import fid
    from gill_eval.metrics.clip_similarity import official_clip_preprocess
    from gill_eval.metrics.inputs import blocks_of, ordered_map

    class _Visual:  # what official_clip_preprocess reads from a CLIP model: ViT-L/14's input settings
        preprocess_cfg = {"size": 224, "mean": (0.48145466, 0.4578275, 0.40821073), "std": (0.26862954, 0.26130258, 0.27577711)}

    clip_prepare = official_clip_preprocess(type("M", (), {"visual": _Visual})())
    blobs = []
    for im in _images(args.ceiling_images, 512, 3):
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        blobs.append(buf.getvalue())

    def prepare(block: list[bytes]) -> tuple[list, list]:
        images = [Image.open(io.BytesIO(b)).convert("RGB") for b in block]
        return [fid.fid_uint8(im) for im in images], [clip_prepare(im) for im in images]

    cores = len(os.sched_getaffinity(0))
    out = {}
    for workers in sorted({0, 1, 2, cores}):
        rates = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            for arrays, _tensors in ordered_map(prepare, blocks_of(blobs, 32), workers):
                np.stack(arrays)  # what reaches the network; the network itself is a no-op here
            rates.append(len(blobs) / (time.perf_counter() - start))
        out[str(workers)] = {"images_per_s_median": round(statistics.median(rates), 1),
                             "images_per_s": [round(r, 1) for r in rates]}
    one = out["1"]["images_per_s_median"]
    return {"images": len(blobs), "cores": cores, "by_workers": out,
            "speedup_2_over_1_workers": round(out["2"]["images_per_s_median"] / one, 3)}


def _child(job: dict) -> None:
    torch.set_grad_enabled(False)
    if job["kind"] == "stats":
        out = _stats_child(job["mode"], job["n"], job["dim"], job["block"])
    elif job["kind"] == "ours":
        out = _fid_ours_child(job["folders"], job["weights"], job["device"], job["workers"])
    else:
        out = _fid_torch_fidelity_child(job["folders"], job["weights"], job["device"])
    json.dump(out, sys.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--real-size", action="store_true", help="ViT-L/14 for CLIP (default ViT-B-32 on CPU)")
    parser.add_argument("--quick", action="store_true", help="sizes that finish in about 2 minutes on an H100")
    parser.add_argument("--pairs", type=int, default=None)
    parser.add_argument("--baseline-pairs", type=int, default=None)
    parser.add_argument("--fid-images", type=int, default=None, help="images a side for FID vs torch-fidelity")
    parser.add_argument("--fid-workers", type=int, default=None, help="input threads of gill-eval's FID (default: cores)")
    parser.add_argument("--stats-n", type=int, default=20_000, help="N of the statistics memory runs (N and 4N)")
    parser.add_argument("--ceiling-images", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--skip", default="", help="comma list of clip,lpips,fid,memory,ceiling to skip")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        return _child(json.loads(args.child))
    gpu = args.device.startswith("cuda")
    args.pairs = args.pairs or (2048 if gpu else 64)
    args.baseline_pairs = args.baseline_pairs or (256 if gpu else 32)
    args.fid_images = args.fid_images or (5000 if gpu else 128)
    args.fid_workers = args.fid_workers if args.fid_workers is not None else len(os.sched_getaffinity(0))
    # on 2 cores, 256 images (8 blocks) gave 1.59x to 1.93x from 1 to 2 workers between runs: too few to read
    args.ceiling_images = args.ceiling_images or (2048 if gpu else 1024)
    args.batch_size = args.batch_size or (256 if gpu else 16)
    torch.set_grad_enabled(False)
    report = {"device": torch.cuda.get_device_name(0) if gpu else f"cpu ({torch.get_num_threads()} threads)",
              "torch": torch.__version__, "command": " ".join([Path(sys.executable).name, *sys.argv]),
              "args": vars(args), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
              "loadavg_start": [round(x, 2) for x in os.getloadavg()]}
    skip = set(args.skip.split(","))
    if not {"clip", "lpips"} <= skip:
        gen, ref = _images(args.pairs, 512, 1), _images(args.pairs, 224, 2)  # generated 512x512; GILL references 224x224
        if "clip" not in skip:
            report["clip_similarity"] = bench_clip(args, gen, ref)
        if "lpips" not in skip:
            report["lpips"] = bench_lpips(args, gen, ref)
    if "ceiling" not in skip:
        report["input_ceiling"] = bench_input_ceiling(args)
    if "fid" not in skip:
        report["fid_vs_torch_fidelity"] = bench_fid_vs_torch_fidelity(args)
    if "memory" not in skip:
        report["fid_statistics_memory"] = bench_fid_memory(args)
    report["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
