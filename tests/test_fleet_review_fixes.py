"""``RedisState`` where the network and Redis misbehave, against a real Redis: a claim whose
answer is lost (acted on once, by the audit; its redelivery a duplicate), a claim redis-py
sends again (still won), an outage longer than ``worker_timeout`` (no live worker's work
taken over), Redis losing its data (no update lost to a version that repeats), one worker name
given twice or restarted (separate workers), the pub/sub connection dropped while an event is
published (recalled), a ``workers`` key of another kind, background tasks that die, and the
round trips of the hot path.

Answers are lost or held by :class:`RedisProxy`, a TCP proxy on loopback in front of the
test's Redis. The heartbeat and the caretaker are driven by the test (an injected ``sleep``
and ``clock``); every other wait is a bounded poll."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs
import pytest
import pytest_asyncio

from .redis_server import NO_REDIS_PY

redis = pytest.importorskip("redis", reason=NO_REDIS_PY)

from d360calling.fleet import RedisState  # noqa: E402
from d360calling.fleet import _scripts as scripts  # noqa: E402
from d360calling.testing import FakeCallingAPI, sample_offer  # noqa: E402
from d360calling.webhooks import CallOutcome  # noqa: E402
from d360calling.webhooks._state import EventClaim, encode_payload  # noqa: E402

from . import test_fleet_receiver  # noqa: E402
from .test_fleet_receiver import (  # noqa: E402
    LOOPS,
    SECRET,
    FakeClock,
    Fleet,
    HeartbeatGate,
    fleet_messages,
)
from .test_fleet_state import (  # noqa: E402
    QUIET,
    USER,
    Listener,
    call_event,
    claims_of,
    folded,
    inbound_connect,
    inbound_terminate,
    now,
    outbound_status,
    outbound_terminate,
    until,
)

fleet = test_fleet_receiver.fleet  # the fixture: its servers and states, closed after the test

FLEET_LOG = "d360calling.fleet"
BEAT = QUIET["heartbeat_interval"]
TIMEOUT = QUIET["worker_timeout"]
CLAIM_SHA = hashlib.sha1(scripts.CLAIM.encode()).hexdigest().encode()
"""What marks a claim on the wire (redis-py runs a script by ``EVALSHA``)."""


# -- a proxy that loses or holds Redis's answers -----------------------------------------------


@attrs.define(eq=False)
class _Pair:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    losing: bool = False
    holding: bool = False

    def close(self) -> None:
        self.client.close()
        self.server.close()


class RedisProxy:
    """A TCP proxy on loopback in front of the test's Redis. :meth:`lose`: the answers to the
    next commands that carry a marker are lost (the command ran; its connection closes when
    Redis answers). :meth:`hold`: answers (and closes) from Redis wait until
    :meth:`release` - all of them, or only on connections that sent a marker. :meth:`cut`:
    every connection is closed, and new ones at once, until :meth:`mend`."""

    def __init__(self, redis_url: str) -> None:
        parts = urlsplit(redis_url)
        assert parts.hostname in ("127.0.0.1", "localhost"), "loopback only"
        self._target = parts
        self._server: asyncio.Server | None = None
        self._pairs: set[_Pair] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._lose: tuple[bytes, int] = (b"", 0)
        self._hold: bytes | None = None  # b"": every connection
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._cut = False
        self._closed = False
        self.lost = 0
        self.url = ""

    async def start(self) -> RedisProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        netloc = self._target.netloc
        userinfo = netloc.rsplit("@", 1)[0] + "@" if "@" in netloc else ""
        self.url = urlunsplit(self._target._replace(netloc=f"{userinfo}127.0.0.1:{port}"))
        return self

    def lose(self, marker: bytes, times: int) -> None:
        self._lose = (marker, times)

    def hold(self, marker: bytes = b"") -> None:
        self._hold = marker
        self._flowing.clear()

    def release(self) -> None:
        self._hold = None
        for pair in self._pairs:
            pair.holding = False
        self._flowing.set()

    def cut(self) -> None:
        self._cut = True
        for pair in list(self._pairs):
            pair.close()

    def mend(self) -> None:
        self._cut = False

    async def close(self) -> None:
        self._closed = True
        if self._server is not None:
            self._server.close()
        self.release()
        for _ in range(100):  # connections a closing client makes meanwhile are closed too
            for pair in list(self._pairs):
                pair.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await asyncio.sleep(0.01)
            if not self._tasks and not self._pairs:
                break

    async def _serve(self, client_in: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self._cut or self._closed:
                client.close()
                return
            port = self._target.port or 6379
            server_in, server = await asyncio.open_connection("127.0.0.1", port)
            pair = _Pair(client, server)
            self._pairs.add(pair)
            try:
                await asyncio.gather(self._up(client_in, pair), self._down(server_in, pair))
            finally:
                self._pairs.discard(pair)
                pair.close()
        except OSError:
            client.close()
        finally:
            self._tasks.discard(task)

    async def _up(self, reader: asyncio.StreamReader, pair: _Pair) -> None:
        with _quiet():
            while data := await reader.read(65536):
                marker, times = self._lose
                if times and marker in data:
                    self._lose = (marker, times - 1)
                    pair.losing = True
                if self._hold is not None and self._hold in data:
                    pair.holding = True
                pair.server.write(data)
                await pair.server.drain()
        pair.server.close()

    async def _down(self, reader: asyncio.StreamReader, pair: _Pair) -> None:
        with _quiet():
            while data := await reader.read(65536):
                if pair.holding or self._hold == b"":
                    await self._flowing.wait()
                if pair.losing:
                    self.lost += 1
                    break
                pair.client.write(data)
                await pair.client.drain()
            else:
                if self._hold == b"":
                    await self._flowing.wait()  # Redis closed it: told when released
        pair.close()


class _quiet:
    """A connection closed by either side ends its copying quietly."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        return kind is not None and issubclass(kind, OSError)


