"""The webhook receiver attacked as an internet-facing server (issue 13): empty secrets and no
auth, ids and bodies of any size, floods of events and callbacks, trickling bodies, replays,
hostile JSON and timestamps, headers with bytes that are not ASCII, hung callbacks, log
floods. All traffic on 127.0.0.1; loops bounded; the only real waits are the small timeouts
whose bound is what a test checks."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import time
import traceback
import tracemalloc
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import attrs
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.streams import StreamReader
from hypothesis import given
from hypothesis import strategies as st

import d360calling._converter
import d360calling._json
import d360calling.webhooks._parse
from d360calling import InvalidRequestError, WebhookParseError
from d360calling.testing import serve
from d360calling.webhooks import (
    MAX_ID_LENGTH,
    SIGNATURE_HEADER,
    CallConnectEvent,
    CallRecord,
    CallTerminateEvent,
    CallTracker,
    InMemoryCallStore,
    InMemoryDedupeMemory,
    PermissionReplyEvent,
    UnknownEvent,
    WebhookAuth,
    WebhookError,
    WebhookEvent,
    WebhookReceiver,
    parse_webhook,
    signature,
    verify_signature,
)
from d360calling.webhooks._receiver import CLOSE_TIMEOUT, RETRY_AFTER, _memory_key

from .test_webhooks import CONTACT, NOW, envelope, inbound_connect, permission_reply, terminate

SECRET = "s3cret-for-tests"
LOGGER = "d360calling.webhooks"


def connects(count: int, prefix: str = "wacid.C", **extra: Any) -> bytes:
    """One delivery with ``count`` connect events of distinct calls."""
    calls = [
        {"id": f"{prefix}{i}", "event": "connect", "timestamp": str(NOW), "from": "1", **extra}
        for i in range(count)
    ]
    return envelope("calls", {"calls": calls})


class Recorder:
    """Callbacks that record, and can be made to block until released."""

    def __init__(self) -> None:
        self.events: list[WebhookEvent] = []
        self.stale: list[tuple[WebhookEvent, str]] = []
        self.release = asyncio.Event()
        self.block = False
        self.cancelled = 0

    async def on_event(self, event: WebhookEvent) -> None:
        if self.block:
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        self.events.append(event)

    async def on_stale(self, event: WebhookEvent, reason: str) -> None:
        self.stale.append((event, reason))

    def receiver(self, **options: Any) -> WebhookReceiver:
        if "signing_secret" not in options and "secret_header" not in options:
            options.setdefault("insecure_no_auth", True)
        return WebhookReceiver(on_event=self.on_event, on_stale=self.on_stale, **options)


@pytest_asyncio.fixture
async def served() -> AsyncIterator[Callable[[WebhookReceiver], Any]]:
    runners: list[web.AppRunner] = []

    async def serve_receiver(receiver: WebhookReceiver) -> tuple[str, int]:
        runner, port = await serve(receiver.app())
        runners.append(runner)
        return f"http://127.0.0.1:{port}/webhook", port

    yield serve_receiver
    for runner in runners:
        await runner.cleanup()


async def post(
    url: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers or {}) as response,
    ):
        return response.status, dict(response.headers), await response.text()


async def raw_status(port: int, request: bytes, wait: float = 10.0) -> int:
    """Send ``request`` as raw bytes and read the status code of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), wait)
        return int(line.split()[1])
    finally:
        writer.close()


def http(body: bytes, *headers: bytes, length: int | None = None) -> bytes:
    head = [b"POST /webhook HTTP/1.1", b"Host: 127.0.0.1"]
    head.append(b"Content-Length: %d" % (len(body) if length is None else length))
    return b"\r\n".join([*head, *headers, b"", b""]) + body


