"""The soak: thousands of requests with random faults through both clients, then an audit.

``python -m tests.soak`` sends 20,000 requests through one ``AsyncClient`` at concurrency 256 and
20,000 through one ``Client`` shared by 16 threads, against the fake API in its own process,
which strikes 10% of the requests it receives with a fault picked at random (resets before and
after acting, mid-body resets, slow headers and bodies, 429s, 5xx with JSON, HTML and empty
bodies, truncated, non-JSON and oversized answers). ``--short`` (2,000 each) is what
``pytest -m slow`` runs.

Afterwards it audits each run and exits 1 if any check fails:

- every request ended exactly once, as a success or a typed ``D360Error``, inside its time bound;
- the server's records agree: each success took effect there exactly as reported, ``connect``
  never reached it twice, and it received exactly the attempts the client logged as sent;
- never more connections than the pool holds (the aiohttp connector's own count, sampled on the
  client's loop: see ``pooled``) and none still open after ``close()``, no pending tasks, no
  threads left after ``close()``, no unclosed-resource warnings, and RSS growth after warm-up
  within 2 MiB + 400 bytes per request.

``--report`` writes the tables into docs/reliability.md (when every check passes).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import collections
import gc
import json
import logging
import multiprocessing
import os
import platform
import random
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, MutableSequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import d360calling
from d360calling import AsyncClient, Client, D360Error, RetryPolicy, SettingsUpdate
from d360calling._portal import PORTAL
from d360calling.testing import (
    DEFAULT_API_KEY,
    FakeCallingAPI,
    Fault,
    sample_answer,
    sample_offer,
)

from .fault_matrix import RELIABILITY, ROOT, update_report

FULL_REQUESTS = 20_000
SHORT_REQUESTS = 2_000
CONCURRENCY = 256
THREADS = 16
FAULT_RATE = 0.10
POOL_SIZE = 100  # the client's default, stated so the socket check names its bound
TIMEOUT = 0.5
CONNECT_TIMEOUT = 1.0  # also the longest wait for a free connection in the pool
SLOW = 0.75  # slow headers and bodies: past TIMEOUT
MAX_RETRIES = 2
POLICY = RetryPolicy(initial_delay=0.01, max_delay=0.1, max_retry_after=1.0)
# The longest one request may take: every attempt waits as long as it may for a connection
# and then times out, and every pause between attempts is the longest allowed; plus 0.5 s for
# a machine busy with 256 requests at once.
REQUEST_BOUND = (
    (MAX_RETRIES + 1) * (CONNECT_TIMEOUT + TIMEOUT) + MAX_RETRIES * POLICY.max_retry_after + 0.5
)
CLIENT_OPTIONS: dict[str, Any] = {
    "api_key": DEFAULT_API_KEY,
    "timeout": TIMEOUT,
    "connect_timeout": CONNECT_TIMEOUT,
    "max_retries": MAX_RETRIES,
    "retry_policy": POLICY,
    "pool_size": POOL_SIZE,
}
WARM_UP = 0.1  # the share of requests sent before the RSS baseline is taken
# RSS may grow after warm-up by a little for the allocator, plus this much per request: a leak
# of anything per request (a response, a task, a connection) is larger.
RSS_GROWTH_BASE = 2 * 1024 * 1024
RSS_GROWTH_PER_REQUEST = 400
HTML = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
OFFER = sample_offer("soak")

FAULTS: tuple[tuple[str, Fault], ...] = (
    ("reset before the response", Fault(drop="before")),
    ("reset after the server acted", Fault(drop="after")),
    ("reset mid-body", Fault(truncate=True)),
    ("slow headers", Fault(delay=SLOW)),
    ("slow body", Fault(slow_body=SLOW)),
    ("429, Retry-After: 0", Fault.error(130429, retry_after=0)),
    ("429, Retry-After: 1 day", Fault.error(130429, retry_after=86_400)),
    ("360dialog rate-limit 400", Fault.rate_limited()),
    ("500, JSON", Fault.error(138004)),
    ("502, HTML", Fault(status=502, body=HTML, content_type="text/html")),
    ("503, empty", Fault(status=503, body=b"")),
    ("504, JSON", Fault(status=504, json={"error": "Gateway Timeout"})),
    ("200, truncated JSON", Fault(body=b'{"messaging_product": "whats')),
    ("200, HTML", Fault(status=200, body=HTML, content_type="text/html")),
    ("200, 5 MiB body", Fault(status=200, body=b" " * (5 * 1024 * 1024))),
)

# Shares of the workload; connect and the answer-side actions are the ones that must not repeat.
MIX = {
    "connect": 4,
    "pre_accept": 3,
    "accept": 3,
    "reject": 2,
    "terminate": 2,
    "permissions": 3,
    "get_settings": 2,
    "update_settings": 1,
}
NEEDS_RINGING = ("pre_accept", "accept", "reject")


@dataclass(frozen=True)
class Job:
    index: int
    kind: str
    target: str  # the user (connect, permissions) or the call id; "" for settings

    @property
    def key(self) -> str:
        """How the server's records name this request (see ``_summarise``)."""
        return f"{self.kind}:{self.target}" if self.target else self.kind


