"""``d360calling.fleet.RedisState`` against a real Redis, one state per "worker" (the same URL
and prefix): claims are won once fleet-wide, record updates lose nothing and give the same
record whatever the order, a claim cancelled in flight is taken back (only what it won), the
hot path's round trips, prefixes that isolate fleets, and bad arguments. The receivers served
on loopback are in ``tests/test_fleet_receiver.py``, which uses the builders here.

Every wait on something in the background is a bounded poll or ``asyncio.wait_for`` with a
generous timeout; nothing sleeps to test a delay."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import attrs
import pytest
import pytest_asyncio

from .redis_server import NO_REDIS_PY

redis = pytest.importorskip("redis", reason=NO_REDIS_PY)

from d360calling.errors import InvalidRequestError  # noqa: E402
from d360calling.fleet import RedisState  # noqa: E402
from d360calling.fleet._codec import decode_record, encode_record  # noqa: E402
from d360calling.models.webhooks import (  # noqa: E402
    CallConnectEvent,
    CallStatusEvent,
    CallTerminateEvent,
)
from d360calling.webhooks import CallRecord, WebhookReceiver, parse_webhook  # noqa: E402
from d360calling.webhooks._receiver import _claim  # noqa: E402
from d360calling.webhooks._state import EventClaim  # noqa: E402
from d360calling.webhooks._tracker import CallTracker  # noqa: E402

BUSINESS = "16315553601"
USER = "16315553602"
META = {"display_phone_number": BUSINESS, "phone_number_id": "1234"}
T0 = 1_700_000_000  # for records folded without a receiver (no max_age there)
QUIET: dict[str, Any] = {"heartbeat_interval": 3600.0, "worker_timeout": 7200.0}
"""No heartbeat (and no search for dead workers) fires during a test: takeovers are called."""

CallEvent = CallConnectEvent | CallStatusEvent | CallTerminateEvent


# -- webhook bodies ---------------------------------------------------------------------------


def now() -> int:
    return int(time.time())


def envelope(field: str, value: dict[str, Any]) -> bytes:
    change = {"field": field, "value": {"messaging_product": "whatsapp", "metadata": META, **value}}
    body = {"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [change]}]}
    return json.dumps(body).encode()


def inbound_connect(call_id: str, ts: int | None = None) -> bytes:
    call = {
        "id": call_id,
        "from": USER,
        "to": BUSINESS,
        "event": "connect",
        "timestamp": str(now() if ts is None else ts),
        "direction": "USER_INITIATED",
        "session": {"sdp_type": "offer", "sdp": "v=0\r\n"},
    }
    return envelope("calls", {"calls": [call]})


def inbound_terminate(call_id: str, ts: int | None = None) -> bytes:
    call = {
        "id": call_id,
        "from": USER,
        "to": BUSINESS,
        "event": "terminate",
        "timestamp": str(now() if ts is None else ts),
        "direction": "USER_INITIATED",
        "status": "COMPLETED",
    }
    return envelope("calls", {"calls": [call]})


def outbound_status(call_id: str, status: str, ts: int | None = None) -> bytes:
    item = {
        "id": call_id,
        "timestamp": str(now() if ts is None else ts),
        "type": "call",
        "status": status,
        "recipient_id": USER,
    }
    return envelope("calls", {"statuses": [item]})


def outbound_connect(call_id: str, ts: int | None = None) -> bytes:
    call = {
        "id": call_id,
        "from": BUSINESS,
        "to": USER,
        "event": "connect",
        "timestamp": str(now() if ts is None else ts),
        "direction": "BUSINESS_INITIATED",
        "session": {"sdp_type": "answer", "sdp": "v=0\r\n"},
        "biz_opaque_callback_data": "order-7",
    }
    return envelope("calls", {"calls": [call]})


def outbound_terminate(
    call_id: str,
    ts: int,
    *,
    start: int | None = None,
    duration: int | None = None,
    status: str = "COMPLETED",
    errors: Sequence[dict[str, Any]] = (),
) -> bytes:
    call: dict[str, Any] = {
        "id": call_id,
        "from": BUSINESS,
        "to": USER,
        "event": "terminate",
        "timestamp": str(ts),
        "direction": "BUSINESS_INITIATED",
        "status": status,
    }
    if start is not None:
        call.update(start_time=str(start), end_time=str(ts), duration=duration)
    if errors:
        call["errors"] = list(errors)
    return envelope("calls", {"calls": [call]})


def permission_reply(
    message_id: str = "wamid.REPLY-1",
    context: str | None = "wamid.REQUEST-1",
    *,
    user: str = USER,
    response: str = "accept",
) -> bytes:
    item: dict[str, Any] = {
        "from": user,
        "id": message_id,
        "timestamp": str(now()),
        "type": "interactive",
        "interactive": {
            "type": "call_permission_reply",
            "call_permission_reply": {
                "response": response,
                "is_permanent": False,
                "expiration_timestamp": str(now() + 7 * 86_400),
                "response_source": "user_action",
            },
        },
    }
    if context is not None:
        item["context"] = {"id": context}
    return envelope("messages", {"messages": [item]})


def failed_status(message_id: str) -> bytes:
    item = {
        "id": message_id,
        "status": "failed",
        "timestamp": str(now()),
        "recipient_id": USER,
        "errors": [{"code": 131026, "title": "Message undeliverable"}],
    }
    return envelope("messages", {"statuses": [item]})


def call_event(body: bytes) -> CallEvent:
    (event,) = parse_webhook(body)
    assert isinstance(event, (CallConnectEvent, CallStatusEvent, CallTerminateEvent))
    return event


def claims_of(body: bytes) -> list[EventClaim]:
    """The claims a receiver makes for ``body``'s events."""
    return [_claim(event, index, len(body)) for index, event in enumerate(parse_webhook(body))]


