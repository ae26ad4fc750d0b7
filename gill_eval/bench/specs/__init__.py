"""The built-in benchmarks, one module each, registered under the entry-point group ``gill_eval.benchmarks``
(pyproject.toml) exactly as a plugin's would be (docs/benchmarks.md)."""
