"""The webhook payloads the fake sends, shaped as the real service sends them (api-facts §2,
api-2026 §3-§5): the envelope, the call ``connect``/``terminate`` events, the
business-initiated ``statuses``, the call-permission reply, the statuses of the messages the
business sent, the user's own messages (text, voicemail), recordings and transcripts, SIP's
``call_created`` and ``account_settings_update``. Pure functions of the state they are given.

Time stamps are strings of Unix seconds; ``duration`` is an integer. Every user is named by
their phone number where they have one (``from``/``to``/``wa_id``/``recipient_id``) and by
their business-scoped id always (``from_user_id``/``to_user_id``/``user_id``/
``recipient_user_id``); a user known only by the latter comes with no phone field at all.
"""

from __future__ import annotations

import secrets
from typing import Any

import attrs

from ._calls import FakeCall
from ._enums import CallDirection, CallStatus, CallTerminateStatus, PermissionReplyResponse
from ._errors import ERROR_CATALOGUE, meta_error_body
from ._permissions import PermissionReply

__all__ = (
    "AUDIO_MIME_TYPE",
    "Business",
    "ERROR_CODES_URL",
    "Media",
    "TRANSCRIPT_MIME_TYPE",
    "Who",
    "account_settings_update",
    "call_connect",
    "call_created",
    "call_recording_available",
    "call_status",
    "call_terminate",
    "call_transcription_available",
    "contacts",
    "envelope",
    "message_status",
    "permission_reply",
    "text_message",
    "voicemail",
)

ERROR_CODES_URL = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"
AUDIO_MIME_TYPE = "audio/ogg; codecs=opus"
TRANSCRIPT_MIME_TYPE = "application/json"


@attrs.frozen
class Business:
    """Who the webhooks come from: the business number and its Meta ids."""

    number: str
    phone_number_id: str
    waba_id: str


@attrs.frozen
class Who:
    """A user as the webhooks name them: phone number (None for a user known only by their
    business-scoped id), business-scoped id, display name."""

    wa_id: str | None
    user_id: str | None
    name: str | None = None


@attrs.frozen
class Media:
    """A media object the fake made (a recording, a transcript, a voicemail)."""

    id: str
    sha256: str
    mime_type: str
    url: str | None = None

    def json(self) -> dict[str, Any]:
        out = {"id": self.id, "sha256": self.sha256, "mime_type": self.mime_type}
        if self.url is not None:
            out["url"] = self.url
        return out


def envelope(business: Business, field: str, value: dict[str, Any]) -> dict[str, Any]:
    full = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": business.number,
            "phone_number_id": business.phone_number_id,
        },
        **value,
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": business.waba_id, "changes": [{"field": field, "value": full}]}],
    }


def contacts(who: Who) -> list[dict[str, Any]]:
    shown = who.wa_id or who.user_id or ""
    contact: dict[str, Any] = {"profile": {"name": who.name or f"User {shown[-4:]}"}}
    if who.wa_id is not None:
        contact["wa_id"] = who.wa_id
    if who.user_id is not None:
        contact["user_id"] = who.user_id
    return [contact]


def _ts(at: float) -> str:
    return str(int(at))


def _user(side: str, who: Who) -> dict[str, str]:
    """The user's fields on an item, as ``from``/``from_user_id`` or ``to``/``to_user_id``."""
    out = {}
    if who.wa_id is not None:
        out[side] = who.wa_id
    if who.user_id is not None:
        out[f"{side}_user_id"] = who.user_id
    return out


def _recipient(who: Who) -> dict[str, str]:
    """The user of a status: ``recipient_id`` (the phone number) and ``recipient_user_id``."""
    out = {}
    if who.wa_id is not None:
        out["recipient_id"] = who.wa_id
    if who.user_id is not None:
        out["recipient_user_id"] = who.user_id
    return out


