"""A fleet of four receiver worker processes (``tests/fleet_worker.py``) on one Redis, fed by
the fake API round-robin with a fifth of its webhooks duplicated to another worker and a
tenth out of order: every inbound call is answered exactly once fleet-wide, a connect whose
call ended elsewhere is never answered, and every record in Redis is final and right. With
one worker SIGKILLed mid-run, its unfinished work is taken over after ``worker_timeout``:
nothing is lost, nothing is answered twice.

Everything is counted at the fake: each call's ``actions`` (every action tried, refused ones
too) and its state (the fake refuses a second accept of a call, so a call is accepted once
at most; ``connected_at`` says it was). Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import attrs
import pytest

from d360calling.testing import (
    CallAction,
    CallState,
    EndReason,
    FakeCall,
    FakeCallingAPI,
    FleetDelivery,
    WebhookDelivery,
)
from d360calling.webhooks import CallRecord

from .fleet_worker import WorkerNotReady, read_ready_port

ROOT = Path(__file__).resolve().parent.parent
SECRET = "fleet-signing-secret"
API_KEY = "fleet-api-key-0123456789"
WORKERS = 4
WORKER_TIMEOUT = 2.0
HEARTBEAT = 0.5
READY_WAIT = 60.0  # seconds for four workers to start on a loaded 2-core machine
RUN_WAIT = 120.0  # seconds for every call to be over
SETTLE_WAIT = 30.0  # seconds for the workers to finish what they acknowledged
POLL = 0.05
ANSWERED = [CallAction.PRE_ACCEPT, CallAction.ACCEPT, CallAction.TERMINATE]
# Loopback only, and never through a proxy from the environment.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# -- the workers --------------------------------------------------------------------------


@attrs.define
class Worker:
    index: int
    process: subprocess.Popen[str]
    log: Path
    port: int = 0
    last_stats: dict[str, Any] = attrs.field(factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhook"

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stats(self) -> dict[str, Any]:
        with _HTTP.open(f"http://127.0.0.1:{self.port}/stats", timeout=10) as reply:
            self.last_stats = dict(json.load(reply))
        return self.last_stats

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def _takeovers(worker: Worker) -> list[str]:
    """The log lines in which the worker says it took over a dead worker's work."""
    return [line for line in worker.tail().splitlines() if "stopped beating" in line]


def _logged_at(line: str) -> float:
    """When a worker logged ``line`` (its log format starts with the asctime)."""
    stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    return stamp.timestamp()


def _read_ready(worker: Worker, deadline: float) -> int:
    stdout = worker.process.stdout
    assert stdout is not None
    try:
        return read_ready_port(stdout, deadline)
    except WorkerNotReady as exc:
        raise AssertionError(f"worker {worker.index} {exc}:\n{worker.tail()}") from None


@contextlib.contextmanager
def running_workers(
    count: int, *, redis_url: str, api_url: str, prefix: str, logs: Path, answer_delay: float
) -> Iterator[list[Worker]]:
    """``count`` worker processes, started at once; every one is stopped (SIGTERM, then
    SIGKILL) on the way out, whatever happened."""
    workers: list[Worker] = []
    opened: list[TextIO] = []
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    try:
        for index in range(count):
            log = logs / f"worker-{index}.log"
            stderr = log.open("w")
            opened.append(stderr)
            command = [sys.executable, "-m", "tests.fleet_worker", "--redis", redis_url]
            command += ["--api-url", api_url, "--api-key", API_KEY, "--secret", SECRET]
            command += ["--prefix", prefix, "--worker-timeout", str(WORKER_TIMEOUT)]
            command += ["--heartbeat", str(HEARTBEAT), "--answer-delay", str(answer_delay)]
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
            workers.append(Worker(index, process, log))
        deadline = time.monotonic() + READY_WAIT
        for worker in workers:
            worker.port = _read_ready(worker, deadline)
        yield workers
    finally:
        for worker in workers:
            if worker.alive:
                worker.process.terminate()
        for worker in workers:
            try:
                worker.process.wait(15)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait(5)
            if worker.process.stdout is not None:
                worker.process.stdout.close()
        for stream in opened:
            stream.close()


# -- what the fake saw --------------------------------------------------------------------


def _event(delivery: WebhookDelivery) -> tuple[str, str] | None:
    calls = delivery.value.get("calls")
    if not calls:
        return None
    return str(calls[0]["id"]), str(calls[0]["event"])


def _deliveries_of(fake: FakeCallingAPI, call_id: str, event: str) -> list[WebhookDelivery]:
    return [d for d in fake.webhooks if _event(d) == (call_id, event)]


