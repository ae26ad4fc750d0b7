"""``python -m gill_eval`` (and ``torchrun ... -m gill_eval features ...``) runs the CLI."""

from gill_eval.cli import main

main()
