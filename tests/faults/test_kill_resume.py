"""kill -9 at a random point of prepare, features and bench, then resume: the result equals an uninterrupted
run row for row (the kill point is drawn from a seeded RNG after the first unit lands; the seed is printed)."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from faults.conftest import (BENCH, PREPARE_OPTIONS, build_image_dataset, build_vist, features_args, read_folder,
                             temporaries)

SEED = int(os.environ.get("GILL_EVAL_FAULT_SEED", "11"))


def _kill_at_random_point(proc, progressed, rng: random.Random) -> float:
    deadline = time.monotonic() + 240
    while not progressed():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "no unit finished in time"
        time.sleep(0.02)
    delay = rng.uniform(0.0, 1.0)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    return delay


@pytest.mark.parametrize("stage", ["prepare", "features", "bench"])
def test_kill_9_at_a_random_point_then_resume_equals_uninterrupted(stage, cli, server, cc3m_tsv, cc3m_root, clip_weights,
                                                                    features_root, bench_root, tmp_path):
    rng = random.Random(f"{SEED}-{stage}")
    data = tmp_path / "data"
    if stage == "prepare":
        args = ["prepare", "cc3m", "--tsv", str(cc3m_tsv), "--split", "val", *PREPARE_OPTIONS]
        reference, subs = cc3m_root, ["datasets/cc3m-val/examples", "datasets/cc3m-val/images"]
        progressed = lambda: any((data / "datasets" / "cc3m-val" / "download" / "raw").glob("*_stats.json"))  # noqa: E731
        server.slow_delay = 0.5
    elif stage == "features":
        build_image_dataset(data)
        args, reference, subs = features_args(clip_weights), features_root, ["features/clip/imgs"]
        progressed = lambda: any((data / "features" / "clip" / "imgs" / "_done").glob("*.json"))  # noqa: E731
    else:
        build_vist(data)
        args, reference = BENCH, bench_root
        subs = [str(p.relative_to(bench_root)) for p in bench_root.glob("generations/vist/*/1c-*")]
        progressed = lambda: any(data.glob("generations/vist/*/1c-*/_done/*.json"))  # noqa: E731
    try:
        delay = _kill_at_random_point(cli.start(data, *args), progressed, rng)
    finally:
        server.slow_delay = 0.0
    print(f"{stage}: killed {delay:.3f} s after the first unit (GILL_EVAL_FAULT_SEED={SEED})")
    resumed = cli.run(data, *args)
    assert resumed.returncode == 0, resumed.stderr
    assert not temporaries(data)
    for sub in subs:
        assert read_folder(data / sub).equals(read_folder(reference / sub)), sub
    if stage == "bench":
        [want] = list(bench_root.glob("results/**/scores.parquet"))
        [got] = list(data.glob("results/**/scores.parquet"))
        assert pq.read_table(got).equals(pq.read_table(want))
