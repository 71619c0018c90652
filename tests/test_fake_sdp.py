"""The fake judges SDPs by d360calling.sdp's rules and answers as the real API does (400,
138008), makes WhatsApp-shaped SDPs that name only loopback and documentation addresses, and
ends a call that gets no media for 20 s (fake clock) once media is watched; and the client's
``sdp_check`` warns or refuses before anything is sent."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import warnings
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from d360calling import AsyncClient, BadRequestError, InvalidRequestError, SdpWarning, sdp
from d360calling.testing import (
    MEDIA_TIMEOUT,
    SDP_ERROR_CODE,
    SDP_ERROR_SUBCODE,
    FakeCallingAPI,
    FakeClock,
    sample_answer,
    sample_offer,
)
from d360calling.testing._sdp import user_answer

from .conftest import FAST_RETRY
from .helpers import API_KEY, USER

OTHER = "4915100000042"
THREE_FINGERPRINTS = (
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\n"
    "a=fingerprint:sha-384 " + ":".join(["CD"] * 48) + "\r\n"
    "a=fingerprint:sha-512 " + ":".join(["EF"] * 64) + "\r\n"
)


def aiortc_like(answer: str) -> str:
    """An answer with aiortc 1.16's three fingerprints instead of one."""
    lines = [line for line in answer.split("\r\n")[:-1] if not line.startswith("a=fingerprint")]
    text = "".join(line + "\r\n" for line in lines)
    return text.replace("a=setup:", THREE_FINGERPRINTS + "a=setup:")


@pytest_asyncio.fixture
async def unchecked(api: FakeCallingAPI) -> AsyncIterator[AsyncClient]:
    """A client that sends SDPs as given: what the fake makes of them is under test."""
    async with AsyncClient(
        api_key=API_KEY, base_url=api.url, retry_policy=FAST_RETRY, sdp_check="off"
    ) as client:
        yield client


# -- the fake refuses what WhatsApp refuses ----------------------------------------------


@pytest.mark.asyncio
async def test_aiortcs_three_fingerprints_get_138008(
    api: FakeCallingAPI, unchecked: AsyncClient
) -> None:
    call = api.user_calls(OTHER)
    with pytest.raises(BadRequestError) as raised:
        await unchecked.accept_call(call.id, aiortc_like(sample_answer(call.id, call.offer_sdp)))
    error = raised.value
    assert (error.status_code, error.code, error.error_subcode) == (
        400,
        SDP_ERROR_CODE,
        SDP_ERROR_SUBCODE,
    )
    assert error.details is not None
    assert "several-fingerprints" in error.details
    assert "sha-384" in error.details
    assert api.calls[call.id].state == "ringing"  # refused: nothing changed
    # normalize() makes the same answer acceptable.
    fixed = sdp.normalize(aiortc_like(sample_answer(call.id, call.offer_sdp)))
    await unchecked.accept_call(call.id, fixed)
    assert api.calls[call.id].state == "accepted"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda s: s.replace("\r\n", "\n"), "not-crlf"),
        (lambda s: s.replace("\r\n", "\\r\\n"), "double-escaped"),
        (lambda s: s.replace("opus/48000/2", "ISAC/16000"), "no-opus"),
        (lambda s: s + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\n", "several"),
        (lambda s: re.sub("a=ice-pwd:.*\r\n", "", s), "no-ice-credentials"),
        (lambda s: re.sub(r"sha-256 \S+", "sha-1 " + "AB:" * 19 + "AB", s), "not-sha256"),
    ],
)
@pytest.mark.asyncio
async def test_refused_answers_name_the_first_problem(
    api: FakeCallingAPI, unchecked: AsyncClient, change: object, code: str
) -> None:
    call = api.user_calls(OTHER)
    answer = change(sample_answer(call.id, call.offer_sdp))  # type: ignore[operator]
    with pytest.raises(BadRequestError, match=re.escape(code)) as raised:
        await unchecked.pre_accept_call(call.id, answer)
    assert raised.value.code == SDP_ERROR_CODE
    assert "ice-pwd:" not in str(raised.value)  # the details never repeat a credential
    assert api.calls[call.id].state == "ringing"


