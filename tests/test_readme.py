"""The README stays honest: its Python examples run against the loopback API, and CI runs
exactly the test command it names."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .loopback import API_KEY, LoopbackAPI, Reply

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.DOTALL)
PERMANENT = json.loads(
    (Path(__file__).parent / "payloads" / "permissions_permanent.json").read_text()
)


def run_block(index: int, api: LoopbackAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("D360_API_KEY", API_KEY)
    monkeypatch.setenv("D360_BASE_URL", api.url)
    exec(compile(BLOCKS[index], f"README.md python block {index}", "exec"), {"__name__": "readme"})


def test_the_readme_has_the_examples_these_tests_run() -> None:
    assert len(BLOCKS) == 4


def test_async_quick_start(
    api: LoopbackAPI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    api.script("GET", "/calling/permissions/4915112345678", Reply(json=PERMANENT))
    run_block(0, api, monkeypatch)
    out = capsys.readouterr().out
    assert "permission: permanent" in out
    assert "ringing: wacid.T1" in out
    assert api.requests[-1].json["biz_opaque_callback_data"] == "order-42"


def test_sync_quick_start(api: LoopbackAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    run_block(1, api, monkeypatch)
    assert [r.json["action"] for r in api.requests] == ["pre_accept", "accept", "terminate"]


def test_settings_example(
    api: LoopbackAPI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_block(2, api, monkeypatch)
    assert capsys.readouterr().out.strip() == "ENABLED DTLS"
    assert api.requests[-1].json == {"calling": {"call_icon_visibility": "DEFAULT"}}


def test_errors_example(
    api: LoopbackAPI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    api.script(
        "POST",
        "/calling/calls",
        Reply(status=401, json={"error": {"message": "No permission", "code": 138006}}),
    )
    run_block(3, api, monkeypatch)
    assert capsys.readouterr().out.strip() == "ask the user for call permission first"


def test_ci_runs_the_readme_test_command() -> None:
    section = README.split("## Run the tests", 1)[1]
    command = re.search(r"```bash\n(.*?)\n```", section, re.DOTALL)
    assert command is not None
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert command.group(1).strip() in ci_lines
