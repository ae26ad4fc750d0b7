"""``vist``: GILL Table 1, the last image of each VIST story from its context (bench/vist.py)."""

from __future__ import annotations

from gill_eval.bench.contexts import parse_vist_context
from gill_eval.bench.registry import SIMILARITY, BenchmarkSpec, ContextPlot, Layout, ProtocolVersion
from gill_eval.bench.vist import VistBenchmark

SIMILARITY_PROTOCOL = ("seeds 0; references as stored (GILL's 224x224 squash, docs/protocols.md); CLIP ViT-L/14 cosine and LPIPS (AlexNet) per example, "
                       "mean ± std over seeds")


def _position(context: str) -> tuple[float, str]:
    spec = parse_vist_context(context)
    return spec.captions + spec.images / 10, context  # captions on the axis, images as a small offset


BENCHMARK = BenchmarkSpec(
    name="vist",
    kind=SIMILARITY,
    layout=Layout("table1", "Table 1. VIST: generating the last image of a story", "vist", ["clip_similarity", "lpips"],
                  ["1c", "5c", "5c4i"], {"1c": "1 caption", "5c": "5 captions", "5c4i": "5 caps, 4 images"},
                  "table1_vist_generation", paper_cells="per_metric_context"),
    protocol=ProtocolVersion(3, 3),  # v3: the official-environment fixes of docs/protocols.md (Environments)
    protocol_text=SIMILARITY_PROTOCOL,
    build=lambda num: VistBenchmark(),
    cli_context=lambda context: f"--context {context}",
    plot=ContextPlot("context", _position),
    order=10,
)
