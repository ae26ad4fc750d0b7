"""Full disks, read-only, missing and not-a-folder data roots: one line naming the path and the fix, exit
code 4 for OS errors, nothing already written lost, no temporary left; after the fault is gone the rerun
completes equal to an undamaged run. Small tmpfs mounts need root (CI runs as root): elsewhere these skip."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from faults.conftest import BENCH, features_args, temporaries, tree

from gill_eval.cli import OS_ERROR_EXIT, app


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}); needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` to the last byte."""
    filler = folder / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    return filler


@pytest.fixture
def invoke(cli, monkeypatch):
    monkeypatch.setenv("GILL_EVAL_CACHE", str(cli.cache))

    def run(data: Path, *args: str):
        return CliRunner().invoke(app, ["--data-dir", str(data), *args])

    return run


def one_line(result, *needles: str) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, (result.stderr, result.exception)
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _copy_dataset(src_root: Path, dst_root: Path, name: str) -> None:
    shutil.copytree(src_root / "datasets" / name, dst_root / "datasets" / name,
                    ignore=shutil.ignore_patterns("*.lock", "*.lock.json"))


@pytest.mark.parametrize("stage", ["bench", "features"])
def test_disk_full_is_one_line_and_the_rerun_completes(stage, invoke, tmpfs, bench_root, features_root, clip_weights):
    data = tmpfs / "data"
    reference = bench_root if stage == "bench" else features_root
    _copy_dataset(reference, data, "vist" if stage == "bench" else "imgs")
    args = BENCH if stage == "bench" else features_args(clip_weights)
    before = tree(data / "datasets")
    filler = fill(tmpfs)
    result = invoke(data, *args)
    assert result.exit_code == OS_ERROR_EXIT, (result.stderr, result.exception)
    one_line(result, "no space left on device", "free space")
    assert tree(data / "datasets") == before and not temporaries(data)
    filler.unlink()
    result = invoke(data, *args)
    assert result.exit_code == 0, result.stderr
    out = "generations" if stage == "bench" else "features"
    for path in sorted((reference / out).rglob("*.parquet")):
        assert pq.read_table(data / path.relative_to(reference)).equals(pq.read_table(path)), path


@pytest.mark.parametrize("stage", ["bench", "features"])
def test_read_only_root_is_one_line(stage, invoke, tmpfs, bench_root, features_root, clip_weights):
    data = tmpfs / "data"
    _copy_dataset(bench_root if stage == "bench" else features_root, data, "vist" if stage == "bench" else "imgs")
    remount = subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], capture_output=True, text=True, check=False)
    if remount.returncode != 0:
        pytest.skip(f"cannot remount read-only: {remount.stderr.strip()}")
    before = tree(data)
    result = invoke(data, *(BENCH if stage == "bench" else features_args(clip_weights)))
    assert result.exit_code == OS_ERROR_EXIT, (result.stderr, result.exception)
    one_line(result, str(data), "read-only file system", "writable --data-dir")
    assert tree(data) == before


def test_missing_root_is_one_line_naming_prepare(invoke, tmp_path):
    result = invoke(tmp_path / "nowhere", *BENCH)
    assert result.exit_code == 2
    one_line(result, str(tmp_path / "nowhere"), "gill-eval prepare")


def test_root_that_is_a_file_is_one_line(invoke, tmp_path, cc3m_tsv):
    root = tmp_path / "root-file"
    root.write_text("not a folder")
    result = invoke(root, "prepare", "cc3m", "--tsv", str(cc3m_tsv), "--split", "val")
    assert result.exit_code == OS_ERROR_EXIT, (result.stderr, result.exception)
    one_line(result, str(root), "not a directory", "choose another --data-dir")
    assert root.read_text() == "not a folder"
