"""Find models by name through the entry-point group ``gill_eval.models`` and build them from options.

Built-ins register exactly like third-party packages (see pyproject.toml), so a user adds a model by
declaring an entry point in their own package: no fork, no registration call. Classes are imported only
when a model is listed or loaded, so a broken or heavy plugin does not slow down or break other commands.

Options arrive as strings (``--model-opt key=value``) and are converted by the type annotations of the
model's ``Options`` dataclass; an unknown key or a value of the wrong type is a ``ConfigError`` that names
the valid keys, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Literal, Union

from gill_eval.errors import ConfigError
from gill_eval.models.base import Model
from gill_eval.store.names import check_name

GROUP = "gill_eval.models"

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_NONE = {"none", "null"}


def _entry_points() -> dict[str, EntryPoint]:
    """Entry points by name; the first distribution wins when two declare the same name."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        found.setdefault(ep.name, ep)
    return found


def model_names() -> list[str]:
    """Every registered model name, sorted."""
    return sorted(_entry_points())


def suggest(name: str, candidates: list[str]) -> list[str]:
    """Close names for a typo: difflib's closest matches, then names that contain it or that it contains."""
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.5)
    lowered = name.lower()
    for candidate in candidates:
        if candidate not in close and (lowered in candidate or candidate in lowered):
            close.append(candidate)
    return close[:3]


def _did_you_mean(name: str, candidates: list[str]) -> str:
    matches = suggest(name, candidates)
    return f" (did you mean {' or '.join(repr(m) for m in matches)}?)" if matches else ""


def model_class(name: str) -> type[Model]:
    """The class registered as ``name``; unknown names get suggestions, broken plugins a clear error."""
    points = _entry_points()
    if name not in points:
        known = ", ".join(sorted(points)) or "none"
        raise ConfigError(f"unknown model {name!r}{_did_you_mean(name, sorted(points))}; known models: {known}")
    ep = points[name]
    try:
        cls = ep.load()
    except Exception as exc:  # a plugin failing to import is reported as that plugin's problem
        raise ConfigError(f"model {name!r} ({ep.value}) failed to import: {type(exc).__name__}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Model)):
        raise ConfigError(f"model {name!r}: entry point {ep.value} is not a gill_eval.models.base.Model subclass")
    check_name("model name", name, f"entry point {ep.value}")  # plugin names reach paths (docs/reliability.md)
    if cls.name != name:
        raise ConfigError(
            f"model {name!r}: entry point {ep.value} declares name = {cls.name!r}; set name = {name!r} on the class"
        )
    return cls


def _check_requirements(cls: type[Model]) -> None:
    missing = cls.missing_requirements()
    if missing:
        hint = f": {cls.install_hint}" if cls.install_hint else ""
        raise ConfigError(f"model {cls.name!r} needs {', '.join(missing)}, which is not installed{hint}")


def option_types(options_cls: type) -> dict[str, Any]:
    """Field name -> resolved type annotation of an ``Options`` dataclass."""
    hints = typing.get_type_hints(options_cls)
    return {field.name: hints[field.name] for field in dataclasses.fields(options_cls)}


def _type_name(tp: Any) -> str:
    args = typing.get_args(tp)
    if typing.get_origin(tp) is Literal:
        return " | ".join(str(a) for a in args)
    if _is_optional(tp):
        inner = [a for a in args if a is not type(None)][0]
        return f"{_type_name(inner)} | none"
    return getattr(tp, "__name__", str(tp))


def _is_optional(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    return origin in (Union, types.UnionType) and type(None) in typing.get_args(tp)


def convert_value(text: str, tp: Any) -> Any:
    """Convert one option string to ``tp``; raises ``ValueError`` with what was expected."""
    if _is_optional(tp):
        if text.strip().lower() in _NONE:
            return None
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return convert_value(text, inner[0])
    if typing.get_origin(tp) is Literal:
        choices = typing.get_args(tp)
        if text in choices:
            return text
        raise ValueError(f"expected one of {', '.join(map(str, choices))}")
    if tp is bool:
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError("expected true or false")
    if tp is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError("expected an integer") from None
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError("expected a number") from None
    if tp is str:
        return text
    raise ValueError(f"options of type {tp!r} cannot be set from the command line")


def _check_typed(value: Any, tp: Any) -> bool:
    if _is_optional(tp):
        return value is None or any(_check_typed(value, a) for a in typing.get_args(tp) if a is not type(None))
    if typing.get_origin(tp) is Literal:
        return value in typing.get_args(tp)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True  # a generic annotation (e.g. list[int]): left to the Options' own validation


def build_options(cls: type[Model], raw: Mapping[str, Any]) -> Any:
    """The model's ``Options`` from ``raw``: strings are converted by field type, other values checked.

    Validation beyond types (ranges, presets) belongs in the Options' ``__post_init__``, which may raise
    ``ConfigError`` itself.
    """
    fields = option_types(cls.Options)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            valid = ", ".join(fields) or "none"
            raise ConfigError(
                f"model {cls.name!r} has no option {key!r}{_did_you_mean(key, list(fields))}; valid options: {valid}"
            )
        tp = fields[key]
        if isinstance(value, str):
            try:
                values[key] = convert_value(value, tp)
            except ValueError as exc:
                raise ConfigError(f"model {cls.name!r} option {key}={value!r}: {exc}") from None
        elif _check_typed(value, tp):
            values[key] = value
        else:
            raise ConfigError(f"model {cls.name!r} option {key}={value!r}: expected {_type_name(tp)}")
    try:
        return cls.Options(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model {cls.name!r} options: {exc}") from None


def load_model(name: str, options: Mapping[str, Any] | None = None) -> Model:
    """Build the model registered as ``name`` with typed ``options`` (strings from the CLI, or values)."""
    cls = model_class(name)
    built = build_options(cls, options or {})
    _check_requirements(cls)
    return cls(built)


def parse_option_pairs(pairs: list[str]) -> dict[str, str]:
    """``["k=v", ...]`` from ``--model-opt`` into a dict; a malformed or repeated pair is an error."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--model-opt {pair!r}: expected KEY=VALUE")
        if key in parsed:
            raise ConfigError(f"--model-opt {key!r} given twice")
        parsed[key] = value
    return parsed


def describe_options(cls: type[Model]) -> list[dict[str, Any]]:
    """Name, type, default and help of each option, for ``models list`` and ``--help`` texts."""
    fields = option_types(cls.Options)
    described = []
    for field in dataclasses.fields(cls.Options):
        default = field.default if field.default is not dataclasses.MISSING else None
        described.append(
            {"name": field.name, "type": _type_name(fields[field.name]), "default": default,
             "help": field.metadata.get("help", "")}
        )
    return described


def list_models() -> list[dict[str, Any]]:
    """One row per registered model; a plugin that fails to import is listed with its error."""
    rows = []
    for name, ep in sorted(_entry_points().items()):
        try:
            cls = model_class(name)
        except ConfigError as exc:
            rows.append({"name": name, "entry_point": ep.value, "capabilities": [], "description": "",
                         "installed": False, "install_hint": "", "options": [], "error": str(exc)})
            continue
        rows.append(
            {
                "name": name,
                "entry_point": ep.value,
                "capabilities": sorted(cls.capabilities),
                "description": cls.description,
                "installed": not cls.missing_requirements(),
                "install_hint": cls.install_hint,
                "options": describe_options(cls),
                "error": None,
            }
        )
    return rows
