"""GLIDE's text tokenizer: GPT-2's byte-level byte-pair encoding, lower-cased, in a 128-token context.

The vocabulary (``encoder.json.gz``, 50,257 entries, and ``vocab.bpe.gz``, the ranked merges; OpenAI's
GPT-2 files, MIT licence) ships with gill-eval as package data; both are checked against their sha256
before use. As in glide-text2im: the text is lower-cased, split with GPT-2's pattern, every piece's UTF-8
bytes are mapped to printable characters and merged by rank; a token list is cut to the context and padded
with the last vocabulary id (``<|endoftext|>``, 50256), the mask marking the real tokens
(docs/protocols.md, GLIDE).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
from importlib import resources

from gill_eval.errors import InputError

#: sha256 of the two vocabulary files, as published with GPT-2 and glide-text2im.
VOCAB_SHA256 = {
    "encoder.json.gz": "4debc1cf25180021b07744bc9f4488d53c7bf112c8ce5de8097c6a7518f4ec7c",
    "vocab.bpe.gz": "ce239dd5a898827423fee00e3f7ab37de7900f247f2ba360753d860e8a46524d",
}
#: GPT-2's pre-tokenisation: contractions, letter runs, digit runs, other runs, whitespace (``regex``
#: syntax: ``\p{L}`` is any letter).
PIECES = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def byte_symbols() -> dict[int, str]:
    """GPT-2's reversible byte -> character table: printable Latin-1 bytes map to themselves, the other
    68 bytes (controls, space, ...) to the characters from U+0100 on, in byte order."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {b: chr(b) for b in printable}
    others = [b for b in range(256) if b not in table]
    table.update({b: chr(0x100 + i) for i, b in enumerate(others)})
    return table


class GlideTokenizer:
    """Byte-level BPE over GPT-2's vocabulary; ``encode`` and ``padded_tokens_and_mask`` as GLIDE uses them."""

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]]) -> None:
        import regex  # the `glide` extra: imported here, so the registry can report it missing first

        self.pieces = regex.compile(PIECES)
        self.vocab = vocab
        self.ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.symbols = byte_symbols()
        self._words: dict[str, list[int]] = {}

    @property
    def n_vocab(self) -> int:
        return len(self.vocab)

    @property
    def end_token(self) -> int:
        """The padding id: the vocabulary's last entry, ``<|endoftext|>``."""
        return self.n_vocab - 1

    def _merge(self, word: str) -> list[str]:
        """Merge the lowest-ranked adjacent pair everywhere it occurs until no ranked pair is left."""
        parts = list(word)
        while len(parts) > 1:
            ranked = [(self.ranks.get(pair, -1), pair) for pair in zip(parts, parts[1:])]
            known = [(rank, pair) for rank, pair in ranked if rank >= 0]
            if not known:
                break
            first, second = min(known)[1]
            merged: list[str] = []
            i = 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == first and parts[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return parts

    def _word_ids(self, piece: str) -> list[int]:
        ids = self._words.get(piece)
        if ids is None:
            word = "".join(self.symbols[b] for b in piece.encode("utf-8"))
            ids = self._words[piece] = [self.vocab[part] for part in self._merge(word)]
        return ids

    def encode(self, text: str) -> list[int]:
        """The token ids of ``text`` (lower-cased first), uncut."""
        return [i for piece in self.pieces.findall(text.lower()) for i in self._word_ids(piece)]

    def padded_tokens_and_mask(self, tokens: list[int], text_ctx: int) -> tuple[list[int], list[bool]]:
        """``tokens`` cut to ``text_ctx`` and padded with ``end_token``; True where a real token is."""
        kept = list(tokens[:text_ctx])
        pad = text_ctx - len(kept)
        return kept + [self.end_token] * pad, [True] * len(kept) + [False] * pad


def _read_vocab_file(name: str) -> bytes:
    """A vocabulary file's uncompressed bytes, after checking the shipped file's sha256."""
    blob = resources.files("gill_eval.models.glide").joinpath("bpe", name).read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != VOCAB_SHA256[name]:
        raise InputError(f"gill_eval/models/glide/bpe/{name}: sha256 {digest} is not GPT-2's "
                         f"{VOCAB_SHA256[name]}; reinstall gill-eval")
    return gzip.decompress(blob)


@functools.cache
def glide_tokenizer() -> GlideTokenizer:
    """The tokenizer over the shipped vocabulary (read once per process)."""
    vocab = json.loads(_read_vocab_file("encoder.json.gz"))
    lines = _read_vocab_file("vocab.bpe.gz").decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:] if line]  # line 0 is a '#version' header
    return GlideTokenizer(vocab, merges)  # type: ignore[arg-type]
