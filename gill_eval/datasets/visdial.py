"""`gill-eval prepare visdial`: VisDial v1.0 dialogs into one row per dialog, images from the zip.

Format facts (docs/protocols.md, VisDial): questions and answers are indices into shared string lists;
questions are stored without "?". GILL's prompt line is ``"Q: " + question + "?"``, always, with no
stripping, so each question is stored here with that "?" appended unconditionally (a question already
ending in "?" gets a second one, as in the official script). Images are
``VisualDialog_<split>_<image_id:012d>.jpg`` where ``<split>`` is the file's own ``split`` field (``val2018``). Dense annotations, when given, are only a consistency
check: same length and order as the dialogs, same image ids, round ids within the dialog.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from gill_eval.datasets.archive import open_image_source
from gill_eval.datasets.local_images import write_local_image_shards
from gill_eval.datasets.output import PreparedDataset, coverage
from gill_eval.datasets.sources import load_json, resolve_source
from gill_eval.errors import InputError
from gill_eval.schema import VISDIAL_DENSE, VISDIAL_DIALOGS, validate
from gill_eval.store import Manifest, data_root, sha256_file
from gill_eval.store.names import check_name

EXAMPLE_SCHEMA = pa.schema([
    ("key", pa.string()), ("image_id", pa.int64()), ("caption", pa.string()),
    ("questions", pa.list_(pa.string())), ("answers", pa.list_(pa.string())), ("rounds", pa.int32()),
])


def dataset_name(split: str) -> str:
    """``visdial`` for val2018 (what the benchmarks read), ``visdial-<split>`` for other files."""
    return "visdial" if split == "val2018" else f"visdial-{split}"


def _question(text: str) -> str:
    """The question as the official prompt writes it: the file's text plus "?", never stripped."""
    return text + "?"


def parse_dialogs(path: Path, data: Any) -> tuple[str, list[dict[str, Any]]]:
    """(split name from the file, one example per dialog); checked by ``schema.VISDIAL_DIALOGS``, then indices."""
    validate(VISDIAL_DIALOGS, data, path)
    split, questions, answers = data["split"], data["data"]["questions"], data["data"]["answers"]
    examples: list[dict[str, Any]] = []
    first_index: dict[int, int] = {}
    for i, dialog in enumerate(data["data"]["dialogs"]):
        where = f"{path}: data.dialogs[{i}]"
        image_id = dialog["image_id"]
        if image_id in first_index:
            raise InputError(f"{where}: image_id {image_id} already used by data.dialogs[{first_index[image_id]}]")
        first_index[image_id] = i
        caption, rounds = dialog["caption"], dialog["dialog"]
        qs, ans = [], []
        for r, turn in enumerate(rounds):
            at = f"{where}.dialog[{r}]"
            q = turn["question"]
            if not 0 <= q < len(questions):
                raise InputError(f"{at}: question index {q} outside data.questions (length {len(questions)})")
            qs.append(_question(questions[q]))
            a = turn.get("answer")
            if a is not None and not 0 <= a < len(answers):
                raise InputError(f"{at}: answer index {a!r} outside data.answers (length {len(answers)})")
            ans.append(answers[a] if a is not None else None)
        examples.append({"key": str(image_id), "image_id": image_id, "caption": caption,
                         "questions": qs, "answers": ans, "rounds": len(rounds)})
    return split, examples


def check_dense(path: Path, data: Any, examples: list[dict[str, Any]]) -> int:
    """Check dense annotations (``schema.VISDIAL_DENSE``) against the dialogs (order, image id, round id)."""
    validate(VISDIAL_DENSE, data, path)
    if len(data) != len(examples):
        raise InputError(f"{path}: {len(data)} entries but the dialogs file has {len(examples)} dialogs")
    for i, (entry, example) in enumerate(zip(data, examples)):
        where = f"{path}: [{i}]"
        image_id = entry["image_id"]
        if image_id != example["image_id"]:
            raise InputError(f"{where}: image_id {image_id} but dialog {i} has image_id {example['image_id']} "
                             "(dense annotations must follow the dialogs' order)")
        round_id = entry["round_id"]
        if not 1 <= round_id <= example["rounds"]:
            raise InputError(f"{where}: round_id {round_id} outside 1..{example['rounds']}")
        if "gt_relevance" not in entry and "relevance" not in entry:
            raise InputError(f"{where}: missing key 'gt_relevance' (or 'relevance' in the train file)")
    return len(data)


def prepare_visdial(
    dialogs_path: str, images: str, dense: str | None = None, shard_size: int = 1000, overwrite: bool = False
) -> dict[str, Any]:
    """One row per dialog plus the dialogs' images as image shards; the manifest records coverage."""
    source = resolve_source(dialogs_path, data_root() / "sources" / "visdial")
    split, examples = parse_dialogs(source.path, load_json(source.path))
    sources = [source.record()]
    dense_count = None
    if dense is not None:
        dense_source = resolve_source(dense, data_root() / "sources" / "visdial")
        dense_count = check_dense(dense_source.path, load_json(dense_source.path), examples)
        sources.append(dense_source.record())
    name = dataset_name(check_name("split", split, f"{source.path}: split"))  # a path component: no "../"
    with open_image_source(images) as image_source:
        images_sha = sha256_file(image_source.path) if image_source.path.is_file() else None
        fingerprint = {"sources": {"dialogs": source.sha256, "images": images_sha or str(image_source.path)},
                       "options": {"shard_size": shard_size}}
        prepared = PreparedDataset.open(name, fingerprint, overwrite)
        prepared.write_examples(pa.Table.from_pylist(examples, schema=EXAMPLE_SCHEMA), 10_000)
        items = [(e["key"], f"VisualDialog_{split}_{e['image_id']:012d}.jpg") for e in examples]
        write_local_image_shards(items, image_source, prepared.images_dir, shard_size)
    sources.append({"path": str(Path(images)), **({"sha256": images_sha} if images_sha else {})})
    counts = {
        "examples": len(examples),
        "dialogs_with_10_rounds": sum(e["rounds"] == 10 for e in examples),
        "dense_annotations_checked": dense_count,
        "images": coverage(prepared.images_dir, len(examples)),
    }
    manifest = Manifest(dataset=name, options={"split": split, "shard_size": shard_size}, counts=counts,
                        sources=sources)
    prepared.finish(manifest)
    return {"dataset": name, "dir": str(prepared.dir), **counts}
