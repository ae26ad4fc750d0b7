"""GILL's retrieval query, candidate set, exclusions and bf16 numerics against oracles written from the
official code (docs/protocols.md, Table 5 and "Numerics").

FROMAGe's evals/eval_vist_retrieval.py (the protocol GILL's Table 5 follows): every caption is tokenized
with ``add_special_tokens=True`` (its own BOS), the retrieval token is appended to the last caption as
text, the sequence is ``c1, v1, ..., c4, v4, c5`` in one forward pass; candidates are every photo the
val annotations reference that has a ``url_o`` and decodes; each context photo's score drops by 10000.
gill/models.py casts the whole model, decision MLP included, to bf16 and normalises embeddings in bf16.
"""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
from PIL import Image

from gill_eval.bench.results import SCORES_FILE
from gill_eval.bench.vist import VistStories
from gill_eval.bench.vist_retrieval import VistRetrieval
from gill_eval.datasets.vist import DEFAULT_STORE
from gill_eval.models.gill.decision import decision_labels, decision_logits, decision_probabilities
from gill_eval.models.gill.decision import load_decision_model
from gill_eval.models.gill.mapper import GILLHeads
from gill_eval.models.gill.model import GILL
from gill_eval.store import Manifest, dataset_dir, write_manifest, write_shard
from test_bench_fid_retrieval import ToyRetriever, _colour_embedding  # query: the last context image's colours

# ----------------------------------------------------------------------------------------- bf16 numerics


def _official_decisions(path: Path, feats: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """gill/models.py: build the fp32 module, load the file, eval(), then the model-wide .bfloat16()."""
    module = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(feats.shape[1], 2))
    module.load_state_dict(torch.load(path, weights_only=True)["state_dict"], strict=True)
    module = module.eval().bfloat16()
    with torch.no_grad():
        logits = module(torch.tensor(feats).bfloat16())  # raw_emb is bf16 there
    probs = logits.softmax(dim=-1).cpu().float().numpy()
    return probs, [{0: "gen", 1: "ret"}[int(i)] for i in logits.argmax(dim=-1)]


