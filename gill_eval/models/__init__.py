"""models."""


def __getattr__(name: str):  # noqa: ANN202 - PEP 562: gill_eval.models.load_model (docs/python-api.md), on use
    if name == "load_model":
        from gill_eval.models.registry import load_model

        return load_model
    raise AttributeError(f"module 'gill_eval.models' has no attribute {name!r}")
