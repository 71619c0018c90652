"""One webhook receiver worker of a fleet, as a process: what ``tests/test_fleet.py`` starts
four of, and ``benchmarks/_fleet.py`` one, two or four of.

``python -m tests.fleet_worker --redis URL --api-url URL --api-key K --secret S --prefix P
[--worker-timeout 2 --heartbeat 0.5] [--memory] [--no-bot]``

It serves a :class:`~d360calling.webhooks.WebhookReceiver` (``signing_secret=S``, state on
Redis, or in memory with ``--memory``) at ``/webhook`` on 127.0.0.1, on a free port, and
prints ``READY <port>`` on stdout once it serves (nothing else goes to stdout: its logs go to
stderr). The bot answers each inbound call: ``pre_accept_call``, ``accept_call``, then
``terminate_call``, through an :class:`~d360calling.AsyncClient` on ``--api-url``, waiting
``--answer-delay`` seconds between pre-accept and accept as a media stack would;
``--no-bot`` leaves the callbacks empty (the benchmark measures the receiver and its state).

Routes besides ``/webhook``, for the test and the benchmark:

- ``GET /stats``: the receiver's stats, the bot's counts, the state's Redis round trips
  (``round_trips``, and ``round_trips_by_step``: those made by claims, by record updates and
  by the rest: finishing, heartbeats, dead-worker checks, watches);
- ``POST /arm?user=U&timeout=T``: start a ``wait_for_permission(U)``; answers once the wait
  is in effect (its watch confirmed). ``GET /waited``: when each wait ended
  (``time.monotonic()``, one clock for every process of the machine) and how.

SIGTERM closes it cleanly (callbacks get the receiver's close timeout); exit status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import hashlib
import logging
import re
import select
import signal
import sys
import time
from collections.abc import Awaitable, Sequence
from typing import IO, TypeVar

from aiohttp import web

from d360calling import AsyncClient
from d360calling.errors import APIError, APIStatusError
from d360calling.testing import sample_answer
from d360calling.webhooks import (
    CallConnectEvent,
    CallRecord,
    CallStatusEvent,
    CallTerminateEvent,
    EventClaim,
    ReceiverState,
    WebhookReceiver,
)

__all__ = ("WorkerNotReady", "main", "read_ready_port")

T = TypeVar("T")
CallEvent = CallConnectEvent | CallStatusEvent | CallTerminateEvent

_log = logging.getLogger("fleet_worker")
_STEP: contextvars.ContextVar[str] = contextvars.ContextVar("fleet_worker_step", default="other")
_ARM_TIMEOUT = 10.0  # seconds /arm waits for the wait to be in effect


class WorkerNotReady(RuntimeError):
    """A worker process exited, or did not print its READY line in time."""


def read_ready_port(stdout: IO[str], deadline: float) -> int:
    """The port a worker started with ``python -m tests.fleet_worker`` prints on its
    ``READY <port>`` line (read from the parent's side, until ``deadline`` on the
    ``time.monotonic()`` clock)."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise WorkerNotReady("did not start in time")
        readable, _, _ = select.select([stdout], [], [], left)
        if not readable:
            continue
        line = stdout.readline()
        if not line:
            raise WorkerNotReady("exited")
        if line.startswith("READY "):
            return int(line.split()[1])


def _metered_redis_state(
    url: str, prefix: str, worker_timeout: float, heartbeat: float
) -> ReceiverState:
    """A RedisState that also counts its round trips by the step that made them (a claim, a
    record update, anything else), so the benchmark can tell the hot path from the rest."""
    from d360calling.fleet import RedisState

    class MeteredRedisState(RedisState):
        by_step: dict[str, int]

        async def claim(self, body: bytes, claims: Sequence[EventClaim]) -> list[bool]:
            token = _STEP.set("claim")
            try:
                return await super().claim(body, claims)
            finally:
                _STEP.reset(token)

        async def apply(self, event: CallEvent) -> tuple[CallRecord | None, CallRecord]:
            token = _STEP.set("apply")
            try:
                return await super().apply(event)
            finally:
                _STEP.reset(token)

        async def _call(self, pending: Awaitable[T]) -> T:
            # The harness's meter: every round trip goes through here (see RedisState). A
            # task started inside a step (the shielded claim) inherits the step.
            step = _STEP.get()
            self.by_step[step] = self.by_step.get(step, 0) + 1
            return await super()._call(pending)

    state = MeteredRedisState(
        url, prefix=prefix, worker_timeout=worker_timeout, heartbeat_interval=heartbeat
    )
    state.by_step = {}
    return state


_FINGERPRINT = re.compile(r"a=fingerprint:sha-256 [0-9A-Fa-f:]+")


def fleet_answer(call_id: str, offer: str | None, fleet: str) -> str:
    """The fleet's SDP answer to a call: :func:`sample_answer`, with one DTLS fingerprint for
    the whole fleet (as when the workers share one media server) instead of this process's.
    The fake wants the accept's SDP to be the pre-accept's, so a worker that takes over a call
    pre-accepted by a dead one can accept it only with the same answer: with a certificate per
    process it could not."""
    digest = hashlib.sha256(f"d360calling fleet certificate: {fleet}".encode()).hexdigest()
    fingerprint = ":".join(digest[i : i + 2] for i in range(0, 64, 2)).upper()
    answer = sample_answer(call_id, offer=offer)
    return _FINGERPRINT.sub(f"a=fingerprint:sha-256 {fingerprint}", answer, count=1)


