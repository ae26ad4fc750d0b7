"""Every option is checked before any generation: one-line errors, choices in --help, offline weights first,
--limit partial runs, `bench list` / `datasets list`, global options after the subcommand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from gill_eval.bench.results import SCORES_FILE, load_results
from gill_eval.cli import app, hoist_global_options
from gill_eval.models import registry
from gill_eval.store import data_root
from test_bench_data import build_fixture_data

runner = CliRunner()


@pytest.fixture
def toy(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("GILL_EVAL_CACHE", str(tmp_path_factory.getbasetemp() / "bench-shared-cache"))
    points = {**registry._entry_points(), "toy": EntryPoint("toy", "test_bench:ToyModel", registry.GROUP),
              "toy-retriever": EntryPoint("toy-retriever", "test_bench_fid_retrieval:ToyRetriever", registry.GROUP)}
    monkeypatch.setattr(registry, "_entry_points", lambda: points)


def _one_line_error(result, *fragments: str) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


CHOICES = [
    (cmd, option, bad, choices)
    for cmd in (["bench", "vist", "--model", "toy"], ["bench", "visdial", "--model", "toy"])
    for option, bad, choices in (("--precision", "fp8", "'fp32', 'fp16', 'bf16'"), ("--scorers", "big", "'real', 'tiny'"))
] + [(["bench", cmd, "--model", "toy"], "--scorers", "huge", "'real', 'tiny'") for cmd in ("coco-fid", "cc3m-fid")] + [
    (["bench", "score", "somewhere"], "--precision", "fp8", "'fp32', 'fp16', 'bf16'")]


@pytest.mark.parametrize("cmd,option,bad,choices", CHOICES, ids=lambda v: v if isinstance(v, str) else None)
def test_each_choice_option_rejects_a_bad_value_in_one_line_before_anything_runs(toy, cmd, option, bad, choices):
    build_fixture_data()
    result = runner.invoke(app, [*cmd, option, bad])
    _one_line_error(result, option, repr(bad), choices)
    assert not (data_root() / "generations").exists()


def test_help_lists_the_choices():
    text = runner.invoke(app, ["bench", "vist", "--help"], terminal_width=200).output
    assert "fp32|fp16|bf16" in text and "real|tiny" in text and "--limit" in text
    assert "--reference" not in text  # removed: every choice scored the same pixels (docs/protocols.md)


def test_library_spec_rejects_fp8_too():
    from gill_eval.bench.scorers import ScorerSpec
    from gill_eval.errors import ConfigError

    with pytest.raises(ConfigError, match="--precision 'fp8'"):
        ScorerSpec(precision="fp8")


def test_reversed_seed_range_and_limit_zero(toy):
    _one_line_error(runner.invoke(app, ["bench", "vist", "--model", "toy", "--seeds", "4-0"]), "reversed", "write 0-4")
    _one_line_error(runner.invoke(app, ["bench", "vist", "--model", "toy", "--limit", "0"]), "--limit")


def test_offline_real_scorers_fail_before_generation(toy):
    build_fixture_data()
    result = runner.invoke(app, ["bench", "vist", "--model", "toy", "--context", "1c", "--offline"])
    _one_line_error(result, "clip-vit-l-14", "gill-eval models fetch clip-vit-l-14")
    assert not (data_root() / "generations").exists()
    fid = runner.invoke(app, ["bench", "coco-fid", "--model", "toy", "--num", "4", "--offline"])
    _one_line_error(fid, "fid-inception")


def test_unknown_dataset_lists_the_prepared_names():
    build_fixture_data()
    result = runner.invoke(app, ["features", "clip", "--dataset", "cc3m"])
    _one_line_error(result, "did you mean cc3m-val?", "prepared: cc3m-val, coco, visdial, vist")


def test_global_options_after_the_subcommand(tmp_path):
    assert hoist_global_options(["bench", "vist", "--model", "m", "--offline", "--data-dir", "D", "--", "--offline"]) == [
        "--offline", "--data-dir", "D", "bench", "vist", "--model", "m", "--", "--offline"]
    build_fixture_data()
    other = tmp_path / "empty-root"
    listed = runner.invoke(app, ["datasets", "list", "--json", "--data-dir", str(other)])
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []


def test_datasets_list_counts_and_bench_list():
    build_fixture_data()
    rows = json.loads(runner.invoke(app, ["datasets", "list", "--json"]).stdout)
    assert [r["name"] for r in rows] == ["cc3m-val", "coco", "visdial", "vist"]
    vist = next(r for r in rows if r["name"] == "vist")
    assert vist["examples"] == 7
    benches = json.loads(runner.invoke(app, ["bench", "list", "--json"]).stdout)
    assert [b["benchmark"] for b in benches] == ["vist", "visdial", "vist-retrieval", "cc3m-fid", "coco-fid",
                                                 "coco-caption", "vqav2"]  # report order
    assert benches[0]["contexts"] == ["1c", "5c", "5c4i"] and benches[2]["metrics"] == ["R@1", "R@5", "R@10"]


def test_limit_runs_the_first_examples_and_reports_keep_them_apart(toy, tmp_path):
    build_fixture_data()
    common = ["--context", "1c", "--scorers", "tiny", "--json"]
    full = runner.invoke(app, ["bench", "vist", "--model", "toy", *common])
    part = runner.invoke(app, ["bench", "vist", "--model", "toy", *common, "--limit", "2"])
    assert full.exit_code == 0 and part.exit_code == 0, part.output
    [p] = json.loads(part.stdout)
    [f] = json.loads(full.stdout)
    assert p["limit"] == 2 and p["n_expected"] == 2 and f["limit"] is None and f["n_expected"] == 6
    assert p["protocol"]["limit"] == 2 and p["generation"]["dir"] != f["generation"]["dir"]
    results = {r.get("limit"): r for r in load_results()}
    assert set(results) == {None, 2}  # the partial run did not overwrite the full one
    scored = pd.read_parquet(Path(results[2]["_dir"]) / SCORES_FILE)
    assert sorted(set(scored["example_id"])) == ["5000", "5001"]  # the first two in the fixed (sorted) order
    full_scores = pd.read_parquet(Path(results[None]["_dir"]) / SCORES_FILE).set_index(["example_id", "seed", "metric"])
    for row in scored.itertuples():
        assert row.value == pytest.approx(full_scores.loc[(row.example_id, row.seed, row.metric), "value"])
    retr = runner.invoke(app, ["bench", "vist-retrieval", "--model", "toy-retriever", "--limit", "3", "--json"])
    assert json.loads(retr.stdout)[0]["n_expected"] == 3
    report = runner.invoke(app, ["report"])
    text = report.output
    head, partial = text.split("## Partial runs: first 2 examples (--limit 2)")
    assert "toy: 1c 6/6" in head and "2/2" not in head
    assert "toy: 1c 2/2" in partial and "(paper)" not in partial.split("## Partial runs: first 3")[0]
    assert "limit=2" in text  # the provenance table records it


def test_quiet_verbose_and_third_party_bars(monkeypatch):
    from gill_eval.console import THIRD_PARTY_QUIET_ENV

    for var in THIRD_PARTY_QUIET_ENV:
        monkeypatch.delenv(var, raising=False)
    build_fixture_data()
    loud = runner.invoke(app, ["--verbose", "datasets", "list"])
    assert "vist" in loud.output and all(var not in os.environ for var in THIRD_PARTY_QUIET_ENV)
    quiet = runner.invoke(app, ["datasets", "list", "--quiet"])
    assert quiet.exit_code == 0 and quiet.output == ""
    # In a fresh process (as the CLI runs): the callback sets the variables before any library is imported.
    code = ("import sys, gill_eval.cli as c; assert 'tqdm' not in sys.modules and 'diffusers' not in sys.modules; "
            "from gill_eval.console import configure; configure(); import tqdm, logging, diffusers; "
            "print(tqdm.tqdm(range(3)).disable, diffusers.utils.logging.get_verbosity() == logging.ERROR)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.split() == ["True", "True"] and out.stderr == ""
    normal = runner.invoke(app, ["datasets", "list"])
    assert "vist" in normal.output


def test_each_command_loads_only_its_own_module():
    """The root imports a command's module when that command runs: `prepare` brings neither bench, report,
    export nor pandas; `--help` lists every command in the table's order; a typo still gets "did you mean"."""
    probe = ("import sys, typer.main; from gill_eval.cli import app;"
             "typer.main.get_command(app).get_command(None, 'prepare').get_command(None, 'cc3m');"
             "print(sorted(m for m in ('gill_eval.bench', 'gill_eval.report', 'gill_eval.exports', 'pandas')"
             " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    result = runner.invoke(app, ["--help"])
    listed = [line.split()[1] for line in result.output.splitlines() if line.startswith("│ ") and
              len(line.split()) > 2 and not line.split()[1].startswith("-")]
    from gill_eval.cli import _COMMANDS

    assert [name for name in listed if name in _COMMANDS] == list(_COMMANDS)
    _one_line_error(runner.invoke(app, ["exprot", "hf"]), "No such command 'exprot'", "'export'")
