"""GILL's tokenizer additions: ``<|image|>`` and the eight [IMG] tokens, with the id checks.

Why the checks: the released checkpoint stores only the 8 embedding rows of [IMG0..7]; they are restored
by *id* (the last 8 rows of the resized matrix). If the additions landed anywhere else (a different base
vocabulary, another order, a token split in two) the rows would silently go to the wrong tokens. With
OPT's real vocabulary (50265 entries) the ids must be exactly ``<|image|>`` = 50265 and [IMG0..7] =
50266..50273 (``len(tokenizer)`` = 50274). Tests use a tiny byte-level BPE vocabulary of V entries, for
which the same rule gives V and V+1..V+8; the official constants are asserted whenever the base
vocabulary has OPT's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gill_eval.errors import InputError

NUM_IMG_TOKENS = 8
IMAGE_TOKEN = "<|image|>"
IMG_TOKENS = tuple(f"[IMG{i}]" for i in range(NUM_IMG_TOKENS))

#: OPT's vocabulary size and the ids the official code gets from it (spec §2).
OPT_BASE_VOCAB = 50265
OFFICIAL_IMAGE_TOKEN_ID = 50265
OFFICIAL_IMG_IDS = tuple(range(50266, 50274))
OFFICIAL_VOCAB = 50274


@dataclass(frozen=True)
class GillTokens:
    """The ids GILL needs; ``vocab_size`` is the LM's embedding/logit size after the additions."""

    img_ids: tuple[int, ...]
    image_token_id: int
    bos_id: int
    newline_id: int
    vocab_size: int

    @classmethod
    def official(cls, newline_id: int = 50118) -> GillTokens:
        """The real OPT layout (used by the real-size benchmark, which has no OPT vocabulary files)."""
        return cls(OFFICIAL_IMG_IDS, OFFICIAL_IMAGE_TOKEN_ID, 2, newline_id, OFFICIAL_VOCAB)


def add_gill_tokens(tokenizer: Any, source: str = "tokenizer") -> GillTokens:
    """Add ``<|image|>`` then [IMG0..7] exactly as the official code does, and check the resulting ids.

    ``<|image|>`` is a special (cls) token; the [IMG] tokens are ordinary added tokens, so decoding with
    ``skip_special_tokens=True`` keeps them. Raises ``InputError`` naming ``source`` if the ids are not
    the base vocabulary size followed by 8 consecutive ids, or if a token does not map to one id.
    """
    base = len(tokenizer)
    if IMAGE_TOKEN in tokenizer.get_vocab() or any(t in tokenizer.get_vocab() for t in IMG_TOKENS):
        raise InputError(f"{source}: already contains GILL's tokens; load the plain OPT tokenizer")
    tokenizer.add_special_tokens({"cls_token": IMAGE_TOKEN})
    for token in IMG_TOKENS:
        tokenizer.add_tokens(token)
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    img_ids = []
    for token in IMG_TOKENS:
        ids = tokenizer(token, add_special_tokens=False).input_ids
        if len(ids) != 1:
            raise InputError(f"{source}: {token} tokenizes to {len(ids)} ids {ids}, expected exactly one")
        img_ids.append(ids[0])
    expected = list(range(base + 1, base + 1 + NUM_IMG_TOKENS))
    if image_id != base or img_ids != expected:
        raise InputError(f"{source}: GILL tokens got ids {image_id}, {img_ids}; expected {base}, {expected}")
    if base == OPT_BASE_VOCAB and (image_id != OFFICIAL_IMAGE_TOKEN_ID or tuple(img_ids) != OFFICIAL_IMG_IDS):
        raise InputError(f"{source}: [IMG] ids {img_ids} differ from the official {list(OFFICIAL_IMG_IDS)}")
    if len(tokenizer) != base + 1 + NUM_IMG_TOKENS:
        raise InputError(f"{source}: vocabulary has {len(tokenizer)} entries after the additions, "
                         f"expected {base + 1 + NUM_IMG_TOKENS}")
    bos = tokenizer.bos_token_id
    if bos is None:
        raise InputError(f"{source}: has no BOS token (OPT's is '</s>', id 2)")
    newline = tokenizer("\n", add_special_tokens=False).input_ids
    if len(newline) != 1:
        raise InputError(f"{source}: '\\n' tokenizes to {newline}, expected one id")
    return GillTokens(tuple(img_ids), image_id, int(bos), int(newline[0]), len(tokenizer))


def text_ids(tokenizer: Any, text: str, add_bos: bool, bos_id: int) -> list[int]:
    """Token ids of one text segment, with BOS prepended iff ``add_bos``.

    OPT's ``add_special_tokens=True`` prepends BOS (``</s>``) and nothing else; prepending it here instead
    keeps that true whatever the installed transformers' post-processor does (v5 has no slow tokenizer).
    """
    ids = list(tokenizer(text, add_special_tokens=False).input_ids)
    return [bos_id, *ids] if add_bos else ids
