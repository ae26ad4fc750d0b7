"""`gill-eval prepare partiprompts` (being written)."""

from gill_eval._pending import not_yet


def prepare_partiprompts() -> None:
    """PartiPrompts and the GILL decision annotations into one table (not yet available)."""
    not_yet("prepare partiprompts")
