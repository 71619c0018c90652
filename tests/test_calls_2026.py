"""The 2026 additions to connect and accept: a business-scoped ``recipient`` instead of
``to``, and per-call ``recording`` and ``transcription``; today's ``connect_call(to, sdp)``
unchanged."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from d360calling import (
    AcceptCallRequest,
    AsyncClient,
    CallRecording,
    CallTranscription,
    Client,
    ConnectCallRequest,
    FeatureStatus,
    InvalidRequestError,
)
from d360calling._converter import encode
from d360calling.testing import FakeCallingAPI, sample_answer, sample_offer

from .capture import Capture
from .conftest import FAST_RETRY
from .helpers import API_KEY, USER

OFFER = sample_offer()
ANSWER = sample_answer()
BSUID = "US.13491208655302741918"
CALL_ID = "wacid.HBgLMTY0NjcwNDM1OTUVAgARGCA2QjE4RDY2NDFBNjM5N0U4QjA0QTAxMUVBOUU1MUEA"
CONNECTED = {"messaging_product": "whatsapp", "calls": [{"id": "wacid.new"}]}
SESSION = {"sdp_type": "offer", "sdp": OFFER}


@pytest.mark.asyncio
async def test_connect_by_position_as_before(wire: Capture, wire_client: AsyncClient) -> None:
    wire.reply(json=CONNECTED)
    assert (await wire_client.connect_call(USER, OFFER)).call_id == "wacid.new"
    assert wire.requests[0].json == {
        "messaging_product": "whatsapp",
        "action": "connect",
        "to": USER,
        "session": SESSION,
    }


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.connect_call(recipient=BSUID, sdp=OFFER),
        lambda c: c.connect_call(BSUID, OFFER),  # a business-scoped id given as to
        lambda c: c.connect_call(None, OFFER, recipient=BSUID),
    ],
)
@pytest.mark.asyncio
async def test_connect_to_a_business_scoped_id(
    wire: Capture, wire_client: AsyncClient, call: Callable[[AsyncClient], Any]
) -> None:
    wire.reply(json=CONNECTED)
    await call(wire_client)
    assert wire.requests[0].json == {
        "messaging_product": "whatsapp",
        "action": "connect",
        "recipient": BSUID,
        "session": SESSION,
    }


@pytest.mark.asyncio
async def test_connect_with_recording_and_transcription(
    wire: Capture, wire_client: AsyncClient
) -> None:
    wire.reply(json=CONNECTED)
    await wire_client.connect_call(
        USER,
        OFFER,
        biz_opaque_callback_data="order-7",
        recording=CallRecording(purpose="quality", announcement_language="en_US"),
        transcription=CallTranscription(status=FeatureStatus.DISABLED),
    )
    assert wire.requests[0].json == {
        "messaging_product": "whatsapp",
        "action": "connect",
        "to": USER,
        "session": SESSION,
        "biz_opaque_callback_data": "order-7",
        "recording": {"status": "ENABLED", "purpose": "quality", "announcement_language": "en_US"},
        "transcription": {"status": "DISABLED"},
    }


@pytest.mark.asyncio
async def test_accept_with_recording(wire: Capture, wire_client: AsyncClient) -> None:
    wire.reply(json={"messaging_product": "whatsapp", "success": True})
    wire.reply(json={"messaging_product": "whatsapp", "success": True})
    await wire_client.accept_call(CALL_ID, ANSWER, recording=CallRecording())
    await wire_client.accept_call(CALL_ID, ANSWER, transcription=CallTranscription())
    first, second = (request.json for request in wire.requests)
    assert first == {
        "messaging_product": "whatsapp",
        "action": "accept",
        "call_id": CALL_ID,
        "session": {"sdp_type": "answer", "sdp": ANSWER},
        "recording": {"status": "ENABLED"},
    }
    assert second["transcription"] == {"status": "ENABLED"}
    assert "recording" not in second


BAD: list[tuple[Callable[[Any], Any], str]] = [
    (lambda c: c.connect_call(USER, OFFER, recipient=BSUID), "either to or recipient, not both"),
    (lambda c: c.connect_call(BSUID, OFFER, recipient=BSUID), "to must be a phone number"),
    (lambda c: c.connect_call(sdp=OFFER), "to (a phone number) or recipient"),
    (lambda c: c.connect_call(recipient=USER, sdp=OFFER), "recipient must be a business"),
    (lambda c: c.connect_call(recipient="US.", sdp=OFFER), "recipient must be a business"),
    (lambda c: c.connect_call(USER), "sdp (the SDP offer) must be a str, got NoneType"),
    (lambda c: c.connect_call(USER, OFFER, recording={"status": "ENABLED"}), "CallRecording"),
    (lambda c: c.connect_call(USER, OFFER, recording=CallTranscription()), "CallRecording"),
    (lambda c: c.connect_call(USER, OFFER, transcription=True), "CallTranscription"),
    (lambda c: c.accept_call(CALL_ID, ANSWER, recording="yes"), "CallRecording"),
]


@pytest.mark.parametrize(("call", "fragment"), BAD)
@pytest.mark.asyncio
async def test_bad_input_is_refused_before_sending(
    wire: Capture, wire_client: AsyncClient, call: Callable[[Any], Any], fragment: str
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        await call(wire_client)
    assert fragment in str(info.value)
    assert wire.requests == []


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: CallRecording(status="on"), "status must be FeatureStatus"),
        (lambda: CallRecording(status="enabled"), "status must be FeatureStatus"),
        (lambda: CallRecording(status=None), "status must be FeatureStatus"),
        (lambda: CallTranscription(status=["ENABLED"]), "status must be FeatureStatus"),
        (lambda: CallRecording(purpose=""), "purpose must not be empty"),
        (lambda: CallRecording(purpose="x" * 513), "purpose is 513 characters"),
        (lambda: CallRecording(announcement_language="english"), "announcement_language"),
        (lambda: CallTranscription(announcement_language="en-US"), "announcement_language"),
        (lambda: ConnectCallRequest(to=BSUID, sdp=OFFER), "goes in 'recipient'"),
    ],
)
def test_invalid_options_cannot_be_made(make: Callable[[], object], fragment: str) -> None:
    with pytest.raises(InvalidRequestError, match=fragment):
        make()


def test_the_options_are_encoded_only_when_given() -> None:
    assert "recording" not in encode(ConnectCallRequest(to=USER, sdp=OFFER))
    wire = encode(
        AcceptCallRequest(
            call_id=CALL_ID, sdp=ANSWER, recording=CallRecording(status="DISABLED", purpose="p")
        )
    )
    assert wire["recording"] == {"status": "DISABLED", "purpose": "p"}
    assert CallRecording().status is FeatureStatus.ENABLED


# -- against the fake -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_connect_with_recording_against_the_fake(
    api: FakeCallingAPI, client: AsyncClient
) -> None:
    placed = await client.connect_call(
        USER, OFFER, recording=CallRecording(), transcription=CallTranscription()
    )
    assert api.calls[placed.call_id].state == "ringing"
    assert api.call_actions()[-1]["recording"] == {"status": "ENABLED"}


def test_sync_connect_with_recipient(wire: Capture) -> None:
    wire.reply(json=CONNECTED)
    with Client(api_key=API_KEY, base_url=wire.url, retry_policy=FAST_RETRY) as c:
        assert c.connect_call(recipient=BSUID, sdp=OFFER).call_id == "wacid.new"
        with pytest.raises(InvalidRequestError, match="not both"):
            c.connect_call(USER, OFFER, recipient=BSUID)
    assert wire.requests[0].json["recipient"] == BSUID
    assert len(wire.requests) == 1
