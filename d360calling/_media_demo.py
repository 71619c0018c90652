"""``d360calling demo --media``: two real calls with audio over loopback, against the fake's
media mode (its WhatsApp user is a real WebRTC peer): one the user places, one the business
places. Each side plays a tone; each prints what it heard (FFT) and how soon audio came
after the accept. Needs the ``media`` extra; without it, says how to install it (exit 2)."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TYPE_CHECKING

from .testing import FakeCallingAPI, serve
from .webhooks import CallConnectEvent, WebhookReceiver

if TYPE_CHECKING:
    from .media import MediaCall

__all__ = ("run_media_demo",)

CALLER = "4915112345678"
WAIT = 20.0
_INSTALL = 'the media demo needs the media extra: pip install "d360calling[media]"'


async def run_media_demo() -> int:
    try:
        from .media import MediaCall, MediaCalls, MediaConfig
        from .testing.media import FakeMedia, dominant_frequency
    except ImportError:
        print(_INSTALL, file=sys.stderr)
        return 2
    import numpy as np  # with the extra

    config = MediaConfig()  # 127.0.0.1 only, no STUN/TURN
    started = time.monotonic()

    def say(text: str) -> None:
        print(f"  {time.monotonic() - started:6.3f}s  {text}", flush=True)

    async def heard_by_bot(call: MediaCall, seconds: float) -> float | None:
        pcm = bytearray()
        async for frame in call.received_audio():
            pcm += frame.pcm
            if len(pcm) >= seconds * frame.sample_rate * 2:
                break
        return dominant_frequency(np.frombuffer(bytes(pcm), dtype="<i2"))

    async with FakeCallingAPI() as fake:
        fake.grant_permission(CALLER, notify=False)
        async with fake.async_client() as client, FakeMedia(fake) as media:
            calls = MediaCalls()
            answered: asyncio.Queue[MediaCall] = asyncio.Queue()

            async def on_connect(event: CallConnectEvent) -> None:
                if event.is_inbound:
                    answered.put_nowait(calls.add(await MediaCall.answer(client, event)))

            receiver = WebhookReceiver(
                insecure_no_auth=True, on_connect=on_connect, on_terminate=calls.feed
            )
            runner, port = await serve(receiver.app())
            fake.webhook_url = f"http://127.0.0.1:{port}/webhook"
            print("d360calling demo --media: real audio over 127.0.0.1 (aiortc), fake API")
            rows = []
            try:
                say(f"user {CALLER} calls, playing 880 Hz (ICE-lite, WhatsApp-shaped offer)")
                user = await media.user_calls(CALLER, tone_hz=880.0)
                inbound = await asyncio.wait_for(answered.get(), WAIT)
                say(f"bot: pre_accept, ICE+DTLS connected ({inbound.ice_role}), accept")
                bot_heard, _ = await asyncio.gather(
                    heard_by_bot(inbound, 1.0), inbound.play_tone(440.0, 1.0)
                )
                rows.append(("inbound", inbound, user, bot_heard))
                await inbound.hangup()
                say("bot hangs up (terminate)")

                media.tone_hz = 660.0
                say(f"bot calls {CALLER}; the user picks up, playing 660 Hz")
                outbound = await asyncio.wait_for(
                    MediaCall.place(client, receiver, CALLER, config=config), WAIT
                )
                peer = media.call(outbound.call_id)
                say(f"connected ({outbound.ice_role}); bot plays 440 Hz")
                bot_heard, _ = await asyncio.gather(
                    heard_by_bot(outbound, 1.0), outbound.play_tone(440.0, 1.0)
                )
                rows.append(("outbound", outbound, peer, bot_heard))
                await outbound.hangup()
                say("bot hangs up (terminate)")
            finally:
                await calls.hangup_all()
                await receiver.close()
                await runner.cleanup()

    print()
    print(f"  {'call':<9}{'first audio (bot)':>19}{'(user)':>9}{'bot heard':>12}{'user heard':>12}")
    ok = True
    for name, call, peer, bot_heard in rows:
        user_heard = peer.dominant_frequency()
        ok = ok and bot_heard is not None and user_heard is not None
        print(
            f"  {name:<9}{_ms(call.first_audio_delay):>19}{_ms(peer.first_audio_delay):>9}"
            f"{_hz(bot_heard):>12}{_hz(user_heard):>12}"
        )
    print("\nAudio detected both ways on both calls." if ok else "\nAudio missing!")
    return 0 if ok else 1


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def _hz(hz: float | None) -> str:
    return "silence" if hz is None else f"{hz:.0f} Hz"
