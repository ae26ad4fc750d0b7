"""`gill-eval run PIPELINE.toml`."""

from gill_eval._pending import not_yet


def run_pipeline() -> None:
    """Run a declared pipeline (not yet available)."""
    not_yet("run")
