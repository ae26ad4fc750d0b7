"""`gill-eval generate` (being written)."""

from gill_eval._pending import not_yet


def generate() -> None:
    """One-off generation from the command line (not yet available)."""
    not_yet("generate")
