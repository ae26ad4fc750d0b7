"""The README starts with the two set-up commands, and CI runs the second one verbatim."""

from __future__ import annotations

import re

from conftest import REPO


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```bash\n(.+?)\n```", text, flags=re.S)


def test_readme_opens_with_quickstart_and_test_commands():
    commands = _readme_commands()
    assert len(commands) >= 2
    assert commands[0].endswith("gill-eval quickstart")
    assert "pytest" in commands[1]
    head = (REPO / "README.md").read_text(encoding="utf-8").split("```bash")[0]
    assert head.count("\n") < 6, "the set-up commands must come first"


def test_ci_runs_the_readme_test_command():
    ci_lines = (REPO / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert ci_lines[-1] == _readme_commands()[1]
