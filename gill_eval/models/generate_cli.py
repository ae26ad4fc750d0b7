"""`gill-eval generate`: one image from one context, to check a model before a long benchmark.

The context is the ``--prompt`` texts and ``--image`` files **in the order given on the command line**
(``-p c1 -i img1.jpg -p c2`` is the context ``[c1, img1, c2]``, the datasets' caption-before-image order).
Click hands a command each repeated option as one list and loses the interleaving, so ``GenerateCommand``
records the order of occurrences while parsing; mount the function with ``cls=GenerateCommand``.

The seed is used as the generator seed directly; with ``--example-id`` it is combined with the example
id exactly as benchmarks do (``example_seed``), so the image equals that example's benchmark image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import click
import typer
from PIL import Image, UnidentifiedImageError
from typer.core import TyperCommand

from gill_eval.console import emit_json, info
from gill_eval.errors import ConfigError, InputError
from gill_eval.models.base import Context, example_seed

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
) -> None:
    """Generate one image from a context of prompts and images, in the order given on the command line."""
    from gill_eval.models.registry import load_model, model_class, parse_option_pairs
    from gill_eval.store.atomic import atomic_path

    prompts, images = list(prompt or []), list(image or [])
    if not prompts and not images:
        raise ConfigError("generate: give at least one --prompt or --image")
    fmt = _output_format(out)
    context = build_context(ctx.meta.get(_ORDER_KEY, []), prompts, images)
    model_class(model).check_context(context)  # before loading weights
    generator_seed = example_seed(seed, example_id) if example_id is not None else seed
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
