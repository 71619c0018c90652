"""A fleet of ``WebhookReceiver`` workers on one real Redis (``RedisState``), each served on
loopback: a delivery and its duplicates acted on once fleet-wide, a connect stale after its
terminate landed elsewhere, waits and placed calls on one worker resolved by webhooks that land
on another (pub/sub, and what was kept for a wait that starts late), the work of a dead worker
taken over, Redis going down and coming back, errors at start without the password, every key
with a TTL, corrupt values under our keys, and the round trips per event.

Every wait on something in the background is a bounded poll or ``asyncio.wait_for`` with a
generous timeout; nothing sleeps to test a delay."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import traceback
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import attrs
import pytest
import pytest_asyncio

from .helpers import closed_port
from .redis_server import NO_REDIS_PY, RedisServer, skip_unless_managed

redis = pytest.importorskip("redis", reason=NO_REDIS_PY)

from d360calling.errors import StateUnavailableError  # noqa: E402
from d360calling.fleet import RedisState  # noqa: E402
from d360calling.fleet._codec import decode_record  # noqa: E402
from d360calling.models.webhooks import (  # noqa: E402
    CallConnectEvent,
    CallStatusEvent,
    CallTerminateEvent,
    MessageStatusEvent,
    PermissionReplyEvent,
    WebhookEvent,
)
from d360calling.testing import FakeCallingAPI, sample_offer, serve  # noqa: E402
from d360calling.webhooks import (  # noqa: E402
    CallOutcome,
    PermissionOutcome,
    WebhookReceiver,
)
from d360calling.webhooks._auth import SIGNATURE_HEADER, signature  # noqa: E402
from d360calling.webhooks._state import encode_payload  # noqa: E402

from .test_fleet_state import (  # noqa: E402
    QUIET,
    USER,
    Listener,
    claims_of,
    failed_status,
    inbound_connect,
    inbound_terminate,
    outbound_status,
    permission_reply,
    until,
)

SECRET = "fleet-signing-secret"
FLEET_LOG = "d360calling.fleet"


@attrs.define(eq=False)
class Node:
    """One worker: its receiver on its RedisState, served at ``url``."""

    name: str
    receiver: WebhookReceiver
    state: RedisState
    url: str


class Fleet:
    """Workers on the test's Redis, what their callbacks saw, and a client to post to them."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.runs: list[tuple[str, str, str]] = []  # (worker, callback, call/message id)
        self.stale: list[tuple[str, WebhookEvent, str]] = []
        self.nodes: list[Node] = []
        self._runners: list[Any] = []
        self._session: aiohttp.ClientSession | None = None

    async def node(
        self,
        name: str,
        *,
        served: bool = True,
        receiver: dict[str, Any] | None = None,
        **state: Any,
    ) -> Node:
        for option, value in QUIET.items():
            state.setdefault(option, value)
        redis_state = RedisState(state.pop("url", self.redis_url), worker=name, **state)
        options: dict[str, Any] = {"signing_secret": SECRET, **(receiver or {})}
        made = WebhookReceiver(
            state=redis_state,
            on_connect=self._recorder(name, "connect"),
            on_status=self._recorder(name, "status"),
            on_terminate=self._recorder(name, "terminate"),
            on_permission_reply=self._recorder(name, "permission"),
            on_message_status=self._recorder(name, "message_status"),
            on_stale=self._stale_recorder(name),
            **options,
        )
        url = ""
        if served:  # the app's startup starts the state
            runner, port = await serve(made.app())
            self._runners.append(runner)
            url = f"http://127.0.0.1:{port}/webhook"
        node = Node(name, made, redis_state, url)
        self.nodes.append(node)
        return node

    def _recorder(self, worker: str, callback: str) -> Any:
        async def record(event: WebhookEvent) -> None:
            self.runs.append((worker, callback, _id(event)))

        return record

    def _stale_recorder(self, worker: str) -> Any:
        async def record(event: WebhookEvent, reason: str) -> None:
            self.stale.append((worker, event, reason))

        return record

    async def post(self, node: Node, body: bytes) -> tuple[int, dict[str, str]]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {SIGNATURE_HEADER: signature(SECRET, body), "Content-Type": "application/json"}
        async with self._session.post(node.url, data=body, headers=headers) as response:
            await response.read()
            return response.status, dict(response.headers)

    async def drain(self) -> None:
        for node in self.nodes:
            assert await node.receiver.drain(10)

    def ran(self, callback: str, ident: str) -> list[str]:
        """The workers that ran ``callback`` for ``ident``."""
        return [worker for worker, kind, got in self.runs if (kind, got) == (callback, ident)]

    async def close(self) -> None:
        for runner in self._runners:
            await runner.cleanup()  # closes its receiver, and so its state
        for node in self.nodes:
            await node.receiver.close()
        if self._session is not None:
            await self._session.close()


