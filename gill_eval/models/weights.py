"""Offline-first weight resolution: one registry of every weight gill-eval uses, and the loaders.

Why a registry: air-gapped users need one command (``gill-eval models fetch``) that stages everything
into the **standard caches** (``HF_HOME`` for hub repositories, ``TORCH_HOME`` for torchvision and
torch-fidelity files), a sha256 record of every file (results cite it as the model fingerprint), and a
hard offline mode in which a missing weight fails at once with one line naming the weight and the command
that stages it, instead of a hub traceback minutes into a run.

Resolution rules for every loader here:

* a local path (file or folder) is used as is, online or offline;
* a registered name or hub id is looked up in the standard cache; if absent, offline mode raises
  ``OfflineError`` (nothing is written), otherwise it is fetched first (and recorded) like ``fetch``.

Records live in ``cache_root()/weights/<name>.json`` (``GILL_EVAL_CACHE``): they only describe what is in
the standard caches; deleting them loses nothing but the recorded checksums.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from gill_eval.errors import ConfigError, OfflineError
from gill_eval.store.atomic import atomic_write_json, sha256_file
from gill_eval.store.root import cache_root

if TYPE_CHECKING:  # heavy imports stay lazy: the CLI must start fast
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTextModel, CLIPTokenizer

_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class UrlFile:
    """One file downloaded by URL; ``hash_prefix`` is the sha256 prefix torch hub names files with."""

    url: str
    filename: str
    hash_prefix: str | None = None


@dataclass(frozen=True)
class WeightSpec:
    """A named weight: a hub repository snapshot (``source='hf'``) or files by URL (``source='url'``).

    For ``hf``: ``patterns`` are always fetched and must all match a file; ``weight_groups`` lists, per
    weight file needed, alternative file names in order of preference (``model.safetensors`` before
    ``pytorch_model.bin``): fetch takes the first that the repository has.
    For ``url``: ``files`` land in ``location`` (``torch-hub``: ``$TORCH_HOME/hub/checkpoints``, where
    torchvision and torch-fidelity look; ``cache``: ``cache_root()/weights/files/<name>``).
    """

    name: str
    description: str
    source: Literal["hf", "url"]
    repo_id: str | None = None
    revision: str | None = None
    patterns: tuple[str, ...] = ()
    weight_groups: tuple[tuple[str, ...], ...] = ()
    files: tuple[UrlFile, ...] = ()
    location: Literal["torch-hub", "cache"] = "torch-hub"
    used_by: str = ""


_SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
_OPENAI_CLIP_OC = "timm/vit_large_patch14_clip_224.openai"
#: Where glide-text2im downloads its checkpoints from (its download.py, MODEL_PATHS).
_GLIDE_URL = "https://openaipublic.blob.core.windows.net/diffusion/dec-2021"

REGISTRY: dict[str, WeightSpec] = {
    spec.name: spec
    for spec in (
        WeightSpec(
            name="clip-vit-l-14",
            description="open_clip ViT-L-14, OpenAI weights (tag 'openai'; needs QuickGELU)",
            source="hf",
            repo_id=_OPENAI_CLIP_OC,
            patterns=("open_clip_config.json",),
            weight_groups=(("open_clip_model.safetensors", "open_clip_pytorch_model.bin"),),
            used_by="features clip, CLIP similarity, CLIPScore, retrieval",
        ),
        WeightSpec(
            name="sd15-text",
            description="Stable Diffusion 1.5 text encoder and tokenizer",
            source="hf",
            repo_id=_SD15,
            patterns=("model_index.json", "tokenizer/*", "text_encoder/config.json"),
            weight_groups=(("text_encoder/model.safetensors", "text_encoder/pytorch_model.bin"),),
            used_by="features sd-text",
        ),
        WeightSpec(
            name="sd15",
            description="Stable Diffusion 1.5 pipeline (fp32 weights, PNDM scheduler, safety checker)",
            source="hf",
            repo_id=_SD15,
            patterns=(
                "model_index.json", "tokenizer/*", "scheduler/*", "feature_extractor/*",
                "text_encoder/config.json", "unet/config.json", "vae/config.json", "safety_checker/config.json",
            ),
            weight_groups=(
                ("text_encoder/model.safetensors", "text_encoder/pytorch_model.bin"),
                ("unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.bin"),
                ("vae/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.bin"),
                ("safety_checker/model.safetensors", "safety_checker/pytorch_model.bin"),
            ),
            used_by="generate (sd, gill)",
        ),
        WeightSpec(
            name="lpips-alex",
            description="torchvision AlexNet trunk for LPIPS (the linear layers ship with lpips)",
            source="url",
            files=(UrlFile("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
                           "alexnet-owt-7be5be79.pth", "7be5be79"),),
            location="torch-hub",
            used_by="LPIPS",
        ),
        WeightSpec(
            name="fid-inception",
            description="torch-fidelity inception-v3-compat weights (TF 2015-12-05 port)",
            source="url",
            files=(UrlFile("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                           "weights-inception-2015-12-05-6726825d.pth",
                           "weights-inception-2015-12-05-6726825d.pth", "6726825d"),),
            location="torch-hub",
            used_by="FID, KID",
        ),
        WeightSpec(
            name="opt-6.7b",
            description="OPT-6.7B language model (GILL's frozen LM)",
            source="hf",
            repo_id="facebook/opt-6.7b",
            patterns=("config.json", "generation_config.json", "tokenizer_config.json", "special_tokens_map.json",
                      "vocab.json", "merges.txt"),
            weight_groups=(("*.safetensors", "pytorch_model*.bin"),),
            used_by="gill",
        ),
        WeightSpec(
            name="clip-vit-large-patch14",
            description="HF transformers CLIP ViT-L/14 (GILL's visual encoder and feature extractor)",
            source="hf",
            repo_id="openai/clip-vit-large-patch14",
            patterns=("config.json", "preprocessor_config.json", "tokenizer_config.json", "tokenizer.json",
                      "special_tokens_map.json", "vocab.json", "merges.txt"),
            weight_groups=(("model.safetensors", "pytorch_model.bin"),),
            used_by="gill",
        ),
        WeightSpec(
            name="glide",
            description="GLIDE (filtered) base 64x64 and upsampler 256x256 checkpoints (OpenAI, dec-2021)",
            source="url",
            files=(UrlFile(f"{_GLIDE_URL}/base.pt", "base.pt"), UrlFile(f"{_GLIDE_URL}/upsample.pt", "upsample.pt")),
            location="cache",
            used_by="glide",
        ),
        WeightSpec(
            name="gill-checkpoint",
            description="GILL released checkpoint (checkpoints/gill_opt of kohjingyu/gill; URLs unverified)",
            source="url",
            files=(
                UrlFile("https://raw.githubusercontent.com/kohjingyu/gill/main/checkpoints/gill_opt/model_args.json",
                        "model_args.json"),
                UrlFile("https://raw.githubusercontent.com/kohjingyu/gill/main/checkpoints/gill_opt/"
                        "decision_model.pth.tar", "decision_model.pth.tar"),
                UrlFile("https://raw.githubusercontent.com/kohjingyu/gill/main/checkpoints/gill_opt/"
                        "pretrained_ckpt.pth.tar", "pretrained_ckpt.pth.tar"),
            ),
            location="cache",
            used_by="gill",
        ),
    )
}

#: hub ids that map to a registered name (a loader given the id resolves through the registry).
_BY_REPO: dict[str, str] = {"openai/clip-vit-large-patch14": "clip-vit-large-patch14",
                            "facebook/opt-6.7b": "opt-6.7b"}


def is_offline() -> bool:
    """Whether downloads are forbidden: ``GILL_EVAL_OFFLINE`` (set by ``--offline``) or ``HF_HUB_OFFLINE``."""
    return any(os.environ.get(var, "").strip().lower() in _TRUE for var in ("GILL_EVAL_OFFLINE", "HF_HUB_OFFLINE"))


def get_spec(name: str) -> WeightSpec:
    """The registered weight ``name``; a ConfigError with close matches otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(REGISTRY), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else f" (known: {', '.join(REGISTRY)})"
        raise ConfigError(f"unknown weight {name!r}{hint}") from None


