"""PNG plots of a metric against context size (the paper's Fig. 6 for VIST and Fig. 8 for VisDial)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gill_eval.bench.registry import ContextPlot
from gill_eval.store import atomic_path


def plot_context_curves(results: list[dict[str, Any]], benchmark: str, metric: str, out: Path,
                        axis: ContextPlot) -> Path | None:
    """Mean with its 95% interval per context size (placed by the benchmark's declared ``axis``), one line
    per model; None when nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[float, str, float, float, float]]] = {}
    for r in results:
        if r["benchmark"] != benchmark or r["status"] != "ok":
            continue
        agg = (r["metrics"].get(metric) or {}).get("aggregate")
        if agg:
            x, tick = axis.position(r["context"])
            series.setdefault(r["model"]["label"], []).append((x, tick, agg["mean"], agg["ci_low"], agg["ci_high"]))
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
    ticks: dict[float, str] = {}
    for label, points in sorted(series.items()):
        points.sort()
        xs = [p[0] for p in points]
        ys = [p[2] for p in points]
        err = [[p[2] - p[3] for p in points], [p[4] - p[2] for p in points]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=label)
        ticks.update({p[0]: p[1] for p in points})
    ax.set_xticks(sorted(ticks), [ticks[k] for k in sorted(ticks)])
    ax.set_xlabel(axis.axis)
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(f"{benchmark}: {metric.replace('_', ' ')} vs context (95% CI)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out
