"""The 2026 webhook surface (api-2026.md, api-facts §2.6): every documented payload variant of
recordings, transcripts, SIP ``call_created``, voicemail, message statuses and settings
updates parses into its typed event; terminate carries its payloads, reason and errors from
both places; every event works with business-scoped ids only; the hardening bounds hold for
the new fields; the receiver routes each kind to its typed callback once; the tracker keys
users by whichever id is present. End to end against the fake where it emits the kind."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from d360calling import (
    MessageUndeliverableError,
    NoCallPermissionError,
    ReEngagementRequiredError,
    WebhookParseError,
)
from d360calling.models import CallDirection, FeatureStatus
from d360calling.testing import FakeCallingAPI, sample_answer, serve
from d360calling.webhooks import (
    MAX_ID_LENGTH,
    AccountSettingsUpdateEvent,
    CallConnectEvent,
    CallRecordingAvailableEvent,
    CallStatusEvent,
    CallTerminateEvent,
    CallTracker,
    CallTranscriptionAvailableEvent,
    InMemoryCallStore,
    MessageStatus,
    MessageStatusEvent,
    PermissionReplyEvent,
    SipCallCreatedEvent,
    UnknownEvent,
    VoicemailEvent,
    WebhookEvent,
    WebhookReceiver,
    parse_webhook,
)
from d360calling.webhooks._receiver import _memory_key

from .test_webhooks import META, NOW, envelope

BUSINESS = META["display_phone_number"]
PHONE = "16315553602"
BSUID = "US.13491208655302741918"
PARENT = "US.ENT.11815799212886844830"


def only(body: bytes | str) -> WebhookEvent:
    (event,) = parse_webhook(body)
    return event


def contact(phone: bool = True) -> dict[str, Any]:
    found: dict[str, Any] = {"profile": {"name": "Ann", "username": "@ann"}, "user_id": BSUID}
    found["parent_user_id"] = PARENT
    if phone:
        found["wa_id"] = PHONE
    return found


def call_item(event: str, *, phone: bool = True, **extra: Any) -> dict[str, Any]:
    """A call item from the user (an inbound call's side), as api-2026 §3/§5 shows them."""
    item: dict[str, Any] = {
        "id": "wacid.R1",
        "event": event,
        "timestamp": str(NOW),
        "from_user_id": BSUID,
        "from_parent_user_id": PARENT,
        **extra,
    }
    if phone:
        item["from"] = PHONE
    return item


def calls(*items: dict[str, Any], phone: bool = True, **value: Any) -> bytes:
    return envelope("calls", {"contacts": [contact(phone)], "calls": list(items), **value})


def recording(**extra: Any) -> dict[str, Any]:
    audio = {
        "id": "media-rec-1",
        "sha256": "X0f5sg3Z9Qm8Jb1c",
        "mime_type": "audio/ogg; codecs=opus",
        "url": "https://lookaside.example/whatsapp_business/attachments/?mid=1&hash=sig",
    }
    return {"call_recording": {"type": "audio", "audio": audio}, **extra}


def transcript(key: str = "call_transcript") -> dict[str, Any]:
    document = {"id": "media-doc-1", "sha256": "q1w2", "mime_type": "application/json"}
    return {key: {"document": document}}


def message(item: dict[str, Any], *, phone: bool = True) -> bytes:
    return envelope("messages", {"contacts": [contact(phone)], "messages": [item]})


def statuses(*items: dict[str, Any], **value: Any) -> bytes:
    return envelope("messages", {"statuses": list(items), **value})


def status_item(status: str, *, phone: bool = True, **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": "wamid.REQUEST",
        "status": status,
        "timestamp": str(NOW),
        "recipient_user_id": BSUID,
        **extra,
    }
    if phone:
        item["recipient_id"] = PHONE
    return item


def settings_update(calling: Any, **value: Any) -> bytes:
    body = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "WABA",
                "changes": [
                    {
                        "field": "account_settings_update",
                        "value": {
                            "messaging_product": "whatsapp",
                            "timestamp": str(NOW),
                            "type": "PHONE_NUMBER_SETTINGS",
                            "phone_number_settings": {
                                "phone_number_id": "1234",
                                "calling": calling,
                            },
                            **value,
                        },
                    }
                ],
            }
        ],
    }
    return json.dumps(body).encode()


