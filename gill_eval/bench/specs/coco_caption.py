"""``coco-caption``: GILL Table 7, MS-COCO 2017 val captioning (bench/coco_caption.py; table: report/table7.py)."""

from __future__ import annotations

from gill_eval.bench.coco_caption import CONTEXT, NAME, CocoCaption
from gill_eval.bench.registry import TEXT, BenchmarkSpec, Layout, ProtocolVersion

BENCHMARK = BenchmarkSpec(
    name=NAME,
    kind=TEXT,
    layout=Layout("table7", "Table 7. Image captioning (MS-COCO 2017) and zero-shot VQAv2", NAME,
                  ["bleu4", "meteor"], [CONTEXT], {CONTEXT: ""}, "table7_captioning_vqa", render="gill_eval.report.table7:render_table7"),
    protocol=ProtocolVersion(1, 1),
    protocol_text="image then prompt 'A picture of'; greedy, 32 new tokens; FROMAGe's period cut; "
                  "pycocoevalcap BLEU-1..4, METEOR, CIDEr, corpus-level per seed",
    build=lambda num: CocoCaption(),
    order=60,
)