def _id(event: WebhookEvent) -> str:
    if isinstance(event, (CallConnectEvent, CallStatusEvent, CallTerminateEvent)):
        return event.call_id
    if isinstance(event, PermissionReplyEvent):
        return event.message_id or ""
    if isinstance(event, MessageStatusEvent):
        return event.message_id
    return event.kind


@pytest_asyncio.fixture
async def fleet(redis_url: str) -> AsyncIterator[Fleet]:
    made = Fleet(redis_url)
    try:
        yield made
    finally:
        await made.close()


def fleet_messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == FLEET_LOG and text in record.getMessage()
    ]


# -- 1. once fleet-wide -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_delivery_and_its_duplicates_on_two_workers_run_the_callback_once(
    fleet: Fleet,
) -> None:
    a = await fleet.node("worker-a")
    b = await fleet.node("worker-b")
    rounds = 25
    for round_ in range(rounds):
        body = inbound_connect(f"wacid.DUP-{round_}")
        statuses = await asyncio.gather(
            fleet.post(a, body), fleet.post(b, body), fleet.post(b, body), fleet.post(a, body)
        )
        assert [status for status, _ in statuses] == [200] * 4
    await fleet.drain()
    for round_ in range(rounds):
        assert len(fleet.ran("connect", f"wacid.DUP-{round_}")) == 1, round_
    assert len(fleet.runs) == rounds
    duplicates = a.receiver.stats["duplicates"] + b.receiver.stats["duplicates"]
    assert duplicates == 3 * rounds


# -- 2. stale across workers ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_connect_at_one_worker_after_its_terminate_at_another_is_stale(
    fleet: Fleet,
) -> None:
    a = await fleet.node("worker-a")
    b = await fleet.node("worker-b")
    assert (await fleet.post(a, inbound_terminate("wacid.LATE")))[0] == 200
    await fleet.drain()  # the terminate is applied (at worker-a)
    assert (await fleet.post(b, inbound_connect("wacid.LATE")))[0] == 200
    await fleet.drain()
    assert fleet.ran("terminate", "wacid.LATE") == ["worker-a"]
    assert fleet.ran("connect", "wacid.LATE") == []
    ((worker, event, reason),) = fleet.stale
    assert worker == "worker-b"
    assert isinstance(event, CallConnectEvent)
    assert "already ended" in reason
    record = await b.receiver.call("wacid.LATE")
    assert record is not None
    assert record.ended
    assert record.events == ("connect", "terminate")


# -- 5. waits resolved by webhooks that land elsewhere ----------------------------------------


@pytest.mark.asyncio
async def test_a_permission_wait_at_one_worker_hears_the_reply_delivered_to_another(
    fleet: Fleet, raw: Any
) -> None:
    a = await fleet.node("worker-a")
    b = await fleet.node("worker-b")
    loop = asyncio.get_running_loop()
    waiting = asyncio.ensure_future(a.receiver.wait_for_permission(USER, timeout=None))
    await until(lambda: a.receiver.waiting == 1)  # its watch is in effect
    sent = loop.time()
    assert (await fleet.post(b, permission_reply(context=None)))[0] == 200
    result = await asyncio.wait_for(waiting, 10)
    assert loop.time() - sent < 5  # pub/sub: no polling interval to wait out
    assert result.outcome is PermissionOutcome.GRANTED_TEMPORARY
    assert result.event is not None
    assert result.event.message_id == "wamid.REPLY-1"
    assert a.receiver.stats["heard"] == 1
    await fleet.drain()
    assert fleet.ran("permission", "wamid.REPLY-1") == ["worker-b"]  # callbacks where claimed
    await until(lambda: a.receiver.waiting == 0)
    channel = f"d360calling:v1:t:user:{USER}".encode()  # the wait's watch ends with it
    await until(lambda: dict(raw.pubsub_numsub(channel)).get(channel) == 0)


