"""Reading the response headers the client acts on: Retry-After and the server's request id."""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping

__all__ = ("parse_retry_after", "request_id_from")

# 360dialog documents none; these are what Meta and common proxies send.
_REQUEST_ID_HEADERS = ("x-request-id", "x-fb-request-id", "x-fb-trace-id", "x-amzn-requestid")


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asks us to wait, or ``None`` when it says nothing usable.

    ``retry-after-ms`` wins over ``retry-after``; the latter may be seconds or an HTTP date.
    A date in the past means "now" (0). Values that are not finite are ignored.
    ``headers`` must be case-insensitive (aiohttp's are).
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        seconds = _finite(raw_ms)
        if seconds is not None:
            return max(seconds / 1000.0, 0.0)
    raw = headers.get("retry-after")
    if raw is None:
        return None
    seconds = _finite(raw)
    if seconds is not None:
        return max(seconds, 0.0)
    try:
        when = email.utils.parsedate_to_datetime(raw.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        return None
    current = time.time() if now is None else now
    return max(when.timestamp() - current, 0.0)


def _finite(raw: str) -> float | None:
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def request_id_from(headers: Mapping[str, str]) -> str | None:
    """The server's id for this request, for logs and support tickets."""
    for name in _REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None
