"""Webhooks: every documented payload variant parses (a test each), authentication, the events'
actions with their SDP guard, and the receiver over real HTTP with duplicated, reordered,
stale and forged deliveries; end to end from the fake API's connect webhook to accept and
terminate."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from d360calling import InvalidRequestError, WebhookParseError
from d360calling.models import CallDirection, CallStatus, CallTerminateStatus
from d360calling.testing import FakeCallingAPI, sample_answer, sample_offer, serve
from d360calling.webhooks import (
    SIGNATURE_HEADER,
    CallConnectEvent,
    CallStatusEvent,
    CallTerminateEvent,
    CallTracker,
    PermissionReplyEvent,
    UnknownEvent,
    WebhookAuth,
    WebhookEvent,
    WebhookReceiver,
    parse_webhook,
    signature,
    verify_signature,
)

NOW = int(time.time())
META = {"display_phone_number": "16315553601", "phone_number_id": "1234"}
CONTACT = {"profile": {"name": "Alice"}, "wa_id": "16315553602", "user_id": "US.13491208655302741"}


def envelope(field: str, value: dict[str, Any], *more: tuple[str, dict[str, Any]]) -> bytes:
    changes = [
        {"field": f, "value": {"messaging_product": "whatsapp", "metadata": META, **v}}
        for f, v in ((field, value), *more)
    ]
    body = {"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": changes}]}
    return json.dumps(body).encode()


def inbound_connect(call_id: str = "wacid.IN", sdp: str | None = None, **extra: Any) -> bytes:
    call = {
        "id": call_id,
        "from": "16315553602",
        "to": "16315553601",
        "event": "connect",
        "timestamp": str(NOW),
        "direction": "USER_INITIATED",
        "session": {"sdp_type": "offer", "sdp": sdp or sample_offer()},
        **extra,
    }
    return envelope("calls", {"contacts": [CONTACT], "calls": [call]})


def terminate(call_id: str = "wacid.IN", **extra: Any) -> bytes:
    call = {
        "id": call_id,
        "from": "16315553602",
        "to": "16315553601",
        "event": "terminate",
        "direction": "USER_INITIATED",
        "timestamp": str(NOW),
        "status": "COMPLETED",
        **extra,
    }
    return envelope("calls", {"contacts": [CONTACT], "calls": [call]})


def status(value: str, call_id: str = "wacid.OUT", timestamp: Any = None) -> bytes:
    item = {
        "id": call_id,
        "timestamp": timestamp if timestamp is not None else str(NOW),
        "type": "call",
        "status": value,
        "recipient_id": "16315553602",
    }
    return envelope("calls", {"statuses": [item]})


def permission_reply(reply: dict[str, Any], context: dict[str, Any] | None = None) -> bytes:
    message: dict[str, Any] = {
        "from": "16315553602",
        "id": "wamid.REPLY",
        "timestamp": str(NOW),
        "type": "interactive",
        "interactive": {"type": "call_permission_reply", "call_permission_reply": reply},
    }
    if context is not None:
        message["context"] = context
    return envelope("messages", {"contacts": [CONTACT], "messages": [message]})


def only(body: bytes) -> WebhookEvent:
    (event,) = parse_webhook(body)
    return event


# -- every documented variant parses ---------------------------------------------------------


def test_inbound_connect() -> None:
    offer = sample_offer()
    event = only(inbound_connect(sdp=offer, deeplink_payload="promo", cta_payload="btn"))
    assert isinstance(event, CallConnectEvent)
    assert (event.call_id, event.direction, event.is_inbound) == (
        "wacid.IN",
        CallDirection.USER_INITIATED,
        True,
    )
    assert (event.from_, event.to, event.user) == ("16315553602", "16315553601", "16315553602")
    assert event.timestamp == NOW
    assert event.sdp == offer
    assert (event.deeplink_payload, event.cta_payload) == ("promo", "btn")
    assert event.contact is not None
    assert (event.contact.name, event.contact.user_id) == ("Alice", "US.13491208655302741")
    assert event.metadata is not None
    assert event.metadata.phone_number_id == "1234"


def test_connect_without_contacts_or_phone_number() -> None:
    """A username user: no ``contacts``, no ``from`` number, only a BSUID."""
    body = json.loads(inbound_connect())
    value = body["entry"][0]["changes"][0]["value"]
    del value["contacts"]
    del value["calls"][0]["from"]
    value["calls"][0]["from_user_id"] = "US.1"
    event = only(json.dumps(body).encode())
    assert isinstance(event, CallConnectEvent)
    assert (event.contact, event.from_, event.from_user_id) == (None, None, "US.1")


def test_business_initiated_connect_with_legacy_connection_field() -> None:
    answer = sample_answer()
    call = {
        "id": "wacid.OUT",
        "from": "16315553601",
        "to": "16315553602",
        "to_user_id": "US.2",
        "event": "connect",
        "timestamp": NOW,  # an int, not a string
        "direction": "BUSINESS_INITIATED",
        "session": {"sdp_type": "answer", "sdp": answer},
        "connection": {"webrtc": {"sdp": "legacy"}},
        "biz_opaque_callback_data": "order-9",
    }
    event = only(envelope("calls", {"calls": [call]}))
    assert isinstance(event, CallConnectEvent)
    assert not event.is_inbound
    assert (event.user, event.to_user_id, event.sdp) == ("16315553602", "US.2", answer)
    assert event.timestamp == NOW
    assert event.biz_opaque_callback_data == "order-9"


@pytest.mark.parametrize("value", ["RINGING", "ACCEPTED", "REJECTED", "Ringing", "accepted"])
def test_status_under_statuses(value: str) -> None:
    event = only(status(value))
    assert isinstance(event, CallStatusEvent)
    assert event.status == CallStatus(value.upper())
    assert event.recipient_id == "16315553602"
    assert event.dedupe_key == ("wacid.OUT", "status", value.upper())


def test_terminate_completed_with_duration() -> None:
    event = only(
        terminate(
            start_time=str(NOW - 120), end_time=str(NOW), duration=120, biz_opaque_callback_data="x"
        )
    )
    assert isinstance(event, CallTerminateEvent)
    assert event.status == CallTerminateStatus.COMPLETED
    assert (event.start_time, event.end_time, event.duration) == (NOW - 120, NOW, 120)
    assert event.answered
    assert not event.failed
    assert event.biz_opaque_callback_data == "x"


def test_terminate_unanswered_has_no_times() -> None:
    event = only(terminate())
    assert isinstance(event, CallTerminateEvent)
    assert (event.start_time, event.duration, event.answered) == (None, None, False)


def test_terminate_failed_mixed_case_with_errors_titled() -> None:
    body = json.loads(terminate(status="Failed"))
    body["entry"][0]["changes"][0]["value"]["errors"] = [
        {"code": 138021, "title": "Media receive timeout", "error_data": {"details": "no RTP"}},
        {"code": "138022", "message": "Media transmit timeout", "href": "https://x"},
    ]
    event = only(json.dumps(body).encode())
    assert isinstance(event, CallTerminateEvent)
    assert event.failed
    assert [(e.code, e.text) for e in event.errors] == [
        (138021, "Media receive timeout"),
        (138022, "Media transmit timeout"),
    ]
    assert event.errors[0].details == "no RTP"


def test_permission_reply_temporary_with_string_expiry() -> None:
    reply = {
        "response": "accept",
        "is_permanent": False,
        "expiration_timestamp": str(NOW + 604800),
        "response_source": "user_action",
    }
    event = only(permission_reply(reply, {"from": "16315553602", "id": "wamid.REQUEST"}))
    assert isinstance(event, PermissionReplyEvent)
    assert event.granted
    assert (event.is_permanent, event.expiration_timestamp) == (False, NOW + 604800)
    assert (event.context_id, event.message_id, event.from_) == (
        "wamid.REQUEST",
        "wamid.REPLY",
        "16315553602",
    )


def test_permission_reply_without_is_permanent_and_int_expiry() -> None:
    """The Nov-2025 shape (no ``is_permanent``) with PYWA's integer expiry."""
    event = only(permission_reply({"response": "accept", "expiration_timestamp": NOW}))
    assert isinstance(event, PermissionReplyEvent)
    assert (event.is_permanent, event.expiration_timestamp) == (False, NOW)