# -- 1: no silent lack of authentication ------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [
        {"signing_secret": ""},
        {"signing_secret": b""},
        {"signing_secret": "   "},
        {"secret_header": ("X-Webhook-Secret", "")},
        {"secret_header": ("X-Webhook-Secret", " padded ")},
        {"secret_header": ("X-Webhook-Secret", "line\nbreak")},
        {"secret_header": ("X-Webhook-Secret", "caf\u00e9")},
        {"secret_header": ("", "value")},
        {"secret_header": ("X Webhook", "value")},
        {"secret_header": ("X-Webhook\r\n", "value")},
        {"secret_header": (SIGNATURE_HEADER, "value")},
        {"secret_header": ("X-Webhook-Secret",)},
        {},  # no authentication at all
        {"signing_secret": SECRET, "insecure_no_auth": True},  # contradictory
        {"insecure_no_auth": 1},
    ],
)
def test_a_receiver_that_would_let_anyone_in_is_refused_at_construction(
    auth: dict[str, Any],
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        WebhookReceiver(**auth)
    for value in auth.get("secret_header", ())[1:]:
        if value.strip():
            assert value not in str(caught.value)  # a secret is never repeated in an error


def test_an_empty_secret_is_refused_by_the_building_blocks_too() -> None:
    with pytest.raises(InvalidRequestError):
        verify_signature(b"{}", signature(b"", b"{}"), "")
    with pytest.raises(InvalidRequestError):
        WebhookAuth(header_name="X-Secret", header_value="")
    with pytest.raises(InvalidRequestError, match="both"):
        WebhookAuth(header_value="v")


@pytest.mark.asyncio
async def test_an_insecure_receiver_warns_once_when_it_serves(
    served: Any, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = WebhookReceiver(insecure_no_auth=True)
    url, _ = await served(receiver)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for _ in range(3):
            assert (await post(url, inbound_connect()))[0] == 200
    warnings = [r for r in caplog.records if "without authentication" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING


# -- 16: headers with bytes that are not ASCII ------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        SIGNATURE_HEADER.encode() + b": \xff\xfe" + b"a" * 62,
        SIGNATURE_HEADER.encode() + b": sha256=\xc3\xa9" + b"a" * 62,
        b"X-Secret: \xff\xfeshh",
        b"X-Secret: sh\xc3\xa9",
    ],
)
@pytest.mark.asyncio
async def test_a_header_that_is_not_ascii_is_a_401_not_a_500(served: Any, header: bytes) -> None:
    recorder = Recorder()
    receiver = recorder.receiver(signing_secret=SECRET, secret_header=("X-Secret", "shh"))
    _, port = await served(receiver)
    body = inbound_connect()
    good = [SIGNATURE_HEADER.encode() + b": " + signature(SECRET, body).encode(), b"X-Secret: shh"]
    others = [h for h in good if h.split(b":")[0] != header.split(b":")[0]]
    assert await raw_status(port, http(body, header, *others)) == 401
    assert await raw_status(port, http(body, *good)) == 200  # the same body, signed: accepted
    assert receiver.stats["unauthenticated"] == 1


def test_auth_checks_any_str_a_server_may_hand_over() -> None:
    body = b"{}"
    auth = WebhookAuth(signing_secret=SECRET, header_name="X-Secret", header_value="shh")
    good = signature(SECRET, body)
    for odd in ("\udcff" * 64, "\u00e9" * 64, "\ud800", good + "\udcff"):
        assert not auth.check({SIGNATURE_HEADER: odd, "X-Secret": "shh"}, body)
        assert not auth.check({SIGNATURE_HEADER: good, "X-Secret": odd}, body)
    assert auth.check({SIGNATURE_HEADER: good, "X-Secret": "shh"}, body)


# -- 2: memory bounded in bytes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (lambda long: inbound_connect(call_id=long), "calls[0].id"),
        (lambda long: inbound_connect(**{"from": long}), "calls[0].from"),
        (lambda long: terminate(status=long), "calls[0].status"),
        (lambda long: permission_reply({"response": "accept"}, {"id": long}), "context.id"),
        (
            lambda long: envelope(
                "calls",
                {"statuses": [{"id": "wacid.S", "status": "RINGING", "recipient_id": long}]},
            ),
            "statuses[0].recipient_id",
        ),
        (
            lambda long: envelope("calls", {"contacts": [{"wa_id": long}], "calls": []}),
            "contacts[0].wa_id",
        ),
    ],
)
def test_an_id_longer_than_any_real_one_refuses_the_body_naming_the_field(
    body: Callable[[str], bytes], field: str
) -> None:
    long = "wacid." + "x" * MAX_ID_LENGTH
    with pytest.raises(WebhookParseError) as caught:
        parse_webhook(body(long))
    assert f"{field} is longer than {MAX_ID_LENGTH} characters" in str(caught.value)
    assert long not in str(caught.value)
    parse_webhook(body(long[:MAX_ID_LENGTH]))  # at the limit: fine


@pytest.mark.asyncio
async def test_oversized_ids_never_enter_any_memory(served: Any) -> None:
    recorder = Recorder()
    store = InMemoryCallStore()
    dedupe = InMemoryDedupeMemory()
    receiver = recorder.receiver(tracker=CallTracker(store), dedupe=dedupe)
    url, _ = await served(receiver)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(40):  # 40 x 100 kB of ids, each would be kept three times before
            call_id = f"wacid.{i}" + "x" * 100_000
            status, _, text = await post(url, inbound_connect(call_id=call_id))
            assert (status, "calls[0].id is longer" in text) == (400, True)
        await receiver.drain()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert (len(store), len(dedupe), receiver.pending, recorder.events) == (0, 0, 0, [])
    assert grown < 1_000_000, grown  # 4 MB of ids went through; none of it stayed


def _record(i: int) -> CallRecord:
    """A record as large as a parsed webhook can make one."""
    long = "x" * MAX_ID_LENGTH
    error = WebhookError(code=1, message=long, title=long, href=long, error_data={"details": long})
    return CallRecord(
        call_id=f"{i:08d}" + long[8:],
        state="ended",
        direction=long,
        user=long,
        end_status=long,
        errors=(error,) * 4,
        biz_opaque_callback_data="y" * 512,
        events=tuple(f"status:{j}" + "z" * 64 for j in range(16)),
    )


@pytest.mark.asyncio
async def test_the_call_store_is_bounded_in_bytes_as_it_counts_them() -> None:
    store = InMemoryCallStore(max_bytes=2_000_000)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(2_000):
            await store.put(_record(i))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(store) < 2_000  # the byte budget, not the count, decided
    assert await store.get(_record(1_999).call_id) is not None  # the newest are kept
    assert await store.get(_record(0).call_id) is None
    assert store.bytes <= 2_000_000
    assert held < 2_000_000 * 1.25, held  # the accounting is about what is really held
    with pytest.raises(InvalidRequestError):
        InMemoryCallStore(max_bytes=0)


