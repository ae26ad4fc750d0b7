"""Truncation and deletion of every artefact kind: a reader refuses in one line naming the file and the fix,
a rerun of the stage redoes exactly the broken unit (saying so) and ends equal to an undamaged run; a
derived cache is recomputed with a warning. Commands run in-process (CliRunner) to keep the suite fast."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from faults.conftest import BENCH, PREPARE_OPTIONS, features_args, read_folder, temporaries, tree

from gill_eval.cli import app


@pytest.fixture
def invoke(cli, monkeypatch):
    monkeypatch.setenv("GILL_EVAL_CACHE", str(cli.cache))  # tiny weights built once for the session

    def run(data: Path, *args: str):
        return CliRunner().invoke(app, ["--data-dir", str(data), *args])

    return run


def one_line(result) -> str:
    assert result.exit_code not in (0, 1), (result.exit_code, result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def drop_first_row(path: Path) -> None:
    table = pq.read_table(path)
    pq.write_table(table.slice(1), path)


def gen_dir(root: Path) -> Path:
    [folder] = list(root.glob("generations/vist/*/1c-*"))
    return folder


def scores(root: Path) -> pa.Table:
    [path] = list(root.glob("results/**/scores.parquet"))
    return pq.read_table(path)


# -- datasets: checked against their manifest before bench uses them -----------------------------------


@pytest.mark.parametrize("damage", ["truncate-images", "drop-image-row", "delete-images", "empty-manifest",
                                    "delete-manifest", "extra-shard"])
def test_damaged_dataset_is_refused_by_bench_in_one_line(damage, invoke, bench_root, copy_root):
    data = copy_root(bench_root)
    folder = data / "datasets" / "vist"
    shard = folder / "images" / "00000.parquet"
    if damage == "truncate-images":
        truncate(shard)
    elif damage == "drop-image-row":  # the row-deleted shard that once gave `n 3/2`
        drop_first_row(shard)
    elif damage == "delete-images":
        shard.unlink()
    elif damage == "empty-manifest":
        (folder / "manifest.json").write_text("")
    elif damage == "delete-manifest":
        (folder / "manifest.json").unlink()
    else:
        pq.write_table(pq.read_table(shard), folder / "images" / "00001.parquet")
    before = tree(data / "generations") | tree(data / "results")
    line = one_line(invoke(data, *BENCH))
    assert str(folder) in line and "gill-eval prepare" in line, line
    assert tree(data / "generations") | tree(data / "results") == before  # nothing already written is lost


def test_broken_image_shard_is_redone_by_prepare(invoke, cc3m_tsv, cc3m_root, copy_root):
    data = copy_root(cc3m_root)
    images = data / "datasets" / "cc3m-val" / "images"
    truncate(images / "00001.parquet")
    (images / "_done" / "00002.json").write_text("")  # an empty done marker as well
    result = invoke(data, "prepare", "cc3m", "--tsv", str(cc3m_tsv), "--split", "val", *PREPARE_OPTIONS)
    assert result.exit_code == 0, result.stderr
    err = " ".join(result.stderr.split())
    assert "redoing unit 00001" in err and "redoing unit 00002" in err and "unreadable" in err
    assert read_folder(images).equals(read_folder(cc3m_root / "datasets" / "cc3m-val" / "images"))


# -- features -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncate", "delete", "empty-marker"])
def test_broken_feature_shard_is_refused_by_readers_and_redone_by_features(damage, invoke, clip_weights, features_root,
                                                                           copy_root):
    from gill_eval.errors import InputError
    from gill_eval.store.features import require_complete

    data = copy_root(features_root)
    folder = data / "features" / "clip" / "imgs"
    shard = folder / "00003.parquet"
    if damage == "truncate":
        truncate(shard)
    elif damage == "delete":
        shard.unlink()
    else:
        (folder / "_done" / "00003.json").write_text("")
    if damage != "empty-marker":
        with pytest.raises(InputError, match="00003.parquet.*gill-eval features clip"):
            require_complete(folder, "gill-eval features clip --dataset imgs")
    result = invoke(data, *features_args(clip_weights))
    assert result.exit_code == 0, result.stderr
    assert "redoing unit 00003" in " ".join(result.stderr.split())
    assert tree(folder).keys() == tree(features_root / "features" / "clip" / "imgs").keys()
    for path in sorted(folder.glob("*.parquet")):
        assert pq.read_table(path).equals(pq.read_table(features_root / "features" / "clip" / "imgs" / path.name))


# -- generations, provenance ------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncate-shard", "delete-shard", "empty-marker", "empty-provenance"])
def test_broken_generation_is_redone_by_bench(damage, invoke, bench_root, copy_root):
    data = copy_root(bench_root)
    folder = gen_dir(data)
    unit = sorted((folder / "_done").glob("*.json"))[0].stem
    if damage == "truncate-shard":
        truncate(folder / f"{unit}.parquet")
    elif damage == "delete-shard":
        (folder / f"{unit}.parquet").unlink()
    elif damage == "empty-marker":
        (folder / "_done" / f"{unit}.json").write_text("")
    else:
        (folder / "provenance.json").write_text("")
    result = invoke(data, *BENCH)
    assert result.exit_code == 0, result.stderr
    err = " ".join(result.stderr.split())
    assert (f"redoing unit {unit}" in err) if damage != "empty-provenance" else ("provenance.json: unreadable" in err)
    assert pq.read_table(folder / f"{unit}.parquet").equals(pq.read_table(gen_dir(bench_root) / f"{unit}.parquet"))
    assert scores(data).equals(scores(bench_root))
    assert not temporaries(data)


def test_empty_provenance_is_one_line_for_bench_score(invoke, bench_root, copy_root):
    data = copy_root(bench_root)
    (gen_dir(data) / "provenance.json").write_text("")
    line = one_line(invoke(data, "bench", "score", str(gen_dir(data)), "--seeds", "0-1", "--scorers", "tiny"))
    assert "provenance.json" in line


# -- derived caches ---------------------------------------------------------------------------------------


def test_truncated_fid_cache_is_recomputed_with_a_warning(capsys):
    from gill_eval.metrics import fid

    key = fid.ReferenceKey("m" * 64, "r", "e", "w" * 64)
    stats = {"mu": np.arange(3.0), "sigma": np.eye(3)}
    path = fid.store_reference(key, stats, 3)
    truncate(path, 0.6)
    assert fid.cached_reference(key) is None  # a broken derived cache reads as absent: the caller recomputes
    assert "recomputing" in capsys.readouterr().err
    fid.store_reference(key, stats, 3)
    got, meta = fid.cached_reference(key)
    assert np.array_equal(got["mu"], stats["mu"]) and meta["n"] == 3


def test_generation_rows_beyond_the_job_are_refused_not_counted(invoke, bench_root, copy_root):
    """A folder whose (consistently marked) shard holds a row the job does not expect: `n 3/2` is impossible."""
    from gill_eval.store import UnitOfWork, WorkPlan

    data = copy_root(bench_root)
    folder = gen_dir(data)
    unit = sorted((folder / "_done").glob("*.json"))[0].stem
    path = folder / f"{unit}.parquet"
    table = pq.read_table(path)
    pq.write_table(pa.concat_tables([table, table.slice(0, 1)]), path)
    WorkPlan(folder, [UnitOfWork(unit, 0)]).mark_done(UnitOfWork(unit, 0), {"rows": table.num_rows + 1}, [path])
    line = one_line(invoke(data, *BENCH))
    assert str(folder) in line and "expects" in line, line
