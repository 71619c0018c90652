"""The fake does the calling API's 2026 surface as the real service would: recordings and
transcripts after a call that asked for them, voicemail for a missed call to the business,
calls that ring out, payloads on terminate, users known only by a business-scoped id, SIP's
``call_created``, and ``account_settings_update``. Requests are raw JSON; the webhooks are
read from the fake's log."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from d360calling.testing import FakeCallingAPI, ScenarioError, sample_answer, sample_offer

BSUID = "US.13491208655302741918"
USER = "4915100000201"
CALLEE = "4915100000202"


async def call(fake: FakeCallingAPI, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    headers = {"D360-API-KEY": fake.api_key, "Content-Type": "application/json"}
    data = None if body is None else json.dumps(body)
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, fake.url + path, data=data, headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


def connect(to: str | None = CALLEE, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "action": "connect",
        "session": {"sdp_type": "offer", "sdp": sample_offer()},
        **extra,
    }
    if to is not None:
        body["to"] = to
    return body


def accept(call_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "action": "accept",
        "call_id": call_id,
        "session": {"sdp_type": "answer", "sdp": sample_answer(call_id)},
        **extra,
    }


def events(fake: FakeCallingAPI, call_id: str | None = None) -> list[dict[str, Any]]:
    """Every item of the ``calls`` field (calls[] and statuses[]), for one call if given."""
    out = []
    for w in fake.webhooks:
        if w.field == "calls":
            out += [i for key in ("calls", "statuses") for i in w.value.get(key, ())]
    return [i for i in out if call_id is None or i["id"] == call_id]


def names(items: list[dict[str, Any]]) -> list[str]:
    return [i.get("event") or i["status"] for i in items]


async def set_calling(fake: FakeCallingAPI, **feature: Any) -> None:
    status, answer = await call(fake, "POST", "/calling/settings", {"calling": feature})
    assert status == 200, answer


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeCallingAPI]:
    async with FakeCallingAPI() as server:
        server.grant_permission(CALLEE, notify=False)
        yield server


# -- recordings and transcripts ----------------------------------------------------------


@pytest.mark.asyncio
async def test_a_recorded_call_gets_its_recording_and_transcript_after_it_ends(
    fake: FakeCallingAPI,
) -> None:
    asked = {"status": "ENABLED", "purpose": "quality", "announcement_language": "en_US"}
    status, answer = await call(
        fake, "POST", "/calling/calls", connect(recording=asked, transcription=asked)
    )
    assert status == 200
    call_id = answer["calls"][0]["id"]
    assert fake.calls[call_id].recording == asked
    fake.user_answers(call_id)
    assert names(events(fake, call_id)) == ["RINGING", "connect", "ACCEPTED"]
    fake.user_hangs_up(call_id)
    recording, transcript = events(fake, call_id)[-2:]
    assert names(events(fake, call_id))[-3:] == [
        "terminate",
        "call_recording_available",
        "call_transcription_available",
    ]
    user_id = fake.add_user(CALLEE).user_id
    audio = recording["call_recording"]["audio"]
    assert recording["call_recording"]["type"] == "audio"
    assert (recording["from"], recording["to"], recording["to_user_id"]) == (
        "15550001111",
        CALLEE,
        user_id,
    )
    assert audio["id"].isdigit()
    assert audio["mime_type"] == "audio/ogg; codecs=opus"
    assert len(audio["sha256"]) == 64
    assert audio["url"] == f"{fake.url}/_fake/media/{audio['id']}"
    document = transcript["call_transcript"]["document"]
    assert document["mime_type"] == "application/json"
    assert document["id"] != audio["id"]
    assert isinstance(transcript["timestamp"], str)
    ended = fake.calls[call_id]
    assert (ended.recording_media_id, ended.transcript_media_id) == (audio["id"], document["id"])

    status, media = await call(fake, "GET", f"/_fake/media/{audio['id']}")
    assert (status, media["call_id"], media["mime_type"]) == (200, call_id, audio["mime_type"])
    assert (await call(fake, "GET", "/_fake/media/12345"))[0] == 404


@pytest.mark.asyncio
async def test_an_inbound_call_accepted_with_recording_is_recorded(fake: FakeCallingAPI) -> None:
    inbound = fake.user_calls(USER)
    status, _ = await call(
        fake, "POST", "/calling/calls", accept(inbound.id, recording={"status": "ENABLED"})
    )
    assert status == 200
    fake.user_hangs_up(inbound.id)
    assert names(events(fake, inbound.id)) == ["connect", "terminate", "call_recording_available"]
    recording = events(fake, inbound.id)[-1]
    assert (recording["from"], recording["to"]) == (USER, "15550001111")


@pytest.mark.asyncio
async def test_nothing_is_recorded_when_disabled_or_never_connected(fake: FakeCallingAPI) -> None:
    off = {"status": "DISABLED"}
    _, answer = await call(fake, "POST", "/calling/calls", connect(recording=off))
    quiet = answer["calls"][0]["id"]
    assert fake.calls[quiet].recording is None
    fake.user_answers(quiet)
    fake.user_hangs_up(quiet)
    assert names(events(fake, quiet))[-1] == "terminate"

    _, answer = await call(fake, "POST", "/calling/calls", connect(recording={"status": "ENABLED"}))
    missed = answer["calls"][0]["id"]
    fake.user_lets_it_ring_out(missed)  # nothing was said: nothing to record
    assert names(events(fake, missed)) == ["RINGING", "terminate"]


@pytest.mark.parametrize(
    ("option", "fragment"),
    [
        ({"status": "ON"}, 'recording.status: must be one of "ENABLED", "DISABLED"'),
        ({}, "recording.status: is required"),
        ({"status": "ENABLED", "announcement_language": "English"}, "is not a language code"),
        ({"status": "ENABLED", "purpose": "p" * 513}, "recording.purpose: is longer than 512"),
        ({"status": "ENABLED", "retention": "forever"}, "recording.retention: is not a field"),
    ],
)
@pytest.mark.asyncio
async def test_bad_recording_options_are_refused(
    fake: FakeCallingAPI, option: dict[str, Any], fragment: str
) -> None:
    status, answer = await call(fake, "POST", "/calling/calls", connect(recording=option))
    assert (status, answer["error"]["code"]) == (400, 100)
    assert fragment in answer["error"]["error_data"]["details"]
    assert fake.calls == {}


@pytest.mark.asyncio
async def test_pre_accept_and_terminate_take_no_recording(fake: FakeCallingAPI) -> None:
    inbound = fake.user_calls(USER)
    pre = {**accept(inbound.id, recording={"status": "ENABLED"}), "action": "pre_accept"}
    status, answer = await call(fake, "POST", "/calling/calls", pre)
    assert status == 400
    assert "recording: not taken by pre_accept" in answer["error"]["error_data"]["details"]


# -- calls that nobody answers, voicemail, payloads on terminate ---------------------------


@pytest.mark.asyncio
async def test_a_business_call_the_user_lets_ring_out(fake: FakeCallingAPI) -> None:
    for _ in range(4):
        _, answer = await call(fake, "POST", "/calling/calls", connect())
        call_id = answer["calls"][0]["id"]
        rang_out = fake.user_lets_it_ring_out(call_id)
        assert (rang_out.state, rang_out.end_reason) == ("ended", "not_answered")
        terminate = events(fake, call_id)[-1]
        assert names(events(fake, call_id)) == ["RINGING", "terminate"]
        assert terminate["status"] == "COMPLETED"
        assert "duration" not in terminate
        assert "start_time" not in terminate
    # The fourth unanswered call in a row revokes the permission, automatically.
    revoke = fake.webhooks[-1].value["messages"][0]
    assert revoke["interactive"]["call_permission_reply"]["response_source"] == "automatic"
    assert "context" not in revoke
    with pytest.raises(ScenarioError, match="not ringing"):
        fake.user_lets_it_ring_out(call_id)
    with pytest.raises(ScenarioError, match="no call"):
        fake.user_lets_it_ring_out("wacid.nothing")


@pytest.mark.asyncio
async def test_a_missed_call_to_the_business_can_leave_a_voicemail(fake: FakeCallingAPI) -> None:
    missed = fake.user_calls(USER, deeplink_payload="from-the-website")
    fake.user_lets_it_ring_out(missed.id)
    terminate = events(fake, missed.id)[-1]
    assert terminate["deeplink_payload"] == "from-the-website"  # terminate carries it too
    with pytest.raises(ScenarioError, match="not enabled"):
        fake.user_leaves_voicemail(missed.id)

    await set_calling(fake, voicemail={"status": "ENABLED", "triggers": ["TIMEOUT"]})
    media_id = fake.user_leaves_voicemail(missed.id)
    (voicemail,) = fake.webhooks[-1].value["messages"]
    assert voicemail["id"] == missed.id  # how it ties to the call
    assert (voicemail["type"], voicemail["from"]) == ("audio", USER)
    assert voicemail["audio"]["id"] == media_id
    assert voicemail["audio"]["mime_type"] == "audio/ogg; codecs=opus"
    assert fake.webhooks[-1].field == "messages"
    with pytest.raises(ScenarioError, match="already"):
        fake.user_leaves_voicemail(missed.id)

    rejected = fake.user_calls(USER)
    status, _ = await call(
        fake,
        "POST",
        "/calling/calls",
        {"messaging_product": "whatsapp", "action": "reject", "call_id": rejected.id},
    )
    assert status == 200
    with pytest.raises(ScenarioError, match="REJECT trigger"):
        fake.user_leaves_voicemail(rejected.id)
    await set_calling(fake, voicemail={"status": "ENABLED"})  # no triggers: both
    fake.user_leaves_voicemail(rejected.id)

    answered = fake.user_calls(USER)
    await call(fake, "POST", "/calling/calls", accept(answered.id))
    fake.user_hangs_up(answered.id)
    with pytest.raises(ScenarioError, match="rejected or let ring out"):
        fake.user_leaves_voicemail(answered.id)
    _, placed = await call(fake, "POST", "/calling/calls", connect())
    fake.user_lets_it_ring_out(placed["calls"][0]["id"])
    with pytest.raises(ScenarioError, match="calls to the business"):
        fake.user_leaves_voicemail(placed["calls"][0]["id"])


@pytest.mark.asyncio
async def test_payloads_come_back_on_terminate(fake: FakeCallingAPI) -> None:
    rejected = fake.user_calls(USER, cta_payload="button-7")
    await call(
        fake,
        "POST",
        "/calling/calls",
        {"messaging_product": "whatsapp", "action": "reject", "call_id": rejected.id},
    )
    connect_item, terminate = events(fake, rejected.id)
    assert connect_item["cta_payload"] == terminate["cta_payload"] == "button-7"
    with pytest.raises(ScenarioError, match="512"):
        fake.user_calls(USER, cta_payload="x" * 513)


# -- users known only by a business-scoped id ------------------------------------------------


@pytest.mark.asyncio
async def test_a_bsuid_only_user_calls_and_is_called_without_a_phone_number(
    fake: FakeCallingAPI,
) -> None:
    await set_calling(fake, callback_permission_status="ENABLED")
    inbound = fake.user_calls(BSUID, name="ana.b")
    (connect_item,) = events(fake, inbound.id)
    assert "from" not in connect_item
    assert (connect_item["from_user_id"], connect_item["to"]) == (BSUID, "15550001111")
    contact = fake.webhooks[-2].value["contacts"][0]
    assert contact == {"profile": {"name": "ana.b"}, "user_id": BSUID}
    grant = fake.webhooks[-1].value["messages"][0]  # the automatic callback permission
    assert "from" not in grant
    assert grant["from_user_id"] == BSUID
    assert grant["context"] == {"id": inbound.id}  # a wacid: it followed the call
    fake.user_hangs_up(inbound.id)

    for path in (f"/calling/permissions/{BSUID}", f"/calling/permissions?recipient={BSUID}"):
        status, report = await call(fake, "GET", path)
        assert (status, report["permission"]["status"]) == (200, "temporary"), path
    status, answer = await call(fake, "POST", "/calling/calls", connect(None, recipient=BSUID))
    assert status == 200
    outbound = answer["calls"][0]["id"]
    ringing = events(fake, outbound)[0]
    assert "recipient_id" not in ringing
    assert ringing["recipient_user_id"] == BSUID
    fake.user_answers(outbound)
    answered = events(fake, outbound)[1]
    assert (answered["from"], answered["to_user_id"]) == ("15550001111", BSUID)
    assert "to" not in answered
    assert fake.calls[outbound].user == BSUID


@pytest.mark.asyncio
async def test_a_phone_user_is_reached_by_their_bsuid(fake: FakeCallingAPI) -> None:
    user = fake.add_user(CALLEE)
    assert user.wa_id == CALLEE
    assert user.user_id.startswith("DE.")
    assert len(user.user_id) == 23
    assert fake.add_user(CALLEE).user_id == user.user_id  # stable
    _, by_phone = await call(fake, "GET", f"/calling/permissions/{CALLEE}")
    _, by_bsuid = await call(fake, "GET", f"/calling/permissions/{user.user_id}")
    assert by_phone == by_bsuid
    status, answer = await call(
        fake, "POST", "/calling/calls", connect(None, recipient=user.user_id)
    )
    assert status == 200
    placed = fake.calls[answer["calls"][0]["id"]]
    assert placed.user == CALLEE
    ringing = events(fake, placed.id)[0]
    assert (ringing["recipient_id"], ringing["recipient_user_id"]) == (CALLEE, user.user_id)
    status, again = await call(fake, "POST", "/calling/calls", connect())  # the same user
    assert again["error"]["code"] == 138003


@pytest.mark.asyncio
async def test_user_ids_are_checked(fake: FakeCallingAPI) -> None:
    status, answer = await call(fake, "POST", "/calling/calls", connect(BSUID))
    assert status == 400
    assert "'recipient'" in answer["error"]["error_data"]["details"]
    status, answer = await call(fake, "POST", "/calling/calls", connect(None, recipient="x.1"))
    assert status == 400
    assert (await call(fake, "GET", "/calling/permissions"))[0] == 400
    for bad in ("US.", "us.123", "US.ENT.", "USA.123"):
        assert (await call(fake, "GET", f"/calling/permissions/{bad}"))[0] == 400, bad
        with pytest.raises(ScenarioError):
            fake.user_calls(bad)


# -- SIP and the settings webhook ---------------------------------------------------------


@pytest.mark.asyncio
async def test_a_call_over_sip_is_created_not_connected(fake: FakeCallingAPI) -> None:
    sip = {
        "status": "ENABLED",
        "webhook_delivery": "ENABLED",
        "servers": [{"hostname": "sip.example.com"}],
    }
    await set_calling(fake, sip=sip)
    created = fake.user_calls(USER)
    (item,) = events(fake, created.id)
    assert (item["event"], item["from"], item["direction"]) == (
        "call_created",
        USER,
        "USER_INITIATED",
    )
    assert "session" not in item
    status, answer = await call(fake, "POST", "/calling/calls", accept(created.id))
    assert (status, answer["error"]["code"]) == (400, 131055)
    fake.user_hangs_up(created.id)
    assert names(events(fake, created.id)) == ["call_created", "terminate"]
    with pytest.raises(ScenarioError, match="voicemail"):
        fake.user_leaves_voicemail(created.id)

    await set_calling(fake, sip={"status": "ENABLED"})  # SIP without its webhooks
    with pytest.raises(ScenarioError, match="not enabled"):
        fake.user_calls(USER)


@pytest.mark.asyncio
async def test_a_watched_settings_change_sends_account_settings_update(
    fake: FakeCallingAPI,
) -> None:
    await set_calling(fake, callback_permission_status="ENABLED")
    update = fake.webhooks[-1]
    assert update.field == "account_settings_update"
    assert update.value["type"] == "PHONE_NUMBER_SETTINGS"
    settings = update.value["phone_number_settings"]
    assert settings["phone_number_id"] == fake.phone_number_id
    assert settings["calling"]["callback_permission_status"] == "ENABLED"
    assert isinstance(update.value["timestamp"], str)

    count = len(fake.webhooks)
    await set_calling(fake, callback_permission_status="ENABLED")  # no change
    await set_calling(fake, call_hours={"status": "DISABLED"})  # not a watched setting
    assert len(fake.webhooks) == count
    await set_calling(fake, sip={"status": "ENABLED", "servers": [{"hostname": "sip.example.com"}]})
    calling = fake.webhooks[-1].value["phone_number_settings"]["calling"]
    assert calling["sip"]["status"] == "ENABLED"
    assert "sip_user_password" not in calling["sip"]["servers"][0]  # no secret in a webhook
    assert fake.settings["calling"]["sip"]["servers"][0]["sip_user_password"]


# -- the user's side over HTTP --------------------------------------------------------------


@pytest.mark.asyncio
async def test_control_routes_ring_out_leave_voicemail_and_revoke(fake: FakeCallingAPI) -> None:
    status, placed = await call(fake, "POST", "/calling/calls", connect())
    call_id = placed["calls"][0]["id"]
    status, rang_out = await call(fake, "POST", f"/_fake/calls/{call_id}/ring-out")
    assert (status, rang_out["end_reason"]) == (200, "not_answered")
    status, again = await call(fake, "POST", f"/_fake/calls/{call_id}/ring-out")
    assert status == 409
    assert "not ringing" in again["error"]

    await set_calling(fake, voicemail={"status": "ENABLED", "triggers": ["TIMEOUT"]})
    status, caller = await call(
        fake, "POST", "/_fake/calls", {"from": BSUID, "cta_payload": "curl-button"}
    )
    assert (status, caller["cta_payload"], caller["user"]) == (200, "curl-button", BSUID)
    await call(fake, "POST", f"/_fake/calls/{caller['id']}/ring-out")
    status, left = await call(fake, "POST", f"/_fake/calls/{caller['id']}/voicemail")
    assert status == 200
    assert fake.webhooks[-1].value["messages"][0]["audio"]["id"] == left["media_id"]
    status, media = await call(fake, "GET", f"/_fake/media/{left['media_id']}")
    assert (status, media["call_id"]) == (200, caller["id"])

    status, _ = await call(fake, "POST", f"/_fake/permissions/{CALLEE}/revoke")
    assert status == 200
    assert (
        fake.webhooks[-1].value["messages"][0]["interactive"]["call_permission_reply"]["response"]
        == "reject"
    )
    status, refused = await call(fake, "POST", "/calling/calls", connect())
    assert refused["error"]["code"] == 138006
    for path in (f"/_fake/calls/{call_id}/fly", f"/_fake/permissions/{CALLEE}/maybe"):
        assert (await call(fake, "POST", path))[0] == 404
