"""`bench` writes the same pixels for every --batch-size (docs/protocols.md, "Batched GILL generation").

The oracle is batch size 1 (one context per model call, the official code's setting). The fixture VIST set
has 6 eligible stories, so --batch-size 4 splits each unit into calls of 4 and 2 contexts: a batch of 2
or 3 is where the GILL mapper's attention multiplied matrices of too few rows on CPU and the prompt
embeddings (hence, after SD's guidance amplifies them, a few pixels) moved.
"""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from gill_eval.bench.generation import read_generations, run_generation
from gill_eval.bench.vist import VistBenchmark
from gill_eval.models.registry import load_model
from test_bench_data import build_fixture_data


@pytest.fixture(scope="module")
def tiny_gill(tmp_path_factory: pytest.TempPathFactory):
    from gill_eval.models.gill.tiny import tiny_gill_dir

    folder = tiny_gill_dir(root=tmp_path_factory.mktemp("tiny-gill-bench-batch"))
    # guidance 50 magnifies any difference in the prompt embeddings into pixels within 2 steps
    model = load_model("tiny-gill", {"checkpoint": str(folder), "steps": "2", "guidance": "50", "device": "cpu",
                                     "precision": "fp32"})
    model.gill.sd_pipe.set_progress_bar_config(disable=True)
    return model


def _pixels(plan) -> dict[str, np.ndarray]:
    rows = list(read_generations(plan, columns=["example_id", "status", "image"]))
    assert rows and all(r["status"] == "success" for r in rows)
    return {r["example_id"]: np.asarray(Image.open(io.BytesIO(r["image"]))) for r in rows}


def test_bench_vist_5c4i_writes_the_same_pixels_at_batch_size_1_and_4(tiny_gill) -> None:
    build_fixture_data()
    job = VistBenchmark().job("5c4i")
    assert len(job.example_ids) == 6  # units of 6: batch 4 makes calls of 4 and 2
    by_size = {}
    for size in (1, 4):
        plan = run_generation(tiny_gill, job, [7], None, size)
        assert plan.all_done()
        by_size[size] = _pixels(plan)
        shutil.rmtree(plan.out_dir)  # the folder is keyed by model and data, not batch size: generate again
    assert by_size[1].keys() == by_size[4].keys()
    for example_id, alone in by_size[1].items():
        assert np.array_equal(by_size[4][example_id], alone), f"story {example_id}"
    # not vacuous: the stories' images differ from each other
    first, *others = by_size[1].values()
    assert any(not np.array_equal(first, other) for other in others)


def test_prompt_embeddings_of_batches_of_2_and_3_equal_batch_1(tiny_gill) -> None:
    gill = tiny_gill.gill
    blocks = torch.randn(5, 8, gill.heads.dims.lm_dim, generator=torch.Generator().manual_seed(0))
    alone = torch.cat([gill.prompt_embeds(blocks[i : i + 1]) for i in range(5)])
    for size in (2, 3, 5):
        assert torch.equal(gill.prompt_embeds(blocks[:size]), alone[:size]), f"batch of {size}"
