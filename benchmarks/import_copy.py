"""`prepare cc3m --from` throughput and memory against a plain pyarrow copy of the same rows. JSON out.

A synthetic img2dataset copy (``parquet`` output format: caption, url, key, status, ..., jpg) of ``--rows``
rows of small JPEGs (1 in 50 a failed download, as img2dataset records them), with the caption<TAB>url TSV
of record, is built once. Then, each in a process of its own so that its peak RSS (``VmHWM``) is its own:

* ``pyarrow_copy``: read every shard of the copy in record batches and write them to another folder with
  ``pq.ParquetWriter`` (no join, no decode): the floor for touching the same bytes;
* ``import``: ``gill_eval.prepare.cc3m(..., copy=DIR)`` for the train split (``--store img2dataset``: bytes
  kept, each image decoded once to count undecodable ones), shards of 10,000 rows, the manifest written.

``--scales`` repeats the import at smaller sizes so the peak RSS can be compared across sizes (flat memory
means the peak does not grow with the number of rows). Example (about 2 minutes on 2 idle cores):

    python benchmarks/import_copy.py --rows 100000 --scales 20000
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

SHARD = 10_000

PYARROW_COPY = """
import sys, time, pyarrow.parquet as pq
from pathlib import Path
src, dst = Path(sys.argv[1]), Path(sys.argv[2]); dst.mkdir(parents=True, exist_ok=True)
start = time.perf_counter(); rows = 0
for path in sorted(src.glob("*.parquet")):
    f = pq.ParquetFile(path)
    with pq.ParquetWriter(dst / path.name, f.schema_arrow) as w:
        for batch in f.iter_batches(batch_size=512):
            w.write_batch(batch); rows += batch.num_rows
wall = time.perf_counter() - start
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]
print({"rows": rows, "wall_s": wall, "peak_rss_mb": int(hwm) / 1024}.__repr__())
"""

IMPORT = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[4])
from gill_eval import prepare
from gill_eval.store.root import set_data_root
set_data_root(sys.argv[3])
start = time.perf_counter()
summary = prepare.cc3m(sys.argv[1], "train", prepare.DownloadOptions(shard_size=%d, store="img2dataset"), copy=sys.argv[2])
wall = time.perf_counter() - start
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]
print({"rows": summary["examples"], "success": summary["images"]["success"], "wall_s": wall,
       "peak_rss_mb": int(hwm) / 1024}.__repr__())
""" % SHARD


def make_copy(folder: Path, rows: int) -> tuple[Path, Path]:
    """An img2dataset parquet copy of ``rows`` rows and its TSV (100 distinct 64x64 JPEGs, about 2 KB each)."""
    rng = np.random.default_rng(0)
    jpegs = []
    for _ in range(100):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
        jpegs.append(buf.getvalue())
    copy = folder / "copy"
    copy.mkdir(parents=True)
    tsv = folder / "cc3m.tsv"
    with tsv.open("w", encoding="utf-8") as out:
        for start in range(0, rows, SHARD):
            n = min(SHARD, rows - start)
            ids = range(start, start + n)
            ok = [i % 50 != 7 for i in ids]
            caption = [f"caption number {i} ." for i in ids]
            url = [f"http://images.example/{i}.jpg" for i in ids]
            out.write("".join(f"{c}\t{u}\n" for c, u in zip(caption, url)))
            pq.write_table(pa.table({
                "caption": caption, "url": url, "key": [f"{i:09d}" for i in ids],
                "status": ["success" if k else "failed_to_download" for k in ok],
                "error_message": [None if k else "HTTP Error 404: Not Found" for k in ok],
                "width": pa.array([64 if k else None for k in ok], pa.int32()),
                "height": pa.array([64 if k else None for k in ok], pa.int32()),
                "jpg": pa.array([jpegs[i % 100] if k else None for i, k in zip(ids, ok)], pa.binary()),
            }), copy / f"{start // SHARD:05d}.parquet")
            (copy / f"{start // SHARD:05d}_stats.json").write_text(json.dumps({"count": n}))
    return copy, tsv


def run(code: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return eval(proc.stdout.strip().splitlines()[-1])  # noqa: S307 - our own child's repr of a dict of numbers


def measure(rows: int, work: Path) -> dict:
    copy, tsv = make_copy(work / f"n{rows}", rows)
    base = run(PYARROW_COPY, str(copy), str(work / f"n{rows}" / "pyarrow-copy"))
    mine = run(IMPORT, str(tsv), str(copy), str(work / f"n{rows}" / "data"), str(Path(__file__).resolve().parents[1]))
    for r in (base, mine):
        r["rows_per_s"] = r["rows"] / r["wall_s"]
    return {"rows": rows, "pyarrow_copy": base, "import": mine,
            "import_vs_pyarrow_rate": mine["rows_per_s"] / base["rows_per_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--scales", type=int, nargs="*", default=[20_000], help="smaller sizes for the memory check")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gill-eval-import-bench-") as tmp:
        runs = [measure(n, Path(tmp)) for n in sorted({*args.scales, args.rows})]
    print(json.dumps({"runs": runs,
                      "peak_rss_mb_by_rows": {r["rows"]: round(r["import"]["peak_rss_mb"], 1) for r in runs}}, indent=2))


if __name__ == "__main__":
    main()
