"""The call-bot scenario, in its own process: ``python -m benchmarks._callbot BASE_URL API_KEY N``.

N users call in at once (through the fake API's control route); the bot answers every call
the way a real one does - pre_accept, accept, terminate - all N at the same time, with one
``AsyncClient`` on its defaults. Run twice: once for time and RSS, once under tracemalloc for
the Python memory each in-flight call holds. Prints one JSON object.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import resource
import sys
import time
import tracemalloc
from typing import Any

import aiohttp

import d360calling
from d360calling.testing import sample_answer


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0  # pragma: no cover - not Linux


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        return False
    return True


async def _ring(base_url: str, api_key: str, calls: int, first_user: int) -> list[str]:
    """Make ``calls`` users call the business; returns the call ids."""
    async with aiohttp.ClientSession(headers={"D360-API-KEY": api_key}) as session:

        async def one(i: int) -> str:
            async with session.post(
                f"{base_url}/_fake/calls", json={"from": str(first_user + i)}
            ) as resp:
                resp.raise_for_status()
                return str((await resp.json())["id"])

        return list(await asyncio.gather(*(one(i) for i in range(calls))))


async def _answer_all(client: d360calling.AsyncClient, call_ids: list[str]) -> list[str]:
    errors: list[str] = []

    async def answer(call_id: str) -> None:
        sdp = sample_answer(call_id)
        try:
            await client.pre_accept_call(call_id, sdp)
            await client.accept_call(call_id, sdp)
            await client.terminate_call(call_id)
        except d360calling.D360Error as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:200])

    await asyncio.gather(*(answer(call_id) for call_id in call_ids))
    return errors


async def _scenario(base_url: str, api_key: str, calls: int) -> dict[str, Any]:
    async with d360calling.AsyncClient(api_key=api_key, base_url=base_url) as client:
        # Warm the pool and every code path once, so the runs measure steady state.
        warm = await _ring(base_url, api_key, 10, 491500000000)
        await _answer_all(client, warm)

        timed_ids = await _ring(base_url, api_key, calls, 491510000000)
        gc.collect()
        peak_reset = _reset_peak_rss()
        rss_before = _rss_kib("VmRSS")
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        errors = await _answer_all(client, timed_ids)
        elapsed = time.perf_counter() - started
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        rss_peak = _rss_kib("VmHWM") if peak_reset else None

        traced_ids = await _ring(base_url, api_key, calls, 491520000000)
        gc.collect()
        tracemalloc.start()
        traced_before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        errors += await _answer_all(client, traced_ids)
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()

    cpu = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    return {
        "calls": calls,
        "requests": calls * 3,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "seconds": elapsed,
        "cpu_us_per_request": cpu / (calls * 3) * 1e6,
        "rss_growth_kib_per_call": (rss_peak - rss_before) / calls if rss_peak else None,
        "heap_peak_kib_per_call": (traced_peak - traced_before) / 1024 / calls,
    }


def main() -> None:
    base_url, api_key, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cpu = os.environ.get("BENCH_CPU")
    if cpu is not None:
        os.sched_setaffinity(0, {int(cpu)})
    print(json.dumps(asyncio.run(_scenario(base_url, api_key, calls))))


if __name__ == "__main__":
    main()
