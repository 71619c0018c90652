"""The receiver's fleet integration where timing decides: a permission reply heard from another
worker while the wait is still watching its topics, ``close()`` while a placed call's topic is
being watched (and a cancelled ``place_call``), a record update the state cannot make (a
connect is not answered blind), work taken over from a dead worker within the callback budget,
``receiver.tracker``/``receiver.dedupe``, and one state given to two receivers.

The state is :class:`GatedState`, an in-memory ``ReceiverState`` whose watch and recall wait
until the test opens their gate; one test uses a real ``RedisState``. Timeouts and pauses come
from injected sleeps, and every wait on something in the background is a bounded number of
loop turns or an ``asyncio.wait_for``: nothing sleeps to test a delay."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from d360calling import (
    ClientClosedError,
    ClientMisuseError,
    StateUnavailableError,
)
from d360calling.models.webhooks import (
    CallConnectEvent,
    CallStatusEvent,
    CallTerminateEvent,
    WebhookEvent,
)
from d360calling.testing import sample_offer
from d360calling.webhooks import (
    CallRecord,
    CallTracker,
    EventClaim,
    InMemoryDedupeMemory,
    InMemoryState,
    PermissionOutcome,
    PermissionReplyEvent,
    StateListener,
    WebhookReceiver,
    parse_webhook,
)
from d360calling.webhooks._receiver import _memory_key
from d360calling.webhooks._state import encode_payload

from .test_permission_wait import PHONE, REQUEST, failed_status, reply
from .test_webhooks import inbound_connect, terminate

CallEvent = CallConnectEvent | CallStatusEvent | CallTerminateEvent
OTHER = "worker-there"  # the worker that received what this one hears
PLACED = "wacid.PLACED"


class GatedState:
    """A ``ReceiverState`` for one process (an :class:`InMemoryState`'s claims and records)
    whose ``watch`` and ``recall`` wait for their gate (open unless the test closes it), and
    which records what the receiver asked of it. ``apply_error``/``record_error`` make those
    fail; ``record_value`` is what ``record`` answers when set."""

    worker = "worker-here"

    def __init__(self) -> None:
        self.memory = InMemoryState()
        self.listeners: list[StateListener] = []
        self.watch_gate = asyncio.Event()
        self.watch_gate.set()
        self.recall_gate = asyncio.Event()
        self.recall_gate.set()
        self.watch_began = asyncio.Event()
        self.recall_began = asyncio.Event()
        self.watch_error: BaseException | None = None
        self.apply_error: BaseException | None = None
        self.record_error: BaseException | None = None
        self.record_value: CallRecord | None = None
        self.kept: dict[str, list[bytes]] = {}
        self.watched: list[str] = []
        self.unwatched: list[str] = []
        self.finished: list[str] = []
        self.applied = 0
        self.records_read = 0

    async def start(self, listener: StateListener) -> None:
        self.listeners.append(listener)

    async def close(self) -> None:
        return None

    async def claim(self, body: bytes, claims: Sequence[EventClaim]) -> list[bool]:
        return await self.memory.claim(body, claims)

    async def apply(self, event: CallEvent) -> tuple[CallRecord | None, CallRecord]:
        self.applied += 1
        if self.apply_error is not None:
            raise self.apply_error
        return await self.memory.apply(event)

    async def record(self, call_id: str) -> CallRecord | None:
        self.records_read += 1
        if self.record_error is not None:
            raise self.record_error
        if self.record_value is not None:
            return self.record_value
        return await self.memory.record(call_id)

    async def finish(self, claim: EventClaim) -> None:
        self.finished.append(claim.work)

    async def watch(self, topic: str) -> None:
        self.watch_began.set()
        await self.watch_gate.wait()
        if self.watch_error is not None:
            raise self.watch_error
        self.watched.append(topic)

    async def unwatch(self, topic: str) -> None:
        self.unwatched.append(topic)

    async def recall(self, topic: str) -> list[bytes]:
        self.recall_began.set()
        await self.recall_gate.wait()
        return list(self.kept.get(topic, ()))


class Pauses:
    """A sleep that is over at once and remembers what it was asked to wait."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)


class Actions:
    """Call actions for ``_place_call``: the connect answers at once; terminates recorded."""

    def __init__(self) -> None:
        self.terminated: list[str] = []

    async def connect(
        self, to: str | None, sdp: str, recipient: str | None, options: Mapping[str, object]
    ) -> str:
        return PLACED

    async def terminate(self, call_id: str) -> None:
        self.terminated.append(call_id)


class Seen:
    """What the callbacks got: ``(callback, call id)``, and the stale reasons."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, str]] = []
        self.stale: list[tuple[str, str]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    def options(self) -> dict[str, Any]:
        async def connect(event: CallConnectEvent) -> None:
            self.runs.append(("connect", event.call_id))
            await self.gate.wait()

        async def terminated(event: CallTerminateEvent) -> None:
            self.runs.append(("terminate", event.call_id))

        async def stale(event: WebhookEvent, reason: str) -> None:
            self.stale.append((getattr(event, "call_id", "-"), reason))

        return {"on_connect": connect, "on_terminate": terminated, "on_stale": stale}


def receiver_on(state: GatedState, **options: Any) -> WebhookReceiver:
    options.setdefault("sleep", Pauses())
    return WebhookReceiver(insecure_no_auth=True, state=state, max_age=None, **options)


async def turns(predicate: Callable[[], bool], rounds: int = 200) -> None:
    """Let the loop run until ``predicate`` holds, for at most ``rounds`` turns."""
    for _ in range(rounds):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"not true within {rounds} loop turns")


async def deliver(receiver: WebhookReceiver, *bodies: bytes) -> None:
    for body in bodies:
        assert (await receiver.receive({}, body)).status == 200
    assert await receiver.drain(timeout=10)


async def ended_record(call_id: str) -> CallRecord:
    (event,) = parse_webhook(terminate(call_id))
    assert isinstance(event, CallTerminateEvent)
    record = await CallTracker().apply(event)
    assert record is not None
    assert record.ended
    return record


# -- 1. a reply heard while the wait watches its topics -----------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("message_id", [None, REQUEST])
async def test_a_reply_heard_while_the_wait_is_watching_ends_the_wait(
    message_id: str | None,
) -> None:
    state = GatedState()
    state.watch_gate.clear()
    receiver = receiver_on(state)  # Pauses: a timeout passes at once
    waiting = asyncio.ensure_future(
        receiver.wait_for_permission(PHONE, timeout=30, message_id=message_id)
    )
    await asyncio.wait_for(state.watch_began.wait(), 10)
    assert receiver.waiting == 0  # not in effect until its watch is: tests wait on this
    # Another worker received the user's reply (one that answers no request, so it is not
    # remembered as an answer) and published it while this worker's watch was going on.
    receiver.heard(encode_payload(OTHER, 0, reply(context=None)))
    state.watch_gate.set()
    result = await asyncio.wait_for(waiting, 10)
    assert result.outcome is PermissionOutcome.GRANTED_TEMPORARY
    assert isinstance(result.event, PermissionReplyEvent)
    assert result.event.context_id is None
    assert receiver.stats["heard"] == 1
    assert receiver.waiting == 0
    await receiver.close()
    assert sorted(state.unwatched) == sorted(state.watched)
    assert f"user:{PHONE}" in state.watched


@pytest.mark.asyncio
async def test_a_wait_still_gets_the_answer_kept_before_it_started() -> None:
    state = GatedState()
    state.kept[f"msg:{REQUEST}"] = [encode_payload(OTHER, 0, failed_status())]
    receiver = receiver_on(state)
    result = await receiver.wait_for_permission(PHONE, timeout=30, message_id=REQUEST)
    assert result.outcome is PermissionOutcome.FAILED
    # Remembered: a second wait on that request is answered without a watch.
    watched = list(state.watched)
    again = await receiver.wait_for_permission(PHONE, timeout=30, message_id=REQUEST)
    assert (again.outcome, state.watched) == (PermissionOutcome.FAILED, watched)
    await receiver.close()


@pytest.mark.asyncio
async def test_a_watch_that_fails_raises_state_unavailable_and_leaves_no_waiter() -> None:
    state = GatedState()
    state.watch_error = StateUnavailableError("redis is down")
    receiver = receiver_on(state)
    with pytest.raises(StateUnavailableError, match="redis is down"):
        await receiver.wait_for_permission(PHONE, timeout=30, message_id=REQUEST)
    assert receiver.waiting == 0
    # A reply that arrives later finds no waiter left behind, and the next wait is fresh.
    receiver.heard(encode_payload(OTHER, 0, reply(context=None)))
    state.watch_error = None
    result = await receiver.wait_for_permission(PHONE, timeout=30)
    assert result.outcome is PermissionOutcome.TIMED_OUT
    await receiver.close()


# -- 2. close() or a cancellation while a placed call's topic is watched -------------------------


@pytest.mark.asyncio
async def test_close_while_a_placed_call_is_watched_starts_no_timer_and_sends_nothing() -> None:
    state = GatedState()
    state.watch_gate.clear()
    sleep = Pauses()  # a ringing timer, if started, would pass at once and terminate the call
    receiver = receiver_on(state, sleep=sleep)
    actions = Actions()
    placing = asyncio.ensure_future(
        receiver._place_call(actions, PHONE, sample_offer(), None, 60.0, {})
    )
    await asyncio.wait_for(state.watch_began.wait(), 10)
    await receiver.close()
    state.watch_gate.set()
    call = await asyncio.wait_for(placing, 10)
    with pytest.raises(ClientClosedError):
        await call.answered()
    await turns(lambda: state.unwatched == [f"call:{PLACED}"])
    for _ in range(20):  # what a started timer needs to send its terminate, and more
        await asyncio.sleep(0)
    assert (actions.terminated, sleep.asked) == ([], [])
    assert receiver.followed_calls == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("during", ["watch", "recall"])
async def test_a_place_call_cancelled_while_watching_leaves_nothing_behind(during: str) -> None:
    state = GatedState()
    gate, began = (
        (state.watch_gate, state.watch_began)
        if during == "watch"
        else (state.recall_gate, state.recall_began)
    )
    gate.clear()
    receiver = receiver_on(state)
    placing = asyncio.ensure_future(
        receiver._place_call(Actions(), PHONE, sample_offer(), None, 60.0, {})
    )
    await asyncio.wait_for(began.wait(), 10)
    assert receiver.followed_calls == 1
    placing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await placing
    assert receiver.followed_calls == 0
    if during == "recall":  # the watch was in effect: it is undone
        await turns(lambda: state.unwatched == [f"call:{PLACED}"])
    else:
        assert state.watched == []
    await receiver.close()


# -- 3 and 6. a record the state cannot update ------------------------------------------------


@pytest.mark.asyncio
async def test_a_connect_the_state_cannot_apply_is_stale_when_its_record_says_ended() -> None:
    state = GatedState()
    state.apply_error = StateUnavailableError("redis is down")
    state.record_value = await ended_record("wacid.E")
    seen, sleep = Seen(), Pauses()
    receiver = receiver_on(state, sleep=sleep, **seen.options())
    await deliver(receiver, inbound_connect("wacid.E"))
    assert seen.runs == []
    assert seen.stale == [("wacid.E", "the call already ended (its terminate arrived first)")]
    assert (state.applied, state.records_read, sleep.asked) == (4, 1, [0.1, 0.5, 2.0])
    assert receiver.stats["state_errors"] == 4
    await receiver.close()


@pytest.mark.asyncio
async def test_a_connect_whose_record_cannot_be_read_is_not_answered_blind() -> None:
    state = GatedState()
    state.apply_error = StateUnavailableError("redis is down")
    state.record_error = StateUnavailableError("redis is still down")
    seen = Seen()
    receiver = receiver_on(state, **seen.options())
    await deliver(receiver, inbound_connect("wacid.U"), terminate("wacid.V"))
    assert seen.stale == [("wacid.U", "the call's record could not be read (state unavailable)")]
    assert seen.runs == [("terminate", "wacid.V")]  # other kinds go on
    assert (state.applied, state.records_read) == (2 * 4, 1)  # only a connect needs it
    assert receiver.stats["state_errors"] == 2 * 4 + 1
    await receiver.close()


@pytest.mark.asyncio
async def test_a_connect_the_state_cannot_apply_is_answered_when_its_record_is_fresh() -> None:
    state = GatedState()
    state.apply_error = StateUnavailableError("redis is down")
    seen = Seen()
    receiver = receiver_on(state, **seen.options())
    await deliver(receiver, inbound_connect("wacid.F"))  # no record: a call not seen before
    assert (seen.runs, seen.stale) == ([("connect", "wacid.F")], [])
    await receiver.close()


class BrokenStore:
    """A call store of the user's own that fails."""

    async def get(self, call_id: str) -> CallRecord | None:
        raise RuntimeError("the store's database is gone")

    async def put(self, record: CallRecord) -> None:
        raise RuntimeError("the store's database is gone")


@pytest.mark.asyncio
async def test_a_call_store_that_raises_is_logged_once_and_not_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen, sleep = Seen(), Pauses()
    receiver = WebhookReceiver(
        insecure_no_auth=True,
        tracker=CallTracker(BrokenStore()),
        max_age=None,
        sleep=sleep,
        clock=lambda: 1_000.0,  # the throttle's clock: both failures in one minute
        **seen.options(),
    )
    with caplog.at_level(logging.WARNING, logger="d360calling.webhooks"):
        await deliver(receiver, inbound_connect("wacid.S1"), inbound_connect("wacid.S2"))
    assert seen.runs == [("connect", "wacid.S1"), ("connect", "wacid.S2")]
    assert sleep.asked == []  # no retry: the store's error is not an outage
    logged = [r for r in caplog.records if "database is gone" in r.getMessage()]
    assert len(logged) == 1
    assert logged[0].exc_info is None
    assert "RuntimeError" in logged[0].getMessage()
    assert receiver.stats["state_errors"] == 2
    await receiver.close()


# -- 4. work taken over from a dead worker, within the budget ----------------------------------


def dead_work(count: int) -> list[tuple[str, bytes]]:
    """``count`` unfinished connects of a dead worker, each its own delivery (same size)."""
    return [
        (f"work-{i}", encode_payload("worker-dead", 0, inbound_connect(f"wacid.R{i}")))
        for i in range(count)
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize("bound", ["callbacks", "bytes"])
async def test_taken_over_work_runs_within_the_budget_and_none_is_lost(bound: str) -> None:
    work = dead_work(5)
    size = len(inbound_connect("wacid.R0"))
    if bound == "callbacks":
        limits: dict[str, Any] = {"max_pending_callbacks": 2, "max_events_per_delivery": 1}
    else:
        limits = {"max_pending_bytes": 2 * size + 1, "max_body_bytes": 2 * size + 1}
    state, seen = GatedState(), Seen()
    seen.gate.clear()  # every connect callback waits until the test opens it
    receiver = receiver_on(state, **seen.options(), **limits)
    receiver.recovered(work)
    await turns(lambda: len(seen.runs) == 2)
    for _ in range(20):
        await asyncio.sleep(0)
    assert receiver.pending == 2  # the other three wait for room
    assert len(seen.runs) == 2
    # A delivery now finds the budget full.
    assert (await receiver.receive({}, inbound_connect("wacid.NEW"))).status == 503
    seen.gate.set()
    assert await receiver.drain(timeout=10)
    assert seen.runs == [("connect", f"wacid.R{i}") for i in range(5)]  # in order, all
    assert sorted(state.finished) == sorted(name for name, _ in work)
    assert receiver.stats["recovered"] == 5
    await receiver.close()


@pytest.mark.asyncio
async def test_taken_over_work_beyond_four_budgets_stays_in_the_state(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state, seen = GatedState(), Seen()
    seen.gate.clear()
    receiver = receiver_on(
        state, max_pending_callbacks=2, max_events_per_delivery=1, **seen.options()
    )
    with caplog.at_level(logging.WARNING, logger="d360calling.webhooks"):
        receiver.recovered(dead_work(12))  # 2 run, 4 x 2 wait, 2 stay this worker's work
    assert any("2 stay its unfinished work" in r.getMessage() for r in caplog.records)
    seen.gate.set()
    assert await receiver.drain(timeout=10)
    assert seen.runs == [("connect", f"wacid.R{i}") for i in range(10)]
    assert sorted(state.finished) == sorted(f"work-{i}" for i in range(10))
    await receiver.close()


@pytest.mark.asyncio
async def test_taken_over_work_waiting_at_close_is_left_to_the_state() -> None:
    state, seen = GatedState(), Seen()
    seen.gate.clear()
    receiver = receiver_on(
        state, max_pending_callbacks=1, max_events_per_delivery=1, **seen.options()
    )
    receiver.recovered(dead_work(3))
    await turns(lambda: len(seen.runs) == 1)
    closing = asyncio.ensure_future(receiver.close())
    await turns(lambda: receiver._closing)
    seen.gate.set()
    await asyncio.wait_for(closing, 10)
    assert seen.runs == [("connect", "wacid.R0")]  # the rest was not started by close()
    assert state.finished == ["work-0"]


# -- 5. receiver.tracker and receiver.dedupe; one state per receiver ----------------------------


@pytest.mark.asyncio
async def test_tracker_and_dedupe_are_the_in_memory_states() -> None:
    tracker, dedupe = CallTracker(), InMemoryDedupeMemory()
    given = WebhookReceiver(insecure_no_auth=True, tracker=tracker, dedupe=dedupe, max_age=None)
    assert (given.tracker, given.dedupe) == (tracker, dedupe)
    await deliver(given, inbound_connect("wacid.T"))
    assert await given.tracker.get("wacid.T") is not None
    (event,) = parse_webhook(inbound_connect("wacid.T"))
    key = _memory_key(event)
    assert key is not None
    assert not await given.dedupe.first_time(key)  # the receiver recorded it there
    default = WebhookReceiver(insecure_no_auth=True)
    assert isinstance(default.state, InMemoryState)
    assert (default.tracker, default.dedupe) == (default.state.tracker, default.state.dedupe)
    with pytest.raises(AttributeError):
        given.tracker = CallTracker()  # type: ignore[misc]
    await given.close()
    await default.close()


def test_tracker_and_dedupe_of_another_state_say_to_use_the_state() -> None:
    receiver = WebhookReceiver(insecure_no_auth=True, state=GatedState())
    for name in ("tracker", "dedupe"):
        with pytest.raises(ClientMisuseError, match=r"state is GatedState: use receiver\.state"):
            getattr(receiver, name)


@pytest.mark.asyncio
async def test_one_state_given_to_two_receivers_is_refused_at_the_second_start() -> None:
    state = GatedState()
    first, second = receiver_on(state), receiver_on(state)
    await first.start()
    await first.start()  # idempotent
    with pytest.raises(ClientMisuseError, match="started by another WebhookReceiver"):
        await second.start()
    # ... and a delivery to it is not acted on with a listener nobody calls.
    with pytest.raises(ClientMisuseError):
        await second.receive({}, inbound_connect("wacid.2"))
    assert state.listeners == [first]
    await first.close()
    third = receiver_on(state)  # once its receiver closed, a state is free again
    await third.start()
    assert state.listeners == [first, third]
    await third.close()
    await second.close()


@pytest.mark.asyncio
async def test_one_redis_state_given_to_two_receivers_is_refused(redis_url: str) -> None:
    pytest.importorskip("redis")
    from d360calling.fleet import RedisState

    state = RedisState(redis_url, worker="worker-1")
    first = WebhookReceiver(insecure_no_auth=True, state=state)
    second = WebhookReceiver(insecure_no_auth=True, state=state)
    await first.start()
    try:
        with pytest.raises(ClientMisuseError, match="this RedisState is started by another"):
            await second.start()
    finally:
        await first.close()