# -- recordings and transcripts ---------------------------------------------------------------


@pytest.mark.parametrize("timestamp", [str(NOW), NOW])
def test_recording_available_with_its_media(timestamp: Any) -> None:
    event = only(calls(call_item("call_recording_available", timestamp=timestamp, **recording())))
    assert isinstance(event, CallRecordingAvailableEvent)
    assert (event.call_id, event.timestamp, event.kind) == ("wacid.R1", NOW, "recording")
    assert event.media is not None
    assert (event.media_id, event.media.sha256, event.media.mime_type) == (
        "media-rec-1",
        "X0f5sg3Z9Qm8Jb1c",
        "audio/ogg; codecs=opus",
    )
    assert event.media.url is not None
    assert event.media.url.startswith("https://lookaside.example/")
    assert "hash=sig" not in repr(event)  # a signed download URL stays out of logs
    assert (event.media_type, event.failed, event.error) == ("audio", False, None)
    assert (event.user, event.user_id, event.from_parent_user_id) == (PHONE, BSUID, PARENT)
    assert event.contact is not None
    assert event.contact.profile is not None
    assert event.contact.profile.username == "@ann"
    assert event.dedupe_key == ("wacid.R1", "recording", "media-rec-1")


def test_recording_of_a_business_initiated_call_names_the_called_user() -> None:
    # As the fake sends it: from is the business, to the user; no direction.
    item = {
        "id": "wacid.B",
        "event": "call_recording_available",
        "timestamp": str(NOW),
        "from": BUSINESS,
        "to": PHONE,
        "to_user_id": BSUID,
        **recording(),
    }
    event = only(envelope("calls", {"calls": [item]}))
    assert isinstance(event, CallRecordingAvailableEvent)
    assert (event.is_inbound, event.user, event.user_id) == (False, PHONE, BSUID)


@pytest.mark.parametrize(
    ("failure", "retryable"),
    [
        # [UNCERTAIN] a BSP's failure variant: on the item ...
        (
            {"status": "FAILED", "retryable": True, "error": {"code": 131000, "message": "Boom"}},
            True,
        ),
        # ... or inside the recording object, with errors[] rather than error.
        (
            {
                "call_recording": {
                    "type": "audio",
                    "status": "failed",
                    "retryable": "false",
                    "errors": [{"code": 131000, "title": "Boom"}],
                }
            },
            False,
        ),
    ],
)
def test_recording_failure_variants(failure: dict[str, Any], retryable: bool) -> None:
    event = only(calls(call_item("call_recording_available", **failure)))
    assert isinstance(event, CallRecordingAvailableEvent)
    assert event.failed
    assert event.media_id is None
    assert [(e.code, e.text) for e in event.errors] == [(131000, "Boom")]
    assert event.error is not None
    assert event.error.code == 131000
    assert event.retryable is retryable
    assert event.dedupe_key[2].casefold() == "status:failed"


@pytest.mark.parametrize("key", ["call_transcript", "call_transcription"])
def test_transcription_available_with_its_document(key: str) -> None:
    event = only(calls(call_item("call_transcription_available", **transcript(key))))
    assert isinstance(event, CallTranscriptionAvailableEvent)
    assert (event.kind, event.media_id) == ("transcription", "media-doc-1")
    assert event.media is not None
    assert event.media.mime_type == "application/json"
    assert event.dedupe_key == ("wacid.R1", "transcription", "media-doc-1")


def test_recording_and_transcript_of_one_call_are_not_duplicates_of_each_other() -> None:
    body = calls(
        call_item("call_recording_available", **recording()),
        call_item("call_transcription_available", **transcript()),
    )
    keys = {_memory_key(event) for event in parse_webhook(body)}
    assert len(keys) == 2


