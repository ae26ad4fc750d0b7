"""SD 1.5 text-encoder targets: ``last_hidden_state`` (77x768, float16) for every caption of a dataset.

This is what GILL's ``preprocess_sd_embeddings.py`` stores per caption and what its mapper is trained to
predict: the tokenizer pads to 77 with ``<|endoftext|>`` (49407) and truncates on the right, and the
encoder runs without an attention mask, so the padding positions are part of the target. It equals
``text_encoder(tokenizer(...).input_ids)[0]`` and diffusers' ``pipe.encode_prompt(p, device, 1, False)[0]``.

Output shards are Arrow IPC files (``NNNNN.arrow``, uncompressed) with columns ``key``, ``status``,
``error_message`` and ``embedding``: a ``fixed_size_list<halffloat>[77*768]``. Memory-map them and view
the values without copying (see ``gill_eval.store.features.iter_sd_text``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from gill_eval.clip_text import gill_clip_text
from gill_eval.errors import ConfigError
from gill_eval.features.runner import FeatureStage
from gill_eval.models.weights import fingerprint, load_sd_text_encoder

SEQ_LEN = 77
SD15_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class CaptionTokenizer:
    """Runs in the DataLoader workers: SD's tokenisation (pad to 77 with the end token, cut on the right)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def __call__(self, table: pa.Table) -> tuple[list[str | None], torch.Tensor | None]:
        captions = table.column("caption").to_pylist()
        errors = [None if isinstance(c, str) else "missing caption" for c in captions]
        # GILL's preprocess_sd_embeddings.py tokenised under transformers 4.30 without ftfy (gill_eval/clip_text.py)
        texts = [gill_clip_text(c) for c in captions if isinstance(c, str)]
        if not texts:
            return errors, None
        # No attention mask: the encoder runs without one, and building it cost ~40% of the worker's time.
        ids = self.tokenizer(texts, padding="max_length", max_length=SEQ_LEN, truncation=True,
                             return_attention_mask=False, return_tensors="pt").input_ids
        return errors, ids


def _sd_fingerprint(model: str) -> str | None:
    folder = Path(model).expanduser()
    if folder.is_dir():
        parts = [fingerprint(str(folder / sub)) or "" for sub in ("tokenizer", "text_encoder")]
        return "+".join(parts)
    return fingerprint("sd15-text")


class SdTextStage(FeatureStage):
    """``features sd-text``: one 77x768 float16 target per caption, keys and order of the examples."""

    kind = "sd-text"
    input_subdir = "examples"
    columns = ["key", "caption"]
    fmt = "arrow"
    # 118 KB per caption: one writer thread moves ~1.3 GB/s into the page cache, half the H100 encoder's
    # rate; three threads on separate units keep up (benchmarks/sd_text_host.py). Up to 8 batches in flight.
    writer_threads = 3
    writer_queue = 8

    def __init__(self, model: str = SD15_ID, precision: str = "fp32", device: str | torch.device = "cpu") -> None:
        super().__init__(torch.device(device))
        if precision not in _DTYPES:
            raise ConfigError(f"--precision {precision!r}: use fp32, fp16 or bf16")
        tokenizer, self.encoder = load_sd_text_encoder(model, device=self.device, dtype=_DTYPES[precision])
        if tokenizer.pad_token_id != tokenizer.eos_token_id:
            raise ConfigError(f"{model}: tokenizer pads with id {tokenizer.pad_token_id}, not the end token "
                              f"{tokenizer.eos_token_id} as SD 1.x does")
        self._prepare = CaptionTokenizer(tokenizer)
        self.hidden = int(self.encoder.config.hidden_size)
        self.width = SEQ_LEN * self.hidden
        field = pa.field("embedding", pa.list_(pa.float16(), self.width),
                         metadata={"shape": f"{SEQ_LEN},{self.hidden}", "dtype": "float16"})
        self.schema = pa.schema([("key", pa.string()), ("status", pa.string()), ("error_message", pa.string()),
                                 field])
        self._config = {"model": model, "weights_sha256": _sd_fingerprint(model), "precision": precision,
                        "seq_len": SEQ_LEN, "hidden": self.hidden,
                        # recorded so that targets tokenised before the clean-up are not reused (docs/protocols.md)
                        "text_cleanup": "gill"}

    @property
    def prepare(self) -> CaptionTokenizer:
        return self._prepare

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.encoder(inputs)[0].to(torch.float16)

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def embedding_array(self, values: np.ndarray, ok: np.ndarray) -> pa.Array:
        if ok.all():
            flat = values.reshape(-1)  # a view of the pinned host buffer: no copy
        else:
            full = np.zeros((len(ok), self.width), dtype=np.float16)
            full[ok] = values.reshape(-1, self.width)
            flat = full.reshape(-1)
        return pa.FixedSizeListArray.from_arrays(pa.array(flat), self.width,
                                                 mask=None if ok.all() else pa.array(~ok))
