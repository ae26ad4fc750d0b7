"""COCO caption metrics with ``pycocoevalcap`` (the Python 3 port of the COCO caption evaluation code).

Captions and references go through its PTB tokenizer (Stanford CoreNLP's, run with Java), then BLEU-1..4,
METEOR 1.5 (Java) and CIDEr-D score the whole set at once: BLEU and METEOR are corpus-level and CIDEr's
document frequencies come from the references scored together, so scores of parts cannot be averaged.
SPICE is left out (it downloads Stanford CoreNLP models on first use, so it cannot run offline).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gill_eval.errors import ConfigError

METRICS = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "cider")


@dataclass(frozen=True)
class CaptionScores:
    """Corpus-level scores (``overall``) and per-image ones (``per_image``: metric -> image id -> score)."""

    overall: dict[str, float]
    per_image: dict[str, dict[str, float]]


def require_java() -> None:
    """The PTB tokenizer and METEOR run Java: a one-line error naming the fix when it is missing."""
    if shutil.which("java") is None:
        raise ConfigError("captioning metrics need Java (pycocoevalcap's PTB tokenizer and METEOR): "
                          "install a JRE, e.g. `apt-get install openjdk-17-jre-headless`")


def score_captions(candidates: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> CaptionScores:
    """BLEU-1..4, METEOR and CIDEr of one caption per image against that image's references."""
    return score_caption_sets({0: candidates}, references)[0]


def score_caption_sets(sets: Mapping[int, Mapping[str, str]],
                       references: Mapping[str, Sequence[str]]) -> dict[int, CaptionScores]:
    """``score_captions`` of several caption sets (one per seed) over the same images: each set is scored on
    its own, but the Java tokenizer runs once per side and one METEOR process serves every set."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    require_java()
    keys = sorted({k for candidates in sets.values() for k in candidates})
    if not keys:
        raise ValueError("no caption to score")
    missing = [k for k in keys if not references.get(k)]
    if missing:
        raise ValueError(f"image {missing[0]} has a caption but no reference captions")
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({k: [{"caption": ref} for ref in references[k]] for k in keys})
    tagged = tokenizer.tokenize({f"{tag}\t{k}": [{"caption": c}] for tag, cands in sets.items() for k, c in cands.items()})
    meteor = Meteor()
    out: dict[int, CaptionScores] = {}
    for tag, candidates in sets.items():
        mine = sorted(candidates)
        res = {k: tagged[f"{tag}\t{k}"] for k in mine}
        refs = {k: gts[k] for k in mine}
        overall: dict[str, float] = {}
        per_image: dict[str, dict[str, float]] = {}
        bleu, bleu_each = Bleu(4).compute_score(refs, res, verbose=0)
        for n in range(4):
            overall[f"bleu{n + 1}"] = float(bleu[n])
            per_image[f"bleu{n + 1}"] = dict(zip(mine, map(float, bleu_each[n]), strict=True))
        for name, scorer in (("meteor", meteor), ("cider", Cider())):
            value, each = scorer.compute_score(refs, res)
            overall[name], per_image[name] = float(value), dict(zip(mine, map(float, each), strict=True))
        out[tag] = CaptionScores(overall, per_image)
    return out
