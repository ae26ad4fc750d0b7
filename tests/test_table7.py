"""Table 7 (captioning and VQA): the official VQA accuracy, pycocoevalcap parity, GILL's text decoding
(batched == batch 1, KV cache == the official full recompute), resume after a kill, one-line input errors,
and the report's Table 7 on the bundled sample."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from gill_eval.cli import app
from gill_eval.metrics import vqa
from gill_eval.models.base import ACCEPTS_IMAGES, TEXT, Model

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


# ----------------------------------------------------------------------------------- the VQA oracle

class OfficialVQAEval:
    """Transcribed line by line from GT-Vision-Lab/VQA PythonEvaluationTools/vqaEvaluation/vqaEval.py
    (current commit): the same tables, the same regexes (with their quirks), the same loop over questions,
    including the in-place rewrite of the human answers. Kept independent of gill_eval.metrics.vqa."""

    def __init__(self) -> None:
        self.contractions = dict(vqa.CONTRACTIONS)  # the table is data; the code below is the oracle
        self.manualMap = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
                          "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
        self.articles = ["a", "an", "the"]
        self.periodStrip = re.compile(r"(?!<=\d)(\.)(?!\d)")
        self.commaStrip = re.compile(r"(\d)(\,)(\d)")
        self.punct = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`",
                      ",", "?", "!"]

    def processPunctuation(self, inText):  # noqa: N802, N803 - the official names
        outText = inText  # noqa: N806
        for p in self.punct:
            if (p + " " in inText or " " + p in inText) or (re.search(self.commaStrip, inText) is not None):
                outText = outText.replace(p, "")  # noqa: N806
            else:
                outText = outText.replace(p, " ")  # noqa: N806
        return self.periodStrip.sub("", outText, re.UNICODE)  # re.UNICODE lands in `count`, as official

    def processDigitArticle(self, inText):  # noqa: N802, N803
        outText = []  # noqa: N806
        for word in inText.lower().split():
            word = self.manualMap.setdefault(word, word)
            if word not in self.articles:
                outText.append(word)
        for wordId, word in enumerate(outText):  # noqa: N806
            if word in self.contractions:
                outText[wordId] = self.contractions[word]
        return " ".join(outText)

    def evaluate(self, gts, res):
        accQA, accAnsType = [], {}  # noqa: N806
        for quesId in gts:  # noqa: N806
            resAns = res[quesId].replace("\n", " ").replace("\t", " ").strip()  # noqa: N806
            resAns = self.processPunctuation(resAns)  # noqa: N806
            resAns = self.processDigitArticle(resAns)  # noqa: N806
            gtAcc = []  # noqa: N806
            gtAnswers = [ans["answer"] for ans in gts[quesId]["answers"]]  # noqa: N806
            if len(set(gtAnswers)) > 1:
                for ansDic in gts[quesId]["answers"]:  # noqa: N806
                    ansDic["answer"] = self.processPunctuation(ansDic["answer"])
            for gtAnsDatum in gts[quesId]["answers"]:  # noqa: N806
                otherGTAns = [item for item in gts[quesId]["answers"] if item != gtAnsDatum]  # noqa: N806
                matchingAns = [item for item in otherGTAns if item["answer"] == resAns]  # noqa: N806
                gtAcc.append(min(1, float(len(matchingAns)) / 3))
            avg = float(sum(gtAcc)) / len(gtAcc)
            accQA.append(avg)
            accAnsType.setdefault(gts[quesId]["answer_type"], []).append(avg)
        return ({q: a for q, a in zip(gts, accQA)}, 100 * sum(accQA) / len(accQA),
                {t: 100 * sum(v) / len(v) for t, v in accAnsType.items()})


def _humans(*groups: tuple[str, int]) -> list[str]:
    answers = [a for a, n in groups for _ in range(n)]
    assert len(answers) == 10
    return answers


# (model answer, ten human answers, answer type): each exercises a rule of the official code
CASES = [
    ("Two", _humans(("2", 4), ("3", 6)), "number"),                      # number word -> digit, capitals
    ("two", _humans(("two", 5), ("2", 5)), "number"),                    # human answers never get digits
    ("none", _humans(("0", 3), ("1", 7)), "number"),                     # 'none' -> '0'
    ("a dog", _humans(("dog", 2), ("cat", 8)), "other"),                 # article dropped, 2 humans
    ("The Dog", _humans(("dog", 1), ("cat", 9)), "other"),               # 1 human
    ("isnt", _humans(("isn't", 3), ("is", 7)), "other"),                 # contraction, 3 humans
    ("Im", _humans(("I'm", 4), ("me", 6)), "other"),                     # capital key never matches
    ("yes.", _humans(("yes", 4), ("no", 6)), "yes/no"),                  # trailing period, 4 humans
    ("yes!", _humans(("yes", 10)), "yes/no"),                            # '!' removed; unanimous humans
    ("yes", _humans(("yes!", 10)), "yes/no"),                            # unanimous humans keep their '!'
    ("yes", _humans(("yes!", 9), ("no", 1)), "yes/no"),                  # disagreeing humans are stripped
    ("3.5", _humans(("3.5", 3), ("35", 7)), "number"),                   # a period before a digit stays
    ("1,000", _humans(("1000", 3), ("1,000", 7)), "number"),             # digit,digit: marks deleted
    ("hot-dog", _humans(("hot dog", 3), ("hotdog", 7)), "other"),        # '-' -> space
    ("hot - dog", _humans(("hot  dog", 3), ("hotdog", 7)), "other"),     # a mark next to a space: deleted
    ("  red\tand\nblue ", _humans(("red and blue", 5), ("red", 5)), "other"),  # whitespace
    ("." * 40 + "x", _humans(("x", 3), ("y", 7)), "other"),              # at most 32 periods removed
    ("what's up?", _humans(("what's up", 3), ("up", 7)), "other"),       # apostrophe kept, '?' removed
    ("(left)", _humans(("left", 3), ("right", 7)), "other"),
    ("cat", _humans(("dog", 10)), "other"),                              # no human
]


def test_vqa_accuracy_equals_the_official_code_on_every_rule():
    gts = {i: {"answers": [{"answer": a, "answer_confidence": "yes", "answer_id": j + 1} for j, a in enumerate(h)],
               "answer_type": t} for i, (_, h, t) in enumerate(CASES)}
    res = {i: answer for i, (answer, _, _) in enumerate(CASES)}
    per_question, overall, per_type = OfficialVQAEval().evaluate(gts, res)
    mine = [vqa.question_accuracy(answer, humans) for answer, humans, _ in CASES]
    assert mine == pytest.approx([per_question[i] for i in range(len(CASES))], abs=1e-12)
    # the rules really were exercised: the scores differ from one another and from a plain comparison
    assert {round(m, 4) for m in mine} >= {0.0, 0.3, 0.6, 0.9, 1.0}
    summary = vqa.summarize(mine, [t for *_, t in CASES], ["q"] * len(CASES))
    assert summary.overall == pytest.approx(overall)
    assert summary.per_answer_type == pytest.approx(per_type)


# -------------------------------------------------------------------------------- captioning parity

def test_caption_scores_equal_a_direct_cocoevalcap_run(tmp_path, monkeypatch):
    from pycocoevalcap import eval as coco_eval
    from pycocotools.coco import COCO

    from gill_eval.metrics.caption import score_caption_sets

    refs = {"1": ["A dog runs on the beach.", "a brown dog running by the sea", "Dog on sand"],
            "2": ["Two cats sit on a red sofa.", "cats on a couch"],
            "3": ["A man riding a bike down the street.", "a cyclist in a city", "A person on a bicycle."]}
    seed0 = {"1": "a dog running on the beach", "2": "a cat on a red couch", "3": "a man rides a bike"}
    seed1 = {"1": "a dog", "2": "two cats sit on a sofa", "3": "a cyclist in the city street"}
    gt_file = tmp_path / "refs.json"
    gt_file.write_text(json.dumps({
        "images": [{"id": int(k)} for k in refs], "type": "captions", "info": {}, "licenses": [],
        "annotations": [{"image_id": int(k), "id": 10 * int(k) + j, "caption": c}
                        for k, caps in refs.items() for j, c in enumerate(caps)]}))

    class NoSpice:  # SPICE downloads CoreNLP models: not part of gill-eval's metrics
        def method(self):
            return "SPICE"

        def compute_score(self, gts, res):
            return 0.0, [0.0] * len(gts)

    monkeypatch.setattr(coco_eval, "Spice", NoSpice)
    ours = score_caption_sets({0: seed0, 1: seed1}, refs)
    for seed, captions in ((1, seed1),):  # the second set of a shared call: scored on its own
        res_file = tmp_path / f"res{seed}.json"
        res_file.write_text(json.dumps([{"image_id": int(k), "caption": c} for k, c in captions.items()]))
        coco = COCO(str(gt_file))
        direct = coco_eval.COCOEvalCap(coco, coco.loadRes(str(res_file)))
        direct.evaluate()
        for name, key in (("bleu1", "Bleu_1"), ("bleu2", "Bleu_2"), ("bleu3", "Bleu_3"), ("bleu4", "Bleu_4"),
                          ("meteor", "METEOR"), ("cider", "CIDEr")):
            assert ours[seed].overall[name] == pytest.approx(direct.eval[key], abs=1e-12), (seed, name)
            for k in refs:
                assert ours[seed].per_image[name][k] == pytest.approx(direct.imgToEval[int(k)][key], abs=1e-12)
    assert ours[0].overall["bleu1"] != ours[1].overall["bleu1"]


# ------------------------------------------------------------------------------------ GILL's text

@pytest.fixture
def shared_cache(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("GILL_EVAL_CACHE", str(tmp_path_factory.getbasetemp() / "table7-shared-cache"))


def test_gill_text_batched_equals_batch_one_and_the_official_decoding(shared_cache):
    from PIL import Image

    from gill_eval.models.gill.model import DecodeSettings
    from gill_eval.models.gill.text import greedy_text_ids
    from gill_eval.models.registry import load_model

    model = load_model("tiny-gill", {"device": "cpu", "batch_size": 8})
    red, blue = Image.new("RGB", (40, 30), (200, 10, 10)), Image.new("RGB", (32, 32), (0, 90, 200))
    contexts = [[red, "A picture of"], ["Q: what is there ? A:"], [red, "Q: how many people ? A:"],
                [blue, "A picture of"], ["a dog"], [blue, "Q: what is the man ? A:"]]
    batched = model.generate_text(contexts, [0] * 6, 12)
    model.options.batch_size = 1
    assert model.generate_text(contexts, [0] * 6, 12) == batched
    assert model.generate_text(contexts[::-1], [0] * 6, 12) == batched[::-1]
    gill = model.gill
    img = set(gill.tokens.img_ids)
    for context in contexts:  # the KV cache decodes what the official full recompute decodes ([IMG] barred)
        official = gill.decode(gill.embed_context(context),
                               DecodeSettings(num_words=12, gen_scale_factor=1.0, min_word_tokens=12)).ids
        mine = greedy_text_ids(gill, [gill.embed_context(context)], 12)[0]
        assert mine == official[:len(mine)] and not img & set(mine)


# ------------------------------------------------------------------------ the sample, end to end

def _prepare_sample(root: Path) -> dict:
    from gill_eval.quickstart import run_quickstart, step_prepare_coco, step_prepare_coco2017, step_prepare_vqav2

    return run_quickstart(root, [("coco", step_prepare_coco), ("coco 2017", step_prepare_coco2017),
                          ("vqav2", step_prepare_vqav2)])


_KILLED_RUN = """
import os, sys
from gill_eval.store import root
root.set_data_root(sys.argv[1])
from gill_eval.models.gill.adapter import TinyGILLModel
original, calls = TinyGILLModel.generate_text, []
def dies_on_second_unit(self, *args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
        os._exit(9)  # as kill -9: no cleanup, no exception handling
    return original(self, *args, **kwargs)
TinyGILLModel.generate_text = dies_on_second_unit
from gill_eval.bench import api
from gill_eval.bench.scorers import ScorerSpec
api.run("vqav2", "tiny-gill", {"device": "cpu"}, None, [0, 1], scorer=ScorerSpec(preset="tiny", device="cpu"))
"""


def test_vqav2_resumes_after_a_kill_and_table7_renders(shared_cache, tmp_path):
    from gill_eval.bench import api
    from gill_eval.bench.scorers import ScorerSpec
    from gill_eval.bench.text import read_answers
    from gill_eval.models.gill.adapter import TinyGILLModel
    from gill_eval.report.render import render_report
    from gill_eval.store import root

    scorer = ScorerSpec(preset="tiny", device="cpu")
    clean_root, killed_root = tmp_path / "clean", tmp_path / "killed"
    _prepare_sample(killed_root)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    died = subprocess.run([sys.executable, "-c", _KILLED_RUN, str(killed_root)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert died.returncode == 9, died.stderr[-2000:]
    markers = sorted((p.name for p in killed_root.glob("generations/vqav2/*/*/_done/*.json")))
    assert markers == ["s0-00000.json"]  # the first unit survived the kill, the second never finished
    calls = []
    original = TinyGILLModel.generate_text

    def counted(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    TinyGILLModel.generate_text = counted
    try:
        resumed = api.run("vqav2", "tiny-gill", {"device": "cpu"}, None, [0, 1], scorer=scorer)[0]
    finally:
        TinyGILLModel.generate_text = original
    assert len(calls) == 1  # only the unit the kill interrupted
    prior = api.run("vqav2", "vqa-prior", {}, None, [0], scorer=scorer)[0]
    _prepare_sample(clean_root)
    clean = api.run("vqav2", "tiny-gill", {"device": "cpu"}, None, [0, 1], scorer=scorer)[0]
    assert read_answers(resumed).equals(read_answers(clean))
    assert resumed["metrics"] == clean["metrics"]
    root.set_data_root(killed_root)

    # the prior's accuracy from its answers, by the oracle; the sample has 6 questions, all with a stored image
    rows = {r["key"]: r for r in api.make_benchmark("vqav2").examples()}
    answers = read_answers(prior)
    assert len(answers) == len(rows) == 6 and prior["n_expected"] == 6
    gts = {k: {"answers": [{"answer": a, "answer_id": j} for j, a in enumerate(r["answers"])],
               "answer_type": r["answer_type"]} for k, r in rows.items()}
    _, overall, per_type = OfficialVQAEval().evaluate(gts, dict(zip(answers["example_id"], answers["answer"])))
    assert prior["metrics"]["vqa_accuracy"]["aggregate"]["mean"] == pytest.approx(overall)
    assert prior["metrics"]["vqa_other"]["aggregate"]["mean"] == pytest.approx(per_type["other"])
    markdown, data = render_report([resumed, prior])
    table = next(t for t in data["tables"] if t["table"] == "table7")
    assert table["columns"][:3] == ["COCO BLEU-4 ↑", "COCO METEOR ↑", "VQAv2 ↑"]
    assert "| GILL (paper) | 0.1059 | 0.2529 | 0.3178 |" in markdown
    assert f"| vqa-prior |  |  | {overall / 100:.4f} ± " not in markdown  # one seed: no ± spread
    assert f"| vqa-prior |  |  | {overall / 100:.4f} |" in markdown

    from gill_eval.report.gallery import build_pages
    from gill_eval.report.thumbnails import ImageFiles

    page = next(p for p in build_pages([resumed, prior], tmp_path, ImageFiles(tmp_path / "gallery")) if p.kind == "text")
    shown = {(row["id"], cell["s"]): (cell["a"], cell["v"]) for row in page.data["rows"]
             for cell in row["cells"]["vqa-prior"]}
    per_question, *_ = OfficialVQAEval().evaluate(
        {k: {"answers": [{"answer": a, "answer_id": j} for j, a in enumerate(r["answers"])],
             "answer_type": r["answer_type"]} for k, r in rows.items()}, dict(zip(answers["example_id"], answers["answer"])))
    assert shown == {(k, 0): (a, pytest.approx(100 * per_question[k])) for k, a in zip(answers["example_id"], answers["answer"])}


def _one_line_error(result, *fragments: str) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_bad_inputs_get_one_line(tmp_path):
    from gill_eval.sample.make import build_sample

    prepared = _prepare_sample(tmp_path / "root")
    # coverage as designed: 3 val2017 images with 9 captions, one image file missing; 6 questions, 6 priors
    assert prepared["coco 2017"]["images"] == {"total": 3, "success": 2, "failed": 1,
                                               "failed_by_reason": {"missing_file": 1}}
    assert prepared["coco 2017"]["captions"] == 9
    assert prepared["vqav2"]["examples"] == prepared["vqav2"]["questions_with_image"] == 6
    assert prepared["vqav2"]["prior_question_types"] == 6
    data_dir = str(tmp_path / "root")
    sample = build_sample(tmp_path / "files")
    before = sorted(p for p in (tmp_path / "root" / "datasets").rglob("*") if p.is_file())

    train = str(sample.vqav2_train_annotations)
    wrong_split = runner.invoke(app, ["prepare", "vqav2", "--questions", str(sample.vqav2_questions),
                                      "--annotations", train, "--overwrite", "--data-dir", data_dir])
    _one_line_error(wrong_split, train, "data_subtype is 'train2014'", "val2014")

    questions = json.loads(sample.vqav2_questions.read_text())
    questions["questions"][0]["image_id"] = 999
    bad_q = tmp_path / "questions.json"
    bad_q.write_text(json.dumps(questions))
    annotations = json.loads(sample.vqav2_annotations.read_text())
    annotations["annotations"][0]["image_id"] = 999
    bad_a = tmp_path / "annotations.json"
    bad_a.write_text(json.dumps(annotations))
    missing = runner.invoke(app, ["prepare", "vqav2", "--questions", str(bad_q), "--annotations", str(bad_a), "--data-dir", data_dir])
    _one_line_error(missing, str(bad_q), "image 999", "prepare coco")

    del annotations["annotations"][1]["answers"]
    bad_a.write_text(json.dumps(annotations))
    no_answers = runner.invoke(app, ["prepare", "vqav2", "--questions", str(bad_q), "--annotations", str(bad_a), "--data-dir", data_dir])
    _one_line_error(no_answers, "annotations[1]", "'answers'")

    wrong_year = runner.invoke(app, ["prepare", "coco", "--year", "2017", "--captions", str(sample.coco_captions),
                                     "--images", str(sample.coco2017_images), "--data-dir", data_dir])
    _one_line_error(wrong_year, "COCO_val2014_", "captions_val2017.json")
    after = sorted(p for p in (tmp_path / "root" / "datasets").rglob("*") if p.is_file())
    assert after == before  # nothing already prepared was lost
    assert pd.read_parquet(tmp_path / "root" / "datasets" / "vqav2" / "examples").shape[0] == 6


class ToyTextModel(Model):
    """A plugin model that answers in text: 'Yes.' to is-questions, 'Two' otherwise."""

    name = "toy-text"
    capabilities = frozenset({TEXT, ACCEPTS_IMAGES})

    def generate_text(self, contexts, seeds, max_new_tokens):
        self.check_text_args(contexts, seeds, max_new_tokens)
        return ["Yes." if " Is " in f" {c[-1]}" else "Two" for c in contexts]


def test_a_plugin_text_model_is_scored_and_a_model_without_text_gets_a_dash(tmp_path, monkeypatch):
    from importlib.metadata import EntryPoint

    from gill_eval.bench import api
    from gill_eval.bench.scorers import ScorerSpec
    from gill_eval.models import registry
    from gill_eval.report.render import render_report

    points = {**registry._entry_points(), "toy-text": EntryPoint("toy-text", "test_table7:ToyTextModel", registry.GROUP)}
    monkeypatch.setattr(registry, "_entry_points", lambda: points)
    _prepare_sample(tmp_path / "root")
    scorer = ScorerSpec(preset="tiny", device="cpu")
    toy = api.run("vqav2", "toy-text", {}, None, [0], scorer=scorer, batch_size=4)[0]
    sd = api.run("vqav2", "tiny-sd", {}, None, [0], scorer=scorer)[0]
    assert sd["status"] == "unsupported" and "does not answer in text" in sd["reason"]
    rows = {r["key"]: r for r in api.make_benchmark("vqav2").examples()}
    gts = {k: {"answers": [{"answer": a, "answer_id": j} for j, a in enumerate(r["answers"])],
               "answer_type": r["answer_type"]} for k, r in rows.items()}
    res = {k: "Yes." if r["question"].startswith("Is ") else "Two" for k, r in rows.items()}
    _, overall, _ = OfficialVQAEval().evaluate(gts, res)
    assert toy["metrics"]["vqa_accuracy"]["aggregate"]["mean"] == pytest.approx(overall) and 0 < overall < 100
    markdown, _ = render_report([toy, sd])
    assert f"| toy-text |  |  | {overall / 100:.4f} |" in markdown
    assert "| tiny-sd |  |  | - [1] |" in markdown
