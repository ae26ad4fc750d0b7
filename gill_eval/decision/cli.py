"""`gill-eval decision features|train|score`: the retrieve-or-generate classifier (GILL Table 6)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gill_eval.console import emit_json, info
from gill_eval.decision.features import SOURCE_KINDS
from gill_eval.errors import ConfigError

app = typer.Typer(help="Retrieve-or-generate decision classifier on PartiPrompts (Table 6).", no_args_is_help=True)

DatasetOpt = Annotated[
    Optional[Path], typer.Option("--dataset", help="Prepared PartiPrompts folder (default: the data root's).")
]
AnnotationsOpt = Annotated[str, typer.Option("--annotations", help="alignment (the paper's labels) or realism.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
LabelsOpt = Annotated[
    Optional[Path],
    typer.Option("--labels", help="A folder written by `annotate collect` (default: the published PartiPrompts labels)."),
]


def _pairs(pairs: list[str] | None, option: str) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{option} {pair!r}: expected KEY=VALUE")
        if key.strip() in parsed:
            raise ConfigError(f"{option} {key.strip()!r} given twice")
        parsed[key.strip()] = value
    return parsed


@app.command("features")
def features(
    source: Annotated[str, typer.Option("--source", help=f"One of: {', '.join(SOURCE_KINDS)}.")],
    source_opt: Annotated[
        Optional[list[str]],
        typer.Option("--source-opt", help="KEY=VALUE for clip-text (model, pretrained, quick_gelu) or model:NAME."),
    ] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Output folder (default under the data root).")] = None,
    retrieval_candidates: Annotated[
        Optional[Path],
        typer.Option(
            "--retrieval-candidates", help="CLIP image features (key, embedding): adds the max-cosine heuristic."),
    ] = None,
    retrieval_query: Annotated[
        str, typer.Option("--retrieval-query", help="Source of the query embeddings compared with the candidates.")
    ] = "clip-text",
    retrieval_query_opt: Annotated[
        Optional[list[str]], typer.Option("--retrieval-query-opt", help="KEY=VALUE options of --retrieval-query.")
    ] = None,
    dataset: DatasetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Per-prompt feature vectors (and optionally the max-cosine heuristic) for every PartiPrompts prompt."""
    from gill_eval.decision.steps import run_features

    folder, options = run_features(
        source, _pairs(source_opt, "--source-opt"), out, dataset, retrieval_candidates, retrieval_query,
        _pairs(retrieval_query_opt, "--retrieval-query-opt"),
    )
    if as_json:
        emit_json({"out": str(folder), **options})
    else:
        info(f"decision features: {options['prompts']} x {options['dim']} ({source}) -> {folder}")


@app.command("train")
def train_cmd(
    features: Annotated[Path, typer.Option("--features", help="Folder written by `decision features`.")],
    classifier: Annotated[
        str, typer.Option("--classifier", help="linear-dropout (the paper's notebook) or logreg")
    ] = "linear-dropout",
    annotations: AnnotationsOpt = "alignment",
    out: Annotated[Optional[Path], typer.Option("--out", help="Model file (default: beside the features).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Training seed (the notebook's: 1337).")] = 1337,
    c: Annotated[float, typer.Option("--C", help="Inverse L2 strength of logreg.")] = 1.0,
    dataset: DatasetOpt = None,
    labels: LabelsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train on the train split; saved in GILL's decision_model.pth.tar format plus the feature fingerprint."""
    from gill_eval.decision.classifier import CLASSIFIERS
    from gill_eval.decision.steps import run_train

    if classifier not in CLASSIFIERS:
        raise ConfigError(f"--classifier {classifier!r}: expected one of {', '.join(CLASSIFIERS)}")
    path, summary = run_train(features, classifier, annotations, out, dataset, seed, c, labels)
    if as_json:
        emit_json(summary)
    else:
        info(f"decision train: {classifier} -> {path} (val F1 at 0.5: {summary['val_f1_at_half']:.4f})")


@app.command("score")
def score(
    features: Annotated[Optional[Path], typer.Option("--features", help="Features the classifier scores.")] = None,
    model: Annotated[
        Optional[Path], typer.Option("--model", help="Our classifier file or GILL's decision_model.pth.tar.")
    ] = None,
    heuristic: Annotated[
        Optional[Path], typer.Option("--heuristic", help="Features folder with max_cosine (default: --features).")
    ] = None,
    thresholds: Annotated[
        int, typer.Option("--thresholds", min=2, help="Points in each sweep (the notebook's linspace(0, 1, 50)).")
    ] = 50,
    cv: Annotated[int, typer.Option("--cv", min=0, help="Stratified K-fold over all usable rows (0: off).")] = 0,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=10, help="Bootstrap resamples for 95% CIs.")] = 1000,
    random_draws: Annotated[int, typer.Option("--random-draws", min=2, help="Seeded draws of the random row.")] = 1000,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    annotations: AnnotationsOpt = "alignment",
    report: Annotated[Optional[Path], typer.Option("--report", help="Markdown path (PNG beside it).")] = None,
    paper_tables: Annotated[
        Optional[Path], typer.Option("--paper-tables", help="gill_paper_tables.json (default: the shipped copy).")
    ] = None,
    label: Annotated[
        Optional[str], typer.Option("--label", help="A line under the report's title (e.g. 'Committed example').")
    ] = None,
    dataset: DatasetOpt = None,
    labels: LabelsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Macro-F1 on the val split for every Table 6 row, threshold sweeps, CIs, and the Markdown report."""
    from gill_eval.decision.steps import run_score
    from gill_eval.decision.table6 import Settings

    settings = Settings(thresholds=thresholds, bootstrap=bootstrap, random_draws=random_draws, cv=cv, seed=seed)
    result = run_score(features, model, heuristic, annotations, dataset, settings, report, paper_tables, label,
                       labels)
    if as_json:
        emit_json(result)
        return
    rows = result["rows"]
    info(f"always retrieve {rows['always_retrieve']['f1']:.4f}  always generate {rows['always_generate']['f1']:.4f}  "
         f"random {rows['random']['f1']:.4f}  human {rows['human']['f1']:.4f}")
    for key in ("heuristic", "classifier"):
        if rows[key] is not None:
            info(f"{key}: {rows[key]['min']:.4f}-{rows[key]['max']:.4f}, {rows[key]['at_half']:.4f} at 0.5, "
                 f"best t {rows[key]['best_threshold']:.3f}")
    info(f"report: {result['report']}")
