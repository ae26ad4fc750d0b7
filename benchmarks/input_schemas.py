"""What the boundary schema check costs on full-size inputs, beside parsing the JSON and a per-key Python loop.

For synthetic files of the released sizes (VIST train SIS: 200,775 annotations; VQAv2 val annotations:
214,354 questions x 10 answers; COCO 2014 val captions: 40,504 images, 202,654 captions), one run times:

* ``json_load_s``: ``json.loads`` of the file's bytes (the part every reader pays anyway);
* ``schema_s``: ``gill_eval.schema.validate`` (pydantic, strict) over the parsed document;
* ``python_loop_s``: the naive baseline, an ``isinstance`` check per key in a Python loop, as the readers did
  before (``sources.require`` per field), with no range, Unicode or NaN checks.

Usage: ``python benchmarks/input_schemas.py [--scale 0.1]``; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gill_eval import schema  # noqa: E402


def vist(n: int) -> dict[str, Any]:
    rows = [[{"story_id": str(i // 5), "album_id": str(i // 50), "photo_flickr_id": str(10**9 + i),
              "worker_arranged_photo_order": i % 5, "text": "the family gathered for the picnic .",
              "original_text": "The family gathered for the picnic.", "tier": "story-in-sequence"}] for i in range(n)]
    return {"annotations": rows, "images": [{"id": str(10**9 + i), "url_o": f"https://farm.example/{i}.jpg"}
                                            for i in range(n // 2)]}


def vqa(n: int) -> dict[str, Any]:
    return {"annotations": [{"question_id": i, "image_id": i // 3, "question_type": "what color",
                             "answer_type": "other", "multiple_choice_answer": "red",
                             "answers": [{"answer": "red", "answer_confidence": "yes", "answer_id": k + 1}
                                         for k in range(10)]} for i in range(n)]}


def coco(n_images: int, n_captions: int) -> dict[str, Any]:
    return {"images": [{"id": i, "file_name": f"COCO_val2014_{i:012d}.jpg"} for i in range(n_images)],
            "annotations": [{"id": c, "image_id": c % n_images, "caption": "A cat sitting on a red couch."}
                            for c in range(n_captions)]}


def python_loop(doc: Any, fields: dict[str, dict[str, type]]) -> None:
    """Per-key isinstance checks in Python, walking the same lists (the former readers' way)."""
    for list_key, types in fields.items():
        for entry in doc[list_key]:
            entry = entry[0] if isinstance(entry, list) else entry
            for key, kind in types.items():
                if not isinstance(entry.get(key), kind):
                    raise ValueError(key)
            for answer in entry.get("answers", ()):
                for key in ("answer", "answer_confidence"):
                    if not isinstance(answer[key], str):
                        raise ValueError(key)


def timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="Fraction of the released sizes.")
    args = parser.parse_args()
    s = args.scale
    cases = {
        "vist-sis": (schema.VIST_SIS, vist(int(200_775 * s)), {
            "annotations": {"story_id": str, "album_id": str, "photo_flickr_id": str, "text": str,
                            "original_text": str, "worker_arranged_photo_order": int},
            "images": {"id": str}}),
        "vqav2-annotations": (schema.VQA_ANNOTATIONS, vqa(int(214_354 * s)), {
            "annotations": {"question_id": int, "image_id": int, "question_type": str, "answer_type": str,
                            "multiple_choice_answer": str, "answers": list}}),
        "coco-captions": (schema.COCO_CAPTIONS, coco(int(40_504 * s), int(202_654 * s)), {
            "images": {"id": int, "file_name": str}, "annotations": {"id": int, "image_id": int, "caption": str}}),
    }
    out: dict[str, Any] = {"scale": s}
    for name, (fmt, doc, fields) in cases.items():
        raw = json.dumps(doc).encode()
        parsed = json.loads(raw)
        schema.validate(fmt, parsed, name)  # builds the validator once, outside the timing
        load = timed(lambda: json.loads(raw))
        checked = timed(lambda: schema.validate(fmt, parsed, name))
        loop = timed(lambda: python_loop(parsed, fields))
        out[name] = {"file_mb": round(len(raw) / 1e6, 1), "json_load_s": round(load, 3), "schema_s": round(checked, 3),
                     "python_loop_s": round(loop, 3), "schema_over_json_load": round(checked / load, 2),
                     "schema_over_python_loop": round(checked / loop, 2)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
