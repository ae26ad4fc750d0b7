"""The bench + report part of ``gill-eval quickstart``, on the sample that its prepare step put in data_root().

The matrix is ``pipelines/quickstart.toml``'s (a test keeps the two equal); it is defined here too so that
an installed package, which has no ``pipelines/`` folder, runs the same thing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gill_eval.pipeline import Pipeline, execute

PREAMBLE = [
    "**These numbers are meaningless.** Every model and every scoring network here has tiny random weights;",
    "the run only shows that prepare, generation, scoring and reporting work end to end, offline, on a CPU.",
]


def quickstart_pipeline(report: Path) -> Pipeline:
    """Tiny SD / GILL / CLIP retrieval on every benchmark with tiny scorers, 2 seeds."""
    tiny_sd = {"name": "tiny-sd", "options": {"steps": 2}}
    return Pipeline(
        path=Path("quickstart.toml"),
        title="gill-eval quickstart (tiny random models: numbers are meaningless)",
        report=report,
        seeds=[0, 1],
        models={"tiny-sd": tiny_sd, "tiny-gill": {"name": "tiny-gill", "options": {"steps": 2}},
                "tiny-clip-retrieval": {"name": "tiny-clip-retrieval"}},
        runs=[
            {"benchmark": "vist", "models": ["tiny-sd", "tiny-gill"], "contexts": ["1c", "5c", "5c4i"]},
            {"benchmark": "visdial", "models": ["tiny-sd", "tiny-gill"], "contexts": ["r1", "r5", "r10"]},
            {"benchmark": "coco-fid", "models": ["tiny-sd"]},
            {"benchmark": "cc3m-fid", "models": ["tiny-sd"]},
            {"benchmark": "vist-retrieval", "models": ["tiny-clip-retrieval", "tiny-gill"]},
        ],
        baseline="tiny-sd",
        scorers="tiny",
        device="cpu",
        batch_size=4,
        fid_bootstrap=20,
        preamble=list(PREAMBLE),
    )


def run_bench_quickstart(out_dir: Path) -> dict[str, Any]:
    """Run the quickstart benchmarks and write ``out_dir/quickstart.md`` (plus plots); return a summary."""
    out_dir = Path(out_dir)
    results, report = execute(quickstart_pipeline(out_dir / "quickstart.md"))
    return {
        "report": str(report) if report else None,
        "results": len(results),
        "unsupported": sum(r["status"] == "unsupported" for r in results),
        "meaningless": True,
    }
