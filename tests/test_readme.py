"""The README stays honest: its Python examples run (against the fake API), its pytest example
passes as a user's test file would, its command-line session runs, and CI runs exactly the test
command it names."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sysconfig
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from d360calling.testing import FakeCallingAPI, Fault, sample_offer, serve
from d360calling.webhooks import BackgroundReceiver, WebhookReceiver

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
    markers = [
        "permissions = await",
        "fake.client()",
        "settings = client",
        "def make_app(",
        "test_my_bot",
        "except NoCallPermissionError",
        "with_options(",
        "async def call_customer(",
        "def call_customer_sync(",
    ]
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


def test_settings_example(
    api: FakeCallingAPI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_block("settings = client", api, monkeypatch)
    assert capsys.readouterr().out.strip() == "ENABLED DTLS"
    assert api.requests[-1].json == {"calling": {"call_icon_visibility": "DEFAULT"}}


def test_options_example(
    api: FakeCallingAPI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_block("with_options(", api, monkeypatch)
    assert capsys.readouterr().out.split() == ["ENABLED", "ENABLED", "0"]
    assert len(api.requests) == 2
    assert len({r.peer for r in api.requests}) == 1  # one pooled connection for both


def test_errors_example(
    api: FakeCallingAPI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    api.revoke_permission("4915112345678", notify=False)  # the fake answers 138006 by itself
    run_block("except NoCallPermissionError", api, monkeypatch)
    assert capsys.readouterr().out.strip() == "ask the user for call permission first"
    api.inject(Fault.rate_limited(retry_after=120), action="connect")
    run_block("except NoCallPermissionError", api, monkeypatch)
    assert capsys.readouterr().out.strip() == "throttled; retry after 120.0"


@pytest.mark.asyncio
async def test_the_bot_answers_an_inbound_call_and_refuses_forged_webhooks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    namespace: dict[str, Any] = {"__name__": "readme"}
    exec(compile(block("def make_app("), "README.md bot", "exec"), namespace)
    assert len(block("def make_app(").strip().splitlines()) < 40
    headers = {"X-Webhook-Secret": "change-me"}
    async with FakeCallingAPI(webhook_headers=headers) as fake, fake.async_client() as client:
        app = namespace["make_app"](client)
        runner, port = await serve(app)
        try:
            fake.webhook_url = f"http://127.0.0.1:{port}/webhook"
            call = fake.user_calls("4915100000001")
            assert await _eventually(lambda: call.state == "accepted")
            fake.user_hangs_up(call.id)
            await fake.drain_webhooks()
            forged = FakeCallingAPI(webhook_url=fake.webhook_url)  # no secret header
            async with forged:
                intruder = forged.user_calls("4915100000002", name="Mallory")
                await forged.drain_webhooks()
            assert forged.webhooks[0].status == 401
            assert intruder.actions == []
        finally:
            await runner.cleanup()
    out = capsys.readouterr().out
    assert f"answered {call.id} from 4915100000001" in out
    assert f"ended {call.id} COMPLETED" in out


async def _eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    for _ in range(int(timeout / 0.01)):  # polled: the state lives in the fake, not in an event
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()


def test_the_pytest_example_passes_as_a_users_test_file(pytester: pytest.Pytester) -> None:
    """Run in its own pytest process: the fixtures come from the installed entry point, and
    warnings are errors (an unclosed session would fail it)."""
    pytester.makepyfile(test_my_bot=block("test_my_bot"))
    pytester.makeini("[pytest]\nfilterwarnings = error\n")  # the user's project config
    # Without the plugins our own suite needs and the example does not (importing them is
    # most of this process's start-up): the fixtures come from d360calling's alone.
    others = ("cacheprovider", "hypothesispytest", "asyncio", "anyio")
    result = pytester.runpytest_subprocess(
        *(arg for name in others for arg in ("-p", f"no:{name}"))
    )
    result.assert_outcomes(passed=2)


def test_the_command_line_session_runs(tmp_path: Path) -> None:
    (session,) = [b for b in BASH if "fake-server" in b]
    with socket.socket() as sock:  # the README's port may be taken here; use a free one
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    script = session.replace("8360", str(port))
    (tmp_path / "offer.sdp").write_text(sample_offer())
    scripts = sysconfig.get_path("scripts")
    env = {k: v for k, v in os.environ.items() if not k.startswith("D360_")} | {
        "PATH": scripts + os.pathsep + os.environ["PATH"]
    }
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "settings updated" in out
    assert '"callback_permission_status": "ENABLED"' in out
    assert "permission: no_permission" in out
    assert "exit code 3" in out
    assert "No approved call permission" in result.stderr


def test_the_demo_command_is_the_one_the_cli_tests_run() -> None:
    section = README.split("## Try it", 1)[1]
    command = re.search(r"```bash\n(.*?)\n```", section, re.DOTALL)
    assert command is not None
    assert command.group(1).strip() == "python -m pip install . && python -m d360calling demo"


def test_ci_runs_the_readme_test_command() -> None:
    section = README.split("## Run the tests", 1)[1]
    command = re.search(r"```bash\n(.*?)\n```", section, re.DOTALL)
    assert command is not None
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert command.group(1).strip() in ci_lines


# -- the business-initiated flow --------------------------------------------------------------

FLOW_SECRET = "readme-flow-secret"


def user_side(fake: FakeCallingAPI, user: str, *, answer: bool) -> threading.Thread:
    """The WhatsApp user: grants the permission request when it arrives, then answers (or
    declines) the call; bounded, so a broken flow fails instead of hanging."""

    def act() -> None:
        deadline = time.monotonic() + 20
        while not any(m.user == user for m in fake.messages.values()):
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)
        fake.user_replies_to_permission_request(user, accept=True)
        while not fake.calls:
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)
        call_id = next(iter(fake.calls))
        if answer:
            fake.user_answers(call_id)
        else:
            fake.user_declines(call_id)

    thread = threading.Thread(target=act, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("answer", [True, False])
@pytest.mark.asyncio
async def test_the_business_initiated_flow_async(answer: bool) -> None:
    namespace: dict[str, Any] = {"__name__": "readme"}
    exec(compile(block("async def call_customer("), "README.md flow", "exec"), namespace)
    user = "4915100000009"
    with FakeCallingAPI(api_key=API_KEY, webhook_signing_secret=FLOW_SECRET) as fake:
        receiver = WebhookReceiver(signing_secret=FLOW_SECRET)
        runner, port = await serve(receiver.app())
        try:
            fake.webhook_url = f"http://127.0.0.1:{port}/webhook"
            fake.user_sends_message(user, "hi")  # the 24 h window is open
            thread = user_side(fake, user, answer=answer)
            async with fake.async_client() as client:
                result = await asyncio.wait_for(
                    namespace["call_customer"](client, receiver, user), 30
                )
            await asyncio.to_thread(thread.join, 10)
        finally:
            await runner.cleanup()
        (call,) = fake.calls.values()
    if answer:
        assert result.startswith("answered, then ")
        assert call.end_reason == "terminated"  # the example hung up through the API
    else:
        assert result.startswith("not answered: ")
        assert "DECLINED" in result.upper()
        assert "terminate" not in call.actions  # nothing to hang up


def test_the_business_initiated_flow_sync() -> None:
    namespace: dict[str, Any] = {"__name__": "readme"}
    exec(compile(block("def call_customer_sync("), "README.md sync flow", "exec"), namespace)
    user = "4915100000010"
    with FakeCallingAPI(api_key=API_KEY, webhook_signing_secret=FLOW_SECRET) as fake:
        receiver = WebhookReceiver(signing_secret=FLOW_SECRET)
        with BackgroundReceiver(receiver) as hooks, fake.client() as client:
            fake.webhook_url = hooks.url
            fake.user_sends_message(user, "hi")
            thread = user_side(fake, user, answer=True)
            result = namespace["call_customer_sync"](client, hooks, user)
            thread.join(10)
        (call,) = fake.calls.values()
    assert result.startswith("answered, then ")
    assert call.end_reason == "terminated"