@pytest_asyncio.fixture
async def proxy(redis_url: str) -> AsyncIterator[RedisProxy]:
    made = await RedisProxy(redis_url).start()
    try:
        yield made
    finally:
        await made.close()


# -- states -------------------------------------------------------------------------------------


@attrs.define(eq=False)
class Worker:
    state: RedisState
    listener: Listener

    @property
    def work(self) -> str:
        return f"d360calling:v1:w:{self.state.worker}"

    @property
    def heartbeat(self) -> str:
        return f"d360calling:v1:hb:{self.state.worker}"


MakeWorker = Callable[..., Awaitable[Worker]]


@pytest_asyncio.fixture
async def workers(redis_url: str) -> AsyncIterator[MakeWorker]:
    """Started states on the test's Redis, each with a :class:`Listener` (closed at the end)."""
    made: list[RedisState] = []

    async def make(*, listener: Listener | None = None, **options: Any) -> Worker:
        for name, value in QUIET.items():
            options.setdefault(name, value)
        listener = Listener() if listener is None else listener
        state = RedisState(options.pop("url", redis_url), **options)
        await state.start(listener)
        made.append(state)
        return Worker(state, listener)

    yield make
    for state in made:
        await state.close()


def claim_key(claim: EventClaim) -> str:
    return f"d360calling:v1:d:{claim.key}"


def run_claim_script(raw: Any, worker: str, token: str, body: bytes, claim: EventClaim) -> Any:
    """What the claim of ``worker``'s attempt ``token`` runs in Redis, run from here: a
    claim of that worker whose answer never reached it."""
    spec = {
        "w": worker,
        "t": token,
        "wk": f"d360calling:v1:w:{worker}",
        "dt": 60_000,
        "kt": 60_000,
        "km": 16,
        "e": [
            {
                "d": claim_key(claim),
                "f": claim.work,
                "i": str(claim.index),
                "r": "" if claim.call_id is None else f"d360calling:v1:r:{claim.call_id}",
                "p": [],
                "k": [],
            }
        ],
    }
    return raw.eval(scripts.CLAIM, 0, json.dumps(spec), body)


