"""The webhooks page (docs/webhooks.md) stays honest: each of its Python examples runs here,
the FastAPI and Starlette ones under a real uvicorn on 127.0.0.1 with the fake API delivering
the webhooks of a real call; and the README's FastAPI bot is the page's. Polls are bounded."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from d360calling.testing import CallState, FakeCallingAPI, serve
from d360calling.webhooks import SIGNATURE_HEADER, CallConnectEvent, WebhookReceiver, signature

from .helpers import API_KEY
from .test_asgi import post, raw_answer, serving
from .test_webhooks import inbound_connect, terminate

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "webhooks.md"
SECRET = "the app secret"
USER = "4915112345678"


def blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.DOTALL)


def block(path: Path, marker: str) -> str:
    (found,) = [b for b in blocks(path) if marker in b]
    return found


def run(code: str, name: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "docs"}
    exec(compile(code, name, "exec"), namespace)
    return namespace


def until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` while the servers' threads work (bounded)."""
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def closed(receiver: WebhookReceiver) -> bool:
    """Whether ``receiver`` has been closed: it then answers every delivery 503."""
    reply = asyncio.run(receiver.receive({}, b""))
    return reply.status == 503 and reply.text == "the receiver is shutting down"


def test_every_example_of_the_page_is_run_here() -> None:
    markers = ["def make_app(", "FastAPI(lifespan", "Mount(", "def answer_webhook("]
    assert sorted(blocks(PAGE)) == sorted(block(PAGE, m) for m in markers)


FASTAPI = "FastAPI(lifespan"


def fastapi_sources() -> list[Any]:
    readme = ROOT / "README.md"
    has_it = any(FASTAPI in b for b in blocks(readme))
    return [
        pytest.param(PAGE, id="docs/webhooks.md"),
        pytest.param(
            readme,
            id="README.md",
            marks=pytest.mark.skipif(not has_it, reason="the README has no FastAPI bot yet"),
        ),
    ]


