"""`prepare partiprompts` on the real files, over a loopback HTTP server, and on broken copies."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from gill_eval.cli import app
from gill_eval.datasets import partiprompts as pp
from gill_eval.store import dataset_dir, read_manifest

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, ["prepare", "partiprompts", *args])


def _table():
    return pq.read_table(dataset_dir("partiprompts") / "examples" / "00000.parquet")


@pytest.fixture
def parti_src(partiprompts_dir: Path) -> Path:
    return partiprompts_dir


@pytest.fixture
def parti_copy(parti_src: Path, tmp_path: Path) -> Path:
    """A writable copy of the four files (for serving and for corrupting)."""
    dest = tmp_path / "src"
    dest.mkdir()
    for name in pp.FILE_NAMES:
        shutil.copy(parti_src / name, dest / name)
    return dest


@pytest.fixture
def serve():
    """Start a loopback HTTP server for a folder; returns its base URL."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(folder: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


def _check_real_counts(counts: dict) -> None:
    assert counts["decisions"] == {"gen": 592, "ret": 319, "same": 721}
    assert counts["usable"] == 911
    assert counts["splits"]["val"] == {"gen": 201, "ret": 110}
    assert counts["splits"]["train"]["gen"] + counts["splits"]["train"]["ret"] == 600


def test_real_files_counts_split_and_quotes(parti_src: Path) -> None:
    result = _invoke("--source", str(parti_src), "--json")
    assert result.exit_code == 0, result.output
    _check_real_counts(json.loads(result.stdout))

    table = _table().to_pandas()
    assert len(table) == 1632
    # Quote characters survive: compare against a plain tab split of the raw lines (the oracle).
    raw = (parti_src / pp.PROMPTS).read_text(encoding="utf-8").splitlines()[1:]
    assert table["prompt"].tolist() == [line.split("\t")[0] for line in raw]
    assert sum('"' in p for p in table["prompt"]) == 22
    assert sum(p.startswith('"') for p in table["prompt"]) == 1
    # The published split is file order: train rows all come before val rows.
    usable = table[table["decision"] != "same"]
    assert usable["split"].tolist() == ["train"] * 600 + ["val"] * 311
    assert table.loc[table["decision"] == "same", "split"].isna().all()
    # Two rows have 4 votes, the rest 5.
    assert sorted(table["alignment_votes"].map(len).value_counts().items()) == [(4, 2), (5, 1630)]
    # The shipped Confident column equals ours (re-read independently with a tab split).
    conf = [line.split("\t")[4] for line in (parti_src / pp.CONFIDENT).read_text().splitlines()[1:]]
    assert table["decision"].tolist() == conf

    manifest = read_manifest(dataset_dir("partiprompts"))
    pins = pp.pinned_files()
    assert {Path(s["path"]).name: s["sha256"] for s in manifest.sources} == {n: p.sha256 for n, p in pins.items()}
    assert manifest.counts["decisions"]["same"] == 721


@pytest.mark.parametrize(
    ("votes", "expected"),
    [
        ("gen,gen,gen,gen,gen", "gen"),
        ("gen,gen,gen,gen,ret", "gen"),
        ("gen,gen,gen,ret,same", "gen"),   # 3 vs 1
        ("gen,gen,gen,ret,ret", "same"),   # 3 vs 2
        ("ret,ret,ret,same,same", "ret"),  # 3 vs 0
        ("ret,ret,gen,gen,same", "same"),
        ("same,same,same,gen,gen", "same"),
        ("same,same,same,same", "same"),   # a 4-vote row from the real files
        ("ret,same,ret,gen", "same"),      # the other one: 2 ret
        ("ret,ret,ret,gen", "ret"),
    ],
)
def test_confident_rule(votes: str, expected: str) -> None:
    assert pp.confident_decision(votes.split(",")) == expected