async def rounds(gate: HeartbeatGate, count: int = 1) -> None:
    """Let the heartbeat and the caretaker each run ``count`` rounds."""
    for _ in range(count):
        await until(lambda: gate.sleeping == LOOPS)
        gate.tick()
        await until(lambda: gate.sleeping == LOOPS)


# -- 1. a claim whose answer is lost ----------------------------------------------------------


@pytest.mark.asyncio
async def test_a_claim_whose_answer_is_lost_is_acted_on_once_and_its_redelivery_is_dropped(
    proxy: RedisProxy, fleet: Fleet, raw: Any
) -> None:
    gate, clock = HeartbeatGate(BEAT), FakeClock()
    a = await fleet.node("worker-a", url=proxy.url, sleep=gate, clock=clock)
    b = await fleet.node("worker-b")
    assert (await fleet.post(a, inbound_connect("wacid.WARM")))[0] == 200  # scripts loaded
    await fleet.drain()
    body = inbound_connect("wacid.LOST")
    (claim,) = claims_of(body)
    # The claim runs in Redis; its answer is lost, and so is that of redis-py's retry.
    proxy.lose(CLAIM_SHA, 5)
    assert (await fleet.post(a, body))[0] == 503
    proxy.lose(CLAIM_SHA, 0)
    assert proxy.lost == 2
    work = f"d360calling:v1:w:{a.state.worker}"
    assert raw.get(claim_key(claim)).startswith(f"{a.state.worker}|".encode())
    assert raw.hexists(work, claim.work)  # worker-a's work, which it does not know it holds
    # 360dialog delivers it again, to another worker or the same one: duplicates.
    assert (await fleet.post(b, body))[0] == 200
    assert (await fleet.post(a, body))[0] == 200
    await fleet.drain()
    assert (b.receiver.stats["duplicates"], a.receiver.stats["duplicates"]) == (1, 1)
    assert fleet.ran("connect", "wacid.LOST") == []
    # The caretaker starts once worker-a has beaten for worker_timeout; a field unknown at
    # two audits in a row is acted on.
    await rounds(gate)
    clock.advance(TIMEOUT)
    await rounds(gate)
    assert fleet.ran("connect", "wacid.LOST") == []  # one audit: a suspect only
    await rounds(gate)
    await until(lambda: fleet.ran("connect", "wacid.LOST") == ["worker-a"])
    await fleet.drain()
    await until(lambda: not raw.hexists(work, claim.work))  # finished
    await rounds(gate, 3)  # nothing left to find
    await fleet.drain()
    assert fleet.ran("connect", "wacid.LOST") == ["worker-a"]
    assert a.receiver.stats["recovered"] == 1
    assert b.receiver.stats["recovered"] == 0


@pytest.mark.asyncio
async def test_a_claim_redis_py_sends_again_after_a_lost_answer_is_still_won(
    proxy: RedisProxy, workers: MakeWorker, raw: Any
) -> None:
    a = await workers(url=proxy.url, worker="worker-a")
    warm = inbound_connect("wacid.WARM")
    assert await a.state.claim(warm, claims_of(warm)) == [True]
    body = inbound_connect("wacid.AGAIN")
    (claim,) = claims_of(body)
    proxy.lose(CLAIM_SHA, 1)  # the first answer is lost; redis-py runs the claim again
    trips = a.state.round_trips
    assert await a.state.claim(body, [claim]) == [True]
    assert proxy.lost == 1
    assert a.state.round_trips - trips == 1
    assert raw.get(claim_key(claim)).startswith(f"{a.state.worker}|".encode())
    assert raw.hget(a.work, claim.work) == f"{a.state.worker}\n0\n".encode() + body
    # Known to be held: the audit never hands it over a second time.
    assert [await a.state.audit(), await a.state.audit()] == [0, 0]
    assert a.listener.taken == []
    # Another attempt (a redelivery) is a duplicate, of this worker or any.
    assert await a.state.claim(body, [claim]) == [False]


