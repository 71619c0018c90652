"""A loopback aiohttp server that speaks the Calling API contract, for the client's tests.

It runs on its own event loop in a background thread, so async tests, sync tests and sync
calls made from inside a running loop all talk to a real server that is never blocked by
the code under test. Replies can be scripted per route (status, body, headers, delay,
dropped connection); every request is recorded.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

API_KEY = "test-key-0123456789"

PERMISSIONS_BODY = {
    "messaging_product": "whatsapp",
    "permission": {"status": "temporary", "expiration_time": 1745343479},
    "actions": [
        {
            "action_name": "send_call_permission_request",
            "can_perform_action": True,
            "limits": [
                {"time_period": "PT24H", "max_allowed": 1, "current_usage": 0},
                {"time_period": "P7D", "max_allowed": 2, "current_usage": 1},
            ],
        },
        {
            "action_name": "start_call",
            "can_perform_action": False,
            "limits": [
                {
                    "time_period": "PT24H",
                    "max_allowed": 5,
                    "current_usage": 5,
                    "limit_expiration_time": 1745622600,
                }
            ],
        },
    ],
}

SETTINGS_BODY: dict[str, Any] = {
    "calling": {
        "status": "ENABLED",
        "call_icon_visibility": "DEFAULT",
        "callback_permission_status": "ENABLED",
        "call_hours": {
            "status": "ENABLED",
            "timezone_id": "Europe/Berlin",
            "weekly_operating_hours": [
                {"day_of_week": "MONDAY", "open_time": "0900", "close_time": "1700"}
            ],
            "holiday_schedule": [{"date": "2026-12-25", "start_time": "0000", "end_time": "2359"}],
        },
        "sip": {"status": "DISABLED", "servers": []},
        "srtp_key_exchange_protocol": "DTLS",
    },
    "payload_encryption": {"status": "DISABLED"},
    "storage_configuration": {"status": "DEFAULT", "data_localization_region": "DE"},
}


@dataclass
class Reply:
    """A scripted reply. ``drop`` closes the connection after reading the request, without
    answering; ``delay`` waits before answering. A reply with neither ``json``, ``body`` nor
    ``drop`` gives the contract's answer after its delay."""

    status: int = 200
    json: Any = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False
    chunked: bool = False  # send ``body`` with chunked encoding (no Content-Length)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    peer: tuple[str, int]

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class LoopbackAPI:
    def __init__(self, api_key: str = API_KEY):
        self.api_key = api_key
        self.requests: list[Recorded] = []
        self.settings = json.loads(json.dumps(SETTINGS_BODY))
        self._scripts: dict[tuple[str, str], deque[Reply]] = defaultdict(deque)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._call_seq = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.cancelled = 0  # handlers cancelled because the client went away
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, port: int = 0) -> LoopbackAPI:
        self.port = port
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- scripting ------------------------------------------------------------------------

    def script(self, method: str, path: str, *replies: Reply) -> None:
        """Answer the next requests to ``method path`` with ``replies``, in order; then the
        contract's default answer."""
        self._scripts[(method, path)].extend(replies)

    def requests_to(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path == path]

    # -- serving --------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        peer = request.transport.get_extra_info("peername") if request.transport else ("", 0)
        self.requests.append(
            Recorded(request.method, request.path, dict(request.headers), body, tuple(peer[:2]))
        )
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            script = self._scripts.get((request.method, request.path))
            if script:
                reply = script.popleft()
                if reply.delay:
                    await asyncio.sleep(reply.delay)
                if reply.chunked:
                    return await self._chunked(request, reply)
                if reply.drop or reply.json is not None or reply.body is not None:
                    return self._scripted(request, reply)
                # A reply with only a delay: then the contract's own answer.
            if request.headers.get("D360-API-KEY") != self.api_key:
                return web.json_response({"error": "Invalid API key"}, status=401)
            return self._contract(request, body)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1

    async def _chunked(self, request: web.Request, reply: Reply) -> web.StreamResponse:
        response = web.StreamResponse(status=reply.status, headers=reply.headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        body = reply.body or b""
        for start in range(0, len(body), 65536):
            await response.write(body[start : start + 65536])
        await response.write_eof()
        return response

    def _scripted(self, request: web.Request, reply: Reply) -> web.StreamResponse:
        if reply.drop:
            assert request.transport is not None
            request.transport.abort()
            raise web.HTTPInternalServerError()  # never reaches the client
        if reply.body is not None:
            return web.Response(status=reply.status, body=reply.body, headers=reply.headers)
        return web.json_response(reply.json, status=reply.status, headers=reply.headers)

    def _contract(self, request: web.Request, body: bytes) -> web.Response:
        path = request.path
        if request.method == "POST" and path == "/calling/calls":
            data = json.loads(body)
            if data.get("action") == "connect":
                self._call_seq += 1
                return web.json_response(
                    {"messaging_product": "whatsapp", "calls": [{"id": f"wacid.T{self._call_seq}"}]}
                )
            return web.json_response({"messaging_product": "whatsapp", "success": True})
        if request.method == "GET" and path.startswith("/calling/permissions/"):
            return web.json_response(PERMISSIONS_BODY)
        if path == "/calling/settings":
            if request.method == "GET":
                return web.json_response(self.settings)
            if request.method == "POST":
                self.settings["calling"].update(json.loads(body)["calling"])
                return web.json_response({"success": True})
        return web.json_response({"error": f"no route {request.method} {path}"}, status=404)


@contextmanager
def running_api(api_key: str = API_KEY) -> Iterator[LoopbackAPI]:
    api = LoopbackAPI(api_key).start()
    try:
        yield api
    finally:
        api.stop()


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