# -- SIP, voicemail ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("direction", "user_side"),
    [("USER_INITIATED", "from"), ("BUSINESS_INITIATED", "to")],
)
def test_sip_call_created(direction: str, user_side: str) -> None:
    user = {user_side: PHONE, f"{user_side}_user_id": BSUID}
    business = {"to" if user_side == "from" else "from": BUSINESS}
    item = {
        "id": "wacid.S",
        "event": "call_created",
        "direction": direction,
        "timestamp": str(NOW),
        **user,
        **business,
    }
    event = only(envelope("calls", {"contacts": [contact()], "calls": [item]}))
    assert isinstance(event, SipCallCreatedEvent)
    assert event.direction == CallDirection(direction)
    assert (event.user, event.user_id) == (PHONE, BSUID)
    assert event.dedupe_key == ("wacid.S", "sip_call_created", "")


@pytest.mark.parametrize("phone", [True, False])
def test_voicemail_is_an_audio_message_tied_to_its_call(phone: bool) -> None:
    item: dict[str, Any] = {
        "id": "wacid.MISSED",
        "timestamp": str(NOW),
        "type": "audio",
        "from_user_id": BSUID,
        "audio": {"id": "media-vm", "sha256": "abc", "mime_type": "audio/ogg; codecs=opus"},
    }
    if phone:
        item["from"] = PHONE
    event = only(message(item, phone=phone))
    assert isinstance(event, VoicemailEvent)
    assert (event.call_id, event.media_id, event.kind) == ("wacid.MISSED", "media-vm", "voicemail")
    assert event.user == (PHONE if phone else BSUID)
    assert event.dedupe_key == ("wacid.MISSED", "voicemail", "media-vm")


# -- message statuses -------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["sent", "delivered", "read", "Failed"])
def test_message_status_values(value: str) -> None:
    event = only(statuses(status_item(value)))
    assert isinstance(event, MessageStatusEvent)
    assert event.status == MessageStatus(value.lower())
    assert (event.message_id, event.user, event.user_id) == ("wamid.REQUEST", PHONE, BSUID)
    assert event.dedupe_key == ("wamid.REQUEST", "message_status", value.lower())


@pytest.mark.parametrize(
    ("code", "error_class"),
    [(131026, MessageUndeliverableError), (131047, ReEngagementRequiredError)],
)
def test_a_failed_permission_request_status_carries_its_typed_error(
    code: int, error_class: type[Exception]
) -> None:
    error = {"code": code, "title": "Message undeliverable", "error_data": {"details": "old app"}}
    event = only(statuses(status_item("failed", errors=[error])))
    assert isinstance(event, MessageStatusEvent)
    assert event.failed
    assert isinstance(event.error, error_class)
    assert event.error.code == code
    assert event.error.details == "old app"
    assert event.error.method == "WEBHOOK"


def test_a_message_status_reads_errors_of_the_change_too() -> None:
    event = only(statuses(status_item("failed"), errors=[{"code": 131026, "message": "x"}]))
    assert isinstance(event, MessageStatusEvent)
    assert isinstance(event.error, MessageUndeliverableError)


def test_an_unknown_status_value_is_kept() -> None:
    event = only(statuses(status_item("warning")))
    assert isinstance(event, MessageStatusEvent)
    assert (event.status, event.failed) == ("warning", False)


# -- account settings updates -----------------------------------------------------------------


def test_settings_update_typed_fields_and_raw_mapping() -> None:
    calling = {
        "status": "ENABLED",
        "call_icon_visibility": "DEFAULT",
        "callback_permission_status": "DISABLED",
        "srtp_key_exchange_protocol": "DTLS",
        "sip": {"status": "ENABLED", "servers": [{"hostname": "s", "sip_user_password": "pw!"}]},
        "call_hours": {"status": "DISABLED"},
    }
    event = only(settings_update(calling))
    assert isinstance(event, AccountSettingsUpdateEvent)
    assert (event.type, event.phone_number_id, event.timestamp) == (
        "PHONE_NUMBER_SETTINGS",
        "1234",
        NOW,
    )
    assert (event.calling_status, event.sip_status, event.callback_permission_status) == (
        FeatureStatus.ENABLED,
        FeatureStatus.ENABLED,
        FeatureStatus.DISABLED,
    )
    assert (event.call_icon_visibility, event.srtp_key_exchange_protocol) == ("DEFAULT", "DTLS")
    assert event.calling == calling
    assert "pw!" not in repr(event)  # SIP credentials stay out of logs