def lifecycle(call_id: str) -> list[CallEvent]:
    """A business-initiated call answered after 5 s and hung up after 60: the connect and the
    ACCEPTED status at the same second, the terminate's start_time that second too (as the
    fake and the real API stamp them)."""
    return [
        call_event(outbound_status(call_id, "RINGING", T0)),
        call_event(outbound_status(call_id, "ACCEPTED", T0 + 5)),
        call_event(outbound_connect(call_id, T0 + 5)),
        call_event(outbound_terminate(call_id, T0 + 65, start=T0 + 5, duration=60)),
    ]


async def folded(events: Sequence[CallEvent]) -> CallRecord:
    """The record one process (the in-memory tracker) makes of ``events`` in this order."""
    tracker = CallTracker()
    record = None
    for event in events:
        record = await tracker.apply(event)
    assert record is not None
    return record


# -- states on the test's Redis ---------------------------------------------------------------


class Listener:
    """What a state calls back: payloads heard and work recovered, kept for the test."""

    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self.taken: list[tuple[str, bytes]] = []

    def heard(self, payload: bytes) -> None:
        self.payloads.append(payload)

    def recovered(self, payloads: Sequence[tuple[str, bytes]]) -> None:
        self.taken.extend(payloads)


MakeState = Callable[..., Awaitable[RedisState]]


