"""The schema of every structured input file gill-eval reads, checked at the boundary (docs/reliability.md).

Each format is a pydantic type (``TypedDict``\\ s, validated in strict mode: no coercion, ``True`` is not
an integer, ``"3"`` is not a number). ``validate(FORMAT, data, path)`` checks a parsed file before any
reader looks inside it and turns the first violation into one line naming the file, the record (its
index, plus its id where the record has one), the field and the expected type, raised as the format's
error class (exit code 2). Readers then only check meaning (index ranges, story lengths, cross-file
consistency), never types.

Shared field types:

- ``Text``: a string that is valid Unicode (a JSON ``"\\udc80"`` escape is not) and at most
  ``MAX_TEXT_CHARS`` long, so it can be written to Parquet as UTF-8;
- ``Int64``: an integer that fits the int64 columns it is stored in (a 2^64 image id is refused);
- ``Number``: a finite int or float (JSON's ``NaN`` and ``Infinity`` literals are refused).

The TSV formats (CC3M, PartiPrompts and the annotation files) have no types beyond text; their column
checks stay in their readers (``datasets/cc3m.py``, ``datasets/partiprompts.py``). Image URLs inside
dataset files follow ``image_url`` (http/https only unless local files are allowed explicitly).
"""

import functools
import typing
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from annotated_types import Len
from pydantic import ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError
from typing_extensions import NotRequired, TypedDict, is_typeddict

from gill_eval.errors import ConfigError, GillEvalError, InputError

MAX_TEXT_CHARS = 1_000_000
"""Longest string field accepted (a caption or question far longer than any real one is a corrupt file)."""
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
Number = Annotated[float, Field(allow_inf_nan=False)]
_CLOSED = ConfigDict(extra="forbid")  # TOML tables: an unknown key is a typo, never ignored


# ------------------------------------------------------------------------------------------ VIST SIS
class VistAnnotation(TypedDict):
    story_id: Text
    album_id: Text
    photo_flickr_id: Text
    worker_arranged_photo_order: Annotated[int, Field(ge=0, le=999)]  # positions 0..4; larger is corruption
    text: Text
    original_text: Text


class VistImage(TypedDict):
    id: Text
    url_o: NotRequired[Text]


class VistSis(TypedDict):
    annotations: list[Annotated[list[VistAnnotation], Len(1, 1)]]
    images: list[VistImage]


# ------------------------------------------------------------------------------------------ VisDial v1.0
class VisdialRound(TypedDict):
    question: Int64
    answer: NotRequired[Int64]  # absent in the test split's last round
    answer_options: NotRequired[list[Int64]]
    gt_index: NotRequired[Int64]


class VisdialDialog(TypedDict):
    image_id: Int64
    caption: Text
    dialog: list[VisdialRound]


class VisdialData(TypedDict):
    questions: list[Text]
    answers: list[Text]
    dialogs: list[VisdialDialog]


class VisdialDialogs(TypedDict):
    split: Text
    data: VisdialData


class VisdialDense(TypedDict):
    image_id: Int64
    round_id: Int64
    gt_relevance: NotRequired[list[Number]]  # v1.0 val
    relevance: NotRequired[list[Number]]  # v1.0 train subset


# ------------------------------------------------------------------------------------------ COCO captions
class CocoImage(TypedDict):
    id: Int64
    file_name: Text


class CocoCaption(TypedDict):
    id: Int64
    image_id: Int64
    caption: Text


class CocoCaptions(TypedDict):
    """``captions_val2014.json`` and ``captions_val2017.json`` share this layout."""

    images: list[CocoImage]
    annotations: list[CocoCaption]


# ------------------------------------------------------------------------------------------ VQAv2
class VqaQuestion(TypedDict):
    image_id: Int64
    question: Text
    question_id: Int64


class VqaQuestions(TypedDict):
    """``v2_OpenEnded_mscoco_val2014_questions.json``."""

    questions: list[VqaQuestion]


class VqaAnswer(TypedDict):
    answer: Text
    answer_confidence: NotRequired[Text]  # "yes" / "maybe" / "no"; not used by the VQA accuracy
    answer_id: NotRequired[Int64]


class VqaAnnotation(TypedDict):
    question_id: Int64
    image_id: Int64
    question_type: Text
    answer_type: Text
    multiple_choice_answer: Text
    answers: list[VqaAnswer]


class VqaAnnotations(TypedDict):
    """``v2_mscoco_val2014_annotations.json``."""

    annotations: list[VqaAnnotation]


# ------------------------------------------------------------------------------------------ pipeline TOML
class PipelineHead(TypedDict):
    __pydantic_config__ = _CLOSED  # type: ignore[misc]
    report: Text
    title: NotRequired[Text]
    html: NotRequired[Text]
    baseline: NotRequired[Text]
    seeds: NotRequired[Text | Int64]
    scorers: NotRequired[Text]
    device: NotRequired[Text]
    batch_size: NotRequired[Annotated[int, Field(ge=1, le=INT64_MAX)]]
    preamble: NotRequired[list[Text]]