def test_settings_update_is_read_tolerantly() -> None:
    odd = {"status": 5, "sip": "on", "call_icon_visibility": ["x"]}
    event = only(settings_update(odd))
    assert isinstance(event, AccountSettingsUpdateEvent)
    assert (event.calling_status, event.sip_status, event.call_icon_visibility) == (None,) * 3
    empty = only(settings_update(None))
    assert isinstance(empty, AccountSettingsUpdateEvent)
    assert empty.calling is None


def test_settings_updates_are_told_apart_by_their_content() -> None:
    first = only(settings_update({"status": "ENABLED"}))
    again = only(settings_update({"status": "ENABLED"}))
    other = only(settings_update({"status": "DISABLED"}))
    assert _memory_key(first) == _memory_key(again)
    assert _memory_key(first) != _memory_key(other)


# -- terminate and connect: payloads, reason, errors in both places ---------------------------


def test_terminate_carries_payloads_reason_and_errors_from_item_and_value() -> None:
    inner = {"code": 138006, "title": "No permission", "error_data": {"details": "d"}}
    outer = {"code": 138021, "message": "Media timeout", "href": "https://x"}
    item = call_item(
        "terminate",
        direction="USER_INITIATED",
        status="FAILED",
        terminate_reason="no_answer",
        cta_payload="order-7",
        deeplink_payload="promo",
        biz_opaque_callback_data="opaque",
        errors=[inner, "not an error", inner],
    )
    event = only(calls(item, errors=[outer, inner]))
    assert isinstance(event, CallTerminateEvent)
    assert (event.terminate_reason, event.cta_payload, event.deeplink_payload) == (
        "no_answer",
        "order-7",
        "promo",
    )
    assert [e.code for e in event.errors] == [138006, 138021]  # each once, the item's first
    assert isinstance(event.error, NoCallPermissionError)
    assert (event.user, event.user_id, event.from_parent_user_id) == (PHONE, BSUID, PARENT)


def test_connect_carries_payloads_and_parent_ids() -> None:
    item = call_item(
        "connect",
        direction="USER_INITIATED",
        to=BUSINESS,
        cta_payload="btn",
        session={"sdp_type": "offer", "sdp": "v=0\r\n"},
    )
    event = only(calls(item))
    assert isinstance(event, CallConnectEvent)
    assert (event.cta_payload, event.from_parent_user_id, event.user_id) == ("btn", PARENT, BSUID)
    assert event.user_ids == {PHONE, BSUID, PARENT}


# -- every event with business-scoped ids only -------------------------------------------------


def _bsuid_only_bodies() -> list[bytes]:
    bic = {
        "id": "wacid.B",
        "from": BUSINESS,
        "to_user_id": BSUID,
        "direction": "BUSINESS_INITIATED",
        "timestamp": str(NOW),
    }
    reply = {
        "from_user_id": BSUID,
        "id": "wamid.R",
        "timestamp": str(NOW),
        "type": "interactive",
        "interactive": {
            "type": "call_permission_reply",
            "call_permission_reply": {"response": "accept"},
        },
    }
    return [
        calls(call_item("connect", phone=False, direction="USER_INITIATED"), phone=False),
        envelope("calls", {"calls": [{**bic, "event": "connect"}]}),
        envelope("calls", {"calls": [{**bic, "event": "terminate", "status": "COMPLETED"}]}),
        envelope(
            "calls",
            {
                "statuses": [
                    {"id": "wacid.B", "status": "RINGING", "timestamp": str(NOW)}
                    | {"recipient_user_id": BSUID}
                ]
            },
        ),
        calls(call_item("call_recording_available", phone=False, **recording()), phone=False),
        calls(call_item("call_transcription_available", phone=False, **transcript()), phone=False),
        calls(call_item("call_created", phone=False, direction="USER_INITIATED"), phone=False),
        message(reply, phone=False),
        statuses(status_item("delivered", phone=False)),
    ]


