"""The decision part of ``gill-eval quickstart``: features -> train -> score on the prepared PartiPrompts.

The quickstart calls this after ``prepare partiprompts`` has filled the current data root. It uses a
cheap feature source (default: the tiny random open_clip text tower from ``gill_eval.models.tiny``), so
the classifier rows are meaningless numbers; the baseline rows (always retrieve/generate, random, human)
are the real values from the annotation files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gill_eval.decision.steps import run_features, run_score, run_train
from gill_eval.decision.table6 import Settings


def run_decision_quickstart(
    work_dir: str | Path, feature_source: str = "clip-text", source_options: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run the three decision stages into ``work_dir``; returns the paths and the headline F1 values.

    With ``feature_source="clip-text"`` and no options, the tiny open_clip model is built (cached) and
    used, so nothing is downloaded.
    """
    work = Path(work_dir)
    options = dict(source_options or {})
    if feature_source == "clip-text" and "pretrained" not in options:
        from gill_eval.models.tiny import tiny_clip_dir

        options["pretrained"] = str(tiny_clip_dir())
    features, _ = run_features(feature_source, options, out=work / "decision-features")
    model, _ = run_train(features, "logreg", out=work / "decision-classifier.pth.tar")
    result = run_score(features, model, settings=Settings(thresholds=21, bootstrap=200, random_draws=200),
                       report=work / "decision-report.md")
    rows = result["rows"]
    return {
        "features": str(features),
        "model": str(model),
        "report": result["report"],
        "always_retrieve": rows["always_retrieve"]["f1"],
        "always_generate": rows["always_generate"]["f1"],
        "random": rows["random"]["f1"],
        "human": rows["human"]["f1"],
        "classifier_range": [rows["classifier"]["min"], rows["classifier"]["max"]],
        "classifier_at_half": rows["classifier"]["at_half"],
    }
