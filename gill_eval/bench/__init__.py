"""bench."""

_API = ("run", "rescore", "status")  # gill_eval.bench.run(...) etc. (docs/python-api.md); imported on use (torch)


def __getattr__(name: str):  # noqa: ANN202 - PEP 562: the API functions of bench/api.py
    if name in _API:
        from gill_eval.bench import api

        return getattr(api, name)
    raise AttributeError(f"module 'gill_eval.bench' has no attribute {name!r}")