@pytest.mark.parametrize("body", _bsuid_only_bodies())
def test_every_event_works_without_a_phone_number(body: bytes) -> None:
    event = only(body)
    assert not isinstance(event, UnknownEvent), getattr(event, "problem", None)
    assert event.user == BSUID  # type: ignore[union-attr]
    assert event.user_id == BSUID  # type: ignore[union-attr]
    assert PHONE not in event.user_ids  # type: ignore[union-attr]
    assert _memory_key(event) is not None


def test_the_user_is_the_phone_number_when_both_are_there() -> None:
    event = only(statuses(status_item("read")))
    assert isinstance(event, MessageStatusEvent)
    assert event.user == PHONE
    assert event.user_ids == {PHONE, BSUID}
    # The contact's number counts when the item has only the BSUID.
    item = call_item("connect", phone=False, direction="USER_INITIATED")
    connect = only(envelope("calls", {"contacts": [contact(phone=True)], "calls": [item]}))
    assert isinstance(connect, CallConnectEvent)
    assert connect.user == PHONE


# -- the hardening bounds hold for the new fields ---------------------------------------------

LONG = "x" * (MAX_ID_LENGTH + 1)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            lambda: calls(
                call_item(
                    "call_recording_available",
                    call_recording={"type": "audio", "audio": {"id": LONG}},
                )
            ),
            "calls[0].call_recording.audio.id",
        ),
        (
            lambda: calls(
                call_item(
                    "call_transcription_available",
                    call_transcript={"document": {"id": "d", "sha256": LONG}},
                )
            ),
            "calls[0].call_transcript.document.sha256",
        ),
        (
            lambda: calls(call_item("connect", from_parent_user_id=LONG)),
            "calls[0].from_parent_user_id",
        ),
        (
            lambda: calls(call_item("terminate", terminate_reason=LONG)),
            "calls[0].terminate_reason",
        ),
        (lambda: calls(call_item("call_created", to_user_id=LONG)), "calls[0].to_user_id"),
        (
            lambda: message({"id": "wacid." + LONG, "type": "audio", "timestamp": str(NOW)}),
            "messages[0].id",
        ),
        (lambda: statuses(status_item("sent", id=LONG)), "statuses[0].id"),
        (
            lambda: statuses(status_item("sent", recipient_user_id=LONG)),
            "statuses[0].recipient_user_id",
        ),
        (
            lambda: settings_update({"sip": {"status": LONG}}),
            "phone_number_settings.calling.sip.status",
        ),
    ],
)
def test_a_long_id_in_a_new_field_refuses_the_body_naming_it(
    body: Callable[[], bytes], field: str
) -> None:
    with pytest.raises(WebhookParseError) as caught:
        parse_webhook(body())
    assert f"{field} is longer than {MAX_ID_LENGTH} characters" in str(caught.value)
    assert LONG not in str(caught.value)


@pytest.mark.parametrize(
    "body",
    [
        calls(call_item("call_recording_available", timestamp="9" * 30)),
        calls(call_item("call_created", timestamp=-1)),
        message({"id": "wacid.V", "type": "audio", "timestamp": 10**20}),
        statuses(status_item("sent", timestamp="99999999999999")),
        settings_update({}, timestamp=str(10**15)),
    ],
)
def test_impossible_timestamps_of_new_events_refuse_the_body(body: bytes) -> None:
    with pytest.raises(WebhookParseError, match="out of range"):
        parse_webhook(body)


