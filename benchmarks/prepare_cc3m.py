"""``gill-eval prepare cc3m`` beside bare img2dataset on the same loopback rows (issue 19, item 2). Prints JSON.

A synthetic ``--rows``-row CC3M TSV (every 50th URL a 404, ``benchmarks/scale.py``'s images) is served on
127.0.0.1. Each round runs, in alternating order, ``gill-eval prepare cc3m --split S`` and img2dataset alone
(``img2dataset.download`` in a fresh interpreter, the same processes, threads, shard size, Parquet output
and sha256) with its equivalent output:

* ``--split train`` stores img2dataset's own resize (``border``, 256, JPEG): the bare run uses the same;
* ``--split val`` stores the FID reference (centred square, Pillow LANCZOS to 256, PNG; docs/protocols.md):
  the nearest bare run is ``--resize_mode center_crop --image_size 256`` (OpenCV, JPEG), which does less
  (no PNG), so its ratio is the cost of the protocol's pixels, quoted as such.

Per run: wall time and the CPU seconds of the whole process tree (``RUSAGE_CHILDREN`` of this script: every
descendant is waited for). Summary per split: median walls and ``ratio`` = median bare wall / median
gill-eval wall (1.0 = as fast as img2dataset; the issue's goal is >= 0.9). With ``--before-src DIR`` (a copy of
an earlier ``gill_eval`` package, e.g. ``git archive HEAD~1 gill_eval | tar -x -C DIR``) that version runs in
the same rounds too, as ``gill_eval_before``. The load average is recorded: the CPUs may be shared.
Example: ``OMP_NUM_THREADS=1 python benchmarks/prepare_cc3m.py --rows 2000 --rounds 3``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))

from scale import image_url, write_images  # noqa: E402  (the scale benchmark's served images and URLs)

BARE_RESIZE = {"train": "border", "val": "center_crop"}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    """Wall and tree CPU seconds of ``cmd`` (which must succeed), with the load average before it."""
    load = os.getloadavg()
    cpu0, start = _children_cpu(), time.perf_counter()
    with log.open("ab") as err:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, env=env, cwd=REPO, check=False)
    wall, cpu = time.perf_counter() - start, _children_cpu() - cpu0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: exit {proc.returncode}; see {log}")
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "loadavg_1m_before": round(load[0], 2)}


def write_inputs(work: Path, base: str, rows: int) -> tuple[Path, Path]:
    """The header-less TSV for gill-eval and the same rows as Parquet (url column) for img2dataset."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    urls = [image_url(base, i) for i in range(rows)]
    tsv = work / "rows.tsv"
    tsv.write_text("".join(f"a synthetic caption number {i} .\t{u}\n" for i, u in enumerate(urls)), encoding="utf-8")
    parquet = work / "rows.parquet"
    pq.write_table(pa.table({"url": urls, "caption": [f"a synthetic caption number {i} ." for i in range(rows)]}), parquet)
    return tsv, parquet


def gill_cmd(data: Path, tsv: Path, split: str, args: argparse.Namespace, src: Path = REPO) -> list[str]:
    boot = f"import sys; sys.path.insert(0, {str(src)!r}); sys.argv[0] = 'gill-eval'; from gill_eval.cli import main; main()"
    return [sys.executable, "-c", boot, "--data-dir", str(data), "prepare", "cc3m", "--tsv", str(tsv),
            "--split", split, "--processes", str(args.processes), "--threads", str(args.threads),
            "--shard-size", str(args.shard_size), "--json"]


def bare_cmd(out: Path, parquet: Path, split: str, args: argparse.Namespace) -> list[str]:
    kwargs = {"url_list": str(parquet), "input_format": "parquet", "url_col": "url", "caption_col": "caption",
              "output_format": "parquet", "output_folder": str(out), "processes_count": args.processes,
              "thread_count": args.threads, "image_size": 256, "resize_mode": BARE_RESIZE[split],
              "number_sample_per_shard": args.shard_size, "compute_hash": "sha256", "enable_wandb": False}
    return [sys.executable, "-c", f"import img2dataset; img2dataset.download(**{kwargs!r})"]


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    gill = [r["gill_eval"]["wall_s"] for r in runs]
    bare = [r["img2dataset"]["wall_s"] for r in runs]
    before = {}
    if "gill_eval_before" in runs[0]:
        walls = [r["gill_eval_before"]["wall_s"] for r in runs]
        before = {"gill_eval_before_median_wall_s": statistics.median(walls),
                  "gill_eval_before_median_cpu_s": statistics.median(r["gill_eval_before"]["cpu_s"] for r in runs),
                  "ratio_before": round(statistics.median(bare) / statistics.median(walls), 3)}
    return {**before, "gill_eval_median_wall_s": statistics.median(gill), "img2dataset_median_wall_s": statistics.median(bare),
            "gill_eval_median_cpu_s": statistics.median(r["gill_eval"]["cpu_s"] for r in runs),
            "img2dataset_median_cpu_s": statistics.median(r["img2dataset"]["cpu_s"] for r in runs),
            "ratio": round(statistics.median(bare) / statistics.median(gill), 3),
            "ratio_per_round": [round(b / g, 3) for b, g in zip(bare, gill)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--splits", default="train,val")
    parser.add_argument("--before-src", type=Path, default=None, help="folder holding an earlier gill_eval package")
    args = parser.parse_args()
    from gill_eval.quickstart import serve_folder

    report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                          "python": platform.python_version()},
                              "command": " ".join([Path(sys.executable).name, *sys.argv]), "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                              "loadavg_start": [round(x, 2) for x in os.getloadavg()], "splits": {}}
    with tempfile.TemporaryDirectory(prefix="gill-eval-prepare-bench-") as tmp:
        work = Path(tmp)
        log = work / "stderr.log"
        write_images(work / "served")
        env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1",
               "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}
        with serve_folder(work / "served") as port:
            tsv, parquet = write_inputs(work, f"http://127.0.0.1:{port}/", args.rows)
            for split in args.splits.split(","):
                runs = []
                for rnd in range(args.rounds):
                    order = ["gill_eval", "img2dataset"] + (["gill_eval_before"] if args.before_src else [])
                    order = order if rnd % 2 == 0 else order[::-1]
                    run: dict[str, Any] = {"order": order}
                    for who in order:
                        out = work / f"{who}-{split}-{rnd}"
                        cmd = (bare_cmd(out, parquet, split, args) if who == "img2dataset" else
                               gill_cmd(out, tsv, split, args, args.before_src if who == "gill_eval_before" else REPO))
                        run[who] = timed(cmd, env, log)
                        subprocess.run(["rm", "-rf", str(out)], check=True)
                    runs.append(run)
                report["splits"][split] = {"bare_resize_mode": BARE_RESIZE[split], "runs": runs, **summarise(runs)}
    report["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
