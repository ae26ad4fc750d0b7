"""``vist``: GILL Table 1, the last image of each VIST story from its context (bench/vist.py)."""

from __future__ import annotations

from gill_eval.bench.contexts import parse_vist_context
from gill_eval.bench.registry import SIMILARITY, BenchmarkSpec, ContextPlot, Layout, ProtocolVersion
from gill_eval.bench.vist import VistBenchmark

# GILL scored VIST against its 224x224 squashed downloads, which `prepare vist` stores exactly
# (--store gill-224), so for them this resize is the identity (docs/protocols.md).
GILL_REFERENCE_SIZE = 224
SIMILARITY_PROTOCOL = ("seeds 0; --reference gill; CLIP ViT-L/14 cosine and LPIPS (AlexNet) per example, "
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
    protocol=ProtocolVersion(2, 2),  # v2 (gill-eval 0.2): the parity fixes of docs/protocols.md
    protocol_text=SIMILARITY_PROTOCOL,
    build=lambda num: VistBenchmark(),
    reference_size=GILL_REFERENCE_SIZE,
    cli_context=lambda context: f"--context {context}",
    plot=ContextPlot("context", _position),
    order=10,
)
