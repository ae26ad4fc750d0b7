"""The HTML gallery: pages, per-example numbers, Table 5 top candidates, Table 6 prompt rows, files written once.

One module fixture runs a small real matrix (toy models on the fixture data, a toy retriever, the decision
classifier on the packaged PartiPrompts sample) and writes the site; the tests read it. The browser tests
(tests/test_gallery_browser.py) open the same site.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from gill_eval.bench.results import SCORES_FILE, load_results
from gill_eval.models import registry

PIPELINE = """
[pipeline]
title = "Gallery fixture"
report = "{report}"
baseline = "toy-a"
seeds = "0-1"
scorers = "tiny"

[models.toy-a]
name = "toy"

[models.toy-b]
name = "toy"
options = {{ offset = 7, fail_on = "story 3 " }}

[[run]]
benchmark = "vist"
models = ["toy-a", "toy-b"]
contexts = ["1c", "5c"]

[models.toy-retriever]
name = "toy-retriever"

[[run]]
benchmark = "vist-retrieval"
models = ["toy-retriever"]
"""


@dataclass
class Site:
    root: Path
    report: Path
    data: Path
    results: list[dict]
    vectors: np.ndarray
    model_path: Path


def _decision(work: Path) -> tuple[np.ndarray, Path]:
    """Prepare the packaged PartiPrompts sample, then features -> train -> score through the library."""
    from gill_eval.datasets.partiprompts_prepare import prepare
    from gill_eval.decision.annotations import load_prompts
    from gill_eval.decision.steps import run_features, run_score, run_train
    from gill_eval.decision.table6 import Settings

    prepare(str(resources.files("gill_eval.sample").joinpath("files", "partiprompts")), verify=True)
    keys = load_prompts().keys
    vectors = np.random.default_rng(0).normal(size=(len(keys), 4)).astype(np.float32)
    pq.write_table(pa.table({"key": keys, "embedding": pa.array(list(vectors), pa.list_(pa.float32()))}),
                   work / "vec.parquet")
    feats, _ = run_features(f"parquet:{work / 'vec.parquet'}", {}, out=work / "feats")
    model, _ = run_train(feats, "logreg", out=work / "clf.pth.tar")
    run_score(feats, model, settings=Settings(thresholds=5, bootstrap=20, random_draws=10), report=work / "d.md")
    return vectors, model


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    from gill_eval.pipeline import execute, load_pipeline
    from gill_eval.store import root
    from test_bench_data import build_fixture_data

    work = tmp_path_factory.mktemp("gallery")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GILL_EVAL_DATA", str(work / "data"))
        mp.setenv("GILL_EVAL_CACHE", str(tmp_path_factory.getbasetemp() / "bench-shared-cache"))
        mp.setattr(root, "_override", None)
        points = {**registry._entry_points(), "toy": EntryPoint("toy", "test_bench:ToyModel", registry.GROUP),
                  "toy-retriever": EntryPoint("toy-retriever", "test_bench_fid_retrieval:ToyRetriever", registry.GROUP)}
        mp.setattr(registry, "_entry_points", lambda: points)
        build_fixture_data()
        vectors, model_path = _decision(work)
        toml = work / "fixture.toml"
        toml.write_text(PIPELINE.format(report=work / "out" / "report.md"))
        results, report = execute(load_pipeline(toml))
        return Site(work / "out" / "report-gallery", report, work / "data", load_results(work / "data" / "results"),
                    vectors, model_path)


def page_data(site: Site, slug: str) -> dict:
    text = (site.root / "data" / f"{slug}.js").read_text(encoding="utf-8")
    assert text.startswith("window.GALLERY = ") and text.endswith(";\n")
    return json.loads(text[len("window.GALLERY = "):-2])


def key(data: dict, row: dict, key_id: str) -> float | None:
    """A row's sort key by id (``k`` is a list in the order of the page's ``keys``)."""
    return row["k"][[k["id"] for k in data["keys"]].index(key_id)]


def referenced_files(site: Site) -> set[str]:
    """Every file the site refers to: src/href in the HTML and the image stems in the page data."""
    refs: set[str] = set()
    for page in site.root.glob("*.html"):
        refs |= {m for m in re.findall(r'(?:src|href)="([^"#:]+)"', page.read_text()) if not m.startswith("data:")}
    for data_js in (site.root / "data").glob("*.js"):
        data = json.loads(data_js.read_text()[len("window.GALLERY = "):-2])
        for row in data["rows"]:
            stems = [row.get("truth")] + [c.get("img") for c in row.get("ctx", [])]
            if data["kind"] == "generation":
                stems += [f"{data['models'][label]['prefix']}/s{c['s']}/{row['f']}"
                          for label, cells in row["cells"].items() for c in cells if "err" not in c]
            if data["kind"] == "retrieval":
                stems += [c["img"] for cell in row["cells"].values() for c in cell["top"]]
            refs |= {f"thumbs/{s}.jpg" for s in stems if s} | {f"full/{s}.png" for s in stems if s}
    return refs


def test_every_referenced_file_exists(site: Site) -> None:
    refs = referenced_files(site)
    assert len(refs) > 50
    missing = sorted(r for r in refs if not (site.root / r).is_file())
    assert not missing, f"missing files: {missing[:5]}"


def test_pages_and_markdown_links(site: Site) -> None:
    slugs = {p.stem for p in site.root.glob("*.html")}
    assert slugs == {"index", "vist-1c", "vist-5c", "table5", "table6"}
    text = site.report.read_text()
    assert "Gallery: [1c](report-gallery/vist-1c.html) · [5c](report-gallery/vist-5c.html)" in text
    assert "(report-gallery/table5.html)" in text
    for link in re.findall(r"\]\(([^)]+\.html)\)", text):
        assert (site.report.parent / link).is_file()


def test_generation_rows_hold_each_models_per_example_scores(site: Site) -> None:
    data = page_data(site, "vist-1c")
    assert data["labels"] == ["toy-a", "toy-b"] and data["seeds"] == [0, 1]
    by_label = {r["model"]["label"]: r for r in site.results if r["benchmark"] == "vist" and r["context"] == "1c"}
    for label, result in by_label.items():
        scores = pd.read_parquet(Path(result["_dir"]) / SCORES_FILE)
        ok = scores[scores["status"] == "success"]
        for row in data["rows"]:
            for cell in row["cells"][label]:
                want = ok[(ok["example_id"] == row["id"]) & (ok["seed"] == cell["s"])]
                got = {m: v for m, v in zip(data["metrics"], cell["v"], strict=True) if v is not None}
                assert got == {m: pytest.approx(v, abs=1e-6) for m, v in zip(want["metric"], want["value"], strict=True)}
            vals = [c["v"][0] for c in row["cells"][label] if c["v"][0] is not None]
            if vals:
                assert key(data, row, f"clip_similarity|{label}") == pytest.approx(sum(vals) / len(vals), abs=2e-6)
    # toy-b cannot draw story 3: its cells say so, no image is referenced
    failed = [c for row in data["rows"] for c in row["cells"]["toy-b"] if "err" in c]
    assert len(failed) == 2 and all("toy cannot draw" in c["err"] for c in failed)
    # context is the story's last caption; the ground truth is a thumbnail of image 5
    row = next(r for r in data["rows"] if r["id"] == "5000")
    assert row["ctx"] == [{"text": "story 0 sentence 4 about the [female] at the beach ."}]
    assert row["truth"] and (site.root / f"thumbs/{row['truth']}.jpg").is_file()


def test_generated_full_images_are_the_stored_bytes_and_thumbnails_are_small(site: Site) -> None:
    data = page_data(site, "vist-5c")
    result = next(r for r in site.results if r["benchmark"] == "vist" and r["context"] == "5c"
                  and r["model"]["label"] == "toy-a")
    shard = sorted(Path(result["generation"]["dir"]).glob("seed1-*.parquet"))[0]
    row = pq.read_table(shard).to_pylist()[0]
    stem = f"{data['models']['toy-a']['prefix']}/s1/{row['example_id']}"
    assert (site.root / f"full/{stem}.png").read_bytes() == row["image"]
    with Image.open(site.root / f"thumbs/{stem}.jpg") as thumb:
        assert thumb.format == "JPEG" and max(thumb.size) <= 192


def test_table5_rows_list_the_top_candidates_and_mark_the_target(site: Site) -> None:
    from gill_eval.bench.vist import VistStories
    from gill_eval.store import root
    from test_bench_fid_retrieval import _colour_embedding

    data = page_data(site, "table5")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(root, "_override", site.data)
        stories = VistStories()
        available = stories.dataset.available()
        cands = sorted({p for s in stories.stories.values() for p in s["photo_ids"] if p in available})
        images = stories.dataset.images(cands)
        story_photos = {sid: s["photo_ids"] for sid, s in stories.stories.items()}
    emb = {k: _colour_embedding(images[k]) for k in cands}
    for row in data["rows"]:
        photos = story_photos[row["id"]]
        query = emb[photos[3]]  # the toy query: the last context image
        brute = sorted(((float(query @ emb[k]), k) for k in cands if k not in photos[:4]), key=lambda t: -t[0])[:10]
        cell = row["cells"]["toy-retriever"]
        assert [c["score"] for c in cell["top"]] == pytest.approx([s for s, _ in brute])
        assert [c["hit"] for c in cell["top"]] == [c["key"] == photos[4] for c in cell["top"]]
        assert len(row["ctx"]) == 9 and row["target"] == photos[4]


def test_table6_rows_hold_prompt_label_probability_and_decision(site: Site) -> None:
    from gill_eval.decision.annotations import load_labelled, load_prompts
    from gill_eval.store import root

    data = page_data(site, "table6")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(root, "_override", site.data)
        labelled, prompts = load_labelled(), load_prompts()
    index = {k: i for i, k in enumerate(prompts.keys)}
    module = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(4, 2))
    module.load_state_dict(torch.load(site.model_path, weights_only=True, map_location="cpu")["state_dict"])
    x = torch.from_numpy(site.vectors[[index[k] for k in labelled.keys]])
    with torch.no_grad():
        p = torch.softmax(module.eval()(x).double(), 1)[:, 1].numpy()
    rows = {r["id"]: r for r in data["rows"]}
    assert len(rows) == len(labelled.keys)
    for i, key in enumerate(labelled.keys):
        r = rows[key]
        assert r["p"] == pytest.approx(p[i], abs=1e-6)
        assert r["label"] == ("ret" if labelled.labels[i] else "gen")
        assert r["decision"] == ("ret" if p[i] > 0.5 else "gen")
        assert r["prompt"] == prompts.prompts[index[key]]


def test_thumbnails_are_made_once(site: Site) -> None:
    from gill_eval.report.html import write_gallery
    from gill_eval.store import root

    thumbs = sorted(site.root.rglob("thumbs/**/*.jpg"))
    before = {p: p.stat().st_mtime_ns for p in thumbs}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(root, "_override", site.data)
        again = write_gallery(load_results(site.data / "results"), site.data / "results", site.root)
    assert again.images_written == 0
    assert {p: p.stat().st_mtime_ns for p in thumbs} == before


# --- in a real headless Chromium (Debian's `chromium`; .ci/run installs it) ---------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER_TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH: apt-get install -y chromium (.ci/run does this)")
    with sync_api.sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], timeout=60_000)
        yield instance
        instance.close()


def _open(browser: Any, site: Site, slug: str) -> tuple[Any, list[str]]:
    """A page on ``file://.../<slug>.html``, every image loaded; returns it with the errors seen."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(BROWSER_TIMEOUT_MS)
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("requestfailed", lambda req: errors.append(f"failed {req.url}"))
    page.goto((site.root / f"{slug}.html").as_uri())
    _load_all_images(page)
    return page, errors