@pytest_asyncio.fixture
async def make_state(redis_url: str) -> AsyncIterator[MakeState]:
    """Started ``RedisState``s on the test's Redis (closed at the end)."""
    made: list[RedisState] = []

    async def make(**options: Any) -> RedisState:
        for name, value in QUIET.items():
            options.setdefault(name, value)
        state = RedisState(options.pop("url", redis_url), **options)
        await state.start(Listener())
        made.append(state)
        return state

    yield make
    for state in made:
        await state.close()


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` (a check of something in the background) for up to ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"not true within {timeout} s")
        await asyncio.sleep(0.01)


def plain(record: CallRecord | None) -> CallRecord:
    """``record`` without its call id, to compare records of different calls."""
    assert record is not None
    return attrs.evolve(record, call_id="-")


# -- claims -----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_of_two_workers_claiming_one_key_at_once_exactly_one_acts(
    make_state: MakeState, raw: Any
) -> None:
    a = await make_state(worker="worker-a")
    b = await make_state(worker="worker-b")
    assert a.worker.startswith("worker-a-")
    assert b.worker.startswith("worker-b-")
    wins = {a.worker: 0, b.worker: 0}
    for round_ in range(200):
        claim = EventClaim(key=f"call_connect:{round_}", work=f"call_connect:{round_}", index=0)
        first, second = (a, b) if round_ % 2 else (b, a)
        got_first, got_second = await asyncio.gather(
            first.claim(b"body", [claim]), second.claim(b"body", [claim])
        )
        assert sorted([got_first, got_second]) == [[False], [True]], round_
        winner = first if got_first == [True] else second
        wins[winner.worker] += 1
        # The winner holds the claim (its attempt's token) and it is its work; the loser
        # recorded nothing.
        assert raw.get(f"d360calling:v1:d:{claim.key}").startswith(f"{winner.worker}|".encode())
        loser = b if winner is a else a
        assert raw.hexists(f"d360calling:v1:w:{loser.worker}", claim.work) == 0
        assert raw.hget(f"d360calling:v1:w:{winner.worker}", claim.work) == (
            f"{winner.worker}\n0\nbody".encode()
        )
    assert sum(wins.values()) == 200
    assert min(wins.values()) > 0


@pytest.mark.asyncio
async def test_overlapping_deliveries_claimed_at_once_give_each_event_to_one_worker(
    make_state: MakeState,
) -> None:
    a = await make_state()
    b = await make_state()
    for round_ in range(50):
        keys = [f"k:{round_}:{i}" for i in range(4)]
        mine = [EventClaim(key=key, work=key, index=i) for i, key in enumerate(keys[:3])]
        theirs = [EventClaim(key=key, work=key, index=i) for i, key in enumerate(keys[1:])]
        got_a, got_b = await asyncio.gather(a.claim(b"a", mine), b.claim(b"b", theirs))
        by_key: dict[str, int] = {}
        for claim, won in [*zip(mine, got_a, strict=True), *zip(theirs, got_b, strict=True)]:
            by_key[claim.key or ""] = by_key.get(claim.key or "", 0) + won
        assert by_key == dict.fromkeys(keys, 1), round_
        # One atomic step per delivery: one of the two got both shared events.
        assert got_a[1:] == [True, True] or got_b[:2] == [True, True]


@pytest.mark.asyncio
async def test_an_event_without_a_key_is_always_fresh(make_state: MakeState) -> None:
    a = await make_state()
    b = await make_state()
    claim = EventClaim(key=None, work="nokey:1", index=0)
    assert await a.claim(b"x", [claim]) == [True]
    assert await b.claim(b"x", [claim]) == [True]


# -- record updates ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_two_workers_updating_one_call_at_once_lose_no_update(make_state: MakeState) -> None:
    a = await make_state()
    b = await make_state()
    reader = await make_state()
    conflicts = 0
    for round_ in range(60):
        call_id = f"wacid.RACE-{round_}"
        accepted = call_event(outbound_status(call_id, "ACCEPTED", T0 + 5))
        ended = call_event(outbound_terminate(call_id, T0 + 65, start=T0 + 5, duration=60))
        warm = round_ % 3 == 0
        if warm:  # caches warmed, as the claims would: both think there is none
            await asyncio.gather(a.record(call_id), b.record(call_id))
        first, second = (a, b) if round_ % 2 else (b, a)
        trips = a.round_trips + b.round_trips
        (before_1, after_1), (before_2, after_2) = await asyncio.gather(
            first.apply(accepted), second.apply(ended)
        )
        # Without a conflict: one compare-and-set each (and a read each when cold).
        conflicts += a.round_trips + b.round_trips - trips - (2 if warm else 4)
        record = await reader.record(call_id)
        assert record == await folded([accepted, ended]), round_
        assert record is not None
        assert (record.state, record.events) == ("ended", ("status:ACCEPTED", "terminate"))
        assert (record.answered_at, record.ended_at, record.duration) == (T0 + 5, T0 + 65, 60)
        # One applied first (and saw no record), the other folded into what the first wrote.
        befores = sorted([before_1, before_2], key=lambda r: r is not None)
        assert befores[0] is None
        assert befores[1] is not None
        assert len(befores[1].events) == 1
        assert record in (after_1, after_2)
    assert conflicts > 0  # the refused compare-and-set and its second fold did happen


@pytest.mark.asyncio
async def test_a_stale_cache_is_caught_by_compare_and_set_and_folded_again(
    make_state: MakeState, raw: Any
) -> None:
    a = await make_state()
    b = await make_state()
    call_id = "wacid.STALE-CACHE"
    assert await a.record(call_id) is None  # a caches "no record, version 0"
    await b.apply(call_event(outbound_status(call_id, "ACCEPTED", T0 + 5)))
    written_by_b = raw.hget(f"d360calling:v1:r:{call_id}", "ver")
    trips = a.round_trips
    before, after = await a.apply(call_event(outbound_terminate(call_id, T0 + 65, start=T0 + 5)))
    # The first compare-and-set (against version 0) is refused and answers b's version; the
    # second, against it, is the one that lands: two round trips, no read in between.
    assert a.round_trips - trips == 2
    assert before is not None
    assert before.events == ("status:ACCEPTED",)
    assert after.events == ("status:ACCEPTED", "terminate")
    assert (after.state, after.answered_at) == ("ended", T0 + 5)
    assert await b.record(call_id) == after
    # Versions are random tokens: each write a new one, which the writer caches.
    version = raw.hget(f"d360calling:v1:r:{call_id}", "ver")
    assert re.fullmatch(rb"[0-9a-f]{16}", version)
    assert version not in (written_by_b, b"0")
    assert a._records[call_id][0] == version.decode()


@pytest.mark.asyncio
async def test_a_record_is_the_same_whatever_the_order_and_the_workers(
    make_state: MakeState,
) -> None:
    workers = [await make_state(), await make_state(), await make_state()]
    reader = await make_state()
    expected = plain(await folded(lifecycle("wacid.ORDER")))
    assert expected.events == ("connect", "status:RINGING", "status:ACCEPTED", "terminate")
    assert (expected.state, expected.direction) == ("ended", "BUSINESS_INITIATED")
    assert (expected.started_at, expected.answered_at, expected.ended_at) == (
        T0 + 5,
        T0 + 5,
        T0 + 65,
    )
    for number, order in enumerate(itertools.permutations(range(4))):
        call_id = f"wacid.ORDER-{number}"
        events = lifecycle(call_id)
        for position, index in enumerate(order):  # each event at another worker
            await workers[(number + position) % len(workers)].apply(events[index])
        assert plain(await reader.record(call_id)) == expected, order


@pytest.mark.asyncio
async def test_answered_at_is_the_same_whatever_the_order_when_the_stamps_differ() -> None:
    events = [
        call_event(outbound_status("wacid.SKEW", "RINGING", T0)),
        call_event(outbound_status("wacid.SKEW", "ACCEPTED", T0 + 5)),
        call_event(outbound_connect("wacid.SKEW", T0 + 6)),
        call_event(outbound_terminate("wacid.SKEW", T0 + 65, start=T0 + 6, duration=59)),
    ]
    records = {
        await folded([events[i] for i in order]) for order in itertools.permutations(range(4))
    }
    assert len(records) == 1


@pytest.mark.asyncio
async def test_a_failed_call_record_with_errors_reads_back_equal_at_another_worker(
    make_state: MakeState,
) -> None:
    a = await make_state()
    b = await make_state()
    errors = [
        {"code": 138021, "title": "No media", "message": "m" * 300, "error_data": {"details": "x"}},
        {"code": 131000, "title": "Something"},
    ]
    events = [
        call_event(outbound_status("wacid.FAILED", "RINGING", T0)),
        call_event(outbound_terminate("wacid.FAILED", T0 + 3, status="FAILED", errors=errors)),
    ]
    await a.apply(events[0])
    _, after = await b.apply(events[1])
    assert after == await folded(events)
    assert [error.code for error in after.errors] == [138021, 131000]
    assert after.errors[0].details == "x"
    assert await a.record("wacid.FAILED") == after
    assert decode_record(encode_record(after), "wacid.FAILED") == after


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        b'{"v": 2, "call_id": "wacid.C", "state": "ended"}',  # another format
        b'{"v": 1, "call_id": "wacid.OTHER", "state": "ended"}',  # another call's
        b'{"v": 1, "call_id": "wacid.C", "state": "flying"}',
        b'{"v": 1, "call_id": "wacid.C", "state": "ended", "started_at": "1"}',
        b'{"v": 1, "call_id": "wacid.C", "state": "ended", "started_at": true}',
        b'{"v": 1, "call_id": "wacid.C", "state": "ended", "events": [1]}',
        b'{"v": 1, "call_id": "wacid.C", "state": "ended", "errors": [{"code": "1"}]}',
        b'{"v": 1, "call_id": "wacid.C", "state": "ended", "errors": {}}',
        b"\xff\xfe",
        b"[" * 100_000,
    ],
)
def test_a_value_that_is_not_a_record_of_ours_decodes_as_none(data: bytes) -> None:
    assert decode_record(data, "wacid.C") is None


# -- cancellation -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_claim_cancelled_in_flight_is_taken_back_so_the_redelivery_is_acted_on(
    make_state: MakeState, raw: Any
) -> None:
    a = await make_state(worker="worker-a")
    b = await make_state(worker="worker-b")
    body = inbound_connect("wacid.CANCEL")
    (claim,) = claims_of(body)
    key = f"d360calling:v1:d:{claim.key}"
    claiming = asyncio.ensure_future(a.claim(body, [claim]))
    await asyncio.sleep(0)  # the claim is out (shielded: Redis runs it) and its caller waits
    assert not claiming.done()
    claiming.cancel()
    with pytest.raises(asyncio.CancelledError):
        await claiming
    # The script ran and claimed the key; the cancelled claim takes it back.
    await until(lambda: raw.exists(key) == 0 and raw.hlen(f"d360calling:v1:w:{a.worker}") == 0)
    assert await b.claim(body, [claim]) == [True]  # the redelivery, wherever it lands
    assert raw.get(key).startswith(f"{b.worker}|".encode())


@pytest.mark.asyncio
async def test_a_cancelled_claim_takes_back_only_what_it_won(
    make_state: MakeState, raw: Any
) -> None:
    a = await make_state(worker="worker-a")
    b = await make_state(worker="worker-b")
    first = inbound_connect("wacid.KEEP")
    (kept,) = claims_of(first)
    assert await a.claim(first, [kept]) == [True]  # acted on by worker-a: its work
    second = inbound_terminate("wacid.NEW")
    (new,) = claims_of(second)
    # One delivery with the duplicate of the first event and a new one, cancelled in flight.
    claiming = asyncio.ensure_future(a.claim(second, [kept, new]))
    await asyncio.sleep(0)
    claiming.cancel()
    with pytest.raises(asyncio.CancelledError):
        await claiming
    new_key = f"d360calling:v1:d:{new.key}"
    await until(lambda: raw.exists(new_key) == 0)  # what it won is taken back...
    # ...and the duplicate's key and its work stay: the original is not acted on again, and
    # is taken over if worker-a dies before finishing it.
    assert raw.get(f"d360calling:v1:d:{kept.key}").startswith(f"{a.worker}|".encode())
    assert raw.hexists(f"d360calling:v1:w:{a.worker}", kept.work) == 1
    assert await b.claim(first, [kept]) == [False]
    assert await b.claim(second, [new]) == [True]


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_hot_path_is_one_round_trip_to_claim_and_one_to_apply(
    make_state: MakeState,
) -> None:
    state = await make_state()
    for call_id in ("wacid.RT-1", "wacid.RT-2"):  # the first loads the scripts (one call each)
        for body in (inbound_connect(call_id), inbound_terminate(call_id)):
            trips = state.round_trips
            assert await state.claim(body, claims_of(body)) == [True]
            assert state.round_trips - trips == 1
            trips = state.round_trips
            await state.apply(call_event(body))  # the claim read the record: no read here
            assert state.round_trips - trips == 1
    record = await state.record("wacid.RT-2")
    assert record is not None
    assert record.events == ("connect", "terminate")


# -- prefixes ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_prefix_isolates_a_fleet_on_a_shared_redis(make_state: MakeState, raw: Any) -> None:
    one = await make_state(prefix="fleet-one")
    two = await make_state(prefix="fleet.two:x")
    body = inbound_connect("wacid.SHARED")
    claims = claims_of(body)
    assert await one.claim(body, claims) == [True]
    assert await two.claim(body, claims) == [True]  # another fleet: its own claims
    assert await one.claim(body, claims) == [False]
    await one.apply(call_event(body))
    assert await two.record("wacid.SHARED") is None
    assert await one.record("wacid.SHARED") is not None
    raw.set("unrelated", "1")  # a shared Redis's other keys are left alone
    keys = {key.decode() for key in raw.scan_iter()}
    assert "unrelated" in keys
    keys.discard("unrelated")
    assert keys
    assert all(key.startswith(("fleet-one:v1:", "fleet.two:x:v1:")) for key in keys), keys
    assert raw.get("unrelated") == b"1"


# -- bad arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "options"),
    [
        (("http://127.0.0.1:6379",), {}),
        (("127.0.0.1:6379",), {}),
        ((b"redis://127.0.0.1",), {}),
        ((), {}),  # neither url nor client
        (("redis://127.0.0.1",), {"client": object()}),  # both
        (("redis://127.0.0.1",), {"prefix": ""}),
        (("redis://127.0.0.1",), {"prefix": "has space"}),
        (("redis://127.0.0.1",), {"prefix": "x" * 65}),
        (("redis://127.0.0.1",), {"prefix": "{slot}"}),
        (("redis://127.0.0.1",), {"prefix": 7}),
        *(
            (("redis://127.0.0.1",), {name: value})
            for name in ("dedupe_ttl", "record_ttl", "kept_ttl", "finish_delay", "socket_timeout")
            for value in (0, -1, math.nan, math.inf, True, "5", None)
        ),
        (("redis://127.0.0.1",), {"heartbeat_interval": 0}),
        (("redis://127.0.0.1",), {"heartbeat_interval": False}),
        (("redis://127.0.0.1",), {"worker_timeout": -3}),
        (("redis://127.0.0.1",), {"dedupe_ttl": 366 * 86_400}),
        (("redis://127.0.0.1",), {"heartbeat_interval": 5, "worker_timeout": 9.99}),
        (("redis://127.0.0.1",), {"heartbeat_interval": 10, "worker_timeout": 10}),
        (("redis://127.0.0.1",), {"kept_max": 0}),
        (("redis://127.0.0.1",), {"kept_max": 1001}),
        (("redis://127.0.0.1",), {"kept_max": True}),
        (("redis://127.0.0.1",), {"kept_max": 2.0}),
        (("redis://127.0.0.1",), {"worker": ""}),
        (("redis://127.0.0.1",), {"worker": "a:b"}),
        (("redis://127.0.0.1",), {"worker": "a\nb"}),
        (("redis://127.0.0.1",), {"worker": 5}),
        (("redis://127.0.0.1",), {"worker": "w" * 41}),  # a name: the id adds a nonce
        (("redis://127.0.0.1",), {"clock": 5.0}),
    ],
)
def test_bad_arguments_are_invalid_request_errors(
    args: tuple[Any, ...], options: dict[str, Any]
) -> None:
    with pytest.raises(InvalidRequestError):
        RedisState(*args, **options)


def test_a_bad_url_in_the_error_shows_no_password() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        RedisState("http://:hunter2@127.0.0.1:6379/0")
    assert "hunter2" not in str(caught.value)
    assert "<redacted>" in str(caught.value)


def test_twice_the_heartbeat_is_a_valid_worker_timeout() -> None:
    state = RedisState("redis://127.0.0.1", heartbeat_interval=5, worker_timeout=10)
    assert state.prefix == "d360calling"


@pytest.mark.parametrize("given", [{"tracker": CallTracker()}, {"dedupe": object()}])
def test_a_receiver_takes_a_state_or_a_tracker_and_dedupe_not_both(given: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError):
        WebhookReceiver(signing_secret="s", state=RedisState("redis://127.0.0.1:6379/0"), **given)


@pytest.mark.asyncio
async def test_a_state_not_started_or_closed_raises_a_typed_error(make_state: MakeState) -> None:
    from d360calling.errors import StateUnavailableError

    idle = RedisState("redis://127.0.0.1:6379/0")
    claim = EventClaim(key="k", work="k", index=0)
    with pytest.raises(StateUnavailableError, match="not running"):
        await idle.claim(b"x", [claim])
    state = await make_state()
    await state.close()
    await state.close()  # idempotent
    with pytest.raises(StateUnavailableError):
        await state.claim(b"x", [claim])
    with pytest.raises(StateUnavailableError):
        await state.start(Listener())


@pytest.mark.asyncio
async def test_applying_an_event_again_changes_nothing() -> None:
    # A taken-over event is applied a second time by the worker that reruns it.
    events = [
        call_event(outbound_status("wacid.TWICE", "RINGING", T0)),
        call_event(outbound_connect("wacid.TWICE", T0 + 2)),
        call_event(outbound_terminate("wacid.TWICE", T0 + 30, start=T0 + 2, duration=28)),
    ]
    once = await folded(events)
    for repeated in range(len(events)):
        again = await folded([*events, events[repeated]])
        assert again == once
    assert once.events == ("connect", "status:RINGING", "terminate")


@pytest.mark.asyncio
async def test_a_script_redis_has_lost_is_loaded_again(make_state: MakeState, raw: Any) -> None:
    a = await make_state()
    claim = EventClaim(key="call_connect:flushed", work="call_connect:flushed", index=0)
    raw.script_flush()  # as after a restart: Redis knows none of the scripts
    assert await a.claim(b"body", [claim]) == [True]
    assert await a.claim(b"body", [claim]) == [False]


@pytest.mark.asyncio
async def test_a_burst_of_deliveries_beyond_the_pool_waits_for_connections_not_503(
    redis_url: str,
) -> None:
    # redis-py's default pool fails a command past 100 connections: a burst of webhooks
    # would be answered 503 with an "outage" logged. The state's pool makes them wait.
    from d360calling.webhooks import WebhookReceiver, signature

    state = RedisState(redis_url, max_connections=8)
    receiver = WebhookReceiver(signing_secret="burst", max_age=None, state=state)
    await receiver.start()
    try:
        bodies = [inbound_connect(f"wacid.BURST{i}") for i in range(300)]
        replies = await asyncio.gather(
            *(
                receiver.receive({"x-360dialog-signature": signature("burst", body)}, body)
                for body in bodies
            )
        )
        assert [reply.status for reply in replies] == [200] * len(bodies)
        assert await receiver.drain(30)
        assert receiver.stats["unavailable"] == 0
    finally:
        await receiver.close()
