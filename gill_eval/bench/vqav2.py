"""Zero-shot VQAv2 val (GILL Table 7): the model answers each question about its image in text.

Context: the image, then ``DEFAULT_TEMPLATE`` with the question filled in (docs/protocols.md "Table 7").
Accuracy is the official one (``metrics.vqa``): in % per question, averaged over questions and seeds,
overall and per answer type (the per-question-type means are in the result too). Baseline ``vqa-prior``:
the most frequent training answer of the question's type (``prepare vqav2 --train-annotations``), the
"per Q-type prior" of the VQA paper; a type unseen in training gets the most frequent answer overall.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from gill_eval.bench.data import PreparedDataset
from gill_eval.bench.text import Answerer, TextBenchmark
from gill_eval.errors import ConfigError, InputError
from gill_eval.metrics.stats import aggregate
from gill_eval.metrics.vqa import question_accuracy, summarize
from gill_eval.models.base import Context
from gill_eval.store import iter_rows, list_shards

NAME, DATASET, IMAGES, CONTEXT = "vqav2", "vqav2", "coco", "vqa"
DEFAULT_TEMPLATE = "Q: {question} A:"
DEFAULT_MAX_NEW_TOKENS = 10
ANSWER_TYPES = ("yes/no", "number", "other")
OVERALL = "vqa_accuracy"


def answer_type_metric(answer_type: str) -> str:
    return f"vqa_{answer_type}"


@dataclass
class VQAv2(TextBenchmark):
    name = NAME
    context_label = CONTEXT

    def __post_init__(self) -> None:
        self.options = {"template": DEFAULT_TEMPLATE, "max_new_tokens": DEFAULT_MAX_NEW_TOKENS, **self.options}
        if set(self.options) - {"template", "max_new_tokens"}:
            raise ConfigError(f"{NAME}: unknown option(s) {sorted(set(self.options) - {'template', 'max_new_tokens'})}; "
                              "valid: template, max_new_tokens")
        if "{question}" not in self.options["template"]:
            raise ConfigError(f"{NAME}: template {self.options['template']!r} must contain {{question}}")
        self._data: PreparedDataset | None = None
        self._images: PreparedDataset | None = None
        self._all: list[dict[str, Any]] = []
        self._rows: list[dict[str, Any]] | None = None

    @property
    def data(self) -> PreparedDataset:
        if self._data is None:
            self._data = PreparedDataset(DATASET)
            self._images = PreparedDataset(IMAGES)
        return self._data

    @property
    def images(self) -> PreparedDataset:
        _ = self.data
        assert self._images is not None
        return self._images

    def examples(self) -> list[dict[str, Any]]:
        if self._rows is None:
            self._all = self.data.examples()
            available = self.images.available()
            self._rows = [r for r in self._all if r["image_key"] in available]
        return self._rows

    def data_info(self) -> dict[str, Any]:
        rows = self.examples()
        return {"dataset": DATASET, "manifest_hash": self.data.content_hash, "images_manifest_hash": self.images.content_hash,
                "examples_total": len(self._all), "examples_eligible": len(rows),
                "eligibility": "questions whose COCO val2014 image decoded"}

    def contexts(self, rows: list[dict[str, Any]]) -> list[Context]:
        images = self.images.images({r["image_key"] for r in rows})
        return [[images[r["image_key"]], self.options["template"].format(question=r["question"])] for r in rows]

    def score(self, rows: list[dict[str, Any]], answers: pd.DataFrame) -> tuple[dict[str, Any], pd.DataFrame]:
        by_key = {r["key"]: r for r in rows}
        records = []
        for key, seed, answer in zip(answers["example_id"], answers["seed"], answers["answer"], strict=True):
            row = by_key[key]
            value = 100.0 * question_accuracy(answer, row["answers"])
            records.append({"example_id": key, "seed": int(seed), "value": value, "answer_type": row["answer_type"],
                            "question_type": row["question_type"]})
        frame = pd.DataFrame(records)
        metrics: dict[str, Any] = {}
        groups = [(OVERALL, frame)] + [(answer_type_metric(t), frame[frame["answer_type"] == t]) for t in ANSWER_TYPES]
        scores = []
        for metric, part in groups:
            if part.empty:
                continue
            metrics[metric] = {"n_evaluated": len(part),
                               "aggregate": aggregate(part[["example_id", "seed", "value"]]).as_dict()}
            if metric != OVERALL:
                metrics[metric]["n_expected"] = len(part)  # the questions of that answer type
            scores.append(part.assign(metric=metric, status="success", error_message="")[
                ["example_id", "seed", "metric", "value", "status", "error_message"]])
        summary = summarize(list(frame["value"] / 100.0), list(frame["answer_type"]), list(frame["question_type"]))
        metrics[OVERALL]["per_question_type"] = summary.per_question_type
        return metrics, pd.concat(scores, ignore_index=True)

    def baselines(self) -> dict[str, Callable[[], Answerer]]:
        return {"vqa-prior": self._prior}

    def _prior(self) -> Answerer:
        shards = list_shards(self.data.folder / "prior")
        if not shards:
            raise InputError(f"{self.data.folder}: no question-type prior; rerun `gill-eval prepare vqav2` with "
                             "--train-annotations v2_mscoco_train2014_annotations.json")
        prior = {row["question_type"]: (row["answer"], row["count"]) for row in iter_rows(shards)}
        fallback = max(prior.values(), key=lambda v: (v[1], v[0]))[0]

        def answer(rows: list[dict[str, Any]], contexts: list[Context], seeds: list[int]) -> list[str]:
            return [prior.get(r["question_type"], (fallback, 0))[0] for r in rows]

        return Answerer("vqa-prior", {"baseline": "vqa-prior", "prior_of": self.data.content_hash}, answer)
