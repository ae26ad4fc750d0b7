"""Results record their benchmark's protocol version; report refuses earlier ones with the rerun command."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gill_eval.bench import protocol
from gill_eval.bench.results import load_results, write_result
from gill_eval.cli import app
from gill_eval.errors import InputError


def _result(benchmark: str = "vist", **extra) -> dict:
    return {"benchmark": benchmark, "context": "5c4i", "seeds": [0, 1], "status": "ok",
            "model": {"name": "gill", "label": "gill"}, "generation": {"dir": "/data/generations/vist/abc/5c4i-123"},
            **extra}


def test_written_results_carry_the_current_version(tmp_path):
    write_result(tmp_path / "r", _result(), None)
    saved = json.loads((tmp_path / "r" / "result.json").read_text())
    assert saved["protocol_version"] == protocol.current("vist").version >= 2
    assert saved["generation_version"] == protocol.current("vist").generation
    assert load_results(tmp_path)[0]["protocol_version"] == saved["protocol_version"]


def _write_raw(folder, result) -> None:
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps(result))


def test_unversioned_result_is_refused_with_a_full_rerun(tmp_path):
    _write_raw(tmp_path / "old", _result())  # written before versions existed: version 1
    with pytest.raises(InputError) as err:
        load_results(tmp_path)
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "old" / "result.json") in message
    assert "vist protocol v1, current is v3" in message
    # its images were made under generation v1 < 2, so they must be made again
    assert "gill-eval bench vist --model gill --context 5c4i --seeds 0,1" in message


def test_benchmark_without_its_own_command_names_bench_run(tmp_path, monkeypatch):
    # coco-fid has no context option and a plugin has no command at all: both rerun through `bench run NAME`
    monkeypatch.setattr(protocol, "current", lambda name: protocol.ProtocolVersion(3, 3))
    _write_raw(tmp_path / "old", _result("coco-fid", context="captions", protocol_version=2, generation_version=2))
    with pytest.raises(InputError, match=r"rerun `gill-eval bench run coco-fid --model gill --context captions --seeds 0,1`"):
        load_results(tmp_path)


def test_result_needing_only_rescoring_names_bench_score(tmp_path, monkeypatch):
    monkeypatch.setattr(protocol, "current", lambda name: protocol.ProtocolVersion(3, 2))
    _write_raw(tmp_path / "old", _result(protocol_version=2, generation_version=2))
    with pytest.raises(InputError, match=r"rerun `gill-eval bench score /data/generations/vist/abc/5c4i-123`"):
        load_results(tmp_path)


def test_report_cli_refuses_in_one_line(tmp_path):
    _write_raw(tmp_path / "res" / "x", _result("visdial", context="r5"))
    out = CliRunner().invoke(app, ["report", "--results", str(tmp_path / "res")])
    assert out.exit_code == 2
    assert "Traceback" not in out.output
    assert "gill-eval bench visdial --model gill --rounds 5" in out.output
