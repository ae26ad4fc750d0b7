"""Shared fixtures of the fault suite: one loopback server, prepared data built once per session, a CLI runner.

Every fixture that prepares data does it once (session scope) into a reference root; a test that damages
data works on a copy (``copy_root``), so the suite stays within its time budget (docs/reliability.md).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from httpserver import LoopbackServer
from PIL import Image

# (caption, route): 8 rows in image shards of 2 rows; the slowok rows give a kill time to land mid-run.
CC3M_ROWS = [
    ("a dog on a beach .", "img/f0.jpg"),
    ("a red flower .", "img/f1.jpg"),
    ("a slow photo .", "slowok/f2.jpg"),
    ("a dead link .", "missing/f3.jpg"),
    ("a cup of coffee .", "img/f4.jpg"),
    ("another slow photo .", "slowok/f5.jpg"),
    ("a web page .", "text/f6"),
    ("a train at night .", "img/f7.jpg"),
]
PREPARE_OPTIONS = ["--processes", "1", "--threads", "2", "--timeout", "3", "--shard-size", "2", "--image-size", "32"]
BENCH = ["bench", "vist", "--model", "tiny-sd", "--model-opt", "steps=2", "--context", "1c", "--scorers", "tiny",
         "--batch-size", "1", "--seeds", "0-1", "--json"]


@dataclass
class Cli:
    """``python <script> ARGS`` with the real console entry point (SIGTERM handler included)."""

    script: Path
    cache: Path

    def env(self, data: Path, **extra: str) -> dict[str, str]:
        return {**os.environ, "GILL_EVAL_DATA": str(data), "GILL_EVAL_CACHE": str(self.cache), "OMP_NUM_THREADS": "1",
                **extra}

    def command(self, *args: str) -> list[str]:
        return [sys.executable, str(self.script), *args]

    def run(self, data: Path, *args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*args), env=self.env(data, **env), capture_output=True, text=True,
                              timeout=timeout, check=False)

    def start(self, data: Path, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.command(*args), env=self.env(data, **env), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single ``error:`` line of a failed command; fails the test on a traceback or several lines."""
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (lock files excluded: they are not data)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.endswith((".lock", ".lock.json"))}


def read_folder(folder: Path) -> pa.Table:
    """The Parquet shards of a folder as one table, object addresses in error messages masked
    (img2dataset's decode errors name a BytesIO at some address; the rest must match byte for byte)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pa.concat_tables([pq.read_table(p) for p in sorted(folder.glob("*.parquet"))])
    if "error_message" in table.column_names:
        masked = pc.replace_substring_regex(table["error_message"], r"0x[0-9a-f]+", "0x")
        table = table.set_column(table.column_names.index("error_message"), "error_message", masked)
    return table


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".tmp-*")]


@pytest.fixture(scope="session")
def server() -> Iterator[object]:
    with LoopbackServer() as srv:
        yield srv


@pytest.fixture(scope="session")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    base = tmp_path_factory.mktemp("faults-cli")
    script = base / "gill_eval_cli.py"
    script.write_text("from gill_eval.cli import main\nmain()\n")
    return Cli(script, base / "cache")


@pytest.fixture(scope="session")
def cc3m_tsv(server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("faults-tsv") / "cc3m.tsv"
    path.write_text("".join(f"{c}\t{server.url(r)}\n" for c, r in CC3M_ROWS), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def cc3m_root(cli: Cli, cc3m_tsv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted ``prepare cc3m`` of the fixture TSV (the reference every prepare fault compares to)."""
    root = tmp_path_factory.mktemp("faults-cc3m") / "data"
    result = cli.run(root, "prepare", "cc3m", "--tsv", str(cc3m_tsv), "--split", "val", *PREPARE_OPTIONS)
    assert result.returncode == 0, result.stderr
    return root


def _jpeg(rng: np.random.Generator, size: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def build_image_dataset(root: Path, name: str = "imgs", shards: int = 6, per_shard: int = 4, size: int = 96) -> None:
    """A prepared-layout dataset of noise JPEGs written through the store (so its manifest records its files)."""
    from gill_eval.store import Manifest, write_manifest, write_shard
    from gill_eval.store.root import set_data_root

    set_data_root(root)
    try:
        folder = root / "datasets" / name
        rng = np.random.default_rng(7)
        n = 0
        for s in range(shards):
            keys = [f"{n + i:09d}" for i in range(per_shard)]
            n += per_shard
            write_shard(pa.table({"key": keys, "image": pa.array([_jpeg(rng, size) for _ in keys], pa.binary()),
                                  "status": ["success"] * per_shard}), folder / "images" / f"{s:05d}.parquet")
            write_shard(pa.table({"key": keys, "caption": [f"caption {k}" for k in keys]}),
                        folder / "examples" / f"{s:05d}.parquet")
        write_manifest(folder, Manifest(dataset=name, counts={"examples": n}))
    finally:
        set_data_root(None)


def build_vist(root: Path, n_stories: int = 3) -> None:
    from test_bench_data import build_fixture_data

    from gill_eval.store.root import set_data_root

    set_data_root(root)
    try:
        build_fixture_data(n_stories=n_stories)
    finally:
        set_data_root(None)


@pytest.fixture(scope="session")
def clip_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gill_eval.models.tiny import tiny_clip_dir

    return tiny_clip_dir(tmp_path_factory.mktemp("tiny-clip"))


def features_args(clip: Path, *extra: str) -> list[str]:
    return ["--offline", "features", "clip", "--dataset", "imgs", "--pretrained", str(clip), "--device", "cpu",
            "--num-workers", "0", "--batch-size", "2", "--json", *extra]


@pytest.fixture(scope="session")
def features_root(cli: Cli, clip_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image dataset and its CLIP features, computed once without interruption."""
    root = tmp_path_factory.mktemp("faults-features") / "data"
    build_image_dataset(root)
    result = cli.run(root, *features_args(clip_weights))
    assert result.returncode == 0, result.stderr
    return root


@pytest.fixture(scope="session")
def bench_root(cli: Cli, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The VIST fixture and one uninterrupted tiny-sd bench run over it."""
    root = tmp_path_factory.mktemp("faults-bench") / "data"
    build_vist(root)
    result = cli.run(root, *BENCH)
    assert result.returncode == 0, result.stderr
    return root


@pytest.fixture
def copy_root(tmp_path: Path):
    """``copy_root(root)``: a private copy of a reference root to damage."""
    def make(root: Path) -> Path:
        target = tmp_path / "copy"
        shutil.copytree(root, target, ignore=shutil.ignore_patterns("*.lock", "*.lock.json"))
        return target

    return make
