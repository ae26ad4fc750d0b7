"""One entry point for running a benchmark from the CLI, a pipeline file or the quickstart."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from gill_eval.bench.registry import RETRIEVAL, TEXT, benchmark as benchmark_spec
from gill_eval.bench.runner import RunOptions, run_benchmark, score_generation_dir
from gill_eval.bench.scorers import Scorers, ScorerSpec
from gill_eval.errors import ConfigError
from gill_eval.models.base import RETRIEVE
from gill_eval.models.registry import load_model, model_class
from gill_eval.models.sampler import SamplerOptions
from gill_eval.models.weights import require_staged
from gill_eval.store.work import distributed_barrier, distributed_rank, launched_ranks

def make_benchmark(name: str, num: int | None = None) -> Any:
    """The benchmark object registered as ``name`` (``num``: the FID caption count; None elsewhere)."""
    return benchmark_spec(name).build(num)


def default_contexts(benchmark: str) -> list[str]:
    """The contexts ``benchmark`` runs when none are given (the paper's columns)."""
    return benchmark_spec(benchmark).contexts


def model_options_for(benchmark: str, model: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """A benchmark that declares a ``sampler_preset`` (the FID ones: guidance 3.0 and 250 DDIM steps) gives
    it to every model whose images come from SD (its options inherit ``SamplerOptions``), unless ``preset``
    is given (docs/protocols.md, sampler)."""
    opts = dict(options)
    preset = benchmark_spec(benchmark).sampler_preset
    if preset and "preset" not in opts and issubclass(model_class(model).Options, SamplerOptions):
        opts["preset"] = preset
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
    label: str | None = None,
    num: int | None = None,
    limit: int | None = None,
    bench_options: Mapping[str, Any] | None = None,
) -> list[dict[str, Any] | None]:
    """Generate (what is missing) and score ``model`` on ``benchmark`` for each context; results in order.

    ``limit``: only the first N examples in the benchmark's fixed order (a partial run, recorded as such).
    ``bench_options``: a text benchmark's prompt options (``run_text``)."""
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit {limit}: must be at least 1")
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size}: must be at least 1")
    _bind_local_gpu()
    if benchmark_spec(benchmark).kind == TEXT:
        return [run_text(benchmark, model, model_options, seeds, shard=shard, batch_size=batch_size, scorer=scorer,
                         label=label, limit=limit, bench_options=bench_options)]
    bench = make_benchmark(benchmark, num)
    scorers = Scorers(scorer or ScorerSpec())
    require_staged(scorers.spec.required_weights(bench.kind))  # offline: fail before the model loads or generates
    loaded = load_model(model, model_options_for(benchmark, model, model_options or {}))
    if benchmark_spec(benchmark).kind == RETRIEVAL:
        bench.limit = limit
        note = {"preset": scorers.spec.preset, "meaningless": scorers.spec.meaningless or model.startswith("tiny")}
        if launched_ranks():
            if loaded.can(RETRIEVE):
                bench.embed(loaded, shard)
            if not _rank_zero_once_all_ranks_are_done():
                return [None]
        return [bench.run(loaded, shard, note, label)]
    opts = RunOptions(tuple(seeds), shard, batch_size, limit=limit)
    labels = list(contexts or default_contexts(benchmark))
    if launched_ranks():
        for ctx in labels:
            run_benchmark(bench, loaded, ctx, opts, scorers, label, score=False)
        if not _rank_zero_once_all_ranks_are_done():
            return [None for _ in labels]
    return [run_benchmark(bench, loaded, ctx, opts, scorers, label) for ctx in labels]


def run_text(benchmark: str, model: str, model_options: Mapping[str, Any] | None = None, seeds: Sequence[int] = (0,),
             *, shard: Any = None, batch_size: int = 8, scorer: ScorerSpec | None = None, label: str | None = None,
             limit: int | None = None, bench_options: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """A text benchmark (Table 7): ``model`` is a registered model with the text capability or one of the
    benchmark's baselines; ``bench_options`` its prompt options (docs/protocols.md, Table 7)."""
    bench = benchmark_spec(benchmark).build(None)
    bench.options = {**bench.options, **(bench_options or {})}
    bench.__post_init__()  # re-validates the merged options
    bench.limit = limit
    scorers = Scorers(scorer or ScorerSpec())
    bench.scorers = scorers
    opts = dict(model_options or {})
    if model not in bench.baselines() and "batch_size" not in opts and "batch_size" in _option_names(model):
        opts["batch_size"] = batch_size
    answerer = bench.resolve(model, opts)
    note = {"preset": scorers.spec.preset, "meaningless": scorers.spec.meaningless or model.startswith("tiny")}
    return bench.run(answerer, list(seeds), shard, note, label)


def _option_names(model: str) -> set[str]:
    import dataclasses

    return {f.name for f in dataclasses.fields(model_class(model).Options)}


def _rank_zero_once_all_ranks_are_done() -> bool:
    """Under torchrun/accelerate, after every rank generated its units: wait for all, then True on rank 0
    only, which scores (nothing is left to generate by then); the other ranks report "pending"."""
    distributed_barrier()
    return distributed_rank()[0] == 0


def status(gen_dirs: Sequence[Path] | None = None, seeds: Sequence[int] | None = None,
           shards: int | None = None) -> list[dict[str, Any]]:
    """``bench status``: units done and missing per shard, and what is left to score, per generation folder
    (default: every folder under the data root)."""
    from gill_eval.bench.status import folder_status, generation_dirs

    return [folder_status(Path(d), make_benchmark, seeds, shards) for d in (gen_dirs or generation_dirs())]


def rescore(gen_dir: Path, seeds: Sequence[int], scorer: ScorerSpec | None = None, label: str | None = None,
            num: int | None = None) -> dict[str, Any]:
    """``bench score``: score an existing generation folder again without the model."""
    opts = RunOptions(tuple(seeds), None, 1)
    return score_generation_dir(gen_dir, lambda name, recorded: make_benchmark(name, num if num is not None else recorded), opts, Scorers(scorer or ScorerSpec()), label)
