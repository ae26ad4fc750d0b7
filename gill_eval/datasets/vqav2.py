"""`gill-eval prepare vqav2`: VQAv2 val questions and answers; the images are COCO val2014's (Table 7).

Inputs: the official ``v2_OpenEnded_mscoco_val2014_questions.json`` (``questions``: ``question_id``,
``image_id``, ``question``) and ``v2_mscoco_val2014_annotations.json`` (``annotations``: ``question_id``,
``image_id``, ``question_type``, ``answer_type``, ``multiple_choice_answer``, ``answers`` (ten
``{answer, answer_confidence, answer_id}``)). A file whose ``data_subtype`` is not ``val2014`` is refused.
Optionally the train annotations, for the per-question-type prior baseline (the most frequent
``multiple_choice_answer`` of each question type, ties by answer text).

Images are not stored again: questions point at ``datasets/coco`` (``prepare coco``, val2014), whose
manifest hash is recorded; a question whose image id is not among that file's images is an input error, one
whose image failed to decode counts in the coverage report. Output ``datasets/vqav2/``: one example row per
question (in question-id order) and, with train annotations, ``prior/`` (question type -> answer).

Both files are checked against their schemas first (``gill_eval.schema``, docs/reliability.md: one line naming
file, record and field); the parsers then check only meaning (split, duplicates, at least one answer).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa

from gill_eval.datasets.catalog import require_prepared
from gill_eval.datasets.output import PreparedDataset, image_statuses, write_table_shards
from gill_eval.datasets.sources import load_json, resolve_source
from gill_eval.errors import InputError
from gill_eval.schema import VQA_ANNOTATIONS, VQA_QUESTIONS, validate
from gill_eval.store import Manifest, data_root, read_manifest

NAME = "vqav2"
IMAGES_DATASET = "coco"
SPLIT = "val2014"
EXAMPLE_SCHEMA = pa.schema([
    ("key", pa.string()), ("question_id", pa.int64()), ("image_id", pa.int64()), ("image_key", pa.string()),
    ("question", pa.string()), ("question_type", pa.string()), ("answer_type", pa.string()),
    ("multiple_choice_answer", pa.string()), ("answers", pa.list_(pa.string())),
])
PRIOR_SCHEMA = pa.schema([("question_type", pa.string()), ("answer", pa.string()), ("count", pa.int64())])


def _check_split(path: Path, data: Any, expected: str) -> None:
    subtype = data.get("data_subtype") if isinstance(data, dict) else None
    if subtype is not None and subtype != expected:
        raise InputError(f"{path}: data_subtype is {subtype!r}, expected {expected!r} (pass the {expected} file)")


def parse_questions(path: Path, data: Any) -> dict[int, tuple[int, str]]:
    """question id -> (image id, question text)."""
    _check_split(path, data, SPLIT)
    validate(VQA_QUESTIONS, data, path)
    out: dict[int, tuple[int, str]] = {}
    for i, entry in enumerate(data["questions"]):
        qid = entry["question_id"]
        if qid in out:
            raise InputError(f"{path}: questions[{i}]: duplicate question_id {qid}")
        out[qid] = (entry["image_id"], entry["question"])
    return out


def parse_annotations(path: Path, data: Any, split: str) -> dict[int, dict[str, Any]]:
    """question id -> its annotation (image id, types, the ten answers, the multiple-choice answer)."""
    _check_split(path, data, split)
    validate(VQA_ANNOTATIONS, data, path)
    out: dict[int, dict[str, Any]] = {}
    for i, entry in enumerate(data["annotations"]):
        where = f"{path}: annotations[{i}]"
        qid = entry["question_id"]
        if qid in out:
            raise InputError(f"{where}: duplicate question_id {qid}")
        if not entry["answers"]:
            raise InputError(f"{where}: no answers")
        out[qid] = {
            "image_id": entry["image_id"],
            "question_type": entry["question_type"],
            "answer_type": entry["answer_type"],
            "multiple_choice_answer": entry["multiple_choice_answer"],
            "answers": [a["answer"] for a in entry["answers"]],
        }
    return out


def question_type_prior(annotations: dict[int, dict[str, Any]]) -> list[tuple[str, str, int]]:
    """(question type, its most frequent multiple-choice answer, how often), ties by answer text."""
    counts: dict[str, Counter[str]] = {}
    for ann in annotations.values():
        counts.setdefault(ann["question_type"], Counter())[ann["multiple_choice_answer"]] += 1
    rows = []
    for qtype in sorted(counts):
        answer, n = min(counts[qtype].items(), key=lambda kv: (-kv[1], kv[0]))
        rows.append((qtype, answer, n))
    return rows


def _examples(qpath: Path, questions: dict[int, tuple[int, str]], apath: Path,
              annotations: dict[int, dict[str, Any]], coco_keys: set[str]) -> pa.Table:
    rows = []
    for qid in sorted(questions):
        image_id, text = questions[qid]
        ann = annotations.get(qid)
        if ann is None:
            raise InputError(f"{apath}: no annotation for question_id {qid} of {qpath} (pass the matching files)")
        if ann["image_id"] != image_id:
            raise InputError(f"{apath}: question_id {qid} has image_id {ann['image_id']}, {qpath} says {image_id}")
        if str(image_id) not in coco_keys:
            raise InputError(f"{qpath}: question_id {qid} asks about image {image_id}, which is not in the prepared "
                             f"COCO val2014 images (datasets/{IMAGES_DATASET}); run `gill-eval prepare coco` with "
                             "captions_val2014.json and val2014")
        rows.append({"key": str(qid), "question_id": qid, "image_id": image_id, "image_key": str(image_id),
                     "question": text, **ann})
    return pa.Table.from_pylist(rows, schema=EXAMPLE_SCHEMA)


def prepare_vqav2(questions_path: str, annotations_path: str, train_annotations: str | None = None,
                  overwrite: bool = False) -> dict[str, Any]:
    """Write one example per val question (images from ``datasets/coco``) and, optionally, the prior."""
    coco_dir = require_prepared(IMAGES_DATASET)
    coco_hash = read_manifest(coco_dir).content_hash()
    statuses = dict(image_statuses(coco_dir / "images"))
    downloads = data_root() / "sources" / NAME
    qsrc, asrc = resolve_source(questions_path, downloads), resolve_source(annotations_path, downloads)
    questions = parse_questions(qsrc.path, load_json(qsrc.path))
    annotations = parse_annotations(asrc.path, load_json(asrc.path), SPLIT)
    table = _examples(qsrc.path, questions, asrc.path, annotations, set(statuses))
    tsrc = resolve_source(train_annotations, downloads) if train_annotations else None
    prior = question_type_prior(parse_annotations(tsrc.path, load_json(tsrc.path), "train2014")) if tsrc else None
    fingerprint = {"sources": {"questions": qsrc.sha256, "annotations": asrc.sha256,
                               "train_annotations": tsrc.sha256 if tsrc else None,
                               "images": coco_hash}}
    prepared = PreparedDataset.open(NAME, fingerprint, overwrite)
    prepared.write_examples(table, 10_000)
    if prior is not None:
        write_table_shards(pa.Table.from_pylist(
            [{"question_type": q, "answer": a, "count": n} for q, a, n in prior], schema=PRIOR_SCHEMA),
            prepared.dir / "prior", 10_000)
    image_ids = {str(i) for i, _ in questions.values()}
    failed = Counter(statuses[k] for k in image_ids if statuses[k] != "success")
    usable = sum(1 for i, _ in questions.values() if statuses[str(i)] == "success")
    counts = {"examples": len(questions), "questions_with_image": usable,
              "images": {"total": len(image_ids), "success": len(image_ids) - sum(failed.values()),
                         "failed": sum(failed.values()), "failed_by_reason": dict(sorted(failed.items()))},
              "prior_question_types": len(prior) if prior is not None else 0}
    options = {"split": SPLIT, "images": f"datasets/{IMAGES_DATASET} (COCO val2014), manifest {coco_hash[:12]}",
               "prior": "most frequent train multiple_choice_answer per question type" if prior else None}
    sources = [qsrc.record(), asrc.record(), *([tsrc.record()] if tsrc else []),
               {"path": str(coco_dir), "content_hash": coco_hash}]
    prepared.finish(Manifest(dataset=NAME, options=options, counts=counts, sources=sources))
    return {"dataset": NAME, "dir": str(prepared.dir), **counts}
