"""The receiver's framework-neutral core and its ASGI adapter (issue 17): the same answers,
bounds and statistics as the aiohttp handler, with the body read from ``http.request`` chunks
as they come. Most tests call the ASGI app directly, with a ``receive`` that records what was
read; the rest run it under a real uvicorn on 127.0.0.1 (skipped without uvicorn). Loops are
bounded; the only real waits are the small timeouts whose bound is what a test checks."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import http.client
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, MutableMapping
from typing import Any

import pytest

from d360calling import ClientMisuseError, InvalidRequestError, StateUnavailableError
from d360calling.webhooks import (
    SIGNATURE_HEADER,
    CallConnectEvent,
    InMemoryState,
    StateListener,
    WebhookASGIApp,
    WebhookEvent,
    WebhookReceiver,
    WebhookReply,
    signature,
)
from d360calling.webhooks._receiver import RETRY_AFTER

from .test_adversarial_receiver import connects
from .test_webhooks import inbound_connect

SECRET = "s3cret-for-asgi"
LOGGER = "d360calling.webhooks"


class Recorder:
    def __init__(self) -> None:
        self.events: list[WebhookEvent] = []

    async def on_event(self, event: WebhookEvent) -> None:
        self.events.append(event)

    def receiver(self, **options: Any) -> WebhookReceiver:
        if "signing_secret" not in options and "secret_header" not in options:
            options["signing_secret"] = SECRET
        return WebhookReceiver(on_event=self.on_event, **options)


def signed(body: bytes) -> dict[str, str]:
    return {SIGNATURE_HEADER: signature(SECRET, body)}


class Request:
    """One ASGI ``http`` request: its scope, and a ``receive`` that hands over ``chunks`` (then
    ``http.disconnect`` if ``disconnect``) and counts how often it was asked."""

    def __init__(
        self,
        chunks: list[bytes] | Callable[[int], bytes | None],
        headers: Mapping[str, str] | None = None,
        *,
        method: str = "POST",
        path: str = "/webhook",
        root_path: str = "",
        client: tuple[str, int] | None = ("203.0.113.9", 40000),
        disconnect: bool = False,
    ) -> None:
        self.chunks = chunks
        self.disconnect = disconnect
        self.reads = 0
        self.scope: dict[str, object] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "path": path,
            "root_path": root_path,
            "query_string": b"",
            "client": client,
            "headers": [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in (headers or {}).items()
            ],
        }
        self.sent: list[MutableMapping[str, object]] = []

    async def receive(self) -> Mapping[str, object]:
        index, self.reads = self.reads, self.reads + 1
        if callable(self.chunks):
            chunk = self.chunks(index)
            if chunk is None:
                return {"type": "http.request", "body": b"", "more_body": False}
            return {"type": "http.request", "body": chunk, "more_body": True}
        if index < len(self.chunks):
            more = index + 1 < len(self.chunks) or self.disconnect
            return {"type": "http.request", "body": self.chunks[index], "more_body": more}
        assert self.disconnect, "read past the end of the body"
        return {"type": "http.disconnect"}

    async def send(self, message: MutableMapping[str, object]) -> None:
        self.sent.append(message)

    async def run(self, app: WebhookASGIApp) -> Request:
        await app(self.scope, self.receive, self.send)
        return self

    @property
    def status(self) -> int:
        status = self.sent[0]["status"]
        assert isinstance(status, int)
        return status

    @property
    def headers(self) -> dict[str, str]:
        raw = self.sent[0]["headers"]
        assert isinstance(raw, list)
        return {name.decode(): value.decode() for name, value in raw}

    @property
    def body(self) -> bytes:
        body = self.sent[1]["body"]
        assert isinstance(body, bytes)
        return body


def unread() -> Callable[[int], bytes | None]:
    """A body no test may read: the request must be answered from its headers."""

    def chunk(index: int) -> bytes | None:
        raise AssertionError(f"the body was read (chunk {index})")

    return chunk


# -- the core through the ASGI app -------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_signed_delivery_in_chunks_is_accepted_and_its_callbacks_run() -> None:
    recorder = Recorder()
    receiver = recorder.receiver()
    body = inbound_connect()
    thirds = [body[: len(body) // 3], body[len(body) // 3 : -5], body[-5:]]
    request = await Request(thirds, signed(body)).run(receiver.asgi())
    assert (request.status, request.body, request.reads) == (200, b"", 3)
    assert request.headers["content-length"] == "0"
    assert "connection" not in request.headers
    await receiver.drain(timeout=5)
    assert [type(e) for e in recorder.events] == [CallConnectEvent]
    assert (receiver.stats["received"], receiver.stats["refused"]) == (1, 0)
    await receiver.close()


@pytest.mark.asyncio
async def test_a_wrong_shared_secret_is_a_401_before_a_byte_of_the_body_is_read() -> None:
    receiver = Recorder().receiver(secret_header=("X-Webhook-Secret", "shh"))
    request = await Request(unread(), {"X-Webhook-Secret": "wrong"}).run(receiver.asgi())
    assert (request.status, request.body, request.reads) == (401, b"unauthenticated", 0)
    assert request.headers["connection"] == "close"  # the rest of the body is not wanted
    assert receiver.stats["unauthenticated"] == 1
    # The right one, in another case than configured: names match whatever their case.
    body = inbound_connect()
    request = await Request([body], {"x-webhook-secret": "shh"}).run(receiver.asgi())
    assert request.status == 200
    await receiver.close()


@pytest.mark.asyncio
async def test_a_bad_signature_is_a_401_once_the_body_is_read() -> None:
    recorder = Recorder()
    receiver = recorder.receiver()
    body = inbound_connect()
    request = await Request([body], signed(body + b" ")).run(receiver.asgi())
    assert (request.status, request.reads) == (401, 1)
    assert "connection" not in request.headers  # read to its end: the connection may stay
    await receiver.drain(timeout=5)
    assert recorder.events == []
    await receiver.close()


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "x-gzip, identity"])
@pytest.mark.asyncio
async def test_a_compressed_body_is_a_415_unread(encoding: str) -> None:
    receiver = Recorder().receiver()
    body = gzip.compress(inbound_connect())
    headers = {**signed(body), "Content-Encoding": encoding}
    request = await Request(unread(), headers).run(receiver.asgi())
    assert (request.status, request.reads) == (415, 0)
    assert request.headers["connection"] == "close"
    assert receiver.stats["unsupported_encoding"] == 1
    await receiver.close()


@pytest.mark.asyncio
async def test_content_encoding_identity_is_accepted() -> None:
    receiver = Recorder().receiver()
    body = inbound_connect()
    headers = {**signed(body), "Content-Encoding": "identity"}
    assert (await Request([body], headers).run(receiver.asgi())).status == 200
    await receiver.close()


@pytest.mark.parametrize("length", ["2001", "9" * 5_000])
@pytest.mark.asyncio
async def test_a_declared_body_over_the_cap_is_a_413_unread(length: str) -> None:
    receiver = Recorder().receiver(max_body_bytes=2_000)
    request = await Request(unread(), {"Content-Length": length}).run(receiver.asgi())
    assert (request.status, request.reads) == (413, 0)
    assert request.headers["connection"] == "close"
    assert receiver.stats["too_large"] == 1
    await receiver.close()


@pytest.mark.asyncio
async def test_a_body_growing_past_the_cap_is_cut_off_at_the_chunk_that_passes_it() -> None:
    receiver = Recorder().receiver(max_body_bytes=2_000)

    def endless(index: int) -> bytes | None:  # chunked: no Content-Length, never ends
        assert index < 100, "still reading long past the cap"
        return b" " * 500

    request = await Request(endless).run(receiver.asgi())
    # Four chunks make 2,000 bytes, the fifth would pass the cap: it is refused, not kept.
    assert (request.status, request.reads) == (413, 5)
    assert request.headers["connection"] == "close"
    assert receiver.stats["too_large"] == 1
    await receiver.close()


@pytest.mark.parametrize("length", ["12a", "-1", " ", "1e3", "\u0661\u0662"])
@pytest.mark.asyncio
async def test_a_content_length_that_is_no_number_is_a_400_unread(length: str) -> None:
    receiver = Recorder().receiver()
    request = Request(unread())
    request.scope["headers"] = [(b"content-length", length.encode())]
    await request.run(receiver.asgi())
    assert (request.status, request.reads) == (400, 0)
    assert receiver.stats["invalid"] == 1
    await receiver.close()


@pytest.mark.asyncio
async def test_a_body_that_stops_arriving_is_a_408_and_the_read_is_cancelled() -> None:
    receiver = Recorder().receiver(body_timeout=0.05)
    body = inbound_connect()
    waiting: list[asyncio.Future[None]] = []
    request = Request(
        [body[:10]], {**signed(body), "Content-Length": str(len(body))}, disconnect=True
    )

    async def receive() -> Mapping[str, object]:
        if request.reads == 0:
            return await Request.receive(request)
        request.reads += 1
        forever = asyncio.get_running_loop().create_future()
        waiting.append(forever)
        await forever  # the rest never comes
        raise AssertionError("unreachable")

    await receiver.asgi()(request.scope, receive, request.send)
    assert (request.status, request.headers["connection"]) == (408, "close")
    assert receiver.stats["body_timeouts"] == 1
    assert [f.cancelled() for f in waiting] == [True]  # nothing left waiting for the body
    assert receiver._reading_bytes == 0  # its reading budget is given back
    await receiver.close()


@pytest.mark.asyncio
async def test_a_client_that_goes_away_mid_body_is_counted_and_nothing_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    receiver = recorder.receiver()
    body = inbound_connect()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        request = await Request([body[:10]], signed(body), disconnect=True).run(receiver.asgi())
    assert receiver.stats["disconnected"] == 1
    assert request.reads == 2
    await receiver.drain(timeout=5)
    assert recorder.events == []
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == [
        "webhook request dropped: the client disconnected before its body arrived "
        "(from 203.0.113.9)"
    ]
    await receiver.close()


@pytest.mark.asyncio
async def test_bodies_being_read_at_once_are_bounded_by_max_reading_bytes() -> None:
    receiver = Recorder().receiver(max_body_bytes=1_000, max_reading_bytes=2_500)
    app = receiver.asgi()
    release = asyncio.Event()
    body = connects(1, "wacid.R").ljust(1_000)

    async def slow(request: Request) -> None:
        async def receive() -> Mapping[str, object]:
            request.reads += 1
            if request.reads == 1:
                return {"type": "http.request", "body": body[:10], "more_body": True}
            await release.wait()
            return {"type": "http.request", "body": body[10:], "more_body": False}

        await app(request.scope, receive, request.send)

    held = [Request([], {**signed(body), "Content-Length": "1000"}) for _ in range(2)]
    tasks = [asyncio.create_task(slow(request)) for request in held]
    for _ in range(100):
        if all(request.reads == 2 for request in held):
            break
        await asyncio.sleep(0)
    assert [request.reads for request in held] == [2, 2]  # both are being read
    third = await Request(unread(), {"Content-Length": "1000"}).run(app)  # 3,000 > 2,500
    assert (third.status, third.headers["retry-after"]) == (503, str(RETRY_AFTER))
    chunked = await Request(unread()).run(app)  # counts as max_body_bytes
    assert chunked.status == 503
    assert receiver.stats["overloaded"] == 2
    release.set()
    await asyncio.gather(*tasks)
    assert [request.status for request in held] == [200, 200]
    later = connects(1, "wacid.V")
    assert (await Request([later], signed(later)).run(app)).status == 200  # given back
    await receiver.close()


@pytest.mark.asyncio
async def test_too_many_events_and_a_closed_receiver_answer_503_with_retry_after() -> None:
    receiver = Recorder().receiver(max_events_per_delivery=1)
    body, two = inbound_connect(), connects(2)
    request = await Request([two], signed(two)).run(receiver.asgi())
    assert (request.status, request.headers["retry-after"]) == (503, str(RETRY_AFTER))
    assert receiver.stats["too_many_events"] == 1
    await receiver.close()
    request = await Request(unread(), signed(body)).run(receiver.asgi())
    assert (request.status, request.headers["connection"]) == (503, "close")
    assert request.body == b"the receiver is shutting down"


# -- paths, methods, mounts ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_only_post_at_the_path_reaches_the_receiver() -> None:
    receiver = Recorder().receiver()
    app = receiver.asgi("/webhook")
    other = await Request(unread(), path="/webhooks").run(app)
    assert (other.status, other.body) == (404, b"not found")
    get = await Request(unread(), method="GET").run(app)
    assert (get.status, get.headers["allow"]) == (405, "POST")
    assert receiver.stats["received"] == 0  # the router's answers, as aiohttp's are
    await receiver.close()


@pytest.mark.parametrize(
    ("root_path", "path", "status"),
    [
        ("/hooks", "/hooks/webhook", 200),  # Starlette's Mount("/hooks")
        ("/hooks", "/webhook", 200),  # a server that leaves root_path out of path
        ("/hooks", "/hooks/other", 404),
        ("/hook", "/hooks/webhook", 404),  # a prefix of a segment is no mount point
        ("", "/webhook", 200),
    ],
)
@pytest.mark.asyncio
async def test_the_path_is_matched_below_the_mount_point(
    root_path: str, path: str, status: int
) -> None:
    receiver = Recorder().receiver()
    body = inbound_connect()
    request = await Request([body], signed(body), path=path, root_path=root_path).run(
        receiver.asgi("/webhook")
    )
    assert request.status == status
    await receiver.close()


@pytest.mark.asyncio
async def test_without_a_path_every_path_reaches_the_receiver() -> None:
    receiver = Recorder().receiver()
    body = inbound_connect()
    request = await Request([body], signed(body), path="/anything/at/all").run(receiver.asgi(None))
    assert request.status == 200
    await receiver.close()


# -- lifespan ------------------------------------------------------------------------------------


class SpyState(InMemoryState):
    def __init__(self, fail: Exception | None = None) -> None:
        super().__init__()
        self.fail = fail
        self.calls: list[str] = []

    async def start(self, listener: StateListener) -> None:
        self.calls.append("start")
        if self.fail is not None:
            raise self.fail
        await super().start(listener)

    async def close(self) -> None:
        self.calls.append("close")
        await super().close()


async def lifespan(app: WebhookASGIApp, *phases: str) -> list[MutableMapping[str, object]]:
    messages = [{"type": f"lifespan.{phase}"} for phase in phases]
    sent: list[MutableMapping[str, object]] = []

    async def receive() -> Mapping[str, object]:
        return messages.pop(0)

    async def send(message: MutableMapping[str, object]) -> None:
        sent.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    return sent


@pytest.mark.asyncio
async def test_the_lifespan_starts_the_receiver_and_closes_it() -> None:
    state = SpyState()
    receiver = WebhookReceiver(signing_secret=SECRET, state=state)
    sent = await lifespan(receiver.asgi(), "startup", "shutdown")
    assert [m["type"] for m in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert state.calls == ["start", "close"]
    body = inbound_connect()
    request = await Request(unread(), signed(body)).run(receiver.asgi())
    assert request.status == 503  # closed


@pytest.mark.asyncio
async def test_a_state_that_cannot_be_reached_fails_the_startup_with_its_reason() -> None:
    state = SpyState(fail=StateUnavailableError("Redis at redis://127.0.0.1:1 refused"))
    receiver = WebhookReceiver(signing_secret=SECRET, state=state)
    sent = await lifespan(receiver.asgi(), "startup")
    assert sent == [
        {
            "type": "lifespan.startup.failed",
            "message": "StateUnavailableError: Redis at redis://127.0.0.1:1 refused",
        }
    ]
    await receiver.close()


# -- the core on its own, and misuse -------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_core_takes_any_mapping_of_headers_and_bytes_or_chunks() -> None:
    recorder = Recorder()
    receiver = recorder.receiver(secret_header=("X-Secret", "shh"), max_body_bytes=5_000)
    body = inbound_connect()
    assert await receiver.receive({"x-secret": "shh"}, body) == WebhookReply(200)

    async def chunks() -> AsyncIterator[bytes]:
        yield inbound_connect("wacid.CHUNKED")

    assert (await receiver.receive({"X-SECRET": "shh"}, chunks())).status == 200
    big = await receiver.receive({"X-Secret": "shh"}, b" " * 5_001)  # bytes read already
    assert (big.status, big.close, dict(big.headers)) == (413, False, {})
    ended: list[str] = []

    async def endless() -> AsyncIterator[bytes]:
        try:
            for _ in range(100):
                yield b" " * 1_000
        finally:
            ended.append("closed")

    big = await receiver.receive({"X-Secret": "shh"}, endless())
    assert (big.status, big.close, ended) == (413, True, ["closed"])  # left at once
    refused = await receiver.receive({}, b"", remote="198.51.100.7")
    assert refused == WebhookReply(401, "unauthenticated", {"Connection": "close"}, close=True)
    assert refused.body == b"unauthenticated"
    await receiver.drain(timeout=5)
    assert len(recorder.events) == 2
    assert (receiver.stats["received"], receiver.stats["refused"]) == (5, 3)
    await receiver.close()


@pytest.mark.asyncio
async def test_misuse_is_a_typed_error() -> None:
    receiver = Recorder().receiver()
    with pytest.raises(InvalidRequestError, match="headers"):
        await receiver.receive(None, b"")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="body"):
        await receiver.receive({}, "text")  # type: ignore[arg-type]
    for path in ("webhook", "", 7):
        with pytest.raises(InvalidRequestError, match="path"):
            receiver.asgi(path)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="http"):
        await receiver.receive_asgi({"type": "websocket"}, Request([]).receive)
    with pytest.raises(ClientMisuseError, match="not 'telepathy'"):
        await receiver.asgi()({"type": "telepathy"}, Request([]).receive, Request([]).send)
    assert receiver.stats["received"] == 0
    await receiver.close()


@pytest.mark.asyncio
async def test_a_websocket_is_closed_at_once() -> None:
    receiver = Recorder().receiver()
    request = Request([])
    request.scope["type"] = "websocket"
    await request.run(receiver.asgi())
    assert request.sent == [{"type": "websocket.close", "code": 1000}]
    await receiver.close()


# -- under a real uvicorn ------------------------------------------------------------------------


@contextlib.contextmanager
def serving(app: Any, timeout: float = 10.0) -> Iterator[int]:
    """Serve the ASGI ``app`` with uvicorn on a free 127.0.0.1 port, in a thread; its port.
    Startup and shutdown are bounded (uvicorn runs the app's lifespan)."""
    uvicorn = pytest.importorskip("uvicorn")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(app, log_level="warning", ws="none", loop="asyncio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(int(timeout / 0.01)):
            if server.started or not thread.is_alive():
                break
            time.sleep(0.01)
        assert server.started, "uvicorn did not start"
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout + 30)  # the receiver's close() may take CLOSE_TIMEOUT
        sock.close()
    assert not thread.is_alive()


def post(
    port: int, body: bytes | Iterator[bytes], headers: Mapping[str, str], path: str = "/webhook"
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        chunked = not isinstance(body, bytes)
        connection.request("POST", path, body, dict(headers), encode_chunked=chunked)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def raw_answer(port: int, request: bytes, wait: float = 5.0) -> tuple[int, bytes]:
    """Send ``request`` as raw bytes; the status of the answer and everything that follows it
    until the server closes the connection (bounded by ``wait``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(request)
        received = b""
        for _ in range(1000):
            data = sock.recv(65536)
            if not data:
                break
            received += data
        return int(received.split()[1]), received


def test_under_uvicorn_a_delivery_runs_and_the_shutdown_closes_the_receiver() -> None:
    recorder = Recorder()
    state = SpyState()
    receiver = WebhookReceiver(on_event=recorder.on_event, signing_secret=SECRET, state=state)
    body = inbound_connect()
    with serving(receiver.asgi()) as port:
        assert state.calls == ["start"]  # on startup, not on the first delivery
        status, _, answer = post(port, body, signed(body))
        assert (status, answer) == (200, b"")
        status, _, answer = post(port, body, {})
        assert (status, answer) == (401, b"unauthenticated")
    assert state.calls == ["start", "close"]
    assert [type(e) for e in recorder.events] == [CallConnectEvent]
    assert (receiver.stats["received"], receiver.stats["unauthenticated"]) == (2, 1)


def test_under_uvicorn_an_unauthenticated_request_is_answered_before_its_body_arrives() -> None:
    receiver = Recorder().receiver(secret_header=("X-Secret", "shh"), body_timeout=30)
    with serving(receiver.asgi()) as port:
        # Headers that promise 1,000 bytes, and none of them: a 401 at once (not a 408 after
        # body_timeout), and the connection closed (the answer is all that comes).
        head = (
            b"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Secret: wrong\r\n"
            b"Content-Length: 1000\r\n\r\n"
        )
        started = time.monotonic()
        status, answer = raw_answer(port, head)
        assert time.monotonic() - started < 5  # loose: what matters is that it did not wait
        assert status == 401
        assert answer.endswith(b"\r\n\r\nunauthenticated")
    assert receiver.stats["unauthenticated"] == 1


def test_under_uvicorn_bodies_over_the_cap_and_compressed_ones_are_refused() -> None:
    receiver = Recorder().receiver(max_body_bytes=2_000)
    head = b"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    with serving(receiver.asgi()) as port:
        # Refused from the headers: answered, and the connection closed, with none of the
        # body sent.
        status, answer = raw_answer(port, head + b"Content-Length: 3000\r\n\r\n")
        assert status == 413
        assert b"\r\nconnection: close\r\n" in answer.lower()
        status, answer = raw_answer(
            port, head + b"Content-Length: 100\r\nContent-Encoding: gzip\r\n\r\n"
        )
        assert status == 415
        assert b"\r\nconnection: close\r\n" in answer.lower()
        # Chunked, so no length to refuse it by: cut off once it has passed the cap.
        chunk = b" " * 2_500
        status, _ = raw_answer(
            port,
            head + b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(chunk) + chunk,
        )
        assert status == 413
        small = inbound_connect()
        assert post(port, small, signed(small))[0] == 200  # the server is still fine
    assert (receiver.stats["too_large"], receiver.stats["unsupported_encoding"]) == (2, 1)


# -- framing that would slip past the bounds, and framework routes ------------------------------


@pytest.mark.asyncio
async def test_content_length_with_transfer_encoding_is_a_400_unread() -> None:
    # h11 (plain uvicorn, Hypercorn) lets the chunked framing win: a "Content-Length: 0"
    # would reserve nothing of max_reading_bytes while the body brought max_body_bytes.
    receiver = Recorder().receiver(max_body_bytes=1_000, max_reading_bytes=2_500)
    headers = {"Content-Length": "0", "Transfer-Encoding": "chunked"}
    answer = await Request(unread(), headers).run(receiver.asgi())
    assert answer.status == 400
    assert b"Content-Length and Transfer-Encoding" in answer.body
    await receiver.close()


@pytest.mark.asyncio
async def test_a_body_longer_than_its_content_length_is_refused_at_its_declared_length() -> None:
    recorder = Recorder()
    receiver = recorder.receiver(max_body_bytes=1_000)
    body = connects(1, "wacid.LONG")
    request = Request([body], {**signed(body), "Content-Length": "10"})
    answer = await request.run(receiver.asgi())
    assert answer.status == 413
    assert recorder.events == []
    await receiver.close()


@pytest.mark.asyncio
async def test_a_starlette_route_at_another_path_is_served_with_asgi_none() -> None:
    pytest.importorskip("starlette")
    from starlette.applications import Starlette
    from starlette.routing import Route

    recorder = Recorder()
    receiver = recorder.receiver()
    body = connects(1, "wacid.ROUTE")
    routed = Starlette(routes=[Route("/hooks/360", receiver.asgi(None), methods=["POST"])])
    answer = await Request([body], signed(body), path="/hooks/360").run(routed)  # type: ignore[arg-type]
    assert answer.status == 200
    assert await receiver.drain(5)
    assert len(recorder.events) == 1
    assert isinstance(recorder.events[0], CallConnectEvent)
    assert recorder.events[0].call_id.startswith("wacid.ROUTE")
    # With its own path left at /webhook, the 404 says how to fix it.
    strict = Starlette(routes=[Route("/hooks/360", receiver.asgi(), methods=["POST"])])
    again = await Request([body], signed(body), path="/hooks/360").run(strict)  # type: ignore[arg-type]
    assert again.status == 404
    assert b"receiver.asgi(None)" in again.body
    await receiver.close()
