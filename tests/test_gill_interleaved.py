"""GILL's interleaved API end to end with the tiny GILL and a tiny image index (docs/protocols.md).

Oracles are written here from the official code's steps (gill/models.py ``generate_for_images_and_texts``,
scripts/extract_img_embs.py): the index vectors are ``visual_fc`` of CLIP's pooled output, unnormalised;
scores are cos x exp(logit_scale) with the normalised retrieval query; the decision is the softmax of the
MLP on the [IMG0] state; the generated image is the one ``generate`` draws for the same context and seed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from gill_eval.bench.data import PreparedDataset
from gill_eval.cli import app
from gill_eval.store.features import iter_clip_features
from gill_eval.features.runner import feature_dir
from gill_eval.models.gill.interleaved import InterleavedSettings, truncate_caption
from gill_eval.models.gill.model import DecodeSettings
from gill_eval.models.gill.tokenizer import IMG_TOKENS
from gill_eval.models.registry import load_model
from test_bench_data import build_fixture_data

OPTS = ["checkpoint={ckpt}", "steps=1", "height=32", "width=32", "device=cpu", "precision=fp32"]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gill_eval.models.gill.tiny import tiny_gill_dir

    return tiny_gill_dir(root=tmp_path_factory.mktemp("tiny-gill-interleaved"))


def _model_opts(folder: Path) -> list[str]:
    return [arg for opt in OPTS for arg in ("--model-opt", opt.format(ckpt=folder))]


def _invoke(args: list[str]) -> dict:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return json.loads(result.stdout[result.stdout.index("{"):])


def test_truncate_caption_follows_the_official_rule() -> None:
    assert truncate_caption("\n\na dog. runs\n") == "a dog."
    assert truncate_caption("a dog\nruns. far") == "a dog\n"
    assert truncate_caption("no stop here") == "no stop here"


def test_index_then_interleaved_answer_from_the_cli(tiny_folder: Path, tmp_path: Path) -> None:
    build_fixture_data()  # 'coco' holds 5 images: the index
    summary = _invoke(["features", "gill", "--dataset", "coco", "--model", "tiny-gill", *_model_opts(tiny_folder),
                       "--num-workers", "0", "--json"])
    assert summary["complete"] and summary["rows"] == 5

    model = load_model("tiny-gill", {o.split("=")[0]: o.split("=", 1)[1].format(ckpt=tiny_folder) for o in OPTS})
    gill = model.gill
    images = PreparedDataset("coco").images([str(i) for i in range(5)])
    stored = {k: e for b in iter_clip_features(feature_dir("gill", "coco")) for k, e in zip(b.keys, b.embeddings)}
    with torch.no_grad():
        for key, image in images.items():  # extract_img_embs.py: processor, pooled, visual_fc, no normalisation
            pixels = gill.image_processor(images=[image], return_tensors="pt").pixel_values
            expected = gill.heads.visual_fc(gill.vision(pixel_values=pixels).pooler_output)[0].numpy()
            np.testing.assert_allclose(stored[key], expected, rtol=1e-5, atol=1e-6)

    out = tmp_path / "answer"
    record = _invoke(["generate", "--model", "tiny-gill", *_model_opts(tiny_folder), "-p", "a dog on the beach",
                      "--interleaved", "--index", "coco", "--num-words", "2", "--gen-scale-factor", "1e5",
                      "--seed", "7", "--out", str(out), "--json"])
    assert json.loads((out / "answer.json").read_text()) == json.loads(json.dumps(record))
    assert record["text"] == [" " + "".join(IMG_TOKENS)]  # [IMG0] forced at step 0: no text before it
    (block,) = record["blocks"]

    with torch.no_grad():
        states = gill.forced_img_states(["a dog on the beach"], DecodeSettings())
        query = gill.heads.ret_text_hidden_fcs[0].model(states[0, 0])
        query = query / query.norm()
        keys = sorted(stored)
        matrix = torch.tensor(np.stack([stored[k] for k in keys]))
        scores = (matrix / matrix.norm(dim=1, keepdim=True)) @ query * gill.heads.logit_scale.exp()
        top = torch.topk(scores, 3)
        assert [r["key"] for r in block["retrieved"]] == [keys[i] for i in top.indices]
        np.testing.assert_allclose([r["score"] for r in block["retrieved"]], top.values.numpy(), rtol=1e-5)
        for j, r in enumerate(block["retrieved"]):
            assert r["path"] == f"block0-ret{j}.png"
            assert np.array_equal(np.asarray(Image.open(out / r["path"])), np.asarray(images[r["key"]]))

        weight, bias = gill.decision[1].weight.float(), gill.decision[1].bias.float()
        p = torch.softmax(states[0, 0] @ weight.T + bias, dim=-1)
        np.testing.assert_allclose([block["p_gen"], block["p_ret"]], p.numpy(), atol=1e-5)
        assert block["decision"] == ("gen" if p[0] >= p[1] else "ret")
        assert block["shown"] == (block["generated"][0]["path"] if block["decision"] == "gen"
                                  else block["retrieved"][0]["path"])

        generated = Image.open(out / block["generated"][0]["path"])
        alone = model.generate([["a dog on the beach"]], [7])[0]  # the same image as `generate` draws
        assert np.array_equal(np.asarray(generated), np.asarray(alone))
        pixels = gill.image_processor(images=[alone.resize((224, 224))], return_tensors="pt").pixel_values
        vec = gill.heads.visual_fc(gill.vision(pixel_values=pixels).pooler_output)[0]
        assert block["generated"][0]["score"] == pytest.approx(float(vec @ query / vec.norm()), abs=1e-5)


def test_sampling_settings_and_text_only_answers(tiny_folder: Path) -> None:
    model = load_model("tiny-gill", {o.split("=")[0]: o.split("=", 1)[1].format(ckpt=tiny_folder) for o in OPTS})
    gill = model.gill
    context = ["a photo of the", Image.new("RGB", (30, 30), "red"), "city at night"]
    # min_word_tokens >= num_words: no [IMG] can be emitted, the answer is the cut text of the greedy ids
    greedy = DecodeSettings(num_words=4, gen_scale_factor=1.0, min_word_tokens=4)
    answer = model.generate_interleaved(context, 0, InterleavedSettings(greedy))
    ids = gill.until_newline(gill.decode(gill.embed_context(context), greedy)).ids
    assert answer == [truncate_caption(gill.tokenizer.decode(ids, skip_special_tokens=True))]
    assert not set(ids) & set(gill.tokens.img_ids)
    # a vanishing top_p keeps only the most likely token: sampling then equals greedy decoding, any seed
    nucleus = DecodeSettings(num_words=4, gen_scale_factor=1.0, min_word_tokens=4, temperature=0.7, top_p=1e-6)
    for seed in (1, 2):
        assert model.generate_interleaved(context, seed, InterleavedSettings(nucleus)) == answer
    # plain sampling is reproducible from the seed
    sampled = DecodeSettings(num_words=6, gen_scale_factor=1.0, min_word_tokens=6, temperature=1.5)
    first = model.generate_interleaved(context, 3, InterleavedSettings(sampled))
    assert model.generate_interleaved(context, 3, InterleavedSettings(sampled)) == first
