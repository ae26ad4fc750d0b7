"""The static annotation page in a real headless Chromium, from file://: images load, keys answer, progress,
undo, votes survive a reload (localStorage), and the JSON export reads back into the expected votes."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from annotate_support import small_kit
from gill_eval.annotate.collect import collect
from gill_eval.annotate.items import Kit
from gill_eval.annotate.page import read_page_export, write_page

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH: apt-get install -y chromium (.ci/run does this)")
    with sync_api.sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], timeout=60_000)
        yield instance
        instance.close()


def test_click_through_the_page(browser: Any, tmp_path: Path) -> None:
    kit = small_kit(tmp_path / "kit", n=3)
    page_path = write_page(kit)
    html = page_path.read_text()
    assert "<b>prompt</b>" not in html.split('id="kit">')[0]  # prompts are data, never markup
    assert '"a":' not in html and "gold" not in html  # the order is not in the page
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(page_path.as_uri())

    def loaded_widths() -> list[int]:
        page.wait_for_function("Array.from(document.images).every(i => i.complete)")
        return page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")

    assert page.text_content("#prompt") == kit.items[0].prompt
    assert loaded_widths() == [32, 32]
    page.keyboard.press("1")  # no annotator id yet: nothing recorded
    assert "annotator id first" in page.text_content("#message")
    page.fill("#annotator", "alice")
    page.click("body")
    page.keyboard.press("1")
    assert page.text_content("#progress").startswith("0 / 3")  # one question answered: not yet a vote
    page.keyboard.press("5")
    assert page.text_content("#progress").startswith("1 / 3")
    assert page.text_content("#prompt") == kit.items[1].prompt and loaded_widths() == [40, 40]
    page.click('input[name="relevance"][value="same"]')
    page.click('input[name="realism"][value="A"]')
    assert page.text_content("#progress").startswith("2 / 3")
    page.keyboard.press("u")  # undo the second item's answers
    assert page.text_content("#progress").startswith("1 / 3") and page.text_content("#prompt") == kit.items[1].prompt
    page.keyboard.press("2")
    page.keyboard.press("6")
    assert page.text_content("#progress").startswith("2 / 3")
    # votes are kept in localStorage: another page of the browser sees them before this one reloads (the
    # browser process holds the storage; a reload that overtakes the renderer's last writes would lose them)
    key = json.dumps("gill-eval-annotate:" + kit.meta["kit_id"])
    probe = context.new_page()
    probe.goto(page_path.as_uri())
    probe.wait_for_function(f"(JSON.parse(localStorage.getItem({key})) || {{votes: []}}).votes.length === 2",
                            timeout=20_000)
    probe.close()
    page.reload()
    assert page.text_content("#progress").startswith("2 / 3") and page.input_value("#annotator") == "alice"
    page.keyboard.press("3")
    page.keyboard.press("4")
    assert page.is_visible("#done") and not page.is_visible("#task")
    with page.expect_download() as download:
        page.click("#export")
    exported = tmp_path / "votes.json"
    download.value.save_as(exported)
    assert errors == []
    context.close()

    votes = read_page_export(exported, Kit.read(kit.folder))
    got = [(v.item, v.annotator, v.relevance, v.realism) for v in votes]
    assert got == [("p-00000", "alice", "A", "B"), ("p-00001", "alice", "B", "same"), ("p-00002", "alice", "same", "A")]
    summary = collect([exported], kit.folder, tmp_path / "labels")
    rows = (tmp_path / "labels" / "SmallAllDecisions_Alignment.tsv").read_text().splitlines()[1:]
    expected = [kit.items[0].source_of("A"), kit.items[1].source_of("B"), "same"]
    assert [r.split("\t")[-1] for r in rows] == expected and summary["votes"] == 3
    assert json.loads(exported.read_text())["kit_id"] == kit.meta["kit_id"]
    # the review page of the labels folder: per item the generated and retrieved image, votes and label
    review = browser.new_page()
    review.goto((tmp_path / "labels" / "review.html").as_uri())
    review.wait_for_function("Array.from(document.images).every(i => i.complete)")
    rows = review.eval_on_selector_all("tr[data-id]", "rows => rows.map(r => [r.dataset.id, "
                                       "Array.from(r.querySelectorAll('img')).map(i => i.naturalWidth), r.cells[6].textContent])")
    assert [r[0] for r in rows] == ["p-00000", "p-00001", "p-00002"]
    assert [r[1] for r in rows] == [[32 + 8 * k] * 2 for k in range(3)]  # both images of item k load
    assert [r[2] for r in rows] == ["same"] * 3  # one vote each: below the agreement rule
    first_gen = kit.items[0].image_a if kit.items[0].a == "gen" else kit.items[0].image_b
    assert review.get_attribute("tr[data-id='p-00000'] img[alt=generated]", "src").endswith(first_gen)
    review.close()
