"""``python -m benchmarks --fleet [--quick]`` (or ``python -m benchmarks._fleet``): a fleet of
webhook receiver workers on Redis (``d360calling.fleet.RedisState``) against one worker in
memory, in the same run.

For 1 worker in memory (the reference) and 1, 2 and 4 workers on one Redis
(``tests/fleet_worker.py --no-bot``: the receiver and its state, no bot), one load generator
(this process, an aiohttp client, ``--concurrency`` requests in flight) posts pre-signed,
distinct deliveries round-robin to the workers: the connect webhook of every call, then the
terminate of every call (as the fake API makes them), after a warm-up. It reports:

- **events/s**: events acknowledged and acted on (every worker done with its callbacks),
  over the time from the first post to then; **scaling efficiency** = events/s of 4 workers
  / (4 x events/s of 1);
- **ack latency** p50/p99 (post → 200) under that load, and idle (one request at a time);
- **Redis round trips per event**: from the workers' own count (``RedisState.round_trips``,
  split by step: the claim of a delivery and the update of a record are the hot path;
  finishing, heartbeats and dead-worker checks are not), cross-checked with Redis's
  ``INFO``: the scripts it ran (``EVALSHA``: a claim or a record update each) and
  ``total_commands_processed`` (which also counts the commands run inside the scripts);
- **cross-worker notification latency** p50/p99 with 4 workers: a ``wait_for_permission``
  on worker A, the user's reply delivered to worker B, the time from posting the reply to A's
  wait ending (``time.monotonic()``, one clock for every process on Linux).

Targets (exit 1 if one fails): at most 2 Redis round trips per event on the hot path,
Redis-backed 1-worker throughput at least 0.5x in-memory, notification p99 at most 100 ms.
Everything shares this machine's cores (the load generator, the workers and Redis; nothing
is pinned), which the output says. Needs the ``redis`` extra and ``redis-server`` on PATH.
Writes ``fleet.md`` and ``fleet.json`` (``fleet-quick.*`` with ``--quick``) to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from tests.fleet_worker import WorkerNotReady, read_ready_port

ROOT = Path(__file__).resolve().parent.parent
SECRET = "benchmark-fleet-secret"
API_KEY = "benchmark-fleet-key"
CONFIGS: tuple[tuple[str, int], ...] = (("memory", 1), ("redis", 1), ("redis", 2), ("redis", 4))
TARGET_ROUND_TRIPS = 2.0  # Redis round trips per event on the hot path, at most
TARGET_REDIS_VS_MEMORY = 0.5  # 1 worker on Redis vs 1 in memory, events/s, at least
TARGET_NOTIFY_P99_MS = 100.0
_START_WAIT = 60.0  # seconds for workers (or Redis) to start
_DRAIN_WAIT = 120.0  # seconds for the workers to finish what they acknowledged
_POST_ATTEMPTS = 50  # a delivery refused (503) is posted again, up to this many times
_HTTP_TIMEOUT = aiohttp.ClientTimeout(total=30)


# -- processes ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[tuple[str, int]]:
    """A redis-server of our own on a free loopback port, without persistence; stopped on
    the way out."""
    import redis

    executable = shutil.which("redis-server")
    if executable is None:
        raise SystemExit(
            "the fleet benchmark needs redis-server on PATH (apt install redis-server)"
        )
    port = _free_port()
    with open(workdir / "redis.log", "wb") as log:
        process = subprocess.Popen(
            [
                *(executable, "--port", str(port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(workdir)),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + _START_WAIT
        while True:
            try:
                with redis.Redis.from_url(url, socket_timeout=1) as client:
                    client.ping()
                break
            except redis.RedisError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


class Worker:
    def __init__(self, process: subprocess.Popen[str], log: Path) -> None:
        self.process = process
        self.log = log
        self.port = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def read_ready(self, deadline: float) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        try:
            self.port = read_ready_port(stdout, deadline)
        except WorkerNotReady as exc:
            raise RuntimeError(f"a worker {exc}:\n{self.tail()}") from None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""


@contextlib.contextmanager
def workers(
    count: int, *, kind: str, redis_url: str, prefix: str, logs: Path
) -> Iterator[list[Worker]]:
    """``count`` worker processes without the bot; every one stopped on the way out."""
    started: list[Worker] = []
    opened: list[TextIO] = []
    path = os.environ.get("PYTHONPATH")
    env = dict(os.environ, PYTHONPATH=str(ROOT) if not path else f"{ROOT}{os.pathsep}{path}")
    try:
        for index in range(count):
            log = logs / f"{prefix}-{index}.log"
            stderr = log.open("w")
            opened.append(stderr)
            command = [sys.executable, "-m", "tests.fleet_worker", "--no-bot"]
            # The bot is off: the API URL is never called.
            command += ["--api-url", "http://127.0.0.1:9", "--api-key", API_KEY]
            command += ["--secret", SECRET, "--prefix", prefix]
            command += ["--heartbeat", "5", "--worker-timeout", "15"]  # RedisState's defaults
            command += ["--memory"] if kind == "memory" else ["--redis", redis_url]
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
            started.append(Worker(process, log))
        deadline = time.monotonic() + _START_WAIT
        for worker in started:
            worker.read_ready(deadline)
        yield started
    finally:
        for worker in started:
            if worker.process.poll() is None:
                worker.process.terminate()
        for worker in started:
            try:
                worker.process.wait(15)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait(5)
            if worker.process.stdout is not None:
                worker.process.stdout.close()
        for stream in opened:
            stream.close()


# -- deliveries ---------------------------------------------------------------------------


def call_deliveries(calls: int, first_user: int) -> list[bytes]:
    """The webhooks of ``calls`` inbound calls as the fake API makes them (distinct
    bodies): every connect, then every terminate."""
    from d360calling.testing import FakeCallingAPI

    fake = FakeCallingAPI(
        webhook_urls=None,  # recorded only: never started, nothing is sent
        max_recorded_webhooks=None,
        max_recorded_bytes=None,
        max_recorded_calls=1,  # the fake looks at every call it keeps for each new one
    )
    for i in range(calls):
        fake.user_hangs_up(fake.user_calls(f"4915{first_user + i:09d}").id)
    bodies = [delivery.body for delivery in fake.webhooks]  # connect, terminate, connect...
    return bodies[0::2] + bodies[1::2]


def reply_deliveries(users: Sequence[str]) -> list[bytes]:
    """A permission reply (the user allowed calls) of each of ``users``."""
    from d360calling.testing import FakeCallingAPI

    fake = FakeCallingAPI(webhook_urls=None, max_recorded_webhooks=None)
    for user in users:
        fake.grant_permission(user)
    return [delivery.body for delivery in fake.webhooks]


def _headers(body: bytes) -> dict[str, str]:
    from d360calling.testing import SIGNATURE_HEADER, sign

    return {"Content-Type": "application/json", SIGNATURE_HEADER: sign(SECRET, body)}


# -- measuring ----------------------------------------------------------------------------


async def post_all(
    session: aiohttp.ClientSession,
    urls: Sequence[str],
    bodies: Sequence[bytes],
    concurrency: int,
) -> tuple[list[float], int]:
    """Post ``bodies`` round-robin to ``urls``, ``concurrency`` at a time: the ack latency
    of each (seconds, its last attempt) and how many attempts were refused."""
    signed = [(body, _headers(body)) for body in bodies]  # pre-signed: not timed
    latencies: list[float] = [0.0] * len(bodies)
    refused = 0
    next_index = 0

    async def sender() -> None:
        nonlocal next_index, refused
        while next_index < len(signed):
            index = next_index
            next_index += 1
            body, headers = signed[index]
            url = urls[index % len(urls)]
            for _ in range(_POST_ATTEMPTS):
                started = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as reply:
                    await reply.read()
                    status = reply.status
                latencies[index] = time.perf_counter() - started
                if status == 200:
                    break
                refused += 1
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError(f"a delivery was refused {_POST_ATTEMPTS} times ({status})")

    await asyncio.gather(*(sender() for _ in range(min(concurrency, len(bodies)))))
    return latencies, refused


async def _stats(session: aiohttp.ClientSession, worker: Worker) -> dict[str, Any]:
    async with session.get(f"{worker.base}/stats") as reply:
        return dict(await reply.json())


async def _drained(session: aiohttp.ClientSession, fleet: Sequence[Worker]) -> None:
    deadline = time.monotonic() + _DRAIN_WAIT
    while True:
        stats = await asyncio.gather(*(_stats(session, worker) for worker in fleet))
        if all(s["pending"] == 0 for s in stats):
            return
        if time.monotonic() > deadline:
            raise RuntimeError("the workers did not finish their callbacks")
        await asyncio.sleep(0.005)


def _redis_info(redis_url: str) -> dict[str, int]:
    import redis

    with redis.Redis.from_url(redis_url, socket_timeout=10) as client:
        stats = client.info("stats")
        commands = client.info("commandstats")
    scripts = sum(
        int(value.get("calls", 0))
        for name, value in commands.items()
        if name in ("cmdstat_evalsha", "cmdstat_eval") and isinstance(value, dict)
    )
    return {"commands": int(stats["total_commands_processed"]), "scripts": scripts}


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _process_cpu(pids: Sequence[int]) -> float:
    """CPU seconds (user and system) the processes ``pids`` have used so far (Linux)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


