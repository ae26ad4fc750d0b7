"""``visdial``: GILL Table 2, the dialog's image from the Q/A lines of its first R rounds (bench/visdial.py)."""

from __future__ import annotations

from gill_eval.bench.registry import SIMILARITY, BenchmarkSpec, ContextPlot, Layout, ProtocolVersion
from gill_eval.bench.specs.vist import SIMILARITY_PROTOCOL
from gill_eval.bench.visdial import VisDialBenchmark, parse_rounds_label, rounds_label

ROUNDS = (1, 5, 10)


def _position(context: str) -> tuple[float, str]:
    rounds = parse_rounds_label(context)
    return float(rounds), str(rounds)


BENCHMARK = BenchmarkSpec(
    name="visdial",
    kind=SIMILARITY,
    layout=Layout("table2", "Table 2. VisDial: generating the image from a dialogue", "visdial",
                  ["clip_similarity", "lpips"], [rounds_label(r) for r in ROUNDS],
                  {rounds_label(r): f"{r} round{'s' if r > 1 else ''}" for r in ROUNDS}, "table2_visdial_generation",
                  paper_cells="per_metric_context", paper_columns={rounds_label(r): str(r) for r in ROUNDS}),
    protocol=ProtocolVersion(3, 3),  # v3: the official-environment fixes of docs/protocols.md (Environments)
    protocol_text=SIMILARITY_PROTOCOL,
    build=lambda num: VisDialBenchmark(),
    cli_context=lambda context: f"--rounds {parse_rounds_label(context)}",
    plot=ContextPlot("dialogue rounds", _position),
    order=20,
)
