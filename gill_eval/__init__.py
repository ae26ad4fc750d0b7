"""gill-eval: data preparation, features, decision classifier and benchmarks for GILL-style models."""

__version__ = "0.1.0"