@dataclass
class Run:
    """One client's soak: what it sent, what came back, and what was left behind."""

    name: str
    jobs: list[Job]
    outcomes: list[str | None]  # "ok" or the exception's class name
    connected: dict[int, str]  # job index -> the call id a successful connect returned
    finished: list[int]  # how many times each job ended (must be once)
    # Seconds each job took; an array, so recording one allocates nothing (RSS is measured).
    durations: MutableSequence[float]
    attempts: int = 0  # log lines: one per attempt
    unsent: int = 0  # attempts that certainly never reached the server (no connection)
    seconds: float = 0.0
    peak_sockets: int = 0
    idle_sockets: int | None = None
    sockets_after_close: int | None = None
    pending_tasks: int = 0
    extra_threads: list[str] = field(default_factory=list)
    rss_warm: int = 0
    rss_end: int = 0
    warnings: list[str] = field(default_factory=list)
    server: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.jobs)


# -- the fake, in its own process -------------------------------------------------------


def _serve_fake(inbox: Connection, outbox: Connection, plan: dict[str, Any]) -> None:
    """The child process: a fake API with room for the whole workload and random faults."""
    with FakeCallingAPI(
        answer_window=3600.0,
        connected_call_limit=10**6,
        max_concurrent_calls=10**7,
        permission_reads_per_second=10**7,
        max_recorded_requests=None,  # the audit reads every request, and every call
        max_recorded_bytes=None,
        max_recorded_calls=None,
    ) as fake:
        for user in plan["permitted"]:
            fake.grant_permission(user, notify=False)
        ringing = [fake.user_calls(user).id for user in plan["callers"]]
        answered = [fake.user_calls(user).id for user in plan["answered_callers"]]
        with fake.client() as client:
            for call_id in answered:
                client.accept_call(call_id, sample_answer(call_id))
        fake.requests.clear()  # the audit counts the soak's requests only
        chaos = fake.inject_random(
            *(fault for _, fault in FAULTS), rate=plan["fault_rate"], seed=plan["seed"]
        )
        outbox.send({"url": fake.url, "ringing": ringing, "answered": answered})
        inbox.recv()  # the client is done
        outbox.send(_summarise(fake, chaos.seen, chaos.hits))


def _summarise(fake: FakeCallingAPI, seen: int, hits: list[int]) -> dict[str, Any]:
    received: collections.Counter[str] = collections.Counter()
    for request in fake.requests:
        if request.path == "/calling/calls":
            body = request.json
            target = body.get("to") if body["action"] == "connect" else body["call_id"]
            received[f"{body['action']}:{target}"] += 1
        elif request.path.startswith("/calling/permissions/"):
            received[f"permissions:{request.path.rsplit('/', 1)[1]}"] += 1
        elif request.method == "GET":
            received["get_settings"] += 1
        else:
            received["update_settings"] += 1
    calls = {
        call.id: {
            "user": call.user,
            "direction": call.direction,
            "state": call.state,
            "end_reason": call.end_reason,
        }
        for call in fake.calls.values()
    }
    return {
        "received": dict(received),
        "calls": calls,
        "faults_seen": seen,
        "fault_hits": {name: n for (name, _), n in zip(FAULTS, hits, strict=True)},
    }


