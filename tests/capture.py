"""A loopback HTTP server that records every request exactly as it arrived and answers with
replies queued by the test: for asserting the wire form of a request without depending on
how much of it the fake API models. It runs on its own loop in a thread, so async clients,
sync clients and sync clients inside a running loop all reach it."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from typing import Any

import attrs
from aiohttp import web

__all__ = ("Capture", "Captured", "Reply", "message_answer")


@attrs.frozen
class Captured:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@attrs.frozen
class Reply:
    status: int = 200
    json: Any = None
    body: bytes | None = None
    drop: bool = False  # close the connection instead of answering (the request arrived)


def message_answer(message_id: str = "wamid.HBgLNDkxNTExMjM0NTY3OBUCABEYEjQ") -> dict[str, Any]:
    """What ``POST /messages`` answers (Meta's Cloud API success body)."""
    return {
        "messaging_product": "whatsapp",
        "contacts": [{"input": "4915112345678", "wa_id": "4915112345678"}],
        "messages": [{"id": message_id}],
    }


class Capture:
    """``with Capture() as server:`` then ``server.reply(...)`` for each answer wanted (without
    one: 200 ``{"success": true}``); ``server.requests`` holds what came."""

    def __init__(self) -> None:
        self.requests: list[Captured] = []
        self._replies: deque[Reply] = deque()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.url = ""

    def reply(self, status: int = 200, json: Any = None, **kwargs: Any) -> None:
        self._replies.append(Reply(status=status, json=json, **kwargs))

    def __enter__(self) -> Capture:
        self._thread.start()
        port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> int:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        return int(server.sockets[0].getsockname()[1])

    async def _stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(
            Captured(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=dict(request.headers),
                body=await request.read(),
            )
        )
        reply = self._replies.popleft() if self._replies else Reply(json={"success": True})
        if reply.drop:
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError  # nothing more to send on a closed connection
        if reply.body is not None:
            return web.Response(status=reply.status, body=reply.body)
        return web.json_response(reply.json, status=reply.status)
