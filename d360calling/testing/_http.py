"""The fake's HTTP handler: records each request, applies the injected faults, checks the API
key, asks the routes for the answer and writes it (whole, cut, slow or chunked).

A body over :data:`MAX_REQUEST_BYTES` is refused with 413 before (or as soon as) that much
has arrived, so the fake never buffers more. Any other bad request is a 4xx answer from the
routes (:class:`FakeAPIError`); an exception of any other kind is a bug in the fake and is
left to aiohttp's 500, so that it shows."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from ._errors import FakeAPIError
from ._faults import Fault, FaultPlan
from ._jsonbody import BadJSON, parse
from ._records import RecordedRequest, RequestLog
from ._routes import Incoming

__all__ = (
    "Dispatch",
    "Handler",
    "MAX_REQUEST_BYTES",
)

# aiohttp's own default, set here on purpose: the largest real Calling body (an SDP, or a
# settings update) is a few kB, and 360dialog documents no limit of its own.
MAX_REQUEST_BYTES = 1024 * 1024

Dispatch = Callable[[Incoming], Any]


class Handler:
    def __init__(
        self, *, api_key: str, log: RequestLog, faults: FaultPlan, dispatch: Dispatch
    ) -> None:
        self.api_key = api_key
        self.log = log
        self.faults = faults
        self.dispatch = dispatch
        self.in_flight = 0
        self.max_in_flight = 0
        self.cancelled = 0  # handlers cancelled because the client went away

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await _read(request)
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.log.append(
            RecordedRequest(
                request.method,
                request.path,
                dict(request.query),
                CIMultiDict(request.headers),
                body or b"",
                tuple(peer[:2]) if peer else ("", 0),
                time.time(),
            )
        )
        if body is None:
            return _too_large()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            fault = None
            if self.faults:  # the body is parsed for its action only when a fault may need it
                fault = self.faults.take(request.method, request.path, _action_of(request, body))
            if fault is not None and fault.delay:
                await asyncio.sleep(fault.delay)
            if fault is not None and fault.drop == "before":
                return _drop(request)
            if fault is not None and fault.replaces_answer:
                status, payload = fault.status or 200, _fault_body(fault)
            else:
                status, answer = self._answer(request, body)
                payload = json.dumps(answer, allow_nan=False).encode()  # as a real API writes
            if fault is not None and fault.drop == "after":
                return _drop(request)
            return await _respond(request, status, payload, fault)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        except ConnectionResetError:
            # The client went away while a slow answer was being written; aiohttp would log
            # it as a server error.
            self.cancelled += 1
            raise web.HTTPInternalServerError() from None  # never reaches the client
        finally:
            self.in_flight -= 1

    def _answer(self, request: web.Request, body: bytes) -> tuple[int, Any]:
        if request.headers.get("D360-API-KEY") != self.api_key:
            return 401, {"error": "Invalid API key"}
        incoming = Incoming(request.method, request.path, request.query, request.content_type, body)
        try:
            return 200, self.dispatch(incoming)
        except FakeAPIError as exc:
            return exc.status, exc.body


def _fault_body(fault: Fault) -> bytes:
    if fault.body is not None:
        return fault.body
    return json.dumps(fault.json).encode() if fault.json is not None else b""


async def _read(request: web.Request) -> bytes | None:
    """The body, or None when it is over the limit (what else arrives is discarded)."""
    if (request.content_length or 0) > MAX_REQUEST_BYTES:
        return None
    try:
        return await request.read()  # stops once a chunked (or deflated) body passes the limit
    except web.HTTPRequestEntityTooLarge:
        return None


def _too_large() -> web.Response:
    error = FakeAPIError.dialog(413, f"Request body larger than {MAX_REQUEST_BYTES} bytes")
    response = web.json_response(error.body, status=error.status)
    # Then aiohttp reads and discards what is still coming for up to its lingering time
    # (10 s), so a client that sends its whole body before it reads gets the 413 too.
    response.force_close()
    return response


def _action_of(request: web.Request, body: bytes) -> str | None:
    if request.path != "/calling/calls" or not body:
        return None
    try:
        data = parse(body)
    except BadJSON:
        return None
    action = data.get("action") if isinstance(data, dict) else None
    return action if isinstance(action, str) else None


def _drop(request: web.Request) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.abort()
    raise web.HTTPInternalServerError()  # never reaches the client: the socket is gone


async def _respond(
    request: web.Request, status: int, payload: bytes, fault: Fault | None
) -> web.StreamResponse:
    headers = CIMultiDict(fault.headers if fault is not None else {})
    if fault is not None and fault.content_type is not None:
        headers["Content-Type"] = fault.content_type
    headers.setdefault("Content-Type", "application/json")
    if fault is None or not (fault.truncate or fault.slow_body or fault.chunked):
        return web.Response(status=status, body=payload, headers=headers)
    response = web.StreamResponse(status=status, headers=headers)
    if fault.chunked:
        response.enable_chunked_encoding()
    else:
        response.content_length = len(payload)
    await response.prepare(request)
    if fault.truncate:
        await response.write(payload[: len(payload) // 2])
        assert request.transport is not None
        request.transport.close()  # flushes what was written, then closes: a cut body
        return response
    pieces = 5 if fault.slow_body else 1
    step = max(1, -(-len(payload) // pieces))
    for start in range(0, max(len(payload), 1), step):
        if fault.slow_body:
            await asyncio.sleep(fault.slow_body / pieces)
        await response.write(payload[start : start + step])
    await response.write_eof()
    return response
