"""The annotation kit's collection side: the official votes through the page and crowd import paths come back
byte-identical, agreement statistics equal the libraries', A/B de-randomisation, bad input, idempotence.
(The Label Studio path against its real server: test_annotate_labelstudio.py; the page in Chromium:
test_annotate_page.py; building tasks with models: test_annotate_build.py.)"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path

import krippendorff
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa
from typer.testing import CliRunner

from annotate_support import ALIGNMENT, check_official, crowd_results, official_kit, official_votes, page_exports
from gill_eval.annotate.collect import collect
from gill_eval.annotate.crowd import input_csv, layout_html
from gill_eval.annotate.items import Item, Kit, slot_order
from gill_eval.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def kit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("kit")
    official_kit(folder)
    return folder


def test_page_exports_round_trip_to_the_official_files(kit_dir: Path, tmp_path: Path) -> None:
    kit = Kit.read(kit_dir)
    assert 0.45 < np.mean([i.a == "gen" for i in kit.items]) < 0.55  # the order really is mixed
    out = tmp_path / "labels"
    result = runner.invoke(app, ["annotate", "collect", *map(str, page_exports(kit, tmp_path)), "--tasks",
                                 str(kit_dir), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    check_official(out, summary)
    assert summary["votes"] == sum(len(v) for v in official_votes()[0]) and summary["annotators"] == 5


def test_crowd_results_round_trip_and_reimport_is_idempotent(kit_dir: Path, tmp_path: Path) -> None:
    kit = Kit.read(kit_dir)
    results = crowd_results(kit, tmp_path / "batch.csv")
    out = tmp_path / "labels"
    first = collect([results], kit_dir, out)
    check_official(out, first)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    again = collect([results, results], kit_dir, out)
    assert again["votes_added"] == 0 and again["votes"] == first["votes"]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_another_order_seed_gives_other_answers_but_the_same_files(tmp_path: Path) -> None:
    kit_a, kit_b = official_kit(tmp_path / "a", order_seed=1), official_kit(tmp_path / "b", order_seed=2)
    exports_a, exports_b = page_exports(kit_a, tmp_path / "a"), page_exports(kit_b, tmp_path / "b")
    assert exports_a[0].read_text()[200:] != exports_b[0].read_text()[200:]
    collect(exports_a, tmp_path / "a", tmp_path / "out-a")
    collect(exports_b, tmp_path / "b", tmp_path / "out-b")
    name = "PartiPromptsAllDecisions_Alignment.tsv"
    assert (tmp_path / "out-a" / name).read_bytes() == (tmp_path / "out-b" / name).read_bytes() == ALIGNMENT.read_bytes()


@settings(max_examples=100, deadline=None, database=None)  # no .hypothesis folder in the clone
@given(seed=st.integers(0, 2**31), item_id=st.text(min_size=1, max_size=20), source=st.sampled_from(["gen", "ret", "same"]))
def test_de_randomisation_inverts_the_order(seed: int, item_id: str, source: str) -> None:
    a = slot_order(seed, item_id)
    item = Item(item_id, "p", a, "x", "y")
    answer = item.choice_for(source)
    assert item.source_of(answer) == source
    expected = "same" if source == "same" else ("A" if source == a else "B")
    assert answer == expected
    assert slot_order(seed, item_id) == a  # recorded seed -> same order, whatever else was built


@settings(max_examples=25, deadline=None, database=None)
@given(seed=st.integers(0, 2**31), votes=st.lists(st.lists(st.sampled_from(["gen", "ret", "same"]), min_size=1, max_size=6),
                                                 min_size=1, max_size=8))
def test_collect_undoes_any_order(tmp_path_factory: pytest.TempPathFactory, seed: int, votes: list[list[str]]) -> None:
    """Whatever the order seed, votes cast as sources and answered through the slots come back as the sources."""
    folder = tmp_path_factory.mktemp("prop")
    items = [Item(f"it-{k}", f"prompt {k}", slot_order(seed, f"it-{k}"), "a", "b", (f"prompt {k}", "", "", ""))
             for k in range(len(votes))]
    kit = Kit(folder / "kit", items, {"kit_id": "prop", "prefix": "P"})
    kit.write()
    exports = []
    for j in range(max(len(v) for v in votes)):
        cast = [{"item": i.id, "relevance": ("A" if v[j] == i.a else "B") if v[j] != "same" else "same",
                 "realism": "same"} for i, v in zip(items, votes) if j < len(v)]
        exports.append(folder / f"{j}.json")
        exports[-1].write_text(json.dumps({"format": "gill-eval-annotate-page/1", "kit_id": "prop",
                                           "annotator": f"w{j}", "votes": cast}))
    summary = collect(exports, kit.folder, folder / "out")
    json.loads((folder / "out" / "agreement.json").read_text(), parse_constant=pytest.fail)  # no NaN: valid JSON
    assert all(v is None or np.isfinite(v) for v in [*summary["fleiss_kappa"].values(), *summary["krippendorff_alpha"].values()])
    rows = (folder / "out" / "PAllDecisions_Alignment.tsv").read_text().splitlines()[1:]
    assert [r.split("\t")[4].split(",") for r in rows] == votes


def test_agreement_equals_the_libraries_on_the_official_votes(kit_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "labels"
    summary = collect(page_exports(Kit.read(kit_dir), tmp_path), kit_dir, out)
    stats = json.loads((out / "agreement.json").read_text())
    alignment, _ = official_votes()
    codes = {"ret": 0, "gen": 1, "same": 2}
    five = np.array([[codes[v] for v in row] for row in alignment if len(row) == 5])
    table, _ = aggregate_raters(five, n_cat=3)
    assert stats["relevance"]["fleiss"]["items"] == 1630
    assert summary["fleiss_kappa"]["relevance"] == pytest.approx(fleiss_kappa(table, method="fleiss"), abs=1e-12)
    # Fleiss' formula by hand, as an oracle independent of statsmodels
    n = 5
    p_cat = table.sum(0) / table.sum()
    p_i = ((table ** 2).sum(1) - n) / (n * (n - 1))
    by_hand = (p_i.mean() - (p_cat ** 2).sum()) / (1 - (p_cat ** 2).sum())
    assert summary["fleiss_kappa"]["relevance"] == pytest.approx(by_hand, abs=1e-12)
    matrix = np.full((5, len(alignment)), np.nan)
    for j, row in enumerate(alignment):
        for i, v in enumerate(row):
            matrix[i, j] = codes[v]
    expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal")
    assert summary["krippendorff_alpha"]["relevance"] == pytest.approx(expected, abs=1e-12)
    # each annotator's agreement with the plurality, recomputed here
    first = stats["relevance"]["annotators"]["annotator-1"]
    hits = [row[0] == Counter(row).most_common(1)[0][0] for row in alignment
            if len(Counter(row).most_common()) == 1 or Counter(row).most_common(2)[0][1] != Counter(row).most_common(2)[1][1]]
    assert first["agreement_with_majority"] == pytest.approx(np.mean(hits))
    assert first["flags"] == []


def test_gold_accuracy_and_always_a_flags(tmp_path: Path) -> None:
    items = [Item(f"i{k}", f"prompt {k}", slot_order(0, f"i{k}"), "a", "b", (f"prompt {k}", "", "", "")) for k in range(12)]
    items += [Item("gold-0", "g", "gen", "a", "b", gold="A"), Item("gold-1", "g", "ret", "a", "b", gold="B")]
    Kit(tmp_path / "kit", items, {"kit_id": "k", "prefix": "Mine"}).write()
    votes = {"annotator": "lazy", "votes": [{"item": i.id, "relevance": "A", "realism": "A"} for i in items]}
    careful = {"annotator": "careful", "votes": [{"item": i.id, "relevance": i.gold or "B", "realism": "B"} for i in items]}
    paths = []
    for n, data in enumerate((votes, careful)):
        paths.append(tmp_path / f"{n}.json")
        paths[-1].write_text(json.dumps({"format": "gill-eval-annotate-page/1", "kit_id": "k", **data}))
    summary = collect(paths, tmp_path / "kit", tmp_path / "out")
    people = json.loads((tmp_path / "out" / "agreement.json").read_text())["relevance"]["annotators"]
    assert people["lazy"]["gold_accuracy"] == 0.5 and people["careful"]["gold_accuracy"] == 1.0
    assert people["lazy"]["flags"] == ["always-A"] and people["careful"]["flags"] == []
    assert summary["flagged"]["relevance"] == {"lazy": ["always-A"]}
    rows = (tmp_path / "out" / "MineAllDecisions_Alignment.tsv").read_text().splitlines()
    assert len(rows) == 13 and not any(r.startswith("g\t") for r in rows)  # gold items are not labels


def _bad(tmp_path: Path, kit_dir: Path, name: str, text: str, out: Path) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["annotate", "collect", str(path), "--tasks", str(kit_dir), "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0], result.stderr
    return lines[0]


def test_bad_input_is_one_line_and_loses_nothing(kit_dir: Path, tmp_path: Path) -> None:
    kit = Kit.read(kit_dir)
    out = tmp_path / "labels"
    collect([crowd_results(kit, tmp_path / "good.csv")], kit_dir, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    page = {"format": "gill-eval-annotate-page/1", "kit_id": kit.meta["kit_id"], "annotator": "x"}
    unknown = json.dumps({**page, "votes": [{"item": "parti-9999", "relevance": "A", "realism": "B"}]})
    assert "unknown item 'parti-9999'" in _bad(tmp_path, kit_dir, "unknown.json", unknown, out)
    dup = json.dumps({**page, "votes": [{"item": "parti-0001", "relevance": "A", "realism": "B"}] * 2})
    assert "duplicate vote by 'x' on item 'parti-0001'" in _bad(tmp_path, kit_dir, "dup.json", dup, out)
    bad_answer = json.dumps({**page, "votes": [{"item": "parti-0001", "relevance": "C", "realism": "B"}]})
    assert "votes[0]: relevance answer 'C'" in _bad(tmp_path, kit_dir, "answer.json", bad_answer, out)
    assert "not a complete Label Studio JSON export" in _bad(tmp_path, kit_dir, "trunc.json", '[{"data": {"item": "p', out)
    csv_text = (tmp_path / "good.csv").read_text()
    assert "not a complete CSV" in _bad(tmp_path, kit_dir, "trunc.csv", csv_text[: len(csv_text) // 2], out)
    lines = csv_text.splitlines()
    first = lines[1].split('","')
    first[5] = "A" if first[5] != "A" else "B"  # W1 changes their answer on parti-0000
    lines[1] = '","'.join(first)
    assert "already collected" in _bad(tmp_path, kit_dir, "changed.csv", "\n".join(lines) + "\n", out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_crowd_input_and_layout(kit_dir: Path) -> None:
    kit = Kit.read(kit_dir)
    rows = list(csv.DictReader(io.StringIO(input_csv(kit, "https://example.org/kit/"))))
    assert len(rows) == 1632 and rows[0]["image_a_url"] == "https://example.org/kit/images/parti-0000-a.png"
    quoted = [r for r in rows if '"' in r["prompt"]]
    assert len(quoted) == 22  # PartiPrompts' 22 prompts with a double quote survive the CSV round trip
    layout = layout_html()
    for field in ("${item}", "${prompt}", "${image_a_url}", "${image_b_url}", 'name="relevance"', 'name="realism"'):
        assert field in layout
    assert "order" not in json.dumps(rows[0]) and "gen" not in rows[0]["image_a_url"]
    result = runner.invoke(app, ["annotate", "export", str(kit_dir), "--to", "crowd"])
    assert result.exit_code == 2 and "--image-base" in result.stderr


def test_prompt_files_and_cli_exports(tmp_path: Path) -> None:
    from annotate_support import small_kit
    from gill_eval.annotate.tasks import read_prompts
    from gill_eval.errors import InputError

    text = tmp_path / "mine.txt"
    text.write_text('a red cube\n\n"quoted" prompt\n', encoding="utf-8")
    rows, prefix = read_prompts(str(text))
    assert [(r.id, r.prompt, r.base) for r in rows] == [("p-00000", "a red cube", ("a red cube", "", "", "")),
                                                       ("p-00001", '"quoted" prompt', ('"quoted" prompt', "", "", ""))]
    assert prefix == "mine"
    tsv = tmp_path / "set.tsv"
    tsv.write_text("Prompt\tCategory\tChallenge\tNote\nx\tAnimals\tBasic\t\n\tAnimals\tBasic\t\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"set.tsv: line 3: empty prompt"):
        read_prompts(str(tsv))
    rows, prefix = read_prompts("partiprompts", limit=2)
    assert [r.id for r in rows] == ["parti-0000", "parti-0001"] and rows[0].base[1] == "Abstract"
    kit = small_kit(tmp_path / "kit", n=2)
    for args in (["--to", "page"], ["--to", "crowd", "--image-base", "https://example.org/k"]):
        result = runner.invoke(app, ["annotate", "export", str(kit.folder), *args, "--json"])
        assert result.exit_code == 0, result.output
        assert all(Path(f).is_file() for f in json.loads(result.stdout)["files"])
    result = runner.invoke(app, ["annotate", "export", str(kit.folder), "--to", "pdf"])
    assert result.exit_code == 2 and "--to 'pdf'" in result.stderr