class PipelineModel(TypedDict):
    __pydantic_config__ = _CLOSED  # type: ignore[misc]
    name: Text
    options: NotRequired[dict[str, Any]]  # typed by the model itself (models/base.py)


class PipelineRun(TypedDict):
    __pydantic_config__ = _CLOSED  # type: ignore[misc]
    benchmark: Text
    models: NotRequired[list[Text]]
    contexts: NotRequired[list[Text]]
    num: NotRequired[Annotated[int, Field(ge=1, le=INT64_MAX)]]
    limit: NotRequired[Annotated[int, Field(ge=1, le=INT64_MAX)]]


class PipelineFile(TypedDict):
    __pydantic_config__ = _CLOSED  # type: ignore[misc]
    pipeline: PipelineHead
    models: NotRequired[dict[str, PipelineModel]]
    run: NotRequired[list[PipelineRun]]


# ------------------------------------------------------------------------------------------ formats
@dataclass(frozen=True)
class Format:
    """One input format: its root type, how its locations are written, its error class, its record ids."""

    name: str
    root: Any
    toml: bool = False
    error: type[GillEvalError] = InputError
    id_keys: tuple[str, ...] = ()

    @functools.cached_property
    def adapter(self) -> TypeAdapter[Any]:
        return TypeAdapter(self.root)


VIST_SIS = Format("vist-sis", VistSis, id_keys=("story_id", "id"))
VISDIAL_DIALOGS = Format("visdial-dialogs", VisdialDialogs, id_keys=("image_id",))
VISDIAL_DENSE = Format("visdial-dense", list[VisdialDense], id_keys=("image_id",))
COCO_CAPTIONS = Format("coco-captions", CocoCaptions, id_keys=("id",))
VQA_QUESTIONS = Format("vqav2-questions", VqaQuestions, id_keys=("question_id",))
VQA_ANNOTATIONS = Format("vqav2-annotations", VqaAnnotations, id_keys=("question_id",))
PIPELINE = Format("pipeline-toml", PipelineFile, toml=True, error=ConfigError)
FORMATS = (VIST_SIS, VISDIAL_DIALOGS, VISDIAL_DENSE, COCO_CAPTIONS, VQA_QUESTIONS, VQA_ANNOTATIONS, PIPELINE)


def validate(fmt: Format, data: Any, path: str | Path) -> Any:
    """``data`` (a parsed file) when it matches ``fmt``; else ``fmt.error`` with one line for the first violation."""
    try:
        fmt.adapter.validate_python(data, strict=True)
    except ValidationError as exc:
        raise fmt.error(describe(fmt, exc.errors(include_url=False), data, path)) from None
    return data


# ------------------------------------------------------------------------------------------ image URLs
WEB_SCHEMES = ("http", "https")


def image_url(url: str, where: str, base: Path, allow_local: bool = False) -> str:
    """The address to download for an image URL found in a dataset file, or ``InputError`` naming ``where``.

    Only http(s) by default: a dataset file from elsewhere must not make gill-eval read files of the machine
    that runs it. With ``allow_local`` (``--allow-local-urls``) a ``file://`` URL is kept and a plain path
    (relative to ``base``, the dataset file's folder) becomes one; any other scheme is always refused.
    """
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme in WEB_SCHEMES:
        return url
    local = scheme in ("file", "")
    if not local:
        raise InputError(f"{where}: {url[:80]!r} uses the scheme {scheme!r}; only http and https are downloaded")
    if not allow_local:
        raise InputError(f"{where}: {url[:80]!r} is a local file, not an http(s) URL; pass --allow-local-urls "
                         "to read local files named by this dataset file")
    return url if scheme == "file" else (base / url).resolve().as_uri()


# ------------------------------------------------------------------------------------------ messages
_RANGE = ("greater_than_equal", "less_than_equal")
_EXPECTED = {
    "string_type": "str", "int_type": "int", "float_type": "number", "list_type": "list", "bool_type": "bool",
    "dict_type": "dict", "typed_dict_type": "dict", "model_type": "dict",
}


def _walk(data: Any, loc: tuple[Any, ...]) -> tuple[list[Any], Any]:
    """The part of ``loc`` that exists in ``data`` and the value there (pydantic adds union member tags)."""
    done: list[Any] = []
    value = data
    for part in loc:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
            value = value[part]
        else:
            break
        done.append(part)
    return done, value


def _type_at(root: Any, loc: list[Any]) -> Any:
    """The declared type at ``loc``, with its ``Annotated`` constraints (for allowed keys and length bounds)."""
    tp = root
    for part in loc:
        tp = _bare(tp)
        if is_typeddict(tp):
            tp = typing.get_type_hints(tp, include_extras=True)[part]
        elif typing.get_origin(tp) in (dict, list):
            tp = typing.get_args(tp)[-1]
    while typing.get_origin(tp) is NotRequired:
        tp = typing.get_args(tp)[0]
    return tp


def _bare(tp: Any) -> Any:
    while typing.get_origin(tp) in (Annotated, NotRequired):
        tp = typing.get_args(tp)[0]
    return tp


