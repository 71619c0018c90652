"""The pages in docs/ stay honest: every Python example in them runs here."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from d360calling.testing import CallState, FakeCallingAPI, sample_answer, serve
from d360calling.webhooks import SIGNATURE_HEADER, WebhookEvent, WebhookReceiver, signature

from .helpers import API_KEY
from .test_webhooks import inbound_connect

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(DOCS.glob("*.md"))


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), re.DOTALL)


def run(page: str, marker: str) -> dict[str, Any]:
    (code,) = [b for b in python_blocks(DOCS / page) if marker in b]
    namespace: dict[str, Any] = {"__name__": "docs"}
    exec(compile(code, f"docs/{page} block with {marker!r}", "exec"), namespace)
    return namespace


def test_every_python_example_in_the_docs_is_run_here() -> None:
    examples = {page.name: len(python_blocks(page)) for page in PAGES if python_blocks(page)}
    assert examples == {"fleet.md": 1, "security.md": 1}


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
