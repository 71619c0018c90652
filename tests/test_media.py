"""Real audio over loopback (the ``media`` extra): ``MediaCall`` answers and places calls
against the fake's media mode, whose WhatsApp user is a real aiortc peer; tones are detected
by FFT on the far side; every candidate of every SDP is 127.0.0.1; the business side is
ICE-controlling against the ICE-lite offer; a bad offer is rejected through the API."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("aiortc")

import numpy as np
import pytest_asyncio
from aiortc import RTCPeerConnection

from d360calling import AsyncClient, InvalidRequestError
from d360calling.media import (
    FRAME_BYTES,
    MediaCall,
    MediaCalls,
    MediaConfig,
    MediaOfferError,
)
from d360calling.media._net import rtc_configuration
from d360calling.media._sdp import candidate_addresses
from d360calling.testing import CallState, FakeCallingAPI, serve
from d360calling.testing.media import FakeMedia, dominant_frequency
from d360calling.webhooks import CallConnectEvent, WebhookReceiver

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

USER = "4915112345678"
WAIT = 20.0  # bound of every wait: generous for a loaded 2-core machine


class Bot:
    """The business: a receiver whose connect callback answers with media."""

    def __init__(self, fake: FakeCallingAPI, client: AsyncClient, config: MediaConfig) -> None:
        self.fake = fake
        self.client = client
        self.config = config
        self.calls = MediaCalls()
        self.answered: asyncio.Queue[MediaCall | BaseException] = asyncio.Queue()
        self.receiver = WebhookReceiver(
            insecure_no_auth=True, on_connect=self.on_connect, on_terminate=self.calls.feed
        )

    async def on_connect(self, event: CallConnectEvent) -> None:
        if not event.is_inbound:
            return
        try:
            call = await MediaCall.answer(self.client, event, config=self.config)
        except Exception as exc:
            self.answered.put_nowait(exc)
        else:
            self.answered.put_nowait(self.calls.add(call))

    async def next_answer(self) -> MediaCall | BaseException:
        return await asyncio.wait_for(self.answered.get(), WAIT)


@pytest_asyncio.fixture
async def world() -> AsyncIterator[tuple[FakeCallingAPI, FakeMedia, Bot]]:
    async with FakeCallingAPI() as fake:
        fake.grant_permission(USER, notify=False)
        async with fake.async_client() as client, FakeMedia(fake, tone_hz=880.0) as media:
            bot = Bot(fake, client, MediaConfig(connect_timeout=WAIT))
            runner, port = await serve(bot.receiver.app())
            fake.webhook_url = f"http://127.0.0.1:{port}/webhook"
            try:
                yield fake, media, bot
            finally:
                await bot.calls.hangup_all()
                await bot.receiver.close()
                await runner.cleanup()


async def hear(call: MediaCall, seconds: float) -> float | None:
    """The dominant frequency of the next ``seconds`` of what the bot receives."""
    pcm = bytearray()
    async for frame in call.received_audio():
        assert len(frame.pcm) == FRAME_BYTES
        assert frame.sample_rate == 48_000
        pcm += frame.pcm
        if len(pcm) >= seconds * 48_000 * 2:
            break
    return dominant_frequency(np.frombuffer(bytes(pcm), dtype="<i2"))


def assert_loopback_only(*sdps: str) -> None:
    for sdp in sdps:
        addresses = candidate_addresses(sdp)
        assert addresses, "an SDP without candidates (WhatsApp takes no trickle)"
        assert set(addresses) == {"127.0.0.1"}, addresses
        assert "a=end-of-candidates" in sdp
        assert len(re.findall(r"^a=candidate:", sdp, re.MULTILINE)) == len(addresses)


def assert_one_sha256(sdp: str) -> None:
    assert re.findall(r"^a=fingerprint:(\S+) ", sdp, re.MULTILINE) == ["sha-256"]
    assert "\n" not in sdp.replace("\r\n", "")  # CRLF only


async def test_inbound_call_audio_both_ways_business_controlling(world: Any) -> None:
    fake, media, bot = world
    user = await media.user_calls(USER)
    assert "a=ice-lite" in user.offer_sdp
    call = await bot.next_answer()
    assert isinstance(call, MediaCall), call
    # pre_accept, then (once ICE and DTLS were up) accept, both with the same answer
    actions = [a["action"] for a in fake.call_actions() if a.get("call_id") == call.call_id]
    assert actions == ["pre_accept", "accept"]
    sent = {a["session"]["sdp"] for a in fake.call_actions() if a.get("call_id") == call.call_id}
    assert sent == {call.local_sdp}
    assert_one_sha256(call.local_sdp)
    assert_loopback_only(fake.calls[call.call_id].offer_sdp, fake.calls[call.call_id].answer_sdp)
    assert (call.ice_role, user.ice_role) == ("controlling", "controlled")

    heard, _ = await asyncio.gather(hear(call, 1.0), call.play_tone(440.0, 1.0))
    assert heard == pytest.approx(880.0, abs=10)
    await asyncio.wait_for(user.heard.wait(), WAIT)
    assert user.dominant_frequency() == pytest.approx(440.0, abs=10)
    assert user.frames_received >= 40
    assert await user.packets_lost() == 0
    assert call.first_audio_delay is not None
    assert 0 <= call.first_audio_delay < 5
    assert user.first_audio_delay is not None
    assert 0 <= user.first_audio_delay < 5
    assert user.wav()[:4] == b"RIFF"

    await call.hangup()
    assert call.end_reason == "hangup"
    assert fake.calls[call.call_id].state is CallState.ENDED
    assert [a["action"] for a in fake.call_actions("terminate")] == ["terminate"]


async def test_outbound_call_audio_both_ways(world: Any) -> None:
    fake, media, bot = world
    media.tone_hz = 440.0
    call = await asyncio.wait_for(
        MediaCall.place(bot.client, bot.receiver, USER, config=bot.config), WAIT
    )
    offer, answer = fake.calls[call.call_id].offer_sdp, fake.calls[call.call_id].answer_sdp
    assert_one_sha256(offer)
    assert offer == call.local_sdp
    assert_loopback_only(offer, answer)
    user = media.call(call.call_id)
    assert (call.ice_role, user.ice_role) == ("controlling", "controlled")

    heard, _ = await asyncio.gather(hear(call, 1.0), call.play_tone(880.0, 1.0))
    assert heard == pytest.approx(440.0, abs=10)
    assert user.dominant_frequency() == pytest.approx(880.0, abs=10)
    assert call.first_audio_delay is not None
    assert 0 <= call.first_audio_delay < 5

    await call.hangup()
    assert fake.calls[call.call_id].state is CallState.ENDED


async def test_the_users_hang_up_ends_the_media_call(world: Any) -> None:
    fake, media, bot = world
    await media.user_calls(USER)
    call = await bot.next_answer()
    assert isinstance(call, MediaCall)
    fake.user_hangs_up(call.call_id)
    assert await call.wait_ended(WAIT) == "terminated"
    assert fake.call_actions("terminate") == []  # ended by the webhook: nothing sent
    assert len(bot.calls) == 0


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda sdp: sdp.replace("m=audio ", "m=video "), "no audio"),
        (
            lambda sdp: re.sub(r"opus/48000/2", "G722/8000", sdp),
            "no Opus",
        ),
        (lambda sdp: "hello\r\n", "not an SDP"),
    ],
    ids=["no-audio", "no-opus", "malformed"],
)
async def test_a_bad_offer_is_rejected_through_the_api(
    world: Any, change: Any, problem: str
) -> None:
    fake, media, bot = world
    good = (await media.user_calls("4915199999999")).offer_sdp
    first = await bot.next_answer()
    assert isinstance(first, MediaCall)
    await first.hangup()
    call = fake.user_calls(USER, sdp=change(good))
    error = await bot.next_answer()
    assert isinstance(error, MediaOfferError)
    assert problem in str(error)
    assert error.call_id == call.id
    secret = re.findall(r"a=ice-pwd:(\S+)", good)[0]
    assert secret not in str(error)
    assert secret not in repr(error.problems)
    assert [a["call_id"] for a in fake.call_actions("reject")] == [call.id]
    assert fake.calls[call.id].state is CallState.ENDED
    assert not any(a["call_id"] == call.id for a in fake.call_actions("pre_accept"))


async def test_configuration_is_loopback_and_server_free_by_default() -> None:
    config = MediaConfig()
    assert config.local_addresses == ("127.0.0.1",)
    assert rtc_configuration(config).iceServers == []  # not aiortc's public STUN default
    assert MediaConfig(local_addresses="192.0.2.7").local_addresses == ("192.0.2.7",)
    with pytest.raises(InvalidRequestError, match="not an IP address"):
        MediaConfig(local_addresses=("example.com",))
    with pytest.raises(InvalidRequestError, match="at least one"):
        MediaConfig(local_addresses=())
    with pytest.raises(InvalidRequestError, match="media_timeout"):
        MediaConfig(media_timeout=0)


async def test_the_media_demo_hears_both_tones_on_both_calls(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from d360calling._media_demo import run_media_demo

    assert await run_media_demo() == 0
    out = capsys.readouterr().out
    inbound = next(line for line in out.splitlines() if line.strip().startswith("inbound "))
    outbound = next(line for line in out.splitlines() if line.strip().startswith("outbound "))
    assert inbound.split()[-4:] == ["880", "Hz", "440", "Hz"]
    assert outbound.split()[-4:] == ["660", "Hz", "440", "Hz"]
    assert "Audio detected both ways on both calls." in out


class _Frames:
    """A remote track that yields ``count`` decoded-looking frames, then ends."""

    kind = "audio"

    def __init__(self, count: int) -> None:
        self.left = count

    async def recv(self) -> Any:
        from aiortc.mediastreams import MediaStreamError
        from av import AudioFrame

        if self.left == 0:
            raise MediaStreamError
        self.left -= 1
        frame = AudioFrame(format="s16", layout="mono", samples=960)
        frame.planes[0].update(bytes(FRAME_BYTES))
        frame.sample_rate = 48_000
        return frame


async def test_the_fakes_recorder_outlives_the_end_of_its_call() -> None:
    # The last packets of a call arrive after the fake ended it: media_seen then raises
    # ScenarioError, which used to kill the recorder silently (and lose its frames).
    from d360calling.testing._media import FakeMediaCall

    async with FakeCallingAPI() as fake, FakeMedia(fake) as media:
        fake.grant_permission(USER, notify=False)
        ended = fake.user_calls(USER)
        fake.user_hangs_up(ended.id)
        pc = RTCPeerConnection(rtc_configuration(MediaConfig()))
        call = FakeMediaCall(ended.id, pc, inbound=True)
        try:
            await asyncio.wait_for(media._record(call, _Frames(120)), WAIT)  # type: ignore[arg-type]
        finally:
            await pc.close()
    assert call.frames_received == 120


async def test_a_failing_fake_media_task_is_logged(
    world: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # A task of the fake's peers that fails (a pick-up that cannot answer, say) is logged
    # at once instead of vanishing: the call would otherwise just never be answered.
    _, media, _ = world

    async def broken() -> None:
        raise ValueError("no answer for this offer")

    with caplog.at_level("ERROR", logger="d360calling.testing.media"):
        media._spawn(broken())
        for _ in range(10):  # the task runs and its done-callback follows, both soon
            await asyncio.sleep(0)
    failed = [r for r in caplog.records if r.name == "d360calling.testing.media"]
    assert len(failed) == 1
    assert failed[0].exc_info is not None
    assert "no answer" in str(failed[0].exc_info[1])
    assert not media._tasks
