"""The three decision stages as library calls (the CLI and quickstart are thin layers over these)."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numpy as np

from gill_eval import __version__
from gill_eval.console import info
from gill_eval.decision import featureset
from gill_eval.decision.annotations import load_labelled
from gill_eval.decision.classifier import OFFICIAL_SEED, LinearDecisionModel, checkpoint_summary, load_model, train
from gill_eval.decision.features import parse_source
from gill_eval.decision.featureset import FeatureSet
from gill_eval.decision.prompt_rows import decision_rows_dir, write_prompt_rows
from gill_eval.decision.report import load_paper_table6, write_report
from gill_eval.decision.sweep import probability_thresholds, sweep
from gill_eval.decision.table6 import Settings, evaluate
from gill_eval.errors import ConfigError, InputError
from gill_eval.store import data_root
from gill_eval.store.names import check_name


def run_features(
    source: str,
    source_options: dict[str, str] | None = None,
    out: Path | None = None,
    dataset: Path | None = None,
    candidates: Path | None = None,
    query_source: str = "clip-text",
    query_options: dict[str, str] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Compute and write the features of every prompt; returns the folder and its recorded options."""
    feature_source = parse_source(source, source_options)
    query = None
    if candidates is not None:
        same = query_source == source and (query_options or {}) == (source_options or {})
        query = feature_source if same else parse_source(query_source, query_options)
    return featureset.compute(feature_source, out, dataset, candidates, query)


def run_train(
    features: Path,
    classifier: str = "linear-dropout",
    annotations: str = "alignment",
    out: Path | None = None,
    dataset: Path | None = None,
    seed: int = OFFICIAL_SEED,
    c: float = 1.0,
    labels: Path | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Train on the train split (the first 600 usable rows); save in the official format with the feature
    fingerprint. linear-dropout records the notebook's val checkpoints (docs/protocols.md, Table 6)."""
    fs = FeatureSet.read(features)
    data = load_labelled(dataset, annotations, labels)
    x, _ = fs.rows(data.keys)
    tr, va = data.subset("train"), data.subset("val")
    info(f"decision train: {classifier} on {len(tr)} {annotations} rows, {x.shape[1]}-d {fs.fingerprint.get('kind')}")
    model = train(classifier, x[tr], data.labels[tr], seed=seed, c=c, val=(x[va], data.labels[va]))
    model.meta.update({"feature_fingerprint": fs.fingerprint, "feature_fingerprint_hash": fs.fingerprint_hash,
                       "annotations": annotations, "train_rows": int(len(tr)), "gill_eval_version": __version__})
    out = Path(out) if out is not None else fs.path.parent / f"classifier-{classifier}-{annotations}.pth.tar"
    model.save(out)
    val = sweep(data.labels[va], model.probabilities(x[va]), probability_thresholds())
    return out, {"model": str(out), "classifier": classifier, "annotations": annotations, "dim": int(x.shape[1]),
                 "train_rows": int(len(tr)), "val_f1_at_half": val.at_half,
                 "best_checkpoint": checkpoint_summary(model.meta)}


def _check_match(model: LinearDecisionModel, fs: FeatureSet, model_path: Path) -> None:
    expected = model.meta.get("feature_fingerprint_hash")
    if expected is not None and expected != fs.fingerprint_hash:
        raise InputError(f"{model_path}: trained on features {expected}, but {fs.path} holds features "
                         f"{fs.fingerprint_hash} ({fs.fingerprint.get('kind')}); use the same source")
    if model.dim != fs.vectors.shape[1]:
        raise InputError(f"{model_path}: expects {model.dim}-d features, {fs.path} has {fs.vectors.shape[1]}-d")


def run_score(
    features: Path | None = None,
    model_path: Path | None = None,
    heuristic: Path | None = None,
    annotations: str = "alignment",
    dataset: Path | None = None,
    settings: Settings | None = None,
    report: Path | None = None,
    paper_tables: Path | None = None,
    label: str | None = None,
    labels: Path | None = None,
) -> dict[str, Any]:
    """Every Table 6 row; writes the Markdown report and PNG; returns the result (with ``report`` path)."""
    settings = settings or Settings()
    data = load_labelled(dataset, annotations, labels)
    provenance: dict[str, Any] = {"annotations": annotations, "annotation_sha256": data.source_sha256,
                                  "gill_eval_version": __version__, "python": platform.python_version()}
    classifier = None
    if model_path is not None:
        if features is None:
            raise InputError("--model needs --features (the vectors the classifier scores)")
        fs = FeatureSet.read(features)
        model = load_model(model_path)
        _check_match(model, fs, Path(model_path))
        x, _ = fs.rows(data.keys)
        classifier = (model, x[data.subset("val")], x)
        provenance["features"] = {"path": str(fs.path), "source": fs.source_spec, "fingerprint": fs.fingerprint,
                                  "fingerprint_hash": fs.fingerprint_hash, "dim": int(fs.vectors.shape[1])}
        provenance["classifier"] = {"path": str(model_path),
                                    **{k: v for k, v in model.meta.items()
                                       if k not in ("feature_fingerprint", "checkpoints")}}
    heuristic_scores = None
    hpath = heuristic if heuristic is not None else features
    if hpath is not None:
        hs = FeatureSet.read(hpath)
        if hs.max_cosine is not None:
            _, cos = hs.rows(data.keys)
            heuristic_scores = np.asarray(cos)
            provenance["heuristic"] = {"path": str(hs.path), "fingerprint_hash": hs.fingerprint_hash}
        elif heuristic is not None:
            raise InputError(f"{hs.path}: no max_cosine column (compute features with --retrieval-candidates)")
    if settings.cv and classifier is None:
        raise ConfigError("--cv needs --model and --features (it retrains that classifier on each fold)")
    result = evaluate(data, settings, classifier, heuristic_scores)
    paper = load_paper_table6(paper_tables)
    tag = check_name("features tag", provenance.get("features", {}).get("fingerprint_hash", "baselines"),
                     "decision features provenance (fingerprint_hash)")  # names a report file and a folder
    report = Path(report) if report is not None else data_root() / "reports" / f"decision-{tag}.md"
    write_report(result, paper, provenance, report, label)
    p_ret = classifier[0].p_ret(classifier[2]) if classifier is not None else None
    write_prompt_rows(decision_rows_dir(tag), data, dataset, p_ret, heuristic_scores,
                      {"annotations": annotations, "report": str(report), "label": label,
                       "classifier": provenance.get("classifier", {}).get("classifier"), "features": tag})
    result["report"] = str(report)
    result["provenance"] = provenance
    return result
