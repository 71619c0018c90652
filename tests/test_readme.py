"""The README stays honest: its Python examples run (against the fake API), its pytest example
passes as a user's test file would, its command-line session runs, and CI runs exactly the test
command it names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from d360calling.testing import FakeCallingAPI

from .helpers import API_KEY

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS: list[str] = re.findall(r"```python\n(.*?)```", README, re.DOTALL)
BASH: list[str] = re.findall(r"```bash\n(.*?)```", README, re.DOTALL)


def block(marker: str) -> str:
    (found,) = [b for b in BLOCKS if marker in b]
    return found


def run_block(marker: str, api: FakeCallingAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("D360_API_KEY", API_KEY)
    monkeypatch.setenv("D360_BASE_URL", api.url)
    code = compile(block(marker), f"README.md block with {marker!r}", "exec")
    exec(code, {"__name__": "readme"})


def test_every_python_example_is_run_here() -> None:
    # The FastAPI bot runs under a real uvicorn in tests/test_fastapi_example.py.
    markers = ["permissions = await", "fake.client()", "FastAPI(lifespan"]
    assert sorted(BLOCKS) == sorted(block(m) for m in markers)


def test_async_quick_start(
    api: FakeCallingAPI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_block("permissions = await", api, monkeypatch)
    out = capsys.readouterr().out
    assert "permission: temporary" in out
    (call,) = api.calls.values()
    assert f"ringing: {call.id}" in out
    assert call.biz_opaque_callback_data == "order-42"


def test_sync_quick_start(capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(block("fake.client()"), "README.md sync quick start", "exec"), {})
    assert capsys.readouterr().out.strip() == "ended terminated"


def test_the_readme_is_the_short_front_page_and_links_to_pages_that_exist() -> None:
    assert len(README.splitlines()) < 250
    links = re.findall(r"\]\(((?:docs/)?[\w./-]+\.md)(?:#[\w-]+)?\)", README)
    assert "docs/fleet.md" in links
    assert "docs/cli.md" in links
    missing = [link for link in links if not (ROOT / link).is_file()]
    assert missing == []


def test_the_demo_command_is_the_one_the_cli_tests_run() -> None:
    section = README.split("## Try it", 1)[1]
    command = re.search(r"```bash\n(.*?)\n```", section, re.DOTALL)
    assert command is not None
    assert command.group(1).strip() == (
        'python -m pip install ".[testing]" && python -m d360calling demo'
    )
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert command.group(1).strip() in ci_lines  # CI runs it, in a venv of its own


def test_ci_runs_the_readme_test_command() -> None:
    section = README.split("## Run the tests", 1)[1]
    command = re.search(r"```bash\n(.*?)\n```", section, re.DOTALL)
    assert command is not None
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert command.group(1).strip() in ci_lines
