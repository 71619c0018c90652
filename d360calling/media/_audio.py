"""Audio as the bot sees it: 20 ms frames of 16-bit little-endian PCM, mono, 48 kHz (what
Opus carries; WhatsApp's apps send at most 16 kHz of bandwidth inside it)."""

from __future__ import annotations

import asyncio
import fractions
import math
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import attrs
import numpy as np
from aiortc import MediaStreamTrack
from av import AudioFrame

__all__ = (
    "CHANNELS",
    "FRAME_BYTES",
    "FRAME_SAMPLES",
    "SAMPLE_RATE",
    "PcmFrame",
    "SendTrack",
    "mono_pcm",
    "tone",
    "wav_frames",
)

SAMPLE_RATE = 48_000
CHANNELS = 1
FRAME_SAMPLES = 960  # 20 ms
FRAME_BYTES = FRAME_SAMPLES * 2 * CHANNELS
_SILENCE = bytes(FRAME_BYTES)
_TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)


@attrs.frozen
class PcmFrame:
    """20 ms of audio: ``pcm`` holds ``FRAME_SAMPLES`` 16-bit little-endian mono samples at
    ``sample_rate`` Hz; ``received_at`` is ``time.monotonic()`` when it arrived (0 for
    frames you make)."""

    pcm: bytes = attrs.field(repr=False)
    sample_rate: int = SAMPLE_RATE
    received_at: float = 0.0


def tone(hz: float, seconds: float, *, amplitude: float = 0.3) -> Iterator[bytes]:
    """A sine tone as 20 ms PCM frames."""
    total = max(1, math.ceil(seconds * SAMPLE_RATE / FRAME_SAMPLES))
    for index in range(total):
        start = index * FRAME_SAMPLES
        t = (np.arange(start, start + FRAME_SAMPLES) / SAMPLE_RATE).astype(np.float64)
        yield (np.sin(2 * np.pi * hz * t) * amplitude * 32767).astype("<i2").tobytes()


def wav_frames(path: str | Path) -> Iterator[bytes]:
    """A WAV file (16-bit PCM, 48 kHz, mono or stereo: stereo is mixed down) as 20 ms
    frames; the last one is padded with silence. ``ValueError`` for any other format."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2 or wav.getframerate() != SAMPLE_RATE:
            raise ValueError(
                f"{path}: need 16-bit PCM at {SAMPLE_RATE} Hz, got "
                f"{8 * wav.getsampwidth()}-bit at {wav.getframerate()} Hz"
            )
        channels = wav.getnchannels()
        if channels not in (1, 2):
            raise ValueError(f"{path}: need mono or stereo, got {channels} channels")
        while True:
            chunk = wav.readframes(FRAME_SAMPLES)
            if not chunk:
                return
            samples = np.frombuffer(chunk, dtype="<i2")
            if channels == 2:
                samples = (samples.reshape(-1, 2).astype(np.int32).sum(axis=1) // 2).astype("<i2")
            data = samples.tobytes()
            yield data + _SILENCE[len(data) :]


def mono_pcm(frame: AudioFrame) -> bytes:
    """The first channel of a decoded frame as 16-bit PCM (aiortc's Opus decoder gives
    packed stereo s16 at 48 kHz; WhatsApp's audio is mono, so both channels are equal)."""
    samples = frame.to_ndarray()
    channels = len(frame.layout.channels)
    flat = samples.reshape(-1)
    mono = samples[0] if frame.format.is_planar or channels == 1 else flat[::channels]
    if mono.dtype != np.int16:
        mono = (np.clip(mono, -1.0, 1.0) * 32767).astype(np.int16)
    return bytes(mono.astype("<i2").tobytes())


class SendTrack(MediaStreamTrack):
    """The audio the bot sends: queued frames, paced at 20 ms; silence when the queue is
    empty, so RTP (and RTCP) keep flowing and the call is not ended for lack of media."""

    kind = "audio"

    def __init__(self, max_queued: int = 3000, source: Iterator[bytes] | None = None) -> None:
        super().__init__()
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(max_queued)
        self._source = source  # played when nothing is queued (the fake's user)
        self._start: float | None = None
        self._pts = 0
        self.idle = asyncio.Event()
        self.idle.set()

    async def put(self, pcm: bytes) -> None:
        if len(pcm) != FRAME_BYTES:
            raise ValueError(f"a frame is {FRAME_BYTES} bytes of PCM, got {len(pcm)}")
        self.idle.clear()
        await self._queue.put(pcm)

    def clear(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()
        self.idle.set()

    async def recv(self) -> AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._pts += FRAME_SAMPLES
            wait = self._start + self._pts / SAMPLE_RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        try:
            pcm = self._queue.get_nowait()
        except asyncio.QueueEmpty:
            pcm = next(self._source, _SILENCE) if self._source is not None else _SILENCE
            self.idle.set()
        frame = AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(pcm)
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        frame.time_base = _TIME_BASE
        return frame