@pytest.mark.asyncio
async def test_a_record_keeps_bounded_data_whatever_its_events_carry() -> None:
    tracker = CallTracker()
    errors = tuple(WebhookError(code=10**30, message="m" * 10_000) for _ in range(50))
    statuses = [f"S{i}" for i in range(40)]
    for value in statuses:
        body = envelope(
            "calls", {"statuses": [{"id": "wacid.B", "status": value, "timestamp": NOW}]}
        )
        await tracker.apply(parse_webhook(body)[0])
    event = CallTerminateEvent(call_id="wacid.B", errors=errors, biz_opaque_callback_data="o" * 513)
    record = await tracker.apply(event)
    assert record is not None
    assert len(record.events) == 16
    assert len(record.errors) == 4
    assert all(len(e.message or "") == 256 and e.code is None for e in record.errors)
    assert record.biz_opaque_callback_data is None  # longer than the API's 512: not kept


# -- 3: caps on work --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_too_many_events_in_one_delivery_is_a_503_and_nothing_is_decoded_or_kept(
    served: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[object] = []
    real = d360calling._converter.decode

    def counting(cls: type[Any], raw: object) -> Any:
        decoded.append(raw)
        return real(cls, raw)

    monkeypatch.setattr(d360calling.webhooks._parse, "decode", counting)
    recorder = Recorder()
    memory = InMemoryDedupeMemory()
    receiver = recorder.receiver(max_events_per_delivery=100, dedupe=memory)
    url, _ = await served(receiver)
    calls = [{"id": f"c{i}", "event": "connect"} for i in range(30_000)]
    value = {"field": "calls", "value": {"calls": calls}}
    flood = json.dumps(
        {"object": "whatsapp_business_account", "entry": [{"changes": [value]}]},
        separators=(",", ":"),
    ).encode()
    assert len(flood) < 1024 * 1024  # under the body cap: the event cap is what answers
    status, headers, _ = await post(url, flood)
    assert (status, headers["Retry-After"]) == (503, str(RETRY_AFTER))
    assert (decoded, receiver.pending, len(memory)) == ([], 0, 0)
    assert (await post(url, connects(100)))[0] == 200
    await receiver.drain()
    assert len(recorder.events) == 100
    assert receiver.stats["too_many_events"] == 1


@pytest.mark.asyncio
async def test_pending_callbacks_at_their_cap_answer_503_and_the_redelivery_is_acted_on(
    served: Any,
) -> None:
    recorder = Recorder()
    recorder.block = True
    receiver = recorder.receiver(max_events_per_delivery=5, max_pending_callbacks=10)
    url, _ = await served(receiver)
    assert (await post(url, connects(5, "wacid.A")))[0] == 200
    assert (await post(url, connects(5, "wacid.B")))[0] == 200
    status, headers, _ = await post(url, connects(5, "wacid.C"))
    assert (status, headers["Retry-After"], receiver.pending) == (503, str(RETRY_AFTER), 10)
    recorder.release.set()
    await receiver.drain()
    assert (await post(url, connects(5, "wacid.C")))[0] == 200  # not taken for a duplicate
    await receiver.drain()
    assert len(recorder.events) == 15
    assert (receiver.stats["overloaded"], receiver.stats["duplicates"]) == (1, 0)


@pytest.mark.asyncio
async def test_pending_bytes_at_their_cap_answer_503(served: Any) -> None:
    recorder = Recorder()
    recorder.block = True
    body = connects(1, "wacid.A")
    receiver = recorder.receiver(max_body_bytes=len(body) * 2, max_pending_bytes=len(body) * 2)
    url, _ = await served(receiver)
    assert (await post(url, connects(1, "wacid.A")))[0] == 200
    assert (await post(url, connects(1, "wacid.B")))[0] == 200
    assert (await post(url, connects(1, "wacid.C")))[0] == 503
    recorder.release.set()
    await receiver.drain()
    assert (await post(url, connects(1, "wacid.C")))[0] == 200  # the bytes were given back


@pytest.mark.asyncio
async def test_a_body_over_the_cap_is_a_413_declared_or_chunked(served: Any) -> None:
    recorder = Recorder()
    receiver = recorder.receiver(max_body_bytes=2_000)
    url, _ = await served(receiver)
    big = connects(40)
    assert len(big) > 2_000
    assert (await post(url, big))[0] == 413

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 500):
            yield big[start : start + 500]

    async with aiohttp.ClientSession() as session, session.post(url, data=chunks()) as response:
        assert response.status == 413  # no Content-Length: counted while read
    assert (await post(url, connects(2)))[0] == 200
    assert receiver.stats["too_large"] == 2


@pytest.mark.asyncio
async def test_a_body_a_middleware_has_read_already_is_still_the_body() -> None:
    recorder = Recorder()
    receiver = recorder.receiver()

    @web.middleware
    async def reads_first(request: web.Request, handler: Any) -> web.StreamResponse:
        await request.read()  # e.g. a logging middleware
        response: web.StreamResponse = await handler(request)
        return response

    app = web.Application(middlewares=[reads_first])
    app.router.add_post("/webhook", receiver.handle)
    runner, port = await serve(app)
    try:
        assert (await post(f"http://127.0.0.1:{port}/webhook", inbound_connect()))[0] == 200
        await receiver.drain()
    finally:
        await runner.cleanup()
    assert [type(e) for e in recorder.events] == [CallConnectEvent]


# -- 4: a body that trickles in ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_body_that_never_finishes_is_cut_off_with_408(served: Any) -> None:
    receiver = Recorder().receiver(body_timeout=0.2)
    _, port = await served(receiver)
    started = time.monotonic()
    # Headers promise 1,000 bytes; ten arrive, then nothing.
    assert await raw_status(port, http(b'{"object":', length=1_000)) == 408
    assert time.monotonic() - started < 5  # loose: what matters is that it ends
    assert receiver.stats["body_timeouts"] == 1


