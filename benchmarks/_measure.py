"""One measurement in a fresh process: ``python -m benchmarks._measure VARIANT CONCURRENCY PORT
WARMUP SECONDS`` prints one JSON object (requests/s, CPU µs per request, latency, peak RSS).

A fresh process per measurement keeps peak RSS honest and lets a variant run without orjson
(it is hidden before anything imports it) or on uvloop.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ._workload import API_KEY, CALL_ID, accept_payload, answer_sdp

# name -> (kind, event loop, JSON library); "d360" variants use the library's own choice.
VARIANTS: dict[str, tuple[str, str, str]] = {
    "aiohttp": ("aiohttp", "asyncio", "json"),
    "aiohttp (uvloop, orjson)": ("aiohttp", "uvloop", "orjson"),
    "AsyncClient": ("async", "asyncio", "json"),
    "AsyncClient [speedups]": ("async", "uvloop", "orjson"),
    "Client": ("sync", "asyncio", "json"),
    "Client [speedups]": ("sync", "uvloop", "orjson"),
    "httpx.AsyncClient": ("httpx", "asyncio", "json"),
    "requests.Session": ("requests", "threads", "json"),
}


class Window:
    """Counts completed requests and their latencies between ``open`` and ``close``."""

    def __init__(self) -> None:
        self.measuring = False
        self.stopped = False
        self.latencies: list[float] = []
        self.errors: list[str] = []

    def done(self, started: float, error: BaseException | None = None) -> None:
        if self.measuring:
            if error is None:
                self.latencies.append(time.perf_counter() - started)
            else:
                self.errors.append(f"{type(error).__name__}: {error}"[:200])


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _result(window: Window, cpu: float, wall: float) -> dict[str, Any]:
    lat = sorted(window.latencies)
    n = len(lat)
    return {
        "requests": n,
        "errors": len(window.errors),
        "first_error": window.errors[0] if window.errors else None,
        "rps": n / wall if wall else 0.0,
        "cpu_us": cpu / n * 1e6 if n else None,
        "p50_ms": lat[n // 2] * 1e3 if n else None,
        "p99_ms": lat[min(n - 1, int(n * 0.99))] * 1e3 if n else None,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


async def _run_async(
    make: Callable[
        [], Awaitable[tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]]
    ],
    concurrency: int,
    warmup: float,
    seconds: float,
) -> dict[str, Any]:
    send, close = await make()
    window = Window()

    async def worker() -> None:
        while not window.stopped:
            started = time.perf_counter()
            try:
                await send()
            except Exception as exc:
                window.done(started, exc)
            else:
                window.done(started)

    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    await asyncio.sleep(warmup)
    window.measuring = True
    cpu0, t0 = _cpu(), time.perf_counter()
    await asyncio.sleep(seconds)
    window.measuring = False
    cpu1, t1 = _cpu(), time.perf_counter()
    window.stopped = True
    await asyncio.gather(*tasks)
    await close()
    return _result(window, cpu1 - cpu0, t1 - t0)


def _run_threads(
    send: Callable[[], None], concurrency: int, warmup: float, seconds: float
) -> dict[str, Any]:
    window = Window()

    def worker() -> None:
        while not window.stopped:
            started = time.perf_counter()
            try:
                send()
            except Exception as exc:
                window.done(started, exc)
            else:
                window.done(started)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    time.sleep(warmup)
    window.measuring = True
    cpu0, t0 = _cpu(), time.perf_counter()
    time.sleep(seconds)
    window.measuring = False
    cpu1, t1 = _cpu(), time.perf_counter()
    window.stopped = True
    for thread in threads:
        thread.join()
    return _result(window, cpu1 - cpu0, t1 - t0)


def _headers() -> dict[str, str]:
    return {
        "D360-API-KEY": API_KEY,
        "Content-Type": "application/json",
        "Accept": "application/json",
    }


def _dumps_loads(json_lib: str) -> tuple[Callable[[Any], bytes], Callable[[bytes], Any]]:
    if json_lib == "orjson":
        import orjson

        return orjson.dumps, orjson.loads
    return (lambda obj: json.dumps(obj).encode()), json.loads


def measure(
    variant: str, concurrency: int, port: int, warmup: float, seconds: float
) -> dict[str, Any]:
    kind, loop_name, json_lib = VARIANTS[variant]
    if json_lib != "orjson":
        sys.modules["orjson"] = None  # type: ignore[assignment]  # as if not installed
    if loop_name != "uvloop":
        sys.modules["uvloop"] = None  # type: ignore[assignment]  # the sync Client's loop too
    base = f"http://127.0.0.1:{port}"
    url = base + "/calling/calls"
    payload = accept_payload()
    sdp = answer_sdp()
    dumps, loads = _dumps_loads(json_lib)

    if kind in ("sync", "requests"):
        if kind == "sync":
            import d360calling

            client = d360calling.Client(api_key=API_KEY, base_url=base, pool_size=concurrency)

            def send() -> None:
                client.accept_call(CALL_ID, sdp)

            try:
                return _run_threads(send, concurrency, warmup, seconds)
            finally:
                client.close()
        import requests
        import requests.adapters

        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=concurrency)
        session.mount("http://", adapter)
        headers = _headers()

        def send_requests() -> None:
            resp = session.post(url, data=dumps(payload), headers=headers)
            resp.raise_for_status()
            if loads(resp.content)["success"] is not True:
                raise RuntimeError("not a success")

        try:
            return _run_threads(send_requests, concurrency, warmup, seconds)
        finally:
            session.close()

    async def make_aiohttp() -> Any:
        import aiohttp

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))
        headers = _headers()

        async def send() -> None:
            async with session.post(url, data=dumps(payload), headers=headers) as resp:
                resp.raise_for_status()
                if loads(await resp.read())["success"] is not True:
                    raise RuntimeError("not a success")

        return send, session.close

    async def make_async_client() -> Any:
        import d360calling

        client = d360calling.AsyncClient(api_key=API_KEY, base_url=base, pool_size=concurrency)

        async def send() -> None:
            await client.accept_call(CALL_ID, sdp)

        return send, client.aclose

    async def make_httpx() -> Any:
        import httpx

        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        client = httpx.AsyncClient(limits=limits, timeout=60)
        headers = _headers()

        async def send() -> None:
            resp = await client.post(url, content=dumps(payload), headers=headers)
            resp.raise_for_status()
            if loads(resp.content)["success"] is not True:
                raise RuntimeError("not a success")

        return send, client.aclose

    make = {"aiohttp": make_aiohttp, "async": make_async_client, "httpx": make_httpx}[kind]
    coro = _run_async(make, concurrency, warmup, seconds)
    if loop_name == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def main() -> None:
    variant, concurrency, port, warmup, seconds = sys.argv[1:6]
    cpu = os.environ.get("BENCH_CPU")
    if cpu is not None:
        os.sched_setaffinity(0, {int(cpu)})
    result = measure(variant, int(concurrency), int(port), float(warmup), float(seconds))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