@pytest.mark.asyncio
async def test_the_claim_and_unclaim_scripts_compare_the_attempts_token(raw: Any) -> None:
    body = inbound_connect("wacid.TOKEN")
    (claim,) = claims_of(body)
    first = run_claim_script(raw, "w-1", "w-1|aaaa", body, claim)
    assert first[0] == 1
    assert run_claim_script(raw, "w-1", "w-1|aaaa", body, claim)[0] == 1  # the same attempt
    assert run_claim_script(raw, "w-1", "w-1|bbbb", body, claim)[0] == 0  # another one
    assert run_claim_script(raw, "w-2", "w-2|aaaa", body, claim)[0] == 0
    assert raw.get(claim_key(claim)) == b"w-1|aaaa"
    # An attempt takes back only a key it holds.
    raw.eval(scripts.UNCLAIM, 0, "w-1|bbbb", "d360calling:v1:w:w-1", claim_key(claim), "x")
    assert raw.get(claim_key(claim)) == b"w-1|aaaa"
    raw.eval(scripts.UNCLAIM, 0, "w-1|aaaa", "d360calling:v1:w:w-1", claim_key(claim), claim.work)
    assert raw.exists(claim_key(claim)) == 0
    assert raw.hexists("d360calling:v1:w:w-1", claim.work) == 0


@pytest.mark.asyncio
async def test_the_audit_acts_on_unknown_work_at_its_second_look_and_on_nothing_known(
    workers: MakeWorker, raw: Any
) -> None:
    a = await workers(worker="worker-a", finish_delay=3600.0)  # finishes stay unreported
    lost = inbound_connect("wacid.ORPHAN")
    (orphan,) = claims_of(lost)
    # A claim of this worker that ran in Redis and whose answer never came back.
    assert run_claim_script(raw, a.state.worker, f"{a.state.worker}|lost", lost, orphan)[0] == 1
    held = inbound_connect("wacid.HELD")
    (kept,) = claims_of(held)
    assert await a.state.claim(held, [kept]) == [True]  # claimed, its callback "running"
    done = inbound_connect("wacid.DONE")
    (finished,) = claims_of(done)
    assert await a.state.claim(done, [finished]) == [True]
    await a.state.finish(finished)  # finished, not yet reported
    assert raw.hlen(a.work) == 3
    assert await a.state.audit() == 0  # unknown once: could be an answer on its way
    assert a.listener.taken == []
    assert await a.state.audit() == 1
    assert a.listener.taken == [(orphan.work, f"{a.state.worker}\n0\n".encode() + lost)]
    assert [await a.state.audit(), await a.state.audit()] == [0, 0]  # now held here
    await a.state.finish(orphan)
    assert [await a.state.audit(), await a.state.audit()] == [0, 0]
    assert len(a.listener.taken) == 1


@pytest.mark.asyncio
async def test_the_audit_leaves_a_claim_whose_answer_is_on_its_way(
    proxy: RedisProxy, workers: MakeWorker, raw: Any
) -> None:
    a = await workers(url=proxy.url, worker="worker-a")
    warm = inbound_connect("wacid.WARM")
    assert await a.state.claim(warm, claims_of(warm)) == [True]
    body = inbound_connect("wacid.SLOW")
    (claim,) = claims_of(body)
    proxy.hold(CLAIM_SHA)  # the claim's answer is held; the audit's are not
    claiming = asyncio.ensure_future(a.state.claim(body, [claim]))
    try:
        await until(lambda: raw.hexists(a.work, claim.work) == 1)  # it ran in Redis
        assert [await a.state.audit(), await a.state.audit()] == [0, 0]
    finally:
        proxy.release()
        won = await asyncio.wait_for(claiming, 10)
    assert won == [True]
    assert [await a.state.audit(), await a.state.audit()] == [0, 0]
    assert a.listener.taken == []