class FakeProcess:
    """The fake API in a child process: the client's process then holds only client sockets,
    and the server's CPU is not the client's."""

    def __init__(self, plan: dict[str, Any]) -> None:
        context = multiprocessing.get_context("spawn")
        # One-way pipes are OS pipes, not sockets: they never count as the client's sockets.
        child_in, self._to_child = context.Pipe(duplex=False)
        self._from_child, child_out = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_serve_fake, args=(child_in, child_out, plan), daemon=True
        )
        self._process.start()
        child_in.close()
        child_out.close()
        self.ready = self._receive("start")
        self.url: str = self.ready["url"]
        self.port = int(self.url.rsplit(":", 1)[1])

    def finish(self) -> dict[str, Any]:
        self._to_child.send("done")
        summary = self._receive("report")
        self._process.join(30)
        self._to_child.close()
        self._from_child.close()
        return summary

    def _receive(self, what: str) -> dict[str, Any]:
        try:
            if self._from_child.poll(120):
                message: dict[str, Any] = self._from_child.recv()
                return message
        except EOFError:
            pass  # the child died; its traceback is on stderr
        self._process.kill()
        self._process.join(5)
        raise RuntimeError(
            f"the fake API process did not {what} (exit code {self._process.exitcode})"
        )


# -- the workload ----------------------------------------------------------------------


