"""Find benchmarks by name through the entry-point group ``gill_eval.benchmarks`` (docs/benchmarks.md).

A benchmark is one module that declares a ``BenchmarkSpec``: its name, kind, default contexts, metrics,
protocol version, report layout and how to build it. Built-ins (``gill_eval/bench/specs/``) register
exactly like third-party packages (see pyproject.toml), so adding a benchmark is one module plus one
entry point. ``api``, ``runner``, ``protocol`` and the report ask this registry and never test a name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Literal

from gill_eval.errors import ConfigError
from gill_eval.store.names import check_name

GROUP = "gill_eval.benchmarks"
SIMILARITY, FID, RETRIEVAL, TEXT = "similarity", "fid", "retrieval", "text"
Kind = Literal["similarity", "fid", "retrieval", "text"]
PaperCells = Literal["per_metric_context", "list", "first", "scalar"]


@dataclass(frozen=True)
class ProtocolVersion:
    """``version``: bumped on any change to a score; ``generation``: the version at which what the model
    receives (prompts, images, sampler) last changed, so results at or after it only need rescoring."""

    version: int
    generation: int


@dataclass
class Layout:
    """One report table: which benchmark feeds it, its metrics and column contexts, and how the published
    numbers (``paper_tables.json`` under ``paper_key``) map onto its cells: ``per_metric_context`` (a dict
    per metric keyed by context, renamed through ``paper_columns``), ``list`` (one value per metric),
    ``first`` (the first value of a list) or ``scalar``. ``extra_metrics``: columns the paper does not have
    (KID, CLIPScore), shown after the paper's, never in their place. ``render``: a table whose layout the
    generic one cannot express (Table 7 joins two benchmarks), named as "module:function" (report sits
    above bench, so bench never imports it) and returning ``report.tables.RenderedTable`` or None."""

    key: str
    title: str
    benchmark: str
    metrics: list[str]
    contexts: list[str]
    context_titles: dict[str, str]
    paper_key: str | None = None
    notes: list[str] = field(default_factory=list)
    paper_cells: PaperCells = "scalar"
    paper_columns: dict[str, str] = field(default_factory=dict)
    extra_metrics: list[str] = field(default_factory=list)
    render: str | None = None  # "module:function" of a table with its own layout (layout, results, baseline, paper)


@dataclass(frozen=True)
class ContextPlot:
    """A plot of each metric against context size: the x axis label and each context's (position, tick)."""

    axis: str
    position: Callable[[str], tuple[float, str]]


@dataclass(frozen=True)
class BenchmarkSpec:
    """Everything gill-eval needs to know about one benchmark.

    ``build(num)`` returns the benchmark object (``runner.GenerationBenchmark`` for the similarity and FID
    kinds; ``embed``/``run`` for retrieval; ``bench.text.TextBenchmark`` for text); ``num`` is the FID caption count (None elsewhere).
    ``sampler_preset``: the preset given to models whose options inherit ``SamplerOptions`` unless the user
    sets one.
    ``cli_context``: a context label as the bench command's arguments (for rerun hints; None: no
    per-context option). ``order``: position in reports and galleries (built-ins 10..50)."""

    name: str
    kind: Kind
    layout: Layout
    protocol: ProtocolVersion
    protocol_text: str
    build: Callable[[int | None], Any]
    sampler_preset: str | None = None
    cli_context: Callable[[str], str] | None = None
    plot: ContextPlot | None = None
    order: int = 100

    @property
    def contexts(self) -> list[str]:
        """The default contexts (the paper's columns)."""
        return list(self.layout.contexts)

    @property
    def metrics(self) -> list[str]:
        return list(self.layout.metrics)


def _entry_points() -> dict[str, EntryPoint]:
    """Entry points by name; the first distribution wins when two declare the same name."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        found.setdefault(ep.name, ep)
    return found


def _load(name: str, ep: EntryPoint) -> BenchmarkSpec:
    try:
        spec = ep.load()
    except Exception as exc:  # a plugin failing to import is reported as that plugin's problem
        raise ConfigError(f"benchmark {name!r} ({ep.value}) failed to import: {type(exc).__name__}: {exc}") from exc
    check_name("benchmark name", name, f"entry point {ep.value}")  # names result folders (docs/reliability.md)
    if not isinstance(spec, BenchmarkSpec):
        raise ConfigError(f"benchmark {name!r}: entry point {ep.value} is not a gill_eval.bench.registry.BenchmarkSpec")
    if spec.name != name or spec.layout.benchmark != name:
        raise ConfigError(f"benchmark {name!r}: entry point {ep.value} declares name {spec.name!r} "
                          f"(layout {spec.layout.benchmark!r}); both must be {name!r}")
    return spec


def benchmark_names() -> list[str]:
    """Every registered benchmark name, in report order."""
    return [spec.name for spec in benchmarks()]


def benchmarks() -> list[BenchmarkSpec]:
    """Every registered benchmark that imports, in report order (``order``, then name)."""
    specs = []
    for name, ep in _entry_points().items():
        try:
            specs.append(_load(name, ep))
        except ConfigError:
            continue  # listed with its error by ``find``; one broken plugin does not hide the others
    return sorted(specs, key=lambda s: (s.order, s.name))


def find(name: str) -> BenchmarkSpec | None:
    """The benchmark registered as ``name``, or None (results of an uninstalled plugin stay readable)."""
    ep = _entry_points().get(name)
    return None if ep is None else _load(name, ep)


def benchmark(name: str) -> BenchmarkSpec:
    """The benchmark registered as ``name``; unknown names get suggestions."""
    from gill_eval.models.registry import suggest

    spec = find(name)
    if spec is None:
        known = sorted(_entry_points())
        close = suggest(name, known)
        hint = f" (did you mean {' or '.join(repr(m) for m in close)}?)" if close else ""
        raise ConfigError(f"unknown benchmark {name!r}{hint}; known: {', '.join(known) or 'none'} "
                          "(a plugin registers one under the entry-point group gill_eval.benchmarks)")
    return spec


def layouts() -> list[Layout]:
    """The report tables of every registered benchmark, in report order."""
    return [spec.layout for spec in benchmarks()]
