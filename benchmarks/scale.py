"""Scale figures on one machine, CPU only. Prints JSON.

* ``prepare``: ``gill-eval prepare cc3m`` on a synthetic ``--rows``-row TSV (every 50th URL a 404) served
  from a loopback HTTP server, once with img2dataset's multiprocessing distributor and once with its pyspark
  distributor on a local Spark (``--spark-master``): wall time, rows/s, peak RSS of the whole process tree
  (the command, img2dataset's workers, Spark's JVM and Python workers) and the shards written.
* ``fid`` and ``vist``: the quickstart's FID stage (``bench cc3m-fid``, 10 captions) and bench stage
  (``bench vist``, 5 stories) with ``tiny-sd`` and tiny scorers at 1x, 10x and 100x that size (``--scales``),
  each size prepared in a data root of its own: wall time, seconds per item and peak RSS. Time should grow
  linearly (the per-item time at 100x close to that at 10x; fixed start-up dominates 1x) and peak memory
  should stay flat (images stream through shards; FID keeps running sums).

Every command runs as its own process tree (``python -m gill_eval ...``), sampled every 0.2 s for RSS; the
load average (``os.getloadavg``) before and after each is recorded, since it says how shared the CPUs were.
Example (2 shared cores, about 15 minutes):
``python benchmarks/scale.py --rows 20000 > benchmarks/results/cpu2-scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
DISTINCT_IMAGES = 997  # the server holds this many files; rows reach them by unique URLs (a query string)
FID_BASE, VIST_BASE = 10, 5  # the quickstart's sizes: coco-fid's 10 captions, the sample's 5 VIST stories


def _sample_tree_rss(proc: psutil.Process) -> tuple[int, int]:
    """(sum of RSS over the process and all its descendants, largest single RSS), in bytes."""
    total = biggest = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            rss = p.memory_info().rss
        except psutil.Error:
            continue
        total += rss
        biggest = max(biggest, rss)
    return total, biggest


def measure(cmd: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run ``cmd``; its wall time, peak tree RSS, load averages and parsed JSON stdout."""
    load_before = os.getloadavg()
    start = time.perf_counter()
    with log.open("ab") as err:
        err.write(("\n$ " + " ".join(cmd) + "\n").encode())
        err.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env, cwd=REPO)
        ps = psutil.Process(proc.pid)
        peak_total = peak_single = 0
        while proc.poll() is None:
            total, single = _sample_tree_rss(ps)
            peak_total, peak_single = max(peak_total, total), max(peak_single, single)
            time.sleep(0.2)
        out = proc.stdout.read() if proc.stdout else b""
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: exit {proc.returncode}; see {log}")
    return {"wall_s": round(wall, 2), "peak_tree_rss_mb": round(peak_total / 2**20, 1),
            "peak_single_process_rss_mb": round(peak_single / 2**20, 1),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()], "result": json.loads(out) if out.strip() else None}


def gill_eval(data: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "gill_eval", "--data-dir", str(data), *args]


def write_images(folder: Path) -> None:
    from gill_eval.sample.make import synthetic_image

    (folder / "img").mkdir(parents=True, exist_ok=True)
    for i in range(DISTINCT_IMAGES):
        (folder / "img" / f"{i}.jpg").write_bytes(synthetic_image(f"scale-{i}"))


def image_url(base: str, row: int) -> str:
    if row % 50 == 49:
        return f"{base}missing/{row}.jpg"
    return f"{base}img/{row % DISTINCT_IMAGES}.jpg?row={row}"


def write_tsv(path: Path, base: str, rows: int, dead_links: bool = True) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for i in range(rows):
            url = image_url(base, i) if dead_links else f"{base}img/{i % DISTINCT_IMAGES}.jpg?row={i}"
            f.write(f"a synthetic caption number {i} .\t{url}\n")
    return path


