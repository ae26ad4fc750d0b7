"""``coco-fid``: GILL Table 8, zero-shot FID on MS-COCO 2014 val captions (bench/caption_fid.py)."""

from __future__ import annotations

from gill_eval.bench.caption_fid import CONTEXT, coco_fid
from gill_eval.bench.registry import FID, BenchmarkSpec, Layout, ProtocolVersion
from gill_eval.bench.specs.cc3m_fid import FID_PROTOCOL
from gill_eval.models.sampler import FID_PRESET

BENCHMARK = BenchmarkSpec(
    name="coco-fid",
    kind=FID,
    layout=Layout("table8", "Table 8. MS-COCO 2014 zero-shot FID", "coco-fid", ["fid"], [CONTEXT], {CONTEXT: ""},
                  "table8_coco2014_zero_shot_fid_30k", extra_metrics=["kid", "clip_score"]),
    protocol=ProtocolVersion(3, 3),  # v3: the official-environment fixes of docs/protocols.md (Environments)
    protocol_text=FID_PROTOCOL,
    build=coco_fid,
    sampler_preset=FID_PRESET,  # the paper's FID sampler (docs/protocols.md, sampler)
    order=50,
)
