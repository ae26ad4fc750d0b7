"""Raw sources given as URLs (downloaded once, checksummed) or as the VIST tar.gz, read without extracting."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest

from gill_eval.datasets.sources import resolve_source
from gill_eval.datasets.vist import load_sis
from gill_eval.errors import InputError
from gill_eval.quickstart import serve_folder


def test_url_source_is_downloaded_once_and_checksummed(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    body = b"a caption .\thttp://127.0.0.1:1/x.jpg\n"
    (served / "Validation_GCC-1.1.0-Validation.tsv").write_bytes(body)
    with serve_folder(served) as port:
        url = f"http://127.0.0.1:{port}/Validation_GCC-1.1.0-Validation.tsv"
        first = resolve_source(url, tmp_path / "cache")
        assert first.path.read_bytes() == body and first.origin == url
        assert first.sha256 == hashlib.sha256(body).hexdigest()
        (served / "Validation_GCC-1.1.0-Validation.tsv").write_bytes(b"changed")
        assert resolve_source(url, tmp_path / "cache").path.read_bytes() == body  # reused, not refetched
        with pytest.raises(InputError, match=r"/nope\.tsv: download failed \(HTTP Error 404"):
            resolve_source(f"http://127.0.0.1:{port}/nope.tsv", tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")] == [first.path.name]


def _tar(path, members: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_vist_json_read_from_the_released_tarball(tmp_path):
    data = {"images": [], "annotations": []}
    tar = _tar(tmp_path / "SIS-with-labels.tar.gz", {
        "sis/train.story-in-sequence.json": b"{}",
        "sis/val.story-in-sequence.json": json.dumps(data).encode(),
    })
    assert load_sis(tar, "val") == data
    with pytest.raises(InputError, match="no member named sis/test.story-in-sequence.json"):
        load_sis(tar, "test")
    evil = _tar(tmp_path / "evil.tar.gz", {"../sis/val.story-in-sequence.json": b"{}"})
    with pytest.raises(InputError, match="unsafe member name"):
        load_sis(evil, "val")
