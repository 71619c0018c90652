"""The webhook payloads the fake sends, shaped as the real service sends them (api-facts §2):
the envelope, the call ``connect``/``terminate`` events, the business-initiated ``statuses``
and the call-permission reply. Pure functions of the state they are given.

Time stamps are strings of Unix seconds; ``duration`` is an integer.
"""

from __future__ import annotations

import secrets
from typing import Any

import attrs

from ._calls import FakeCall
from ._enums import CallDirection, CallStatus, CallTerminateStatus, PermissionReplyResponse
from ._errors import meta_error_body
from ._permissions import PermissionReply

__all__ = (
    "Business",
    "ERROR_CODES_URL",
    "call_connect",
    "call_status",
    "call_terminate",
    "contacts",
    "envelope",
    "permission_reply",
)

ERROR_CODES_URL = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"


@attrs.frozen
class Business:
    """Who the webhooks come from: the business number and its Meta ids."""

    number: str
    phone_number_id: str
    waba_id: str


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


def contacts(wa_id: str, name: str | None = None) -> list[dict[str, Any]]:
    return [{"profile": {"name": name or f"User {wa_id[-4:]}"}, "wa_id": wa_id}]


def _ts(at: float) -> str:
    return str(int(at))


def _parties(call: FakeCall, business_number: str) -> dict[str, str]:
    # "from" is whoever placed the call.
    if call.direction is CallDirection.USER_INITIATED:
        return {"from": call.user, "to": business_number}
    return {"from": business_number, "to": call.user}


def call_connect(
    call: FakeCall, business_number: str, at: float, *, deeplink_payload: str | None = None
) -> dict[str, Any]:
    """``connect``: for an inbound call it carries the caller's offer; for a
    business-initiated one the user's answer."""
    inbound = call.direction is CallDirection.USER_INITIATED
    entry: dict[str, Any] = {
        "id": call.id,
        **_parties(call, business_number),
        "event": "connect",
        "timestamp": _ts(at),
        "direction": call.direction,
        "session": {
            "sdp_type": "offer" if inbound else "answer",
            "sdp": call.offer_sdp if inbound else call.answer_sdp,
        },
    }
    if deeplink_payload is not None:
        entry["deeplink_payload"] = deeplink_payload
    if call.biz_opaque_callback_data is not None:
        entry["biz_opaque_callback_data"] = call.biz_opaque_callback_data
    return {"contacts": contacts(call.user, call.user_name), "calls": [entry]}


def call_status(call: FakeCall, status: CallStatus, at: float) -> dict[str, Any]:
    """A business-initiated call's status; under ``statuses[]``, not ``calls[]``."""
    entry: dict[str, Any] = {
        "id": call.id,
        "timestamp": _ts(at),
        "type": "call",
        "status": status,
        "recipient_id": call.user,
    }
    if call.biz_opaque_callback_data is not None:
        entry["biz_opaque_callback_data"] = call.biz_opaque_callback_data
    return {"statuses": [entry]}


def call_terminate(
    call: FakeCall,
    business_number: str,
    at: float,
    *,
    error_code: int | None = None,
    details: str | None = None,
) -> dict[str, Any]:
    """``terminate``; start, end and duration only if the call was picked up, and
    ``errors[]`` when it failed."""
    entry: dict[str, Any] = {
        "id": call.id,
        **_parties(call, business_number),
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
    if call.biz_opaque_callback_data is not None:
        entry["biz_opaque_callback_data"] = call.biz_opaque_callback_data
    value: dict[str, Any] = {"contacts": contacts(call.user, call.user_name), "calls": [entry]}
    if error_code is not None:
        error = meta_error_body(error_code, details)["error"]
        value["errors"] = [
            {
                "code": error_code,
                "message": error["message"],
                "href": ERROR_CODES_URL,
                "error_data": {"details": details or error["message"]},
            }
        ]
    return value


def permission_reply(reply: PermissionReply, at: float, context_id: str | None) -> dict[str, Any]:
    """The ``call_permission_reply`` message (``field: "messages"``). ``context_id`` is the
    request's wamid, the call's wacid for an automatic callback grant, or None."""
    body: dict[str, Any] = {
        "response": reply.response,
        "is_permanent": reply.is_permanent,
        "response_source": reply.source,
    }
    if reply.response is PermissionReplyResponse.ACCEPT and reply.expires_at is not None:
        body["expiration_timestamp"] = _ts(reply.expires_at)
    message: dict[str, Any] = {
        "from": reply.wa_id,
        "id": "wamid." + secrets.token_urlsafe(24),
        "timestamp": _ts(at),
        "type": "interactive",
        "interactive": {"type": "call_permission_reply", "call_permission_reply": body},
    }
    if context_id is not None:
        message["context"] = {"from": reply.wa_id, "id": context_id}
    return {"contacts": contacts(reply.wa_id), "messages": [message]}
