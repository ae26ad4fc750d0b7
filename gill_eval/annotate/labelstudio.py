"""Label Studio: the labelling config of the two questions, the tasks JSON, and reading its JSON export.

Import the JSON export (not JSON_MIN/CSV, which drop information). Each task's ``data.item`` names the
kit item; each non-cancelled annotation is one vote by ``ls-<completed_by>``. Label Studio does not check
answers against the config, so every answer is validated here (docs/annotation.md).
"""

from __future__ import annotations

import base64
import json
import mimetypes
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from gill_eval.annotate.items import CHOICES, QUESTIONS, Kit
from gill_eval.annotate.votes import Vote, check_answer, check_votes
from gill_eval.errors import InputError
from gill_eval.store import atomic_write_json, atomic_write_text

CONFIG_FILE = "labelstudio-config.xml"
TASKS_FILE = "labelstudio-tasks.json"


def label_config() -> str:
    """The labelling config: prompt, both images, one single-choice question per ``QUESTIONS`` entry."""
    questions = "".join(
        f'  <Header value={quoteattr(text)}/>\n'
        f'  <Choices name="{name}" toName="image_a" choice="single" required="true">\n'
        + "".join(f'    <Choice value="{c}"/>\n' for c in CHOICES)
        + "  </Choices>\n"
        for name, text in QUESTIONS.items()
    )
    return ('<View>\n  <Header value="$prompt"/>\n  <View style="display: flex; gap: 1em">\n'
            '    <Image name="image_a" value="$image_a"/>\n    <Image name="image_b" value="$image_b"/>\n'
            f'  </View>\n{questions}</View>\n')


def _image_url(kit: Kit, relative: str, image_base: str | None) -> str:
    if image_base is not None:
        return image_base.rstrip("/") + "/" + relative
    path = kit.folder / relative
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def tasks_json(kit: Kit, image_base: str | None = None) -> list[dict[str, Any]]:
    """One Label Studio task per item; images as data URIs, or URLs under ``image_base`` (where the kit's
    ``images/`` folder is served)."""
    return [{"data": {"item": i["id"], "prompt": i["prompt"], "image_a": _image_url(kit, i["image_a"], image_base),
                      "image_b": _image_url(kit, i["image_b"], image_base)}} for i in kit.public_items()]


def write_labelstudio(kit: Kit, out: Path, image_base: str | None = None) -> list[Path]:
    """Write the config and the tasks JSON into ``out``."""
    atomic_write_text(out / CONFIG_FILE, label_config())
    atomic_write_json(out / TASKS_FILE, tasks_json(kit, image_base))
    return [out / CONFIG_FILE, out / TASKS_FILE]


def _annotator(raw: Any, origin: str) -> str:
    user = raw.get("completed_by")
    if isinstance(user, dict):
        user = user.get("id", user.get("email"))
    if user is None or user == "":
        raise InputError(f"{origin}: no completed_by (annotator)")
    return f"ls-{user}"


def _answers(result: Any, origin: str) -> dict[str, str]:
    if not isinstance(result, list):
        raise InputError(f"{origin}: result should be a list")
    answers: dict[str, str] = {}
    for n, region in enumerate(result):
        where = f"{origin}.result[{n}]"
        name = region.get("from_name") if isinstance(region, dict) else None
        if name not in QUESTIONS:
            raise InputError(f"{where}: from_name {name!r} is not one of {', '.join(QUESTIONS)} "
                             "(was the project made with this kit's labelling config?)")
        choices = (region.get("value") or {}).get("choices")
        if not isinstance(choices, list) or len(choices) != 1:
            raise InputError(f"{where}: expected exactly one choice for {name}, got {choices!r}")
        if name in answers:
            raise InputError(f"{where}: {name} answered twice")
        answers[name] = check_answer(choices[0], name, where)
    missing = [q for q in QUESTIONS if q not in answers]
    if missing:
        raise InputError(f"{origin}: no answer to {', '.join(missing)}")
    return answers


def read_labelstudio_export(path: Path, kit: Kit) -> list[Vote]:
    """The votes in a Label Studio JSON export; cancelled (skipped) annotations are not votes."""
    try:
        tasks = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a complete Label Studio JSON export ({exc}); export it again") from exc
    if not isinstance(tasks, list):
        raise InputError(f"{path}: a Label Studio JSON export is a list of tasks (use the JSON format, not JSON_MIN)")
    votes = []
    for t, task in enumerate(tasks):
        origin = f"{path}: task[{t}]"
        item = (task.get("data") or {}).get("item") if isinstance(task, dict) else None
        if item is None:
            raise InputError(f"{origin}: no data.item (tasks must come from `gill-eval annotate export --to labelstudio`)")
        for a, annotation in enumerate(task.get("annotations") or []):
            where = f"{origin}.annotations[{a}]"
            if not isinstance(annotation, dict):
                raise InputError(f"{where}: expected an object")
            if annotation.get("was_cancelled"):
                continue
            answers = _answers(annotation.get("result"), where)
            votes.append(Vote(str(item), _annotator(annotation, where), answers["relevance"], answers["realism"], where))
    return check_votes(votes, kit)