def test_permission_reply_permanent_and_callback_context() -> None:
    reply = {"response": "accept", "is_permanent": True, "response_source": "automatic"}
    event = only(permission_reply(reply, {"from": "16315553602", "id": "wacid.CALLED"}))
    assert isinstance(event, PermissionReplyEvent)
    assert event.is_permanent
    assert event.expiration_timestamp is None
    assert event.context_id == "wacid.CALLED"


def test_automatic_revoke_has_no_context() -> None:
    event = only(permission_reply({"response": "reject", "response_source": "automatic"}))
    assert isinstance(event, PermissionReplyEvent)
    assert not event.granted
    assert (event.response_source, event.context_id) == ("automatic", None)


def test_several_events_in_one_delivery_keep_their_order() -> None:
    connect = json.loads(inbound_connect())["entry"][0]["changes"][0]["value"]
    ended = json.loads(terminate("wacid.OTHER"))["entry"][0]["changes"][0]["value"]
    connect["calls"].append(ended["calls"][0])
    statuses = {
        "statuses": [
            json.loads(status("RINGING"))["entry"][0]["changes"][0]["value"]["statuses"][0]
        ]
    }
    events = parse_webhook(envelope("calls", connect, ("calls", statuses)))
    assert [type(e).__name__ for e in events] == [
        "CallConnectEvent",
        "CallTerminateEvent",
        "CallStatusEvent",
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("account_update", {"event": "ACCOUNT_VIOLATION", "timestamp": "1"}),
        ("messages", {"messages": [{"from": "1", "id": "wamid.T", "type": "text", "text": {}}]}),
        # An audio message that is not a voicemail: its id is a message's, not a call's.
        ("messages", {"messages": [{"from": "1", "id": "wamid.A", "type": "audio"}]}),
        ("calls", {"calls": [{"id": "wacid.R", "event": "call_hold"}]}),
        ("calls", {"calls": [{"event": "connect"}]}),  # no id: cannot be a call event
        ("calls", {"calls": [{"event": "call_recording_available"}]}),
        ("messages", {"statuses": [{"id": "", "status": "read"}]}),  # no message id
    ],
)
def test_what_is_not_modelled_is_kept_not_dropped(field: str, value: dict[str, Any]) -> None:
    event = only(envelope(field, value))
    assert isinstance(event, UnknownEvent)
    assert event.field == field
    assert event.raw  # the payload, to log or handle


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"object": "page", "entry": []}',
        b'{"object": "whatsapp_business_account"}',
    ],
)
def test_bodies_that_are_not_whatsapp_webhooks_raise_a_typed_error(body: bytes) -> None:
    with pytest.raises(WebhookParseError):
        parse_webhook(body)


