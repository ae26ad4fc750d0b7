"""One entry point for running a benchmark from the CLI, a pipeline file or the quickstart."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from gill_eval.bench.caption_fid import CONTEXT as FID_CONTEXT
from gill_eval.bench.caption_fid import cc3m_fid, coco_fid
from gill_eval.bench.runner import REFERENCE_PROTOCOLS, RunOptions, run_benchmark, score_generation_dir
from gill_eval.bench.scorers import Scorers, ScorerSpec
from gill_eval.bench.vist import VistBenchmark
from gill_eval.bench.visdial import VisDialBenchmark, rounds_label
from gill_eval.bench.vist_retrieval import VistRetrieval
from gill_eval.errors import ConfigError
from gill_eval.models.registry import load_model, model_class, option_types

BENCHMARKS = ("vist", "visdial", "coco-fid", "cc3m-fid", "vist-retrieval")


def make_benchmark(name: str, num: int | None = None) -> Any:
    if name == "vist":
        return VistBenchmark()
    if name == "visdial":
        return VisDialBenchmark()
    if name == "coco-fid":
        return coco_fid(num)
    if name == "cc3m-fid":
        return cc3m_fid(num)
    if name == "vist-retrieval":
        return VistRetrieval()
    raise ConfigError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")


def default_contexts(benchmark: str) -> list[str]:
    return {"vist": ["1c", "5c", "5c4i"], "visdial": [rounds_label(r) for r in (1, 5, 10)],
            "coco-fid": [FID_CONTEXT], "cc3m-fid": [FID_CONTEXT], "vist-retrieval": ["5c4i"]}[benchmark]


def model_options_for(benchmark: str, model: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """FID benchmarks default to the paper's FID sampler (guidance 3.0, 250 DDIM) where a model has a preset."""
    opts = dict(options)
    if benchmark in ("coco-fid", "cc3m-fid") and "preset" not in opts and "preset" in option_types(model_class(model).Options):
        opts["preset"] = "fid"
    return opts


def _bind_local_gpu() -> None:
    """Under torchrun / accelerate, make "cuda" mean this rank's GPU (LOCAL_RANK), not every rank on GPU 0."""
    local = os.environ.get("LOCAL_RANK")
    if local is not None and torch.cuda.is_available():
        torch.cuda.set_device(int(local) % torch.cuda.device_count())


def run(
    benchmark: str,
    model: str,
    model_options: Mapping[str, Any] | None = None,
    contexts: Sequence[str] | None = None,
    seeds: Sequence[int] = (0,),
    *,
    shard: Any = None,
    batch_size: int = 8,
    scorer: ScorerSpec | None = None,
    reference: str = "gill",
    label: str | None = None,
    num: int | None = None,
    fid_bootstrap: int = 50,
) -> list[dict[str, Any] | None]:
    """Generate (what is missing) and score ``model`` on ``benchmark`` for each context; results in order."""
    if reference not in REFERENCE_PROTOCOLS:
        raise ConfigError(f"--reference {reference!r}: expected one of {', '.join(REFERENCE_PROTOCOLS)}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size}: must be at least 1")
    _bind_local_gpu()
    bench = make_benchmark(benchmark, num)
    loaded = load_model(model, model_options_for(benchmark, model, model_options or {}))
    scorers = Scorers(scorer or ScorerSpec())
    if benchmark == "vist-retrieval":
        note = {"preset": scorers.spec.preset, "meaningless": scorers.spec.meaningless or model.startswith("tiny")}
        return [bench.run(loaded, shard, note, label)]
    opts = RunOptions(tuple(seeds), shard, batch_size, reference, fid_bootstrap)
    return [run_benchmark(bench, loaded, ctx, opts, scorers, label) for ctx in (contexts or default_contexts(benchmark))]


def rescore(gen_dir: Path, seeds: Sequence[int], scorer: ScorerSpec | None = None, reference: str = "gill",
            label: str | None = None, num: int | None = None, fid_bootstrap: int = 50) -> dict[str, Any]:
    """``bench score``: score an existing generation folder again without the model."""
    opts = RunOptions(tuple(seeds), None, 1, reference, fid_bootstrap)
    return score_generation_dir(gen_dir, lambda name, recorded: make_benchmark(name, num if num is not None else recorded), opts, Scorers(scorer or ScorerSpec()), label)
