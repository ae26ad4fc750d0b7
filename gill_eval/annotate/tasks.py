"""``annotate build``: the kit's items, each a generated and a retrieved image in randomised slots.

* Prompts: the bundled PartiPrompts (keys ``parti-NNNN``, the prepared table's, so the labels line up with
  ``decision features``), or a file: a TSV with PartiPrompts' header, or one prompt per line.
* Generated image: for Stable Diffusion models (``sd``, ``tiny-sd``) the official protocol of GILL's
  ``scripts/generate_sd_p2_images.py``: the pipeline's defaults, prompts in file order in batches of 16,
  and *one* generator seeded 1337 shared by all batches (so an image depends on its batch position). The
  generator's state is saved after every batch, so a resumed build continues the same stream. Other
  models get one seed per prompt (``models.base.example_seed``).
* Retrieved image: the top-1 cosine match of the prompt's CLIP text embedding (``--retrieval-model``)
  among a prepared dataset's ``features clip`` vectors, and that image from the prepared dataset.
* A/B order: ``items.slot_order(order_seed, id)``; gold items pair one prompt's generated image with
  another prompt's retrieved image (the expected relevance answer is the generated one).

Work is kept in ``work/`` (generated PNGs per batch, generator states, retrieval results), so a build
that stops resumes where it was; ``tasks.json`` and ``annotate.html`` are written last.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import gill_eval
from gill_eval.annotate.items import Item, Kit, slot_order
from gill_eval.annotate.page import write_page
from gill_eval.bench.data import PreparedDataset
from gill_eval.console import info, track
from gill_eval.datasets.partiprompts import BASE_COLUMNS, PROMPTS, read_tsv
from gill_eval.errors import ConfigError, InputError
from gill_eval.models.base import Model, example_seed
from gill_eval.store import atomic_write_bytes, atomic_write_json
from gill_eval.store.features import feature_dir, iter_clip_features, require_complete
from gill_eval.store.images import encode_png

OFFICIAL_SEED = 1337
OFFICIAL_BATCH = 16


@dataclass(frozen=True)
class PromptRow:
    """One prompt with its item id and the four official base columns."""

    id: str
    prompt: str
    base: tuple[str, str, str, str]


def bundled_partiprompts() -> Path:
    """The package's copy of ``PartiPrompts.tsv`` (byte-identical to the pinned file)."""
    return Path(gill_eval.__file__).parent / "sample" / "files" / "partiprompts" / PROMPTS


def read_prompts(spec: str, limit: int | None = None) -> tuple[list[PromptRow], str]:
    """The prompts of ``partiprompts`` or a file, and the file-name prefix of the collected files."""
    if spec == "partiprompts":
        rows = [PromptRow(f"parti-{i:04d}", r[0], (r[0], r[1], r[2], r[3]))
                for i, r in enumerate(read_tsv(bundled_partiprompts(), BASE_COLUMNS))]
        prefix = "PartiPrompts"
    else:
        path = Path(spec)
        if not path.is_file():
            raise InputError(f"--prompts {spec}: no such file (give `partiprompts` or a prompts file)")
        first = path.read_text(encoding="utf-8").split("\n", 1)[0].rstrip("\r")
        if first.split("\t") == BASE_COLUMNS:
            table = read_tsv(path, BASE_COLUMNS)
        else:
            lines = [line.rstrip("\r") for line in path.read_text(encoding="utf-8").split("\n")]
            table = [[line, "", "", ""] for line in lines if line.strip()]
        for n, row in enumerate(table):
            if "\t" in row[0]:
                raise InputError(f"{path}: prompt {n + 1} holds a tab (a TSV needs the header {BASE_COLUMNS})")
            if not row[0].strip():
                raise InputError(f"{path}: line {n + 2}: empty prompt")
        rows = [PromptRow(f"p-{i:05d}", r[0], (r[0], r[1], r[2], r[3])) for i, r in enumerate(table)]
        prefix = path.stem
    if not rows:
        raise InputError(f"--prompts {spec}: no prompts")
    return (rows[:limit] if limit is not None else rows), prefix


# ------------------------------------------------------------------------------------------- generation


def _official_protocol(model: Model) -> bool:
    return hasattr(model, "pipe") and hasattr(model, "pipeline_kwargs")