@pytest.mark.asyncio
async def test_a_wait_that_starts_after_its_answer_landed_elsewhere_gets_it_at_once(
    fleet: Fleet,
) -> None:
    a = await fleet.node("worker-a")
    b = await fleet.node("worker-b")
    assert (await fleet.post(b, permission_reply(context="wamid.REQ-LATE")))[0] == 200
    await fleet.drain()
    # Nothing was watching when it was published: only what was kept can end this wait.
    result = await asyncio.wait_for(
        a.receiver.wait_for_permission(USER, timeout=None, message_id="wamid.REQ-LATE"), 10
    )
    assert result.outcome is PermissionOutcome.GRANTED_TEMPORARY
    # An answer to another request, kept too, does not end a wait on this one.
    assert (await fleet.post(b, permission_reply("wamid.R2", context="wamid.OTHER")))[0] == 200
    await fleet.drain()
    other = asyncio.ensure_future(
        a.receiver.wait_for_permission(USER, timeout=None, message_id="wamid.REQ-3")
    )
    await until(lambda: a.receiver.waiting == 1)
    assert not other.done()
    assert (await fleet.post(b, failed_status("wamid.REQ-3")))[0] == 200
    failed = await asyncio.wait_for(other, 10)
    assert failed.outcome is PermissionOutcome.FAILED


@pytest.mark.asyncio
async def test_a_second_watch_of_a_topic_returns_once_the_first_is_in_effect(
    redis_url: str, raw: Any
) -> None:
    for round_ in range(5):
        await _second_watch(redis_url, raw, f"user:4915100000{round_:03d}")


async def _second_watch(redis_url: str, raw: Any, topic: str) -> None:
    listener = Listener()
    client = redis.asyncio.Redis.from_url(redis_url)
    a = RedisState(client=client, worker="worker-a", **QUIET)
    await a.start(listener)
    # The pool's idle connection is kept busy, so the watch's pub/sub connects anew: its
    # SUBSCRIBE goes out a few round trips after the first watch began.
    blocker = asyncio.ensure_future(client.blpop(["fleet-test-block"], timeout=0))
    await until(lambda: raw.info("clients")["blocked_clients"] == 1)
    try:
        first = asyncio.ensure_future(a.watch(topic))
        await asyncio.sleep(0)  # the first watch is subscribing
        await asyncio.wait_for(a.watch(topic), 10)  # the second: in effect when it returns
        payload = encode_payload("worker-b", 0, permission_reply(context=None))
        raw.publish(f"d360calling:v1:t:{topic}", payload)  # at once, from elsewhere
        await until(lambda: listener.payloads == [payload])
        await asyncio.wait_for(first, 10)
        await a.unwatch(topic)
        await a.unwatch(topic)
    finally:
        raw.rpush("fleet-test-block", "done")
        await asyncio.wait_for(blocker, 10)
        await a.close()
        await client.aclose()


