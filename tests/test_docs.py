"""The pages in docs/ stay honest: every Python example in them runs here, the errors page's
tables are the ones the code follows."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import d360calling.errors
from d360calling.testing import CallState, FakeCallingAPI, Fault, sample_answer, serve
from d360calling.webhooks import (
    SIGNATURE_HEADER,
    BackgroundReceiver,
    WebhookEvent,
    WebhookReceiver,
    signature,
)

from .helpers import API_KEY, USER
from .test_webhooks import inbound_connect

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))

# Each page's Python examples, by a text that picks out one block; every block of a listed
# page must be picked out by exactly one marker, and each marker is run by a test below.
# A new page with examples adds its line here (and the tests that run them).
EXAMPLES: dict[str, list[str]] = {
    "index.md": ["permissions = await", "fake.client()"],
    "clients.md": [
        "settings = client",
        "async def call_customer(",
        "def call_customer_sync(",
        "with_options(",
        "sdp.check(",
    ],
    "errors.md": ["except NoCallPermissionError"],
    "retries.md": ["deadline=deadline"],
    "testing.md": ["async def main", "test_my_bot"],
    "fleet.md": ["def make_app"],
    "security.md": ["SqliteDedupeMemory"],
}
# Pages whose examples are run by their own test files, not here.
TESTED_ELSEWHERE = {"webhooks.md", "cli.md"}


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), re.DOTALL)


def block(page: str, marker: str) -> str:
    (code,) = [b for b in python_blocks(DOCS / page) if marker in b]
    return code


def run(page: str, marker: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "docs"}
    exec(compile(block(page, marker), f"docs/{page} block with {marker!r}", "exec"), namespace)
    return namespace


def run_against(
    api: FakeCallingAPI, monkeypatch: pytest.MonkeyPatch, page: str, marker: str
) -> dict[str, Any]:
    """Run an example written for the real API (``Client()``, ``AsyncClient()``) on ``api``."""
    monkeypatch.setenv("D360_API_KEY", api.api_key)
    monkeypatch.setenv("D360_BASE_URL", api.url)
    return run(page, marker)


def test_every_python_example_in_the_docs_is_run_here() -> None:
    pages = {page.name: python_blocks(page) for page in PAGES if page.name not in TESTED_ELSEWHERE}
    assert {name for name, blocks in pages.items() if blocks} == set(EXAMPLES)
    for name, markers in EXAMPLES.items():
        picked = [block(name, marker) for marker in markers]
        assert sorted(picked) == sorted(pages[name]), name


# -- index.md -----------------------------------------------------------------------------------


def test_the_async_quick_start_reads_the_permission_and_places_the_call(
    api: FakeCallingAPI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_against(api, monkeypatch, "index.md", "permissions = await")
    out = capsys.readouterr().out
    assert "permission: temporary" in out
    (call,) = api.calls.values()
    assert f"ringing: {call.id}" in out
    assert call.biz_opaque_callback_data == "order-42"


def test_the_sync_quick_start_answers_and_ends_a_call(capsys: pytest.CaptureFixture[str]) -> None:
    run("index.md", "fake.client()")
    assert capsys.readouterr().out.strip() == "ended terminated"


# -- clients.md ---------------------------------------------------------------------------------


def test_the_settings_example_reads_and_updates_one_feature(
    api: FakeCallingAPI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_against(api, monkeypatch, "clients.md", "settings = client")
    assert capsys.readouterr().out.strip() == "ENABLED DTLS"
    assert api.requests[-1].json == {"calling": {"call_icon_visibility": "DEFAULT"}}


def test_the_options_example_shares_one_pool(
    api: FakeCallingAPI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_against(api, monkeypatch, "clients.md", "with_options(")
    assert capsys.readouterr().out.split() == ["ENABLED", "ENABLED", "0"]
    assert len(api.requests) == 2
    assert len({r.peer for r in api.requests}) == 1  # one pooled connection for both


def test_the_sdp_example_finds_lf_line_ends_and_normalize_fixes_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run("clients.md", "sdp.check(")
    assert capsys.readouterr().out.splitlines() == ["[]", "['not-crlf']", "[]"]


FLOW_SECRET = "docs-flow-secret"


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
async def test_the_business_initiated_flow_asks_then_calls(answer: bool) -> None:
    call_customer = run("clients.md", "async def call_customer(")["call_customer"]
    user = "4915100000009"
    with FakeCallingAPI(api_key=API_KEY, webhook_signing_secret=FLOW_SECRET) as fake:
        receiver = WebhookReceiver(signing_secret=FLOW_SECRET)
        runner, port = await serve(receiver.app())
        try:
            fake.webhook_url = f"http://127.0.0.1:{port}/webhook"
            fake.user_sends_message(user, "hi")  # the 24 h window is open
            thread = user_side(fake, user, answer=answer)
            async with fake.async_client() as client:
                result = await asyncio.wait_for(call_customer(client, receiver, user), 30)
            await asyncio.to_thread(thread.join, 10)
        finally:
            await runner.cleanup()
        (call,) = fake.calls.values()
    assert len(fake.messages) == 1  # the permission request
    if answer:
        assert result.startswith("answered, then ")
        assert call.end_reason == "terminated"  # the example hung up through the API
    else:
        assert result.startswith("not answered: ")
        assert "DECLINED" in result.upper()
        assert "terminate" not in call.actions  # nothing to hang up


def test_the_blocking_business_initiated_flow_asks_then_calls() -> None:
    call_customer_sync = run("clients.md", "def call_customer_sync(")["call_customer_sync"]
    user = "4915100000010"
    with FakeCallingAPI(api_key=API_KEY, webhook_signing_secret=FLOW_SECRET) as fake:
        receiver = WebhookReceiver(signing_secret=FLOW_SECRET)
        with BackgroundReceiver(receiver) as hooks, fake.client() as client:
            fake.webhook_url = hooks.url
            fake.user_sends_message(user, "hi")
            thread = user_side(fake, user, answer=True)
            result = call_customer_sync(client, hooks, user)
            thread.join(10)
        (call,) = fake.calls.values()
    assert result.startswith("answered, then ")
    assert call.end_reason == "terminated"


# -- errors.md ----------------------------------------------------------------------------------


def test_the_errors_example_tells_no_permission_from_throttling(
    api: FakeCallingAPI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    api.revoke_permission(USER, notify=False)  # the fake answers 138006 by itself
    run_against(api, monkeypatch, "errors.md", "except NoCallPermissionError")
    assert capsys.readouterr().out.strip() == "ask the user for call permission first"
    api.inject(Fault.rate_limited(retry_after=120), action="connect")
    run_against(api, monkeypatch, "errors.md", "except NoCallPermissionError")
    assert capsys.readouterr().out.strip() == "throttled; retry after 120.0"


def _table_after(text: str, heading: str) -> str:
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("|"))


def test_the_errors_pages_status_table_is_the_one_in_the_errors_module() -> None:
    """The page's copy of the table in ``d360calling.errors``' docstring, which the code's
    own tests hold to: the same classes, the same codes, in the same order."""
    source = d360calling.errors.__doc__ or ""
    table = source.split("first match wins:", 1)[1].split("A 2xx answer", 1)[0]
    page = _table_after((DOCS / "errors.md").read_text(), "## How an error status")
    for pattern in (r"\b[A-Z]\w*Error\b", r"\b\d{3,6}\b"):
        assert re.findall(pattern, page) == re.findall(pattern, table), pattern


def test_the_errors_pages_tree_names_every_public_error() -> None:
    page = _table_after((DOCS / "errors.md").read_text(), "## The tree")
    named = set(re.findall(r"`(\w+Error)`", page))
    public = {
        name
        for name in d360calling.errors.__all__
        if isinstance(getattr(d360calling.errors, name), type)
        and issubclass(getattr(d360calling.errors, name), Exception)
    }
    assert public <= named | {"D360Error"}


# -- retries.md ---------------------------------------------------------------------------------


def test_the_per_call_settings_example_accepts_within_the_deadline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run("retries.md", "deadline=deadline")
    assert capsys.readouterr().out.strip() == "ENABLED"


# -- testing.md ---------------------------------------------------------------------------------


def test_the_fake_api_example_shows_a_refusal_a_retried_read_and_an_answered_call(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run("testing.md", "async def main")
    assert capsys.readouterr().out.splitlines() == [
        "refused: 138006",
        "allowed: True",
        "4 requests",
        "True",
    ]


def test_the_fixtures_example_passes_as_a_users_test_file(pytester: pytest.Pytester) -> None:
    """Run in its own pytest process: the fixtures come from the installed entry point, and
    warnings are errors (an unclosed session would fail it)."""
    pytester.makepyfile(test_my_bot=block("testing.md", "test_my_bot"))
    pytester.makeini("[pytest]\nfilterwarnings = error\n")  # the user's project config
    others = ("cacheprovider", "hypothesispytest", "asyncio", "anyio")
    result = pytester.runpytest_subprocess(
        *(arg for name in others for arg in ("-p", f"no:{name}"))
    )
    result.assert_outcomes(passed=2)


# -- security.md, fleet.md ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_persistent_dedupe_memory_of_the_security_page_stops_a_replay(
    tmp_path: Path,
) -> None:
    namespace = run("security.md", "SqliteDedupeMemory")
    assert isinstance(namespace["receiver"], WebhookReceiver)
    memory_class = namespace["SqliteDedupeMemory"]
    path = str(tmp_path / "seen.db")
    body = inbound_connect()
    headers = {SIGNATURE_HEADER: signature("the app secret", body)}
    acted: list[list[WebhookEvent]] = []
    for _ in ("before the restart", "after the restart"):
        events: list[WebhookEvent] = []
        acted.append(events)

        async def on_event(event: WebhookEvent, events: list[WebhookEvent] = events) -> None:
            events.append(event)

        receiver = WebhookReceiver(
            on_event=on_event,
            signing_secret="the app secret",
            dedupe=memory_class(path),  # a new process: a new memory object on the same file
            max_age=None,
        )
        runner, port = await serve(receiver.app())
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.post(f"http://127.0.0.1:{port}/webhook", data=body, headers=headers) as r,
            ):
                assert r.status == 200
            await receiver.drain(timeout=5)
        finally:
            await runner.cleanup()
    assert [len(events) for events in acted] == [1, 0]


async def _until(predicate: Any, timeout: float = 10.0) -> bool:
    """Poll ``predicate`` while the loop serves the workers (bounded)."""
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return bool(predicate())


@pytest.mark.asyncio
async def test_the_fleet_pages_two_workers_answer_a_call_delivered_to_both_once(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = run("fleet.md", "def make_app")
    namespace["my_sdp_answer"] = lambda offer: sample_answer(offer=offer)
    monkeypatch.setenv("D360_WEBHOOK_SECRET", "the app secret")
    monkeypatch.setenv("REDIS_URL", redis_url)
    with FakeCallingAPI(api_key=API_KEY, webhook_signing_secret="the app secret") as api:
        monkeypatch.setenv("D360_API_KEY", API_KEY)
        monkeypatch.setenv("D360_BASE_URL", api.url)
        workers = [await serve(namespace["make_app"]()) for _ in range(2)]
        try:
            urls = [f"http://127.0.0.1:{port}/webhook" for _, port in workers]
            api.webhook_url = urls[0]
            call = api.user_calls("4915112345678")
            assert await _until(lambda: api.calls[call.id].state == CallState.ACCEPTED)
            connect = next(d for d in api.webhooks if d.value.get("calls"))
            api.webhook_url = urls[1]  # the sender delivers it again, to the other worker
            again = api.redeliver(connect)
            assert await _until(lambda: again.delivered)
        finally:
            for runner, _ in workers:
                await runner.cleanup()  # which waits for every callback started to finish
        # Requests, not the call's actions: the fake would refuse a second accept.
        assert len(api.call_actions("accept")) == 1
        assert len(api.call_actions("pre_accept")) == 1