def _load_all_images(page: Any) -> None:
    """Scroll through the page (thumbnails are lazy) and wait until every <img> has finished."""
    height = page.evaluate("document.body.scrollHeight")
    for y in range(0, height + 900, 600):
        page.evaluate(f"window.scrollTo(0, {y})")
    page.wait_for_function("Array.from(document.images).every(i => i.complete)")


def _row_ids(page: Any) -> list[str]:
    return page.eval_on_selector_all("tr[data-id]", "rows => rows.map(r => r.dataset.id)")


@pytest.mark.parametrize("slug", ["index", "vist-1c", "vist-5c", "table5", "table6"])
def test_browser_every_image_loads_without_console_errors(site: Site, browser: Any, slug: str, tmp_path: Path) -> None:
    page, errors = _open(browser, site, slug)
    widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.getAttribute('src'), i.naturalWidth])")
    assert all(w > 0 for _, w in widths), [src for src, w in widths if w == 0]
    if slug in ("vist-1c", "table5"):
        assert len(widths) >= 20
    assert errors == []
    shot = tmp_path / f"{slug}.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:4] == b"\x89PNG"
    page.close()


def test_browser_sorting_by_a_metric_and_by_a_difference_of_models(site: Site, browser: Any) -> None:
    data = page_data(site, "vist-1c")
    page, errors = _open(browser, site, "vist-1c")
    assert _row_ids(page) == sorted(r["id"] for r in data["rows"])
    page.select_option("#sort", "clip_similarity|toy-a")
    page.select_option("#order", "desc")
    want = [r["id"] for r in sorted(data["rows"], key=lambda r: -key(data, r, "clip_similarity|toy-a"))]
    assert _row_ids(page) == want != sorted(want)
    page.select_option("#minus", "clip_similarity|toy-b")  # where toy-a beats toy-b most
    both = [r for r in data["rows"] if key(data, r, "clip_similarity|toy-b") is not None]
    diff = [r["id"] for r in sorted(both, key=lambda r: -(key(data, r, "clip_similarity|toy-a")
                                                        - key(data, r, "clip_similarity|toy-b")))]
    assert _row_ids(page)[: len(diff)] == diff and len(diff) < len(data["rows"])  # rows without the key go last
    page.fill("#q", "story 2 ")
    assert _row_ids(page) == ["5002"]
    assert errors == []
    page.close()


