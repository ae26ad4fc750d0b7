"""VQA accuracy as the official evaluation computes it (GT-Vision-Lab/VQA, ``vqaEval.py``, current commit).

Per question: the model's answer is normalised (newlines and tabs to spaces, stripped, then punctuation,
then digits / articles / contractions); the ten human answers are normalised for punctuation only, and only
when the humans disagree; the score is the mean over the ten leave-one-out subsets of nine humans of
``min(#humans in the subset who gave the answer / 3, 1)``. Quirks kept on purpose (docs/protocols.md,
"VQAv2"): human answers never get the digit/article/contraction step; the period rule removes every period
not followed by a digit (its look-behind is written as a look-ahead) and at most 32 of them (``re.UNICODE``
passed as the count); a punctuation mark is deleted, not replaced by a space, when any mark in the text
touches a space or the text holds a digit-comma-digit group; contraction keys with capitals never match.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

#: Marks the official code removes or turns into spaces (apostrophe and colon are not among them).
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",",
               "?", "!")
NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = frozenset({"a", "an", "the"})
#: Apostrophe-less spellings and their official replacement (the table of vqaEval.py).
CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's",
    "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's",
    "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd", "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've", "somebodyll": "somebody'll", "somebodys": "somebody's",
    "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas",
    "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't",
    "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}
_PERIOD = re.compile(r"\.(?!\d)")
_MAX_PERIODS = 32  # the official call passes re.UNICODE (32) where re.sub takes its count
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")


def strip_punctuation(text: str) -> str:
    """The official punctuation step: each mark deleted or spaced (see the module doc), then periods."""
    delete_all = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for mark in PUNCTUATION:
        touches_space = f"{mark} " in text or f" {mark}" in text
        out = out.replace(mark, "" if touches_space or delete_all else " ")
    return _PERIOD.sub("", out, count=_MAX_PERIODS)


def normalize_words(text: str) -> str:
    """The official digit/article/contraction step: lower-cased words, number words to digits, articles
    dropped, apostrophe-less contractions restored, joined by single spaces."""
    words = [NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    return " ".join(CONTRACTIONS.get(word, word) for word in words if word not in ARTICLES)


def normalize_answer(answer: str) -> str:
    """A model's answer as the official code compares it."""
    cleaned = answer.replace("\n", " ").replace("\t", " ").strip()
    return normalize_words(strip_punctuation(cleaned))


def question_accuracy(answer: str, human_answers: Sequence[str]) -> float:
    """The official per-question accuracy in [0, 1] (not rounded)."""
    if not human_answers:
        raise ValueError("a question needs at least one human answer")
    mine = normalize_answer(answer)
    humans = list(human_answers)
    if len(set(humans)) > 1:
        humans = [strip_punctuation(h) for h in humans]
    scores = []
    for left_out in range(len(humans)):
        matches = sum(1 for j, h in enumerate(humans) if j != left_out and h == mine)
        scores.append(min(1.0, matches / 3))
    return sum(scores) / len(scores)


@dataclass(frozen=True)
class VqaSummary:
    """Mean accuracy in % overall, per answer type and per question type (unrounded; the official tool
    prints each rounded to 2 decimals)."""

    overall: float
    per_answer_type: dict[str, float]
    per_question_type: dict[str, float]
    count: int


def summarize(scores: Sequence[float], answer_types: Sequence[str], question_types: Sequence[str]) -> VqaSummary:
    """Aggregate per-question accuracies (in [0, 1]) as the official ``setAccuracy`` does, in %."""
    if not scores:
        raise ValueError("no question was scored")

    def mean_by(keys: Sequence[str]) -> dict[str, float]:
        groups: dict[str, list[float]] = {}
        for key, score in zip(keys, scores, strict=True):
            groups.setdefault(key, []).append(score)
        return {key: 100.0 * sum(v) / len(v) for key, v in sorted(groups.items())}

    return VqaSummary(100.0 * sum(scores) / len(scores), mean_by(answer_types), mean_by(question_types), len(scores))