# -- 2. an outage longer than worker_timeout --------------------------------------------------


@pytest.mark.asyncio
async def test_after_an_outage_longer_than_worker_timeout_no_live_workers_work_is_taken(
    proxy: RedisProxy, workers: MakeWorker, raw: Any
) -> None:
    clock = FakeClock()
    gate_a, gate_b = HeartbeatGate(BEAT), HeartbeatGate(BEAT)
    a = await workers(url=proxy.url, worker="worker-a", sleep=gate_a, clock=clock)
    b = await workers(url=proxy.url, worker="worker-b", sleep=gate_b, clock=clock)
    dead = await workers(worker="worker-dead")
    bodies = {name: inbound_connect(f"wacid.OUTAGE-{name}") for name in ("a", "b", "dead")}
    for name, worker in (("a", a), ("b", b), ("dead", dead)):
        assert await worker.state.claim(bodies[name], claims_of(bodies[name])) == [True]
    await dead.state.close()  # it dies before the outage; a and b run their callbacks
    await until(lambda: gate_a.sleeping == LOOPS and gate_b.sleeping == LOOPS)
    proxy.cut()  # Redis unreachable for a and b
    await rounds(gate_a)
    await rounds(gate_b)  # their beats fail
    assert a.state._healthy_since is None
    assert b.state._healthy_since is None
    raw.delete(a.heartbeat, b.heartbeat, dead.heartbeat)  # every heartbeat lapsed meanwhile
    clock.advance(3 * TIMEOUT)
    proxy.mend()
    # a is back first: it beats, and does not take b's work (b has not beaten yet).
    await rounds(gate_a, 3)
    assert raw.exists(a.heartbeat) == 1
    assert raw.exists(b.heartbeat) == 0
    assert a.listener.taken == []
    assert raw.hlen(b.work) == 1
    await rounds(gate_b)  # b beats again too
    clock.advance(TIMEOUT)  # both have beaten for worker_timeout: only the dead one's is taken
    await rounds(gate_a)
    await rounds(gate_b)
    assert [work for work, _ in a.listener.taken] == [claims_of(bodies["dead"])[0].work]
    assert b.listener.taken == []
    assert raw.hkeys(b.work) == [claims_of(bodies["b"])[0].work.encode()]
    assert claims_of(bodies["a"])[0].work.encode() in raw.hkeys(a.work)


# -- 3. Redis loses its data ------------------------------------------------------------------


@pytest.mark.parametrize("claimed", [True, False], ids=["claimed-first", "applied-directly"])
@pytest.mark.asyncio
async def test_after_redis_lost_its_data_a_cached_version_does_not_lose_an_update(
    workers: MakeWorker, raw: Any, claimed: bool
) -> None:
    a = await workers(worker="worker-a")
    b = await workers(worker="worker-b")
    call_id, t = "wacid.ABA", now()
    ringing = outbound_status(call_id, "RINGING", t)
    assert await a.state.claim(ringing, claims_of(ringing)) == [True]
    await a.state.apply(call_event(ringing))  # a caches the record's version
    raw.flushall()  # Redis restarts empty, or fails over to a replica that lagged
    terminate = outbound_terminate(call_id, t + 5)
    assert await b.state.claim(terminate, claims_of(terminate)) == [True]
    await b.state.apply(call_event(terminate))  # a new record, by b
    accepted = outbound_status(call_id, "ACCEPTED", t + 2)
    if claimed:  # the claim reads the record: a's update then costs one round trip
        assert await a.state.claim(accepted, claims_of(accepted)) == [True]
    trips = a.state.round_trips
    before, after = await a.state.apply(call_event(accepted))
    assert a.state.round_trips - trips == (1 if claimed else 2)
    assert before is not None
    assert before.events == ("terminate",)  # folded into b's record, not a's old one
    expected = await folded([call_event(terminate), call_event(accepted)])
    assert after == expected
    assert await b.state.record(call_id) == expected
    assert expected.state == "ended"


