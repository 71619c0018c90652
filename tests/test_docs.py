"""The pages in docs/ stay honest: every Python example in them runs here."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from d360calling.testing import serve
from d360calling.webhooks import SIGNATURE_HEADER, WebhookEvent, WebhookReceiver, signature

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
    assert examples == {"security.md": 1}


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
