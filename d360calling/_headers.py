"""Reading the response headers the client acts on: Retry-After and the server's request id."""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Mapping

__all__ = ("parse_retry_after", "request_id_from")

# 360dialog documents none; these are what Meta and common proxies send.
_REQUEST_ID_HEADERS = ("x-request-id", "x-fb-request-id", "x-fb-trace-id", "x-amzn-requestid")
# RFC 9110 delay-seconds, plus a fraction: ASCII digits only. Python's float() would also take
# "1_0", "+1", " 1 ", "1e3", "inf", "nan" and non-ASCII digits ("\u0661").
_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)
# Beyond this the value is not a wait anyone means (and parsing it is work for nothing).
_MAX_SECONDS_TEXT = 32
# What of a server's request id goes into errors and log lines.
_REQUEST_ID_MAX = 128


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asks us to wait, or ``None`` when it says nothing usable.

    ``retry-after-ms`` wins over ``retry-after``; the latter may be seconds or an HTTP date.
    Seconds are ASCII digits with an optional fraction, nothing else (no sign, exponent,
    underscore or surrounding space); a date in the past means "now" (0). Anything else is
    ignored, so the default backoff applies. ``headers`` must be case-insensitive (aiohttp's
    are).
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        seconds = _seconds(raw_ms)
        if seconds is not None:
            return seconds / 1000.0
    raw = headers.get("retry-after")
    if raw is None:
        return None
    seconds = _seconds(raw)
    if seconds is not None:
        return seconds
    if len(raw) > 64 or not raw.isascii():  # an HTTP date is 29 ASCII characters
        return None
    try:
        when = email.utils.parsedate_to_datetime(raw.strip())
        if when.tzinfo is None:  # an HTTP date is always GMT
            return None
        current = time.time() if now is None else now
        return max(when.timestamp() - current, 0.0)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _seconds(raw: str) -> float | None:
    if len(raw) > _MAX_SECONDS_TEXT or not _SECONDS.fullmatch(raw):
        return None
    value = float(raw)
    return value if math.isfinite(value) else None


def request_id_from(headers: Mapping[str, str]) -> str | None:
    """The server's id for this request, for logs and support tickets."""
    for name in _REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return _printable(value[:_REQUEST_ID_MAX])
    return None


def _printable(value: str) -> str:
    # Header bytes that are not UTF-8 arrive as lone surrogates; neither they nor control
    # characters belong in a log line.
    return value if value.isprintable() else repr(value)[1:-1]