# -- 9: replays, the pluggable dedupe memory, events without a timestamp ----------------------


@pytest.mark.asyncio
async def test_a_shared_dedupe_memory_stops_a_replay_after_a_restart(served: Any) -> None:
    memory = InMemoryDedupeMemory()  # stands in for Redis: it outlives the receiver
    first, second = Recorder(), Recorder()
    body = inbound_connect()
    headers = {SIGNATURE_HEADER: signature(SECRET, body)}
    for recorder in (first, second):
        receiver = recorder.receiver(signing_secret=SECRET, dedupe=memory)
        url, _ = await served(receiver)
        assert (await post(url, body, headers))[0] == 200
        await receiver.close()
    assert (len(first.events), len(second.events)) == (1, 0)
    assert len(memory) == 1


class FailingMemory(InMemoryDedupeMemory):
    def __init__(self, fail_on: int) -> None:
        super().__init__()
        self.calls = 0
        self.fail_on = fail_on

    async def first_time(self, key: str) -> bool:
        self.calls += 1
        if self.calls == self.fail_on:
            raise ConnectionError("redis went away")
        return await super().first_time(key)


@pytest.mark.asyncio
async def test_a_failing_dedupe_memory_refuses_the_delivery_and_takes_back_its_keys(
    served: Any,
) -> None:
    recorder = Recorder()
    memory = FailingMemory(fail_on=2)
    receiver = recorder.receiver(dedupe=memory)
    url, _ = await served(receiver)
    status, headers, _ = await post(url, connects(3))
    assert (status, headers["Retry-After"]) == (503, str(RETRY_AFTER))
    assert (len(memory), receiver.pending) == (0, 0)
    assert (await post(url, connects(3)))[0] == 200  # redelivered: every event acted on
    await receiver.drain()
    assert len(recorder.events) == 3


@pytest.mark.asyncio
async def test_an_event_that_always_has_a_timestamp_is_stale_without_one(served: Any) -> None:
    call = {"id": "wacid.NT", "event": "connect", "direction": "USER_INITIATED"}
    untimed = envelope("calls", {"calls": [call]})
    unknown = envelope("account_update", {"event": "ACCOUNT_VIOLATION"})
    old_unknown = envelope("account_update", {"event": "X", "timestamp": str(NOW - 3600)})
    recorder = Recorder()
    receiver = recorder.receiver()
    url, _ = await served(receiver)
    for body in (untimed, unknown, old_unknown):
        assert (await post(url, body))[0] == 200
    await receiver.drain()
    assert [type(e).__name__ for e in recorder.events] == ["UnknownEvent"]
    reasons = [reason for _, reason in recorder.stale]
    assert reasons[0] == "no timestamp, so its age cannot be checked"
    assert reasons[1].endswith("s old (max_age 300 s)")  # unmodelled, but timed: age-checked

    lenient = Recorder()
    receiver = lenient.receiver(allow_missing_timestamp=True)
    url, _ = await served(receiver)
    assert (await post(url, untimed))[0] == 200
    await receiver.drain()
    assert [type(e) for e in lenient.events] == [CallConnectEvent]


# -- 11: shutdown and hung callbacks ----------------------------------------------------------


@pytest.mark.asyncio
async def test_close_cancels_a_hung_callback_after_its_timeout(served: Any) -> None:
    recorder = Recorder()
    recorder.block = True
    receiver = recorder.receiver()
    url, _ = await served(receiver)
    assert (await post(url, inbound_connect()))[0] == 200
    assert await receiver.drain(timeout=0.05) is False  # waits, cancels nothing
    assert receiver.pending == 1
    await asyncio.wait_for(receiver.close(timeout=0.05), 5)
    assert (receiver.pending, recorder.cancelled, receiver.stats["cancelled"]) == (0, 1, 1)
    assert (await post(url, terminate()))[0] == 503  # closed: the sender delivers elsewhere


def test_the_app_cleanup_waits_a_finite_time() -> None:
    import inspect

    default = inspect.signature(WebhookReceiver.close).parameters["timeout"].default
    assert default == CLOSE_TIMEOUT
    assert 0 < CLOSE_TIMEOUT < 120


@pytest.mark.asyncio
async def test_a_hung_callback_is_cancelled_and_its_calls_later_events_run(
    served: Any, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    async def on_connect(event: CallConnectEvent) -> None:
        await asyncio.Event().wait()  # hangs forever

    async def on_terminate(event: CallTerminateEvent) -> None:
        seen.append(event.call_id)

    receiver = WebhookReceiver(
        on_connect=on_connect,
        on_terminate=on_terminate,
        insecure_no_auth=True,
        callback_timeout=0.05,
    )
    url, _ = await served(receiver)
    assert (await post(url, inbound_connect()))[0] == 200
    assert (await post(url, terminate()))[0] == 200
    assert await receiver.drain(timeout=5)
    assert seen == ["wacid.IN"]
    assert receiver.stats["callback_timeouts"] == 1
    assert "on_connect timed out after 0.05 s" in caplog.text


# -- 15, 14: hostile numbers and JSON -----------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        {"timestamp": "9" * 400},
        {"timestamp": 10**20},
        {"timestamp": "-1"},
        {"timestamp": 1e300},
    ],
)
@pytest.mark.asyncio
async def test_an_impossible_timestamp_is_a_400_and_is_not_remembered(
    served: Any, extra: dict[str, Any]
) -> None:
    recorder = Recorder()
    receiver = recorder.receiver()
    url, _ = await served(receiver)
    status, _, text = await post(url, inbound_connect(**extra))
    assert status == 400
    assert "calls[0].timestamp is out of range" in text
    assert (await post(url, inbound_connect()))[0] == 200  # the same event, readable: acted on
    await receiver.drain()
    assert len(recorder.events) == 1