def test_browser_pages_and_full_size_click(site: Site, browser: Any) -> None:
    page, errors = _open(browser, site, "table6")
    page.select_option("#size", "10")
    first = _row_ids(page)
    page.click("button.next >> nth=0")
    second = _row_ids(page)
    assert len(first) == len(second) == 10 and not set(first) & set(second)
    page.close()
    page, errors2 = _open(browser, site, "vist-5c")
    with page.expect_popup() as popup:
        page.click("td.model a.pic >> nth=0")
    full = popup.value
    full.wait_for_load_state()
    assert full.url.endswith(".png") and "/full/gen/" in full.url
    assert full.evaluate("document.images[0].naturalWidth") > 0
    assert errors == errors2 == []


def test_export_images_writes_the_stored_pngs_and_a_csv_index(site: Site, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gill_eval.cli import app

    out = tmp_path / "export"
    run = CliRunner().invoke(app, ["export", "images", str(out), "--results", str(site.data / "results"), "--json"])
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["rows"] == 2 * 2 * 2 * 6  # models x contexts x seeds x stories
    index = pd.read_csv(out / "index.csv", dtype={"example_id": str})
    for r in site.results:
        if r["benchmark"] != "vist":
            continue
        scores = pd.read_parquet(Path(r["_dir"]) / SCORES_FILE)
        gen = {(row["example_id"], row["seed"]): row for shard in Path(r["generation"]["dir"]).glob("*.parquet")
               for row in pq.read_table(shard).to_pylist()}
        mine = index[(index["model"] == r["model"]["label"]) & (index["context"] == r["context"])]
        assert len(mine) == 12
        for row in mine.to_dict("records"):
            stored = gen[(row["example_id"], row["seed"])]
            if stored["status"] != "success":
                assert pd.isna(row["path"]) and pd.isna(row["clip_similarity"])
                continue
            assert row["path"] == f"vist/{r['context']}/{r['model']['label']}/seed{row['seed']}/{row['example_id']}.png"
            assert (out / row["path"]).read_bytes() == stored["image"]
            want = scores[(scores["example_id"] == row["example_id"]) & (scores["seed"] == row["seed"])
                          & (scores["metric"] == "lpips")]["value"].item()
            assert row["lpips"] == pytest.approx(want)
    again = CliRunner().invoke(app, ["export", "images", str(out), "--results", str(site.data / "results"), "--json"])
    assert json.loads(again.stdout)["written"] == 0


def test_report_cli_writes_the_gallery_and_links_it(site: Site, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gill_eval.cli import app

    out = tmp_path / "md" / "table.md"
    run = CliRunner().invoke(app, ["report", "--results", str(site.data / "results"), "--out", str(out),
                                   "--html", str(tmp_path / "site")])
    assert run.exit_code == 0, run.output
    assert (tmp_path / "site" / "index.html").is_file()
    links = re.findall(r"\]\(([^)]+\.html)\)", out.read_text())
    assert "../site/vist-1c.html" in links and all((out.parent / link).is_file() for link in links)


def test_export_hf_and_webdataset_of_generated_images_read_back(site: Site, tmp_path: Path) -> None:
    """`export hf` / `export webdataset` of the generated images, read by `datasets` and `webdataset`."""
    import datasets
    import webdataset as wds
    from typer.testing import CliRunner

    from gill_eval.cli import app

    stored: dict[str, dict] = {}  # "vist/<context>/<label>/seed<S>/<example>" -> generation row
    for r in site.results:
        if r["benchmark"] == "vist":
            for shard in Path(r["generation"]["dir"]).glob("*.parquet"):
                for row in pq.read_table(shard).to_pylist():
                    if row["seed"] in r["seeds"]:
                        stored[f"vist/{r['context']}/{r['model']['label']}/seed{row['seed']}/{row['example_id']}"] = row
    results = str(site.data / "results")
    run = CliRunner().invoke(app, ["export", "hf", str(tmp_path / "hf"), "--results", results, "--benchmark", "vist"])
    assert run.exit_code == 0, run.output
    split = datasets.load_dataset("parquet", data_dir=str(tmp_path / "hf"), cache_dir=str(tmp_path / "cache"))["test"]
    raw = split.cast_column("image", datasets.Image(decode=False))
    assert sorted(raw["id"]) == sorted(stored) and len(stored) == 2 * 2 * 2 * 6  # models x contexts x seeds x stories
    for row in raw:
        want = stored[row["id"]]
        assert row["status"] == want["status"] and row["seed"] == want["seed"]
        assert (row["image"] or {}).get("bytes") == (want["image"] if want["status"] == "success" else None)
    run = CliRunner().invoke(app, ["export", "webdataset", str(tmp_path / "wds"), "--results", results,
                                   "--benchmark", "vist", "--json"])
    assert run.exit_code == 0, run.output
    samples = list(wds.WebDataset(sorted(str(p) for p in (tmp_path / "wds").glob("*.tar")), shardshuffle=False))
    ok = {k: v for k, v in stored.items() if v["status"] == "success"}
    assert json.loads(run.stdout)["samples"] == len(samples) == len(ok)
    for sample in samples:
        meta = json.loads(sample["json"])
        path = f"vist/{meta['context']}/{meta['model']}/seed{meta['seed']}/{meta['example_id']}"
        assert sample["png"] == ok[path]["image"] and sample["__key__"] == path.replace(".", "_")


def _fixture_prompt(story_id: str, context: str) -> str:
    """The oracle: the text a VIST context holds, written out from test_bench_data.build_fixture_data (story
    "5SSS" has sentences "story S sentence P ..."); "1c" is the last sentence, "5c" all five joined by a space."""
    texts = [f"story {int(story_id[1:])} sentence {p} about the [female] at the beach ." for p in range(5)]
    return " ".join(texts[-int(context[0]):])


def test_exports_of_generated_images_carry_each_prompt_and_score(site: Site, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`export hf|webdataset|images` give each generated image its prompt (the context's story text) and scores."""
    import datasets
    import webdataset as wds
    from typer.testing import CliRunner

    from gill_eval.cli import app
    from gill_eval.store import root

    monkeypatch.setenv("GILL_EVAL_DATA", str(site.data))  # prompts are rebuilt from the run's prepared data
    monkeypatch.setattr(root, "_override", None)
    results = str(site.data / "results")
    scores = {}  # (context, model, seed, example) -> clip similarity
    for r in site.results:
        if r["benchmark"] == "vist":
            df = pd.read_parquet(Path(r["_dir"]) / SCORES_FILE)
            for row in df[(df["metric"] == "clip_similarity") & (df["status"] == "success")].to_dict("records"):
                scores[(r["context"], r["model"]["label"], row["seed"], str(row["example_id"]))] = row["value"]
    run = CliRunner().invoke(app, ["export", "hf", str(tmp_path / "hf"), "--results", results, "--benchmark", "vist"])
    assert run.exit_code == 0, run.output
    split = datasets.load_dataset("parquet", data_dir=str(tmp_path / "hf"), cache_dir=str(tmp_path / "cache"))["test"]
    rows = split.remove_columns("image").to_list()
    assert len(rows) == 2 * 2 * 2 * 6 and {r["context"] for r in rows} == {"1c", "5c"}
    for row in rows:
        assert row["prompt"] == _fixture_prompt(row["example_id"], row["context"])
        want = scores.get((row["context"], row["model"], row["seed"], row["example_id"]))
        assert row["clip_similarity"] == (pytest.approx(want) if want is not None else None)
    assert sum(r["clip_similarity"] is not None for r in rows) == len(scores) > 0
    run = CliRunner().invoke(app, ["export", "webdataset", str(tmp_path / "wds"), "--results", results,
                                   "--benchmark", "vist", "--json"])
    assert run.exit_code == 0, run.output
    samples = list(wds.WebDataset(sorted(str(p) for p in (tmp_path / "wds").glob("*.tar")), shardshuffle=False))
    assert samples
    for sample in samples:
        meta = json.loads(sample["json"])
        assert sample["txt"].decode() == meta["prompt"] == _fixture_prompt(meta["example_id"], meta["context"])
    run = CliRunner().invoke(app, ["export", "images", str(tmp_path / "png"), "--results", results, "--json"])
    assert run.exit_code == 0, run.output
    index = pd.read_csv(tmp_path / "png" / "index.csv", dtype={"example_id": str})
    vist_rows = index[index["benchmark"] == "vist"]
    assert len(vist_rows) == len(rows)
    assert all(p == _fixture_prompt(e, c) for p, e, c in zip(vist_rows["prompt"], vist_rows["example_id"], vist_rows["context"]))