NEW_SHAPES = st.fixed_dictionaries(
    {"event": st.sampled_from(["call_recording_available", "call_transcription_available"])},
    optional=dict.fromkeys(
        ("id", "timestamp", "call_recording", "call_transcript", "status", "error", "errors"),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=8),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.sampled_from(["id", "audio", "document", "x"]), inner)
            ),
            max_leaves=12,
        ),
    ),
)


@given(NEW_SHAPES)
def test_any_recording_shape_parses_to_an_event_or_a_typed_error(item: dict[str, Any]) -> None:
    try:
        events = parse_webhook(envelope("calls", {"calls": [item]}))
    except WebhookParseError:
        return
    for event in events:
        _memory_key(event)
        assert event.timestamp is None or 0 <= event.timestamp <= 253_402_300_799


# -- the receiver: a typed callback per kind, each delivered once -----------------------------


@pytest_asyncio.fixture
async def served() -> AsyncIterator[Callable[[WebhookReceiver], Any]]:
    runners: list[web.AppRunner] = []

    async def serve_receiver(receiver: WebhookReceiver) -> str:
        runner, port = await serve(receiver.app())
        runners.append(runner)
        return f"http://127.0.0.1:{port}/webhook"

    yield serve_receiver
    for runner in runners:
        await runner.cleanup()


async def post(url: str, body: bytes) -> int:
    async with aiohttp.ClientSession() as session, session.post(url, data=body) as response:
        return response.status


@pytest.mark.asyncio
async def test_each_new_kind_reaches_its_typed_callback_once(served: Any) -> None:
    seen: list[tuple[str, str]] = []

    def record(name: str) -> Callable[[Any], Any]:
        async def callback(event: Any) -> None:
            seen.append((name, type(event).__name__))

        return callback

    receiver = WebhookReceiver(
        insecure_no_auth=True,
        on_recording=record("recording"),
        on_transcription=record("transcription"),
        on_sip_call_created=record("sip"),
        on_voicemail=record("voicemail"),
        on_message_status=record("status"),
        on_settings_update=record("settings"),
    )
    url = await served(receiver)
    voicemail = {"id": "wacid.V", "type": "audio", "timestamp": str(NOW), "from": PHONE}
    bodies = [
        calls(call_item("call_recording_available", **recording())),
        calls(call_item("call_transcription_available", **transcript())),
        calls(call_item("call_created", direction="USER_INITIATED")),
        message(voicemail),
        statuses(status_item("failed")),
        settings_update({"status": "ENABLED"}),
    ]
    for body in bodies + bodies:  # each delivered twice: acted on once
        assert await post(url, body) == 200
    await receiver.drain()
    assert sorted(seen) == [
        ("recording", "CallRecordingAvailableEvent"),
        ("settings", "AccountSettingsUpdateEvent"),
        ("sip", "SipCallCreatedEvent"),
        ("status", "MessageStatusEvent"),
        ("transcription", "CallTranscriptionAvailableEvent"),
        ("voicemail", "VoicemailEvent"),
    ]
    assert receiver.stats["duplicates"] == len(bodies)


@pytest.mark.asyncio
async def test_an_old_new_kind_event_is_stale(served: Any) -> None:
    stale: list[str] = []

    async def on_stale(event: WebhookEvent, reason: str) -> None:
        stale.append(type(event).__name__)

    got: list[object] = []

    async def on_message_status(event: MessageStatusEvent) -> None:
        got.append(event)

    receiver = WebhookReceiver(
        insecure_no_auth=True, on_stale=on_stale, on_message_status=on_message_status, max_age=60
    )
    url = await served(receiver)
    assert await post(url, statuses(status_item("read", timestamp=str(NOW - 3600)))) == 200
    await receiver.drain()
    assert (stale, got) == (["MessageStatusEvent"], [])


# -- the tracker keys users by whichever id is present ----------------------------------------


