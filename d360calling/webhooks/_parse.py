"""``parse_webhook``: a webhook body → its events, in order, through the client's converter
rules (tolerant: unknown keys and values kept, string or int timestamps, any status case)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import attrs

from .. import _json
from .._converter import decode, decode_errors
from ..errors import WebhookParseError
from ..models.webhooks import (
    CallConnectEvent,
    CallStatusEvent,
    CallTerminateEvent,
    PermissionReplyEvent,
    UnknownEvent,
    WebhookContact,
    WebhookError,
    WebhookEvent,
    WebhookMetadata,
)

__all__ = ("parse_webhook",)

T = TypeVar("T")


def parse_webhook(body: bytes | str | Mapping[str, object]) -> list[WebhookEvent]:
    """Every event in a webhook delivery, in the order they appear.

    Raises :class:`~d360calling.WebhookParseError` for a body that is not JSON or not a
    ``whatsapp_business_account`` webhook. Changes and items the library does not model, or
    cannot read, come back as :class:`UnknownEvent` with the raw data, never as an error.
    """
    data = _load(body)
    if not isinstance(data, Mapping) or data.get("object") != "whatsapp_business_account":
        raise WebhookParseError(
            "not a WhatsApp Business Account webhook (object is not 'whatsapp_business_account')"
        )
    entries = data.get("entry")
    if not isinstance(entries, list):
        raise WebhookParseError("a WhatsApp webhook needs an 'entry' array")
    events: list[WebhookEvent] = []
    for entry in entries:
        changes = entry.get("changes") if isinstance(entry, Mapping) else None
        for change in changes if isinstance(changes, list) else ():
            events.extend(_change(change))
    return events


def _load(body: bytes | str | Mapping[str, object]) -> Any:
    if isinstance(body, Mapping):
        return body
    try:
        return _json.loads(body)
    except _json.JSONDecodeError as exc:
        raise WebhookParseError(f"the webhook body is not JSON: {exc}") from None


def _change(change: Any) -> list[WebhookEvent]:
    if not isinstance(change, Mapping):
        return [UnknownEvent(field=None, raw=change, problem="a change is not an object")]
    field = change.get("field")
    value = change.get("value")
    if not isinstance(value, Mapping):
        return [UnknownEvent(field=field, raw=change, problem="the change has no value object")]
    context = _Context(value)
    if field == "calls":
        events = [context.call(item) for item in _items(value, "calls")]
        events += [context.status(item) for item in _items(value, "statuses")]
    elif field == "messages" and _items(value, "messages"):
        events = [context.message(item) for item in _items(value, "messages")]
    else:
        events = []
    return events or [UnknownEvent(field=field, raw=value)]


def _items(value: Mapping[str, Any], key: str) -> list[Any]:
    items = value.get(key)
    return items if isinstance(items, list) else []


class _Context:
    """What the envelope says about every item in it: the business number, the users, and
    (for terminate) the errors."""

    def __init__(self, value: Mapping[str, Any]) -> None:
        self.metadata = _lenient(WebhookMetadata, value.get("metadata"))
        self.contacts = [
            contact
            for raw in _items(value, "contacts")
            if (contact := _lenient(WebhookContact, raw)) is not None
        ]
        self.errors = tuple(
            error for raw in _items(value, "errors") if (error := _lenient(WebhookError, raw))
        )

    def _contact(self, *ids: Any) -> WebhookContact | None:
        for contact in self.contacts:
            if contact.wa_id in ids or contact.user_id in ids:
                return contact
        return self.contacts[0] if len(self.contacts) == 1 else None

    def call(self, item: Any) -> WebhookEvent:
        if not isinstance(item, Mapping):
            return UnknownEvent(field="calls", raw=item, problem="a call is not an object")
        event = str(item.get("event", "")).lower()
        extra: dict[str, Any] = {"metadata": self.metadata}
        if event == "connect":
            cls: type[CallConnectEvent | CallTerminateEvent] = CallConnectEvent
        elif event == "terminate":
            cls, extra["errors"] = CallTerminateEvent, self.errors
        else:
            return UnknownEvent(field="calls", raw=item, problem=f"call event {event!r}")
        users = (item.get("from"), item.get("to"), item.get("from_user_id"), item.get("to_user_id"))
        extra["contact"] = self._contact(*users)
        return _decode(cls, item, extra, "calls")

    def status(self, item: Any) -> WebhookEvent:
        if not isinstance(item, Mapping):
            return UnknownEvent(field="calls", raw=item, problem="a status is not an object")
        users = (item.get("recipient_id"), item.get("recipient_user_id"))
        extra = {"metadata": self.metadata, "contact": self._contact(*users)}
        return _decode(CallStatusEvent, item, extra, "calls")

    def message(self, item: Any) -> WebhookEvent:
        interactive = item.get("interactive") if isinstance(item, Mapping) else None
        reply = (
            interactive.get("call_permission_reply") if isinstance(interactive, Mapping) else None
        )
        if not isinstance(reply, Mapping):
            return UnknownEvent(field="messages", raw=item)  # an ordinary message
        context = item.get("context")
        flat = {
            **reply,
            "from_": item.get("from"),
            "from_user_id": item.get("from_user_id"),
            "message_id": item.get("id"),
            "timestamp": item.get("timestamp"),
            "context_id": context.get("id") if isinstance(context, Mapping) else None,
        }
        users = (item.get("from"), item.get("from_user_id"))
        extra = {"metadata": self.metadata, "contact": self._contact(*users)}
        return _decode(PermissionReplyEvent, flat, extra, "messages")


def _decode(
    cls: type[WebhookEvent], item: Mapping[str, Any], extra: dict[str, Any], field: str
) -> WebhookEvent:
    try:
        event: WebhookEvent = decode(cls, item)
    except Exception as exc:  # any shape problem: keep the raw item
        return UnknownEvent(field=field, raw=item, problem=decode_errors(exc))
    return attrs.evolve(event, **extra)


def _lenient(cls: type[T], raw: Any) -> T | None:
    if raw is None:
        return None
    try:
        return decode(cls, raw)
    except Exception:
        return None
