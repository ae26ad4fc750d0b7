"""Build the bundled sample into a folder: synthetic images plus the real-format annotation files.

The annotation files (VIST SIS, VisDial v1.0, COCO captions, header-less CC3M TSVs) are committed under
``gill_eval/sample/files/`` exactly in the published formats, with unmodified copies of the four
PartiPrompts/GILL decision files (Apache-2.0, served so that their pinned sha256 is checked); image URLs in them point at
``SAMPLE_ORIGIN``, a host name that never resolves: the quickstart's loopback server answers for it as
the HTTP proxy of the downloads, so the files, and every hash made from them, are the same whatever port
the server got. The images are drawn from their names (deterministic, a few kB each), so no binary files are
committed. Some names deliberately have no image, to show failures in the coverage reports.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from PIL import Image, ImageDraw

SAMPLE_ORIGIN = "http://gill-eval-sample.invalid"
"""Scheme and host of every image URL in the sample files (``.invalid`` is reserved: never resolved, never
reached on the network; only through the quickstart's proxy)."""

CC3M_IMAGES = [f"cc3m/{i:03d}.jpg" for i in range(12)]
"""Served: rows 0..11 of the TSVs; the TSVs also name two files that do not exist (404)."""
VIST_PHOTOS = [f"vist/{pid}.jpg" for pid in (
    "5301", "5302", "5303", "5304", "5305", "5306", "5307",
    "7101", "7102", "7103", "7104", "7105", "7106",
)]
"""Served photos; photo 7107 is referenced with a url_o that 404s, photo 7108 has no url_o."""
VISDIAL_IMAGE_IDS = (185565, 284024, 378466)
COCO_IMAGE_IDS = (42, 73, 139, 285)
COCO2017_IMAGE_IDS = (139, 285)
"""val2017 images served; the captions file also names image 632, which is missing (coverage shows it)."""
VQAV2_FILES = ("v2_OpenEnded_mscoco_val2014_questions.json", "v2_mscoco_val2014_annotations.json",
               "v2_mscoco_train2014_annotations.json")


def synthetic_image(name: str, size: tuple[int, int] = (96, 72), fmt: str = "JPEG") -> bytes:
    """A small deterministic picture (gradient, a disc and a bar whose colours come from ``name``)."""
    seed = hashlib.sha256(name.encode("utf-8")).digest()
    width, height = size
    im = Image.new("RGB", size)
    draw = ImageDraw.Draw(im)
    for y in range(height):
        t = y / max(1, height - 1)
        draw.line([(0, y), (width, y)], fill=(int(seed[0] * (1 - t)), int(seed[1] * t), 128))
    r = min(width, height) // 4
    cx, cy = r + seed[2] % (width - 2 * r), r + seed[3] % (height - 2 * r)
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(seed[4], seed[5], seed[6]))
    draw.rectangle([0, height - 8, width * (seed[7] % 8 + 1) // 8, height], fill=(seed[8], seed[9], seed[10]))
    buf = io.BytesIO()
    im.save(buf, format=fmt, quality=90)
    return buf.getvalue()


def _size(name: str) -> tuple[int, int]:
    seed = hashlib.sha256(name.encode("utf-8")).digest()
    return 64 + seed[11] % 64, 48 + seed[12] % 48


@dataclass(frozen=True)
class Sample:
    """Paths of a built sample. ``served`` is the folder the loopback server must serve."""

    root: Path
    served: Path
    cc3m_train: Path
    cc3m_val: Path
    vist_sis: Path
    visdial_dialogs: Path
    visdial_dense: Path
    visdial_images: Path
    coco_captions: Path
    coco_images: Path
    coco2017_captions: Path
    coco2017_images: Path
    vqav2_questions: Path
    vqav2_annotations: Path
    vqav2_train_annotations: Path
    partiprompts_url_path: str


def build_sample(dest: Path) -> Sample:
    """Write the sample into ``dest`` (image URLs on ``SAMPLE_ORIGIN``; the images under ``dest/served``)."""
    dest.mkdir(parents=True, exist_ok=True)
    files = resources.files("gill_eval.sample") / "files"
    served = dest / "served"
    for rel in CC3M_IMAGES + VIST_PHOTOS:
        target = served / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(synthetic_image(rel, _size(rel)))
    for rel in ("cc3m/train.tsv", "cc3m/val.tsv", "vist/val.story-in-sequence.json",
                "visdial/visdial_1.0_val.json", "visdial/visdial_1.0_val_dense_annotations.json",
                "coco/annotations/captions_val2014.json", "coco/annotations/captions_val2017.json",
                *(f"vqav2/{name}" for name in VQAV2_FILES)):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((files / rel).read_bytes())
    parti = served / "partiprompts"
    parti.mkdir(parents=True, exist_ok=True)
    for entry in (files / "partiprompts").iterdir():
        if entry.name.endswith(".tsv"):
            (parti / entry.name).write_bytes(entry.read_bytes())
    visdial_zip = dest / "visdial" / "VisualDialog_val2018.zip"
    with zipfile.ZipFile(visdial_zip, "w") as zf:
        for image_id in VISDIAL_IMAGE_IDS:
            name = f"VisualDialog_val2018/VisualDialog_val2018_{image_id:012d}.jpg"
            # a fixed entry time: the archive's bytes (its sha256 keys the prepared dataset) are the same every build
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), synthetic_image(name, _size(name)))
    coco_dir = dest / "coco" / "val2014"
    if coco_dir.exists():
        shutil.rmtree(coco_dir)
    coco_dir.mkdir(parents=True)
    for image_id in COCO_IMAGE_IDS:
        name = f"COCO_val2014_{image_id:012d}.jpg"
        (coco_dir / name).write_bytes(synthetic_image(name, _size(name)))
    coco2017_dir = dest / "coco" / "val2017"
    if coco2017_dir.exists():
        shutil.rmtree(coco2017_dir)
    coco2017_dir.mkdir(parents=True)
    for image_id in COCO2017_IMAGE_IDS:
        name = f"{image_id:012d}.jpg"
        (coco2017_dir / name).write_bytes(synthetic_image(f"val2017/{name}", _size(name)))
    return Sample(
        root=dest, served=served,
        cc3m_train=dest / "cc3m/train.tsv", cc3m_val=dest / "cc3m/val.tsv",
        vist_sis=dest / "vist/val.story-in-sequence.json",
        visdial_dialogs=dest / "visdial/visdial_1.0_val.json",
        visdial_dense=dest / "visdial/visdial_1.0_val_dense_annotations.json",
        visdial_images=visdial_zip,
        coco_captions=dest / "coco/annotations/captions_val2014.json", coco_images=coco_dir,
        coco2017_captions=dest / "coco/annotations/captions_val2017.json", coco2017_images=coco2017_dir,
        vqav2_questions=dest / "vqav2" / VQAV2_FILES[0], vqav2_annotations=dest / "vqav2" / VQAV2_FILES[1],
        vqav2_train_annotations=dest / "vqav2" / VQAV2_FILES[2],
        partiprompts_url_path="partiprompts/",
    )
