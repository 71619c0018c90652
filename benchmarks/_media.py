"""``python -m benchmarks._media [--calls 1 10 50] [--seconds 5] [--profile N]``: N
concurrent two-way audio calls (business-initiated, tones both ways) against the fake's
media mode running in its own process; the bot process's CPU per call-second (measured
over the steady-state window, after every call is connected, and the share of it spent on
the event loop's thread rather than aiortc's Opus coder threads), first-audio latency
(pick-up to first frame) p50/p99, frames received in the window (50 a second is real time)
and packet loss, for ``MediaCall`` and for a plain
aiortc script doing the same work (the anchor: what a pipecat-style bot costs) in the same
run. ``--profile N`` also prints a cProfile of the MediaCall bot process at N calls.

All packets stay on 127.0.0.1: no ICE servers, host candidates on 127.0.0.1 only."""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import fractions
import io
import json
import pstats
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from d360calling import AsyncClient
from d360calling.media import MediaCall, MediaConfig
from d360calling.media._net import gathering_on, rtc_configuration
from d360calling.media._sdp import conformant
from d360calling.testing import FakeCallingAPI, serve
from d360calling.testing.media import FakeMedia
from d360calling.webhooks import WebhookReceiver

__all__ = ("KINDS", "main", "run")

KINDS = ("aiortc (plain)", "d360calling")
_WAIT = 60.0  # bound on setting up N calls on a loaded 2-core machine


def _users(n: int) -> list[str]:
    return [f"49151{i:08d}" for i in range(n)]


async def _user_side(webhook_url: str, n: int) -> None:
    async with FakeCallingAPI(webhook_url=webhook_url, max_concurrent_calls=1000) as fake:
        for user in _users(n):
            fake.grant_permission(user, notify=False)
        async with FakeMedia(fake, tone_hz=440.0):
            print(fake.url, flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


class _Tone(MediaStreamTrack):
    """The anchor's own sender, as a pipecat-style bot has one: a paced 20 ms s16 tone."""

    kind = "audio"

    def __init__(self, hz: float) -> None:
        super().__init__()
        self._hz = hz
        self._pts = 0
        self._start: float | None = None

    async def recv(self) -> AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._pts += 960
            wait = self._start + self._pts / 48_000 - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        t = np.arange(self._pts, self._pts + 960) / 48_000
        pcm = (np.sin(2 * np.pi * self._hz * t) * 9830).astype("<i2")
        frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 48_000
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, 48_000)
        return frame


