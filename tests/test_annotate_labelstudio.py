"""Label Studio against a real server on 127.0.0.1: our labelling config is accepted, our tasks import, the
official votes go in as annotations by five users and come back out through its JSON export byte-identical;
annotations submitted one by one (one cancelled, one with an answer outside the config) read back right.

Label Studio pins heavy dependencies of its own, so it lives in its own virtual environment that `.ci/run`
builds and names in GILL_EVAL_LABEL_STUDIO (with a data folder it has already migrated, copied here: the
server then starts in seconds). One server serves every test of this module.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from annotate_support import check_official, labelstudio_tasks, official_kit, small_kit
from gill_eval.annotate.collect import collect
from gill_eval.annotate.items import Kit
from gill_eval.annotate.labelstudio import CONFIG_FILE, TASKS_FILE, read_labelstudio_export
from gill_eval.cli import app
from gill_eval.errors import InputError

VERSION = "1.23.2"
USER, PASSWORD, TOKEN = "gill-eval@example.org", "gill-eval-ci", "gill-eval-ci-token"  # as .ci/run's init
START_TIMEOUT_S = 300  # a first start without .ci/run's migrated template runs every migration


def label_studio_env() -> Path | None:
    cache = Path(os.environ.get("GILL_EVAL_VENV_CACHE", Path.home() / ".cache" / "gill-eval-ci"))
    env = Path(os.environ.get("GILL_EVAL_LABEL_STUDIO", cache / f"label-studio-{VERSION}"))
    return env if (env / "bin" / "label-studio").is_file() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, url: str) -> None:
        self.url = url

    def call(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(self.url + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                         headers={"Authorization": f"Token {TOKEN}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path}: {exc.code} {exc.read()[:400]!r}") from None

    def project(self, title: str, config: str) -> int:
        return self.call("POST", "/api/projects/", {"title": title, "label_config": config})["id"]

    def user(self, name: str) -> int:
        return self.call("POST", "/api/users/", {"email": f"{name}@example.org", "username": name})["id"]

    def export(self, project: int, path: Path) -> Path:
        path.write_text(json.dumps(self.call("GET", f"/api/projects/{project}/export?exportType=JSON")), encoding="utf-8")
        return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = label_studio_env()
    if env is None:
        pytest.skip(f"no Label Studio environment: `bash .ci/run` builds it (pip install label-studio=={VERSION} "
                    "in its own venv, named by GILL_EVAL_LABEL_STUDIO)")
    exe = str(env / "bin" / "label-studio")
    base = tmp_path_factory.mktemp("label-studio")
    data = base / "data"
    credentials = ["--username", USER, "--password", PASSWORD, "--user-token", TOKEN, "--enable-legacy-api-token"]
    if (env / "template" / "label_studio.sqlite3").is_file():
        shutil.copytree(env / "template", data)
    else:
        subprocess.run([exe, "init", "--data-dir", str(data), *credentials], check=True, timeout=START_TIMEOUT_S,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port = free_port()
    log = (base / "server.log").open("wb")
    proc = subprocess.Popen([exe, "start", "--internal-host", "127.0.0.1", "--port", str(port), "--no-browser",
                             "--data-dir", str(data), *credentials], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ, "HOME": str(base)})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (base / "server.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"Label Studio did not answer /health within {START_TIMEOUT_S} s:\n{tail}")
            time.sleep(0.5)
        yield Server(url)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def test_official_votes_through_a_real_label_studio_round_trip(server: Server, tmp_path: Path) -> None:
    from gill_eval.annotate.labelstudio import label_config

    kit = official_kit(tmp_path / "kit")
    ids = {1: 1, **{n: server.user(f"annotator{n}") for n in range(2, 6)}}  # user 1 is the server's own
    assert sorted(ids.values()) == list(ids.values())  # ascending ids keep the vote order of the files
    tasks = labelstudio_tasks(kit)
    for task in tasks:
        for annotation in task["annotations"]:
            annotation["completed_by"] = ids[annotation["completed_by"]]
    project = server.project("official round trip", label_config())
    assert server.call("POST", f"/api/projects/{project}/import", tasks)["task_count"] == 1632
    export = server.export(project, tmp_path / "export.json")
    out = tmp_path / "labels"
    summary = collect([export], kit.folder, out)
    check_official(out, summary)
    assert summary["annotators"] == 5
    again = collect([export], kit.folder, out)  # re-importing the same export changes nothing
    assert again["votes_added"] == 0


def test_kit_tasks_and_submitted_annotations(server: Server, tmp_path: Path) -> None:
    kit = small_kit(tmp_path / "kit", n=3)
    runner = CliRunner()
    result = runner.invoke(app, ["annotate", "export", str(kit.folder), "--to", "labelstudio", "--json"])
    assert result.exit_code == 0, result.output
    config = (kit.folder / CONFIG_FILE).read_text()
    tasks = json.loads((kit.folder / TASKS_FILE).read_text())
    assert tasks[0]["data"]["image_a"].startswith("data:image/png;base64,")
    assert "order" not in json.dumps(tasks) and '"a": ' not in json.dumps(tasks)  # nothing gives the order away
    project = server.project("kit tasks", config)
    server.call("POST", f"/api/projects/{project}/import", tasks)
    by_item = {t["data"]["item"]: t["id"] for t in server.call("GET", f"/api/tasks/?project={project}")["tasks"]}
    assert sorted(by_item) == [i.id for i in kit.items]
    user = server.user("kitannotator")

    def answer(item: str, relevance: str, realism: str, **extra: Any) -> None:
        result = [{"from_name": q, "to_name": "image_a", "type": "choices", "value": {"choices": [v]}}
                  for q, v in (("relevance", relevance), ("realism", realism))]
        server.call("POST", f"/api/tasks/{by_item[item]}/annotations/", {"result": result, **extra})

    answer("p-00000", "A", "B", completed_by=user)
    answer("p-00001", "same", "A", completed_by=user)
    answer("p-00001", "B", "B")  # by the server's own user
    answer("p-00002", "A", "A", completed_by=user, was_cancelled=True)  # skipped: not a vote
    votes = read_labelstudio_export(server.export(project, tmp_path / "export.json"), Kit.read(kit.folder))
    got = sorted((v.item, v.annotator, v.relevance, v.realism) for v in votes)
    assert got == sorted([("p-00000", f"ls-{user}", "A", "B"), ("p-00001", f"ls-{user}", "same", "A"),
                          ("p-00001", "ls-1", "B", "B")])
    answer("p-00002", "C", "A", completed_by=user)  # the server does not check answers against the config
    export = server.export(project, tmp_path / "export2.json")
    with pytest.raises(InputError, match=r"task\[2\]\.annotations\[1\]\.result\[0\]: relevance answer 'C'"):
        read_labelstudio_export(export, Kit.read(kit.folder))