def test_loopback_base_url_matches_local(parti_copy: Path, serve) -> None:
    base = serve(parti_copy)
    result = _invoke("--source", base + "/", "--json")
    assert result.exit_code == 0, result.output
    _check_real_counts(json.loads(result.stdout))
    origins = {s["origin"] for s in read_manifest(dataset_dir("partiprompts")).sources}
    assert all(o.startswith(base) for o in origins)


def test_default_pinned_urls_download_and_reuse(parti_copy: Path, serve, tmp_path: Path, monkeypatch) -> None:
    """The default path: pinned addresses (pointed at a loopback server here), sha256 checked, reused."""
    base = serve(parti_copy)
    pins = json.loads(pp.pinned_files_path().read_text())
    for entry in pins["files"]:
        entry["url"] = f"{base}/{entry['name']}"
    pin_file = tmp_path / "pins.json"
    pin_file.write_text(json.dumps(pins))
    monkeypatch.setattr(pp, "pinned_files_path", lambda: pin_file)

    result = _invoke("--json")
    assert result.exit_code == 0, result.output
    _check_real_counts(json.loads(result.stdout))
    # A second run reuses the verified downloads: it works with the server's files gone.
    for name in pp.FILE_NAMES:
        (parti_copy / name).unlink()
    assert _invoke("--json").exit_code == 0


def test_sha_mismatch_is_an_error_and_keeps_earlier_output(parti_src: Path, parti_copy: Path, serve) -> None:
    assert _invoke("--source", str(parti_src)).exit_code == 0
    before = _table()
    path = parti_copy / pp.REALISM
    path.write_text(path.read_text().replace("gen,ret,gen,gen,gen", "gen,gen,gen,gen,gen", 1))
    base = serve(parti_copy)
    result = _invoke("--source", base)
    assert result.exit_code == 2
    assert "PartiPromptsAllDecisions_Realism.tsv" in result.output and "sha256" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert _table().equals(before)


def test_confident_mismatch_names_the_row(parti_copy: Path) -> None:
    path = parti_copy / pp.CONFIDENT
    lines = path.read_text().split("\n")
    assert lines[1].endswith("\tgen")  # "bond"
    lines[1] = lines[1][: -len("gen")] + "ret"
    path.write_text("\n".join(lines))
    result = _invoke("--source", str(parti_copy), "--no-verify")
    assert result.exit_code == 2
    assert "line 2" in result.output and "'bond'" in result.output and "ret" in result.output


@pytest.mark.parametrize(
    ("name", "edit", "needle", "named"),
    [
        (pp.ALIGNMENT, lambda s: s.replace("Note\tDecisions", "Note", 1), "header", pp.ALIGNMENT),
        (pp.ALIGNMENT, lambda s: s.replace("ret,gen,gen,same,gen", "ret,gen,maybe,same,gen", 1), "line 2: unknown vote",
         pp.ALIGNMENT),
        (pp.REALISM, lambda s: s.replace("\tgen,ret,gen,gen,gen", "", 1), "line 2 has 4", pp.REALISM),
        # A prompt that differs between files: reported on the first annotation file, naming both lines.
        (pp.PROMPTS, lambda s: s.replace("bond\t", "bonds\t", 1), "line 2 ('bond') does not match", pp.ALIGNMENT),
    ],
)
def test_malformed_files(parti_copy: Path, name: str, edit, needle: str, named: str) -> None:
    path = parti_copy / name
    path.write_text(edit(path.read_text()))
    result = _invoke("--source", str(parti_copy), "--no-verify")
    assert result.exit_code == 2
    assert needle in result.output and named in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_http_404_and_missing_local_file(parti_copy: Path, serve) -> None:
    (parti_copy / pp.REALISM).unlink()
    result = _invoke("--source", serve(parti_copy))
    assert result.exit_code == 2 and "HTTP Error 404" in result.output
    result = _invoke("--source", str(parti_copy))
    assert result.exit_code == 2 and "missing" in result.output and pp.REALISM in result.output