def test_impossible_times_and_durations_are_refused_in_every_field() -> None:
    for extra in ({"start_time": "1" * 50}, {"end_time": -5}, {"duration": 10**15}):
        with pytest.raises(WebhookParseError, match="out of range"):
            parse_webhook(terminate(**extra))
    reply = {"response": "accept", "expiration_timestamp": "9" * 30}
    with pytest.raises(WebhookParseError, match="expiration_timestamp is out of range"):
        parse_webhook(permission_reply(reply))


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("stdlib", [False, True])
@pytest.mark.asyncio
async def test_deeply_nested_json_is_a_400_with_either_decoder(
    served: Any, monkeypatch: pytest.MonkeyPatch, stdlib: bool
) -> None:
    if stdlib:  # as on an install without orjson
        monkeypatch.setattr(d360calling._json, "loads", json.loads)
    receiver = Recorder().receiver()
    url, _ = await served(receiver)
    for body in (
        _nested(100_000),
        '{"object": "whatsapp_business_account", "entry": ' + _nested(50_000) + "}",
    ):
        assert (await post(url, body.encode()))[0] == 400
    assert receiver.stats["invalid"] == 2


def test_nesting_the_decoders_accept_still_parses_to_events() -> None:
    body = json.loads(inbound_connect())
    body["entry"][0]["changes"][0]["value"]["calls"][0]["session"] = json.loads(_nested(100))
    (event,) = parse_webhook(json.dumps(body))
    assert isinstance(event, UnknownEvent)  # the session cannot be read: kept raw
    assert _memory_key(event) is None or len(_memory_key(event) or "") < 100


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                ["id", "event", "timestamp", "calls", "statuses", "messages", "from", "x"]
            )
            | st.text(max_size=5),
            children,
            max_size=5,
        )
    ),
    max_leaves=30,
)


@given(
    st.one_of(
        JSON,
        JSON.map(lambda v: {"object": "whatsapp_business_account", "entry": v}),
        JSON.map(lambda v: {"object": "whatsapp_business_account", "entry": [{"changes": v}]}),
        st.tuples(st.sampled_from(["calls", "messages", "other", 3]), JSON).map(
            lambda fv: {
                "object": "whatsapp_business_account",
                "entry": [{"changes": [{"field": fv[0], "value": fv[1]}]}],
            }
        ),
        st.tuples(
            st.sampled_from(["calls", "statuses", "messages", "contacts", "errors"]), JSON
        ).map(
            lambda kv: json.loads(
                envelope("calls" if kv[0] != "messages" else "messages", {kv[0]: [kv[1]]})
            )
        ),
        st.fixed_dictionaries(  # a call event whose every field is any JSON
            {"event": st.sampled_from(["connect", "terminate"])},
            optional=dict.fromkeys(("id", "timestamp", "from", "status", "session"), JSON),
        ).map(lambda call: json.loads(envelope("calls", {"calls": [call], "errors": [call]}))),
        st.fixed_dictionaries(  # a permission reply whose every field is any JSON
            {"response": JSON},
            optional=dict.fromkeys(("expiration_timestamp", "is_permanent"), JSON),
        ).map(lambda reply: json.loads(permission_reply(reply, {"id": 5}))),
    )
)
def test_any_json_parses_to_events_or_a_typed_error(value: object) -> None:
    try:
        events = parse_webhook(json.dumps(value))
    except WebhookParseError:
        return
    for event in events:
        _memory_key(event)  # the receiver's key of every event can be made
        assert event.timestamp is None or 0 <= event.timestamp <= 253_402_300_799


# -- 18: dedupe keys that tell events apart ---------------------------------------------------


@pytest.mark.asyncio
async def test_permission_replies_without_a_message_id_are_not_taken_for_each_other(
    served: Any,
) -> None:
    def reply(user: str) -> bytes:
        body = json.loads(permission_reply({"response": "accept"}))
        message = body["entry"][0]["changes"][0]["value"]["messages"][0]
        del message["id"]
        message["from"] = user
        return json.dumps(body).encode()

    recorder = Recorder()
    receiver = recorder.receiver()
    url, _ = await served(receiver)
    for body in (reply("4915100000001"), reply("4915100000002"), reply("4915100000002")):
        assert (await post(url, body))[0] == 200
    await receiver.drain()
    users = [e.from_ for e in recorder.events if isinstance(e, PermissionReplyEvent)]
    assert users == ["4915100000001", "4915100000002"]  # both users; the redelivery dropped
    assert receiver.stats["duplicates"] == 1


@pytest.mark.asyncio
async def test_unmodelled_events_are_deduplicated_too(served: Any) -> None:
    text = {"from": "1", "id": "wamid.T", "timestamp": str(NOW), "type": "text", "text": {}}
    other = {**text, "id": "wamid.U"}
    recorder = Recorder()
    receiver = recorder.receiver()
    url, _ = await served(receiver)
    for message in (text, text, other):
        assert (await post(url, envelope("messages", {"messages": [message]})))[0] == 200
    await receiver.drain()
    raws = [e.raw for e in recorder.events if isinstance(e, UnknownEvent)]
    assert raws == [text, other]