@pytest.mark.asyncio
async def test_what_only_breaks_media_is_accepted_as_the_real_api_does(
    api: FakeCallingAPI, unchecked: AsyncClient
) -> None:
    call = api.user_calls(OTHER)
    answer = sample_answer(call.id, call.offer_sdp).replace("a=sendrecv", "a=recvonly")
    assert [p.severity for p in sdp.check(answer, role="answer")] == [sdp.Severity.BREAKS_MEDIA]
    await unchecked.accept_call(call.id, answer)
    assert api.calls[call.id].state == "accepted"


@pytest.mark.asyncio
async def test_a_business_offer_is_checked_as_an_offer(
    api: FakeCallingAPI, unchecked: AsyncClient
) -> None:
    api.grant_permission(USER, notify=False)
    offer = sample_answer("mine").replace("a=setup:active", "a=setup:actpass")
    with pytest.raises(BadRequestError, match="several-fingerprints") as raised:
        await unchecked.connect_call(USER, aiortc_like(offer))
    assert raised.value.code == SDP_ERROR_CODE
    assert len(api.calls) == 0  # no call was placed
    await unchecked.connect_call(USER, offer)
    assert len(api.calls) == 1


@pytest.mark.asyncio
async def test_answers_mirror_the_offers_payload_types(
    api: FakeCallingAPI, unchecked: AsyncClient
) -> None:
    api.grant_permission(USER, notify=False)
    offer = (
        sample_answer("biz")
        .replace("a=setup:active", "a=setup:actpass")
        .replace("SAVPF 111 126", "SAVPF 109 101")
        .replace("a=rtpmap:111", "a=rtpmap:109")
        .replace("a=fmtp:111", "a=fmtp:109")
        .replace("a=rtpmap:126", "a=rtpmap:101")
    )
    assert sdp.check(offer, role="offer") == []
    placed = await unchecked.connect_call(USER, offer)
    answered = api.user_answers(placed.call_id)
    answer = answered.answer_sdp
    assert answer is not None
    audio = sdp.parse(answer).audio
    assert audio is not None
    assert audio.formats == ("109", "101")
    assert sdp.check(answer, role="answer", offer=offer) == []
    assert sdp.parse(answer).has("ice-lite")  # the user's phone is ICE-lite
    # The business-side sample answers an offer the same way.
    mirrored = sample_answer("x", offer)
    assert sdp.parse(mirrored).audio.formats == ("109", "101")  # type: ignore[union-attr]
    assert sdp.check(mirrored, role="answer", offer=offer) == []


def test_the_samples_are_whatsapp_shaped() -> None:
    offer = sample_offer("shape")
    desc = sdp.parse(offer)
    assert desc.has("ice-lite")
    assert desc.audio is not None
    assert desc.audio.has("end-of-candidates")
    assert [c.address for c in desc.candidates] == ["127.0.0.1", "::1"]  # one v4, one v6
    (fingerprint,) = desc.audio.values("fingerprint")
    assert re.fullmatch(r"sha-256 [0-9A-F]{2}(:[0-9A-F]{2}){31}", fingerprint)
    # The fingerprint of a real certificate: the same for every offer, not the seed's hash.
    assert sdp.parse(sample_offer("other")).audio.values("fingerprint") == [fingerprint]  # type: ignore[union-attr]
    answer_print = sdp.parse(sample_answer()).audio.values("fingerprint")  # type: ignore[union-attr]
    assert answer_print != [fingerprint]
    assert [p.code for p in sdp.check(offer, role="offer")] == ["ice-lite-business"]
    assert sdp.check(sample_answer("a", offer), role="answer", offer=offer) == []
    assert sdp.check(user_answer("u", sample_answer("b")), role="answer") == []
    assert sample_offer("a") != sample_offer("b")


# -- never a real address --------------------------------------------------------------


