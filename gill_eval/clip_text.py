"""The text clean-up GILL's environment applied before CLIP's BPE, for SD prompts and SD text targets.

GILL ran transformers 4.30 without ftfy (its requirements do not list it). There, the slow
``CLIPTokenizer`` cleans text with BERT's basic tokenizer before BPE: control characters dropped,
whitespace to spaces, spaces around CJK ideographs, lower case, accents stripped (NFD, combining marks
removed), and every punctuation character split off as its own word. So "san francisco's" reaches BPE
as ``san francisco ' s`` (4 tokens), where transformers 5's tokenizer keeps CLIP's ``'s`` contraction, and
"café" becomes "cafe". ``gill_clip_text`` applies that clean-up, after which transformers 5's tokenizer
gives the ids of GILL's run (``tests/test_parity_official_env.py`` checks every PartiPrompts prompt against
ids computed under transformers 4.30.2; docs/protocols.md, "Environments"). Pure Python, no dependencies.
"""

from __future__ import annotations

import unicodedata

TEXT_CLEANUPS = ("gill", "none")
"""``gill``: GILL's environment (the default); ``none``: the installed tokenizer's own clean-up."""


def _is_control(ch: str) -> bool:
    return ch not in "\t\n\r" and unicodedata.category(ch).startswith("C")


def _is_whitespace(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_cjk(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF),
                                             (0x2A700, 0x2B73F), (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF),
                                             (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)))


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    return 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126 or unicodedata.category(ch).startswith("P")


def _words(text: str) -> list[str]:
    """Clean, separate CJK ideographs, split on whitespace."""
    out = []
    for ch in text:
        if ch in "\x00\ufffd" or _is_control(ch):
            continue
        out.append(" " if _is_whitespace(ch) else f" {ch} " if _is_cjk(ord(ch)) else ch)
    return "".join(out).split()


def _split_punctuation(word: str) -> list[str]:
    pieces: list[str] = []
    fresh = True
    for ch in word:
        if _is_punctuation(ch):
            pieces.append(ch)
            fresh = True
        else:
            if fresh:
                pieces.append("")
            fresh = False
            pieces[-1] += ch
    return pieces


def gill_clip_text(text: str) -> str:
    """``text`` as GILL's tokenizer handed it to BPE (lower case, no accents, punctuation split off)."""
    tokens: list[str] = []
    for word in _words(text):
        word = "".join(c for c in unicodedata.normalize("NFD", word.lower()) if unicodedata.category(c) != "Mn")
        tokens.extend(_split_punctuation(word))
    return " ".join(" ".join(tokens).split())


def clean_prompts(prompts: list[str], cleanup: str) -> list[str]:
    """Apply the named clean-up (see ``TEXT_CLEANUPS``) to each prompt."""
    return [gill_clip_text(p) for p in prompts] if cleanup == "gill" else list(prompts)