# -- authentication ---------------------------------------------------------------------------


def test_signatures_are_checked_in_constant_time_and_either_form() -> None:
    body = inbound_connect()
    good = signature("s3cret", body)
    assert verify_signature(body, good, "s3cret")
    assert verify_signature(body, "sha256=" + good.upper(), "s3cret")
    assert not verify_signature(body + b" ", good, "s3cret")
    assert not verify_signature(body, good, "other")
    assert not verify_signature(body, None, "s3cret")
    auth = WebhookAuth(signing_secret="s3cret", header_name="X-Secret", header_value="v")
    assert auth.check({SIGNATURE_HEADER: good, "X-Secret": "v"}, body)
    assert not auth.check({SIGNATURE_HEADER: good, "X-Secret": "w"}, body)
    assert "s3cret" not in repr(auth)
    with pytest.raises(ValueError, match="both"):
        WebhookAuth(header_name="X-Secret")


# -- the events act on their calls ------------------------------------------------------------


@pytest.mark.asyncio
async def test_connect_event_answers_its_call_and_guards_the_sdp() -> None:
    async with FakeCallingAPI() as fake, fake.async_client() as client:
        call = fake.user_calls("4915100000001")
        event = only(fake.webhooks[0].body)
        assert isinstance(event, CallConnectEvent)
        assert event.sdp is not None
        with pytest.raises(InvalidRequestError, match="caller's own offer"):
            await event.accept(client, sdp=event.sdp.replace("\r\n", "\n"))
        answer = sample_answer()
        await event.pre_accept(client, answer)
        await event.accept(client, sdp=answer)
        await event.terminate(client)
        assert call.actions == ["pre_accept", "accept", "terminate"]


def test_connect_event_acts_through_the_sync_client_too() -> None:
    with FakeCallingAPI() as fake, fake.client() as client:
        call = fake.user_calls("4915100000002")
        event = only(fake.webhooks[0].body)
        assert isinstance(event, CallConnectEvent)
        event.reject(client)
    assert call.end_reason == "rejected"


