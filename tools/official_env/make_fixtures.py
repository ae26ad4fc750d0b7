"""Official-environment oracle: the arrays GILL's scripts give each network, computed under GILL's own pins.

Runs inside the side environment that ``build_env.py`` makes (transformers 4.30.2, Pillow 9.4.0, no ftfy,
torchmetrics 0.11.4, OpenCV for ``lpips_2dirs.py``'s reads). Written from the official scripts
(kohjingyu/gill ``gill/utils.py``, ``evals/``, ``TrainDecisionClassifier.ipynb``; diffusers' SD prompt
encoding), not from gill-eval's code; gill-eval is never imported here. Writes into ``--out``
(tests/fixtures/official_env):

- ``images/``: the fixture files (odd sizes, L, CMYK, EXIF orientation, 16-bit, palette, bilevel, RGBA, LA
  and palette transparency), made here with Pillow 9.4 from seeded numpy fields;
- ``images.npz``: per image, ``vist224/NAME`` (``get_image_from_url``: resize to 224x224 in the file's own
  mode with Pillow's default filter, then RGB: VIST photos and every GILL image input);
- ``images.json``: per image, sha256 of ``clip224`` (the uint8 pixels the CLIP processor of
  ``compute_clip_similarity_*.py`` normalised), of ``fid256`` (RGB, centred square, LANCZOS to 256), of
  every float32 array a network receives (the CLIP processor's pixel values for CLIP similarity and for
  GILL, the LPIPS input) and of OpenCV's decode (hashes keep the fixtures small; float bits are pinned too);
- ``tokens.json``: SD's prompt token ids (the slow ``CLIPTokenizer`` of transformers 4.30.2 without ftfy,
  as diffusers 0.17 calls it) for every PartiPrompts prompt and some hand-made strings;
- ``table6.npz`` / ``table6.json``: synthetic decision features and the notebook's training run on them
  (torchmetrics 0.11.4 macro F1 at t = 0.5 every 100 steps, "Best F1"), and F1 over the 50-point grid;
- ``versions.json``: the library versions that made all this.

Usage (see tools/official_env/README.md):
    SIDE=$(python tools/official_env/build_env.py | tail -1)
    $SIDE tools/official_env/make_fixtures.py --out tests/fixtures/official_env \\
        --partiprompts PartiPrompts.tsv --bpe "$(python -c 'import open_clip.tokenizer as t; print(t.default_bpe())')"
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import PIL
import torch
import torchmetrics
import transformers
from PIL import Image
from transformers import CLIPImageProcessor, CLIPTokenizer

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


# ------------------------------------------------------------------------------------------ images


def _field(w: int, h: int, seed: int, channels: int = 3, noise: int = 2) -> np.ndarray:
    """A smooth seeded colour field with a little pixel noise and one hard edge, float in [0, 255]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.empty((h, w, channels))
    for c in range(channels):
        fx, fy, phase = rng.uniform(1, 5, 3)
        out[..., c] = 127.5 + 100 * np.sin(2 * np.pi * (fx * x / w + fy * y / h) + phase)
    out[:, w // 3 : w // 3 + max(1, w // 20)] = rng.uniform(0, 255, channels)  # a sharp bar
    out += rng.integers(-noise, noise + 1, out.shape)
    return np.clip(out, 0, 255)


def _u8(a: np.ndarray) -> np.ndarray:
    return np.round(a).astype(np.uint8)


def _rgb(w: int, h: int, seed: int) -> Image.Image:
    return Image.fromarray(_u8(_field(w, h, seed)), "RGB")


def _save(im: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    return _save(_rgb(320, 240, 7), "JPEG", quality=92, exif=exif.tobytes())


def _rgba() -> Image.Image:
    a = _u8(_field(300, 200, 11, channels=4))
    a[:50, :, 3] = 0  # a fully transparent band whose colour is not white
    a[50:100, :, 3] = np.linspace(0, 255, 300).astype(np.uint8)
    return Image.fromarray(a, "RGBA")


def _la() -> Image.Image:
    a = _u8(_field(200, 300, 12, channels=2))
    a[:, :40, 1] = 0
    return Image.fromarray(a, "LA")


def _palette_transparent() -> Image.Image:
    im = _rgb(250, 190, 13).quantize(32)
    im.info["transparency"] = 3  # one palette entry (a real, non-white colour) becomes transparent
    return im


def _gray16() -> Image.Image:
    a = (_field(210, 150, 14, channels=1)[..., 0] * 257).astype(np.uint16)
    return Image.fromarray(a, "I;16")


def fixture_images() -> dict[str, bytes]:
    """name -> file bytes. Names say what each case exercises."""
    return {
        "rgb_640x427.jpg": _save(_rgb(640, 427, 1), "JPEG", quality=90),
        "rgb_427x640.jpg": _save(_rgb(427, 640, 2), "JPEG", quality=90),
        "rgb_683x683.jpg": _save(_rgb(683, 683, 3), "JPEG", quality=90),
        "rgb_3x5.png": _save(_rgb(3, 5, 4), "PNG"),
        "rgb_225x224.png": _save(_rgb(225, 224, 5), "PNG"),
        "gray_300x200.jpg": _save(_rgb(300, 200, 6).convert("L"), "JPEG", quality=90),
        "exif6_320x240.jpg": _exif_rotated(),
        "cmyk_300x240.jpg": _save(_rgb(300, 240, 8).convert("CMYK"), "JPEG", quality=90),
        "gray16_210x150.png": _save(_gray16(), "PNG"),
        "pal_333x250.png": _save(_rgb(333, 250, 9).quantize(64), "PNG"),
        "bilevel_170x230.png": _save(_rgb(170, 230, 10).convert("1"), "PNG"),
        "rgba_300x200.png": _save(_rgba(), "PNG"),
        "la_200x300.png": _save(_la(), "PNG"),
        "ptrns_250x190.png": _save(_palette_transparent(), "PNG"),
        "ptrns_250x190.gif": _save(_palette_transparent(), "GIF", transparency=3),
    }


# ------------------------------------------------------------------------------------------ oracles


def clip_processor() -> CLIPImageProcessor:
    """openai/clip-vit-large-patch14's preprocessor_config.json, spelled out (no hub)."""
    return CLIPImageProcessor(do_resize=True, size={"shortest_edge": 224}, resample=3, do_center_crop=True,
                              crop_size={"height": 224, "width": 224}, do_rescale=True, rescale_factor=1 / 255,
                              do_normalize=True, image_mean=CLIP_MEAN, image_std=CLIP_STD, do_convert_rgb=True)


def get_image_from_url(data: bytes) -> Image.Image:
    """gill/utils.py get_image_from_url, on bytes already fetched."""
    img = Image.open(io.BytesIO(data))
    img = img.resize((224, 224))
    return img.convert("RGB")


def fid_input(data: bytes) -> np.ndarray:
    im = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = im.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return np.asarray(im.crop((left, top, left + s, top + s)).resize((256, 256), Image.LANCZOS))


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _pixels_to_u8(pixel_values: np.ndarray) -> np.ndarray:
    """The uint8 HWC image that the processor normalised; checked to reproduce every float bit."""
    mean, std = np.array(CLIP_MEAN, np.float32), np.array(CLIP_STD, np.float32)
    x = pixel_values.transpose(1, 2, 0)
    u8 = np.clip(np.round((x * std + mean) * 255), 0, 255).astype(np.uint8)
    again = ((u8 * (1 / 255)).astype(np.float32) - mean) / std
    if not np.array_equal(again, x):
        raise SystemExit("the CLIP processor's output is not an affine image of uint8 pixels")
    return u8


def lpips_input(path: Path) -> tuple[np.ndarray, torch.Tensor] | None:
    """lpips_2dirs.py: lpips.load_image (cv2.imread, BGR to RGB), im2tensor, resize((256, 256), antialias).

    None where OpenCV cannot read the file (GIF): lpips_2dirs.py would fail on it.
    """
    bgr = cv2.imread(str(path))
    if bgr is None:
        return None
    rgb = bgr[:, :, ::-1]
    t = torch.Tensor((rgb / (255.0 / 2.0) - 1.0)[:, :, :, np.newaxis].transpose((3, 2, 0, 1)))
    # torchvision's tensor resize with antialias is this interpolate call
    return np.ascontiguousarray(rgb), torch.nn.functional.interpolate(t, size=(256, 256), mode="bilinear",
                                                                      align_corners=False, antialias=True)


def image_fixtures(out: Path) -> None:
    folder = out / "images"
    folder.mkdir(parents=True, exist_ok=True)
    proc = clip_processor()
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, dict] = {}
    for name, data in fixture_images().items():
        (folder / name).write_bytes(data)
        opened = Image.open(io.BytesIO(data))
        vist = get_image_from_url(data)
        arrays[f"vist224/{name}"] = np.asarray(vist)
        # compute_clip_similarity_*.py: the file as opened, straight into CLIPProcessor
        sim = proc(images=Image.open(io.BytesIO(data)), return_tensors="np").pixel_values[0]
        clip224 = _pixels_to_u8(sim)
        # gill/utils.py get_pixel_values_for_model(feature_extractor, get_image_from_url(url))
        gill = proc(vist.convert("RGB"), return_tensors="np").pixel_values[0]
        fid256 = fid_input(data)
        lpips = lpips_input(folder / name)
        meta[name] = {"mode": opened.mode, "size": list(opened.size), "sha256_file": hashlib.sha256(data).hexdigest(),
                      "sha256_clip_similarity_pixel_values": _sha(sim.astype(np.float32)),
                      "sha256_clip224": _sha(clip224), "sha256_fid256": _sha(fid256),
                      "sha256_gill_pixel_values": _sha(gill.astype(np.float32)),
                      "gill_pixels_equal_vist224": bool(np.array_equal(_pixels_to_u8(gill), arrays[f"vist224/{name}"])),
                      "cv2_decoded_shape": None if lpips is None else list(lpips[0].shape),
                      "sha256_cv2_decoded": None if lpips is None else _sha(lpips[0]),
                      "sha256_lpips_input": None if lpips is None else _sha(lpips[1].numpy().astype(np.float32))}
    np.savez_compressed(out / "images.npz", **arrays)
    (out / "images.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------------ tokens

EXTRA_PROMPTS = [
    "san francisco's golden gate bridge", "San Francisco\u2019s skyline", "don't  stop\tbelieving\n",
    "Caf\u00e9 au lait", "Cafe\u0301 (decomposed)", "na\u00efve r\u00e9sum\u00e9", "\u201cquoted\u201d text",
    "A.B.C. 1,000,000 & co.", "\u6771\u4eac tower", "emoji \U0001f600 face", "fish &amp; chips",
    "a\u00a0non-breaking space", "tab\u0009and\u000bvertical", "we're they'll I'd you've", "  leading space",
    " ".join(["word"] * 90),
]


def _clip_vocab(bpe: Path, folder: Path) -> tuple[Path, Path]:
    """vocab.json and merges.txt of SD's tokenizer, from CLIP's BPE file (the 48,894 merges it uses)."""
    with gzip.open(bpe, "rt", encoding="utf-8") as fh:
        merges = fh.read().split("\n")[1 : 49152 - 256 - 2 + 1]
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + \
        list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    symbols = [chr(c) for c in cs]
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab, merges_file = folder / "vocab.json", folder / "merges.txt"
    vocab.write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    merges_file.write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return vocab, merges_file


def read_partiprompts(path: Path) -> list[str]:
    """The Prompt column, as read line by line (a prompt may start with a quote or a space)."""
    lines = path.read_text(encoding="utf-8").split("\n")[1:]
    return [line.rstrip("\r").split("\t")[0] for line in lines if line.strip()]


def token_fixtures(out: Path, partiprompts: Path, bpe: Path) -> None:
    try:
        import ftfy  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("ftfy is importable: GILL's environment has no ftfy, rebuild the side environment")
    with tempfile.TemporaryDirectory() as tmp:
        vocab, merges = _clip_vocab(bpe, Path(tmp))
        tok = CLIPTokenizer(str(vocab), str(merges), model_max_length=77, pad_token="<|endoftext|>")
    prompts = read_partiprompts(partiprompts) + EXTRA_PROMPTS
    rows = []
    for prompt in prompts:
        # diffusers 0.17 StableDiffusionPipeline._encode_prompt
        ids = tok(prompt, padding="max_length", max_length=tok.model_max_length, truncation=True).input_ids
        full = tok(prompt, padding="longest").input_ids
        end = ids.index(49407) + 1
        rows.append({"prompt": prompt, "ids": ids[:end], "truncated": len(full) > 77})
    doc = {"tokenizer": "CLIPTokenizer (slow, no ftfy), padding=max_length 77 with <|endoftext|>", "rows": rows}
    (out / "tokens.json").write_text(json.dumps(doc, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------------ Table 6


def table6_fixtures(out: Path) -> None:
    """Synthetic features through the notebook's training cell, evaluated with torchmetrics 0.11.4."""
    rng = np.random.default_rng(6)
    n, dim = 800, 16
    labels = (rng.random(n) < 0.45).astype(np.int64)
    features = (rng.normal(0, 1, (n, dim)) + 0.35 * labels[:, None] * rng.normal(0, 1, dim)).astype(np.float32)
    np.savez_compressed(out / "table6.npz", features=features, labels=labels)
    num_train = 600
    torch.manual_seed(1337)
    f1 = torchmetrics.F1Score(task="multiclass", num_classes=2, average="macro")
    train_x, train_y = torch.tensor(features[:num_train]), torch.tensor(labels[:num_train])
    test_x, test_y = torch.tensor(features[num_train:]), torch.tensor(labels[num_train:])
    clf = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(dim, 2))
    opt = torch.optim.AdamW(clf.parameters(), lr=1e-3, weight_decay=0, eps=1e-8)
    ce = torch.nn.CrossEntropyLoss()
    steps, val_f1, grids = 2000, [], []
    grid = np.linspace(0, 1, num=50)
    for i in range(steps):
        loss = ce(clf(train_x), train_y)
        if i % 100 == 0 or i == steps - 1:
            clf.eval()
            with torch.no_grad():
                probs = torch.softmax(clf(test_x), dim=-1)
            val_f1.append(f1((probs > 0.5).float(), test_y).item())
            grids.append([f1((probs > float(t)).float(), test_y).item() for t in grid])
            clf.train()
        loss.backward()
        opt.step()
        opt.zero_grad()
    best = int(np.argmax(val_f1))
    doc = {"num_train": num_train, "steps": [s for s in range(steps) if s % 100 == 0] + [steps - 1],
           "val_f1_at_half": val_f1, "best_f1": float(np.max(val_f1)), "best_index": best,
           "grid_f1_per_checkpoint": grids, "grid": grid.tolist()}
    (out / "table6.json").write_text(json.dumps(doc) + "\n", encoding="utf-8")


def differences(made: Path, committed: Path) -> list[str]:
    """One line per fixture file or array that differs (npz compared by content: zip entries carry times)."""
    lines = []
    for path in sorted(p for p in made.rglob("*") if p.is_file()):
        rel = path.relative_to(made)
        other = committed / rel
        if not other.is_file():
            lines.append(f"{rel}: not committed")
        elif path.suffix == ".npz":
            with np.load(path) as a, np.load(other) as b:
                for key in sorted(set(a.files) | set(b.files)):
                    if key not in a.files or key not in b.files or not np.array_equal(a[key], b[key]):
                        lines.append(f"{rel}: {key} differs")
        elif path.read_bytes() != other.read_bytes():
            lines.append(f"{rel}: differs")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description="Compute the official-environment fixtures.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--compare-with", type=Path, help="committed fixtures: exit 1 if any differ from --out")
    parser.add_argument("--partiprompts", type=Path, required=True, help="PartiPrompts.tsv")
    parser.add_argument("--bpe", type=Path, required=True, help="CLIP's bpe_simple_vocab_16e6.txt.gz")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    image_fixtures(args.out)
    token_fixtures(args.out, args.partiprompts, args.bpe)
    table6_fixtures(args.out)
    versions = {"python": sys.version.split()[0], "pillow": PIL.__version__, "transformers": transformers.__version__,
                "torchmetrics": torchmetrics.__version__, "opencv": cv2.__version__, "numpy": np.__version__,
                "torch": torch.__version__}
    (args.out / "versions.json").write_text(json.dumps(versions, indent=1) + "\n", encoding="utf-8")
    if args.compare_with is not None:
        lines = differences(args.out, args.compare_with)
        for line in lines:
            print(f"official-env: {line}", file=sys.stderr)
        print(f"official-env: {'fixtures differ' if lines else 'fixtures unchanged'} ({args.compare_with})")
        return 1 if lines else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
