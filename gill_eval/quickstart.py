"""`gill-eval quickstart`."""

from gill_eval._pending import not_yet


def quickstart() -> None:
    """Run the pipeline on the bundled sample (not yet available)."""
    not_yet("quickstart")