def test_a_business_initiated_connect_cannot_be_accepted() -> None:
    answer = sample_answer()
    call = {
        "id": "wacid.OUT",
        "event": "connect",
        "direction": "BUSINESS_INITIATED",
        "session": {"sdp_type": "answer", "sdp": answer},
    }
    event = only(envelope("calls", {"calls": [call]}))
    assert isinstance(event, CallConnectEvent)
    with pytest.raises(InvalidRequestError, match="answered by the user"):
        event.accept(object(), sdp=sample_offer())  # type: ignore[call-overload]


# -- the receiver over real HTTP --------------------------------------------------------------


class Bot:
    """Records what the receiver hands it."""

    def __init__(self, delay: float = 0.0) -> None:
        self.events: list[tuple[str, WebhookEvent]] = []
        self.stale: list[tuple[WebhookEvent, str]] = []
        self.delay = delay

    def receiver(self, **options: Any) -> WebhookReceiver:
        async def record(kind: str, event: Any) -> None:
            await asyncio.sleep(self.delay)
            self.events.append((kind, event))

        async def on_stale(event: WebhookEvent, reason: str) -> None:
            self.stale.append((event, reason))

        if "signing_secret" not in options and "secret_header" not in options:
            options["insecure_no_auth"] = True  # these tests are about delivery, not auth
        return WebhookReceiver(
            on_connect=lambda e: record("connect", e),
            on_status=lambda e: record("status", e),
            on_terminate=lambda e: record("terminate", e),
            on_permission_reply=lambda e: record("permission", e),
            on_unknown=lambda e: record("unknown", e),
            on_stale=on_stale,
            **options,
        )

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]


@pytest_asyncio.fixture
async def served() -> AsyncIterator[Any]:
    runners: list[web.AppRunner] = []

    async def serve_receiver(receiver: WebhookReceiver) -> str:
        runner, port = await serve(receiver.app())
        runners.append(runner)
        return f"http://127.0.0.1:{port}/webhook"

    yield serve_receiver
    for runner in runners:
        await runner.cleanup()


async def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, float]:
    started = time.monotonic()
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers or {}) as response,
    ):
        await response.read()
        return response.status, time.monotonic() - started


@pytest.mark.asyncio
async def test_acknowledges_before_the_callbacks_run(served: Any) -> None:
    bot = Bot(delay=1.0)
    receiver = bot.receiver()
    url = await served(receiver)
    status_code, elapsed = await post(url, inbound_connect())
    assert status_code == 200
    assert elapsed < 0.5  # the 1 s callback has not run yet
    assert bot.events == []
    await receiver.drain()
    assert bot.kinds() == ["connect"]


@pytest.mark.asyncio
async def test_duplicates_are_dropped(served: Any) -> None:
    bot = Bot()
    receiver = bot.receiver()
    url = await served(receiver)
    for body in (
        inbound_connect(),
        inbound_connect(),
        status("RINGING"),
        status("RINGING"),
        status("ACCEPTED"),
        terminate(),
        terminate(),
    ):
        assert (await post(url, body))[0] == 200
    await receiver.drain()
    assert bot.kinds() == ["connect", "status", "status", "terminate"]
    assert receiver.stats["duplicates"] == 3


@pytest.mark.asyncio
async def test_a_terminate_before_its_connect_stops_the_connect(served: Any) -> None:
    bot = Bot()
    receiver = bot.receiver()
    url = await served(receiver)
    await post(url, terminate())
    await post(url, inbound_connect())
    await receiver.drain()
    assert bot.kinds() == ["terminate"]
    ((event, reason),) = bot.stale
    assert isinstance(event, CallConnectEvent)
    assert "already ended" in reason
    record = await receiver.call("wacid.IN")
    assert record is not None
    assert record.ended


