"""GILL's token additions (spec §2): ids right after the base vocabulary, and OPT's real ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from gill_eval.errors import InputError
from gill_eval.models.gill.tiny import build_tiny_tokenizer
from gill_eval.models.gill.tokenizer import (
    OFFICIAL_IMAGE_TOKEN_ID,
    OFFICIAL_IMG_IDS,
    add_gill_tokens,
    text_ids,
)


@pytest.fixture(scope="module")
def tiny_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tok")
    build_tiny_tokenizer(folder)
    return folder


def _load(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


def test_tiny_tokenizer_has_opt_special_tokens(tiny_tokenizer_dir: Path) -> None:
    tok = _load(tiny_tokenizer_dir)
    assert (tok.convert_tokens_to_ids("<s>"), tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2, 2)
    assert tok.pad_token == "<pad>" and tok.bos_token == "</s>"


def test_additions_land_after_the_base_vocabulary(tiny_tokenizer_dir: Path) -> None:
    tok = _load(tiny_tokenizer_dir)
    base = len(tok)
    tokens = add_gill_tokens(tok)
    assert tokens.image_token_id == base == tok.convert_tokens_to_ids("<|image|>")
    assert tokens.img_ids == tuple(range(base + 1, base + 9))
    assert tokens.vocab_size == len(tok) == base + 9
    ids = tok("[IMG0][IMG1][IMG2][IMG3][IMG4][IMG5][IMG6][IMG7]", add_special_tokens=False).input_ids
    assert ids == list(tokens.img_ids)
    # [IMG] tokens are ordinary added tokens: skip_special_tokens keeps them, <|image|> is special.
    assert "[IMG3]" in tok.decode([tokens.img_ids[3]], skip_special_tokens=True)
    assert tok.decode([tokens.image_token_id], skip_special_tokens=True) == ""
    assert tokens.bos_id == 2
    assert text_ids(tok, "a dog", True, 2)[0] == 2 and text_ids(tok, "a dog", False, 2)[0] != 2


def test_real_opt_vocabulary_size_gives_the_official_ids() -> None:
    """A byte-level vocabulary padded to OPT's 50265 entries gets exactly 50265 and 50266..50273."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import GPT2Tokenizer

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for symbol in sorted(ByteLevel.alphabet()):
        vocab[symbol] = len(vocab)
    while len(vocab) < 50265:
        vocab[f"\u0100filler{len(vocab)}"] = len(vocab)
    tok = GPT2Tokenizer(vocab=vocab, merges=[], bos_token="</s>", eos_token="</s>", pad_token="<pad>",
                        unk_token="<unk>")
    assert len(tok) == 50265
    tokens = add_gill_tokens(tok)
    assert tokens.image_token_id == OFFICIAL_IMAGE_TOKEN_ID == 50265
    assert tokens.img_ids == OFFICIAL_IMG_IDS == tuple(range(50266, 50274))
    assert tokens.vocab_size == 50274


def test_tokenizer_that_already_has_img_tokens_is_rejected(tiny_tokenizer_dir: Path) -> None:
    tok = _load(tiny_tokenizer_dir)
    tok.add_tokens("[IMG0]")
    with pytest.raises(InputError, match="already contains GILL's tokens"):
        add_gill_tokens(tok, source="my-opt")