def _wait(what: str, predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(POLL)


def _settled(fake: FakeCallingAPI, workers: Sequence[Worker]) -> None:
    """Every webhook delivered (or given up) and every live worker done with its callbacks
    (a dead worker's, once taken over, too)."""
    fake.wait_for_webhooks(SETTLE_WAIT)
    _wait(
        "the workers' callbacks to finish",
        lambda: all(w.stats()["pending"] == 0 for w in workers if w.alive),
        SETTLE_WAIT,
    )


class _Listener:
    """The listener of the state the test reads Redis with: what a newcomer to the fleet
    would be given to act on (nothing, once the fleet is done)."""

    def __init__(self) -> None:
        self.taken: list[tuple[str, bytes]] = []

    def heard(self, payload: bytes) -> None:
        return None  # it watches nothing

    def recovered(self, payloads: Sequence[tuple[str, bytes]]) -> None:
        self.taken += payloads


async def _read_redis(
    redis_url: str, prefix: str, call_ids: Sequence[str]
) -> tuple[dict[str, CallRecord | None], list[str], list[tuple[str, bytes]]]:
    """The records of ``call_ids`` as the fleet's state holds them, the names of the work
    hashes still holding unfinished events, and what a newcomer would take over."""
    import redis.asyncio as aioredis

    from d360calling.fleet import RedisState

    listener = _Listener()
    state = RedisState(
        redis_url,
        prefix=prefix,
        worker="test-reader",
        worker_timeout=WORKER_TIMEOUT,
        heartbeat_interval=HEARTBEAT,
    )
    await state.start(listener)
    try:
        records = {call_id: await state.record(call_id) for call_id in call_ids}
    finally:
        await state.close()
    client = aioredis.Redis.from_url(redis_url)
    try:
        unfinished = [
            key.decode()
            async for key in client.scan_iter(match=f"{prefix}:v*:w:*", count=1000)
            if await client.hlen(key)
        ]
    finally:
        await client.aclose()
    return records, unfinished, listener.taken


# -- the scenario -------------------------------------------------------------------------


@attrs.define
class Figures:
    calls: int
    stale_calls: int
    seconds: float = 0.0
    deliveries: int = 0
    copies: int = 0
    retried: int = 0  # deliveries that took more than one attempt
    killed: int | None = None
    killed_after_ended: int = 0
    killed_at: float = 0.0  # time.time()
    taken_over_after: float | None = None  # seconds from the kill to the takeover
    per_worker: list[dict[str, Any]] = attrs.field(factory=list)
    extra_answer_tries: int = 0

    def show(self, title: str) -> None:
        print(f"\n{title}")
        print(
            f"  {self.calls:,} calls (+{self.stale_calls} ended before their connect) over in "
            f"{self.seconds:.1f} s; {self.deliveries:,} deliveries, {self.copies:,} of them "
            f"copies of another (the fake's duplicates), {self.retried:,} retried"
        )
        if self.killed is not None:
            after = "-" if self.taken_over_after is None else f"{self.taken_over_after:.1f} s"
            print(
                f"  worker {self.killed} SIGKILLed once {self.killed_after_ended} calls had "
                f"ended; its work taken over {after} later; calls with extra answer tries "
                f"(reruns of taken-over work): {self.extra_answer_tries}"
            )
        print("  worker | received | duplicates dropped | stale | taken over | accepted")
        for row in self.per_worker:
            print(
                f"  {row['index']}{' (killed)' if row['killed'] else ''} | {row['received']} | "
                f"{row['duplicates']} | {row['stale']} | {row['recovered']} | {row['accepted']}"
            )


@attrs.define
class Run:
    """What a run left: the fake (stopped), the workers (stopped) with their last stats,
    the webhooks sent, the calls as the fake saw them, the main and the stale call ids."""

    fake: FakeCallingAPI
    workers: list[Worker]
    prefix: str
    figures: Figures
    sent: list[WebhookDelivery]  # every webhook sent to the fleet (copies included)
    seen: dict[str, FakeCall] = attrs.field(factory=dict)
    main: list[str] = attrs.field(factory=list)
    stale: list[str] = attrs.field(factory=list)
    victim: Worker | None = None


def run_fleet(
    redis_url: str,
    logs: Path,
    *,
    calls: int,
    stale_calls: int,
    kill_after: float | None = None,
    rate: float = 150.0,
    answer_delay: float = 0.0,
    seed: int = 360,
) -> Run:
    """Run the scenario. ``stale_calls`` calls end before their connect reaches the fleet
    (their terminate is delivered and applied first); then ``calls`` calls are placed at
    ``rate`` a second, and with ``kill_after`` worker 1 is SIGKILLed once that share of them
    has ended and while it is answering calls (each answer takes ``answer_delay`` seconds
    between pre-accept and accept)."""
    prefix = f"fleet-{os.getpid()}-{seed}"
    figures = Figures(calls, stale_calls)
    fake = FakeCallingAPI(
        api_key=API_KEY,
        webhook_urls=None,  # set once the workers run
        webhook_concurrency=32,
        fleet_delivery=FleetDelivery(duplicate=0.2, out_of_order=0.1, seed=seed),
        webhook_signing_secret=SECRET,
        webhook_retries=8,
        answer_window=600.0,
        max_concurrent_calls=calls + stale_calls + 10,
        max_recorded_requests=None,
        max_recorded_webhooks=None,
        max_recorded_calls=None,
    )
    with (
        fake,
        running_workers(
            WORKERS,
            redis_url=redis_url,
            api_url=fake.url,
            prefix=prefix,
            logs=logs,
            answer_delay=answer_delay,
        ) as workers,
    ):
        # Calls that end before anything reaches the fleet: their webhooks are only recorded
        # (no URL yet); their terminates are delivered first, their connects later.
        stale = []
        for i in range(stale_calls):
            call = fake.user_calls(f"4917{i:09d}")
            fake.user_hangs_up(call.id)
            stale.append(call.id)
        unsent = {id(delivery) for delivery in fake.webhooks}
        fake.webhook_urls = [worker.url for worker in workers]
        for call_id in stale:
            fake.redeliver(_deliveries_of(fake, call_id, "terminate")[0])
        _settled(fake, workers)  # every terminate applied: the calls ended fleet-wide
        for call_id in stale:
            fake.redeliver(_deliveries_of(fake, call_id, "connect")[0])

        main: list[str] = []
        users = [f"4915{i:09d}" for i in range(calls)]
        started = time.monotonic()
        deadline = started + RUN_WAIT
        victim = workers[1] if kill_after is not None else None

        def over() -> int:
            known = fake.calls
            return sum(1 for call_id in main if known[call_id].state is CallState.ENDED)

        while True:
            now = time.monotonic()
            due = min(calls, int((now - started) * rate) + 1)
            while len(main) < due:
                main.append(fake.user_calls(users[len(main)]).id)
            ended = over()
            if (
                victim is not None
                and kill_after is not None
                and victim.alive
                and ended >= kill_after * calls
                and victim.stats()["pending"] > 0  # killed with work in hand
            ):
                victim.process.send_signal(signal.SIGKILL)
                victim.process.wait(10)
                figures.killed, figures.killed_after_ended = victim.index, ended
                figures.killed_at = time.time()
            if len(main) == calls and ended == calls:
                break
            if now > deadline:
                raise AssertionError(
                    f"{calls - ended} of {calls} calls not over after {RUN_WAIT:g} s "
                    f"(placed {len(main)}); worker logs:\n"
                    + "\n".join(w.tail()[-1500:] for w in workers)
                )
            time.sleep(POLL)
        figures.seconds = time.monotonic() - started
        _settled(fake, workers)
        for worker in workers:
            if worker.alive:
                worker.stats()
        seen = fake.calls
        deliveries = [d for d in fake.webhooks if id(d) not in unsent]
        figures.deliveries = len(deliveries)
        figures.copies = len(deliveries) - len({d.body for d in deliveries})
        figures.retried = sum(1 for d in deliveries if d.attempts > 1)
        if victim is not None:
            taken = [_logged_at(line) for w in workers for line in _takeovers(w)]
            if taken:
                figures.taken_over_after = min(taken) - figures.killed_at
        for worker in workers:
            stats = worker.last_stats
            figures.per_worker.append(
                {
                    "index": worker.index,
                    "killed": worker is victim,
                    "received": stats["stats"]["received"],
                    "duplicates": stats["stats"]["duplicates"],
                    "stale": stats["stats"]["stale"],
                    "recovered": stats["stats"]["recovered"],
                    "accepted": stats["bot"]["accepted"],
                }
            )
        return Run(fake, workers, prefix, figures, deliveries, seen, main, stale, victim)


def check_records(redis_url: str, prefix: str, fake_calls: dict[str, FakeCall]) -> None:
    """Every call's record in Redis: ended, inbound, the caller's number, and its events
    ``connect`` and ``terminate`` once each; no work left unfinished."""
    records, unfinished, taken = asyncio.run(_read_redis(redis_url, prefix, list(fake_calls)))
    assert unfinished == [], "work left unfinished in Redis"
    assert taken == [], "a newcomer found dead workers' work to take over"
    wrong: dict[str, object] = {}
    for call_id, call in fake_calls.items():
        record = records[call_id]
        expected = (True, "USER_INITIATED", call.user, ("connect", "terminate"))
        if record is None:
            wrong[call_id] = None
            continue
        got = (record.ended, record.direction, record.user, record.events)
        if got != expected:
            wrong[call_id] = got
    assert not wrong, f"{len(wrong)} records wrong, e.g. {next(iter(wrong.items()))}"


def _check_deliveries(run: Run) -> None:
    undelivered = [d for d in run.sent if not d.delivered]
    assert not undelivered, f"{len(undelivered)} webhooks never delivered: {undelivered[:1]}"


# -- the tests ----------------------------------------------------------------------------


def _every_call_answered_once(redis_url: str, logs: Path, calls: int, stale_calls: int) -> None:
    run = run_fleet(redis_url, logs, calls=calls, stale_calls=stale_calls)
    workers, figures, seen, main, stale = run.workers, run.figures, run.seen, run.main, run.stale
    figures.show(f"fleet of {WORKERS}, {calls} calls, 20 % duplicated, 10 % out of order")
    _check_deliveries(run)
    # Each call tried once, fleet-wide: one pre-accept, one accept, one terminate.
    assert {c: seen[c].actions for c in main if seen[c].actions != ANSWERED} == {}
    for call_id in main:
        call = seen[call_id]
        assert call.connected_at is not None  # the accept succeeded
        assert call.end_reason is EndReason.TERMINATED  # by the bot, not the answer window
    # A connect whose call had ended (its terminate applied on some worker) is never acted on.
    assert {c: seen[c].actions for c in stale if seen[c].actions} == {}
    # Every copy of an event dropped as a duplicate by whichever worker got it second.
    acted = sum(
        w.last_stats["stats"]["events"] - w.last_stats["stats"]["duplicates"] for w in workers
    )
    assert acted == len({_event(d) for d in run.sent})
    assert sum(w.last_stats["stats"]["duplicates"] for w in workers) == figures.copies
    assert sum(w.last_stats["stats"]["stale"] for w in workers) >= stale_calls
    check_records(redis_url, run.prefix, {c: seen[c] for c in [*main, *stale]})


def test_a_small_fleet_answers_every_call_once(redis_url: str, tmp_path: Path) -> None:
    _every_call_answered_once(redis_url, tmp_path, calls=60, stale_calls=10)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_fleet_of_four_answers_a_thousand_calls_once_each(redis_url: str, tmp_path: Path) -> None:
    _every_call_answered_once(redis_url, tmp_path, calls=1_000, stale_calls=50)


def _nothing_lost_when_a_worker_dies(
    redis_url: str, logs: Path, calls: int, stale_calls: int, rate: float
) -> None:
    run = run_fleet(
        redis_url,
        logs,
        calls=calls,
        stale_calls=stale_calls,
        kill_after=0.3,
        rate=rate,
        answer_delay=0.3,
    )
    workers, figures, seen, main, stale = run.workers, run.figures, run.seen, run.main, run.stale
    survivors = [w for w in workers if w is not run.victim]
    taken_over = sum(w.last_stats["stats"]["recovered"] for w in survivors)
    extra = {c: seen[c].actions for c in main if seen[c].actions != ANSWERED}
    figures.extra_answer_tries = len(extra)
    figures.show(
        f"fleet of {WORKERS}, {calls} calls, one worker SIGKILLed after 30 % "
        f"({taken_over} events taken over)"
    )
    assert figures.killed == 1
    assert len(survivors) == WORKERS - 1
    assert taken_over > 0  # it was killed with calls in hand, and they were taken over
    _check_deliveries(run)
    for call_id in main:
        call = seen[call_id]
        # Accepted (once: the fake refuses a second accept) and hung up by the bot.
        assert call.connected_at is not None, (call_id, call.actions)
        assert call.end_reason is EndReason.TERMINATED, (call_id, call.actions)
        assert call.actions.count(CallAction.TERMINATE) >= 1
    # Tries beyond the one answer are reruns of events the dead worker held, no more.
    assert len(extra) <= taken_over, extra
    assert {c: seen[c].actions for c in stale if seen[c].actions} == {}
    # A rerun of a taken-over event applies it to its call's record again: the fold must be
    # idempotent, so the records are exact here too.
    check_records(redis_url, run.prefix, {c: seen[c] for c in [*main, *stale]})


def test_a_small_fleet_loses_nothing_when_a_worker_dies(redis_url: str, tmp_path: Path) -> None:
    _nothing_lost_when_a_worker_dies(redis_url, tmp_path, calls=150, stale_calls=10, rate=50.0)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_fleet_of_four_loses_nothing_when_a_worker_is_killed_mid_run(
    redis_url: str, tmp_path: Path
) -> None:
    _nothing_lost_when_a_worker_dies(redis_url, tmp_path, calls=1_000, stale_calls=50, rate=150.0)
