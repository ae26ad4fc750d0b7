"""Safe reading of image files from a zip archive or a folder, and safe decoding of image bytes.

The VisDial and COCO images come as large zips from third-party sites. gill-eval never extracts them:
it indexes members by base name and reads their bytes, refusing archives whose member names try to
leave the archive (``../``, absolute paths), members larger than a byte limit, and images with more
pixels than Pillow's decompression-bomb limit. A folder source gets the same treatment: a file that
resolves outside the folder (a symlink pointing elsewhere) is refused.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image

from gill_eval.errors import InputError

MAX_MEMBER_BYTES = 64 * 1024 * 1024
"""Largest archive member or file read into memory (the biggest COCO/VisDial JPEG is well under 5 MB)."""

MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
"""Pillow's decompression-bomb threshold; images with more pixels are refused before decoding."""


class MemberTooLarge(InputError):
    """An archive member or file is larger than ``MAX_MEMBER_BYTES``."""


class MemberCorrupt(InputError):
    """An archive member cannot be read back intact (bad CRC-32, broken compressed stream, encrypted).

    Like an undecodable download, this is that one image's failure (status ``corrupt_member``), not the run's.
    """


def _unsafe_member(name: str) -> bool:
    """Whether an archive member name is absolute or climbs out of the archive root."""
    posix = PurePosixPath(name.replace("\\", "/"))
    return posix.is_absolute() or ".." in posix.parts or (len(name) > 1 and name[1] == ":")


class ImageSource:
    """Image files addressed by base name, read from a zip or a folder with size limits."""

    def __init__(self, path: Path, members: dict[str, str], zip_file: zipfile.ZipFile | None) -> None:
        self.path = path
        self._members = members
        self._zip = zip_file

    def __contains__(self, name: str) -> bool:
        return name in self._members

    def __len__(self) -> int:
        return len(self._members)

    def read(self, name: str) -> bytes:
        """The bytes of the file with base name ``name`` (``KeyError`` when absent)."""
        member = self._members[name]
        if self._zip is not None:
            info = self._zip.getinfo(member)
            if info.file_size > MAX_MEMBER_BYTES:
                raise MemberTooLarge(f"{self.path}: member {member} is {info.file_size} bytes (limit {MAX_MEMBER_BYTES})")
            try:
                with self._zip.open(info) as fh:
                    data = fh.read(MAX_MEMBER_BYTES + 1)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
                # RuntimeError: an encrypted member; NotImplementedError: an unsupported compression method
                raise MemberCorrupt(f"{self.path}: member {member} is unreadable ({' '.join(str(exc).split())})") from exc
        else:
            file = Path(member)
            if file.stat().st_size > MAX_MEMBER_BYTES:
                raise MemberTooLarge(f"{file}: {file.stat().st_size} bytes (limit {MAX_MEMBER_BYTES})")
            with open(file, "rb") as fh:
                data = fh.read(MAX_MEMBER_BYTES + 1)
        if len(data) > MAX_MEMBER_BYTES:
            raise MemberTooLarge(f"{self.path}: {member} exceeds {MAX_MEMBER_BYTES} bytes")
        return data

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> ImageSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_image_source(path: str | os.PathLike[str]) -> ImageSource:
    """Index a zip or a folder of images by base name; one-line errors for unsafe or duplicate entries."""
    root = Path(path).expanduser()
    if root.is_dir():
        return _open_dir(root)
    if not root.is_file():
        raise InputError(f"{root}: no such zip file or folder")
    try:
        zf = zipfile.ZipFile(root)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{root}: not a readable zip file ({exc})") from exc
    members: dict[str, str] = {}
    for info in zf.infolist():
        if _unsafe_member(info.filename):
            zf.close()
            raise InputError(f"{root}: unsafe member name {info.filename!r} (absolute or '..' path); refusing the archive")
        if info.is_dir():
            continue
        base = PurePosixPath(info.filename).name
        if base in members:
            zf.close()
            raise InputError(f"{root}: two members named {base} ({members[base]}, {info.filename})")
        members[base] = info.filename
    return ImageSource(root, members, zf)


def _open_dir(root: Path) -> ImageSource:
    resolved_root = root.resolve()
    members: dict[str, str] = {}
    for folder, _dirs, files in os.walk(root):
        for name in files:
            file = Path(folder) / name
            if not file.resolve().is_relative_to(resolved_root):
                raise InputError(f"{file}: resolves outside {root}; refusing the folder")
            if name in members:
                raise InputError(f"{root}: two files named {name} ({members[name]}, {file})")
            members[name] = str(file)
    return ImageSource(root, members, None)


def read_tar_member(path: Path, member_name: str) -> bytes:
    """Read one member (by path suffix) of a tar/tar.gz without extracting it, with the size limit."""
    try:
        with tarfile.open(path) as tf:
            for info in tf:
                if _unsafe_member(info.name):
                    raise InputError(f"{path}: unsafe member name {info.name!r} (absolute or '..' path)")
                if info.isfile() and (info.name == member_name or info.name.endswith("/" + member_name)):
                    if info.size > 16 * MAX_MEMBER_BYTES:
                        raise InputError(f"{path}: member {info.name} is {info.size} bytes, too large")
                    fh = tf.extractfile(info)
                    assert fh is not None
                    return fh.read()
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error) as exc:  # also a truncated or damaged .gz
        raise InputError(f"{path}: not a readable tar archive ({' '.join(str(exc).split())})") from exc
    raise InputError(f"{path}: no member named {member_name}")


@dataclass(frozen=True)
class DecodedImage:
    """The result of checking image bytes: ``status`` is 'success' or why the image is unusable."""

    status: str
    error_message: str | None
    width: int | None
    height: int | None


def check_image(data: bytes) -> DecodedImage:
    """Decode ``data`` fully with Pillow, refusing more pixels than ``MAX_IMAGE_PIXELS``.

    A full decode (not just the header) is what catches truncated files.
    """
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            if width * height > MAX_IMAGE_PIXELS:
                return DecodedImage("too_many_pixels", f"{width}x{height} exceeds {MAX_IMAGE_PIXELS} pixels", None, None)
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                im.load()
    except Exception as exc:  # noqa: BLE001 - any decoder failure means the bytes are not a usable image
        return DecodedImage("decode_error", f"{type(exc).__name__}: {exc}", None, None)
    return DecodedImage("success", None, width, height)
