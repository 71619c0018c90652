"""``parse_webhook``: a webhook body → its events, in order, through the client's converter
rules (tolerant: unknown keys and values kept, string or int timestamps, any status case).

Tolerant of shape, strict about size: an item of another shape becomes an
:class:`UnknownEvent`, but a value no sender can mean (an id longer than
:data:`MAX_ID_LENGTH`, a time outside 1970…9999) refuses the whole body, so it never reaches
the receiver's memories."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, TypeVar

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

__all__ = ("MAX_ERRORS_PER_CHANGE", "MAX_ID_LENGTH", "MAX_TIMESTAMP", "parse_webhook")

T = TypeVar("T")

MAX_ID_LENGTH: Final = 256
"""The longest id (call id, wamid, wa_id, user id) or enum value a webhook may carry. Real
ones are about 60 characters; a longer one refuses the body (:class:`WebhookParseError`)."""
MAX_TIMESTAMP: Final = 253_402_300_799
"""9999-12-31 23:59:59 UTC, the last second a ``datetime`` can hold: the largest timestamp or
duration a webhook may carry (the smallest is 0)."""
MAX_ERRORS_PER_CHANGE: Final = 16
"""How many items of a change's ``errors[]`` are read; real ones carry one or two. Each is
decoded, so the cap keeps a hostile body from costing time."""

# The fields that must be short, as (attribute, name on the wire).
_SHORT_FIELDS: Final[dict[type, tuple[tuple[str, str], ...]]] = {
    CallConnectEvent: (
        ("call_id", "id"),
        ("from_", "from"),
        ("to", "to"),
        ("from_user_id", "from_user_id"),
        ("to_user_id", "to_user_id"),
        ("direction", "direction"),
    ),
    CallStatusEvent: (
        ("call_id", "id"),
        ("status", "status"),
        ("recipient_id", "recipient_id"),
        ("recipient_user_id", "recipient_user_id"),
        ("recipient_parent_user_id", "recipient_parent_user_id"),
    ),
    CallTerminateEvent: (
        ("call_id", "id"),
        ("from_", "from"),
        ("to", "to"),
        ("direction", "direction"),
        ("status", "status"),
    ),
    PermissionReplyEvent: (
        ("message_id", "id"),
        ("from_", "from"),
        ("from_user_id", "from_user_id"),
        ("context_id", "context.id"),
        ("response", "interactive.call_permission_reply.response"),
        ("response_source", "interactive.call_permission_reply.response_source"),
    ),
}
_TIME_FIELDS: Final[dict[type, tuple[tuple[str, str], ...]]] = {
    CallConnectEvent: (("timestamp", "timestamp"),),
    CallStatusEvent: (("timestamp", "timestamp"),),
    CallTerminateEvent: (
        ("timestamp", "timestamp"),
        ("start_time", "start_time"),
        ("end_time", "end_time"),
        ("duration", "duration"),
    ),
    PermissionReplyEvent: (
        ("timestamp", "timestamp"),
        ("expiration_timestamp", "interactive.call_permission_reply.expiration_timestamp"),
    ),
}
_CONTACT_IDS: Final = ("wa_id", "user_id", "parent_user_id")
_METADATA_IDS: Final = ("phone_number_id", "display_phone_number")


class _TooManyEvents(WebhookParseError):
    """The body holds more events than ``max_events`` (nothing of it was decoded): the receiver
    answers it 503, not 400."""

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(f"the webhook body holds {count} events, more than {limit}")
        self.count = count
        self.limit = limit


def parse_webhook(
    body: bytes | str | Mapping[str, object], *, max_events: int | None = None
) -> list[WebhookEvent]:
    """Every event in a webhook delivery, in the order they appear.

    Raises :class:`~d360calling.WebhookParseError` for a body that is not JSON or not a
    ``whatsapp_business_account`` webhook, that holds more than ``max_events`` events (counted
    before any is decoded), or that carries a value no sender can mean: an id or enum value
    longer than :data:`MAX_ID_LENGTH` characters, or a timestamp or duration outside
    0…:data:`MAX_TIMESTAMP`; the message names the field. Changes and items the library does
    not model, or cannot read, come back as :class:`UnknownEvent` with the raw data, never as
    an error (a call without an id, or with an empty one, is such an item).
    """
    try:
        return _parse(body, max_events)
    except RecursionError:  # a decoder or converter that recurses: never a bare RecursionError
        raise WebhookParseError("the webhook body is nested too deeply") from None


def _parse(body: bytes | str | Mapping[str, object], max_events: int | None) -> list[WebhookEvent]:
    data = _load(body)
    if not isinstance(data, Mapping) or data.get("object") != "whatsapp_business_account":
        raise WebhookParseError(
            "not a WhatsApp Business Account webhook (object is not 'whatsapp_business_account')"
        )
    entries = data.get("entry")
    if not isinstance(entries, list):
        raise WebhookParseError("a WhatsApp webhook needs an 'entry' array")
    changes = [
        (f"entry[{i}].changes[{j}]", change)
        for i, entry in enumerate(entries)
        for j, change in enumerate(_changes(entry))
    ]
    if max_events is not None:
        count = sum(_count(change) for _, change in changes)
        if count > max_events:
            raise _TooManyEvents(count, max_events)
    events: list[WebhookEvent] = []
    for where, change in changes:
        events.extend(_change(change, where))
    return events


def _load(body: bytes | str | Mapping[str, object]) -> Any:
    if isinstance(body, Mapping):
        return body
    try:
        return _json.loads(body)
    # ValueError covers every JSONDecodeError, bad UTF-8 and the stdlib's over-long integers.
    except (ValueError, RecursionError) as exc:
        raise WebhookParseError(f"the webhook body is not JSON: {exc!s:.200}") from None


def _changes(entry: Any) -> list[Any]:
    changes = entry.get("changes") if isinstance(entry, Mapping) else None
    return changes if isinstance(changes, list) else []


def _count(change: Any) -> int:
    """How many events :func:`_change` makes of ``change``, without decoding any."""
    value = change.get("value") if isinstance(change, Mapping) else None
    if not isinstance(value, Mapping):
        return 1
    field = change.get("field")
    if field == "calls":
        count = len(_items(value, "calls")) + len(_items(value, "statuses"))
    elif field == "messages":
        count = len(_items(value, "messages"))
    else:
        count = 0
    return count or 1


def _change(change: Any, where: str) -> list[WebhookEvent]:
    if not isinstance(change, Mapping):
        return [UnknownEvent(field=None, raw=change, problem="a change is not an object")]
    raw_field = change.get("field")
    field = raw_field if isinstance(raw_field, str) else None
    value = change.get("value")
    if not isinstance(value, Mapping):
        return [UnknownEvent(field=field, raw=change, problem="the change has no value object")]
    context = _Context(value, f"{where}.value")
    if field == "calls":
        events = [context.call(item, i) for i, item in enumerate(_items(value, "calls"))]
        events += [context.status(item, i) for i, item in enumerate(_items(value, "statuses"))]
    elif field == "messages" and _items(value, "messages"):
        events = [context.message(item, i) for i, item in enumerate(_items(value, "messages"))]
    else:
        events = []
    return events or [_unknown(field, value, None)]


def _items(value: Mapping[str, Any], key: str) -> list[Any]:
    items = value.get(key)
    return items if isinstance(items, list) else []


def _unknown(field: str | None, raw: Any, problem: str | None) -> UnknownEvent:
    """An item the library does not model, with its timestamp when it has a readable one (so
    the receiver can tell its age)."""
    timestamp = raw.get("timestamp") if isinstance(raw, Mapping) else None
    return UnknownEvent(field=field, raw=raw, problem=problem, timestamp=_readable_time(timestamp))


def _readable_time(value: Any) -> int | None:
    if isinstance(value, str) and len(value) <= 20:
        value = value.strip()
        value = int(value) if value.isascii() and value.isdigit() else None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TIMESTAMP:
        return value
    return None


class _Context:
    """What the envelope says about every item in it: the business number, the users, and
    (for terminate) the errors."""

    def __init__(self, value: Mapping[str, Any], where: str) -> None:
        self.where = where
        metadata = value.get("metadata")
        _check_short(metadata, _METADATA_IDS, f"{where}.metadata")
        self.metadata = _lenient(WebhookMetadata, metadata)
        # Contacts are matched by id first and decoded only when an event names them: a body
        # of thousands of contacts then costs one pass, not a decode each.
        self._contacts = [raw for raw in _items(value, "contacts") if isinstance(raw, Mapping)]
        self._by_id: dict[str, int] = {}
        for index, raw in enumerate(self._contacts):
            _check_short(raw, _CONTACT_IDS, f"{where}.contacts[{index}]")
            for key in ("wa_id", "user_id"):
                user = _user_key(raw.get(key))
                if user is not None:
                    self._by_id.setdefault(user, index)  # the first contact with it, as before
        self.errors = tuple(
            error
            for raw in _items(value, "errors")[:MAX_ERRORS_PER_CHANGE]
            if (error := _lenient(WebhookError, raw))
        )

    def _contact(self, *ids: Any) -> WebhookContact | None:
        for user in ids:
            key = _user_key(user)
            index = None if key is None else self._by_id.get(key)
            if index is not None:
                return _lenient(WebhookContact, self._contacts[index])
        return _lenient(WebhookContact, self._contacts[0]) if len(self._contacts) == 1 else None

    def call(self, item: Any, index: int) -> WebhookEvent:
        if not isinstance(item, Mapping):
            return UnknownEvent(field="calls", raw=item, problem="a call is not an object")
        raw_event = item.get("event", "")
        event = raw_event.lower() if isinstance(raw_event, str) else None
        extra: dict[str, Any] = {"metadata": self.metadata}
        if event == "connect":
            cls: type[CallConnectEvent | CallTerminateEvent] = CallConnectEvent
        elif event == "terminate":
            cls, extra["errors"] = CallTerminateEvent, self.errors
        else:
            problem = (
                "the call event is not a string" if event is None else f"call event {event!r:.60}"
            )
            return _unknown("calls", item, problem)
        users = (item.get("from"), item.get("to"), item.get("from_user_id"), item.get("to_user_id"))
        extra["contact"] = self._contact(*users)
        return _decode(cls, item, extra, "calls", f"{self.where}.calls[{index}]")

    def status(self, item: Any, index: int) -> WebhookEvent:
        if not isinstance(item, Mapping):
            return UnknownEvent(field="calls", raw=item, problem="a status is not an object")
        users = (item.get("recipient_id"), item.get("recipient_user_id"))
        extra = {"metadata": self.metadata, "contact": self._contact(*users)}
        return _decode(CallStatusEvent, item, extra, "calls", f"{self.where}.statuses[{index}]")

    def message(self, item: Any, index: int) -> WebhookEvent:
        interactive = item.get("interactive") if isinstance(item, Mapping) else None
        reply = (
            interactive.get("call_permission_reply") if isinstance(interactive, Mapping) else None
        )
        if not isinstance(reply, Mapping):
            return _unknown("messages", item, None)  # an ordinary message
        context = item.get("context")
        flat = {
            **{key: value for key, value in reply.items() if isinstance(key, str)},
            "from_": item.get("from"),
            "from_user_id": item.get("from_user_id"),
            "message_id": item.get("id"),
            "timestamp": item.get("timestamp"),
            "context_id": context.get("id") if isinstance(context, Mapping) else None,
        }
        users = (item.get("from"), item.get("from_user_id"))
        extra = {"metadata": self.metadata, "contact": self._contact(*users)}
        where = f"{self.where}.messages[{index}]"
        return _decode(PermissionReplyEvent, flat, extra, "messages", where)


def _decode(
    cls: type[WebhookEvent],
    item: Mapping[str, Any],
    extra: dict[str, Any],
    field: str,
    where: str,
) -> WebhookEvent:
    try:
        event: WebhookEvent = decode(cls, item)
    except Exception as exc:  # any shape problem: keep the raw item
        return _unknown(field, item, decode_errors(exc))
    _check(event, where)
    call_id = getattr(event, "call_id", None)
    if isinstance(call_id, str) and not call_id.strip():
        # No id: it cannot be told from any other call's event (dedupe, ordering, tracking).
        return _unknown(field, item, "the call id is empty")
    return attrs.evolve(event, **extra)


def _check(event: WebhookEvent, where: str) -> None:
    """Refuse values no sender can mean, naming the field (never its value: it may be huge)."""
    for attribute, name in _SHORT_FIELDS.get(type(event), ()):
        value = getattr(event, attribute)
        if isinstance(value, str) and len(value) > MAX_ID_LENGTH:
            raise WebhookParseError(f"{where}.{name} is longer than {MAX_ID_LENGTH} characters")
    for attribute, name in _TIME_FIELDS.get(type(event), ()):
        value = getattr(event, attribute)
        if value is not None and not 0 <= value <= MAX_TIMESTAMP:
            raise WebhookParseError(f"{where}.{name} is out of range (0 to {MAX_TIMESTAMP})")


def _check_short(raw: Any, keys: Iterable[str], where: str) -> None:
    if not isinstance(raw, Mapping):
        return
    for key in keys:
        value = raw.get(key)
        if isinstance(value, str) and len(value) > MAX_ID_LENGTH:
            raise WebhookParseError(f"{where}.{key} is longer than {MAX_ID_LENGTH} characters")


def _user_key(value: Any) -> str | None:
    """An id as the converter reads it (numbers become strings), for matching contacts."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**20:
        return str(value)
    return None


def _lenient(cls: type[T], raw: Any) -> T | None:
    if raw is None:
        return None
    try:
        return decode(cls, raw)
    except Exception:
        return None
