"""The fake's media mode (needs the ``media`` extra): its WhatsApp user is a real aiortc
peer on 127.0.0.1 that plays a sound and records what it hears.

>>> media = FakeMedia(fake, tone_hz=880)        # doctest: +SKIP
>>> user = await media.user_calls("4915112345678")  # an ICE-lite, WhatsApp-shaped offer
>>> user.dominant_frequency()                   # doctest: +SKIP

- Inbound: :meth:`FakeMedia.user_calls` makes an offer shaped like WhatsApp's
  (``a=ice-lite``, one sha-256 fingerprint, Opus and ``telephone-event/8000``, host
  candidates on 127.0.0.1 only, ``a=end-of-candidates``) and the peer stays ICE-controlled,
  as Meta's media servers do; the business's answer is applied at ``pre_accept``.
- Outbound: with ``auto_answer`` on, every business ``connect`` is picked up with an
  aiortc answer (controlled: the business offers, and must be controlling).

Per call (:meth:`FakeMedia.call`): frames received, the dominant frequency heard (FFT),
the time from the business's accept (or the pick-up) to the first audio, packet loss, and a
WAV of what was heard. aioice is not truly ICE-lite, so this peer is more forgiving of ICE
roles than Meta: check :attr:`FakeMediaCall.ice_role` and the business side's.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..media._audio import FRAME_SAMPLES, SAMPLE_RATE, SendTrack, mono_pcm, tone, wav_frames
from ..media._net import MediaConfig, gathering_on, rtc_configuration
from ..media._sdp import conformant
from ._calls import FakeCall
from ._enums import CallAction
from ._errors import ScenarioError

if TYPE_CHECKING:
    from ._server import FakeCallingAPI

__all__ = ("FakeMedia", "FakeMediaCall", "dominant_frequency")

_log = logging.getLogger("d360calling.testing.media")
_MAX_RECORDED_SECONDS = 60.0


def _sound(tone_hz: float | None, wav: str | Path | None) -> Iterator[bytes]:
    if wav is not None:
        return wav_frames(wav)
    return tone(tone_hz if tone_hz is not None else 880.0, 3600.0)


def _whatsapp_shaped(sdp: str) -> str:
    """aiortc's offer as WhatsApp's media servers send one: ICE-lite, Opus (plus
    telephone-event at 8000 Hz, which WhatsApp always offers) and one sha-256
    fingerprint."""
    lines = conformant(sdp).rstrip("\r\n").split("\r\n")
    out: list[str] = []
    for line in lines:
        if line.startswith("m=audio "):
            head = line.split(" ")[:3]
            opus = [p for p in line.split(" ")[3:] if f"a=rtpmap:{p} opus/48000" in sdp]
            out.append(" ".join([*head, *opus, "126"]))
            continue
        if line.startswith(("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:")):
            payload = line.split(":", 1)[1].split(" ", 1)[0]
            if f"a=rtpmap:{payload} opus/48000" not in sdp:
                continue
        out.append(line)
        if line.startswith("t="):
            out.append("a=ice-lite")
        if line.startswith("a=rtpmap:") and "opus/48000" in line:
            out.append("a=rtpmap:126 telephone-event/8000")
    return "\r\n".join(out) + "\r\n"


class FakeMediaCall:
    """The user's side of one call: what it heard, and how it went."""

    def __init__(self, call_id: str, pc: RTCPeerConnection, inbound: bool) -> None:
        self.call_id = call_id
        self.inbound = inbound
        self.pc = pc
        self.offer_sdp = ""
        self.answer_sdp = ""
        self.accepted_at: float | None = None  # monotonic
        self.first_audio_at: float | None = None
        self.frames_received = 0
        self._pcm = bytearray()
        self._answered = False
        self.heard = asyncio.Event()  # set at the first audio frame

    def __repr__(self) -> str:
        return f"<FakeMediaCall {self.call_id} {self.frames_received} frames>"

    @property
    def ice_role(self) -> str:
        return str(self.pc.getTransceivers()[0].receiver.transport.transport.role)

    @property
    def first_audio_delay(self) -> float | None:
        """Seconds from the accept (inbound) or the pick-up (outbound) to the first frame."""
        if self.accepted_at is None or self.first_audio_at is None:
            return None
        return self.first_audio_at - self.accepted_at

    def samples(self) -> np.ndarray[Any, np.dtype[np.int16]]:
        return np.frombuffer(bytes(self._pcm), dtype="<i2")

    def dominant_frequency(self, skip_seconds: float = 0.1) -> float | None:
        """The loudest frequency heard (Hz, FFT over everything recorded after
        ``skip_seconds``), or ``None`` when nothing but silence arrived."""
        return dominant_frequency(self.samples()[int(skip_seconds * SAMPLE_RATE) :])

    def wav(self) -> bytes:
        """What the user heard, as a mono 16-bit 48 kHz WAV file."""
        out = io.BytesIO()
        with wave.open(out, "wb") as writer:
            writer.setnchannels(1)
            writer.setsampwidth(2)
            writer.setframerate(SAMPLE_RATE)
            writer.writeframes(bytes(self._pcm))
        return out.getvalue()

    async def packets_lost(self) -> int:
        stats = await self.pc.getStats()
        return sum(
            int(getattr(s, "packetsLost", 0) or 0)
            for s in stats.values()
            if s.type == "inbound-rtp"
        )

    def _record(self, pcm: bytes, now: float) -> None:
        if self.first_audio_at is None:
            self.first_audio_at = now
            self.heard.set()
        self.frames_received += 1
        if len(self._pcm) < _MAX_RECORDED_SECONDS * SAMPLE_RATE * 2:
            self._pcm += pcm


