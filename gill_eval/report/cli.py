"""`gill-eval report`."""

from gill_eval._pending import not_yet


def report() -> None:
    """Render Markdown reports in the paper's layouts (not yet available)."""
    not_yet("report")