def _parties(call: FakeCall, who: Who, business_number: str) -> dict[str, str]:
    # "from" is whoever placed the call.
    if call.direction is CallDirection.USER_INITIATED:
        return {**_user("from", who), "to": business_number}
    return {"from": business_number, **_user("to", who)}


def _payloads(call: FakeCall) -> dict[str, str]:
    """What brought the user and what the business attached: on connect and terminate."""
    out = {}
    if call.deeplink_payload is not None:
        out["deeplink_payload"] = call.deeplink_payload
    if call.cta_payload is not None:
        out["cta_payload"] = call.cta_payload
    if call.biz_opaque_callback_data is not None:
        out["biz_opaque_callback_data"] = call.biz_opaque_callback_data
    return out


def call_connect(call: FakeCall, who: Who, business_number: str, at: float) -> dict[str, Any]:
    """``connect``: for an inbound call it carries the caller's offer; for a
    business-initiated one the user's answer."""
    inbound = call.direction is CallDirection.USER_INITIATED
    entry: dict[str, Any] = {
        "id": call.id,
        **_parties(call, who, business_number),
        "event": "connect",
        "timestamp": _ts(at),
        "direction": call.direction,
        "session": {
            "sdp_type": "offer" if inbound else "answer",
            "sdp": call.offer_sdp if inbound else call.answer_sdp,
        },
        **_payloads(call),
    }
    return {"contacts": contacts(who), "calls": [entry]}


def call_created(call: FakeCall, who: Who, business_number: str, at: float) -> dict[str, Any]:
    """SIP's ``call_created`` (api-2026 §4): a call signalled over SIP was created."""
    entry: dict[str, Any] = {
        "id": call.id,
        **_parties(call, who, business_number),
        "event": "call_created",
        "timestamp": _ts(at),
        "direction": call.direction,
        **_payloads(call),
    }
    return {"contacts": contacts(who), "calls": [entry]}


def call_status(call: FakeCall, who: Who, status: CallStatus, at: float) -> dict[str, Any]:
    """A business-initiated call's status; under ``statuses[]``, not ``calls[]``."""
    entry: dict[str, Any] = {
        "id": call.id,
        "timestamp": _ts(at),
        "type": "call",
        "status": status,
        **_recipient(who),
    }
    if call.biz_opaque_callback_data is not None:
        entry["biz_opaque_callback_data"] = call.biz_opaque_callback_data
    return {"statuses": [entry]}


def _error(code: int, details: str | None) -> dict[str, Any]:
    """An ``errors[]`` entry of a webhook: code, title, message, error_data.details, href."""
    title = ERROR_CATALOGUE.get(code, (400, "Unknown error"))[1]
    return {
        "code": code,
        "title": title,
        "message": title,
        "error_data": {"details": details or title},
        "href": ERROR_CODES_URL,
    }


def call_terminate(
    call: FakeCall,
    who: Who,
    business_number: str,
    at: float,
    *,
    error_code: int | None = None,
    details: str | None = None,
) -> dict[str, Any]:
    """``terminate``; start, end and duration only if the call was picked up, and
    ``errors[]`` when it failed. It carries the call's payloads as connect does (for a missed
    call it is the only webhook that does)."""
    entry: dict[str, Any] = {
        "id": call.id,
        **_parties(call, who, business_number),
        "event": "terminate",
        "direction": call.direction,
        "timestamp": _ts(at),
        "status": CallTerminateStatus.FAILED
        if error_code is not None
        else CallTerminateStatus.COMPLETED,
    }
    if call.connected_at is not None and call.ended_at is not None:
        entry["start_time"] = _ts(call.connected_at)
        entry["end_time"] = _ts(call.ended_at)
        entry["duration"] = call.duration
    entry.update(_payloads(call))
    value: dict[str, Any] = {"contacts": contacts(who), "calls": [entry]}
    if error_code is not None:
        error = meta_error_body(error_code, details)["error"]
        value["errors"] = [
            {
                **_error(error_code, details),
                "message": error["message"],
                "error_data": {"details": details or error["message"]},
            }
        ]
    return value


