"""``python -m benchmarks.hardening [--quick]``: memory and tasks under the attacks of the
hardening work, each in its own process on 127.0.0.1, against an idle reference measured in the
same run.

1. 1,000 deliveries whose call ids are 1,000,000 characters: the receiver's RSS growth;
2. a callback flood, 10 deliveries of 30,000 events each with callbacks that never return:
   the tasks left pending;
3. a gzip bomb (1 MiB of gzip inflating to 1 GiB; 256 MiB with ``--quick``) answering
   ``get_settings``: the client's peak RSS.

Prints a Markdown table; exits 1 if a bound is exceeded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import zlib
from collections.abc import Iterable, Sequence

import aiohttp
from aiohttp import web

MiB = 1024 * 1024

# A receiver that acts on every event and never lets a callback finish, with a stats route.
RECEIVER = r"""
import asyncio, sys
from aiohttp import web
from d360calling.webhooks import WebhookReceiver

async def block(*_):
    await asyncio.Event().wait()

async def main():
    receiver = WebhookReceiver(on_event=block, on_stale=block, insecure_no_auth=True, max_age=None)
    app = receiver.app("/webhook")

    async def stats(_):
        with open("/proc/self/status") as f:
            rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) * 1024
        return web.json_response({"tasks": len(asyncio.all_tasks()), "rss": rss})

    app.router.add_get("/_stats", stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def _envelope(calls: list[dict[str, object]]) -> bytes:
    value = {"messaging_product": "whatsapp", "calls": calls}
    change = {"field": "calls", "value": value}
    body = {"object": "whatsapp_business_account", "entry": [{"id": "W", "changes": [change]}]}
    return json.dumps(body, separators=(",", ":")).encode()


def _connect(call_id: str) -> dict[str, object]:
    return {"id": call_id, "event": "connect", "timestamp": str(int(time.time())), "from": "1"}


class _Receiver:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        self.url = f"http://127.0.0.1:{int(self.proc.stdout.readline())}"

    async def stats(self, session: aiohttp.ClientSession) -> dict[str, int]:
        await asyncio.sleep(1.0)  # let callbacks start and the allocator settle
        async with session.get(self.url + "/_stats") as response:
            data: dict[str, int] = await response.json()
            return data

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


async def _post_all(
    session: aiohttp.ClientSession, url: str, bodies: Iterable[bytes], concurrency: int
) -> dict[int, int]:
    answers: dict[int, int] = {}
    pending = iter(bodies)  # made one at a time: 1,000 bodies of 1 MB are not held at once

    async def worker() -> None:
        for body in pending:
            async with session.post(url, data=body) as response:
                await response.read()
                answers[response.status] = answers.get(response.status, 0) + 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return answers


async def _attack(
    bodies: Iterable[bytes], concurrency: int
) -> tuple[dict[str, int], dict[str, int], dict[int, int]]:
    receiver = _Receiver()
    try:
        async with aiohttp.ClientSession() as session:
            idle = await receiver.stats(session)
            answers = await _post_all(session, receiver.url + "/webhook", bodies, concurrency)
            after = await receiver.stats(session)
    finally:
        receiver.close()
    return idle, after, answers


async def oversized_ids(deliveries: int, id_length: int) -> tuple[float, float, str]:
    bodies = (
        _envelope([_connect(f"wacid.{i:06d}" + "x" * (id_length - 12))]) for i in range(deliveries)
    )
    idle, after, answers = await _attack(bodies, concurrency=8)
    return idle["rss"] / MiB, after["rss"] / MiB, _answers(answers)


async def callback_flood(deliveries: int, events: int) -> tuple[int, int, str]:
    # Short ids and no timestamps: 30,000 events fit under the receiver's 1 MiB body cap, so
    # what stops them is the cap on events per delivery, not the body size.
    ids = (f"c{_base36(n)}" for n in range(deliveries * events))
    bodies = [
        _envelope([{"id": next(ids), "event": "connect"} for _ in range(events)])
        for _ in range(deliveries)
    ]
    idle, after, answers = await _attack(bodies, concurrency=2)
    return idle["tasks"], after["tasks"], _answers(answers)


def _base36(n: int, digits: int = 5) -> str:
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    for _ in range(digits):
        n, rest = divmod(n, 36)
        out = alphabet[rest] + out
    return out


def _answers(answers: dict[int, int]) -> str:
    return ", ".join(f"{count} x {status}" for status, count in sorted(answers.items()))


# -- the gzip bomb: a server process answering it, a client process measuring its own peak ----


def _bomb(inflated: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(MiB)
    return b"".join([*(packer.compress(block) for _ in range(inflated // MiB)), packer.flush()])


def _serve_bomb(inflated: int) -> None:
    bomb = _bomb(inflated)

    async def handler(_: web.Request) -> web.Response:
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        return web.Response(body=bomb, headers=headers)

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/calling/settings", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        print(runner.addresses[0][1], len(bomb), flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def _client(url: str, idle_only: bool) -> None:
    from d360calling import AsyncClient, D360Error

    async def main() -> str:
        async with AsyncClient(api_key="bench-key", base_url=url, max_retries=0) as client:
            if idle_only:
                return "idle"
            try:
                await client.get_settings()
            except D360Error as exc:
                return type(exc).__name__
            return "no error"

    outcome = asyncio.run(main())
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork and exec.
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) * 1024
    print(json.dumps({"outcome": outcome, "peak": peak}))


def gzip_bomb(inflated: int) -> tuple[float, float, str, int]:
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.hardening", "_serve", str(inflated)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port, size = server.stdout.readline().split()
        url = f"http://127.0.0.1:{port}"
        runs = []
        for mode in ("_idle", "_client"):
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks.hardening", mode, url],
                capture_output=True,
                text=True,
                check=True,
                timeout=300,
            )
            runs.append(json.loads(done.stdout))
    finally:
        server.kill()
        server.wait()
    idle, attacked = runs
    return idle["peak"] / MiB, attacked["peak"] / MiB, attacked["outcome"], int(size)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hardening")
    parser.add_argument("--quick", action="store_true", help="a 256 MiB bomb instead of 1 GiB")
    args, rest = parser.parse_known_args(argv)
    if rest[:1] == ["_serve"]:
        _serve_bomb(int(rest[1]))
        return 0
    if rest[:1] in (["_idle"], ["_client"]):
        _client(rest[1], idle_only=rest[0] == "_idle")
        return 0
    inflated = (256 if args.quick else 1024) * MiB
    rows: list[tuple[str, str, str, str, str, bool]] = []

    idle_rss, rss, answers = asyncio.run(oversized_ids(1_000, 1_000_000))
    bound = 64.0
    rows.append(
        (
            "1,000 deliveries, 1,000,000-character call ids",
            f"RSS {idle_rss:.0f} MiB",
            f"RSS {rss:.0f} MiB ({answers})",
            f"growth ≤ {bound:.0f} MiB",
            f"{rss - idle_rss:+.0f} MiB",
            rss - idle_rss <= bound,
        )
    )
    idle_tasks, tasks, answers = asyncio.run(callback_flood(10, 30_000))
    rows.append(
        (
            "10 deliveries x 30,000 events, callbacks that never return",
            f"{idle_tasks} tasks",
            f"{tasks:,} tasks ({answers})",
            "≤ 10,000 pending (max_pending_callbacks)",
            f"{tasks - idle_tasks:+,} tasks",
            tasks - idle_tasks <= 10_000,
        )
    )
    idle_peak, peak, outcome, size = gzip_bomb(inflated)
    rows.append(
        (
            f"gzip bomb: {size / MiB:.1f} MiB inflating to {inflated // MiB:,} MiB",
            f"peak RSS {idle_peak:.0f} MiB",
            f"peak RSS {peak:.0f} MiB ({outcome})",
            "growth ≤ 16 MiB (the 4 MiB cap and its copies)",
            f"{peak - idle_peak:+.0f} MiB",
            peak - idle_peak <= 16 and outcome == "ResponseDecodeError",
        )
    )
    print("| attack | idle reference (same run) | under attack | bound | growth | within |")
    print("|---|---|---|---|---|---|")
    for attack, idle, measured, limit, growth, ok in rows:
        print(f"| {attack} | {idle} | {measured} | {limit} | {growth} | {'yes' if ok else 'NO'} |")
    return 0 if all(row[-1] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
