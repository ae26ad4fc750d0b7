"""The Python API of ``gill-eval prepare``: one function per dataset (docs/python-api.md).

Each takes the same inputs as its command and returns the same summary (what ``--json`` prints); the
data go under the data root (``gill_eval.store.set_data_root`` or ``GILL_EVAL_DATA``). Downloads take a
``DownloadOptions``.
"""

from __future__ import annotations

from gill_eval.datasets.cc3m import prepare_cc3m as cc3m
from gill_eval.datasets.coco import prepare_coco as coco
from gill_eval.datasets.coco2017 import prepare_coco2017 as coco2017
from gill_eval.datasets.download import DownloadOptions
from gill_eval.datasets.partiprompts_prepare import prepare as partiprompts
from gill_eval.datasets.visdial import prepare_visdial as visdial
from gill_eval.datasets.vist import prepare_vist as vist
from gill_eval.datasets.vqav2 import prepare_vqav2 as vqav2

__all__ = ["DownloadOptions", "cc3m", "coco", "coco2017", "partiprompts", "visdial", "vist", "vqav2"]