def write_sis(path: Path, base: str, stories: int) -> Path:
    """A VIST story-in-sequence file with ``stories`` stories of 5 photos each (the published format)."""
    images, annotations = [], []
    for s in range(stories):
        album = f"7215{s:08d}"
        for j in range(5):
            photo = str(100_000 + 5 * s + j)
            images.append({"id": photo, "album_id": album, "url_o": f"{base}img/{int(photo) % DISTINCT_IMAGES}.jpg?p={photo}",
                           "title": "", "text": "", "tags": "", "datetaken": "2009-06-04 14:22:10", "license": "5",
                           "secret": "0", "media": "photo", "latitude": "0", "longitude": "0"})
            annotations.append([{"story_id": str(50_000 + s), "storylet_id": str(500_000 + 5 * s + j),
                                 "album_id": album, "photo_flickr_id": photo, "worker_arranged_photo_order": j,
                                 "text": f"story {s} sentence {j} .", "original_text": f"Story {s} sentence {j}.",
                                 "setting": "first-2-pick-and-tell", "worker_id": "W", "tier": "story-in-sequence"}])
    data = {"images": images, "annotations": annotations, "albums": [], "type": "story_in_sequence",
            "info": {"version": "1.0", "description": "synthetic (benchmarks/scale.py)"}}
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def bench_prepare(args, base: str, work: Path, env: dict[str, str], log: Path) -> dict[str, Any]:
    tsv = write_tsv(work / "scale.tsv", base, args.rows)
    common = ["prepare", "cc3m", "--tsv", str(tsv), "--split", "train", "--processes", str(args.processes),
              "--threads", str(args.threads), "--shard-size", str(args.shard_size), "--json"]
    out = {"rows": args.rows, "dead_links": args.rows // 50, "options": common[5:-1]}
    for name, extra in (("multiprocessing", []), ("pyspark", ["--distributor", "pyspark", "--spark-master", args.spark_master])):
        if name not in args.distributors.split(","):
            continue
        data = work / f"prepare-{name}"
        try:
            run = measure(gill_eval(data, *common, *extra), env, log)
        finally:  # img2dataset's own messages (the command prints only their tail on failure)
            for i, found in enumerate(sorted(data.rglob("img2dataset.log"))):
                shutil.copy(found, log.parent / f"img2dataset-{name}-{i}.log")
        summary = run.pop("result")
        run.update(rows_per_s=round(args.rows / run["wall_s"], 1), images=summary["images"],
                   shards=len(list((data / "datasets" / "cc3m-train" / "images").glob("*.parquet"))), extra_options=extra)
        out[name] = run
        shutil.rmtree(data)
    return out


def _scaling(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-item time, marginal per-item time between consecutive sizes, and memory growth."""
    marginal = [round((b["wall_s"] - a["wall_s"]) / (b["items"] - a["items"]), 4) for a, b in zip(runs, runs[1:])]
    return {"seconds_per_item": [round(r["wall_s"] / r["items"], 4) for r in runs],
            "marginal_seconds_per_item": marginal,
            "peak_tree_rss_mb": [r["peak_tree_rss_mb"] for r in runs],
            "rss_growth_largest_vs_smallest_mb": round(runs[-1]["peak_tree_rss_mb"] - runs[0]["peak_tree_rss_mb"], 1)}


def bench_fid(args, base: str, work: Path, env: dict[str, str], log: Path) -> dict[str, Any]:
    runs = []
    for scale in args.scales:
        n = FID_BASE * scale
        data = work / f"fid-{n}"
        tsv = write_tsv(work / f"fid-{n}.tsv", base, n, dead_links=False)
        measure(gill_eval(data, "prepare", "cc3m", "--tsv", str(tsv), "--split", "val", "--processes", "1",
                          "--threads", str(args.threads), "--json"), env, log)
        cmd = ["bench", "cc3m-fid", "--model", "tiny-sd", "--model-opt", "steps=2", "--scorers", "tiny",
               "--device", "cpu", "--batch-size", "8", "--json"]
        run = measure(gill_eval(data, *cmd), env, log)
        result = run.pop("result")[0]
        run.update(scale=scale, items=n, command=cmd, fid=result.get("metrics", {}).get("fid"))
        runs.append(run)
        shutil.rmtree(data)
    return {"runs": runs, **_scaling(runs)}


def bench_vist(args, base: str, work: Path, env: dict[str, str], log: Path) -> dict[str, Any]:
    runs = []
    for scale in args.scales:
        n = VIST_BASE * scale
        data = work / f"vist-{n}"
        sis = write_sis(work / f"vist-{n}.json", base, n)
        measure(gill_eval(data, "prepare", "vist", "--sis", str(sis), "--split", "val", "--processes", "1",
                          "--threads", str(args.threads), "--json"), env, log)
        cmd = ["bench", "vist", "--model", "tiny-sd", "--model-opt", "steps=2", "--context", args.vist_context,
               "--seeds", "0", "--scorers", "tiny", "--device", "cpu", "--batch-size", "8", "--json"]
        run = measure(gill_eval(data, *cmd), env, log)
        run.pop("result")
        run.update(scale=scale, items=n, command=cmd)
        runs.append(run)
        shutil.rmtree(data)
    return {"runs": runs, **_scaling(runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the synthetic CC3M TSV")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--shard-size", type=int, default=10_000)
    parser.add_argument("--distributors", default="multiprocessing,pyspark")
    parser.add_argument("--spark-master", default="local[2]")
    parser.add_argument("--scales", default="1,10,100", help="multiples of the quickstart's sizes")
    parser.add_argument("--vist-context", default="5c", help="5c: tiny-sd is text-only")
    parser.add_argument("--stages", default="prepare,fid,vist")
    parser.add_argument("--log", type=Path, default=None, help="the commands' stderr (default: a temp file)")
    args = parser.parse_args()
    args.scales = [int(s) for s in args.scales.split(",")]
    sys.path.insert(0, str(REPO))
    from gill_eval.quickstart import serve_folder

    report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                          "python": platform.python_version(),
                                          "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)},
                              "command": " ".join([Path(sys.executable).name, *sys.argv]), "args": vars(args) | {"log": None},
                              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                              "loadavg_start": [round(x, 2) for x in os.getloadavg()]}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gill-eval-scale-") as tmp:
        work = Path(tmp)
        log = args.log or work / "stderr.log"
        write_images(work / "served")
        env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "SPARK_LOCAL_IP": "127.0.0.1",
               "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}
        with serve_folder(work / "served") as port:
            base = f"http://127.0.0.1:{port}/"
            stages = args.stages.split(",")
            if "prepare" in stages:
                report["prepare_cc3m"] = bench_prepare(args, base, work, env, log)
            if "fid" in stages:
                report["fid_cc3m"] = bench_fid(args, base, work, env, log)
            if "vist" in stages:
                report["bench_vist"] = bench_vist(args, base, work, env, log)
    report["total_wall_s"] = round(time.perf_counter() - start, 1)
    report["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
