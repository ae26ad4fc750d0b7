"""Device rules: scoring networks default to auto (CUDA when there is one, this rank's GPU under torchrun),
and GILL's LM placed with a transformers ``device_map`` (here a map onto the CPU) runs as unplaced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gill_eval.bench.scorers import Scorers, ScorerSpec
from gill_eval.errors import ConfigError
from gill_eval.models.gill.load import load_gill, parse_device_map, resolve_sources
from gill_eval.models.gill.model import DecodeSettings

OPT_MODULES = ["model.decoder.embed_tokens", "model.decoder.embed_positions", "model.decoder.layers.0",
               "model.decoder.layers.1", "model.decoder.final_layer_norm", "lm_head"]


def test_scorers_default_to_auto_and_follow_the_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ScorerSpec().device == "auto"
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert Scorers(ScorerSpec(preset="tiny")).device == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert Scorers(ScorerSpec(preset="tiny")).device == "cuda"
    monkeypatch.setenv("LOCAL_RANK", "3")  # torchrun: each rank scores on its own GPU
    scorers = Scorers(ScorerSpec(preset="tiny"))
    assert scorers.device == "cuda:3" and scorers.provenance["device"] == "cuda:3"
    assert scorers.spec.as_dict()["device"] == "auto"  # the spec (which keys result folders) is rank-free
    assert Scorers(ScorerSpec(preset="tiny", device="cpu")).device == "cpu"


def test_device_map_option_parsing() -> None:
    assert parse_device_map("") is None and parse_device_map("auto") == "auto"
    assert parse_device_map('{"lm_head": 1, "model.decoder.layers.0": "cuda:0"}') == {
        "lm_head": 1, "model.decoder.layers.0": "cuda:0"}
    for bad in ('{"lm_head": ', '{"lm_head": [1]}'):
        with pytest.raises(ConfigError, match="device_map"):
            parse_device_map(bad)


def test_lm_placed_by_a_device_map_equals_the_unplaced_lm(tmp_path_factory: pytest.TempPathFactory) -> None:
    from gill_eval.models.gill.tiny import tiny_gill_dir

    sources = resolve_sources(str(tiny_gill_dir(root=tmp_path_factory.mktemp("tiny-gill-devices"))))
    plain = load_gill(sources, precision="fp32", device="cpu")
    mapping = {name: "cpu" for name in OPT_MODULES}
    placed = load_gill(sources, precision="fp32", device="cpu", device_map=json.dumps(mapping))
    # one device only (transformers dispatches hooks for 2+ devices): what runs here is gill-eval's side,
    # the map handed to from_pretrained, no .to(device) of the LM, inputs to the embedding's device
    assert all(p.device.type == "cpu" for p in placed.lm.parameters())
    # the [IMG] rows survive the resize of a dispatched model, and still score the [IMG] logits
    assert placed.lm.get_output_embeddings().weight is placed.embedding.weight
    ids = list(placed.tokens.img_ids)
    assert torch.equal(placed.embedding.weight[ids], plain.embedding.weight[ids])
    contexts = [["a dog on the beach"], ["the sky at night", "over the city"]]
    assert torch.equal(placed.forced_img_states_batch(contexts, DecodeSettings()),
                       plain.forced_img_states_batch(contexts, DecodeSettings()))
    _, placed_logits = placed.lm_forward(placed.embed_context(contexts[0]))
    _, plain_logits = plain.lm_forward(plain.embed_context(contexts[0]))
    assert torch.equal(placed_logits, plain_logits)


def test_tiny_gill_module_names_match_the_map(tmp_path: Path) -> None:
    """The map above names every top-level placement unit of OPT (so it is a complete map)."""
    from transformers import OPTConfig, OPTForCausalLM

    lm = OPTForCausalLM(OPTConfig(vocab_size=16, hidden_size=8, num_hidden_layers=2, ffn_dim=8,
                                  num_attention_heads=2, word_embed_proj_dim=8))
    names = dict(lm.named_modules())
    assert all(name in names for name in OPT_MODULES)