def _workload(requests: int, seed: int) -> tuple[list[str], dict[str, Any]]:
    """The kinds of ``requests`` jobs in a shuffled order, and the fake's set-up for them."""
    weights = sum(MIX.values())
    kinds = [kind for kind, share in MIX.items() for _ in range(requests * share // weights)]
    kinds += ["get_settings"] * (requests - len(kinds))
    random.Random(seed).shuffle(kinds)
    counts = collections.Counter(kinds)
    base = 491_700_000_000
    plan = {
        "permitted": [str(base + i) for i in range(counts["connect"])],
        "callers": [str(base + 10**7 + i) for i in range(sum(counts[k] for k in NEEDS_RINGING))],
        "answered_callers": [str(base + 2 * 10**7 + i) for i in range(counts["terminate"])],
    }
    return kinds, plan


def _jobs(kinds: list[str], plan: dict[str, Any], ready: dict[str, Any]) -> list[Job]:
    targets = {
        "connect": iter(plan["permitted"]),
        "terminate": iter(ready["answered"]),
        "permissions": (str(493_000_000_000 + i) for i in range(len(kinds))),
    }
    ringing = iter(ready["ringing"])
    for kind in NEEDS_RINGING:
        targets[kind] = ringing
    return [
        Job(i, kind, next(targets[kind]) if kind in targets else "") for i, kind in enumerate(kinds)
    ]


def _request(client: Any, job: Job) -> Any:
    """The client call for ``job`` (a coroutine for ``AsyncClient``)."""
    target = job.target
    if job.kind == "connect":
        return client.connect_call(target, OFFER)
    if job.kind == "pre_accept":
        return client.pre_accept_call(target, sample_answer(target))
    if job.kind == "accept":
        return client.accept_call(target, sample_answer(target))
    if job.kind == "reject":
        return client.reject_call(target)
    if job.kind == "terminate":
        return client.terminate_call(target)
    if job.kind == "permissions":
        return client.get_call_permissions(target)
    if job.kind == "get_settings":
        return client.get_settings()
    return client.update_settings(SettingsUpdate.status("ENABLED"))


def _record(run: Run, job: Job, result: Any, error: BaseException | None, took: float) -> None:
    run.finished[job.index] += 1
    run.durations[job.index] = took
    if error is None:
        run.outcomes[job.index] = "ok"
        if job.kind == "connect":
            run.connected[job.index] = result.call_id
    else:
        typed = isinstance(error, D360Error)
        run.outcomes[job.index] = type(error).__name__ if typed else f"UNTYPED {error!r}"


# -- measuring -------------------------------------------------------------------------


def _rss() -> int:
    gc.collect()
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource  # not Linux: the peak is the best there is

    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def pooled(client: AsyncClient) -> list[Any]:
    """The connections ``client``'s aiohttp pool holds: in use (or being opened) and idle.

    This is the pool's own bookkeeping, not the OS's: /proc still lists a socket that was
    aborted this loop tick, so a full pool of 100 once read as 102. It reads private state of
    our transport (``_session``) and of aiohttp's ``BaseConnector`` (``_acquired``: handed
    out, placeholders for ones being opened included; ``_conns``: idle ones per host, as
    ``(protocol, released_at)``; aiohttp 3.10-3.14). The connector is not thread-safe: call
    this on the client's own loop.
    """
    session = client._transport._session
    connector = None if session is None else session.connector
    if connector is None:
        return []
    idle = [protocol for conns in connector._conns.values() for protocol, _ in conns]
    return [*connector._acquired, *idle]


def _still_connected(protocols: list[Any]) -> int:
    """How many of ``protocols`` (from :func:`pooled`) still have an open transport."""
    return sum(bool(getattr(p, "is_connected", lambda: False)()) for p in protocols)


class PoolSampler:
    """Samples the size of a client's pool every ``every`` seconds, on the client's loop."""

    def __init__(self, client: AsyncClient, every: float = 0.02) -> None:
        self.client, self.every, self.peak = client, every, 0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Call on the client's loop."""
        self._tick()

    def stop(self) -> None:
        """Call on the client's loop; takes a last sample."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.peak = max(self.peak, len(pooled(self.client)))

    def _tick(self) -> None:
        self.peak = max(self.peak, len(pooled(self.client)))
        self._handle = asyncio.get_running_loop().call_later(self.every, self._tick)


async def _on_loop(client: AsyncClient, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on the sync Client's loop (``Client._run`` passes its AsyncClient first)."""
    return fn()


class AttemptCounter(logging.Handler):
    """Counts the client's attempt log lines (one per attempt) without formatting them.
    ``emit`` runs under the handler's lock."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = self.unsent = 0

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "d360_attempt"):
            self.count += 1
            self.unsent += not getattr(record, "d360_sent", True)


class ErrorCounter(logging.Handler):
    """Errors asyncio logs on its own ("Unclosed client session", "Task was destroyed")."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


# -- the two runs ----------------------------------------------------------------------


async def _async_run(run: Run, url: str, concurrency: int) -> None:
    loop = asyncio.get_running_loop()
    client = AsyncClient(base_url=url, **CLIENT_OPTIONS)
    sampler = PoolSampler(client)
    sampler.start()

    async def worker(jobs: Iterator[Job]) -> None:
        for job in jobs:
            started = loop.time()
            try:
                result = await _request(client, job)
            except Exception as exc:
                _record(run, job, None, exc, loop.time() - started)
            else:
                _record(run, job, result, None, loop.time() - started)

    async def send(jobs: list[Job]) -> None:
        shared = iter(jobs)  # every worker takes the next job; each job is taken once
        await asyncio.gather(*(worker(shared) for _ in range(concurrency)))

    warm = int(len(run.jobs) * WARM_UP)
    started = time.perf_counter()
    await send(run.jobs[:warm])
    run.rss_warm = _rss()
    await send(run.jobs[warm:])
    run.seconds = time.perf_counter() - started
    run.rss_end = _rss()
    sampler.stop()
    run.peak_sockets = sampler.peak
    connections = pooled(client)
    run.idle_sockets = len(connections)
    await client.aclose()
    run.sockets_after_close = len(pooled(client)) + _still_connected(connections)
    run.pending_tasks = len(asyncio.all_tasks() - {asyncio.current_task()})


def _sync_run(run: Run, url: str, threads: int) -> None:
    client = Client(base_url=url, **CLIENT_OPTIONS)
    lock = threading.Lock()
    sampler = PoolSampler(client._async)
    client._run(_on_loop, sampler.start)  # the pool lives on the Client's own loop

    def worker(jobs: Iterator[Job]) -> None:
        while True:
            with lock:
                job = next(jobs, None)
            if job is None:
                return
            started = time.perf_counter()
            try:
                result = _request(client, job)
            except Exception as exc:
                _record(run, job, None, exc, time.perf_counter() - started)
            else:
                _record(run, job, result, None, time.perf_counter() - started)

    def send(jobs: list[Job]) -> None:
        shared = iter(jobs)
        pool = [threading.Thread(target=worker, args=(shared,)) for _ in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()

    warm = int(len(run.jobs) * WARM_UP)
    started = time.perf_counter()
    send(run.jobs[:warm])
    run.rss_warm = _rss()
    send(run.jobs[warm:])
    run.seconds = time.perf_counter() - started
    run.rss_end = _rss()
    client._run(_on_loop, sampler.stop)
    run.peak_sockets = sampler.peak
    connections: list[Any] = client._run(_on_loop, lambda: pooled(client._async))
    run.idle_sockets = len(connections)
    run.pending_tasks = _portal_tasks()
    client.close()  # its loop has stopped: the transports' state can be read from here
    run.sockets_after_close = len(pooled(client._async)) + _still_connected(connections)


def _portal_tasks() -> int:
    """Tasks on the sync client's private loop, counted on that loop (it is not thread-safe)."""
    loop = PORTAL._loop
    if loop is None:
        return 0

    async def count() -> int:
        return len(asyncio.all_tasks() - {asyncio.current_task()})

    return asyncio.run_coroutine_threadsafe(count(), loop).result(10)


def soak(
    kind: str,
    requests: int,
    seed: int,
    *,
    concurrency: int = CONCURRENCY,
    threads: int = THREADS,
    fault_rate: float = FAULT_RATE,
) -> Run:
    """One audited run through ``AsyncClient`` (``kind="async"``) or ``Client`` (``"sync"``)."""
    kinds, plan = _workload(requests, seed)
    fake = FakeProcess({**plan, "fault_rate": fault_rate, "seed": seed})
    jobs = _jobs(kinds, plan, fake.ready)
    name = f"AsyncClient x{concurrency}" if kind == "async" else f"Client, {threads} threads"
    run = Run(
        name, jobs, [None] * len(jobs), {}, [0] * len(jobs), array.array("d", bytes(8 * len(jobs)))
    )
    threads_before = set(threading.enumerate())
    attempts, asyncio_errors = AttemptCounter(), ErrorCounter()
    library_log = logging.getLogger("d360calling")
    wire_log = logging.getLogger("d360calling.wire")
    saved = library_log.level, library_log.propagate, wire_log.level
    library_log.setLevel(logging.DEBUG)  # successes log at DEBUG; count those too
    library_log.propagate = False
    wire_log.setLevel(logging.WARNING)  # request bodies are not part of the count
    library_log.addHandler(attempts)
    logging.getLogger("asyncio").addHandler(asyncio_errors)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if kind == "async":
                asyncio.run(_async_run(run, fake.url, concurrency))
            else:
                _sync_run(run, fake.url, threads)
            gc.collect()  # anything left unclosed warns when it is collected
        run.warnings = [str(w.message) for w in caught] + asyncio_errors.messages
    finally:
        library_log.removeHandler(attempts)
        logging.getLogger("asyncio").removeHandler(asyncio_errors)
        library_log.setLevel(saved[0])
        library_log.propagate = saved[1]
        wire_log.setLevel(saved[2])
    run.attempts, run.unsent = attempts.count, attempts.unsent
    run.extra_threads = sorted(t.name for t in set(threading.enumerate()) - threads_before)
    run.server = fake.finish()
    run.problems = audit(run)
    return run


# -- the audit -------------------------------------------------------------------------

_SUCCESS_STATE = {
    "pre_accept": ("pre_accepted", None),
    "accept": ("accepted", None),
    "reject": ("ended", "rejected"),
    "terminate": ("ended", "terminated"),
}


def audit(run: Run) -> list[str]:
    """Everything the run got wrong (empty: nothing)."""
    problems: list[str] = []
    received: dict[str, int] = dict(run.server.get("received", {}))
    calls: dict[str, dict[str, Any]] = run.server.get("calls", {})
    connects_by_user: dict[str, list[str]] = collections.defaultdict(list)
    for call_id, call in calls.items():
        if call["direction"] == "BUSINESS_INITIATED":
            connects_by_user[call["user"]].append(call_id)

    def problem(text: str) -> None:
        if len(problems) < 50:
            problems.append(text)

    keyed = collections.Counter(job.key for job in run.jobs if job.target)
    for job in run.jobs:
        ended, outcome = run.finished[job.index], run.outcomes[job.index]
        if ended != 1:
            problem(f"job {job.index} ({job.kind}) ended {ended} times")
            continue
        assert outcome is not None
        if outcome.startswith("UNTYPED"):
            problem(f"job {job.index} ({job.kind}) raised {outcome[8:]}")
        if run.durations[job.index] > REQUEST_BOUND:
            problem(
                f"job {job.index} ({job.kind}) took {run.durations[job.index]:.2f} s, "
                f"over its bound of {REQUEST_BOUND:.2f} s"
            )
        if not job.target:
            continue
        sent = received.get(job.key, 0)
        if sent > (1 if job.kind == "connect" else MAX_RETRIES + 1):
            problem(f"job {job.index}: {job.kind} reached the server {sent} times")
        if outcome != "ok":
            continue
        if sent == 0:
            problem(f"job {job.index}: {job.kind} succeeded but never reached the server")
        if job.kind == "connect":
            placed = connects_by_user.get(job.target, [])
            if placed != [run.connected.get(job.index)]:
                problem(
                    f"job {job.index}: connect returned {run.connected.get(job.index)}, "
                    f"the server placed {placed}"
                )
        elif job.kind in _SUCCESS_STATE:
            call = calls.get(job.target, {})
            state = (call.get("state"), call.get("end_reason"))
            if state != _SUCCESS_STATE[job.kind]:
                problem(f"job {job.index}: {job.kind} succeeded but the call is {state}")
    for user, placed in connects_by_user.items():
        if len(placed) > 1:
            problem(f"{len(placed)} calls placed to {user}")
    strays = set(received) - set(keyed) - {"get_settings", "update_settings"}
    if strays:
        problem(f"the server received requests no job made: {sorted(strays)[:5]}")
    total = sum(received.values())
    if total != run.attempts - run.unsent:
        problem(
            f"the server received {total} requests; the client logged "
            f"{run.attempts - run.unsent} attempts that went out"
        )
    if run.peak_sockets > POOL_SIZE:
        problem(f"{run.peak_sockets} sockets open at once; the pool holds {POOL_SIZE}")
    if run.idle_sockets is not None and run.idle_sockets > POOL_SIZE:
        problem(f"{run.idle_sockets} sockets open while idle; the pool holds {POOL_SIZE}")
    if run.sockets_after_close:
        problem(f"{run.sockets_after_close} sockets still open after close()")
    if run.pending_tasks:
        problem(f"{run.pending_tasks} tasks pending")
    if run.extra_threads:
        problem(f"threads left after close(): {run.extra_threads}")
    if run.warnings:
        problem(f"warnings: {run.warnings[:5]}")
    growth = run.rss_end - run.rss_warm
    if growth > _rss_bound(run):
        problem(f"RSS grew by {_mib(growth)} after warm-up, over {_mib(_rss_bound(run))}")
    return problems


# -- the report ------------------------------------------------------------------------


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def _rss_bound(run: Run) -> int:
    return RSS_GROWTH_BASE + RSS_GROWTH_PER_REQUEST * run.requests


def table(runs: list[Run]) -> str:
    def row(label: str, value: Callable[[Run], object]) -> str:
        return f"| {label} | " + " | ".join(str(value(r)) for r in runs) + " |"

    def errors(run: Run) -> str:
        counts = collections.Counter(o for o in run.outcomes if o not in ("ok", None))
        return ", ".join(f"{name} {n:,}" for name, n in counts.most_common()) or "none"

    def struck_after_acting(run: Run) -> int:
        """Requests that failed although the server acted (the user learns from webhooks)."""
        calls = run.server["calls"]
        placed = {c["user"] for c in calls.values() if c["direction"] == "BUSINESS_INITIATED"}
        count = 0
        for job in run.jobs:
            if run.outcomes[job.index] == "ok":
                continue
            if job.kind == "connect" and job.target in placed:
                count += 1
            elif job.kind in _SUCCESS_STATE:
                state = calls.get(job.target, {})
                if (state.get("state"), state.get("end_reason")) == _SUCCESS_STATE[job.kind]:
                    count += 1
        return count

    lines = [
        "| | " + " | ".join(r.name for r in runs) + " |",
        "|---|" + "---:|" * len(runs),
        row("requests", lambda r: f"{r.requests:,}"),
        row("wall time", lambda r: f"{r.seconds:.1f} s ({r.requests / r.seconds:,.0f} req/s)"),
        row(
            "faults the server injected",
            lambda r: (
                f"{sum(r.server['fault_hits'].values()):,} of {r.server['faults_seen']:,} "
                f"requests ({sum(r.server['fault_hits'].values()) / r.server['faults_seen']:.1%})"
            ),
        ),
        row(
            "attempts logged (never sent) / received by the server",
            lambda r: f"{r.attempts:,} ({r.unsent:,}) / {sum(r.server['received'].values()):,}",
        ),
        row("succeeded", lambda r: f"{r.outcomes.count('ok'):,}"),
        row("typed errors", errors),
        row("… of which the server had acted", struck_after_acting),
        row(
            "untyped exceptions, lost or doubled results",
            lambda r: (
                sum(f != 1 for f in r.finished)
                + sum(str(o).startswith("UNTYPED") for o in r.outcomes)
            ),
        ),
        row(
            "`connect` reaching the server twice",
            lambda r: sum(
                n > 1 for k, n in r.server["received"].items() if k.startswith("connect:")
            ),
        ),
        row(
            "slowest request (bound)", lambda r: f"{max(r.durations):.2f} s ({REQUEST_BOUND:.1f} s)"
        ),
        row(
            "pooled connections: peak / idle / open after close (pool size)",
            lambda r: (
                f"{r.peak_sockets} / {r.idle_sockets} / {r.sockets_after_close} ({POOL_SIZE})"
            ),
        ),
        row("pending tasks", lambda r: r.pending_tasks),
        row("threads left after close", lambda r: len(r.extra_threads)),
        row(
            "RSS after warm-up → end (bound on growth)",
            lambda r: f"{_mib(r.rss_warm)} → {_mib(r.rss_end)} ({_mib(_rss_bound(r))})",
        ),
        row("unclosed-resource warnings", lambda r: len(r.warnings)),
        row("audit", lambda r: "pass" if not r.problems else f"{len(r.problems)} problems"),
    ]
    return "\n".join(lines) + "\n"


def fault_table(runs: list[Run]) -> str:
    lines = [
        "| fault | " + " | ".join(r.name for r in runs) + " |",
        "|---|" + "---:|" * len(runs),
    ]
    for name, _ in FAULTS:
        lines.append(
            f"| {name} | " + " | ".join(f"{r.server['fault_hits'][name]:,}" for r in runs) + " |"
        )
    return "\n".join(lines) + "\n"


def _machine() -> str:
    extras = [name for name in ("orjson", "uvloop") if _importable(name)]
    installed = f" with {' and '.join(extras)} installed" if extras else ""
    loops = (
        " (AsyncClient on asyncio's loop, Client's own loop on uvloop)"
        if "uvloop" in extras
        else ""
    )
    return (
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"d360calling {d360calling.__version__}{installed}{loops}"
    )


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.soak", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--short", action="store_true", help=f"{SHORT_REQUESTS:,} requests each")
    parser.add_argument("--requests", type=int, help="requests through each client")
    parser.add_argument("--seed", type=int, default=360)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--report",
        type=Path,
        nargs="?",
        const=RELIABILITY,
        metavar="PATH",
        help=f"if every check passes, write the tables into PATH ({RELIABILITY.relative_to(ROOT)})",
    )
    args = parser.parse_args(argv)
    requests = args.requests or (SHORT_REQUESTS if args.short else FULL_REQUESTS)
    runs = [soak("async", requests, args.seed), soak("sync", requests, args.seed + 1)]
    report = table(runs) + "\n" + fault_table(runs)
    print(report, end="")
    print(f"\n{_machine()}; seed {args.seed}")
    if args.json:
        args.json.write_text(json.dumps([_figures(r) for r in runs], indent=2))
    failed = [r for r in runs if r.problems]
    for run in failed:
        for text in run.problems:
            print(f"FAILED {run.name}: {text}")
    if args.report and not failed:
        command = "python -m tests.soak" + (f" --requests {requests}" if args.requests else "")
        update_report(args.report, "soak", f"`{command}` on {_machine()}:\n\n{report}")
        print(f"wrote {args.report}", file=sys.stderr)
    return 1 if failed else 0


def _figures(run: Run) -> dict[str, Any]:
    return {
        "name": run.name,
        "requests": run.requests,
        "seconds": run.seconds,
        "succeeded": run.outcomes.count("ok"),
        "errors": dict(collections.Counter(o for o in run.outcomes if o not in ("ok", None))),
        "attempts": run.attempts,
        "unsent": run.unsent,
        "server_received": sum(run.server["received"].values()),
        "fault_hits": run.server["fault_hits"],
        "slowest": max(run.durations),
        "peak_sockets": run.peak_sockets,
        "idle_sockets": run.idle_sockets,
        "sockets_after_close": run.sockets_after_close,
        "pending_tasks": run.pending_tasks,
        "extra_threads": run.extra_threads,
        "rss_warm": run.rss_warm,
        "rss_end": run.rss_end,
        "warnings": run.warnings,
        "problems": run.problems,
    }


if __name__ == "__main__":
    raise SystemExit(main())
