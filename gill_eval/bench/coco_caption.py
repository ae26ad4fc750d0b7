"""MS-COCO 2017 val captioning (GILL Table 7): the model captions each image; pycocoevalcap scores the set.

Context: the image, then the prompt (default ``DEFAULT_PROMPT``, docs/protocols.md "Table 7"). The caption is
the model's answer cut before its first period when that period comes after the fifth character (FROMAGe's
``evaluate.py`` rule); BLEU-1..4, METEOR and CIDEr are corpus-level per seed (``metrics.caption``), then
mean ± std over seeds. Baseline ``clip-nn``: for each image the caption, among those of the prepared
``coco`` (2014) caption manifest whose image is another image, closest to it in CLIP space.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gill_eval.bench.data import PreparedDataset
from gill_eval.bench.text import Answerer, TextBenchmark
from gill_eval.errors import ConfigError
from gill_eval.metrics.caption import METRICS, score_caption_sets
from gill_eval.metrics.stats import over_seeds
from gill_eval.models.base import Context

NAME, DATASET, CONTEXT = "coco-caption", "coco2017", "caption"
DEFAULT_PROMPT = "A picture of"
DEFAULT_MAX_NEW_TOKENS = 32
CAPTION_SET = "coco"


def cut_caption(text: str) -> str:
    """FROMAGe's rule: cut before the first period if it comes after the fifth character."""
    stop = text.find(".")
    return (text[:stop] if stop > 5 else text).strip()


@dataclass
class CocoCaption(TextBenchmark):
    name = NAME
    context_label = CONTEXT

    def __post_init__(self) -> None:
        self.options = {"prompt": DEFAULT_PROMPT, "max_new_tokens": DEFAULT_MAX_NEW_TOKENS, **self.options}
        if set(self.options) - {"prompt", "max_new_tokens"}:
            raise ConfigError(f"{NAME}: unknown option(s) {sorted(set(self.options) - {'prompt', 'max_new_tokens'})}; "
                              "valid: prompt, max_new_tokens")
        self._data: PreparedDataset | None = None
        self._all: list[dict[str, Any]] = []
        self._rows: list[dict[str, Any]] | None = None

    @property
    def data(self) -> PreparedDataset:
        if self._data is None:
            self._data = PreparedDataset(DATASET)
        return self._data

    def protocol(self) -> dict[str, Any]:
        return {**self.options, "postprocess": "cut before the first '.' after character 5 (FROMAGe)"}

    def examples(self) -> list[dict[str, Any]]:
        if self._rows is None:
            self._all = self.data.examples()
            available = self.data.available()
            self._rows = [r for r in self._all if r["key"] in available]
        return self._rows

    def data_info(self) -> dict[str, Any]:
        rows = self.examples()
        return {"dataset": DATASET, "manifest_hash": self.data.content_hash, "examples_total": len(self._all),
                "examples_eligible": len(rows), "eligibility": "images that decoded"}

    def contexts(self, rows: list[dict[str, Any]]) -> list[Context]:
        images = self.data.images([r["key"] for r in rows])
        return [[images[r["key"]], self.options["prompt"]] for r in rows]

    def score(self, rows: list[dict[str, Any]], answers: pd.DataFrame) -> tuple[dict[str, Any], pd.DataFrame]:
        refs = {r["key"]: list(r["captions"]) for r in rows}
        sets = {int(seed): {k: cut_caption(a) for k, a in zip(group["example_id"], group["answer"], strict=True)}
                for seed, group in answers.groupby("seed", sort=True)}
        per_seed: dict[str, list[float]] = {m: [] for m in METRICS}
        frames = []
        for seed, scored in score_caption_sets(sets, refs).items():
            for metric in METRICS:
                per_seed[metric].append(scored.overall[metric])
                each = scored.per_image[metric]
                frames.append(pd.DataFrame({"example_id": list(each), "seed": seed, "metric": metric,
                                            "value": list(each.values()), "status": "success", "error_message": ""}))
        n = len(rows)
        metrics = {m: {"n_evaluated": n * len(per_seed[m]), "corpus_level": True,
                       "aggregate": over_seeds(per_seed[m], n).as_dict()} for m in METRICS}
        return metrics, pd.concat(frames, ignore_index=True)

    def baselines(self) -> dict[str, Callable[[], Answerer]]:
        return {"clip-nn": self._clip_nn}

    def _clip_nn(self) -> Answerer:
        if self.scorers is None:
            raise ConfigError("the clip-nn baseline needs the CLIP scorer (run it through `gill-eval bench`)")
        pool = PreparedDataset(CAPTION_SET)
        captions = pool.examples(["image_id", "caption"])
        texts = [c["caption"] for c in captions]
        owners = np.array([c["image_id"] for c in captions])
        text_emb = self.scorers.clip_text.embed(texts)

        def answer(rows: list[dict[str, Any]], contexts: list[Context], seeds: list[int]) -> list[str]:
            image_emb = self.scorers.clip.embed([c[0] for c in contexts])
            sims = image_emb.astype(np.float64) @ text_emb.astype(np.float64).T
            for i, row in enumerate(rows):
                sims[i, owners == row["image_id"]] = -np.inf  # never the image's own references
            return [texts[int(j)] for j in np.argmax(sims, axis=1)]

        fingerprint = {"baseline": "clip-nn", "caption_set": CAPTION_SET, "caption_set_hash": pool.content_hash,
                       "clip": self.scorers.spec.as_dict()}
        return Answerer("clip-nn", fingerprint, answer)