async def measure(
    fleet: Sequence[Worker],
    *,
    redis_url: str | None,
    redis_pids: Sequence[int],
    warmup: Sequence[bytes],
    measured: Sequence[bytes],
    idle: Sequence[bytes],
    concurrency: int,
) -> dict[str, Any]:
    urls = [f"{worker.base}/webhook" for worker in fleet]
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(
        connector=connector, timeout=_HTTP_TIMEOUT, trust_env=False
    ) as session:
        await post_all(session, urls, warmup, concurrency)
        await _drained(session, fleet)
        idle_latencies, _ = await post_all(session, urls, idle, 1)
        await _drained(session, fleet)
        before = await asyncio.gather(*(_stats(session, worker) for worker in fleet))
        info_before = _redis_info(redis_url) if redis_url else None
        pids = [worker.process.pid for worker in fleet]
        cpu_before = (_cpu_seconds(), _process_cpu(pids), _process_cpu(redis_pids))
        started = time.perf_counter()
        latencies, refused = await post_all(session, urls, measured, concurrency)
        acked = time.perf_counter()
        await _drained(session, fleet)
        elapsed = time.perf_counter() - started
        cpu_after = (_cpu_seconds(), _process_cpu(pids), _process_cpu(redis_pids))
        cpu = [(a - b) / elapsed for a, b in zip(cpu_after, cpu_before, strict=True)]
        info_after = _redis_info(redis_url) if redis_url else None
        after = await asyncio.gather(*(_stats(session, worker) for worker in fleet))

    def delta(key: str, step: str | None = None) -> int:
        if step is None:
            return sum(int(a[key]) - int(b[key]) for a, b in zip(after, before, strict=True))
        return sum(
            int(a[key].get(step, 0)) - int(b[key].get(step, 0))
            for a, b in zip(after, before, strict=True)
        )

    events = sum(
        a["stats"]["events"] - b["stats"]["events"] for a, b in zip(after, before, strict=True)
    )
    duplicates = sum(
        a["stats"]["duplicates"] - b["stats"]["duplicates"]
        for a, b in zip(after, before, strict=True)
    )
    if events != len(measured) or duplicates:
        raise RuntimeError(f"{events} events ({duplicates} duplicates) for {len(measured)} posted")
    row: dict[str, Any] = {
        "events": events,
        "seconds": elapsed,
        "ack_seconds": acked - started,
        "events_per_second": events / elapsed,
        "ack_p50_ms": _quantile(latencies, 0.5) * 1000,
        "ack_p99_ms": _quantile(latencies, 0.99) * 1000,
        "idle_ack_p50_ms": _quantile(idle_latencies, 0.5) * 1000,
        "idle_ack_p99_ms": _quantile(idle_latencies, 0.99) * 1000,
        "refused": refused,
        # Cores used, on average: the load generator (this process), the workers, Redis.
        "load_generator_cpu": cpu[0],
        "workers_cpu": cpu[1],
        "redis_cpu": cpu[2],
    }
    # CPU per event, whatever else the machine runs: the workers' and Redis's.
    row["workers_cpu_us_per_event"] = cpu[1] * elapsed / events * 1e6
    row["redis_cpu_us_per_event"] = cpu[2] * elapsed / events * 1e6
    if info_before is not None and info_after is not None:
        hot = delta("round_trips_by_step", "claim") + delta("round_trips_by_step", "apply")
        row.update(
            round_trips_per_event=delta("round_trips") / events,
            hot_round_trips_per_event=hot / events,
            claim_round_trips_per_event=delta("round_trips_by_step", "claim") / events,
            apply_round_trips_per_event=delta("round_trips_by_step", "apply") / events,
            redis_scripts_per_event=(info_after["scripts"] - info_before["scripts"]) / events,
            # Less the INFO commands of the reading itself (two per reading).
            redis_commands_per_event=(info_after["commands"] - info_before["commands"] - 2)
            / events,
        )
    return row