def test_a_call_with_an_empty_id_is_not_a_call_event() -> None:
    for call_id in ("", "   "):
        (event,) = parse_webhook(inbound_connect(call_id=call_id))
        assert isinstance(event, UnknownEvent)
        assert event.problem == "the call id is empty"


# -- 21: caps that must be positive, and logs an attacker cannot flood ------------------------


@pytest.mark.parametrize(
    "option",
    [
        {"remember": 0},
        {"remember": -1},
        {"remember": True},
        {"max_body_bytes": 0},
        {"max_events_per_delivery": 0},
        {"max_pending_callbacks": -5},
        {"max_pending_bytes": 0},
        {"body_timeout": 0},
        {"body_timeout": float("inf")},
        {"callback_timeout": float("nan")},
        {"max_age": 0},
        {"max_age": -1.0},
        {"max_events_per_delivery": 20, "max_pending_callbacks": 10},
    ],
)
def test_caps_that_cannot_work_are_refused(option: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError):
        WebhookReceiver(insecure_no_auth=True, **option)
    with pytest.raises(InvalidRequestError):
        InMemoryDedupeMemory(0)


@pytest.mark.asyncio
async def test_refused_requests_cannot_flood_the_log(
    served: Any, caplog: pytest.LogCaptureFixture
) -> None:
    now = [1_000_000.0]
    receiver = WebhookReceiver(signing_secret=SECRET, clock=lambda: now[0])
    url, _ = await served(receiver)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for _ in range(50):
            assert (await post(url, b"{}"))[0] == 401
        now[0] += 61
        assert (await post(url, b"{}"))[0] == 401
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert warnings[1].endswith("(and 49 more like it since the last report)")
    assert (receiver.stats["unauthenticated"], receiver.stats["refused"]) == (51, 51)
    assert SECRET not in caplog.text


def test_an_event_with_a_contact_of_each_user_finds_its_own() -> None:
    # Contacts are matched by id without decoding them all (a cost a hostile body could set).
    second = {**CONTACT, "wa_id": "16315550000", "profile": {"name": "Bob"}}
    body = json.loads(inbound_connect())
    body["entry"][0]["changes"][0]["value"]["contacts"] = [second, *[{}] * 5_000, CONTACT]
    (event,) = parse_webhook(json.dumps(body))
    assert isinstance(event, CallConnectEvent)
    assert event.contact is not None
    assert event.contact.name == "Alice"


# -- the hardening's review: encodings, disconnects, the read budget, close mid-body, secrets --

RECEIVER_SECRET = "whsec-review-4e1f0b9a7c"  # distinctive: found only if it leaks


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Records at ERROR or above from any logger (aiohttp.server's tracebacks included)."""
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait (bounded, in small steps) for the server side to get to ``condition``."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        (b"gzip", b"not gzip at all!!"),
        (b"deflate", b"\x00\x01garbage"),
        (b"gzip", gzip.compress(connects(1))),  # a valid one is refused too, unread
        (b"x-gzip, identity", gzip.compress(connects(1))),
    ],
)
@pytest.mark.asyncio
async def test_a_compressed_body_is_a_415_unread_and_no_traceback_is_logged(
    served: Any, caplog: pytest.LogCaptureFixture, encoding: bytes, body: bytes
) -> None:
    recorder = Recorder()
    receiver = recorder.receiver(secret_header=("X-Secret", "shh"))
    _, port = await served(receiver)
    with caplog.at_level(logging.WARNING):
        status = await raw_status(
            port, http(body, b"X-Secret: shh", b"Content-Encoding: " + encoding)
        )
        await asyncio.sleep(0.05)  # aiohttp's handling after the response (where it logged)
    assert status == 415
    assert (receiver.stats["unsupported_encoding"], receiver.stats["refused"]) == (1, 1)
    assert errors_logged(caplog) == []
    assert recorder.events == []