# -- 4. one worker name, two workers ----------------------------------------------------------


@pytest.mark.asyncio
async def test_a_restart_under_a_name_is_another_worker_and_takes_over_the_dead_runs_work(
    workers: MakeWorker, raw: Any
) -> None:
    first = await workers(worker="web-1")
    assert re.fullmatch(r"web-1-[0-9a-f]{12}", first.state.worker)
    body = inbound_connect("wacid.RESTART")
    (claim,) = claims_of(body)
    assert await first.state.claim(body, [claim]) == [True]
    await first.state.close()  # killed with its callback running: nothing finished
    raw.delete(first.heartbeat)  # and its heartbeat lapses
    again = await workers(worker="web-1")  # restarted under its name at once
    assert again.state.worker != first.state.worker
    assert again.state.worker.startswith("web-1-")
    assert raw.exists(again.work) == 0  # its work is its own: none yet
    assert [await again.state.audit(), await again.state.audit()] == [0, 0]
    assert await again.state.take_over_dead_workers() == 1  # the dead run's, like any
    assert [work for work, _ in again.listener.taken] == [claim.work]
    assert raw.exists(first.work) == 0
    assert not raw.sismember("d360calling:v1:workers", first.state.worker)


@pytest.mark.asyncio
async def test_two_processes_given_one_name_keep_separate_work(
    workers: MakeWorker, raw: Any
) -> None:
    one = await workers(worker="web-3")
    two = await workers(worker="web-3")
    watcher = await workers(worker="web-4")
    assert one.state.worker != two.state.worker
    bodies = [inbound_connect("wacid.NAME-1"), inbound_connect("wacid.NAME-2")]
    claims = [claims_of(body)[0] for body in bodies]
    assert await one.state.claim(bodies[0], [claims[0]]) == [True]
    assert await two.state.claim(bodies[1], [claims[1]]) == [True]
    assert raw.hkeys(one.work) == [claims[0].work.encode()]
    assert raw.hkeys(two.work) == [claims[1].work.encode()]
    assert await watcher.state.take_over_dead_workers() == 0  # both beat
    await one.state.close()
    raw.delete(one.heartbeat)
    # two beats on under the name, and one's work is still found dead and taken.
    assert await two.state.take_over_dead_workers() == 1
    assert [work for work, _ in two.listener.taken] == [claims[0].work]
    assert sorted(raw.hkeys(two.work)) == sorted(claim.work.encode() for claim in claims)


# -- 5. pub/sub dropped -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_placed_calls_terminate_published_while_pubsub_reconnects_is_still_heard(
    proxy: RedisProxy, fleet: Fleet, raw: Any
) -> None:
    a = await fleet.node("worker-a", url=proxy.url)
    b = await fleet.node("worker-b")
    async with FakeCallingAPI(webhook_signing_secret=SECRET) as fake:
        fake.grant_permission(USER, notify=False)
        fake.webhook_url = b.url  # every webhook of the call lands on worker-b
        async with fake.async_client() as client:
            call = await a.receiver.place_call(client, USER, sample_offer(), ringing_timeout=None)
            await fake.drain_webhooks()
            fake.user_answers(call.call_id)
            await call.answered(timeout=10)
            # worker-a's pub/sub connection drops (CLIENT KILL); until redis-py has made it
            # again, worker-a hears nothing: the terminate is published meanwhile.
            proxy.hold()
            assert raw.client_kill_filter(_type="pubsub") >= 1
            fake.user_hangs_up(call.call_id)
            await fake.drain_webhooks()
            await fleet.drain()
            assert fleet.ran("terminate", call.call_id) == ["worker-b"]
            ended = asyncio.ensure_future(call.ended(timeout=None))
            await asyncio.sleep(0)
            assert not ended.done()
            proxy.release()  # redis-py reconnects, subscribes again, and the kept list is read
            assert await asyncio.wait_for(ended, 10) is CallOutcome.COMPLETED
    channel = f"d360calling:v1:t:call:{call.call_id}".encode()
    assert a.receiver.followed_calls == 0
    await until(lambda: dict(raw.pubsub_numsub(channel)).get(channel) == 0)