def _offline_error(name: str) -> OfflineError:
    return OfflineError(f"weight {name!r} is not staged and offline mode is on; "
                        f"stage it with `gill-eval models fetch {name}` on a machine with network access "
                        f"(or pass a local path)")


# ----------------------------------------------------------------------------------------------- caches


def hf_cache_dir() -> Path:
    """The hub cache, read from the environment at call time (``HF_HUB_CACHE``, else ``HF_HOME/hub``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface")
    return Path(home).expanduser() / "hub"


def torch_checkpoints_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints``: where torchvision and torch-fidelity look for downloaded weights."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _records_dir() -> Path:
    return cache_root() / "weights"


def _url_dir(spec: WeightSpec) -> Path:
    return torch_checkpoints_dir() if spec.location == "torch-hub" else _records_dir() / "files" / spec.name


def _matches(root: Path, pattern: str) -> list[Path]:
    if not any(ch in pattern for ch in "*?["):
        return [root / pattern] if (root / pattern).is_file() else []
    return sorted(p for p in root.glob(pattern) if p.is_file())


def _hf_snapshot(spec: WeightSpec) -> Path | None:
    """The cached snapshot folder of ``spec`` if every needed file is in it (no network, nothing written)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    assert spec.repo_id is not None
    try:
        folder = Path(snapshot_download(spec.repo_id, revision=spec.revision, cache_dir=hf_cache_dir(),
                                        local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        return None
    if not all(_matches(folder, p) for p in spec.patterns):
        return None
    if not all(any(_matches(folder, alt) for alt in group) for group in spec.weight_groups):
        return None
    return folder


def _hf_files(spec: WeightSpec, folder: Path) -> list[Path]:
    files: list[Path] = []
    for pattern in spec.patterns:
        files += _matches(folder, pattern)
    for group in spec.weight_groups:
        for alt in group:
            if found := _matches(folder, alt):
                files += found
                break
    return sorted(set(files))


def local_path(name: str) -> Path | None:
    """Where weight ``name`` is staged (hub snapshot folder, or the folder holding its files), or None."""
    spec = get_spec(name)
    if spec.source == "hf":
        return _hf_snapshot(spec)
    folder = _url_dir(spec)
    return folder if all((folder / f.filename).is_file() for f in spec.files) else None


def _staged_files(spec: WeightSpec, folder: Path) -> list[Path]:
    return _hf_files(spec, folder) if spec.source == "hf" else [folder / f.filename for f in spec.files]


# ----------------------------------------------------------------------------------------------- fetch


def _download_hf(spec: WeightSpec) -> Path:
    from huggingface_hub import snapshot_download

    assert spec.repo_id is not None
    folder = Path(snapshot_download(spec.repo_id, revision=spec.revision, cache_dir=hf_cache_dir(),
                                    allow_patterns=list(spec.patterns)))
    for group in spec.weight_groups:
        for alt in group:
            folder = Path(snapshot_download(spec.repo_id, revision=spec.revision, cache_dir=hf_cache_dir(),
                                            allow_patterns=[alt]))
            if _matches(folder, alt):
                break
        else:
            raise ConfigError(f"weight {spec.name!r}: {spec.repo_id} has none of {', '.join(group)}")
    missing = [p for p in spec.patterns if not _matches(folder, p)]
    if missing:
        raise ConfigError(f"weight {spec.name!r}: {spec.repo_id} lacks {', '.join(missing)}")
    return folder


def _download_url(spec: WeightSpec) -> Path:
    folder = _url_dir(spec)
    folder.mkdir(parents=True, exist_ok=True)
    for item in spec.files:
        target = folder / item.filename
        if not target.is_file():
            # torch writes to a temporary file and renames it; hash_prefix rejects a corrupted download.
            torch.hub.download_url_to_file(item.url, str(target), hash_prefix=item.hash_prefix, progress=True)
    return folder


def _record(spec: WeightSpec, folder: Path) -> dict[str, Any]:
    files = [{"path": str(p.relative_to(folder)), "sha256": sha256_file(p), "size": p.stat().st_size}
             for p in _staged_files(spec, folder)]
    record = {
        "name": spec.name,
        "source": spec.source,
        "origin": spec.repo_id if spec.source == "hf" else [f.url for f in spec.files],
        "path": str(folder),
        "files": files,
        "sha256": _combined(files),
        "fetched": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    atomic_write_json(_records_dir() / f"{spec.name}.json", record)
    return record


def _combined(files: list[dict[str, Any]]) -> str:
    """One fingerprint for a multi-file weight: sha256 over sorted (path, sha256) pairs."""
    text = "\n".join(f"{f['path']}\t{f['sha256']}" for f in sorted(files, key=lambda f: f["path"]))
    return hashlib.sha256(text.encode()).hexdigest()


def fetch(names: Iterable[str]) -> list[dict[str, Any]]:
    """Stage each named weight into the standard caches and record the sha256 of every file.

    Returns one record per name: ``{name, source, origin, path, files: [{path, sha256, size}], sha256,
    fetched}`` (``sha256`` is the combined fingerprint), also written to ``cache_root()/weights/NAME.json``.
    Already-cached files are not downloaded again, only hashed. Unknown names fail before any download;
    offline mode raises ``OfflineError`` for the first name that is not already staged.
    """
    specs = [get_spec(n) for n in names]
    records = []
    for spec in specs:
        folder = local_path(spec.name)
        if folder is None:
            if is_offline():
                raise _offline_error(spec.name)
            folder = _download_hf(spec) if spec.source == "hf" else _download_url(spec)
        records.append(_record(spec, folder))
    return records


def read_record(name: str) -> dict[str, Any] | None:
    """The record ``fetch`` wrote for ``name``, or None."""
    path = _records_dir() / f"{get_spec(name).name}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def staged(verify: bool = False) -> list[dict[str, Any]]:
    """One row per registered weight: ``{name, description, used_by, staged, path, sha256, recorded,
    verified}``.

    ``staged`` says whether the files are in the standard cache now; ``sha256`` is the fingerprint recorded
    by ``fetch`` (None if it was staged some other way). With ``verify`` the files are re-hashed and
    ``verified`` says whether they still match the record (None when there is nothing to compare).
    """
    rows = []
    for spec in REGISTRY.values():
        folder = local_path(spec.name)
        record = read_record(spec.name)
        verified: bool | None = None
        if verify and folder is not None and record is not None:
            now = [{"path": str(p.relative_to(folder)), "sha256": sha256_file(p)}
                   for p in _staged_files(spec, folder)]
            verified = _combined(now) == record["sha256"]
        rows.append({
            "name": spec.name,
            "description": spec.description,
            "used_by": spec.used_by,
            "staged": folder is not None,
            "path": str(folder) if folder is not None else None,
            "sha256": record["sha256"] if record else None,
            "recorded": record is not None,
            "verified": verified,
        })
    return rows


def require_staged(names: Iterable[str]) -> None:
    """In offline mode, an ``OfflineError`` naming the first of ``names`` that is not staged (checked before a
    run spends time on generation); online, missing weights are fetched when first loaded."""
    if is_offline():
        for name in names:
            if local_path(name) is None:
                raise _offline_error(name)


def resolve(name: str) -> Path:
    """The local folder of weight ``name``: the cache if staged, else fetched (online) or OfflineError."""
    folder = local_path(name)
    if folder is not None:
        return folder
    if is_offline():
        raise _offline_error(name)
    fetch([name])
    folder = local_path(name)
    assert folder is not None
    return folder


def fingerprint(name_or_path: str) -> str | None:
    """A sha256 fingerprint of the weights a result was made with, or None if unknown.

    A registered name: the fingerprint ``fetch`` recorded. A file: its sha256. A folder: the combined
    fingerprint of every file in it (relative path and sha256), so equal folders anywhere match.
    """
    if name_or_path in REGISTRY:
        record = read_record(name_or_path)
        return record["sha256"] if record else None
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return sha256_file(path)
    if path.is_dir():
        files = [{"path": str(p.relative_to(path)), "sha256": sha256_file(p)}
                 for p in sorted(path.rglob("*")) if p.is_file() and not p.name.startswith(".")]
        return _combined(files)
    return None


# --------------------------------------------------------------------------------------------- loaders


def _hub_or_path(id_or_path: str, default_name: str) -> Path:
    """A local folder for a diffusers/transformers id or path: local paths as is, registered ids resolved."""
    path = Path(id_or_path).expanduser()
    if path.exists():
        return path
    if id_or_path in REGISTRY:
        return resolve(id_or_path)
    if id_or_path in _BY_REPO:
        return resolve(_BY_REPO[id_or_path])
    if id_or_path == get_spec(default_name).repo_id:
        return resolve(default_name)
    raise ConfigError(f"{id_or_path!r} is neither a local path nor a registered weight "
                      f"(registered: {', '.join(REGISTRY)})")


def _torch_dtype(dtype: torch.dtype | str | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    table = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
             "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
    try:
        return table[dtype]
    except KeyError:
        raise ConfigError(f"unknown dtype {dtype!r} (use fp32, fp16 or bf16)") from None


def load_sd_text_encoder(
    id_or_path: str = _SD15,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
) -> tuple[CLIPTokenizer, CLIPTextModel]:
    """The SD text encoder and its tokenizer from a diffusers folder (``tokenizer/``, ``text_encoder/``).

    ``id_or_path``: a local diffusers folder (e.g. ``tiny_sd_dir()``), the SD 1.5 hub id, or ``sd15-text``.
    The model is in eval mode on ``device`` in ``dtype`` (fp32 by default).
    """
    from transformers import CLIPTextModel, CLIPTokenizer

    name = "sd15" if id_or_path == "sd15" else "sd15-text"
    folder = _hub_or_path(id_or_path, name)
    tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer", local_files_only=True)
    encoder = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", dtype=_torch_dtype(dtype),
                                            local_files_only=True)
    return tokenizer, encoder.to(device).eval()


def load_sd_pipeline(
    id_or_path: str = _SD15,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
    scheduler: str | None = None,
) -> StableDiffusionPipeline:
    """diffusers' own ``StableDiffusionPipeline`` from a local folder, the SD 1.5 hub id, or ``sd15``.

    ``scheduler`` names a diffusers scheduler class (e.g. ``"DDIMScheduler"``) built from the pipeline's
    scheduler config; None keeps the saved one (PNDM for SD 1.5, as GILL used).
    """
    import diffusers

    folder = _hub_or_path(id_or_path, "sd15")
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(folder, dtype=_torch_dtype(dtype),
                                                             local_files_only=True)
    if scheduler is not None:
        cls = getattr(diffusers, scheduler, None)
        if cls is None or not hasattr(cls, "from_config"):
            raise ConfigError(f"unknown diffusers scheduler {scheduler!r}")
        pipe.scheduler = cls.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


@dataclass(frozen=True)
class _ClipSource:
    """What ``open_clip.create_model_and_transforms`` is called with."""

    model_name: str
    pretrained: str | None
    force_quick_gelu: bool
    tokenizer_name: str


def _clip_source(model_name: str, pretrained: str | None, quick_gelu: bool | None) -> _ClipSource:
    import open_clip

    if model_name.endswith(".json") and Path(model_name).is_file():
        # A model config file: register it with open_clip under its stem (idempotent).
        open_clip.add_model_config(model_name)
        model_name = Path(model_name).stem
    if pretrained is None:
        return _ClipSource(model_name, None, bool(quick_gelu), model_name)
    path = Path(pretrained).expanduser()
    if path.is_dir():
        # An open_clip folder (open_clip_config.json + weights): the config states quick_gelu itself.
        ref = f"local-dir:{path.resolve()}"
        return _ClipSource(ref, None, bool(quick_gelu), ref)
    if path.is_file():
        # A bare file carries no activation: OpenAI-style weights need QuickGELU, which open_clip only
        # sets from a tag. Default to it (the weights this tool stages are OpenAI's); override explicitly.
        return _ClipSource(model_name, str(path), True if quick_gelu is None else quick_gelu, model_name)
    cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not cfg:
        raise ConfigError(f"--pretrained {pretrained!r}: neither a file nor an open_clip tag of {model_name} "
                          f"(tags: {', '.join(open_clip.list_pretrained_tags_by_model(model_name)) or 'none'})")
    if (model_name, pretrained) != ("ViT-L-14", "openai"):
        raise ConfigError(f"{model_name}/{pretrained}: only ViT-L-14/openai is registered for staging; "
                          f"pass a local file with --pretrained PATH")
    folder = resolve("clip-vit-l-14")
    weights = next(p for alt in REGISTRY["clip-vit-l-14"].weight_groups[0] for p in _matches(folder, alt))
    tag_gelu = bool(cfg.get("quick_gelu", False))
    return _ClipSource(model_name, str(weights), tag_gelu if quick_gelu is None else quick_gelu, model_name)


def load_open_clip(
    model_name: str = "ViT-L-14",
    pretrained: str | None = "openai",
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    quick_gelu: bool | None = None,
) -> tuple[torch.nn.Module, Any, Any]:
    """An open_clip model in eval mode with its eval transform and tokenizer: ``(model, preprocess, tokenizer)``.

    ``model_name``: an open_clip built-in name (``ViT-L-14``) or the path of an open_clip model-config
    JSON (registered under its file stem). ``pretrained``:

    * an open_clip tag (``openai``): resolved to the staged hub file, loaded with the tag's QuickGELU;
    * a weights file: loaded into ``model_name`` with QuickGELU **on** unless ``quick_gelu=False``
      (open_clip would silently build GELU from a bare file; OpenAI weights need QuickGELU);
    * a folder with ``open_clip_config.json`` (e.g. ``tiny_clip_dir()``): ``model_name`` is ignored and
      the folder's config (including ``quick_gelu``) is used;
    * None: random weights (benchmarks only).
    """
    import open_clip

    source = _clip_source(model_name, pretrained, quick_gelu)
    model, _, preprocess = open_clip.create_model_and_transforms(
        source.model_name, pretrained=source.pretrained, precision=precision, device=device,
        force_quick_gelu=source.force_quick_gelu, weights_only=True, load_weights=True,
        pretrained_text=False, pretrained_image=False,
    )
    tokenizer = open_clip.get_tokenizer(source.tokenizer_name)
    return model.eval(), preprocess, tokenizer