def dominant_frequency(samples: np.ndarray[Any, Any]) -> float | None:
    """The loudest frequency (Hz) in 48 kHz ``samples``, or ``None`` for silence."""
    if len(samples) < FRAME_SAMPLES:
        return None
    data = samples.astype(np.float64)
    if float(np.max(np.abs(data))) < 100:  # about -50 dBFS: silence, codec noise
        return None
    spectrum = np.abs(np.fft.rfft(data * np.hanning(len(data))))
    spectrum[0] = 0
    return float(np.argmax(spectrum) * SAMPLE_RATE / len(data))


class FakeMedia:
    """The fake's WhatsApp users as real WebRTC peers (see the module). Make it on the loop
    that should run the peers; the fake may run on that loop or in its own thread."""

    def __init__(
        self,
        fake: FakeCallingAPI,
        *,
        tone_hz: float | None = 880.0,
        wav: str | Path | None = None,
        auto_answer: bool = True,
        local_addresses: tuple[str, ...] = ("127.0.0.1",),
    ) -> None:
        self.fake = fake
        self.tone_hz = tone_hz
        self.wav_path = wav
        self.auto_answer = auto_answer
        self.config = MediaConfig(local_addresses=local_addresses)
        self._loop = asyncio.get_running_loop()
        self._calls: dict[str, FakeMediaCall] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._world = fake._world
        self._world.call_observers.append(self._observe)

    def call(self, call_id: str) -> FakeMediaCall:
        return self._calls[call_id]

    @property
    def calls(self) -> dict[str, FakeMediaCall]:
        return dict(self._calls)

    async def user_calls(
        self, user: str, *, tone_hz: float | None = None, wav: str | Path | None = None
    ) -> FakeMediaCall:
        """The user calls the business with a WhatsApp-shaped offer and plays ``tone_hz``
        (or ``wav``; default: this media mode's sound)."""
        pc = self._peer(tone_hz, wav)
        # Meta's side is ICE-lite and so always controlled; aiortc would make an offerer
        # controlling, so the role is fixed before the offer.
        ice = pc.getTransceivers()[0].sender.transport.transport
        ice._connection.ice_controlling = False
        ice._role_set = True
        with gathering_on(self.config.local_addresses):
            await pc.setLocalDescription(await pc.createOffer())
        offer = _whatsapp_shaped(pc.localDescription.sdp)
        fake_call = self.fake.user_calls(user, sdp=offer)
        call = FakeMediaCall(fake_call.id, pc, inbound=True)
        call.offer_sdp = offer
        self._add(call)
        return call

    async def close(self) -> None:
        if self._observe in self._world.call_observers:
            self._world.call_observers.remove(self._observe)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(c.pc.close() for c in self._calls.values()))

    async def __aenter__(self) -> FakeMedia:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # -- the API's side, told by the fake ---------------------------------------------------

    def _observe(self, call: FakeCall, action: CallAction) -> None:
        # In the fake's thread, under its lock: only hand over to the peers' loop.
        self._loop.call_soon_threadsafe(
            self._act, call.id, action, call.offer_sdp, call.answer_sdp or ""
        )

    def _act(self, call_id: str, action: CallAction, offer: str, answer: str) -> None:
        if action is CallAction.CONNECT and self.auto_answer:
            self._spawn(self._pick_up(call_id, offer))
            return
        call = self._calls.get(call_id)
        if call is None or not call.inbound:
            return
        if action in (CallAction.PRE_ACCEPT, CallAction.ACCEPT) and not call._answered:
            call._answered = True
            call.answer_sdp = answer
            self._spawn(call.pc.setRemoteDescription(RTCSessionDescription(answer, "answer")))
        if action is CallAction.ACCEPT:
            call.accepted_at = time.monotonic()
        elif action in (CallAction.REJECT, CallAction.TERMINATE):
            self._spawn(call.pc.close())

    async def _pick_up(self, call_id: str, offer: str) -> None:
        pc = self._peer(None, None)
        await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        with gathering_on(self.config.local_addresses):
            await pc.setLocalDescription(await pc.createAnswer())
        call = FakeMediaCall(call_id, pc, inbound=False)
        call.offer_sdp = offer
        call.answer_sdp = conformant(pc.localDescription.sdp)
        self._add(call)
        self.fake.user_answers(call_id, sdp=call.answer_sdp)
        call.accepted_at = time.monotonic()

    # -- the peers ----------------------------------------------------------------------------

    def _peer(self, tone_hz: float | None, wav: str | Path | None) -> RTCPeerConnection:
        pc = RTCPeerConnection(rtc_configuration(self.config))
        if tone_hz is None and wav is None:
            tone_hz, wav = self.tone_hz, self.wav_path
        pc.addTrack(SendTrack(source=_sound(tone_hz, wav)))
        return pc

    def _add(self, call: FakeMediaCall) -> None:
        self._calls[call.call_id] = call

        def track(remote: MediaStreamTrack) -> None:
            if remote.kind == "audio":
                self._spawn(self._record(call, remote))

        call.pc.on("track", track)
        # The track event may have fired already (an answer applied before _add).
        for receiver in call.pc.getReceivers():
            if receiver.track is not None and call.pc.remoteDescription is not None:
                self._spawn(self._record(call, receiver.track))

    async def _record(self, call: FakeMediaCall, remote: MediaStreamTrack) -> None:
        seen = getattr(self.fake, "media_seen", None)  # the fake's no-media timer, if any
        while True:
            try:
                frame = await remote.recv()
            except MediaStreamError:
                return
            call._record(mono_pcm(frame), time.monotonic())  # type: ignore[arg-type]
            if seen is not None and call.frames_received % 50 == 1:
                try:
                    seen(call.call_id)
                except ScenarioError:  # the call ended while its last packets arrived
                    seen = None

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        # A failure in a peer's task would otherwise vanish until the loop is closed (and
        # the call it belonged to would just never answer): say so now.
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("fake media: %s failed", task.get_coro(), exc_info=task.exception())
