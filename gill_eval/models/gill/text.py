"""GILL answering in text (captioning, VQA): greedy decoding with a KV cache, [IMG] tokens never emitted.

The official ``GILLModel.generate`` recomputes the whole sequence at every step (``use_cache=False``) and
never stops early; its callers cut the decoded text at the first newline. For text answers gill-eval keeps
what that loop computes and decides, and changes only what cannot move a greedy token (docs/protocols.md,
"Table 7"):

* every [IMG0..7] logit is set to -inf at every step, the official ``min_word_tokens`` rule with
  ``min_word_tokens >= max_new_tokens``: an answer is text only;
* the keys and values of earlier positions are cached (one LM call per new token instead of a full pass);
* a row stops at the end token (OPT's ``</s>``) or at a newline after its first token (the official newline
  cut, whose quirk keeps a newline at position 0), and after ``max_new_tokens`` tokens.

Batches: contexts whose embedded prefixes have the same length are decoded together (no padding, no
attention mask), so each row sees exactly the positions and values it sees alone; on CPU the group is
padded to ``MIN_GEMM_ROWS`` rows (repeats of its last row, dropped) so that every GEMM computes each row as
at batch size 1 (see ``model.py``). Batched answers therefore equal batch-1 answers token for token.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch

from gill_eval.errors import InputError
from gill_eval.models.gill.model import GILL, MIN_GEMM_ROWS, pad_rows


def _cache_keyword(decoder: torch.nn.Module) -> str:
    """The decoder's keyword for a KV cache (``cache`` in recent transformers, ``past_key_values`` before)."""
    return "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"


@torch.no_grad()
def greedy_text_ids(gill: GILL, prefixes: Sequence[torch.Tensor], max_new_tokens: int) -> list[list[int]]:
    """Generated ids (stop token excluded) of each (1, P_i, D) prefix; each equals decoding it alone."""
    groups: dict[int, list[int]] = {}
    for i, prefix in enumerate(prefixes):
        groups.setdefault(prefix.shape[1], []).append(i)
    out: list[list[int]] = [[] for _ in prefixes]
    for rows in groups.values():
        for i, ids in zip(rows, _decode_group(gill, torch.cat([prefixes[i] for i in rows]), max_new_tokens)):
            out[i] = ids
    return out


def _decode_group(gill: GILL, embeds: torch.Tensor, max_new_tokens: int) -> list[list[int]]:
    """Greedy decoding of B prefixes of equal length with one shared KV cache."""
    from transformers import DynamicCache

    lm, weight = gill.lm, gill.embedding.weight
    decoder, head = lm.model.decoder, lm.get_output_embeddings()
    count = embeds.shape[0]
    x = embeds.to(device=weight.device, dtype=weight.dtype)
    if weight.device.type == "cpu":
        x = pad_rows(x, MIN_GEMM_ROWS)
    limit = lm.config.max_position_embeddings
    if x.shape[1] + max_new_tokens > limit:
        raise InputError(f"the context needs {x.shape[1]} LM positions plus {max_new_tokens} new tokens, more than "
                         f"the LM's {limit}; lower max_new_tokens or shorten the prompt")
    cache: Any = DynamicCache(config=lm.config)
    keyword = _cache_keyword(decoder)
    blocked = torch.tensor(gill.tokens.img_ids, device=weight.device)
    eos, newline = gill.tokenizer.eos_token_id, gill.tokens.newline_id
    ids: list[list[int]] = [[] for _ in range(count)]
    done = [False] * count
    for step in range(max_new_tokens):
        hidden = decoder(inputs_embeds=x, use_cache=True, **{keyword: cache}).last_hidden_state[:, -1]
        logits = head(hidden).float()
        logits[:, blocked] = float("-inf")
        chosen = torch.argmax(logits, dim=-1)
        for row in range(count):
            token = int(chosen[row])
            if done[row]:
                continue
            if token == eos or (token == newline and step > 0):
                done[row] = True
            else:
                ids[row].append(token)
        if all(done):
            break
        x = gill.embedding(chosen).unsqueeze(1)
    return ids


def decode_answer(gill: GILL, ids: Sequence[int]) -> str:
    """The answer text of generated ids: decoded without special tokens, surrounding whitespace stripped."""
    return gill.tokenizer.decode(list(ids), skip_special_tokens=True).strip()
