"""``gill-eval bench status``: for each generation folder, the units done and missing per shard, and what
is left to score.

A generation run split over Slurm array tasks or torchrun ranks (docs: README, "Generation across
machines") writes one folder per (benchmark, model, context); each unit's done marker records the worker
(``i/N``) that made it. This module rebuilds the folder's plan from its provenance and the prepared data
(as ``bench score`` does), assigns every unit to its shard with the workers' own rule (unit index modulo
N), and looks for results scored from the folder. It reads only: safe to run from any node while the
workers run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gill_eval.bench.generation import limit_suffix, limited, plan_for, read_provenance
from gill_eval.bench.results import RESULT_FILE, results_root
from gill_eval.errors import ConfigError, InputError
from gill_eval.store import ShardSpec, WorkPlan, data_root
from gill_eval.store.work import DONE_DIR

_UNIT = re.compile(r"^seed(-?\d+)-block\d+$")


def generation_dirs() -> list[Path]:
    """Every generation folder under the data root (``generations/<benchmark>/<model>/<context>-<data>``)."""
    return sorted(p.parent for p in (data_root() / "generations").glob("*/*/*/provenance.json"))


def recorded_seeds(gen_dir: Path) -> list[int]:
    """The run's seeds as the workers recorded them in their done markers (every seed of their
    ``--seeds``), else the seeds some unit was finished for (markers of older versions)."""
    run_seeds: set[int] = set()
    unit_seeds: set[int] = set()
    for path in (gen_dir / DONE_DIR).glob("*.json"):
        if match := _UNIT.match(path.stem):
            unit_seeds.add(int(match.group(1)))
        try:
            run_seeds.update(json.loads(path.read_text(encoding="utf-8")).get("run_seeds", []))
        except (OSError, ValueError, AttributeError):
            continue
    return sorted(run_seeds or unit_seeds)


def _worker_count(plan: WorkPlan) -> int:
    """N of the ``i/N`` the done markers record (the largest one seen), 1 when none is done."""
    counts = [1]
    for unit in plan.units:
        if plan.is_done(unit):
            try:
                counts.append(ShardSpec.parse(str(plan.done_info(unit).get("worker", "0/1"))).count)
            except (ConfigError, OSError, ValueError):
                continue
    return max(counts)


def _scored(gen_dir: Path, benchmark: str, fingerprint_hash: str, context: str) -> list[dict[str, Any]]:
    """Results scored from this folder: their seeds, scorer preset and folder."""
    found = []
    for path in sorted((results_root() / benchmark / fingerprint_hash).glob(f"{context}-*/{RESULT_FILE}")):
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        generated = result.get("generation", {}).get("dir")
        if generated is not None and Path(generated).resolve() == gen_dir.resolve():
            found.append({"seeds": result.get("seeds", []), "scorers": result.get("scorers", {}).get("preset"),
                          "result": str(path.parent)})
    return found


def folder_status(
    gen_dir: Path, make_bench: Callable[[str, int | None], Any], seeds: Sequence[int] | None = None,
    shards: int | None = None,
) -> dict[str, Any]:
    """One folder's status: units done/missing overall and per shard of ``shards`` (default: the N the
    workers recorded), for ``seeds`` (default: the seeds the workers recorded), and its scoring."""
    gen_dir = Path(gen_dir)
    prov = read_provenance(gen_dir)
    bench = make_bench(prov["benchmark"], prov.get("protocol", {}).get("num"))
    limit = prov.get("protocol", {}).get("limit")  # a --limit N run: its first N examples
    job = limited(bench.job(prov["context"]), limit)
    if job.data_hash != prov["data_hash"]:
        raise InputError(f"{gen_dir}: generated from another version of dataset {bench.dataset.name}")
    chosen = list(seeds) if seeds else recorded_seeds(gen_dir)
    plan = plan_for(job, gen_dir, chosen)
    count = shards or _worker_count(plan)
    if count < 1:
        raise ConfigError(f"--shards {count}: must be at least 1")
    per_shard = []
    for index in range(count):
        owned = [u for u in plan.units if ShardSpec(index, count).owns(u.index)]
        missing = [u.uid for u in owned if not plan.is_done(u)]
        per_shard.append({"shard": f"{index}/{count}", "units": len(owned), "done": len(owned) - len(missing),
                          "missing": len(missing), "missing_units": missing})
    done = sum(s["done"] for s in per_shard)
    complete = bool(plan.units) and done == len(plan.units)
    scored = _scored(gen_dir, prov["benchmark"], prov["model_fingerprint_hash"], prov["context"] + limit_suffix(limit))
    to_score = complete and not any(sorted(r["seeds"]) == sorted(chosen) for r in scored)
    seeds_arg = ",".join(map(str, chosen))
    if not plan.units:
        next_step = "no seeds: nothing is done yet; pass --seeds"
    elif not complete:
        waiting = [s["shard"] for s in per_shard if s["missing"]]
        next_step = f"waiting for {len(plan.units) - done} unit(s) of shard(s) {', '.join(waiting)}"
    elif to_score:
        next_step = f"ready: gill-eval bench score {gen_dir} --seeds {seeds_arg}"
    else:
        next_step = "scored"
    return {"dir": str(gen_dir), "benchmark": prov["benchmark"], "model": prov["model"]["name"],
            "model_fingerprint_hash": prov["model_fingerprint_hash"], "context": prov["context"], "seeds": chosen,
            "units": len(plan.units), "done": done, "missing": len(plan.units) - done, "shards": per_shard,
            "complete": complete, "scored": scored, "to_score": to_score, "next": next_step}