def _state_bytes(generator: Any) -> bytes:
    return generator.get_state().cpu().numpy().tobytes()


def generate_official(model: Any, rows: list[PromptRow], work: Path) -> dict[str, Any]:
    """The official SD protocol (module docstring), resumable at batch boundaries."""
    import torch

    out = work / "gen"
    device = model.device
    generator = torch.Generator(device=device).manual_seed(OFFICIAL_SEED)
    batches = [rows[s : s + OFFICIAL_BATCH] for s in range(0, len(rows), OFFICIAL_BATCH)]
    for b, batch in enumerate(track(batches, "annotate: generating (official SD protocol)")):
        state_file = out / f"state-{b:05d}.bin"
        if state_file.is_file() and all((out / f"{r.id}.png").is_file() for r in batch):
            state = np.frombuffer(state_file.read_bytes(), dtype=np.uint8).copy()
            generator.set_state(torch.from_numpy(state))
            continue
        images = model.pipe([r.prompt for r in batch], generator=generator, **model.pipeline_kwargs()).images
        for row, image in zip(batch, images):
            atomic_write_bytes(out / f"{row.id}.png", encode_png(image))
        atomic_write_bytes(state_file, _state_bytes(generator))  # after the images: a batch is done when it exists
    return {"protocol": "official-shared-generator", "seed": OFFICIAL_SEED, "batch_size": OFFICIAL_BATCH,
            "generator_device": str(device), "order": "prompt file order",
            "pipeline_kwargs": model.pipeline_kwargs()}


def generate_per_example(model: Model, rows: list[PromptRow], work: Path, seed: int) -> dict[str, Any]:
    """One seed per prompt (``example_seed(seed, id)``); resumable per image."""
    out = work / "gen"
    todo = [r for r in rows if not (out / f"{r.id}.png").is_file()]
    for start in track(range(0, len(todo), 8), "annotate: generating"):
        chunk = todo[start : start + 8]
        images = model.generate([[r.prompt] for r in chunk], [example_seed(seed, r.id) for r in chunk])
        for row, image in zip(chunk, images):
            atomic_write_bytes(out / f"{row.id}.png", encode_png(image))
    return {"protocol": "per-example-seed", "seed": seed}


# -------------------------------------------------------------------------------------------- retrieval


def top1(queries: np.ndarray, features: Path) -> tuple[list[str], np.ndarray]:
    """The key and cosine of each query's best candidate among a ``features clip`` folder (streamed)."""
    best_keys: list[str] = [""] * len(queries)
    best = np.full(len(queries), -np.inf, dtype=np.float64)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    for batch in iter_clip_features(features):
        emb = batch.embeddings[batch.ok].astype(np.float64)
        if emb.shape[0] == 0:
            continue
        if emb.shape[1] != q.shape[1]:
            raise InputError(f"{features}: {emb.shape[1]}-d image features, but the retrieval model's text "
                             f"embeddings are {q.shape[1]}-d; use the CLIP that made the features")
        keys = [k for k, ok in zip(batch.keys, batch.ok) if ok]
        scores = q @ (emb / np.linalg.norm(emb, axis=1, keepdims=True)).T
        arg = scores.argmax(axis=1)
        top = scores[np.arange(len(q)), arg]
        better = top > best
        for i in np.flatnonzero(better):
            best_keys[i] = keys[arg[i]]
        best = np.where(better, top, best)
    if not np.isfinite(best).all():
        raise InputError(f"{features}: no usable image features to retrieve from")
    return best_keys, best


def retrieve(rows: list[PromptRow], index: str, model: Model, work: Path) -> dict[str, Any]:
    """Top-1 retrieval for every prompt; the images go to ``work/ret``; cached in ``work/retrieval.json``."""
    done = work / "retrieval.json"
    if done.is_file():
        return json.loads(done.read_text(encoding="utf-8"))
    features = feature_dir("clip", index)
    require_complete(features, f"gill-eval features clip {index}")
    queries = model.embed_queries([[r.prompt] for r in rows])
    keys, scores = top1(np.asarray(queries, dtype=np.float64), features)
    dataset = PreparedDataset(index)
    images = dataset.images(keys)
    for row, key in zip(rows, keys):
        atomic_write_bytes(work / "ret" / f"{row.id}.png", encode_png(images[key]))
    record = {"index": index, "features": str(features), "dataset_hash": dataset.content_hash,
              "model": model.fingerprint(), "retrieved": {r.id: {"key": k, "cosine": float(s)}
                                                          for r, k, s in zip(rows, keys, scores)}}
    atomic_write_json(done, record)
    return record


