"""The project's own import graph has no cycle (docs/architecture.md, layers).

Built with ``ast`` from every module under ``gill_eval/``: module-level and function-level imports both
count (an import inside a function that climbs back up a layer is still a cycle, only a delayed one);
imports under ``if TYPE_CHECKING:`` do not (they never run). ``from a.b import c`` is an edge to ``a.b.c``
when that is a module, else to ``a.b``; a module's own parent packages are not edges (every import runs
them, and they import their submodules only lazily).

Between top-level packages the rule is stricter than "no cycle": each package sits on a floor declared in
docs/architecture.md ("Package floors") and imports only packages on lower floors.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "gill_eval"
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_modules(source: str, me: str, is_package: bool, modules: set[str]) -> set[str]:
    """The project ``modules`` that the module ``me`` (its ``source``) imports anywhere in its body."""
    tree = ast.parse(source, filename=me)
    package = me if is_package else me.rpartition(".")[0]
    found: set[str] = set()
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _type_checking_only(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            submodules = {f"{base}.{alias.name}" for alias in node.names} & modules
            found.update(submodules)
            if len(submodules) < len(node.names):  # names defined in ``base`` itself
                found.add(base)
        stack.extend(ast.iter_child_nodes(node))
    return {m for m in found if m in modules and m != me}


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imported_modules(p.read_text(encoding="utf-8"), module_name(p), p.name == "__init__.py", modules)
            for p in paths}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_on_a_known_graph() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_graph_sees_function_level_relative_and_from_imports() -> None:
    source = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import gill_eval.report\n"
              "def f():\n    from gill_eval.bench import api\n    import gill_eval.errors\n"
              "from . import data\nfrom ..store import atomic\n")
    modules = {"gill_eval.bench", "gill_eval.bench.api", "gill_eval.bench.data", "gill_eval.errors",
               "gill_eval.report", "gill_eval.store", "gill_eval.store.atomic", "gill_eval.bench.x"}
    assert imported_modules(source, "gill_eval.bench.x", False, modules) == {
        "gill_eval.bench.api", "gill_eval.bench.data", "gill_eval.errors", "gill_eval.store.atomic"}


def test_gill_eval_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 100 and "gill_eval.bench.registry" in graph["gill_eval.bench.api"]
    assert cycles(graph) == []


def test_cli_modules_follow_one_naming_rule() -> None:
    """A package's command group is its ``cli.py``; a single top-level command lives in its concept's module
    (``pipeline.py``, ``quickstart.py``, ``models/generate.py``): no ``*_cli.py`` (docs/architecture.md)."""
    assert sorted(p.name for p in PACKAGE.rglob("*_cli.py")) == []


def declared_floors(text: str) -> list[list[str]]:
    """The ``floors: a, b < c < ...`` line of docs/architecture.md, bottom floor first."""
    lines = [line for line in text.splitlines() if line.startswith("floors: ")]
    assert len(lines) == 1, "docs/architecture.md must hold exactly one `floors: ...` line"
    return [[name.strip() for name in floor.split(",")] for floor in lines[0].removeprefix("floors: ").split("<")]


def top_level(module: str) -> str:
    """``gill_eval.bench.api`` -> ``bench``; ``gill_eval`` (the package itself) -> ``gill_eval``."""
    return module.split(".")[1] if "." in module else module


def floor_violations(graph: dict[str, set[str]], floors: list[list[str]]) -> list[str]:
    """Every import from a module to one in a package on the same or a higher floor, or in no floor."""
    floor_of = {name: i for i, floor in enumerate(floors) for name in floor}
    found = []
    for module, imports in sorted(graph.items()):
        mine = top_level(module)
        for target in sorted(imports):
            theirs = top_level(target)
            if mine == theirs:
                continue
            if mine not in floor_of or theirs not in floor_of:
                missing = mine if mine not in floor_of else theirs
                found.append(f"{missing}: on no floor; add it to the `floors:` line of docs/architecture.md")
            elif floor_of[theirs] >= floor_of[mine]:
                found.append(f"{module} imports {target}: {theirs} is not below {mine}")
    return sorted(set(found))


def test_floor_checker_on_a_known_graph() -> None:
    floors = declared_floors("intro\nfloors: gill_eval, errors < store < models, metrics < bench\n")
    assert floors == [["gill_eval", "errors"], ["store"], ["models", "metrics"], ["bench"]]
    graph = {"gill_eval.bench.api": {"gill_eval.store.root", "gill_eval.errors", "gill_eval.bench.data"},
             "gill_eval.models.gill.index": {"gill_eval.bench.data", "gill_eval.metrics.fid", "gill_eval"},
             "gill_eval.store.root": {"gill_eval.store.atomic"}, "gill_eval.extra.x": {"gill_eval.errors"}}
    assert floor_violations(graph, floors) == [
        "extra: on no floor; add it to the `floors:` line of docs/architecture.md",
        "gill_eval.models.gill.index imports gill_eval.bench.data: bench is not below models",
        "gill_eval.models.gill.index imports gill_eval.metrics.fid: metrics is not below models"]


def test_packages_import_only_lower_floors() -> None:
    """datasets never reaches features, models never reaches features or bench, exports sit above what they
    export: every top-level package and module is on a declared floor and imports only lower ones."""
    graph = import_graph()
    floors = declared_floors(ARCHITECTURE.read_text(encoding="utf-8"))
    declared = [name for floor in floors for name in floor]
    assert len(declared) == len(set(declared)), "a package on two floors"
    assert floor_violations(graph, floors) == []
    assert set(declared) - {top_level(m) for m in graph} == set(), "floors name packages that do not exist"
