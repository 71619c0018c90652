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
    AccountSettingsUpdateEvent,
    CallConnectEvent,
    CallRecordingAvailableEvent,
    CallStatusEvent,
    CallTerminateEvent,
    CallTranscriptionAvailableEvent,
    MessageStatusEvent,
    PermissionReplyEvent,
    SipCallCreatedEvent,
    UnknownEvent,
    VoicemailEvent,
    WebhookContact,
    WebhookError,
    WebhookEvent,
    WebhookMedia,
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

# The parties of a call item, as (attribute, name on the wire): every id must be short.
_PARTIES: Final = (
    ("call_id", "id"),
    ("from_", "from"),
    ("to", "to"),
    ("from_user_id", "from_user_id"),
    ("to_user_id", "to_user_id"),
    ("from_parent_user_id", "from_parent_user_id"),
    ("to_parent_user_id", "to_parent_user_id"),
    ("direction", "direction"),
)


def _media_fields(wire: str) -> tuple[tuple[str, str], ...]:
    return tuple((f"media.{key}", f"{wire}.{key}") for key in ("id", "sha256", "mime_type"))


# The fields that must be short, as (attribute path, name on the wire).
_SHORT_FIELDS: Final[dict[type, tuple[tuple[str, str], ...]]] = {
    CallConnectEvent: _PARTIES,
    CallStatusEvent: (
        ("call_id", "id"),
        ("status", "status"),
        ("recipient_id", "recipient_id"),
        ("recipient_user_id", "recipient_user_id"),
        ("recipient_parent_user_id", "recipient_parent_user_id"),
    ),
    CallTerminateEvent: (*_PARTIES, ("status", "status"), ("terminate_reason", "terminate_reason")),
    PermissionReplyEvent: (
        ("message_id", "id"),
        ("from_", "from"),
        ("from_user_id", "from_user_id"),
        ("from_parent_user_id", "from_parent_user_id"),
        ("context_id", "context.id"),
        ("response", "interactive.call_permission_reply.response"),
        ("response_source", "interactive.call_permission_reply.response_source"),
    ),
    CallRecordingAvailableEvent: (
        *_PARTIES,
        ("status", "status"),
        ("media_type", "call_recording.type"),
        *_media_fields("call_recording.audio"),
    ),
    CallTranscriptionAvailableEvent: (
        *_PARTIES,
        ("status", "status"),
        *_media_fields("call_transcript.document"),
    ),
    SipCallCreatedEvent: _PARTIES,
    VoicemailEvent: (
        ("call_id", "id"),
        ("from_", "from"),
        ("from_user_id", "from_user_id"),
        ("from_parent_user_id", "from_parent_user_id"),
        *_media_fields("audio"),
    ),
    MessageStatusEvent: (
        ("message_id", "id"),
        ("status", "status"),
        ("recipient_id", "recipient_id"),
        ("recipient_user_id", "recipient_user_id"),
        ("recipient_parent_user_id", "recipient_parent_user_id"),
    ),
    AccountSettingsUpdateEvent: (
        ("type", "type"),
        ("phone_number_id", "phone_number_settings.phone_number_id"),
        ("calling_status", "phone_number_settings.calling.status"),
        ("call_icon_visibility", "phone_number_settings.calling.call_icon_visibility"),
        (
            "callback_permission_status",
            "phone_number_settings.calling.callback_permission_status",
        ),
        ("sip_status", "phone_number_settings.calling.sip.status"),
        (
            "srtp_key_exchange_protocol",
            "phone_number_settings.calling.srtp_key_exchange_protocol",
        ),
    ),
}
_TIMESTAMP: Final = (("timestamp", "timestamp"),)
_TIME_FIELDS: Final[dict[type, tuple[tuple[str, str], ...]]] = {
    CallConnectEvent: _TIMESTAMP,
    CallStatusEvent: _TIMESTAMP,
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
    CallRecordingAvailableEvent: _TIMESTAMP,
    CallTranscriptionAvailableEvent: _TIMESTAMP,
    SipCallCreatedEvent: _TIMESTAMP,
    VoicemailEvent: _TIMESTAMP,
    MessageStatusEvent: _TIMESTAMP,
    AccountSettingsUpdateEvent: _TIMESTAMP,
}
# The call events of the ``calls`` field, by ``event``.
_CALL_EVENTS: Final[dict[str, type[WebhookEvent]]] = {
    "connect": CallConnectEvent,
    "terminate": CallTerminateEvent,
    "call_recording_available": CallRecordingAvailableEvent,
    "call_transcription_available": CallTranscriptionAvailableEvent,
    "call_created": SipCallCreatedEvent,
}
# Where the media object of each media event is (api-2026 §3); ``call_transcription`` is
# read too, in case a sender spells it so.
_MEDIA: Final[dict[type, tuple[tuple[str, str], ...]]] = {
    CallRecordingAvailableEvent: (("call_recording", "audio"),),
    CallTranscriptionAvailableEvent: (
        ("call_transcript", "document"),
        ("call_transcription", "document"),
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
        count = len(_items(value, "messages")) + len(_items(value, "statuses"))
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
    elif field == "messages":
        events = [context.message(item, i) for i, item in enumerate(_items(value, "messages"))]
        events += [
            context.message_status(item, i) for i, item in enumerate(_items(value, "statuses"))
        ]
    elif field == "account_settings_update":
        events = [context.settings_update(value)]
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
        self.value = value
        self.errors = _errors(value)

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
        cls = _CALL_EVENTS.get(event) if event is not None else None
        if cls is None:
            problem = (
                "the call event is not a string" if event is None else f"call event {event!r:.60}"
            )
            return _unknown("calls", item, problem)
        # errors[] are read leniently and outside the decode, so one odd error never costs
        # the event, and a long list costs no more than MAX_ERRORS_PER_CHANGE decodes.
        flat: dict[str, Any] = {k: v for k, v in item.items() if k not in ("errors", "error")}
        extra: dict[str, Any] = {"metadata": self.metadata}
        if cls is CallTerminateEvent:
            extra["errors"] = _merged(_errors(item), self.errors)
        elif cls in _MEDIA:
            extra["media"] = _media_flat(item, _MEDIA[cls], flat)
            flat["call_id"], flat["from_"] = item.get("id"), item.get("from")
            extra["errors"] = _merged(_errors(item), _media_errors(item, _MEDIA[cls]), self.errors)
        elif cls is SipCallCreatedEvent:
            flat["call_id"], flat["from_"] = item.get("id"), item.get("from")
        users = (item.get("from"), item.get("to"), item.get("from_user_id"), item.get("to_user_id"))
        extra["contact"] = self._contact(*users)
        return _decode(cls, flat, extra, "calls", f"{self.where}.calls[{index}]")

    def status(self, item: Any, index: int) -> WebhookEvent:
        if not isinstance(item, Mapping):
            return UnknownEvent(field="calls", raw=item, problem="a status is not an object")
        users = (item.get("recipient_id"), item.get("recipient_user_id"))
        extra = {"metadata": self.metadata, "contact": self._contact(*users)}
        return _decode(CallStatusEvent, item, extra, "calls", f"{self.where}.statuses[{index}]")

    def message(self, item: Any, index: int) -> WebhookEvent:
        if not isinstance(item, Mapping):
            return _unknown("messages", item, None)
        where = f"{self.where}.messages[{index}]"
        users = (item.get("from"), item.get("from_user_id"))
        extra: dict[str, Any] = {"metadata": self.metadata, "contact": self._contact(*users)}
        interactive = item.get("interactive")
        reply = (
            interactive.get("call_permission_reply") if isinstance(interactive, Mapping) else None
        )
        message_id = item.get("id")
        if isinstance(reply, Mapping):
            context = item.get("context")
            flat = {
                **{key: value for key, value in reply.items() if isinstance(key, str)},
                "from_": item.get("from"),
                "from_user_id": item.get("from_user_id"),
                "from_parent_user_id": item.get("from_parent_user_id"),
                "message_id": message_id,
                "timestamp": item.get("timestamp"),
                "context_id": context.get("id") if isinstance(context, Mapping) else None,
            }
            return _decode(PermissionReplyEvent, flat, extra, "messages", where)
        if (
            item.get("type") == "audio"
            and isinstance(message_id, str)
            and message_id.startswith("wacid.")
        ):
            # A voicemail: an audio message whose id is the call's (api-facts §2.6).
            voicemail = {
                "call_id": message_id,
                "from_": item.get("from"),
                "from_user_id": item.get("from_user_id"),
                "from_parent_user_id": item.get("from_parent_user_id"),
                "timestamp": item.get("timestamp"),
            }
            extra["media"] = _lenient(WebhookMedia, item.get("audio"))
            return _decode(VoicemailEvent, voicemail, extra, "messages", where)
        return _unknown("messages", item, None)  # an ordinary message

    def message_status(self, item: Any, index: int) -> WebhookEvent:
        if not isinstance(item, Mapping):
            return UnknownEvent(field="messages", raw=item, problem="a status is not an object")
        flat = {
            key: value
            for key, value in item.items()
            if isinstance(key, str) and key not in ("errors", "id")
        }
        flat["message_id"] = item.get("id")
        users = (item.get("recipient_id"), item.get("recipient_user_id"))
        extra = {
            "metadata": self.metadata,
            "contact": self._contact(*users),
            "errors": _merged(_errors(item), self.errors),
        }
        where = f"{self.where}.statuses[{index}]"
        return _decode(MessageStatusEvent, flat, extra, "messages", where)

    def settings_update(self, value: Mapping[str, Any]) -> WebhookEvent:
        settings = value.get("phone_number_settings")
        settings = settings if isinstance(settings, Mapping) else {}
        calling = settings.get("calling")
        calling = calling if isinstance(calling, Mapping) else None
        sip = calling.get("sip") if calling is not None else None

        def text(source: Any, key: str) -> Any:
            # Tolerant: a watched value that is not a string is left out, not a failure.
            found = source.get(key) if isinstance(source, Mapping) else None
            return found if isinstance(found, str) else None

        flat = {
            "timestamp": value.get("timestamp"),
            "type": text(value, "type"),
            "phone_number_id": _user_key(settings.get("phone_number_id")),
            "calling_status": text(calling, "status"),
            "call_icon_visibility": text(calling, "call_icon_visibility"),
            "callback_permission_status": text(calling, "callback_permission_status"),
            "sip_status": text(sip, "status"),
            "srtp_key_exchange_protocol": text(calling, "srtp_key_exchange_protocol"),
        }
        extra = {"metadata": self.metadata, "calling": calling, "raw": value}
        where = f"{self.where}"
        return _decode(AccountSettingsUpdateEvent, flat, extra, "account_settings_update", where)


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
    event = attrs.evolve(event, **extra)
    _check(event, where)
    for id_field in ("call_id", "message_id"):
        value = getattr(event, id_field, None)
        if id_field == "message_id" and not isinstance(event, MessageStatusEvent):
            continue  # a permission reply may lack its message id (it is keyed otherwise)
        if isinstance(value, str) and not value.strip():
            # No id: it cannot be told from any other event (dedupe, ordering, tracking).
            what = "call" if id_field == "call_id" else "message"
            return _unknown(field, item, f"the {what} id is empty")
    return event


def _check(event: WebhookEvent, where: str) -> None:
    """Refuse values no sender can mean, naming the field (never its value: it may be huge)."""
    for path, name in _SHORT_FIELDS.get(type(event), ()):
        value: Any = event
        for attribute in path.split("."):
            value = getattr(value, attribute, None)
        if isinstance(value, str) and len(value) > MAX_ID_LENGTH:
            raise WebhookParseError(f"{where}.{name} is longer than {MAX_ID_LENGTH} characters")
    for attribute, name in _TIME_FIELDS.get(type(event), ()):
        value = getattr(event, attribute)
        if value is not None and not 0 <= value <= MAX_TIMESTAMP:
            raise WebhookParseError(f"{where}.{name} is out of range (0 to {MAX_TIMESTAMP})")


def _errors(source: Mapping[str, Any]) -> tuple[WebhookError, ...]:
    """``errors[]`` of an item or a change (and a single ``error`` object, as one BSP sends
    it), read leniently: an error of another shape is left out."""
    raws: list[Any] = _items(source, "errors")[:MAX_ERRORS_PER_CHANGE]
    single = source.get("error")
    if isinstance(single, Mapping):
        raws.append(single)
    return tuple(error for raw in raws if (error := _lenient(WebhookError, raw)))


def _merged(*groups: tuple[WebhookError, ...]) -> tuple[WebhookError, ...]:
    """The errors of the item first, then those of the change it is in, each once, at most
    :data:`MAX_ERRORS_PER_CHANGE` in all."""
    merged: list[WebhookError] = []
    for group in groups:
        merged.extend(error for error in group if error not in merged)
    return tuple(merged[:MAX_ERRORS_PER_CHANGE])


def _media_flat(
    item: Mapping[str, Any], places: tuple[tuple[str, str], ...], flat: dict[str, Any]
) -> WebhookMedia | None:
    """The media object of a recording or transcript; its ``type`` and the failure fields
    (``status``, ``retryable``) of the media wrapper go into ``flat`` (the item's own win)."""
    for wrapper_key, media_key in places:
        wrapper = item.get(wrapper_key)
        if not isinstance(wrapper, Mapping):
            continue
        kind = wrapper.get("type")
        flat["media_type"] = kind if isinstance(kind, str) else None
        for key in ("status", "retryable"):
            if key not in item and key in wrapper:
                flat[key] = wrapper[key]
        return _lenient(WebhookMedia, wrapper.get(media_key))
    return None


def _media_errors(
    item: Mapping[str, Any], places: tuple[tuple[str, str], ...]
) -> tuple[WebhookError, ...]:
    for wrapper_key, _ in places:
        wrapper = item.get(wrapper_key)
        if isinstance(wrapper, Mapping):
            return _errors(wrapper)
    return ()


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
