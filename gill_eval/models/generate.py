"""`gill-eval generate`: one image from one context, to check a model before a long benchmark.

The context is the ``--prompt`` texts and ``--image`` files **in the order given on the command line**
(``-p c1 -i img1.jpg -p c2`` is the context ``[c1, img1, c2]``, the datasets' caption-before-image order).
Click hands a command each repeated option as one list and loses the interleaving, so ``GenerateCommand``
records the order of occurrences while parsing; mount the function with ``cls=GenerateCommand``.

``--interleaved`` (GILL models) writes GILL's own answer instead of one image: text, the images of each
[IMG] block (retrieved from ``--index DATASET`` and generated) and ``answer.json`` (``write_interleaved``).

The seed is used as the generator seed directly; with ``--example-id`` it is combined with the example
id exactly as benchmarks do (``example_seed``), so the image equals that example's benchmark image.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, Optional

import click
import typer
from PIL import Image, UnidentifiedImageError
from typer.core import TyperCommand

from gill_eval.console import emit_json, info
from gill_eval.errors import ConfigError, InputError
from gill_eval.models.base import Context, example_seed
from gill_eval.store.atomic import atomic_write_json

_ORDER_KEY = "gill_eval.generate.order"
_CONTEXT_PARAMS = ("prompt", "image")


class GenerateCommand(TyperCommand):
    """Records the order in which ``--prompt`` and ``--image`` occur, so the context keeps it."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        _, _, order = self.make_parser(ctx).parse_args(args=list(args))
        ctx.meta[_ORDER_KEY] = [param.name for param in order if param.name in _CONTEXT_PARAMS]
        return super().parse_args(ctx, args)