class Bot:
    """Answers every inbound call and hangs up: pre-accept, accept, terminate. Idempotent
    enough for a takeover's rerun: an action the API refuses (the call was accepted or ended
    meanwhile) is counted, and the call is still terminated."""

    def __init__(self, client: AsyncClient, fleet: str, answer_delay: float = 0.0) -> None:
        self.client = client
        self.fleet = fleet
        self.answer_delay = answer_delay
        self.counts = dict.fromkeys(
            ("connects", "pre_accepted", "accepted", "terminated", "refused", "errors"), 0
        )

    async def on_connect(self, event: CallConnectEvent) -> None:
        if not event.is_inbound:
            return
        self.counts["connects"] += 1
        call_id = event.call_id
        answer = fleet_answer(call_id, event.sdp, self.fleet)
        try:
            await self.client.pre_accept_call(call_id, answer)
            self.counts["pre_accepted"] += 1
            if self.answer_delay:
                await asyncio.sleep(self.answer_delay)  # as a media stack takes to connect
            await self.client.accept_call(call_id, answer)
            self.counts["accepted"] += 1
        except APIError as exc:
            self._refused("answer", call_id, exc)
        try:
            await self.client.terminate_call(call_id)
            self.counts["terminated"] += 1
        except APIError as exc:
            self._refused("terminate", call_id, exc)

    def _refused(self, step: str, call_id: str, exc: APIError) -> None:
        # Refused by the API (the call was accepted or ended meanwhile), or no answer at all.
        self.counts["refused" if isinstance(exc, APIStatusError) else "errors"] += 1
        _log.warning("%s of %s: %s: %s", step, call_id, type(exc).__name__, exc)


class Waits:
    """Permission waits started by ``POST /arm`` and how they ended."""

    def __init__(self, receiver: WebhookReceiver) -> None:
        self.receiver = receiver
        self.ended: dict[str, tuple[float, str]] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    async def arm(self, request: web.Request) -> web.Response:
        user = request.query.get("user", "")
        timeout = float(request.query.get("timeout", "30"))
        before = self.receiver.waiting
        task = asyncio.create_task(self._wait(user, timeout))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _ARM_TIMEOUT
        # The waiter is registered once its watch is confirmed: then a reply is heard.
        while self.receiver.waiting <= before and not task.done():
            if loop.time() > deadline:
                return web.Response(status=504, text="the wait did not start")
            await asyncio.sleep(0.001)
        if task.done():
            return web.Response(status=500, text=repr(task.exception()))
        return web.Response(text="armed")

    async def _wait(self, user: str, timeout: float) -> None:
        try:
            result = await self.receiver.wait_for_permission(user, timeout=timeout)
            outcome = str(result.outcome)
        except Exception as exc:
            outcome = f"error: {type(exc).__name__}: {exc}"
        self.ended[user] = (time.monotonic(), outcome)

    async def waited(self, _: web.Request) -> web.Response:
        return web.json_response(
            {user: {"at": at, "outcome": outcome} for user, (at, outcome) in self.ended.items()}
        )


async def serve(args: argparse.Namespace) -> int:
    state: ReceiverState | None = None
    if not args.memory:
        state = _metered_redis_state(args.redis, args.prefix, args.worker_timeout, args.heartbeat)
    client = AsyncClient(api_key=args.api_key, base_url=args.api_url)
    bot = Bot(client, args.prefix, args.answer_delay)
    receiver = WebhookReceiver(
        on_connect=None if args.no_bot else bot.on_connect,
        signing_secret=args.secret,
        state=state,
    )
    waits = Waits(receiver)
    app = receiver.app("/webhook")

    async def stats(_: web.Request) -> web.Response:
        used = receiver.state
        return web.json_response(
            {
                "worker": used.worker,
                "stats": receiver.stats,
                "pending": receiver.pending,
                "bot": bot.counts,
                "round_trips": getattr(used, "round_trips", 0),
                "round_trips_by_step": dict(getattr(used, "by_step", {})),
            }
        )

    app.router.add_get("/stats", stats)
    app.router.add_post("/arm", waits.arm)
    app.router.add_get("/waited", waits.waited)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    try:
        await runner.setup()  # starts the receiver's state: a wrong Redis URL fails here
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        sys.stdout.write(f"READY {port}\n")
        sys.stdout.flush()
        await stop.wait()
    finally:
        for task in list(waits.tasks):
            task.cancel()
        await runner.cleanup()  # the receiver's close: callbacks finish, the state closes
        await client.aclose()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fleet_worker")
    parser.add_argument("--redis", default="", help="the Redis URL (not with --memory)")
    parser.add_argument("--api-url", required=True, help="the (fake) API the bot calls")
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--secret", required=True, help="the webhooks' signing secret")
    parser.add_argument("--prefix", default="d360calling", help="the RedisState's key prefix")
    parser.add_argument("--worker-timeout", type=float, default=2.0)
    parser.add_argument("--heartbeat", type=float, default=0.5)
    parser.add_argument("--memory", action="store_true", help="in-memory state, no Redis")
    parser.add_argument("--no-bot", action="store_true", help="callbacks do nothing")
    parser.add_argument(
        "--answer-delay", type=float, default=0.0, help="seconds between pre-accept and accept"
    )
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    if not args.memory and not args.redis:
        parser.error("--redis URL is required (or --memory)")
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level,
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
    )
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