def call_recording_available(
    call: FakeCall, who: Who, business_number: str, media: Media, at: float
) -> dict[str, Any]:
    """``call_recording_available`` (``calls`` field, api-2026 §3), after the call ended."""
    entry: dict[str, Any] = {
        "id": call.id,
        **_parties(call, who, business_number),
        "event": "call_recording_available",
        "timestamp": _ts(at),
        "call_recording": {"type": "audio", "audio": media.json()},
    }
    return {"contacts": contacts(who), "calls": [entry]}


def call_transcription_available(
    call: FakeCall, who: Who, business_number: str, media: Media, at: float
) -> dict[str, Any]:
    """``call_transcription_available`` (``calls`` field, api-2026 §3), after the call ended."""
    entry: dict[str, Any] = {
        "id": call.id,
        **_parties(call, who, business_number),
        "event": "call_transcription_available",
        "timestamp": _ts(at),
        "call_transcript": {"document": media.json()},
    }
    return {"contacts": contacts(who), "calls": [entry]}


def _message(who: Who, message_id: str, at: float, kind: str) -> dict[str, Any]:
    return {**_user("from", who), "id": message_id, "timestamp": _ts(at), "type": kind}


def permission_reply(
    reply: PermissionReply, who: Who, at: float, context_id: str | None
) -> dict[str, Any]:
    """The ``call_permission_reply`` message (``field: "messages"``). ``context_id`` is the
    request's wamid, the call's wacid for an automatic callback grant, or None."""
    body: dict[str, Any] = {
        "response": reply.response,
        "is_permanent": reply.is_permanent,
        "response_source": reply.source,
    }
    if reply.response is PermissionReplyResponse.ACCEPT and reply.expires_at is not None:
        body["expiration_timestamp"] = _ts(reply.expires_at)
    message = _message(who, "wamid." + secrets.token_urlsafe(24), at, "interactive")
    if context_id is not None:
        # Meta's sample puts the user's number in context.from; a user without one has none.
        message["context"] = {**_user("from", Who(who.wa_id, None)), "id": context_id}
    message["interactive"] = {"type": "call_permission_reply", "call_permission_reply": body}
    return {"contacts": contacts(who), "messages": [message]}


def text_message(who: Who, message_id: str, text: str, at: float) -> dict[str, Any]:
    """A text the user sent the business."""
    message = {**_message(who, message_id, at, "text"), "text": {"body": text}}
    return {"contacts": contacts(who), "messages": [message]}


def voicemail(who: Who, call: FakeCall, media: Media, at: float) -> dict[str, Any]:
    """A voicemail: an ordinary audio message whose id is the call's wacid (api-2026 §4)."""
    message = {**_message(who, call.id, at, "audio"), "audio": media.json()}
    return {"contacts": contacts(who), "messages": [message]}


def message_status(
    message_id: str,
    who: Who,
    status: str,
    at: float,
    *,
    error_code: int | None = None,
    details: str | None = None,
) -> dict[str, Any]:
    """The status of a message the business sent (``messages`` field, ``statuses[]``):
    ``sent``, ``delivered``, or ``failed`` with ``errors[]`` (131047 outside the
    customer-service window, 131026 for a client too old for the message)."""
    entry: dict[str, Any] = {
        "id": message_id,
        "status": status,
        "timestamp": _ts(at),
        **_recipient(who),
    }
    if error_code is not None:
        entry["errors"] = [_error(error_code, details)]
    return {"statuses": [entry]}


def account_settings_update(
    phone_number_id: str, calling: dict[str, Any], at: float
) -> dict[str, Any]:
    """``account_settings_update`` (api-facts §2.6): the calling settings after a change, in
    the shape ``GET /calling/settings`` answers (without SIP passwords)."""
    return {
        "timestamp": _ts(at),
        "type": "PHONE_NUMBER_SETTINGS",
        "phone_number_settings": {"phone_number_id": phone_number_id, "calling": calling},
    }