@pytest.mark.parametrize("source", fastapi_sources())
def test_the_fastapi_bot_answers_an_inbound_call_under_uvicorn(
    source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("fastapi")
    code = block(source, FASTAPI)
    assert len(code.strip().splitlines()) < 50  # short enough to read at a glance
    with FakeCallingAPI(api_key=API_KEY, webhook_signing_secret=SECRET) as api:
        monkeypatch.setenv("D360_API_KEY", API_KEY)
        monkeypatch.setenv("D360_BASE_URL", api.url)
        monkeypatch.setenv("D360_WEBHOOK_SECRET", SECRET)
        namespace = run(code, f"{source.name} FastAPI bot")
        receiver = namespace["receiver"]
        with serving(namespace["app"]) as port:
            api.webhook_url = f"http://127.0.0.1:{port}/webhook"
            call = api.user_calls(USER)
            assert until(lambda: api.calls[call.id].state == CallState.ACCEPTED)
            assert [body["action"] for body in api.call_actions()] == ["pre_accept", "accept"]
            assert api.call_actions("accept")[0]["call_id"] == call.id
            assert api.webhooks[0].status == 200
            # A delivery that is not signed with the secret reaches no callback.
            with FakeCallingAPI(webhook_url=api.webhook_url, webhook_retries=0) as forged:
                intruder = forged.user_calls("4915100000002", name="Mallory")
                forged.wait_for_webhooks()
                assert forged.webhooks[0].status == 401
                assert intruder.actions == []
        assert receiver.stats["unauthenticated"] == 1
        assert closed(receiver)  # the app's lifespan closed it on shutdown
        assert namespace["client"].closed


def test_the_fastapi_route_reads_the_raw_body_itself_and_keeps_the_bounds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("fastapi")
    monkeypatch.setenv("D360_API_KEY", API_KEY)
    monkeypatch.setenv("D360_WEBHOOK_SECRET", SECRET)
    namespace = run(block(PAGE, FASTAPI), "docs/webhooks.md FastAPI bot")
    receiver = namespace["receiver"]
    with serving(namespace["app"]) as port:
        head = b"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2000000\r\n\r\n"
        status, answer = raw_answer(port, head)  # refused from its headers, none of it sent
        assert status == 413
        assert b"\r\nconnection: close\r\n" in answer.lower()
        # Signed over the exact bytes, trailing spaces and all: the route hands them over as
        # they came, unparsed.
        raw = terminate("wacid.RAW") + b"   "
        assert post(port, raw, {SIGNATURE_HEADER: signature(SECRET, raw)})[0] == 200
    assert (receiver.stats["too_large"], receiver.stats["events"]) == (1, 1)


def test_the_starlette_app_serves_the_mounted_receiver_beside_its_own_routes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("starlette")
    namespace = run(block(PAGE, "Mount("), "docs/webhooks.md Starlette app")
    receiver = namespace["receiver"]
    headers = {"X-Webhook-Secret": "change-me"}
    with serving(namespace["app"]) as port, FakeCallingAPI(webhook_headers=headers) as api:
        api.webhook_url = f"http://127.0.0.1:{port}/hooks/webhook"
        api.user_calls(USER)
        api.wait_for_webhooks()
        assert [d.status for d in api.webhooks] == [200]
        assert until(lambda: "webhook: connect" in capsys.readouterr().out)
        assert post(port, b"{}", headers, path="/webhook")[0] == 404  # only below the mount
        assert post(port, b"", {}, path="/health")[0] == 405  # the app's own route is there
    assert closed(receiver)  # the app's lifespan closed it


def test_the_starlette_pages_receiver_runs_alone_under_uvicorn() -> None:
    pytest.importorskip("starlette")
    namespace = run(block(PAGE, "Mount("), "docs/webhooks.md Starlette app")
    receiver = namespace["receiver"]
    headers = {"X-Webhook-Secret": "change-me"}
    with serving(namespace["webhooks"]) as port:
        assert post(port, inbound_connect(), headers)[0] == 200
    assert receiver.stats["events"] == 1
    assert closed(receiver)  # alone, it ran the lifespan itself


@pytest.mark.asyncio
async def test_the_aiohttp_bot_answers_an_inbound_call(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("D360_WEBHOOK_SECRET", SECRET)
    namespace = run(block(PAGE, "def make_app("), "docs/webhooks.md aiohttp bot")
    async with (
        FakeCallingAPI(webhook_signing_secret=SECRET) as api,
        api.async_client() as client,
    ):
        runner, port = await serve(namespace["make_app"](client))
        try:
            api.webhook_url = f"http://127.0.0.1:{port}/webhook"
            call = api.user_calls(USER)
            for _ in range(500):  # bounded: the state lives in the fake, not in an event
                if call.state == CallState.ACCEPTED:
                    break
                await asyncio.sleep(0.01)
            assert call.state == CallState.ACCEPTED
            api.user_hangs_up(call.id)
            await api.drain_webhooks()
            async with (
                aiohttp.ClientSession() as session,
                session.post(api.webhook_url, data=inbound_connect("wacid.FORGED")) as r,
            ):
                assert r.status == 401  # not signed
        finally:
            await runner.cleanup()
    assert f"ended {call.id} COMPLETED" in capsys.readouterr().out


def test_the_blocking_view_checks_parses_and_queues(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("D360_WEBHOOK_SECRET", SECRET)
    namespace = run(block(PAGE, "def answer_webhook("), "docs/webhooks.md blocking view")
    answer, work = namespace["answer_webhook"], namespace["work"]
    body = inbound_connect()
    good = {SIGNATURE_HEADER: signature(SECRET, body)}
    assert answer(body, good) == 200
    assert isinstance(work.get_nowait(), CallConnectEvent)
    assert answer(body, {}) == 401
    assert answer(body, {SIGNATURE_HEADER: signature("another secret", body)}) == 401
    garbage = b'{"object": "page"}'
    assert answer(garbage, {SIGNATURE_HEADER: signature(SECRET, garbage)}) == 400
    for _ in range(work.maxsize):
        work.put_nowait(None)
    assert answer(body, good) == 503  # full: nothing is queued, the sender delivers again
    assert work.qsize() == work.maxsize