@pytest.mark.asyncio
async def test_a_call_placed_at_one_worker_is_followed_through_webhooks_at_another(
    fleet: Fleet,
) -> None:
    a = await fleet.node("worker-a")
    b = await fleet.node("worker-b")
    async with FakeCallingAPI(webhook_signing_secret=SECRET) as fake:
        fake.grant_permission(USER, notify=False)
        fake.webhook_url = b.url  # every webhook of the call lands on worker-b
        async with fake.async_client() as client:
            call = await a.receiver.place_call(client, USER, sample_offer(), ringing_timeout=None)
            await fake.drain_webhooks()  # RINGING, at worker-b, before anything else
            fake.user_answers(call.call_id)
            answer = await call.answered(timeout=10)
            assert answer.sdp == fake.calls[call.call_id].answer_sdp
            assert answer.event.call_id == call.call_id
            fake.user_hangs_up(call.call_id)
            assert await call.ended(timeout=10) is CallOutcome.COMPLETED
            await fake.drain_webhooks()
    await fleet.drain()
    assert a.receiver.stats["heard"] >= 3  # RINGING (published or kept), connect, terminate
    assert a.receiver.followed_calls == 0
    assert fleet.ran("connect", call.call_id) == ["worker-b"]
    assert fleet.ran("terminate", call.call_id) == ["worker-b"]
    record = await a.receiver.call(call.call_id)
    assert record is not None
    assert record.ended
    assert record.events[0] == "connect"
    assert record.events[-1] == "terminate"


# -- 6. takeover ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_work_of_a_dead_worker_is_taken_over_and_a_live_ones_is_not(
    fleet: Fleet, raw: Any, redis_url: str
) -> None:
    b = await fleet.node("worker-b")
    dead = RedisState(redis_url, worker="worker-dead", **QUIET)
    live = RedisState(redis_url, worker="worker-live", **QUIET)
    await dead.start(Listener())
    await live.start(Listener())
    try:
        bodies = [
            inbound_connect("wacid.TAKEN-1"),
            outbound_status("wacid.TAKEN-2", "RINGING"),
            permission_reply("wamid.TAKEN-3", context="wamid.REQ-TAKEN"),
        ]
        for body in bodies:  # claimed (answered 200) and never finished
            assert await dead.claim(body, claims_of(body)) == [True]
        mine = inbound_connect("wacid.LIVE")
        assert await live.claim(mine, claims_of(mine)) == [True]
        # worker-dead dies: its tasks and its connection are gone, nothing was finished, and
        # its heartbeat lapses (here at once).
        await dead.close()
        assert raw.hlen(f"d360calling:v1:w:{dead.worker}") == 3
        raw.delete(f"d360calling:v1:hb:{dead.worker}")

        assert await b.state.take_over_dead_workers() == 3
        await fleet.drain()
        assert sorted(fleet.runs) == [
            ("worker-b", "connect", "wacid.TAKEN-1"),
            ("worker-b", "permission", "wamid.TAKEN-3"),
            ("worker-b", "status", "wacid.TAKEN-2"),
        ]
        assert b.receiver.stats["recovered"] == 3
        assert raw.exists(f"d360calling:v1:w:{dead.worker}") == 0
        assert not raw.sismember("d360calling:v1:workers", dead.worker)
        # Acted on here, then finished here (the batched HDEL): nothing left to take over.
        await until(lambda: raw.hlen(f"d360calling:v1:w:{b.state.worker}") == 0)
        record = await b.receiver.call("wacid.TAKEN-1")
        assert record is not None
        assert record.events == ("connect",)
        # worker-live beats: its work is its own.
        assert raw.hlen(f"d360calling:v1:w:{live.worker}") == 1
        assert await b.state.take_over_dead_workers() == 0
        assert raw.hlen(f"d360calling:v1:w:{live.worker}") == 1
        assert fleet.ran("connect", "wacid.LIVE") == []
    finally:
        await live.close()


class HeartbeatGate:
    """A state's ``sleep``: its waits of ``beat`` seconds (the heartbeat's and the
    caretaker's) end when the test calls :meth:`tick`; any other pause (the batching of
    finished work) passes as asked."""

    def __init__(self, beat: float) -> None:
        self.beat = beat
        self._waiting: list[asyncio.Future[None]] = []

    async def __call__(self, seconds: float) -> None:
        if seconds != self.beat:
            await asyncio.sleep(seconds)
            return
        waiting = asyncio.get_running_loop().create_future()
        self._waiting.append(waiting)
        await waiting

    @property
    def sleeping(self) -> int:
        return sum(not waiting.done() for waiting in self._waiting)

    def tick(self) -> None:
        for waiting in self._waiting:
            if not waiting.done():
                waiting.set_result(None)
        self._waiting = [waiting for waiting in self._waiting if not waiting.done()]