def _load_image(path: Path) -> Image.Image:
    """An RGB image; PIL's decompression-bomb limit stays on."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise InputError(f"--image {path}: not a readable image ({exc})") from None


def build_context(order: list[str], prompts: list[str], images: list[Path]) -> Context:
    """Interleave prompts and loaded images following ``order`` (a list of "prompt"/"image" names)."""
    if sorted(order) != sorted(["prompt"] * len(prompts) + ["image"] * len(images)):
        raise ConfigError("generate: the order of --prompt/--image was not recorded "
                          "(mount the command with cls=GenerateCommand)")
    queues: dict[str, list[Any]] = {"prompt": list(prompts), "image": [_load_image(p) for p in images]}
    return [queues[name].pop(0) for name in order]


def _describe(order: list[str], prompts: list[str], images: list[Path]) -> list[str]:
    """The context as text for the summary: prompts as given, images as their paths."""
    queues: dict[str, list[str]] = {"prompt": list(prompts), "image": [str(p) for p in images]}
    return [queues[name].pop(0) for name in order]


ANSWER_FILE = "answer.json"


def write_interleaved(model: Any, context: Context, seed: int, settings: Any, index: str | None,
                      out: Path) -> dict[str, Any]:
    """Run GILL's interleaved generation and write its images into ``out``; returns the answer's record.

    Files: ``block{k}-gen{j}.png`` (generated, best-ranked first), ``block{k}-ret{j}.png`` (retrieved) and,
    written last by the caller, ``answer.json``: the text segments and, per [IMG] block, the retrieved keys
    and scores, the decision and its probabilities, the generated image paths and which image is shown.
    """
    from gill_eval.models.gill.index import ImageIndex
    from gill_eval.models.gill.interleaved import ImageBlock
    from gill_eval.store.atomic import atomic_path

    loaded = ImageIndex.load(index, model) if index is not None else None
    answer = model.generate_interleaved(context, seed, settings, loaded)
    out.mkdir(parents=True, exist_ok=True)

    def save(image: Image.Image, name: str) -> str:
        with atomic_path(out / name) as tmp:
            image.save(tmp, format="PNG")
        return name

    text: list[str] = []
    blocks: list[dict[str, Any]] = []
    for item in answer:
        if not isinstance(item, ImageBlock):
            text.append(item)
            continue
        k = len(blocks)
        retrieved = [{"key": r.key, "score": r.score, "path": save(r.image, f"block{k}-ret{j}.png")}
                     for j, r in enumerate(item.retrieved)]
        generated = [{"path": save(g.image, f"block{k}-gen{j}.png"), "score": g.score, "nsfw": g.nsfw}
                     for j, g in enumerate(item.generated)]
        shown = retrieved if item.decision == "ret" and retrieved else generated
        blocks.append({"block": k, "after_text": text[-1] if text else "", "token_position": item.position,
                       "decision": item.decision,
                       "p_gen": item.probabilities[0] if item.probabilities else None,
                       "p_ret": item.probabilities[1] if item.probabilities else None,
                       "retrieved": retrieved, "generated": generated, "shown": shown[0]["path"]})
    return {"out": str(out), "index": index, "generator_seed": seed, "text": text, "blocks": blocks,
            "settings": dataclasses.asdict(settings)}


def _output_format(out: Path) -> str:
    fmt = Image.registered_extensions().get(out.suffix.lower())
    if fmt is None:
        raise ConfigError(f"--out {out}: unknown image extension {out.suffix!r} (use .png or .jpg)")
    return fmt


def generate(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="Registered model name (see `gill-eval models list`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Image file to write (.png, .jpg).")],
    prompt: Annotated[
        Optional[list[str]], typer.Option("--prompt", "-p", help="A text item of the context (repeatable).")
    ] = None,
    image: Annotated[
        Optional[list[Path]],
        typer.Option("--image", "-i", exists=True, dir_okay=False, help="An image item of the context (repeatable)."),
    ] = None,
    model_opt: Annotated[
        Optional[list[str]], typer.Option("--model-opt", help="Model option KEY=VALUE (repeatable; see `gill-eval models show M`).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Generator seed.")] = 0,
    example_id: Annotated[
        Optional[str], typer.Option("--example-id", help="Derive the seed as benchmarks do for this example id.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the model fingerprint, seed and stats as JSON.")
    ] = False,
    interleaved: Annotated[bool, typer.Option(
        "--interleaved", help="GILL's own answer (text, retrieved/generated images, decisions) into the folder "
                              "--out, as the official generate_for_images_and_texts.")] = False,
    index: Annotated[Optional[str], typer.Option(
        "--index", help="--interleaved: dataset to retrieve from (built by `gill-eval features gill`).")] = None,
    num_words: Annotated[int, typer.Option("--num-words", help="--interleaved: decoding steps.")] = 32,
    temperature: Annotated[float, typer.Option("--temperature", help="--interleaved: 0 = greedy.")] = 0.0,
    top_p: Annotated[float, typer.Option("--top-p", help="--interleaved: nucleus sampling mass.")] = 1.0,
    min_word_tokens: Annotated[int, typer.Option(
        "--min-word-tokens", help="--interleaved: steps before [IMG] may be emitted.")] = 0,
    ret_scale_factor: Annotated[float, typer.Option(
        "--ret-scale-factor", help="--interleaved: [IMG0] logit |x| factor (retrieval).")] = 1.0,
    gen_scale_factor: Annotated[float, typer.Option(
        "--gen-scale-factor", help="--interleaved: [IMG0] logit |x| factor (generation).")] = 1.0,
    max_num_rets: Annotated[int, typer.Option("--max-num-rets", help="--interleaved: [IMG] blocks kept.")] = 1,
    num_gen_images: Annotated[int, typer.Option(
        "--num-gen-images", help="--interleaved: SD images per block.")] = 1,
) -> None:
    """Generate one image from a context of prompts and images, in the order given on the command line."""
    from gill_eval.models.registry import load_model, model_class, parse_option_pairs
    from gill_eval.store.atomic import atomic_path

    prompts, images = list(prompt or []), list(image or [])
    if not prompts and not images:
        raise ConfigError("generate: give at least one --prompt or --image")
    if index is not None and not interleaved:
        raise ConfigError("generate: --index needs --interleaved")
    fmt = "" if interleaved else _output_format(out)
    context = build_context(ctx.meta.get(_ORDER_KEY, []), prompts, images)
    model_class(model).check_context(context)  # before loading weights
    generator_seed = example_seed(seed, example_id) if example_id is not None else seed
    if interleaved:
        from gill_eval.models.gill.adapter import GILLModel
        from gill_eval.models.gill.interleaved import InterleavedSettings
        from gill_eval.models.gill.model import DecodeSettings

        if not issubclass(model_class(model), GILLModel):
            raise ConfigError(f"generate --interleaved: model {model!r} is not a GILL model (use gill or tiny-gill)")
        settings = InterleavedSettings(DecodeSettings(num_words=num_words, temperature=temperature, top_p=top_p,
                                                      min_word_tokens=min_word_tokens,
                                                      ret_scale_factor=ret_scale_factor,
                                                      gen_scale_factor=gen_scale_factor),
                                       max_num_rets=max_num_rets, num_gen_images=num_gen_images)
        chosen = load_model(model, parse_option_pairs(list(model_opt or [])))
        record = write_interleaved(chosen, context, generator_seed, settings, index, out)
        record.update(model=chosen.fingerprint(), seed=seed, example_id=example_id,
                      context=_describe(ctx.meta[_ORDER_KEY], prompts, images))
        atomic_write_json(out / ANSWER_FILE, record)
        if as_json:
            emit_json(record)
        else:
            info(f"wrote {out / ANSWER_FILE}: {len(record['blocks'])} image block(s)")
        return
    chosen = load_model(model, parse_option_pairs(list(model_opt or [])))
    info(f"generating with {model} (seed {generator_seed})")
    result = chosen.generate([context], [generator_seed])[0]
    with atomic_path(out) as tmp:
        result.save(tmp, format=fmt)
    summary = {
        "out": str(out),
        "model": chosen.fingerprint(),
        "seed": seed,
        "example_id": example_id,
        "generator_seed": generator_seed,
        "context": _describe(ctx.meta[_ORDER_KEY], prompts, images),
        "stats": chosen.last_run_stats,
        "size": list(result.size),
    }
    if as_json:
        emit_json(summary)
    else:
        info(f"wrote {out} ({result.size[0]}x{result.size[1]})")