@pytest.mark.asyncio
async def test_a_compressed_body_without_the_secret_is_a_401_and_no_traceback_is_logged(
    served: Any, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = Recorder().receiver(secret_header=("X-Secret", "shh"))
    _, port = await served(receiver)
    with caplog.at_level(logging.WARNING):
        status = await raw_status(port, http(b"garbage!", b"Content-Encoding: gzip"))
        await asyncio.sleep(0.05)
    assert status == 401
    assert errors_logged(caplog) == []


@pytest.mark.asyncio
async def test_content_encoding_identity_is_accepted(served: Any) -> None:
    recorder = Recorder()
    receiver = recorder.receiver()
    url, _ = await served(receiver)
    assert (await post(url, inbound_connect(), {"Content-Encoding": "identity"}))[0] == 200
    await receiver.drain()
    assert [type(e) for e in recorder.events] == [CallConnectEvent]


@pytest.mark.asyncio
async def test_a_client_that_disconnects_mid_body_is_counted_and_no_traceback_is_logged(
    served: Any, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = Recorder().receiver()
    _, port = await served(receiver)
    with caplog.at_level(logging.WARNING):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(http(b'{"object":', length=1_000))
        await writer.drain()
        await until(lambda: receiver.stats["received"] == 1, "the handler started")
        writer.transport.abort()
        await until(lambda: receiver.stats["disconnected"] == 1, "the disconnect was counted")
        await asyncio.sleep(0.05)
    assert receiver.stats["refused"] == 1
    assert errors_logged(caplog) == []
    warnings = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert warnings[-1:] == [
        "webhook request dropped: the client disconnected before its body arrived (from 127.0.0.1)"
    ]


@pytest.mark.asyncio
async def test_a_body_aiohttp_cannot_read_is_a_400() -> None:
    from unittest import mock

    from aiohttp.test_utils import make_mocked_request

    receiver = Recorder().receiver(secret_header=("X-Secret", "shh"))
    protocol = mock.Mock(_reading_paused=False)
    payload = StreamReader(protocol, 2**16, loop=asyncio.get_running_loop())
    payload.feed_data(b'{"object":')
    payload.set_exception(web.RequestPayloadError("Not enough data to satisfy content length"))
    request = make_mocked_request(
        "POST",
        "/webhook",
        headers={"X-Secret": "shh", "Content-Length": "100"},
        payload=payload,
    )
    response = await receiver.handle(request)
    assert response.status == 400
    assert receiver.stats["invalid"] == 1


@pytest.mark.asyncio
async def test_a_delivery_still_arriving_when_close_runs_is_refused_and_runs_nothing(
    served: Any,
) -> None:
    recorder = Recorder()
    receiver = recorder.receiver()
    _, port = await served(receiver)
    body = inbound_connect()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(http(body[:10], length=len(body)))
        await writer.drain()
        await until(lambda: receiver.stats["received"] == 1, "the handler started reading")
        await receiver.close(timeout=1)
        writer.write(body[10:])
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
    assert int(line.split()[1]) == 503
    await asyncio.sleep(0.05)
    assert (recorder.events, receiver.pending) == ([], 0)  # nothing runs after close()


@pytest.mark.asyncio
async def test_a_wrong_shared_secret_is_refused_before_the_body_is_read(served: Any) -> None:
    receiver = Recorder().receiver(secret_header=("X-Secret", "shh"), body_timeout=30)
    _, port = await served(receiver)
    # A promised body that never comes: a 401 at once, not a 408 after body_timeout.
    started = time.monotonic()
    assert await raw_status(port, http(b"", b"X-Secret: wrong", length=1_000), wait=5) == 401
    assert time.monotonic() - started < 5
    assert receiver.stats["unauthenticated"] == 1


def test_the_shared_secret_header_can_be_checked_from_the_headers_alone() -> None:
    auth = WebhookAuth(signing_secret=SECRET, header_name="X-Secret", header_value="shh")
    assert auth.check_header({"X-Secret": "shh"})
    assert not auth.check_header({"X-Secret": "shh!"})
    assert not auth.check_header({})
    assert WebhookAuth(signing_secret=SECRET).check_header({})  # nothing to check there
    assert not auth.check({"X-Secret": "shh"}, b"{}")  # the signature is still required


@pytest.mark.asyncio
async def test_bodies_being_read_at_once_are_bounded_by_max_reading_bytes(served: Any) -> None:
    recorder = Recorder()
    body = connects(1, "wacid.R").ljust(1_000)  # JSON with trailing spaces: 1,000 bytes
    receiver = recorder.receiver(max_body_bytes=1_000, max_reading_bytes=2_500)
    url, port = await served(receiver)
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for _ in range(2):  # two bodies of 1,000 declared bytes, arriving slowly
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(http(body[:10], length=len(body)))
            await writer.drain()
            held.append((reader, writer))
        await until(lambda: receiver.stats["received"] == 2, "both are being read")
        # A third body of 1,000 would exceed 2,500: refused unread, with a Retry-After.
        status, headers, _ = await post(url, connects(1, "wacid.T").ljust(1_000))
        assert (status, headers["Retry-After"]) == (503, str(RETRY_AFTER))
        assert receiver.stats["overloaded"] == 1

        # A chunked body counts as max_body_bytes: refused as well.
        async def chunks() -> AsyncIterator[bytes]:
            yield connects(1, "wacid.U")

        async with aiohttp.ClientSession() as session, session.post(url, data=chunks()) as r:
            assert r.status == 503
        reader, writer = held.pop()
        writer.write(body[10:])
        await writer.drain()
        assert int((await asyncio.wait_for(reader.readline(), 5)).split()[1]) == 200
        writer.close()
        # Its read over, its share is given back.
        assert (await post(url, connects(1, "wacid.V")))[0] == 200
    finally:
        for _, writer in held:
            writer.close()


@pytest.mark.parametrize(
    "option",
    [
        {"max_reading_bytes": 0},
        {"max_reading_bytes": True},
        {"max_reading_bytes": 1.5},
        {"max_body_bytes": 2_000, "max_reading_bytes": 1_000},
    ],
)
def test_a_reading_budget_that_cannot_work_is_refused(option: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError, match="max_reading_bytes"):
        WebhookReceiver(insecure_no_auth=True, **option)


def _receiver_locals_rendered(error: BaseException) -> str:
    return "".join(
        traceback.TracebackException(
            type(error), error, error.__traceback__, capture_locals=True
        ).format()
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda secret: {"signing_secret": secret, "max_age": -1},
        lambda secret: {"signing_secret": secret.encode(), "max_age": -1},
        lambda secret: {"secret_header": ("X-S", secret), "body_timeout": 0},
        lambda secret: {"secret_header": ("bad name", secret)},
        lambda secret: {"secret_header": ("X-S", secret, "extra")},
        lambda secret: {"signing_secret": secret, "insecure_no_auth": True},
    ],
)
def test_a_failing_constructor_shows_no_webhook_secret_in_its_traceback(
    make: Callable[[str], dict[str, Any]],
) -> None:
    # `make` builds the arguments in the call, so no local of this test holds the secret.
    with pytest.raises(InvalidRequestError) as info:
        WebhookReceiver(**make(RECEIVER_SECRET))
    rendered = _receiver_locals_rendered(info.value)
    assert "<redacted>" in rendered  # the locals were rendered, the secret hidden in them
    assert RECEIVER_SECRET not in rendered
    assert RECEIVER_SECRET not in f"{info.value} {info.value!r}"


def test_the_receivers_secrets_still_authenticate_as_given() -> None:
    body = b"{}"
    for secret in (RECEIVER_SECRET, RECEIVER_SECRET.encode()):
        receiver = WebhookReceiver(signing_secret=secret, secret_header=("X-S", "shh"))
        assert RECEIVER_SECRET not in repr(attrs.asdict(receiver.auth))
        good = {SIGNATURE_HEADER: signature(RECEIVER_SECRET, body), "X-S": "shh"}
        assert receiver.auth.check(good, body)
        assert not receiver.auth.check({**good, "X-S": "shh2"}, body)


@pytest.mark.asyncio
async def test_a_timed_out_callback_that_ignores_its_cancellation_still_counts_as_pending(
    served: Any,
) -> None:
    release = asyncio.Event()
    swallowed = 0

    async def stubborn(event: WebhookEvent) -> None:
        nonlocal swallowed
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                swallowed += 1  # and carries on

    receiver = WebhookReceiver(
        on_event=stubborn,
        insecure_no_auth=True,
        callback_timeout=0.05,
        max_pending_callbacks=1,
        max_events_per_delivery=1,
    )
    url, _ = await served(receiver)
    try:
        assert (await post(url, connects(1, "wacid.S")))[0] == 200
        await until(
            lambda: receiver.pending == 0 and swallowed == 1,
            "its task is done, its cancellation swallowed",
        )
        assert receiver.stats["callback_timeouts"] == 1
        assert (await post(url, connects(1, "wacid.T")))[0] == 503  # it still holds the slot
    finally:
        release.set()  # whatever happened, let it end
    assert await receiver.drain(timeout=5)
    assert (await post(url, connects(1, "wacid.U")))[0] == 200


@pytest.mark.asyncio
async def test_an_event_from_further_in_the_future_than_max_age_is_stale(served: Any) -> None:
    recorder = Recorder()
    receiver = recorder.receiver(clock=lambda: float(NOW), max_age=300)
    url, _ = await served(receiver)
    skewed = connects(1, "wacid.SKEW")  # 30 s ahead: a clock off by that much is acted on
    ahead = json.loads(skewed)
    ahead["entry"][0]["changes"][0]["value"]["calls"][0]["timestamp"] = str(NOW + 30)
    future = json.loads(skewed)
    future["entry"][0]["changes"][0]["value"]["calls"][0].update(
        id="wacid.FUTURE", timestamp=str(NOW + 301)
    )
    assert (await post(url, json.dumps(ahead).encode()))[0] == 200
    assert (await post(url, json.dumps(future).encode()))[0] == 200
    await receiver.drain()
    assert [getattr(e, "call_id", None) for e in recorder.events] == ["wacid.SKEW0"]
    ((_, reason),) = recorder.stale
    assert reason == "301 s in the future (more than max_age 300 s ahead)"


class CancellingMemory(InMemoryDedupeMemory):
    """A dedupe memory whose call is cancelled (as a Redis client's may be) on its nth key."""

    def __init__(self, cancel_on: int) -> None:
        super().__init__()
        self.calls = 0
        self.cancel_on = cancel_on

    async def first_time(self, key: str) -> bool:
        self.calls += 1
        if self.calls == self.cancel_on:
            raise asyncio.CancelledError
        return await super().first_time(key)


@pytest.mark.asyncio
async def test_a_cancelled_dedupe_call_gives_back_the_deliverys_bytes_and_keys(
    served: Any,
) -> None:
    recorder = Recorder()
    memory = CancellingMemory(cancel_on=2)
    body = connects(2, "wacid.D")
    receiver = recorder.receiver(
        dedupe=memory, max_body_bytes=len(body), max_pending_bytes=len(body)
    )
    url, _ = await served(receiver)
    status, headers, _ = await post(url, body)
    assert (status, headers["Retry-After"]) == (503, str(RETRY_AFTER))
    assert len(memory) == 0  # the first key, recorded before the cancel, taken back
    # The bytes were given back, so the redelivery fits, and both its events are new.
    assert (await post(url, body))[0] == 200
    await receiver.drain()
    assert len(recorder.events) == 2


@pytest.mark.asyncio
async def test_a_callback_that_ignores_the_cancellation_of_close_is_still_tracked(
    served: Any,
) -> None:
    release = asyncio.Event()

    async def stubborn(event: WebhookEvent) -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):  # and carries on
                await release.wait()

    receiver = WebhookReceiver(on_event=stubborn, insecure_no_auth=True, callback_timeout=60)
    url, _ = await served(receiver)
    try:
        assert (await post(url, connects(1, "wacid.S")))[0] == 200
        await until(lambda: receiver.pending == 1, "the callback is running")
        await receiver.close(timeout=0.01)  # cancels it; it does not stop
        assert receiver.pending == 0  # its task is gone...
        assert await receiver.drain(timeout=0.01) is False  # ...but the callback is known
    finally:
        release.set()
    assert await receiver.drain(timeout=5)