class FakeClock:
    """A state's ``clock``: seconds pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


LOOPS = 2
"""A state's tasks that wait a heartbeat interval: the heartbeat and the caretaker."""


@pytest.mark.asyncio
async def test_the_heartbeat_renews_and_takes_over_a_dead_worker_by_itself(
    fleet: Fleet, raw: Any, redis_url: str
) -> None:
    gate = HeartbeatGate(QUIET["heartbeat_interval"])
    clock = FakeClock()
    b = await fleet.node("worker-b", sleep=gate, clock=clock)
    dead = RedisState(redis_url, worker="worker-dead", **QUIET)
    await dead.start(Listener())
    body = inbound_connect("wacid.BEAT")
    assert await dead.claim(body, claims_of(body)) == [True]
    await dead.close()
    raw.delete(f"d360calling:v1:hb:{dead.worker}")
    heartbeat = f"d360calling:v1:hb:{b.state.worker}"
    raw.pexpire(heartbeat, 60_000)  # about to lapse
    await until(lambda: gate.sleeping == LOOPS)  # both wait for their next round
    assert fleet.runs == []  # start() takes nothing over
    # A beat before this worker has beaten for worker_timeout: renewed, nothing taken over
    # (after an outage, the others need a beat to show they are alive).
    gate.tick()
    await until(lambda: gate.sleeping == LOOPS)
    assert raw.pttl(heartbeat) > 60_000  # renewed to worker_timeout
    assert fleet.runs == []
    assert raw.hlen(f"d360calling:v1:w:{dead.worker}") == 1
    clock.advance(QUIET["worker_timeout"])  # beating for worker_timeout now
    raw.pexpire(heartbeat, 60_000)
    gate.tick()
    await until(lambda: fleet.ran("connect", "wacid.BEAT") == ["worker-b"])
    await until(lambda: gate.sleeping == LOOPS)  # and waiting for the next round
    assert raw.pttl(heartbeat) > 60_000
    assert b.receiver.stats["recovered"] == 1
    gate.tick()  # nothing more to take over: nothing runs again
    await until(lambda: gate.sleeping == LOOPS)
    await fleet.drain()
    assert fleet.ran("connect", "wacid.BEAT") == ["worker-b"]
    assert raw.exists(f"d360calling:v1:w:{dead.worker}") == 0


# -- 7. Redis down and back; errors at start --------------------------------------------------


