"""report."""


# gill_eval.report.render (docs/python-api.md): the function, bound over the submodule of the same name.
from gill_eval.report.render import render  # noqa: E402

__all__ = ["render"]