def _addresses_in(text: str) -> list[str]:
    """Every address on a=candidate and c= lines, read without the parser under test."""
    found = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.startswith("c="):
            found.append(line.split()[2])
        elif line.startswith("a=candidate:"):
            found.append(line.split()[4])
    return found


def _safe(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    docs = ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
    return ip.is_loopback or ip.is_unspecified or any(ip in ipaddress.ip_network(n) for n in docs)


@pytest.mark.asyncio
async def test_every_sdp_the_fake_makes_names_only_loopback_or_documentation_addresses(
    api: FakeCallingAPI, client: AsyncClient
) -> None:
    made = [sample_offer(), sample_answer(), sample_offer("x"), sample_answer("y", sample_offer())]
    made.append(user_answer("z", sample_answer("w")))
    inbound = api.user_calls(OTHER)  # the fake's own offer
    await client.accept_call(inbound.id, sample_answer(inbound.id, inbound.offer_sdp))
    api.grant_permission(USER, notify=False)
    offer = sample_answer("biz").replace("a=setup:active", "a=setup:actpass")
    placed = await client.connect_call(USER, offer)
    outbound = api.user_answers(placed.call_id)  # the fake's own answer
    made += [inbound.offer_sdp, outbound.answer_sdp or ""]
    made += [
        str(call.get("session", {}).get("sdp", ""))
        for webhook in api.webhooks
        for call in webhook.value.get("calls", [])
    ]
    checked = 0
    for text in filter(None, made):
        addresses = _addresses_in(text)
        assert addresses, text  # every SDP names some
        for address in addresses:
            assert _safe(address), address
            assert sdp.is_documentation_or_loopback(address)
            checked += 1
        assert sorted(addresses) == sorted(sdp.parse(text).addresses)
    assert checked >= 20


# -- 20 s without media ----------------------------------------------------------------


async def _until(predicate: object, seconds: float = 3.0) -> bool:
    """Poll ``predicate`` while the fake's timer runs (it ticks every 50 ms)."""
    for _ in range(int(seconds / 0.02)):
        if predicate():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.02)
    return bool(predicate())  # type: ignore[operator]


@pytest.mark.asyncio
async def test_a_call_without_media_ends_with_138021_after_20_s_of_fake_clock() -> None:
    clock = FakeClock()
    async with (
        FakeCallingAPI(clock=clock, media_timeout=MEDIA_TIMEOUT) as fake,
        fake.async_client() as client,
    ):
        silent, talking = fake.user_calls(OTHER), fake.user_calls(USER)
        for call in (silent, talking):
            await client.accept_call(call.id, sample_answer(call.id, call.offer_sdp))
        fake.media_seen(talking.id)
        clock.advance(MEDIA_TIMEOUT - 1)
        await asyncio.sleep(0.15)  # a few ticks: nothing is due yet
        assert silent.state == "accepted"
        clock.advance(1.5)
        assert await _until(lambda: silent.state == "ended")
        assert silent.end_reason == "failed"
        assert talking.state == "accepted"  # media was seen: it goes on
        (terminate,) = [
            w.value
            for w in fake.webhooks
            if w.value.get("calls", [{}])[0].get("event") == "terminate"
        ]
        assert terminate["calls"][0]["id"] == silent.id
        assert terminate["calls"][0]["status"] == "FAILED"
        assert terminate["errors"][0]["code"] == 138021
        assert "20 s" in terminate["errors"][0]["error_data"]["details"]


@pytest.mark.asyncio
async def test_a_business_initiated_call_without_media_ends_too() -> None:
    clock = FakeClock()
    async with (
        FakeCallingAPI(clock=clock, media_timeout=5) as fake,
        fake.async_client() as client,
    ):
        fake.grant_permission(USER, notify=False)
        offer = sample_answer("biz").replace("a=setup:active", "a=setup:actpass")
        placed = await client.connect_call(USER, offer)
        clock.advance(30)  # ringing time does not count
        await asyncio.sleep(0.1)
        call = fake.user_answers(placed.call_id)
        assert call.state == "accepted"
        clock.advance(5)
        assert await _until(lambda: call.state == "ended")
        assert call.end_reason == "failed"


