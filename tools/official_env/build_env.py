"""Build (or reuse) the official-environment side venv: GILL's pinned libraries, with our torch linked in.

Run it with the Python of gill-eval's own environment (the one that has torch):

    python tools/official_env/build_env.py [--print-python]

The venv lives outside the clone, in ``$GILL_EVAL_VENV_CACHE`` (default ``~/.cache/gill-eval-ci``) as
``official-env-<key>``, the key being a hash of requirements.txt, this file, the Python version, the torch
version and the environment torch is linked from (its links must not outlive it). GILL pinned torch 1.13.1, which has no Python 3.11 wheel, and torch is large: instead of installing
one, the venv gets a folder of symlinks to exactly torch and the distributions it requires (found through
their metadata), put on ``sys.path`` after the venv's own site-packages by a ``.pth`` file. Nothing else of
our environment is visible there: not our Pillow, transformers, tokenizers or numpy, and not ftfy (whose
presence switches transformers 4.30's CLIP tokenizer to another text clean-up; GILL never installed it).
Prints the venv's python on the last line. Exit 3 when the venv cannot be built (CI then skips the check).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NEVER_LINKED = {"pillow", "transformers", "tokenizers", "numpy", "ftfy", "huggingface-hub", "regex", "opencv-python",
                "opencv-python-headless", "torchmetrics"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def torch_closure() -> list[md.Distribution]:
    """torch and every distribution it requires (transitively), as installed here; markers evaluated."""
    from packaging.requirements import Requirement

    seen: dict[str, md.Distribution] = {}
    todo = ["torch"]
    while todo:
        name = _norm(todo.pop())
        if name in seen or name in NEVER_LINKED:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        seen[name] = dist
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(seen.values())


def _top_level_paths(dist: md.Distribution) -> set[Path]:
    """The top-level files and folders a distribution installed into site-packages."""
    base = Path(dist.locate_file(""))
    tops = set()
    for f in dist.files or []:
        first = Path(f).parts[0]
        if first in ("..", "__pycache__") or first.endswith(".pth"):
            continue
        tops.add(base / first)
    return tops


def link_folder(target: Path) -> list[str]:
    target.mkdir(parents=True, exist_ok=True)
    names = []
    for dist in torch_closure():
        names.append(f"{dist.metadata['Name']}=={dist.version}")
        for path in _top_level_paths(dist):
            link = target / path.name
            if path.exists() and not link.exists():
                link.symlink_to(path)
    return sorted(names)


def env_key() -> str:
    h = hashlib.sha256()
    for part in ((HERE / "requirements.txt").read_bytes(), Path(__file__).read_bytes(),
                 sys.version.split()[0].encode(), md.version("torch").encode(), sys.prefix.encode()):
        h.update(part)
    return h.hexdigest()[:16]


def build() -> Path:
    cache = Path(os.environ.get("GILL_EVAL_VENV_CACHE", Path.home() / ".cache" / "gill-eval-ci"))
    venv = cache / f"official-env-{env_key()}"
    python = venv / "bin" / "python"
    if (venv / ".complete").is_file():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    linked = link_folder(venv / "linked-torch")
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "zz_linked_torch.pth").write_text(str(venv / "linked-torch") + "\n", encoding="utf-8")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "-r", str(HERE / "requirements.txt")], check=True)
    (venv / "linked.txt").write_text("\n".join(linked) + "\n", encoding="utf-8")
    (venv / ".complete").touch()
    return python


def main() -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    try:
        python = build()
    except (subprocess.CalledProcessError, OSError) as exc:
        print(f"official-env: cannot build the side environment ({exc})", file=sys.stderr)
        return 3
    print(python)
    return 0


if __name__ == "__main__":
    sys.exit(main())