class _Plain:
    """One call of the anchor: RTCPeerConnection, fingerprints stripped by hand, a tone
    out, every received frame decoded (aiortc decodes on recv) and counted."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(rtc_configuration(MediaConfig()))
        self.pc.addTrack(_Tone(880.0))
        self.call: Any = None
        self.picked_up: float | None = None
        self.first_audio_delay: float | None = None
        self.frames_received = 0
        self.pumps: list[asyncio.Task[None]] = []

    async def place(self, client: AsyncClient, receiver: WebhookReceiver, to: str) -> None:
        with gathering_on(("127.0.0.1",)):
            await self.pc.setLocalDescription(await self.pc.createOffer())
        self.call = await receiver.place_call(client, to, conformant(self.pc.localDescription.sdp))
        answer = await self.call.answered()
        self.picked_up = time.monotonic()
        await self.pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
        for receiver_ in self.pc.getReceivers():
            self.pumps.append(asyncio.ensure_future(self._pump(receiver_.track)))

    async def _pump(self, track: Any) -> None:
        while True:
            try:
                await track.recv()
            except MediaStreamError:
                return
            if self.picked_up is not None and self.first_audio_delay is None:
                self.first_audio_delay = time.monotonic() - self.picked_up
            self.frames_received += 1

    async def close(self) -> None:
        await self.call.hangup()
        await self.pc.close()
        await asyncio.gather(*self.pumps, return_exceptions=True)


def _start_user_side(n: int, port: int) -> subprocess.Popen[str]:
    # The fake and its media peers in their own process, as the issue asks.
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "benchmarks._media", "--calls", str(n)),
            *("--user-side", f"http://127.0.0.1:{port}/webhook"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


async def _bot(kind: str, n: int, seconds: float) -> dict[str, Any]:
    receiver = WebhookReceiver(insecure_no_auth=True, max_outbound_calls=10_000)
    runner, port = await serve(receiver.app())
    proc = _start_user_side(n, port)
    try:
        assert proc.stdout is not None
        url = await asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline)
        async with AsyncClient(api_key="fake-d360-api-key", base_url=url.strip()) as client:
            return await _measure(kind, n, seconds, client, receiver)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(30)
        await receiver.close()
        await runner.cleanup()


async def _measure(
    kind: str, n: int, seconds: float, client: AsyncClient, receiver: WebhookReceiver
) -> dict[str, Any]:
    users = _users(n)
    setup_started = time.monotonic()
    calls: list[Any]
    if kind == "d360calling":
        calls = await asyncio.wait_for(
            asyncio.gather(*(MediaCall.place(client, receiver, u) for u in users)), _WAIT
        )
        players = [asyncio.ensure_future(c.play_tone(880.0, seconds + 5)) for c in calls]
    else:
        calls = [_Plain() for _ in users]
        placing = (c.place(client, receiver, u) for c, u in zip(calls, users, strict=True))
        await asyncio.wait_for(asyncio.gather(*placing), _WAIT)
        players = []
    setup = time.monotonic() - setup_started
    # Steady state only: the signalling and DTLS handshakes are counted in setup_s.
    frames0 = [c.frames_received for c in calls]
    cpu0, main0, wall0 = time.process_time(), time.thread_time(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    main_thread = time.thread_time() - main0  # the rest: aiortc's Opus coder threads
    firsts = sorted(c.first_audio_delay for c in calls if c.first_audio_delay is not None)
    frames = [c.frames_received - f for c, f in zip(calls, frames0, strict=True)]
    pcs = [c._pc if kind == "d360calling" else c.pc for c in calls]
    received, lost = 0, 0
    for pc in pcs:
        got, gone = await _rtp(pc)
        received, lost = received + got, lost + gone
    for task in players:
        task.cancel()
    if kind == "d360calling":
        await asyncio.gather(*(c.hangup() for c in calls), return_exceptions=True)
    else:
        await asyncio.gather(*(c.close() for c in calls), return_exceptions=True)
    await asyncio.gather(*players, return_exceptions=True)
    return {
        "kind": kind,
        "calls": n,
        "seconds": wall,
        "setup_s": setup,
        "cpu_per_call_second": cpu / (n * wall),
        "first_audio_p50": statistics.median(firsts) if firsts else None,
        "first_audio_p99": firsts[min(len(firsts) - 1, int(0.99 * len(firsts)))]
        if firsts
        else None,
        "with_audio": len(firsts),
        "main_thread_share": main_thread / cpu if cpu else 0.0,
        "min_frames": min(frames),  # in the measured window: 50 a second is real time
        "real_time": min(frames) >= 0.95 * 50 * wall - 1,  # a frame of slack at the edges
        "packets_received": received,
        "packets_lost": lost,
        "loss": lost / (received + lost) if received + lost else 1.0,
    }


async def _rtp(pc: RTCPeerConnection) -> tuple[int, int]:
    """(packets received, packets lost) on the bot side of one call."""
    stats = await pc.getStats()
    inbound = [s for s in stats.values() if s.type == "inbound-rtp"]
    return (
        sum(int(getattr(s, "packetsReceived", 0) or 0) for s in inbound),
        sum(max(0, int(getattr(s, "packetsLost", 0) or 0)) for s in inbound),
    )


def run(n: int, seconds: float) -> dict[str, dict[str, Any]]:
    """Both bots at ``n`` calls, one after the other, each against a fresh user side."""
    return {kind: asyncio.run(_bot(kind, n, seconds)) for kind in KINDS}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"


def _row(row: dict[str, Any]) -> str:
    return (
        f"| {row['kind']} | {row['calls']} | {row['cpu_per_call_second']:.3f} | "
        f"{_ms(row['first_audio_p50'])} | {_ms(row['first_audio_p99'])} | "
        f"{row['main_thread_share']:.0%} | "
        f"{row['with_audio']}/{row['calls']} | {row['min_frames']} | "
        f"{'yes' if row['real_time'] else '**no**'} | "
        f"{row['packets_lost']}/{row['packets_received'] + row['packets_lost']} | "
        f"{row['setup_s']:.1f} s |"
    )


def profile(n: int, seconds: float, top: int = 10) -> str:
    """cProfile of the MediaCall bot process at ``n`` calls: the top functions by
    cumulative and by own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(_bot("d360calling", n, seconds))
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._media")
    parser.add_argument("--calls", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--profile", type=int, metavar="N", help="also profile N calls")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the rows here")
    parser.add_argument("--user-side", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.user_side:
        asyncio.run(_user_side(args.user_side, max(args.calls)))
        return 0
    print(
        "| bot | calls | bot CPU s per call-second | first audio p50 | p99 | main thread "
        "| calls with audio | min frames/call in window | real time | lost/packets | setup |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|:---:|---:|---:|", flush=True)
    ratios: list[str] = []
    everything: list[dict[str, Any]] = []
    for n in args.calls:
        rows = run(n, args.seconds)
        everything += rows.values()
        for kind in KINDS:
            print(_row(rows[kind]), flush=True)
        ratio = rows["d360calling"]["cpu_per_call_second"] / max(
            rows["aiortc (plain)"]["cpu_per_call_second"], 1e-9
        )
        ratios.append(f"N={n}: {ratio:.2f}x")
    if args.json is not None:
        args.json.write_text(json.dumps(everything, indent=2) + "\n")
    print(f"\nCPU ratio d360calling / plain aiortc (target <= 0.5x): {', '.join(ratios)}")
    if args.profile:
        print(f"\ncProfile of the d360calling bot process, N={args.profile}:\n")
        print(profile(args.profile, args.seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
