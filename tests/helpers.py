"""Shared test helpers. The server the tests talk to is the library's own fake API,
``d360calling.testing.FakeCallingAPI``, run in a background thread so async tests, sync tests
and sync calls made from inside a running loop all reach a server the code under test never
blocks."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web

from d360calling.testing import FakeCallingAPI, serve

API_KEY = "test-key-0123456789"
USER = "4915112345678"  # a WhatsApp user who has granted call permission in every test


@contextmanager
def running_api(api_key: str = API_KEY) -> Iterator[FakeCallingAPI]:
    with FakeCallingAPI(api_key=api_key) as fake:
        fake.grant_permission(USER, notify=False)
        yield fake


def closed_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


class WebhookSink:
    """A webhook receiver on the running loop that records what the fake delivers. It answers
    each request with the next of ``statuses`` (then 200)."""

    def __init__(self, *statuses: int) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self._statuses = list(statuses)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> WebhookSink:
        app = web.Application()
        app.router.add_post("/hook", self._receive)
        self._runner, port = await serve(app)
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        return web.Response(status=self._statuses.pop(0) if self._statuses else 200)

    @property
    def items(self) -> list[tuple[str, dict[str, Any]]]:
        """(kind, item) of every call, status and message received, in order."""
        out: list[tuple[str, dict[str, Any]]] = []
        for _, body in self.received:
            value = json.loads(body)["entry"][0]["changes"][0]["value"]
            for kind in ("calls", "statuses", "messages"):
                out.extend((kind, item) for item in value.get(kind, ()))
        return out

    def events(self) -> list[str]:
        """A short name per item: 'connect', 'terminate', 'RINGING', 'permission:accept'."""
        names = []
        for kind, item in self.items:
            if kind == "calls":
                names.append(item["event"])
            elif kind == "statuses":
                names.append(item["status"])
            else:
                reply = item["interactive"]["call_permission_reply"]["response"]
                names.append(f"permission:{reply}")
        return names
