"""Text-answer benchmarks (Table 7: ``coco-caption``, ``vqav2``): a resumable answer stage, then scoring.

An answerer is a model with the ``text`` capability or one of the benchmark's baselines. Answers are
written per unit of work (``UNIT`` examples of one seed) under
``generations/<benchmark>/<answerer fingerprint>/<context>-<data hash>-<protocol hash>[-limitN]/`` as
Parquet rows (example_id, seed, answer), with done markers, so a killed run resumes where it stopped and
gives the same answers. Scoring reads every unit and writes ``result.json`` + ``scores.parquet`` like every
other benchmark, plus ``answers.parquet`` for the gallery.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from gill_eval.bench.generation import limit_suffix
from gill_eval.bench.provenance import run_metadata
from gill_eval.bench.results import result_dir, short_hash, write_result
from gill_eval.console import info, make_progress
from gill_eval.errors import ConfigError
from gill_eval.models.base import TEXT, Context, Model, example_seed
from gill_eval.store import ShardSpec, UnitOfWork, WorkPlan, data_root, iter_rows, write_shard

UNIT = 8
ANSWERS_FILE = "answers.parquet"
ANSWER_SCHEMA = pa.schema([("example_id", pa.string()), ("seed", pa.int64()), ("answer", pa.string())])


@dataclass
class Answerer:
    """What answers: a text model, or a baseline (``answer(rows, seeds)``) with its own fingerprint."""

    name: str
    fingerprint: dict[str, Any]
    answer: Callable[[list[dict[str, Any]], list[Context], list[int]], list[str]]
    supported: bool = True
    reason: str = ""

    @property
    def fingerprint_hash(self) -> str:
        return short_hash(self.fingerprint) + short_hash(self.name)[:6]

    @classmethod
    def from_model(cls, model: Model, max_new_tokens: int) -> Answerer:
        def answer(rows: list[dict[str, Any]], contexts: list[Context], seeds: list[int]) -> list[str]:
            return model.generate_text(contexts, seeds, max_new_tokens)

        return cls(model.name, model.fingerprint(), answer, model.can(TEXT),
                   "" if model.can(TEXT) else f"{model.name} does not answer in text")


@dataclass
class TextBenchmark:
    """The shared stage of the text benchmarks; subclasses give examples, contexts and scoring."""

    limit: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    scorers: Any = None  # ``bench.scorers.Scorers`` (set by ``api.run_text``), for baselines that embed with CLIP
    name = "text"
    table = "table7"
    kind = TEXT
    context_label = "text"

    # ------------------------------------------------------------------ provided by each benchmark
    def examples(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def contexts(self, rows: list[dict[str, Any]]) -> list[Context]:
        raise NotImplementedError

    def data_info(self) -> dict[str, Any]:
        raise NotImplementedError

    def score(self, rows: list[dict[str, Any]], answers: pd.DataFrame) -> tuple[dict[str, Any], pd.DataFrame]:
        raise NotImplementedError

    def baselines(self) -> dict[str, Callable[[], Answerer]]:
        return {}

    def protocol(self) -> dict[str, Any]:
        """What the answerer receives (prompt, token budget, post-processing): keys the answer folder."""
        return dict(self.options)

    # ------------------------------------------------------------------------------ the stage
    def selected(self) -> list[dict[str, Any]]:
        rows = self.examples()
        return rows[: self.limit] if self.limit else rows

    def plan(self, answerer: Answerer, seeds: Sequence[int]) -> WorkPlan:
        data = self.data_info()
        out = (data_root() / "generations" / self.name / answerer.fingerprint_hash
               / f"{self.context_label}-{data['manifest_hash'][:12]}-{short_hash(self.protocol())}{limit_suffix(self.limit)}")
        ids = [r["key"] for r in self.selected()]
        units: list[UnitOfWork] = []
        for seed in seeds:
            for b, start in enumerate(range(0, len(ids), UNIT)):
                units.append(UnitOfWork(f"s{seed}-{b:05d}", len(units), {"seed": seed, "ids": ids[start:start + UNIT]}))
        return WorkPlan(out, units)

    def answer_all(self, answerer: Answerer, seeds: Sequence[int], shard: ShardSpec | None = None) -> WorkPlan:
        plan = self.plan(answerer, seeds)
        by_key = {r["key"]: r for r in self.selected()}
        pending = plan.pending(shard)
        with make_progress() as progress:
            task = progress.add_task(f"{self.name} answers", total=len(pending))
            for unit in pending:
                rows = [by_key[k] for k in unit.payload["ids"]]
                seed = unit.payload["seed"]
                answers = answerer.answer(rows, self.contexts(rows), [example_seed(seed, r["key"]) for r in rows])
                table = pa.Table.from_pydict({"example_id": [r["key"] for r in rows], "seed": [seed] * len(rows),
                                              "answer": [str(a) for a in answers]}, schema=ANSWER_SCHEMA)
                path = write_shard(table, plan.out_dir / f"{unit.uid}.parquet")
                plan.mark_done(unit, {"rows": len(rows)}, [path])
                progress.advance(task)
        return plan

    def load_answers(self, plan: WorkPlan) -> pd.DataFrame:
        rows = [row for unit in plan.units for row in iter_rows([plan.out_dir / f"{unit.uid}.parquet"])]
        return pd.DataFrame(rows, columns=["example_id", "seed", "answer"])

    def resolve(self, model: str, model_options: dict[str, Any] | None) -> Answerer:
        """The answerer named ``model``: a baseline of this benchmark, else a registered model."""
        from gill_eval.models.registry import load_model, model_class

        made = self.baselines().get(model)
        if made is not None:
            if model_options:
                raise ConfigError(f"baseline {model!r} takes no --model-opt")
            return made()
        if not model_class(model).can(TEXT):  # recorded as "-" in Table 7, without loading any weights
            return Answerer(model, {"name": model}, lambda rows, contexts, seeds: [], False,
                            f"{model} does not answer in text")
        return Answerer.from_model(load_model(model, model_options or {}), int(self.options["max_new_tokens"]))

    def run(self, answerer: Answerer, seeds: Sequence[int], shard: ShardSpec | None, scorer_note: dict[str, Any],
            label: str | None = None) -> dict[str, Any] | None:
        """Answer what is missing, then score every example and write the result."""
        block = {"name": answerer.name, "label": label or answerer.name, "fingerprint": answerer.fingerprint,
                 "fingerprint_hash": answerer.fingerprint_hash}
        data = self.data_info()
        rows = self.selected()
        result: dict[str, Any] = {"benchmark": self.name, "table": self.table, "context": self.context_label,
                                  "model": block, "seeds": list(seeds), "data": data, "scorers": scorer_note,
                                  "meaningless": bool(scorer_note.get("meaningless")), "run": run_metadata(),
                                  "n_expected": len(rows) * len(seeds), "limit": self.limit}
        folder = result_dir(self.name, answerer.fingerprint_hash, self.context_label + limit_suffix(self.limit),
                            {**scorer_note, "protocol": self.protocol()})
        if not answerer.supported:
            result.update(status="unsupported", reason=answerer.reason)
            write_result(folder, result, None)
            return {**result, "_dir": str(folder)}
        plan = self.answer_all(answerer, seeds, shard)
        if not plan.all_done():
            info(f"{self.name}: units pending in other workers; rerun without --shard to score")
            return None
        answers = self.load_answers(plan)
        metrics, scores = self.score(rows, answers)
        result.update(status="ok", metrics=metrics, failures={"count": 0, "first_error": None},
                      protocol={**self.protocol(), "seeds": list(seeds)},
                      generation={"dir": str(plan.out_dir), "units": len(plan.units)})
        write_shard(pa.Table.from_pandas(answers, schema=ANSWER_SCHEMA, preserve_index=False), folder / ANSWERS_FILE)
        write_result(folder, result, scores)
        result["_dir"] = str(folder)
        info(f"{self.name} [{block['label']}]: " + ", ".join(
            f"{m} {v['aggregate']['mean']:.4f}" for m, v in metrics.items() if v.get("aggregate")))
        return result


def read_answers(result: dict[str, Any]) -> pd.DataFrame:
    """The answers a text result was scored on (example_id, seed, answer)."""
    path = Path(result["_dir"]) / ANSWERS_FILE
    return pd.read_parquet(path) if path.is_file() else pd.DataFrame(columns=["example_id", "seed", "answer"])