@pytest.mark.asyncio
async def test_an_event_published_while_pubsub_cannot_connect_is_recalled_when_it_can(
    proxy: RedisProxy, workers: MakeWorker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=FLEET_LOG)
    a = await workers(url=proxy.url, worker="worker-a")
    b = await workers(worker="worker-b")
    call_id = "wacid.GAP"
    await a.state.watch(f"call:{call_id}")
    proxy.cut()  # redis-py cannot make the connection again: the listener subscribes anew
    await until(lambda: fleet_messages(caplog, f"{a.state.where} cannot be reached") != [])
    body = outbound_terminate(call_id, now())
    claims = [attrs.evolve(claims_of(body)[0], topics=(f"call:{call_id}",))]
    claims = [attrs.evolve(claims[0], keep=claims[0].topics)]
    assert await b.state.claim(body, claims) == [True]  # published while a is not listening
    payload = encode_payload(b.state.worker, 0, body)
    assert payload not in a.listener.payloads
    proxy.mend()
    await until(lambda: payload in a.listener.payloads, 20)  # resubscribe pauses <= 2 s


# -- 6. a workers key of another kind; tasks that die -----------------------------------------


@pytest.mark.asyncio
async def test_a_workers_key_of_another_kind_stops_neither_start_nor_beats(
    workers: MakeWorker, raw: Any
) -> None:
    key = "d360calling:v1:workers"
    raw.set(key, "garbage")
    gate, clock = HeartbeatGate(BEAT), FakeClock()
    a = await workers(worker="worker-a", sleep=gate, clock=clock)
    assert raw.type(key) == b"set"
    assert raw.sismember(key, a.state.worker)
    raw.delete(a.heartbeat)
    raw.set(key, "garbage")
    await rounds(gate)
    assert raw.type(key) == b"set"
    assert raw.sismember(key, a.state.worker)
    assert raw.exists(a.heartbeat) == 1
    assert raw.pttl(key) > 0
    dead = await workers(worker="worker-dead")
    body = inbound_connect("wacid.GARBAGE")
    assert await dead.state.claim(body, claims_of(body)) == [True]
    await dead.state.close()
    raw.delete(dead.heartbeat)
    clock.advance(TIMEOUT)
    await rounds(gate)  # the caretaker still works
    assert [work for work, _ in a.listener.taken] == [claims_of(body)[0].work]


@pytest.mark.asyncio
async def test_a_background_task_that_dies_is_logged(
    workers: MakeWorker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger=FLEET_LOG)

    async def broken(seconds: float) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("the sleep broke")

    await workers(worker="worker-a", sleep=broken)
    await until(lambda: len(fleet_messages(caplog, "stopped: RuntimeError")) >= 2)
    stopped = " ".join(fleet_messages(caplog, "background task"))
    assert "d360calling-fleet-heartbeat" in stopped
    assert "d360calling-fleet-takeover" in stopped


class FailingListener(Listener):
    def heard(self, payload: bytes) -> None:
        if not self.payloads:
            self.payloads.append(b"")
            raise RuntimeError("the receiver broke")
        super().heard(payload)


@pytest.mark.asyncio
async def test_a_listener_that_fails_on_a_message_does_not_stop_the_listening(
    redis_url: str, raw: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger=FLEET_LOG)
    listener = FailingListener()
    state = RedisState(redis_url, worker="worker-a", **QUIET)
    await state.start(listener)
    try:
        await state.watch("user:1")
        raw.publish("d360calling:v1:t:user:1", b"first")
        raw.publish("d360calling:v1:t:user:1", b"second")
        await until(lambda: listener.payloads == [b"", b"second"])
        assert fleet_messages(caplog, "could not be handled")
    finally:
        await state.close()


