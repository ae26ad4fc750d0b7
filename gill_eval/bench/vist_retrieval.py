"""Contextual image retrieval on VIST (GILL Table 5), following FROMAGe's evals/eval_vist_retrieval.py,
the protocol GILL reports (docs/protocols.md, Table 5).

Candidates: every stored val photo, i.e. every photo the SIS annotations reference (accepted story or
not) that has a ``url_o`` and decoded. Eligible stories: all five photos are candidates. Query: the
model's embedding of ``c1, v1, ..., c4, v4, c5`` (how the model lays it out is its own: GILL follows
FROMAGe, see ``GILL.embed_retrieval_context``). The story's four context photos lose 10000 per occurrence,
as in FROMAGe, so a target that is also a context photo is a miss, never an error; ranks are pessimistic
(ties count against the model); recall@k is the fraction of eligible stories whose target ranks below k.
Embedding runs as a resumable stage (units of candidates and of queries); per-story ranks are saved next
to the aggregates.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from gill_eval.bench.contexts import parse_vist_context, vist_context
from gill_eval.bench.generation import limit_suffix
from gill_eval.bench.provenance import run_metadata
from gill_eval.bench.results import result_dir, write_result
from gill_eval.bench.vist import VistStories
from gill_eval.console import info, make_progress
from gill_eval.metrics.recall import apply_exclusions, excluded, pessimistic_ranks
from gill_eval.metrics.stats import aggregate
from gill_eval.models.base import RETRIEVE, Model
from gill_eval.store import ShardSpec, UnitOfWork, WorkPlan, data_root, iter_rows, write_shard

NAME, TABLE, CONTEXT = "vist-retrieval", "table5", "5c4i"
KS = (1, 5, 10)
TOPK_FILE, TOP_SHOWN = "topk.parquet", 10  # per story: the best candidates with their scores (for the gallery)
CANDIDATE_BLOCK, QUERY_BLOCK = 64, 16
_SCHEMA = pa.schema([("id", pa.string()), ("embedding", pa.list_(pa.float32())), ("truncated", pa.bool_())])


def _top_candidates(query_ids: list[str], cand_ids: list[str], scores: np.ndarray, targets: list[int],
                    ranks: np.ndarray) -> pa.Table:
    """The ``TOP_SHOWN`` highest-scoring candidates of each query (excluded ones never), with the target's rank."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :TOP_SHOWN]
    shown = [[j for j in row if not excluded(scores[i, j])] for i, row in enumerate(top)]
    return pa.Table.from_pydict({
        "example_id": query_ids, "target": [cand_ids[t] for t in targets], "rank": ranks.astype(np.int64).tolist(),
        "candidates": [[cand_ids[j] for j in row] for row in shown],
        "scores": [[float(scores[i, j]) for j in row] for i, row in enumerate(shown)]})