def test_decision_model_runs_in_bf16_like_the_official(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(2, 256, generator=gen) * 0.05, torch.tensor([0.013, -0.021])
    path = tmp_path / "decision_model.pth.tar"
    torch.save({"state_dict": {"1.weight": weight, "1.bias": bias}}, path)
    feats = torch.randn(64, 256, generator=gen).bfloat16().float().numpy()  # bf16 hidden states, as float32
    # borderline rows: fp32 logits differ by ~1e-5, which bf16 cannot resolve
    direction = (weight[1] - weight[0]).numpy()
    for row in range(8):
        margin = float(direction @ feats[row] + (bias[1] - bias[0]))
        feats[row] -= (margin - 1e-5 * (row + 1)) * direction / float(direction @ direction)
    probs, labels = _official_decisions(path, feats)
    model = load_decision_model(path, 256)  # default: bf16, the official numerics
    assert model[1].weight.dtype == torch.bfloat16
    np.testing.assert_array_equal(decision_probabilities(model, feats), probs)
    assert decision_labels(decision_logits(model, feats)) == labels
    fp32 = load_decision_model(path, 256, torch.float32)  # the recorded fp32 option
    fp32_labels = decision_labels(decision_logits(fp32, feats))
    assert fp32_labels[:8] == ["ret"] * 8 and fp32_labels != labels  # the option changes decisions


def test_retrieval_embeddings_are_normalised_in_the_model_dtype() -> None:
    from gill_eval.models.gill.tiny import tiny_dims

    torch.manual_seed(0)
    heads = GILLHeads(tiny_dims(32)).to(torch.bfloat16).eval()
    blocks = torch.randn(3, 8, heads.dims.lm_dim).bfloat16()
    pooled = torch.randn(5, heads.dims.clip_dim).bfloat16()
    stub = types.SimpleNamespace(heads=heads, clip_pooled=lambda images: pooled)
    stub.retrieval_image_vectors = lambda rows: GILL.retrieval_image_vectors(stub, rows)
    with torch.no_grad():  # gill/models.py: ret_emb / ret_emb.norm(...) on bf16 tensors
        ret_emb = heads.ret_text_hidden_fcs[0].model(blocks)[:, 0]
        expected_q = (ret_emb / ret_emb.norm(dim=-1, keepdim=True)).float().numpy()
        visual = heads.visual_fc(pooled)
        expected_c = (visual / visual.norm(dim=-1, keepdim=True)).float().numpy()
    queries = GILL.retrieval_queries(stub, blocks)
    cands = GILL.retrieval_images(stub, [None] * 5)
    np.testing.assert_array_equal(queries, expected_q)
    np.testing.assert_array_equal(cands, expected_c)
    assert np.array_equal(torch.from_numpy(cands).bfloat16().float().numpy(), cands)  # bf16 values
    fp32 = torch.nn.functional.normalize(visual.float(), dim=-1).numpy()
    assert not np.array_equal(cands, fp32)


# --------------------------------------------------------------------------------- the query layout


@pytest.fixture(scope="module")
def small_gill(tmp_path_factory: pytest.TempPathFactory) -> GILL:
    """The tiny GILL's LM, tokenizer and CLIP (no Stable Diffusion), with random heads and [IMG] rows."""
    from transformers import AutoTokenizer, CLIPImageProcessorPil, CLIPVisionModel, OPTForCausalLM

    from gill_eval.models.gill.model import install_img_rows
    from gill_eval.models.gill.tiny import _tiny_clip, _tiny_opt, build_tiny_tokenizer, tiny_dims
    from gill_eval.models.gill.tokenizer import add_gill_tokens

    folder = tmp_path_factory.mktemp("small-gill")
    _tiny_opt(folder / "opt", build_tiny_tokenizer(folder / "opt"), 0)
    _tiny_clip(folder / "clip", 0)
    tokenizer = AutoTokenizer.from_pretrained(folder / "opt")
    tokens = add_gill_tokens(tokenizer)
    lm = OPTForCausalLM.from_pretrained(folder / "opt").eval().requires_grad_(False)
    torch.manual_seed(1)
    install_img_rows(lm, tokens, torch.randn(8, lm.config.hidden_size))
    vision = CLIPVisionModel.from_pretrained(folder / "clip").eval().requires_grad_(False)
    processor = CLIPImageProcessorPil.from_pretrained(folder / "clip")
    heads = GILLHeads(tiny_dims(32)).eval().requires_grad_(False)
    return GILL(lm, tokenizer, tokens, vision, processor, heads)


def test_retrieval_query_is_fromage_layout(small_gill: GILL) -> None:
    from gill_eval.models.gill.adapter import GILLModel

    g = small_gill
    captions = [f"story sentence {i} about the dog at the beach ." for i in range(5)]
    images = [Image.new("RGB", (40 + 8 * i, 30), (40 * i, 90, 200 - 30 * i)) for i in range(4)]
    context = [x for pair in zip(captions, images) for x in pair] + [captions[4]]
    # oracle token ids: BOS + caption for every caption, the 8 [IMG] tokens after the last one
    bos, img = g.tokens.bos_id, list(g.tokens.img_ids)
    ids = [[bos, *g.tokenizer(c, add_special_tokens=False).input_ids] for c in captions]
    ids[-1] += img
    table = g.lm.get_input_embeddings().weight
    with torch.no_grad():
        pieces = []
        for i in range(4):
            pixels = g.image_processor(images=[images[i].convert("RGB")], return_tensors="pt").pixel_values
            pooled = g.vision(pixel_values=pixels).pooler_output
            pieces += [table[ids[i]], g.heads.visual_embeddings(pooled).reshape(4, -1)]
        pieces.append(table[ids[4]])
        expected = torch.cat(pieces)[None]
        assert torch.equal(g.embed_retrieval_context(context), expected)
        hidden = g.lm.model.decoder(inputs_embeds=expected, use_cache=False).last_hidden_state
        raw = g.heads.ret_text_hidden_fcs[0].model(hidden[:, -8])  # the [IMG0] state -> retrieval head
    want = (raw / raw.norm(dim=-1, keepdim=True)).numpy()
    assert torch.equal(g.retrieval_states(context), hidden[:, -8:])
    model = GILLModel.__new__(GILLModel)  # the adapter around this in-memory GILL (no checkpoint folder)
    model.options, model._gill = GILLModel.Options(), g
    got = model.embed_queries([context, context[2:]])
    np.testing.assert_allclose(got[0], want[0], atol=1e-6)
    shorter = g.heads.ret_text_hidden_fcs[0].model(g.retrieval_states(context[2:])[:, 0])
    np.testing.assert_allclose(got[1], (shorter / shorter.norm()).detach().numpy()[0], atol=1e-6)
    # not the generation layout: that one has a single BOS and no appended [IMG] tokens
    assert g.embed_context(context).shape[1] == expected.shape[1] - 4 - 8
    with pytest.raises(Exception, match="end with a caption"):
        g.embed_retrieval_context(context[:-1])


# ------------------------------------------------------------------------ candidates and exclusions


def _png(seed: int) -> bytes:
    import io

    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize((24, 24), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def test_candidates_exclusions_and_ranks_follow_fromage() -> None:
    # What the SIS file says: 6 accepted stories, one rejected (its photos are still candidates in FROMAGe),
    # one photo without url_o and one that did not decode (neither stored as success).
    stories = [[f"{s}{p}" for p in range(5)] for s in range(1, 7)]
    stories[2][4] = stories[2][1]  # target photo also a context photo: FROMAGe's penalty makes it a miss
    rejected_photos = ["r0", "r1", "r2"]
    no_url, undecodable = "u0", "x0"
    referenced = sorted({p for s in stories for p in s} | set(rejected_photos) | {no_url, undecodable})
    decodes = [p for p in referenced if p not in (no_url, undecodable)]
    folder = dataset_dir("vist")
    rows = [{"story_id": f"s{i}", "album_id": "a", "photo_ids": s, "texts": [f"t{i}{p}" for p in range(5)]}
            for i, s in enumerate(stories)]
    write_shard(pa.Table.from_pylist(rows), folder / "examples" / "00000.parquet")
    images = [{"key": p, "image": _png(k), "status": "success", "error_message": ""} for k, p in enumerate(decodes)]
    images.append({"key": undecodable, "image": None, "status": "failed_to_resize", "error_message": "cannot decode"})
    write_shard(pa.Table.from_pylist(images), folder / "images" / "00000.parquet")
    write_manifest(folder, Manifest(dataset="vist", options={"store": DEFAULT_STORE}, counts={"examples": len(rows)}))

    bench = VistRetrieval()
    assert bench.candidates() == decodes  # the rejected story's photos are candidates too
    result = bench.run(ToyRetriever(), None, {"preset": "none"})
    assert result["status"] == "ok" and result["data"]["candidates"] == len(decodes)

    # FROMAGe's computation, written from its script: scores, -10000 per context photo, topk.
    data = VistStories()
    pics = data.dataset.images(decodes)
    emb = np.stack([_colour_embedding(pics[p]) for p in decodes])
    ranks = pd.read_parquet(f"{result['_dir']}/{SCORES_FILE}").query("metric == 'rank'").set_index("example_id")
    hits = {k: [] for k in (1, 5, 10)}
    for i, photos in enumerate(stories):
        q = _colour_embedding(pics[photos[3]])
        scores = torch.tensor(emb @ q)
        for prev in photos[:4]:
            scores[decodes.index(prev)] -= 10000
        top = [decodes[j] for j in scores.topk(10).indices]
        for k in hits:
            hits[k].append(photos[4] in top[:k])
        target = float(scores[decodes.index(photos[4])])
        others = [float(scores[j]) for j in range(len(decodes)) if decodes[j] != photos[4]]
        assert ranks.loc[f"s{i}", "value"] == sum(s >= target for s in others)
    assert not hits[10][2]  # the target-in-context story: a miss, and the run went through
    for k in hits:
        assert result["metrics"][f"R@{k}"]["aggregate"]["mean"] == pytest.approx(100 * np.mean(hits[k]))
