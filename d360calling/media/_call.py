"""A WhatsApp call with real audio, on aiortc, in either direction.

Inbound (:meth:`MediaCall.answer`): check the user's offer (a bad one is rejected through
the API and raises :class:`MediaOfferError`), answer it with one sha-256 fingerprint and all
candidates in the SDP, ``pre_accept``, wait until ICE and DTLS are connected, then
``accept`` with the same SDP: audio is flowing before the user hears the call picked up, so
the first words are not clipped. Against WhatsApp's ICE-lite offer aiortc takes the
controlling role, as WhatsApp requires.

Outbound (:meth:`MediaCall.place`): a conformant offer (controlling: aiortc's offerer
role), ``connect`` through :meth:`WebhookReceiver.place_call`, then the user's answer from
the connect webhook.

A call ends when you :meth:`hangup` (terminate through the API), when its terminate webhook
arrives (:meth:`feed` it, or use :class:`MediaCalls`), or when no audio arrived for
``media_timeout`` seconds (terminated through the API).

DTMF: aiortc 1.16 negotiates no ``telephone-event`` (it answers with Opus only) and has no
DTMF sender, so digits can be neither received nor sent on this stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Coroutine, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..errors import D360Error
from ..models.webhooks import CallConnectEvent, CallTerminateEvent, WebhookEvent
from ._audio import PcmFrame, SendTrack, mono_pcm, tone, wav_frames
from ._errors import MediaOfferError, MediaTimeoutError
from ._net import MediaConfig, gathering_on, rtc_configuration
from ._sdp import conformant, offer_problems

if TYPE_CHECKING:
    from .._async_client import AsyncClient
    from ..webhooks import OutboundCall, WebhookReceiver

__all__ = ("MediaCall", "MediaCalls")

_log = logging.getLogger("d360calling.media")
_MAX_BUFFERED = 500  # received frames kept for a reader that falls behind (10 s)


class MediaCall:
    """One call's audio. Make one with :meth:`answer` or :meth:`place`."""

    def __init__(
        self, client: AsyncClient, call_id: str, pc: RTCPeerConnection, config: MediaConfig
    ) -> None:
        self.client = client
        self.call_id = call_id
        self.config = config
        self._pc = pc
        self._send = SendTrack()
        self._received: asyncio.Queue[PcmFrame | None] = asyncio.Queue(_MAX_BUFFERED)
        self._ended = asyncio.Event()
        self._connected = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._end_reason: str | None = None
        self._outbound: OutboundCall | None = None
        self.local_sdp = ""  # what was sent: the answer, or the offer
        self.remote_sdp = ""
        self.accepted_at: float | None = None  # monotonic: accept's 200, or the user's pick-up
        self.first_audio_at: float | None = None  # monotonic: the first frame received
        self.frames_received = 0
        pc.addTrack(self._send)
        pc.on("connectionstatechange", self._state_changed)
        pc.on("track", self._track)

    def __repr__(self) -> str:
        return f"<MediaCall {self.call_id} {self._pc.connectionState}>"

    # -- making one -----------------------------------------------------------------------

    @classmethod
    async def answer(
        cls, client: AsyncClient, event: CallConnectEvent, *, config: MediaConfig | None = None
    ) -> MediaCall:
        """Answer the user's call of ``event`` (an inbound connect webhook) with audio.
        Returns once the call is accepted and media flows. A bad offer: the call is
        rejected and :class:`MediaOfferError` raised; no connection within
        ``config.connect_timeout``: rejected and :class:`MediaTimeoutError`."""
        config = config or MediaConfig()
        call_id = event.call_id
        offer = event.sdp or ""
        problems = offer_problems(offer)
        pc = RTCPeerConnection(rtc_configuration(config))
        call = cls(client, call_id, pc, config)
        call.remote_sdp = offer
        if not problems:
            try:
                await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
                with gathering_on(config.local_addresses):
                    await pc.setLocalDescription(await pc.createAnswer())
            except (ValueError, KeyError, IndexError, TypeError) as exc:  # aiortc's parse errors
                problems.append(f"the offer could not be applied: {type(exc).__name__}")
            else:
                answer = conformant(pc.localDescription.sdp)
                if "opus/48000" not in answer.lower():
                    problems.append("no codec in common: the answer would carry no Opus audio")
                call.local_sdp = answer
        if problems:
            await call._give_up(reject=True)
            raise MediaOfferError(
                f"call {call_id} rejected: " + "; ".join(problems),
                call_id=call_id,
                problems=tuple(problems),
            )
        try:
            await client.pre_accept_call(call_id, call.local_sdp)
            await call._wait_connected()
            await client.accept_call(call_id, call.local_sdp)
        except BaseException:
            await call._give_up(reject=True)
            raise
        call._started()
        return call

    @classmethod
    async def place(
        cls,
        client: AsyncClient,
        receiver: WebhookReceiver,
        to: str | None = None,
        *,
        recipient: str | None = None,
        config: MediaConfig | None = None,
        ringing_timeout: float | None = 60.0,
    ) -> MediaCall:
        """Call a user with audio: a conformant offer through ``receiver.place_call``;
        returns once they picked up and media is connected. Raises what
        :meth:`OutboundCall.answered` raises when they do not, and
        :class:`MediaTimeoutError` (the call terminated) when media does not connect."""
        config = config or MediaConfig()
        pc = RTCPeerConnection(rtc_configuration(config))
        call = cls(client, "", pc, config)
        try:
            call.local_sdp = await call.create_offer()
            outbound = await receiver.place_call(
                client, to, call.local_sdp, recipient=recipient, ringing_timeout=ringing_timeout
            )
        except BaseException:
            await pc.close()
            raise
        call.call_id = outbound.call_id
        call._outbound = outbound
        try:
            answer = await outbound.answered()
            call.accepted_at = time.monotonic()
            call.remote_sdp = answer.sdp
            await pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
            await call._wait_connected()
        except BaseException:
            await call._give_up(reject=False)
            raise
        call._started(accepted=False)
        return call

    async def create_offer(self) -> str:
        """This call's SDP offer, as WhatsApp takes it (gathered on the configured
        addresses)."""
        with gathering_on(self.config.local_addresses):
            await self._pc.setLocalDescription(await self._pc.createOffer())
        return conformant(self._pc.localDescription.sdp)

    # -- what is known --------------------------------------------------------------------

    @property
    def ice_role(self) -> str:
        """``controlling`` or ``controlled`` (the business must be controlling)."""
        transceiver = self._pc.getTransceivers()[0]
        return str(transceiver.receiver.transport.transport.role)

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    @property
    def end_reason(self) -> str | None:
        """``hangup``, ``terminated`` (the webhook), ``media timeout``, ``media failed``."""
        return self._end_reason

    @property
    def first_audio_delay(self) -> float | None:
        """Seconds from the accept (or the user's pick-up) to the first audio frame."""
        if self.accepted_at is None or self.first_audio_at is None:
            return None
        return self.first_audio_at - self.accepted_at

    async def wait_ended(self, timeout: float | None = None) -> str | None:
        await asyncio.wait_for(self._ended.wait(), timeout)
        return self._end_reason

    # -- audio ----------------------------------------------------------------------------

    async def received_audio(self) -> AsyncIterator[PcmFrame]:
        """What the user says, as 20 ms frames, until the call ends. Frames not read are
        kept up to 10 s (older ones are dropped)."""
        while True:
            frame = await self._received.get()
            if frame is None:
                self._received.put_nowait(None)  # every reader ends
                return
            yield frame

    async def send_audio(self, frames: Iterable[bytes] | AsyncIterable[bytes]) -> None:
        """Queue 20 ms PCM frames (``FRAME_BYTES`` each) to send; returns once they are
        queued (at most about a minute ahead)."""
        if isinstance(frames, AsyncIterable):
            async for pcm in frames:
                await self._send.put(pcm)
        else:
            for pcm in frames:
                await self._send.put(pcm)

    async def play_tone(self, hz: float, seconds: float) -> None:
        """Send a sine tone and return once it has been played."""
        await self.send_audio(tone(hz, seconds))
        await self._send.idle.wait()

    async def play_wav(self, path: str | Path) -> None:
        """Send a WAV file (16-bit, 48 kHz) and return once it has been played."""
        await self.send_audio(wav_frames(path))
        await self._send.idle.wait()

    # -- ending ---------------------------------------------------------------------------

    async def hangup(self) -> None:
        """End the call through the API (``terminate``) and close the media; idempotent."""
        if self._ended.is_set():
            return
        self._finish("hangup")
        try:
            if self._outbound is not None:
                await self._outbound.hangup()
            else:
                await self.client.terminate_call(self.call_id)
        finally:
            await self._close()

    def feed(self, event: WebhookEvent) -> None:
        """A webhook for this call: its terminate ends the call (without an API request)."""
        if isinstance(event, CallTerminateEvent) and event.call_id == self.call_id:
            self._finish("terminated")
            self._spawn(self._close())

    async def _close(self) -> None:
        self._send.clear()
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        await self._pc.close()

    def _finish(self, reason: str) -> None:
        if self._ended.is_set():
            return
        self._end_reason = reason
        self._ended.set()
        try:
            self._received.put_nowait(None)
        except asyncio.QueueFull:  # make room for the end marker
            self._received.get_nowait()
            self._received.put_nowait(None)

    async def _give_up(self, *, reject: bool) -> None:
        self._finish("media failed")
        try:
            if reject:
                await self.client.reject_call(self.call_id)
            elif self._outbound is not None:
                await self._outbound.hangup()
        except D360Error as exc:
            _log.warning("call %s: could not end it: %s", self.call_id, type(exc).__name__)
        finally:
            await self._close()

    # -- media ----------------------------------------------------------------------------

    def _state_changed(self) -> None:
        state = self._pc.connectionState
        if state == "connected":
            self._connected.set()
        elif state in ("failed", "closed") and not self._ended.is_set():
            self._finish("media failed")

    async def _wait_connected(self) -> None:
        try:
            await asyncio.wait_for(self._connected.wait(), self.config.connect_timeout)
        except asyncio.TimeoutError:
            raise MediaTimeoutError(
                f"call {self.call_id}: ICE/DTLS not connected within "
                f"{self.config.connect_timeout:g} s",
                call_id=self.call_id,
            ) from None

    def _track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._spawn(self._pump(track))

    def _started(self, *, accepted: bool = True) -> None:
        if accepted:
            self.accepted_at = time.monotonic()
        if self._outbound is not None:
            self._spawn(self._follow(self._outbound))

    async def _follow(self, outbound: OutboundCall) -> None:
        await outbound.ended()
        if not self._ended.is_set():
            self._finish("terminated")
            await self._close()

    async def _pump(self, track: MediaStreamTrack) -> None:
        timeout = self.config.media_timeout
        while not self._ended.is_set():
            try:
                frame = await asyncio.wait_for(track.recv(), timeout)
            except asyncio.TimeoutError:
                if self.accepted_at is None:
                    continue  # not accepted yet: the connect timeout decides
                _log.warning("call %s: no audio for %g s: terminating", self.call_id, timeout)
                self._finish("media timeout")
                with contextlib.suppress(D360Error):
                    await self.client.terminate_call(self.call_id)
                await self._close()
                return
            except MediaStreamError:
                if not self._ended.is_set():
                    self._finish("media failed")
                return
            now = time.monotonic()
            if self.first_audio_at is None:
                self.first_audio_at = now
            self.frames_received += 1
            pcm = PcmFrame(mono_pcm(frame), received_at=now)  # type: ignore[arg-type]
            if self._received.full():
                self._received.get_nowait()  # nobody is reading: keep the newest
            self._received.put_nowait(pcm)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.append(task)


class MediaCalls:
    """The media calls of one bot, fed by its receiver: pass ``on_terminate=calls.feed``
    (or call :meth:`feed` from your own callback) so a terminate webhook ends its call."""

    def __init__(self) -> None:
        self._calls: dict[str, MediaCall] = {}

    def add(self, call: MediaCall) -> MediaCall:
        self._calls[call.call_id] = call
        return call

    def __len__(self) -> int:
        return len(self._calls)

    async def feed(self, event: WebhookEvent) -> None:
        call = self._calls.get(getattr(event, "call_id", ""))
        if call is not None:
            call.feed(event)
            if call.ended:
                del self._calls[call.call_id]

    async def hangup_all(self) -> None:
        calls, self._calls = list(self._calls.values()), {}
        await asyncio.gather(*(call.hangup() for call in calls), return_exceptions=True)
