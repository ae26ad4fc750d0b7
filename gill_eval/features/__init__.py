"""Feature stages: CLIP image features and SD 1.5 text-encoder targets for prepared datasets.

Outputs (one shard per input shard, same keys in the same order; resumable; ``--shard i/N`` and
torchrun/accelerate ranks split the shards; ``manifest.json`` written when every shard is done):

* ``<data_root>/features/clip/<NAME>/NNNNN.parquet``: ``key``, ``status`` ('success' | 'failed'),
  ``error_message``, ``embedding`` (``fixed_size_list<float32>[D]``, open_clip ``encode_image``, not
  normalised; null for failed rows). Read with ``reader.iter_clip_features``.
* ``<data_root>/features/sd-text/<NAME>/NNNNN.arrow``: the same columns, ``embedding`` a
  ``fixed_size_list<halffloat>[77*768]`` in uncompressed Arrow IPC files, memory-mapped and viewed as
  (n, 77, 768) float16 without copies by ``reader.iter_sd_text``.

Modules: ``loader`` (streaming DataLoader over shards), ``runner`` (units, resume, splitting, writer
hand-off), ``writer`` (background atomic shard writer), ``clip_image`` and ``sd_text`` (the two stages),
``reader``, ``export`` (GILL trainer layout), ``cli``.
"""

from gill_eval.features.api import clip, sd_text

__all__ = ["clip", "sd_text"]
