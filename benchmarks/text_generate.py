"""Text-generation tokens/s of GILL's answer path beside a plain Hugging Face ``generate`` loop (JSON on stdout).

Same model (the tiny GILL's OPT, or ``--checkpoint`` a GILL folder), same contexts (captioning contexts:
an image then "A picture of", so every prefix has the same length), same greedy decoding with the [IMG]
tokens barred, ``--new-tokens`` tokens per answer (the tiny model never emits ``</s>``, so every row runs to
the limit). Measured, each at batch 1 and at ``--batch``:

* ``gill_text``: ``GILLModel.generate_text`` (``models/gill/text.py``: KV cache, rows of equal length
  stacked, padded to 4 GEMM rows on CPU so batches equal batch 1);
* ``hf_generate``: ``lm.generate(inputs_embeds=..., do_sample=False, bad_words_ids=[IMG])`` on the stacked
  prefixes (transformers' own loop with its cache);
* ``official_recompute``: the official decoding without a cache (``GILL.decode``, the whole sequence every
  step), batch 1 only: the naive baseline.

Context embedding (CLIP + visual tokens) is done once up front and excluded from every timing. Usage::

    python benchmarks/text_generate.py --device cpu --contexts 8 --batch 8 --new-tokens 16
    python benchmarks/text_generate.py --device cuda --contexts 64 --batch 32 --new-tokens 32
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from gill_eval.models.gill.model import DecodeSettings  # noqa: E402
from gill_eval.models.gill.text import greedy_text_ids  # noqa: E402
from gill_eval.models.registry import load_model  # noqa: E402


def _timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    fn()  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--checkpoint", default="", help="a GILL folder (default: the tiny GILL)")
    parser.add_argument("--contexts", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier timings on a shared CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from PIL import Image

    name = "gill" if args.checkpoint else "tiny-gill"
    model = load_model(name, {"device": args.device, **({"checkpoint": args.checkpoint} if args.checkpoint else {})})
    gill = model.gill
    contexts = [[Image.new("RGB", (64, 48), (i * 29 % 256, i * 53 % 256, 90)), "A picture of"]
                for i in range(args.contexts)]
    prefixes = [gill.embed_context(c) for c in contexts]
    n, new = args.contexts, args.new_tokens
    img = [[i] for i in gill.tokens.img_ids]

    def ours(batch: int) -> list[list[int]]:
        return [ids for s in range(0, n, batch) for ids in greedy_text_ids(gill, prefixes[s:s + batch], new)]

    def hf(batch: int) -> list[list[int]]:
        out = []
        for s in range(0, n, batch):
            embeds = torch.cat(prefixes[s:s + batch]).to(gill.embedding.weight.dtype)
            ids = gill.lm.generate(inputs_embeds=embeds, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                                   bad_words_ids=img, pad_token_id=gill.tokenizer.pad_token_id)
            out += ids.tolist()
        return out

    def official() -> list[list[int]]:
        settings = DecodeSettings(num_words=new, gen_scale_factor=1.0, min_word_tokens=new)
        return [gill.decode(p, settings).ids for p in prefixes]

    rows: dict[str, Any] = {}
    with torch.no_grad():
        for batch in (1, args.batch):
            t, mine = _timed(lambda b=batch: ours(b), args.repeats)
            rows[f"gill_text_b{batch}"] = {"s": t, "tokens_per_s": n * new / t}
            t, theirs = _timed(lambda b=batch: hf(b), args.repeats)
            rows[f"hf_generate_b{batch}"] = {"s": t, "tokens_per_s": n * new / t,
                                             "same_tokens_as_gill_text": [r[:new] for r in theirs] == mine}
        t, base = _timed(official, 1)
        rows["official_recompute_b1"] = {"s": t, "tokens_per_s": n * new / t, "same_tokens_as_gill_text": base == mine}
    b = args.batch
    report = {
        "device": args.device, "threads": args.threads, "model": name, "contexts": n, "new_tokens": new, "batch": b,
        "torch": torch.__version__, "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "rows": rows,
        "ratios": {
            f"gill_text_b{b}_vs_hf_generate_b{b}": rows[f"gill_text_b{b}"]["tokens_per_s"] / rows[f"hf_generate_b{b}"]["tokens_per_s"],
            "gill_text_b1_vs_hf_generate_b1": rows["gill_text_b1"]["tokens_per_s"] / rows["hf_generate_b1"]["tokens_per_s"],
            f"gill_text_b{b}_vs_b1": rows[f"gill_text_b{b}"]["tokens_per_s"] / rows["gill_text_b1"]["tokens_per_s"],
            "gill_text_b1_vs_official_recompute": rows["gill_text_b1"]["tokens_per_s"] / rows["official_recompute_b1"]["tokens_per_s"],
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
