"""Gallery page weight at Table 1 scale: the size of one page's data script and the time to render it. JSON out.

A full Table 1 run is about 4,500 VIST stories x 5 seeds per model and context. This builds page data of
that shape (``--stories``, ``--models``, ``--seeds``) with ``gill_eval.report.html``'s writer, without
images, and reports the bytes the browser loads for the page (data script + shell + assets; thumbnails
are lazy and at most ``rows per page`` x models x seeds of them load at once). With ``--chromium PATH``
(and Playwright installed) it also opens the page headless and times the first render and a re-sort.

    python benchmarks/gallery_page.py --chromium /usr/bin/chromium
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from gill_eval.report.gallery import Page
from gill_eval.report.html import _data_script, _page_html

ASSETS = Path(__file__).resolve().parents[1] / "gill_eval" / "report" / "assets"


def page_data(stories: int, models: int, seeds: int) -> dict:
    rng = random.Random(0)
    labels = [f"model-{m}" for m in range(models)]
    rows = []
    for s in range(stories):
        eid = f"{45000000 + s}"
        cells = {label: [{"s": seed, "v": [round(rng.random(), 6), round(rng.random(), 6)]}
                         for seed in range(seeds)] for label in labels}
        ctx = [{"text": f"caption {p} of story {s}, a sentence of ordinary length about a day out."} for p in range(5)]
        ctx[1:1] = [{"img": f"data/{s % 256:02x}/{s:024x}"}]
        rows.append({"id": eid, "f": eid, "ctx": ctx, "truth": f"data/{s % 256:02x}/{s + 1:024x}", "q": eid, "cells": cells,
                     "k": [round(rng.random(), 6) for _ in range(2 * len(labels))]})
    return {"kind": "generation", "title": "vist 5c4i", "labels": labels, "seeds": list(range(seeds)),
            "models": {label: {"prefix": f"gen/vist/{i:016x}/5c4i"} for i, label in enumerate(labels)},
            "metrics": ["clip_similarity", "lpips"], "metric_titles": {"clip_similarity": "CLIP Sim ↑", "lpips": "LPIPS ↓"},
            "keys": [{"id": f"{m}|{label}", "title": f"{m} {label}", "higher": m != "lpips"}
                     for m in ("clip_similarity", "lpips") for label in labels], "rows": rows, "note": None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=4500)
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--chromium", default=None)
    args = parser.parse_args()
    data = page_data(args.stories, args.models, args.seeds)
    start = time.perf_counter()
    script = _data_script(data)
    build_s = time.perf_counter() - start
    page = Page("vist-5c4i", "vist 5c4i", "generation", "vist", "5c4i", data)
    shell = _page_html(page)
    assets = sum((ASSETS / n).stat().st_size for n in ("gallery.js", "gallery.css"))
    out = {"stories": args.stories, "models": args.models, "seeds": args.seeds,
           "images_in_table": args.stories * args.models * args.seeds, "data_script_bytes": len(script.encode()),
           "shell_and_assets_bytes": len(shell.encode()) + assets, "serialise_s": round(build_s, 3)}
    if args.chromium:
        from playwright.sync_api import sync_playwright

        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            (root / "data").mkdir()
            (root / "assets").mkdir()
            (root / "data" / "vist-5c4i.js").write_text(script, encoding="utf-8")
            (root / "vist-5c4i.html").write_text(shell, encoding="utf-8")
            for name in ("gallery.js", "gallery.css"):
                (root / "assets" / name).write_bytes((ASSETS / name).read_bytes())
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
                tab = browser.new_page()
                start = time.perf_counter()
                tab.goto((root / "vist-5c4i.html").as_uri())
                tab.wait_for_selector("tr[data-id]")
                out["first_render_s"] = round(time.perf_counter() - start, 3)
                start = time.perf_counter()
                tab.select_option("#sort", "clip_similarity|model-0")
                tab.select_option("#minus", "clip_similarity|model-1")
                out["resort_s"] = round(time.perf_counter() - start, 3)
                out["rows_in_dom"] = tab.eval_on_selector_all("tr[data-id]", "r => r.length")
                browser.close()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