class VistRetrieval:
    name, table, kind = NAME, TABLE, "retrieval"

    def __init__(self, stories: VistStories | None = None, limit: int | None = None) -> None:
        self.data = stories or VistStories()
        self.dataset = self.data.dataset
        self.limit = limit  # --limit N: the first N eligible stories as queries (all candidates stay)

    @property
    def queries(self) -> list[str]:
        return self.data.complete[: self.limit] if self.limit else self.data.complete

    def candidates(self) -> list[str]:
        """Every stored photo: prepare downloads each referenced photo with a url_o, and stores it if it
        decodes, whether or not its story was accepted (FROMAGe's candidate set)."""
        return sorted(self.dataset.available())

    def coverage(self) -> dict[str, Any]:
        return {"examples_total": len(self.data.stories), "examples_eligible": len(self.data.complete),
                "eligibility": "stories whose 5 images are all candidates", "candidates": len(self.candidates())}

    def plan(self, model: Model) -> WorkPlan:
        out = (data_root() / "generations" / NAME / model.fingerprint_hash()
               / f"{CONTEXT}-{self.dataset.content_hash[:12]}{limit_suffix(self.limit)}")
        units = []
        cands, queries = self.candidates(), self.queries
        for b, start in enumerate(range(0, len(cands), CANDIDATE_BLOCK)):
            units.append(UnitOfWork(f"cand-{b:05d}", len(units), {"kind": "cand", "ids": cands[start : start + CANDIDATE_BLOCK]}))
        for b, start in enumerate(range(0, len(queries), QUERY_BLOCK)):
            units.append(UnitOfWork(f"query-{b:05d}", len(units), {"kind": "query", "ids": queries[start : start + QUERY_BLOCK]}))
        return WorkPlan(out, units)

    def _embed_unit(self, model: Model, unit: UnitOfWork) -> pa.Table:
        ids = unit.payload["ids"]
        if unit.payload["kind"] == "cand":
            images = self.dataset.images(ids)
            emb = model.embed_images([images[i] for i in ids])
            truncated = [False] * len(ids)
        else:
            spec = parse_vist_context(CONTEXT)
            keys = [self.data.stories[sid]["photo_ids"][p] for sid in ids for p in spec.image_positions]
            images = self.dataset.images(keys)
            contexts = [vist_context(spec, self.data.stories[sid]["texts"],
                                     {p: images[self.data.stories[sid]["photo_ids"][p]] for p in spec.image_positions})
                        for sid in ids]
            emb = model.embed_queries(contexts)
            truncated = list(model.last_run_stats.get("truncated", [False] * len(ids)))
        emb = np.asarray(emb, dtype=np.float32)
        return pa.Table.from_pydict({"id": ids, "embedding": list(emb), "truncated": truncated}, schema=_SCHEMA)

    def embed(self, model: Model, spec: ShardSpec | None) -> WorkPlan:
        plan = self.plan(model)
        pending = plan.pending(spec)
        with make_progress() as progress:
            task = progress.add_task("retrieval embeddings", total=len(pending))
            for unit in pending:
                path = write_shard(self._embed_unit(model, unit), plan.out_dir / f"{unit.uid}.parquet")
                plan.mark_done(unit, {"rows": len(unit.payload["ids"]), "worker": str(spec or ShardSpec())}, [path])
                progress.advance(task)
        return plan

    def _load(self, plan: WorkPlan, kind: str) -> tuple[list[str], np.ndarray, int]:
        ids, vecs, truncated = [], [], 0
        for unit in plan.units:
            if unit.payload["kind"] == kind:
                for row in iter_rows([plan.out_dir / f"{unit.uid}.parquet"]):
                    ids.append(row["id"])
                    vecs.append(row["embedding"])
                    truncated += bool(row["truncated"])
        return ids, np.asarray(vecs, dtype=np.float32), truncated

    def run(self, model: Model, spec: ShardSpec | None, scorer_note: dict, label: str | None = None) -> dict | None:
        block = {"name": model.name, "label": label or model.name, "fingerprint": model.fingerprint(),
                 "fingerprint_hash": model.fingerprint_hash()}
        result: dict[str, Any] = {"benchmark": NAME, "table": TABLE, "context": CONTEXT, "model": block, "seeds": [0],
                                  "data": {"dataset": self.dataset.name, "manifest_hash": self.dataset.content_hash,
                                           **self.coverage()},
                                  "scorers": scorer_note, "meaningless": bool(scorer_note.get("meaningless")),
                                  "run": run_metadata(), "n_expected": len(self.queries), "limit": self.limit}
        folder = result_dir(NAME, block["fingerprint_hash"], CONTEXT + limit_suffix(self.limit), scorer_note)
        if not model.can(RETRIEVE):
            result.update(status="unsupported", reason=f"{model.name} does not retrieve")
            write_result(folder, result, None)
            return {**result, "_dir": str(folder)}
        plan = self.embed(model, spec)
        if not plan.all_done():
            info(f"{NAME}: units pending in other workers; rerun without --shard to score")
            return None
        cand_ids, cand, _ = self._load(plan, "cand")
        query_ids, queries, truncated = self._load(plan, "query")
        index = {c: i for i, c in enumerate(cand_ids)}
        exclude = [[index[p] for p in self.data.stories[sid]["photo_ids"][:4]] for sid in query_ids]
        targets = [index[self.data.stories[sid]["photo_ids"][4]] for sid in query_ids]
        scores = apply_exclusions(queries.astype(np.float64) @ cand.astype(np.float64).T, exclude)
        ranks = pessimistic_ranks(scores, targets)
        write_shard(_top_candidates(query_ids, cand_ids, scores, targets, ranks), folder / TOPK_FILE)
        frames = [pd.DataFrame({"example_id": query_ids, "seed": 0, "metric": "rank", "value": ranks.astype(float),
                                "status": "success", "error_message": ""})]
        metrics = {}
        for k in KS:
            hits = pd.DataFrame({"example_id": query_ids, "seed": 0, "metric": f"R@{k}", "value": (ranks < k).astype(float) * 100,
                                 "status": "success", "error_message": ""})
            frames.append(hits)
            metrics[f"R@{k}"] = {"n_evaluated": len(hits), "aggregate": aggregate(hits[["example_id", "seed", "value"]]).as_dict()}
        result.update(status="ok", metrics=metrics, failures={"count": 0, "first_error": None},
                      protocol={"source": "FROMAGe evals/eval_vist_retrieval.py",
                                "query": "c1, v1, ..., c4, v4, c5",
                                "candidates": "every stored val photo (url_o, decoded)",
                                "exclusion": "context photos -10000 per occurrence; a target among them is a miss",
                                "ties": "pessimistic", "unit": "%", "truncated_queries": truncated,
                                "query_text_note": model.description},
                      generation={"dir": str(plan.out_dir), "units": len(plan.units)})
        write_result(folder, result, pd.concat(frames, ignore_index=True))
        result["_dir"] = str(folder)
        info(f"{NAME} [{block['label']}]: " + ", ".join(f"{m} {v['aggregate']['mean']:.1f}" for m, v in metrics.items()))
        return result