@pytest.mark.asyncio
async def test_without_media_mode_no_call_times_out_for_want_of_media() -> None:
    clock = FakeClock()
    async with FakeCallingAPI(clock=clock) as fake:
        assert fake.media_timeout is None
        async with fake.async_client() as client:
            call = fake.user_calls(OTHER)
            await client.accept_call(call.id, sample_answer(call.id, call.offer_sdp))
            clock.advance(3600)
            await asyncio.sleep(0.15)
            assert call.state == "accepted"
            fake.media_timeout = 10  # turned on later: counts from the call's start
            assert await _until(lambda: call.state == "ended")


def test_media_timeout_must_be_positive_seconds() -> None:
    for bad in (0, -1, True, "20", float("nan")):
        with pytest.raises(ValueError, match="media_timeout"):
            FakeCallingAPI(media_timeout=bad)  # type: ignore[arg-type]


# -- the client checks before sending --------------------------------------------------


@pytest.mark.asyncio
async def test_the_client_warns_by_default_and_still_sends(api: FakeCallingAPI) -> None:
    call = api.user_calls(OTHER)
    trickle = re.sub("a=candidate:.*\r\n", "", sample_answer(call.id, call.offer_sdp))
    async with AsyncClient(api_key=API_KEY, base_url=api.url) as client:
        with pytest.warns(SdpWarning, match="no-candidates") as caught:
            await client.pre_accept_call(call.id, trickle)
        assert api.calls[call.id].state == "pre_accepted"  # sent anyway
        with pytest.warns(SdpWarning, match="for accept has 1 problem"):  # again, same SDP
            await client.accept_call(call.id, trickle)
    assert api.calls[call.id].state == "accepted"
    assert caught[0].filename == __file__  # points at the caller
    assert "ice-pwd" not in str(caught[0].message)


@pytest.mark.asyncio
async def test_refuse_sends_nothing(api: FakeCallingAPI) -> None:
    call = api.user_calls(OTHER)
    three = aiortc_like(sample_answer(call.id, call.offer_sdp))
    async with AsyncClient(api_key=API_KEY, base_url=api.url, sdp_check="refuse") as client:
        for action in (client.pre_accept_call, client.accept_call):
            with pytest.raises(InvalidRequestError, match="several-fingerprints") as raised:
                await action(call.id, three)
            assert "normalize()" in str(raised.value)
        api.grant_permission(USER, notify=False)
        with pytest.raises(InvalidRequestError, match="setup-offer-not-actpass"):
            await client.connect_call(USER, sample_answer("biz"))
        assert api.requests == []  # nothing reached the API
        await client.accept_call(call.id, sdp.normalize(three))  # fixed: sent
    assert api.calls[call.id].state == "accepted"


@pytest.mark.asyncio
async def test_off_sends_unchecked_and_clean_sdps_never_warn(api: FakeCallingAPI) -> None:
    call = api.user_calls(OTHER)
    async with AsyncClient(api_key=API_KEY, base_url=api.url, sdp_check="off") as client:
        with pytest.raises(BadRequestError):  # the fake refuses it instead
            await client.accept_call(call.id, aiortc_like(sample_answer(call.id)))
    async with AsyncClient(api_key=API_KEY, base_url=api.url) as client:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            await client.accept_call(call.id, sample_answer(call.id))
    assert api.calls[call.id].state == "accepted"


def test_sdp_check_option_is_validated() -> None:
    from d360calling import ClientOptions

    assert ClientOptions(api_key="k").sdp_check is sdp.SdpCheck.WARN
    assert ClientOptions(api_key="k", sdp_check="refuse").sdp_check is sdp.SdpCheck.REFUSE
    assert ClientOptions(api_key="k").evolve(sdp_check="off").sdp_check is sdp.SdpCheck.OFF
    for bad in ("strict", True, None, ["warn"]):
        with pytest.raises(InvalidRequestError, match="sdp_check"):
            ClientOptions(api_key="k", sdp_check=bad)  # type: ignore[arg-type]