# ------------------------------------------------------------------------------------------------- kit


def _slot_files(folder: Path, item_id: str, first: Path, second: Path) -> tuple[str, str]:
    names = (f"images/{item_id}-a.png", f"images/{item_id}-b.png")
    for name, source in zip(names, (first, second)):
        atomic_write_bytes(folder / name, source.read_bytes())
    return names


def assemble(folder: Path, rows: list[PromptRow], order_seed: int, gold: int, meta: dict[str, Any]) -> Kit:
    """Place each item's two images in its slots, add ``gold`` attention checks, write tasks and page."""
    work = folder / "work"
    items = []
    for row in rows:
        a = slot_order(order_seed, row.id)
        gen, ret = work / "gen" / f"{row.id}.png", work / "ret" / f"{row.id}.png"
        image_a, image_b = _slot_files(folder, row.id, *((gen, ret) if a == "gen" else (ret, gen)))
        items.append(Item(row.id, row.prompt, a, image_a, image_b, row.base))
    if gold:
        if len(rows) < 2:
            raise ConfigError("--gold needs at least 2 prompts (a gold item pairs two different prompts)")
        picks = random.Random(f"gold:{order_seed}").sample(range(len(rows)), min(gold, len(rows)))
        for k, i in enumerate(picks):
            row, other = rows[i], rows[(i + 1) % len(rows)]
            gid = f"gold-{k:03d}"
            a = slot_order(order_seed, gid)
            gen, ret = work / "gen" / f"{row.id}.png", work / "ret" / f"{other.id}.png"
            image_a, image_b = _slot_files(folder, gid, *((gen, ret) if a == "gen" else (ret, gen)))
            items.append(Item(gid, row.prompt, a, image_a, image_b, row.base, gold="A" if a == "gen" else "B"))
        random.Random(f"shuffle:{order_seed}").shuffle(items)  # gold items are not recognisable by position
    blob = json.dumps([[i.id, i.a, i.prompt] for i in items]).encode()
    meta = {**meta, "kit_id": hashlib.sha256(blob).hexdigest()[:16], "order_seed": order_seed, "gold": gold}
    kit = Kit(folder, items, meta)
    kit.write()
    write_page(kit)
    return kit


def build(prompts: str, gen_model: Model, retrieval_model: Model, index: str, out: Path, *,
          order_seed: int = 0, seed: int = 0, gold: int = 0, limit: int | None = None) -> dict[str, Any]:
    """Build (or resume) the kit in ``out``; returns its summary."""
    rows, prefix = read_prompts(prompts, limit)
    work = out / "work"
    config = {"prompts": prompts, "limit": limit, "gen_model": gen_model.fingerprint(),
              "retrieval_model": retrieval_model.fingerprint(), "index": index, "seed": seed}
    config_file = work / "config.json"
    if config_file.is_file():
        old = json.loads(config_file.read_text(encoding="utf-8"))
        if old != json.loads(json.dumps(config, default=str)):
            raise ConfigError(f"{out}: holds a build with other options ({config_file}); choose another --out")
    else:
        atomic_write_json(config_file, config)
    if _official_protocol(gen_model):
        generation = generate_official(gen_model, rows, work)
    else:
        generation = generate_per_example(gen_model, rows, work, seed)
    info(f"annotate: retrieving the top-1 image of {len(rows)} prompts from {index}")
    retrieval = retrieve(rows, index, retrieval_model, work)
    meta = {"format": "gill-eval-annotate-kit/1", "prefix": prefix, "prompts": prompts, "limit": limit,
            "generation": {"model": gen_model.fingerprint(), **generation},
            "retrieval": {k: v for k, v in retrieval.items() if k != "retrieved"},
            "retrieved": retrieval["retrieved"]}
    kit = assemble(out, rows, order_seed, gold, meta)
    return {"out": str(out), "items": len(kit.items), "prompts": len(rows), "gold": gold,
            "kit_id": kit.meta["kit_id"], "page": str(out / "annotate.html"), "generation": generation["protocol"]}

