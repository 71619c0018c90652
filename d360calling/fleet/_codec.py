"""Call records as :class:`~d360calling.fleet.RedisState` keeps them: JSON with a format
version. Decoding is strict: a value that is not a record of this version (another program's,
a corrupt one) is ``None``, and the state treats it as absent."""

from __future__ import annotations

from typing import Any, Final

from .._json import JSONDecodeError, dumps, loads
from ..models.webhooks import WebhookError
from ..webhooks import CallRecord

__all__ = ("FORMAT", "decode_record", "encode_record")

FORMAT: Final = 1
"""The record format's version (also in every key, after the prefix)."""

_TEXT_FIELDS: Final = (
    "call_id",
    "state",
    "direction",
    "user",
    "user_id",
    "end_status",
    "biz_opaque_callback_data",
)
_INT_FIELDS: Final = ("started_at", "answered_at", "ended_at", "duration")
_ERROR_TEXTS: Final = ("message", "title", "href")
_STATES: Final = frozenset({"ringing", "answered", "ended"})


def encode_record(record: CallRecord) -> bytes:
    value: dict[str, Any] = {"v": FORMAT}
    for name in (*_TEXT_FIELDS, *_INT_FIELDS):
        field = getattr(record, name)
        if field is not None:
            value[name] = field
    if record.events:
        value["events"] = list(record.events)
    if record.errors:
        value["errors"] = [_encode_error(error) for error in record.errors]
    return dumps(value)


def _encode_error(error: WebhookError) -> dict[str, Any]:
    value: dict[str, Any] = {"code": error.code}
    for name in _ERROR_TEXTS:
        text = getattr(error, name)
        if text is not None:
            value[name] = text
    if error.details is not None:
        value["details"] = error.details
    return value


def decode_record(data: bytes, call_id: str) -> CallRecord | None:
    """The record in ``data`` if it is one of ours for ``call_id``, else ``None``."""
    try:
        value = loads(data)
    except (JSONDecodeError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(value, dict) or value.get("v") != FORMAT or value.get("call_id") != call_id:
        return None
    fields: dict[str, Any] = {}
    for name in _TEXT_FIELDS:
        text = value.get(name)
        if text is not None and not isinstance(text, str):
            return None
        fields[name] = text
    for name in _INT_FIELDS:
        number = value.get(name)
        if number is not None and (not isinstance(number, int) or isinstance(number, bool)):
            return None
        fields[name] = number
    if fields["state"] not in _STATES:
        return None
    events = value.get("events", [])
    if not isinstance(events, list) or not all(isinstance(label, str) for label in events):
        return None
    errors = value.get("errors", [])
    if not isinstance(errors, list):
        return None
    decoded: list[WebhookError] = []
    for raw in errors:
        error = _decode_error(raw)
        if error is None:
            return None
        decoded.append(error)
    return CallRecord(**fields, events=tuple(events), errors=tuple(decoded))


def _decode_error(raw: object) -> WebhookError | None:
    if not isinstance(raw, dict):
        return None
    code = raw.get("code")
    if code is not None and (not isinstance(code, int) or isinstance(code, bool)):
        return None
    texts: dict[str, str | None] = {}
    for name in (*_ERROR_TEXTS, "details"):
        text = raw.get(name)
        if text is not None and not isinstance(text, str):
            return None
        texts[name] = text
    details = texts.pop("details")
    return WebhookError(
        code=code,
        error_data=None if details is None else {"details": details},
        **texts,
    )
