"""Scoring throughput and FID memory, harness vs. the way the official scripts do it. Prints JSON.

* CLIP similarity: gill-eval's batched ``ClipImageEmbedder`` vs. a per-pair fp32 loop (preprocess one
  image, ``encode_image`` on a batch of 1, twice per pair), as GILL's ``evals/`` script does. Same inputs.
* LPIPS: ``LpipsScorer`` (batched) vs. one ``lpips.LPIPS`` call per pair, same inputs and resize.
* FID statistics: streaming float64 sums (``RunningStats``) vs. holding every feature and ``np.cov``
  (what ``torch_fidelity.calculate_metrics`` does), each in its own process, peak RSS of each, for N and
  2N images: the streaming peak should not grow with N.

All networks have random weights (nothing can be downloaded): CPU default uses ViT-B-32 for CLIP;
``--real-size`` uses ViT-L/14 (QuickGELU), AlexNet and Inception-v3 as in the paper's protocol.
Example (H100, < 2 minutes): ``python benchmarks/scoring.py --device cuda --real-size --quick``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
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


def _fid_worker(mode: str, n: int, weights: str, device: str, batch: int, queue) -> None:
    from gill_eval.metrics import fid

    net, _ = fid.load_inception(weights, device)
    running = fid.RunningStats()
    kept = []
    t = time.perf_counter()
    for start in range(0, n, batch):
        images = _images(min(batch, n - start), 256, 10_000 + start)  # produced on the fly, like a shard reader
        feats = fid.extract_features(net, images, device, batch)
        if mode == "stream":
            running.update(feats)
        else:
            kept.append(feats)
    if mode == "stream":
        stats = running.statistics()
    else:
        allf = np.concatenate(kept)
        stats = {"mu": allf.mean(0), "sigma": np.cov(allf, rowvar=False)}
    _sync(device)
    elapsed = time.perf_counter() - t
    queue.put({"mode": mode, "images": n, "images_per_s": n / elapsed, "trace_sigma": float(np.trace(stats["sigma"])),
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def bench_fid(args) -> dict:
    from gill_eval.metrics.fid import build_random_inception_weights

    ctx = mp.get_context("spawn")
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        weights = str(build_random_inception_weights(Path(tmp) / "inception.pt"))
        for mode, n in (("stream", args.fid_images), ("stream", 2 * args.fid_images), ("in-memory", 2 * args.fid_images)):
            queue = ctx.Queue()
            proc = ctx.Process(target=_fid_worker, args=(mode, n, weights, args.device, args.batch_size, queue))
            proc.start()
            out.append(queue.get())
            proc.join()
    return {"runs": out, "stream_rss_growth_mb_per_n": out[1]["peak_rss_mb"] - out[0]["peak_rss_mb"],
            "in_memory_minus_stream_rss_mb": out[2]["peak_rss_mb"] - out[1]["peak_rss_mb"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--real-size", action="store_true", help="ViT-L/14 for CLIP (default ViT-B-32 on CPU)")
    parser.add_argument("--quick", action="store_true", help="sizes that finish in about 2 minutes on an H100")
    parser.add_argument("--pairs", type=int, default=None)
    parser.add_argument("--baseline-pairs", type=int, default=None)
    parser.add_argument("--fid-images", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--skip", default="", help="comma list of clip,lpips,fid to skip")
    args = parser.parse_args()
    gpu = args.device.startswith("cuda")
    args.pairs = args.pairs or (2048 if gpu else 64)
    args.baseline_pairs = args.baseline_pairs or (256 if gpu else 32)
    args.fid_images = args.fid_images or (5000 if gpu else 32)
    args.batch_size = args.batch_size or (256 if gpu else 16)
    torch.set_grad_enabled(False)
    gen, ref = _images(args.pairs, 512, 1), _images(args.pairs, 224, 2)  # generated 512x512; GILL references 224x224
    report = {"device": torch.cuda.get_device_name(0) if gpu else f"cpu ({torch.get_num_threads()} threads)",
              "torch": torch.__version__, "args": vars(args)}
    skip = set(args.skip.split(","))
    if "clip" not in skip:
        report["clip_similarity"] = bench_clip(args, gen, ref)
    if "lpips" not in skip:
        report["lpips"] = bench_lpips(args, gen, ref)
    if "fid" not in skip:
        report["fid_statistics"] = bench_fid(args)
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