async def notification_latency(
    fleet: Sequence[Worker], samples: int, first_user: int
) -> list[float]:
    """A permission wait on worker 0, the reply posted to another worker: post → wait over,
    in seconds, one sample at a time."""
    users = [f"4916{first_user + i:09d}" for i in range(samples)]
    bodies = reply_deliveries(users)
    posted: dict[str, float] = {}
    async with aiohttp.ClientSession(timeout=_HTTP_TIMEOUT, trust_env=False) as session:
        waiter = fleet[0]
        for i, (user, body) in enumerate(zip(users, bodies, strict=True)):
            async with session.post(
                f"{waiter.base}/arm", params={"user": user, "timeout": "30"}
            ) as reply:
                if reply.status != 200:
                    raise RuntimeError(f"/arm answered {reply.status}: {await reply.text()}")
            target = fleet[1 + i % (len(fleet) - 1)]
            posted[user] = time.monotonic()
            async with session.post(
                f"{target.base}/webhook", data=body, headers=_headers(body)
            ) as reply:
                if reply.status != 200:
                    raise RuntimeError(f"the reply was answered {reply.status}")
            # One at a time: the wait of this sample is over before the next starts.
            deadline = time.monotonic() + 30
            while True:
                async with session.get(f"{waiter.base}/waited") as reply:
                    ended = await reply.json()
                if user in ended or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.002)
        async with session.get(f"{waiter.base}/waited") as reply:
            ended = await reply.json()
    latencies = []
    for user in users:
        if user not in ended or "GRANTED" not in ended[user]["outcome"].upper():
            raise RuntimeError(f"the wait for {user} ended {ended.get(user)}")
        latencies.append(ended[user]["at"] - posted[user])
    return latencies