@pytest.mark.asyncio
async def test_the_tracker_follows_a_user_known_only_by_a_bsuid() -> None:
    tracker = CallTracker()
    only_bsuid = _bsuid_only_bodies()
    for body in (only_bsuid[1], only_bsuid[3], only_bsuid[2]):  # connect, RINGING, terminate
        await tracker.apply(only(body))
    record = await tracker.get("wacid.B")
    assert record is not None
    assert (record.user, record.user_id, record.state) == (BSUID, BSUID, "ended")


@pytest.mark.asyncio
async def test_the_tracker_takes_the_phone_number_when_a_later_webhook_has_it() -> None:
    tracker = CallTracker()
    ringing = envelope(
        "calls",
        {"statuses": [{"id": "wacid.U", "status": "RINGING", "timestamp": str(NOW)}]},
    )
    body = json.loads(ringing)
    body["entry"][0]["changes"][0]["value"]["statuses"][0]["recipient_user_id"] = BSUID
    await tracker.apply(only(json.dumps(body)))
    assert (await tracker.get("wacid.U")).user == BSUID  # type: ignore[union-attr]
    body["entry"][0]["changes"][0]["value"]["statuses"][0]["recipient_id"] = PHONE
    await tracker.apply(only(json.dumps(body)))
    record = await tracker.get("wacid.U")
    assert record is not None
    assert (record.user, record.user_id) == (PHONE, BSUID)
    # ... and keeps it when a later one has only the BSUID again.
    del body["entry"][0]["changes"][0]["value"]["statuses"][0]["recipient_id"]
    await tracker.apply(only(json.dumps(body)))
    assert (await tracker.get("wacid.U")).user == PHONE  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_the_store_still_counts_the_bytes_of_the_user_id() -> None:
    store = InMemoryCallStore(max_bytes=50_000)
    tracker = CallTracker(store)
    for i in range(200):
        item = {
            "id": f"wacid.{i:04d}",
            "status": "RINGING",
            "timestamp": str(NOW),
            "recipient_user_id": "US." + "9" * 200,
        }
        await tracker.apply(only(envelope("calls", {"statuses": [item]})))
    assert store.bytes <= 50_000
    assert len(store) < 200


# -- end to end against the fake --------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_bsuid_only_caller_with_a_call_button_payload_end_to_end(served: Any) -> None:
    connects: list[CallConnectEvent] = []
    ended = asyncio.Event()
    terminates: list[CallTerminateEvent] = []
    async with FakeCallingAPI() as fake, fake.async_client() as client:

        async def on_connect(event: CallConnectEvent) -> None:
            connects.append(event)
            answer = sample_answer(event.call_id)
            await event.accept(client, answer)
            await event.terminate(client)

        async def on_terminate(event: CallTerminateEvent) -> None:
            terminates.append(event)
            ended.set()

        receiver = WebhookReceiver(
            insecure_no_auth=True, on_connect=on_connect, on_terminate=on_terminate
        )
        fake.webhook_url = await served(receiver)
        call = fake.user_calls(BSUID, cta_payload="order-42")
        await asyncio.wait_for(ended.wait(), 10)
        await receiver.drain()
    (connect,) = connects
    (terminate,) = terminates
    assert (connect.call_id, connect.user, connect.from_, connect.cta_payload) == (
        call.id,
        BSUID,
        None,
        "order-42",
    )
    assert (terminate.user, terminate.cta_payload) == (BSUID, "order-42")
    record = await receiver.call(call.id)
    assert record is not None
    assert (record.user, record.user_id) == (BSUID, BSUID)


