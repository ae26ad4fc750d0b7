"""``vist-retrieval``: GILL Table 5, contextual image retrieval on VIST (bench/vist_retrieval.py)."""

from __future__ import annotations

from gill_eval.bench.registry import RETRIEVAL, BenchmarkSpec, Layout, ProtocolVersion
from gill_eval.bench.vist_retrieval import CONTEXT, NAME, TABLE, VistRetrieval

BENCHMARK = BenchmarkSpec(
    name=NAME,
    kind=RETRIEVAL,
    layout=Layout(TABLE, "Table 5. VIST contextual image retrieval (5 captions, 4 images)", NAME,
                  ["R@1", "R@5", "R@10"], [CONTEXT], {CONTEXT: ""}, "table5_vist_retrieval_5c4i",
                  ["Recall in %. Ranks are pessimistic (ties count against the model); the 4 context images are excluded."],
                  paper_cells="list"),
    protocol=ProtocolVersion(3, 3),  # v3: the official-environment fixes of docs/protocols.md (Environments)
    protocol_text="query c1, v1, ..., c4, v4, c5; the 4 context images excluded; pessimistic ties; recall in %",
    build=lambda num: VistRetrieval(),
    order=30,
)