@pytest.mark.asyncio
async def test_redis_down_is_503_logged_once_and_back_is_200(
    fleet: Fleet, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    skip_unless_managed(redis_server)
    caplog.set_level(logging.WARNING, logger=FLEET_LOG)
    a = await fleet.node("worker-a")
    assert (await fleet.post(a, inbound_connect("wacid.BEFORE")))[0] == 200
    await asyncio.to_thread(redis_server.stop)
    for round_ in range(4):
        status, headers = await fleet.post(a, inbound_connect(f"wacid.DOWN-{round_}"))
        assert status == 503
        assert headers["Retry-After"] == "5"
    assert a.receiver.stats["unavailable"] == 4
    assert len(fleet_messages(caplog, "cannot be reached")) == 1  # once for the outage
    assert fleet_messages(caplog, "reachable again") == []
    await asyncio.to_thread(redis_server.start)
    assert (await fleet.post(a, inbound_connect("wacid.DOWN-0")))[0] == 200
    await fleet.drain()
    assert fleet.ran("connect", "wacid.DOWN-0") == ["worker-a"]  # the redelivery is acted on
    assert len(fleet_messages(caplog, "reachable again")) == 1
    assert len(fleet_messages(caplog, "cannot be reached")) == 1


@pytest.mark.asyncio
async def test_a_wait_keeps_hearing_other_workers_after_redis_restarts(
    fleet: Fleet, redis_server: RedisServer, raw: Any
) -> None:
    skip_unless_managed(redis_server)
    a = await fleet.node("worker-a")
    b = await fleet.node("worker-b")
    waiting = asyncio.ensure_future(a.receiver.wait_for_permission(USER, timeout=None))
    await until(lambda: a.receiver.waiting == 1)
    await asyncio.to_thread(redis_server.stop)
    await asyncio.to_thread(redis_server.start)
    channel = f"d360calling:v1:t:user:{USER}"
    # worker-a's listener notices the lost connection and subscribes again (pauses of at
    # most 2 s between attempts).
    await until(lambda: dict(raw.pubsub_numsub(channel)).get(channel.encode(), 0) == 1, 20)
    assert not waiting.done()
    assert (await fleet.post(b, permission_reply(context=None)))[0] == 200
    result = await asyncio.wait_for(waiting, 10)
    assert result.outcome is PermissionOutcome.GRANTED_TEMPORARY


@pytest.mark.asyncio
async def test_redis_refusing_commands_is_503_and_logged_with_its_reason(
    fleet: Fleet, redis_server: RedisServer, raw: Any, caplog: pytest.LogCaptureFixture
) -> None:
    skip_unless_managed(redis_server)
    caplog.set_level(logging.WARNING, logger=FLEET_LOG)
    a = await fleet.node("worker-a")
    raw.config_set("maxmemory-policy", "noeviction")
    raw.config_set("maxmemory", "1")
    try:
        status, headers = await fleet.post(a, inbound_connect("wacid.OOM"))
        assert (status, headers["Retry-After"]) == (503, "5")
        assert len(fleet_messages(caplog, "OutOfMemoryError")) == 1
    finally:
        raw.config_set("maxmemory", "0")
    assert (await fleet.post(a, inbound_connect("wacid.OOM")))[0] == 200
    await fleet.drain()
    assert fleet.ran("connect", "wacid.OOM") == ["worker-a"]
    assert len(fleet_messages(caplog, "reachable again")) == 1


def _no_secret_in(exc: BaseException, secret: str) -> None:
    assert secret not in str(exc)
    assert exc.__cause__ is None
    assert exc.__context__ is None
    # What an error reporter captures with a traceback: each frame's locals, as reprs (the
    # library's frames: the test's own hold the URL it gave).
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        if "/d360calling/" in frame.f_code.co_filename.replace("\\", "/"):
            assert secret not in repr(frame.f_locals), frame.f_code.co_name


@pytest.mark.parametrize(
    "url",
    [
        "redis://:hunter2@127.0.0.1:{port}/0",
        "redis://default:hunter2@127.0.0.1:{port}/0",
        "redis://127.0.0.1:{port}/0?password=hunter2",
    ],
)
@pytest.mark.asyncio
async def test_a_wrong_port_fails_at_start_without_the_password(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    state = RedisState(url.format(port=closed_port()), socket_timeout=5)
    receiver = WebhookReceiver(signing_secret=SECRET, state=state)
    with pytest.raises(StateUnavailableError) as caught:
        await receiver.start()  # not at the first webhook
    assert "cannot be reached" in str(caught.value)
    _no_secret_in(caught.value, "hunter2")
    assert "hunter2" not in repr(state)
    assert "hunter2" not in state.where
    assert "hunter2" not in caplog.text
    assert "<redacted>" in repr(state)
    await receiver.close()


@pytest.mark.asyncio
async def test_wrong_credentials_fail_at_start_with_a_clear_error(
    redis_server: RedisServer, raw: Any
) -> None:
    skip_unless_managed(redis_server)  # changes the server's password for a moment
    url = redis_server.url
    raw.config_set("requirepass", "right-one")
    try:
        for given in (url.replace("redis://", "redis://:hunter2@"), url):
            state = RedisState(given)
            with pytest.raises(StateUnavailableError, match="refused the credentials") as caught:
                await state.start(Listener())
            _no_secret_in(caught.value, "hunter2")
            await state.close()
        state = RedisState(url.replace("redis://", "redis://:right-one@"), **QUIET)
        await state.start(Listener())
        body = inbound_connect("wacid.AUTH")
        assert await state.claim(body, claims_of(body)) == [True]
        await state.close()
    finally:
        with redis.Redis.from_url(url, password="right-one") as admin:
            admin.config_set("requirepass", "")


# -- 8. keys ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_every_key_has_a_ttl_and_starts_with_the_prefix_and_version(
    fleet: Fleet, raw: Any, redis_url: str
) -> None:
    ttls: dict[str, Any] = {"dedupe_ttl": 1000.0, "record_ttl": 500.0, "kept_ttl": 200.0}
    prefix = "fleet-ttl"
    slow: dict[str, Any] = {
        "finish_delay": 3600.0
    }  # unfinished work stays listed while the keys are read
    a = await fleet.node("worker-a", prefix=prefix, **ttls, **slow)
    b = await fleet.node("worker-b", prefix=prefix, **ttls, **slow)
    bodies = [
        inbound_connect("wacid.K1"),
        inbound_terminate("wacid.K1"),
        outbound_status("wacid.K2", "RINGING"),  # kept for its placed call
        permission_reply(context="wamid.REQ-K"),  # kept for a wait on that request
        failed_status("wamid.REQ-F"),  # kept too
    ]
    for index, body in enumerate(bodies):
        assert (await fleet.post([a, b][index % 2], body))[0] == 200
    await fleet.drain()
    waiting = asyncio.ensure_future(a.receiver.wait_for_permission("4915100000001", timeout=None))
    await until(lambda: a.receiver.waiting == 1)
    dead = RedisState(redis_url, worker="worker-dead", prefix=prefix, **ttls, **QUIET)
    await dead.start(Listener())
    body = inbound_connect("wacid.K3")
    assert await dead.claim(body, claims_of(body)) == [True]
    await dead.close()
    raw.delete(f"{prefix}:v1:hb:{dead.worker}")
    assert await b.state.take_over_dead_workers() == 1
    await fleet.drain()

    limits = {  # the longest TTL each kind of key may have, in ms
        "d": 1000_000,
        "w": 1000_000,
        "workers": 1000_000,
        "r": 500_000,
        "k": 200_000,
        "hb": 7200_000,
    }
    seen: set[str] = set()
    for key in raw.scan_iter():
        name = key.decode()
        assert name.startswith(f"{prefix}:v1:"), name
        kind = name.removeprefix(f"{prefix}:v1:").split(":", 1)[0]
        ttl = raw.pttl(key)
        assert 0 < ttl <= limits[kind], (name, ttl)
        seen.add(kind)
    assert seen == set(limits)  # every kind was written, and read here
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting


# -- 9. corrupt values under our keys ---------------------------------------------------------


def _record_as_string(raw: Any, key: str) -> None:
    raw.set(key, "garbage")


def _record_as_list(raw: Any, key: str) -> None:
    raw.rpush(key, "garbage")


def _record_with_bad_json(raw: Any, key: str) -> None:
    raw.hset(key, mapping={"ver": "3", "data": "{not json"})


def _record_of_another_call(raw: Any, key: str) -> None:
    raw.hset(key, mapping={"ver": "2", "data": '{"v": 1, "call_id": "x", "state": "ended"}'})


def _record_with_a_bad_version(raw: Any, key: str) -> None:
    raw.hset(key, mapping={"ver": "not a version!", "data": "garbage"})


def _record_with_a_long_version(raw: Any, key: str) -> None:
    raw.hset(key, mapping={"ver": "f" * 65, "data": "garbage"})


@pytest.mark.parametrize(
    "corrupt",
    [
        _record_as_string,
        _record_as_list,
        _record_with_bad_json,
        _record_of_another_call,
        _record_with_a_bad_version,
        _record_with_a_long_version,
    ],
)
@pytest.mark.asyncio
async def test_a_corrupt_record_is_logged_treated_as_absent_and_rewritten(
    fleet: Fleet, raw: Any, caplog: pytest.LogCaptureFixture, corrupt: Any
) -> None:
    caplog.set_level(logging.WARNING, logger=FLEET_LOG)
    a = await fleet.node("worker-a", receiver={"sleep": _instant})
    b = await fleet.node("worker-b")
    key = "d360calling:v1:r:wacid.CORRUPT"
    corrupt(raw, key)
    assert await b.receiver.call("wacid.CORRUPT") is None  # a read of its own (no claim)
    assert (await fleet.post(a, inbound_connect("wacid.CORRUPT")))[0] == 200
    await fleet.drain()
    assert fleet.ran("connect", "wacid.CORRUPT") == ["worker-a"]  # not stale, not crashed
    assert a.receiver.stats["state_errors"] == 0
    assert fleet_messages(caplog, "not a call record of ours")
    stored = raw.hgetall(key)
    assert re.fullmatch(rb"[0-9a-f]{16}", stored[b"ver"])  # a version of ours: a new token
    rewritten = decode_record(stored[b"data"], "wacid.CORRUPT")
    assert rewritten is not None
    assert rewritten.events == ("connect",)
    assert await b.receiver.call("wacid.CORRUPT") == rewritten
    assert raw.pttl(key) > 0


async def _instant(seconds: float) -> None:
    """The receiver's pauses before it applies again to a failing state: none."""


@pytest.mark.asyncio
async def test_a_kept_list_of_another_kind_is_logged_ignored_and_replaced(
    fleet: Fleet, raw: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=FLEET_LOG)
    a = await fleet.node("worker-a")
    b = await fleet.node("worker-b")
    key = "d360calling:v1:k:msg:wamid.REQ-BAD"
    raw.set(key, "garbage")
    waiting = asyncio.ensure_future(
        a.receiver.wait_for_permission(USER, timeout=None, message_id="wamid.REQ-BAD")
    )
    try:
        await until(lambda: a.receiver.waiting == 1)  # recalled nothing, did not fail
        assert fleet_messages(caplog, "holds a value of another kind")
        assert (await fleet.post(b, permission_reply(context="wamid.REQ-BAD")))[0] == 200
        result = await asyncio.wait_for(waiting, 10)
    finally:
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
    assert result.outcome is PermissionOutcome.GRANTED_TEMPORARY
    assert raw.type(key) == b"list"
    assert raw.llen(key) == 1
    assert raw.pttl(key) > 0


@pytest.mark.asyncio
async def test_a_work_list_of_another_kind_does_not_stop_a_worker(fleet: Fleet, raw: Any) -> None:
    a = await fleet.node("worker-a")
    work = f"d360calling:v1:w:{a.state.worker}"
    raw.set(work, "garbage")
    assert (await fleet.post(a, inbound_connect("wacid.WORK")))[0] == 200
    await fleet.drain()
    assert fleet.ran("connect", "wacid.WORK") == ["worker-a"]
    await until(lambda: raw.exists(work) == 0)  # finished


# -- 12. round trips through a receiver -------------------------------------------------------


@pytest.mark.asyncio
async def test_a_call_event_delivery_costs_at_most_two_round_trips(fleet: Fleet, raw: Any) -> None:
    a = await fleet.node("worker-a", finish_delay=3600.0)  # finishes are reported at close
    warm = inbound_connect("wacid.WARM")  # loads the scripts
    assert (await fleet.post(a, warm))[0] == 200
    await fleet.drain()
    trips = a.state.round_trips
    bodies = [
        outbound_status("wacid.TRIPS", "RINGING"),
        outbound_status("wacid.TRIPS", "ACCEPTED"),
        inbound_connect("wacid.TRIPS-IN"),
        inbound_terminate("wacid.TRIPS-IN"),
    ]
    for body in bodies:
        assert (await fleet.post(a, body))[0] == 200
        await fleet.drain()
    assert a.state.round_trips - trips <= 2 * len(bodies)
    record = await a.receiver.call("wacid.TRIPS-IN")
    assert record is not None
    assert record.events == ("connect", "terminate")
    work = f"d360calling:v1:w:{a.state.worker}"
    assert raw.hlen(work) == len(bodies) + 1
    trips = a.state.round_trips
    await a.receiver.close()
    assert a.state.round_trips - trips == 1  # one HDEL for every finished event
    assert raw.exists(work) == 0
