"""`prepare vist` on a real-format SIS file served by a loopback server: grouping, rejects, coverage."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from httpserver import LoopbackServer
from typer.testing import CliRunner

from gill_eval.cli import app
from gill_eval.datasets.vist import parse_sis
from gill_eval.errors import InputError

# photo id -> route ('' = no url_o); "3000000012" is referenced but absent from the images list
PHOTOS = {
    "3000000001": "img/p1.jpg", "3000000002": "img/p2.jpg", "3000000003": "img/p3.jpg",
    "3000000004": "img/p4.jpg", "3000000005": "img/p5.jpg", "3000000006": "img/p6.jpg",
    "3000000007": "missing/p7.jpg", "3000000008": "", "3000000009": "truncated/p9.jpg",
    "3000000010": "img/p10.jpg",  # in the album, used by no story: never downloaded
}
P = [None] + [f"30000000{i:02d}" for i in range(1, 13)]  # P[i] is photo i
STORIES = [  # (story id, photo numbers, order field values)
    ("45530", [1, 2, 3, 4, 5], [0, 1, 2, 3, 4]),  # all 5 images
    ("45531", [3, 4, 5, 6, 7], [0, 1, 2, 3, 4]),  # target 404: first 4 only
    ("45532", [8, 1, 2, 3, 4], [0, 1, 2, 3, 4]),  # first photo has no url_o
    ("45533", [1, 2, 3, 9], [0, 1, 2, 3]),        # 4 rows: rejected
    ("45534", [1, 2, 3, 4, 5], [0, 1, 3, 2, 4]),  # out of order: rejected
    ("45535", [12, 1, 2, 3, 4], [0, 1, 2, 3, 4]),  # first photo not in the images list
]


def sis_json(server) -> dict:
    images = []
    for pid, route in PHOTOS.items():
        entry = {"datetaken": "2009-06-04 14:22:10", "license": "5", "title": "", "text": "", "album_id": "72157600001234",
                 "longitude": "0", "id": pid, "secret": "a1b2c3", "media": "photo", "latitude": "0", "tags": "beach"}
        if route:
            entry["url_o"] = server.url(route)
        images.append(entry)
    annotations = []
    storylet = 310000
    for story_id, photos, orders in STORIES:
        for k, (n, order) in enumerate(zip(photos, orders)):
            annotations.append([{
                "original_text": f"Story {story_id} sentence {k}.", "album_id": "72157600001234",
                "photo_flickr_id": P[n], "setting": "first-2-pick-and-tell", "worker_id": "QWE8RTY7UIO",
                "story_id": story_id, "tier": "story-in-sequence", "worker_arranged_photo_order": order,
                "text": f"story {story_id} sentence {k} .", "storylet_id": str(storylet),
            }])
            storylet += 1
    albums = [{"id": "72157600001234", "title": "Beach", "description": "", "vist_label": "beach", "owner": "1@N00",
               "primary": P[1], "photos": "10", "secret": "x", "server": "1", "farm": "1",
               "date_create": "1180000000", "date_update": "1300000000"}]
    return {"images": images, "info": {}, "albums": albums, "type": "story_in_sequence", "annotations": annotations}


OPTIONS = ["--processes", "1", "--threads", "4", "--timeout", "5", "--image-size", "32"]


def cli(data: Path, *args: str):
    return CliRunner().invoke(app, ["--data-dir", str(data), *args])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("vist")
    with LoopbackServer() as server:
        sis = root / "val.story-in-sequence.json"
        sis.write_text(json.dumps(sis_json(server)), encoding="utf-8")
        result = cli(root / "data", "prepare", "vist", "--sis", str(sis), *OPTIONS, "--json")
        requested = set(server.requests)
    assert result.exit_code == 0, result.output
    return root, sis, json.loads(result.stdout), requested


def test_stories_grouped_in_file_order_and_rejects_reported(prepared):
    root, _, summary, _ = prepared
    folder = root / "data" / "datasets" / "vist"
    rows = pq.read_table(folder / "examples" / "00000.parquet").to_pylist()
    assert [r["story_id"] for r in rows] == ["45530", "45531", "45532", "45535"]
    first = rows[0]
    assert first["key"] == "45530" and first["album_id"] == "72157600001234"
    assert first["photo_ids"] == [P[i] for i in (1, 2, 3, 4, 5)]
    assert first["texts"] == [f"story 45530 sentence {k} ." for k in range(5)]
    assert first["original_texts"] == [f"Story 45530 sentence {k}." for k in range(5)]
    assert summary["stories_rejected"] == 2
    rejected = json.loads((folder / "rejected_stories.json").read_text())
    assert [r["story_id"] for r in rejected] == ["45533", "45534"]
    assert "4 rows" in rejected[0]["reason"] and "[0, 1, 3, 2, 4]" in rejected[1]["reason"]


def test_coverage_counts_are_exact(prepared):
    root, _, summary, requested = prepared
    assert summary["examples"] == 4
    assert summary["photos_referenced"] == 10
    assert summary["photos_without_url_o"] == 2
    assert summary["images"] == {"total": 8, "success": 6, "failed": 2,
                                 "failed_by_reason": {"decode_error": 1, "http_404": 1}}
    assert summary["stories"] == {"all_5_images": 1, "first_4_only": 1, "context_image_missing": 2}
    manifest = json.loads((root / "data" / "datasets" / "vist" / "manifest.json").read_text())
    assert manifest["counts"]["stories"] == summary["stories"]
    assert "/img/p10.jpg" not in requested  # only photos that stories use are downloaded
    images = pq.read_table(root / "data" / "datasets" / "vist" / "images" / "00000.parquet")
    assert images.column("key").to_pylist() == sorted(P[i] for i in (1, 2, 3, 4, 5, 6, 7, 9))


def test_parse_rejects_non_list_annotation_with_location(tmp_path):
    data = {"images": [], "annotations": [[{"story_id": "1"}], {"story_id": "2"}]}
    with pytest.raises(InputError, match=r"x\.json: annotations\[0\]\[0\]: missing key 'album_id'"):
        parse_sis(Path("x.json"), data)
    data["annotations"] = [{"story_id": "2"}]
    with pytest.raises(InputError, match=r"annotations\[0\]: expected a one-element list"):
        parse_sis(Path("x.json"), data)


def test_parse_requires_string_ids():
    row = {"story_id": 61004, "album_id": "1", "photo_flickr_id": "2", "worker_arranged_photo_order": 0,
           "text": "a", "original_text": "A"}
    with pytest.raises(InputError, match=r"key 'story_id' should be str, got int"):
        parse_sis(Path("x.json"), {"images": [], "annotations": [[row]]})


def test_bad_json_is_one_line_error_and_keeps_earlier_output(prepared, tmp_path):
    root, sis, _, _ = prepared
    folder = root / "data" / "datasets" / "vist"
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}
    broken = tmp_path / "val.story-in-sequence.json"
    broken.write_text(sis.read_text(encoding="utf-8")[:-40], encoding="utf-8")
    result = cli(root / "data", "prepare", "vist", "--sis", str(broken), *OPTIONS)
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert "\n" not in message and str(broken) in message and "not valid JSON" in message and "line" in message
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()} == before


def test_story_coverage_is_keyed_by_story_not_photo():
    from gill_eval.datasets.vist import story_coverage

    stories = [{"photo_ids": ["a", "b", "c", "d", "e"]}, {"photo_ids": ["f", "g", "h", "i", "e"]}]
    status = {k: "success" for k in "abcdfghi"} | {"e": "http_404"}
    assert story_coverage(stories, status) == {"all_5_images": 0, "first_4_only": 2, "context_image_missing": 0}



def test_local_photos_are_read_only_with_allow_local_urls(tmp_path, monkeypatch):
    """url_o as a relative path and as file://: refused by default; with --allow-local-urls img2dataset gets
    file:// URLs (it reads those as any other URL; the download itself is not run here, to stay fast)."""
    from gill_eval.datasets import vist

    seen = {}

    def capture(urls, *_args, **_kwargs):
        seen.update(zip(urls.column("key").to_pylist(), urls.column("url").to_pylist()))
        raise InputError("stop after the URL list")

    monkeypatch.setattr(vist, "download_images", capture)
    annotations = [[{"story_id": "s1", "album_id": "a", "photo_flickr_id": str(n), "worker_arranged_photo_order": n,
                     "text": "t", "original_text": "T"}] for n in range(5)]
    images = [{"id": str(n), "url_o": f"photos/{n}.jpg"} for n in range(5)]
    images[4]["url_o"] = "file:///srv/photos/4.jpg"
    sis = tmp_path / "val.story-in-sequence.json"
    sis.write_text(json.dumps({"annotations": annotations, "images": images}))
    base = ["--data-dir", str(tmp_path / "data"), "prepare", "vist", "--sis", str(sis)]
    refused = CliRunner().invoke(app, base)
    assert refused.exit_code == 2 and "images[0] (id '0'): key 'url_o': 'photos/0.jpg' is a local file" in refused.stderr
    assert not seen
    result = CliRunner().invoke(app, [*base, "--allow-local-urls"])
    assert "stop after the URL list" in result.stderr
    assert seen == {**{str(n): (tmp_path / "photos" / f"{n}.jpg").as_uri() for n in range(4)},
                    "4": "file:///srv/photos/4.jpg"}