@pytest.mark.asyncio
async def test_old_events_are_stale(served: Any) -> None:
    bot = Bot()
    receiver = bot.receiver(max_age=60)
    url = await served(receiver)
    await post(url, status("RINGING", timestamp=str(NOW - 3600)))
    await receiver.drain()
    assert bot.events == []
    ((event, reason),) = bot.stale
    assert isinstance(event, CallStatusEvent)
    # NOW is taken at import, so the age is an hour plus however long the suite has run.
    age = re.fullmatch(r"(\d+) s old \(max_age 60 s\)", reason)
    assert age is not None
    assert 3600 <= int(age.group(1)) < 3600 + 1800


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, 401),
        ({SIGNATURE_HEADER: "0" * 64, "X-Secret": "shh"}, 401),
        ({"X-Secret": "wrong"}, 401),
        (None, 200),  # signed correctly, with the header
    ],
)
@pytest.mark.asyncio
async def test_forged_deliveries_are_refused(
    served: Any, headers: dict[str, str] | None, expected: int
) -> None:
    bot = Bot()
    receiver = bot.receiver(signing_secret="k", secret_header=("X-Secret", "shh"))
    url = await served(receiver)
    body = inbound_connect()
    if headers is None:
        headers = {SIGNATURE_HEADER: signature("k", body), "X-Secret": "shh"}
    elif SIGNATURE_HEADER not in headers and headers:
        headers[SIGNATURE_HEADER] = signature("k", body)
    assert (await post(url, body, headers))[0] == expected
    await receiver.drain()
    assert len(bot.events) == (expected == 200)


@pytest.mark.asyncio
async def test_bad_bodies_get_400_and_a_failing_callback_does_not_break_delivery(
    served: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(event: WebhookEvent) -> None:
        raise RuntimeError("bug in the bot")

    receiver = WebhookReceiver(on_connect=broken, insecure_no_auth=True)
    url = await served(receiver)
    assert (await post(url, b"<xml/>"))[0] == 400
    assert (await post(url, inbound_connect()))[0] == 200
    await receiver.drain()
    assert "webhook callback failed" in caplog.text


# -- end to end: the fake API's webhooks through the receiver to the client -------------------


@pytest.mark.asyncio
async def test_inbound_call_end_to_end_with_reordered_duplicated_delivery(served: Any) -> None:
    answered: list[str] = []
    ended = asyncio.Event()

    async with FakeCallingAPI(webhook_signing_secret="k") as fake, fake.async_client() as client:

        async def on_connect(event: CallConnectEvent) -> None:
            answer = sample_answer(event.call_id)
            await event.pre_accept(client, answer)
            await event.accept(client, answer)
            answered.append(event.call_id)
            await asyncio.sleep(0.05)
            await event.terminate(client)

        async def on_terminate(event: CallTerminateEvent) -> None:
            ended.set()

        receiver = WebhookReceiver(
            on_connect=on_connect, on_terminate=on_terminate, signing_secret="k"
        )
        fake.webhook_url = await served(receiver)

        # 1: delivered twice; answered once.
        fake.hold_webhooks()
        first = fake.user_calls("4915100000001")
        fake.release_webhooks(duplicate=True)
        await asyncio.wait_for(ended.wait(), 10)
        await fake.drain_webhooks()
        await receiver.drain()
        assert answered == [first.id]
        assert first.actions == ["pre_accept", "accept", "terminate"]
        record = await receiver.call(first.id)
        assert record is not None
        assert (record.state, record.end_status, record.events) == (
            "ended",
            "COMPLETED",
            ("connect", "terminate"),
        )

        # 2: the user hangs up before the connect is delivered: it is never answered.
        fake.hold_webhooks()
        second = fake.user_calls("4915100000002")
        fake.user_hangs_up(second.id)
        fake.release_webhooks(reverse=True)
        await fake.drain_webhooks()
        await receiver.drain()
        assert answered == [first.id]
        assert second.actions == []
        assert receiver.stats["stale"] == 1


@pytest.mark.asyncio
async def test_tracker_follows_a_business_initiated_call() -> None:
    tracker = CallTracker()
    for body in (status("RINGING"), status("ACCEPTED"), terminate("wacid.OUT", duration=30)):
        for event in parse_webhook(body):
            await tracker.apply(event)
    record = await tracker.get("wacid.OUT")
    assert record is not None
    assert (record.state, record.user, record.duration, record.end_status) == (
        "ended",
        "16315553602",
        30,
        "COMPLETED",
    )
    late = parse_webhook(status("RINGING"))[0]
    assert (await tracker.apply(late)) is not None
    assert (await tracker.get("wacid.OUT")).state == "ended"  # type: ignore[union-attr]
    declined = CallTracker()
    for body in (status("RINGING", "wacid.D"), status("REJECTED", "wacid.D"), terminate("wacid.D")):
        await declined.apply(parse_webhook(body)[0])
    assert (await declined.get("wacid.D")).end_status == "REJECTED"  # type: ignore[union-attr]
