"""``cc3m-fid``: GILL Tables 3-4, FID on the CC3M validation captions (bench/caption_fid.py)."""

from __future__ import annotations

from gill_eval.bench.caption_fid import CONTEXT, cc3m_fid
from gill_eval.bench.registry import FID, BenchmarkSpec, Layout, ProtocolVersion
from gill_eval.models.sampler import FID_PRESET

FID_PROTOCOL = ("one image per caption and seed; SD-based models sample with guidance 3.0, 250 DDIM steps; "
                "Inception (torch-fidelity)")

BENCHMARK = BenchmarkSpec(
    name="cc3m-fid",
    kind=FID,
    layout=Layout("table3", "Tables 3-4. CC3M validation FID", "cc3m-fid", ["fid"], [CONTEXT], {CONTEXT: ""},
                  "table3_mapper_ablation", paper_cells="first", extra_metrics=["kid", "clip_score"]),
    protocol=ProtocolVersion(3, 3),  # v3: the official-environment fixes of docs/protocols.md (Environments)
    protocol_text=FID_PROTOCOL,
    build=cc3m_fid,
    sampler_preset=FID_PRESET,  # the paper's FID sampler (docs/protocols.md, sampler)
    order=40,
)