@pytest.mark.asyncio
async def test_recording_and_transcript_of_a_call_end_to_end(served: Any) -> None:
    from d360calling.models.calls import CallRecording, CallTranscription

    got: list[WebhookEvent] = []
    both = asyncio.Event()
    async with FakeCallingAPI() as fake, fake.async_client() as client:

        async def on_connect(event: CallConnectEvent) -> None:
            await client.accept_call(
                event.call_id,
                sample_answer(event.call_id),
                recording=CallRecording(announcement_language="en_US"),
                transcription=CallTranscription(),
            )

        async def on_media(event: WebhookEvent) -> None:
            got.append(event)
            if len(got) == 2:
                both.set()

        receiver = WebhookReceiver(
            insecure_no_auth=True,
            on_connect=on_connect,
            on_recording=on_media,
            on_transcription=on_media,
        )
        fake.webhook_url = await served(receiver)
        call = fake.user_calls(PHONE)
        await fake.drain_webhooks()
        await receiver.drain()
        fake.user_hangs_up(call.id)
        await asyncio.wait_for(both.wait(), 10)
    kinds = {type(event) for event in got}
    assert kinds == {CallRecordingAvailableEvent, CallTranscriptionAvailableEvent}
    for event in got:
        assert isinstance(event, (CallRecordingAvailableEvent, CallTranscriptionAvailableEvent))
        assert (event.call_id, event.user) == (call.id, PHONE)
        assert event.media_id


@pytest.mark.asyncio
async def test_a_failed_permission_request_reaches_on_message_status_typed(served: Any) -> None:
    failed: list[MessageStatusEvent] = []
    done = asyncio.Event()

    async def on_message_status(event: MessageStatusEvent) -> None:
        if event.failed:
            failed.append(event)
            done.set()

    async with FakeCallingAPI() as fake, fake.async_client() as client:
        receiver = WebhookReceiver(insecure_no_auth=True, on_message_status=on_message_status)
        fake.webhook_url = await served(receiver)
        fake.add_user(PHONE, old_client=True)
        fake.user_sends_message(PHONE)
        sent = await client.send_call_permission_request(PHONE, body="May we call?")
        await asyncio.wait_for(done.wait(), 10)
    (event,) = failed
    assert event.message_id == sent.message_id
    assert isinstance(event.error, MessageUndeliverableError)


def test_permission_reply_keeps_working_for_bsuid_only_users() -> None:
    body = _bsuid_only_bodies()[7]
    event = only(body)
    assert isinstance(event, PermissionReplyEvent)
    assert (event.user, event.from_, event.granted) == (BSUID, None, True)


def test_a_status_under_calls_is_still_a_call_status() -> None:
    item = {"id": "wacid.X", "status": "RINGING", "timestamp": str(NOW), "type": "call"}
    assert isinstance(only(envelope("calls", {"statuses": [item]})), CallStatusEvent)


@pytest.mark.asyncio
async def test_a_settings_change_and_a_voicemail_end_to_end(served: Any) -> None:
    from d360calling import SettingsUpdate
    from d360calling.models import VoicemailSettings

    updates: list[AccountSettingsUpdateEvent] = []
    voicemails: list[VoicemailEvent] = []
    got_voicemail = asyncio.Event()

    async def on_settings_update(event: AccountSettingsUpdateEvent) -> None:
        updates.append(event)

    async def on_voicemail(event: VoicemailEvent) -> None:
        voicemails.append(event)
        got_voicemail.set()

    async with FakeCallingAPI() as fake, fake.async_client() as client:
        receiver = WebhookReceiver(
            insecure_no_auth=True, on_settings_update=on_settings_update, on_voicemail=on_voicemail
        )
        fake.webhook_url = await served(receiver)
        await client.update_settings(SettingsUpdate.callback_permission_status("ENABLED"))
        await client.update_settings(
            SettingsUpdate.voicemail(VoicemailSettings(status="ENABLED", triggers=("TIMEOUT",)))
        )
        call = fake.user_calls(PHONE)
        fake.user_lets_it_ring_out(call.id)
        media_id = fake.user_leaves_voicemail(call.id)
        await asyncio.wait_for(got_voicemail.wait(), 10)
        await receiver.drain()
    assert updates
    assert updates[0].callback_permission_status == FeatureStatus.ENABLED
    assert updates[0].phone_number_id == fake.phone_number_id
    (voicemail,) = voicemails
    assert (voicemail.call_id, voicemail.media_id, voicemail.user) == (call.id, media_id, PHONE)
    record = await receiver.call(call.id)  # the same call the tracker followed
    assert record is not None
    assert record.ended