# -- the run ------------------------------------------------------------------------------


def _median_row(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The median of each figure over the runs of one configuration."""
    row: dict[str, Any] = {"runs": len(runs)}
    for key, value in runs[0].items():
        if isinstance(value, (int, float)):
            row[key] = statistics.median(r[key] for r in runs)
    row["refused"] = sum(r["refused"] for r in runs)
    return row


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Every configuration ``args.rounds`` times, interleaved (each round in another
    order, so that what else runs on the machine weighs on each alike)."""
    import redis

    samples: dict[tuple[str, int], list[dict[str, Any]]] = {config: [] for config in CONFIGS}
    waits: list[float] = []
    per_config = args.events + args.warmup + args.idle
    most = max(count for _, count in CONFIGS)
    with redis_server(workdir) as (redis_url, redis_pid):
        for round_ in range(args.rounds):
            order = CONFIGS[round_ % len(CONFIGS) :] + CONFIGS[: round_ % len(CONFIGS)]
            for kind, count in order:
                number = round_ * len(CONFIGS) + CONFIGS.index((kind, count))
                with redis.Redis.from_url(redis_url) as client:
                    client.flushall()
                bodies = call_deliveries(per_config // 2 + 1, number * per_config)
                warmup = bodies[: args.warmup]
                idle = bodies[args.warmup : args.warmup + args.idle]
                measured = bodies[args.warmup + args.idle : per_config]
                prefix = f"bench-{kind}-{count}-{round_}"
                print(
                    f"  round {round_ + 1}/{args.rounds}, {kind} x{count}: "
                    f"{len(measured):,} events ...",
                    file=sys.stderr,
                )
                with workers(
                    count, kind=kind, redis_url=redis_url, prefix=prefix, logs=workdir
                ) as fleet:
                    row = asyncio.run(
                        measure(
                            fleet,
                            redis_url=redis_url if kind == "redis" else None,
                            redis_pids=[redis_pid] if kind == "redis" else [],
                            warmup=warmup,
                            measured=measured,
                            idle=idle,
                            concurrency=args.concurrency,
                        )
                    )
                    if kind == "redis" and count == most:
                        waits += asyncio.run(
                            notification_latency(
                                fleet, args.notifications, round_ * args.notifications
                            )
                        )
                samples[(kind, count)].append(row)
    rows = [
        {"state": kind, "workers": count, **_median_row(samples[(kind, count)])}
        for kind, count in CONFIGS
    ]
    notification = {
        "samples": len(waits),
        "workers": most,
        "p50_ms": _quantile(waits, 0.5) * 1000,
        "p99_ms": _quantile(waits, 0.99) * 1000,
        "max_ms": max(waits) * 1000,
    }
    return {
        "rows": rows,
        "runs": {f"{k} x{c}": v for (k, c), v in samples.items()},
        "notification": notification,
    }


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = report["rows"]

    def row(kind: str, count: int) -> dict[str, Any]:
        return next(r for r in rows if r["state"] == kind and r["workers"] == count)

    hot = max(r["hot_round_trips_per_event"] for r in rows if r["state"] == "redis")
    ratio = row("redis", 1)["events_per_second"] / row("memory", 1)["events_per_second"]
    p99 = report["notification"]["p99_ms"]
    return [
        {
            "target": "Redis round trips per event, hot path (worst config)",
            "value": hot,
            "bound": f"≤ {TARGET_ROUND_TRIPS:g}",
            "met": hot <= TARGET_ROUND_TRIPS,
        },
        {
            "target": "1 worker on Redis vs 1 in memory, events/s",
            "value": ratio,
            "bound": f"≥ {TARGET_REDIS_VS_MEMORY:g}",
            "met": ratio >= TARGET_REDIS_VS_MEMORY,
        },
        {
            "target": "cross-worker notification p99, ms",
            "value": p99,
            "bound": f"≤ {TARGET_NOTIFY_P99_MS:g}",
            "met": p99 <= TARGET_NOTIFY_P99_MS,
        },
    ]


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    rows = report["rows"]
    one = next(r for r in rows if r["state"] == "redis" and r["workers"] == 1)
    four = next(r for r in rows if r["state"] == "redis" and r["workers"] == 4)
    lines = [
        f"Machine: {m['cpu']}, **{m['cores']} cores shared by the load generator, the "
        f"workers and Redis** (nothing pinned), {m['system']}, Python {m['python']}, "
        f"redis-py {m['redis_py']}, {m['redis_server']}. {report['settings']}",
        "",
        "| state | workers | events/s | ack p50 ms | ack p99 ms | idle ack p50 ms "
        "| idle ack p99 ms | worker CPU µs/event | Redis CPU µs/event "
        "| Redis round trips/event (hot path) | of which claim / record "
        "| Redis scripts/event | Redis commands/event | cores used: load generator / workers "
        "/ Redis | refused |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        redis_side = r["state"] == "redis"
        lines.append(
            f"| {r['state']} | {r['workers']} | {_fmt(r['events_per_second'])} "
            f"| {_fmt(r['ack_p50_ms'], 2)} | {_fmt(r['ack_p99_ms'], 2)} "
            f"| {_fmt(r['idle_ack_p50_ms'], 2)} | {_fmt(r['idle_ack_p99_ms'], 2)} "
            f"| {_fmt(r['workers_cpu_us_per_event'])} "
            f"| {_fmt(r['redis_cpu_us_per_event']) if redis_side else '-'} "
            + (
                f"| {r['round_trips_per_event']:.3f} ({r['hot_round_trips_per_event']:.3f}) "
                f"| {r['claim_round_trips_per_event']:.3f} / "
                f"{r['apply_round_trips_per_event']:.3f} "
                f"| {r['redis_scripts_per_event']:.3f} | {r['redis_commands_per_event']:.2f} "
                if redis_side
                else "| - | - | - | - "
            )
            + f"| {r['load_generator_cpu']:.2f} / {r['workers_cpu']:.2f} / "
            f"{r['redis_cpu']:.2f} | {r['refused']} |"
        )
    notify = report["notification"]
    lines += [
        "",
        f"Scaling efficiency, 4 workers on Redis: {four['events_per_second']:,.0f} / "
        f"(4 x {one['events_per_second']:,.0f}) = {report['scaling_efficiency']:.2f} "
        f"(on {m['cores']} cores, 4 workers cannot be 4 times 1).",
        "",
        f"Cross-worker notification ({notify['samples']} samples, {notify['workers']} workers, "
        "idle): a wait_for_permission on worker A, the reply posted to worker B, post → A's "
        f"wait over: p50 {notify['p50_ms']:.2f} ms, p99 {notify['p99_ms']:.2f} ms, "
        f"max {notify['max_ms']:.2f} ms.",
        "",
        "| target | measured | bound | met |",
        "|---|---:|---:|:---:|",
    ]
    for t in report["targets"]:
        lines.append(
            f"| {t['target']} | {t['value']:.2f} | {t['bound']} "
            f"| {'yes' if t['met'] else '**no**'} |"
        )
    return "\n".join(lines) + "\n"


def machine() -> dict[str, Any]:
    import importlib.metadata

    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    server = "redis-server"
    executable = shutil.which("redis-server")
    if executable is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            version = subprocess.run(
                [executable, "--version"], capture_output=True, text=True, timeout=10
            ).stdout.split()
            server = "Redis " + next(
                (w.split("=", 1)[1] for w in version if w.startswith("v=")), "?"
            )
    try:
        redis_py = importlib.metadata.version("redis")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - checked in main
        redis_py = "?"
    return {
        "date": datetime.date.today().isoformat(),
        "cpu": model,
        "cores": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "redis_py": redis_py,
        "redis_server": server,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks._fleet", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run (a few seconds each)")
    parser.add_argument("--events", type=int, help="measured events per run (10,000)")
    parser.add_argument("--rounds", type=int, help="interleaved runs of each config (3)")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    try:
        import redis  # noqa: F401 - the extra's presence
    except ImportError:
        print('the fleet benchmark needs the redis extra: pip install "d360calling[redis]"')
        return 2
    if shutil.which("redis-server") is None:
        print("the fleet benchmark needs redis-server on PATH (apt install redis-server)")
        return 2
    args.events = args.events or (2_000 if args.quick else 10_000)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.warmup = 200 if args.quick else 2_000
    args.idle = 50 if args.quick else 300
    args.notifications = 30 if args.quick else 300
    cores = os.cpu_count()
    print(
        f"{cores} cores, shared by the load generator, every worker and Redis (nothing is "
        "pinned): 4 workers cannot run 4 times as fast as 1 here",
        file=sys.stderr,
    )
    report: dict[str, Any] = {
        "machine": machine(),
        "settings": (
            f"Median of {args.rounds} interleaved run(s) of each configuration, "
            f"{args.events:,} measured events each after {args.warmup:,} of "
            f"warm-up, {args.concurrency} in flight from one load generator (aiohttp, this "
            "process), round-robin, one event per delivery, every delivery distinct; idle "
            f"ack latency over {args.idle} deliveries one at a time; workers without the bot."
        ),
    }
    with tempfile.TemporaryDirectory(prefix="d360-fleet-bench-") as tmp:
        report.update(run(args, Path(tmp)))
    rows = report["rows"]
    one = next(r for r in rows if r["state"] == "redis" and r["workers"] == 1)
    four = next(r for r in rows if r["state"] == "redis" and r["workers"] == 4)
    report["scaling_efficiency"] = four["events_per_second"] / (4 * one["events_per_second"])
    report["targets"] = targets(report)
    text = markdown(report)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "fleet-quick" if args.quick else "fleet"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(text)
    print(text)
    print(f"wrote {args.out / stem}.{{md,json}}", file=sys.stderr)
    return 0 if all(t["met"] for t in report["targets"]) else 1


if __name__ == "__main__":
    sys.exit(main())