class FailingRecovery(Listener):
    def recovered(self, payloads: Sequence[tuple[str, bytes]]) -> None:
        if not self.taken:
            self.taken.append(("", b""))
            raise RuntimeError("the receiver broke")
        super().recovered(payloads)


@pytest.mark.asyncio
async def test_a_receiver_failing_on_work_taken_over_does_not_stop_the_caretaker(
    workers: MakeWorker, raw: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger=FLEET_LOG)
    gate, clock = HeartbeatGate(BEAT), FakeClock()
    a = await workers(worker="worker-a", sleep=gate, clock=clock, listener=FailingRecovery())
    clock.advance(TIMEOUT)
    works = []
    for number in range(2):
        dead = await workers(worker=f"worker-dead-{number}")
        body = inbound_connect(f"wacid.FAILING-{number}")
        (claim,) = claims_of(body)
        works.append(claim.work)
        assert await dead.state.claim(body, [claim]) == [True]
        await dead.state.close()
        raw.delete(dead.heartbeat)
        await rounds(gate)  # the first hand-over fails; the caretaker goes on
    assert [work for work, _ in a.listener.taken] == ["", works[1]]
    assert fleet_messages(caplog, "could not be handed over")
    assert fleet_messages(caplog, "background task") == []


@pytest.mark.asyncio
async def test_a_listener_failing_on_a_recalled_event_still_gets_the_others(
    proxy: RedisProxy, workers: MakeWorker, raw: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger=FLEET_LOG)
    a = await workers(url=proxy.url, worker="worker-a", listener=FailingListener())
    b = await workers(worker="worker-b")
    topic = "call:wacid.RECALLED"
    await a.state.watch(topic)
    proxy.hold()  # worker-a hears nothing until released: its pub/sub connection drops
    assert raw.client_kill_filter(_type="pubsub") >= 1
    bodies = [
        outbound_status("wacid.RECALLED", "RINGING"),
        outbound_terminate("wacid.RECALLED", now()),
    ]
    for body in bodies:
        claims = [attrs.evolve(claims_of(body)[0], topics=(topic,), keep=(topic,))]
        assert await b.state.claim(body, claims) == [True]
    proxy.release()
    payloads = [encode_payload(b.state.worker, 0, body) for body in bodies]
    await until(lambda: payloads[1] in a.listener.payloads)  # the first one failed
    assert a.listener.payloads == [b"", payloads[1]]
    assert fleet_messages(caplog, "recalled could not be handled")


# -- 7. round trips ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_call_event_costs_at_most_two_round_trips_with_the_caretaker_running(
    fleet: Fleet, raw: Any
) -> None:
    gate, clock = HeartbeatGate(BEAT), FakeClock()
    # Finishes are reported later (one HDEL for many, off the hot path).
    a = await fleet.node("worker-a", sleep=gate, clock=clock, finish_delay=1800.0)
    assert (await fleet.post(a, inbound_connect("wacid.WARM")))[0] == 200  # scripts loaded
    await fleet.drain()
    clock.advance(TIMEOUT)
    await rounds(gate, 2)  # the caretaker has audited: its scripts are loaded too
    bodies: Sequence[bytes] = [
        outbound_status("wacid.HOT", "RINGING"),
        outbound_status("wacid.HOT", "ACCEPTED"),
        inbound_connect("wacid.HOT-IN"),
        inbound_terminate("wacid.HOT-IN"),
    ]
    for body in bodies:
        trips = a.state.round_trips
        assert (await fleet.post(a, body))[0] == 200
        await fleet.drain()
        assert a.state.round_trips - trips <= 2  # a claim and an update (and no audit)
    assert a.receiver.stats["recovered"] == 0
