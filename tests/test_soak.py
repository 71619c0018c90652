"""The soak (``tests/soak.py``) in its short form (slow: ``pytest -m slow``), and its audit:
that the audit catches each kind of failure the soak is there to find."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from d360calling import AsyncClient
from d360calling.testing import FakeCallingAPI, Fault

from .soak import (
    MAX_RETRIES,
    POOL_SIZE,
    SHORT_REQUESTS,
    Job,
    PoolSampler,
    Run,
    _still_connected,
    audit,
    pooled,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_short_soak_passes_its_audit(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    done = subprocess.run(
        [sys.executable, "-m", "tests.soak", "--short", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "| audit | pass | pass |" in done.stdout
    runs = json.loads(out.read_text())
    assert [r["name"] for r in runs] == ["AsyncClient x256", "Client, 16 threads"]
    for run in runs:
        assert run["problems"] == [], run["problems"]
        assert run["requests"] == SHORT_REQUESTS
        assert run["succeeded"] + sum(run["errors"].values()) == SHORT_REQUESTS
        assert run["succeeded"] > SHORT_REQUESTS * 0.8  # the faults were mostly retried away
        assert run["server_received"] == run["attempts"] - run["unsent"] >= SHORT_REQUESTS
        struck = sum(run["fault_hits"].values())
        assert 0.05 < struck / run["server_received"] < 0.15  # 10% of requests, roughly
        assert all(hits > 0 for hits in run["fault_hits"].values())  # every kind of fault
        assert 0 < run["peak_sockets"] <= POOL_SIZE
        assert run["sockets_after_close"] == 0
        assert run["pending_tasks"] == 0
        assert run["extra_threads"] == []
        assert run["warnings"] == []


def _clean_run() -> Run:
    """A small run whose records all agree: the audit finds nothing."""
    jobs = [
        Job(0, "connect", "491700000000"),
        Job(1, "accept", "wacid.A"),
        Job(2, "permissions", "493000000000"),
        Job(3, "get_settings", ""),
    ]
    run = Run(
        "test", jobs, ["ok", "ok", "RateLimitError", "ok"], {0: "wacid.B"}, [1] * 4, [0.1] * 4
    )
    run.attempts, run.unsent = 6, 1
    run.idle_sockets, run.sockets_after_close = 3, 0
    run.server = {
        "received": {
            "connect:491700000000": 1,
            "accept:wacid.A": 1,
            "permissions:493000000000": 2,
            "get_settings": 1,
        },
        "calls": {
            "wacid.A": {
                "user": "1",
                "direction": "USER_INITIATED",
                "state": "accepted",
                "end_reason": None,
            },
            "wacid.B": {
                "user": "491700000000",
                "direction": "BUSINESS_INITIATED",
                "state": "ringing",
                "end_reason": None,
            },
        },
    }
    return run


def test_the_audit_passes_records_that_agree() -> None:
    assert audit(_clean_run()) == []


def test_the_audit_catches_each_failure_the_soak_looks_for() -> None:
    run = _clean_run()
    run.finished[3] = 2  # a result delivered twice
    run.outcomes[1] = "UNTYPED KeyError('calls')"
    run.durations[2] = 60.0
    run.server["received"]["connect:491700000000"] = 2
    run.server["received"]["permissions:493000000000"] = MAX_RETRIES + 2
    run.server["received"]["accept:wacid.unknown"] = 1
    run.peak_sockets = POOL_SIZE + 5
    run.idle_sockets, run.sockets_after_close = POOL_SIZE + 1, 2
    run.pending_tasks, run.extra_threads = 1, ["d360calling-portal"]
    run.warnings = ["unclosed <aiohttp.ClientSession>"]
    run.rss_end = run.rss_warm + 50 * 2**20
    text = "\n".join(audit(run))
    for expected in (
        "job 3 (get_settings) ended 2 times",
        "job 1 (accept) raised KeyError('calls')",
        "job 2 (permissions) took 60.00 s",
        "job 0: connect reached the server 2 times",
        f"job 2: permissions reached the server {MAX_RETRIES + 2} times",
        "requests no job made: ['accept:wacid.unknown']",
        "attempts that went out",
        f"{POOL_SIZE + 5} sockets open at once",
        f"{POOL_SIZE + 1} sockets open while idle",
        "2 sockets still open after close()",
        "1 tasks pending",
        "threads left after close(): ['d360calling-portal']",
        "warnings: ['unclosed <aiohttp.ClientSession>']",
        "RSS grew by 50.0 MiB",
    ):
        assert expected in text


def test_the_audit_catches_a_success_the_server_does_not_show() -> None:
    run = _clean_run()
    run.server["calls"]["wacid.A"]["state"] = "ringing"  # "accepted", yet the call rings
    run.connected[0] = "wacid.other"  # connect reported another call than the one placed
    run.server["received"]["accept:wacid.A"] = 0
    run.attempts -= 1
    problems = audit(run)
    assert "job 1: accept succeeded but never reached the server" in problems
    assert "job 1: accept succeeded but the call is ('ringing', None)" in problems
    assert "job 0: connect returned wacid.other, the server placed ['wacid.B']" in problems


@pytest.mark.asyncio
async def test_the_socket_check_reads_the_pool_in_use_idle_and_closed() -> None:
    """What the soak's socket figures come from: the client's own pool, sampled on its loop."""
    async with FakeCallingAPI() as fake:
        client = AsyncClient(api_key=fake.api_key, base_url=fake.url, pool_size=3)
        assert pooled(client) == []  # no session before the first request
        sampler = PoolSampler(client, every=0.001)
        sampler.start()
        fake.inject(Fault(delay=0.05), times=None)  # six requests at once, three at a time
        await asyncio.gather(*(client.get_settings() for _ in range(6)))
        sampler.stop()
        connections = pooled(client)
        assert sampler.peak == len(connections) == _still_connected(connections) == 3  # idle
        await client.aclose()
        assert pooled(client) == []
        assert _still_connected(connections) == 0
