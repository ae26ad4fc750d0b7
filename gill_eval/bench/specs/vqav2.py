"""``vqav2``: GILL Table 7, zero-shot VQAv2 val (bench/vqav2.py; rendered with coco-caption by report/table7.py)."""

from __future__ import annotations

from gill_eval.bench.registry import TEXT, BenchmarkSpec, Layout, ProtocolVersion
from gill_eval.bench.vqav2 import CONTEXT, NAME, OVERALL, VQAv2

BENCHMARK = BenchmarkSpec(
    name=NAME,
    kind=TEXT,
    layout=Layout("table7-vqav2", "Table 7 (VQAv2 column)", NAME, [OVERALL], [CONTEXT], {CONTEXT: ""},
                  "table7_captioning_vqa", render="gill_eval.report.table7:render_nothing"),
    protocol=ProtocolVersion(1, 1),
    protocol_text="image then 'Q: {question} A:'; greedy, 10 new tokens; official VQA accuracy (vqaEval.py)",
    build=lambda num: VQAv2(),
    order=61,
)