def _got(value: Any) -> str:
    if value is None:
        return "null"
    name = type(value).__name__
    if isinstance(value, (str, int, float)):
        text = repr(value) if not isinstance(value, int) or isinstance(value, bool) else str(value)
        return f"{name} {text[:60]}{'...' if len(text) > 60 else ''}"
    return name


def _place(record: list[Any]) -> str:
    """A location inside a document as messages write it: ``data.dialogs[2].dialog[0]``."""
    text = ""
    for part in record:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _where(fmt: Format, record: list[Any]) -> str:
    if not fmt.toml:
        return f": {_place(record)}" if record else ""
    # TOML: the table ([pipeline], [models.X], [[run]] #N), then any place inside one of its values
    table = record[:1] if record[:1] == ["pipeline"] else record[:2]
    label = (f"[[run]] #{table[1] + 1}" if table[:1] == ["run"] and len(table) > 1
             else f"[{'.'.join(map(str, table))}]" if table else "")
    inner = _place(record[len(table):])
    return (f" {label}" if label else "") + (f": {inner}" if inner else "")


def _record_id(fmt: Format, data: Any, record: list[Any], field: Any) -> str:
    _, value = _walk(data, tuple(record))
    if not isinstance(value, dict):
        return ""
    for key in fmt.id_keys:
        if key != field and isinstance(value.get(key), (str, int)) and not isinstance(value.get(key), bool):
            return f" (record {key} {repr(value[key])[:60]})"
    return ""


def _list_words(fmt: Format, loc: list[Any]) -> str:
    """``list``, or the list's declared length (``a one-element list``, ``a list of 2 to 5 items``)."""
    bounds = {k: getattr(m, k) for m in getattr(_type_at(fmt.root, loc), "__metadata__", ())
              for k in ("min_length", "max_length") if getattr(m, k, None) is not None}
    low, high = bounds.get("min_length", 0), bounds.get("max_length")
    if (low, high) == (0, None):
        return "list"
    return "a one-element list" if (low, high) == (1, 1) else f"a list of {low} to {high or 'any number of'} items"


def describe(fmt: Format, errors: list[Any], data: Any, path: str | Path) -> str:
    """One line for the first pydantic error: ``<file>: <record>: key '<field>' should be <type>, got ...``."""
    done, value = _walk(data, errors[0]["loc"])
    # a union's members all fail at the same place; a range error says more than "should be str"
    group = [e for e in errors if _walk(data, e["loc"])[0] == done]
    first = next((e for e in group if e["type"] in _RANGE), errors[0])
    kind, ctx = first["type"], first.get("ctx") or {}
    if kind == "missing":
        record, field = done, first["loc"][len(done)]
    elif done and isinstance(done[-1], str):
        record, field = done[:-1], done[-1]
    else:  # the entry itself (a list item, or the whole file) has the wrong shape
        record, field = done, None
    subject = f"key {field!r} should be" if field is not None else "expected"
    if kind == "missing":
        what = f"missing key {field!r}" + (f" (a [{field}] table)" if fmt.toml and not record else "")
    elif kind == "extra_forbidden":
        extra = [str(e["loc"][-1]) for e in errors if e["type"] == "extra_forbidden" and list(e["loc"][:-1]) == record]
        allowed = sorted(typing.get_type_hints(_bare(_type_at(fmt.root, record))))
        what = f"unknown key(s) {', '.join(extra)} (allowed: {', '.join(allowed)})"
    elif kind == "string_unicode":
        what = f"{subject} valid Unicode text, got a lone surrogate escape (such as \\udc80); fix the file's encoding"
    elif kind in _EXPECTED:
        names = " or ".join(dict.fromkeys(_EXPECTED[e["type"]] for e in group if e["type"] in _EXPECTED))
        names = {"dict": "dict (a table)" if fmt.toml else "dict", "list": _list_words(fmt, done)}.get(names, names)
        what = f"{subject} {names}, got {_got(value)}"
        if fmt.toml and names == "list" and isinstance(value, str):
            what += f' (write {field} = ["{value}"])'
    elif kind in _RANGE:
        side, bound = ("at least", ctx.get("ge")) if kind == "greater_than_equal" else ("at most", ctx.get("le"))
        word = " (a 64-bit integer)" if bound in (INT64_MIN, INT64_MAX) else ""
        what = (f"key {field!r} must be" if field is not None else "expected a value") + f" {side} {bound}{word}, got {_got(value)}"
    elif kind in ("too_short", "too_long"):
        what = f"{subject} {_list_words(fmt, done)}, got a list of {ctx.get('actual_length')}"
    elif kind == "finite_number":
        what = f"{subject} a finite number, got {_got(value)}"
    elif kind == "string_too_long":
        what = f"{subject} at most {MAX_TEXT_CHARS} characters long, got {len(value)}"
    else:
        what = f"{f'key {field!r}' if field is not None else 'value'}: {first['msg']}"
    line = f"{path}{_where(fmt, record)}: {what}" + ("" if fmt.toml else _record_id(fmt, data, record, field))
    return line.replace("\r", "\\r").replace("\n", "\\n")  # keys taken from the file may hold line breaks
