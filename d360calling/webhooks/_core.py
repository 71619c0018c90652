"""The receiver's side that no web framework owns: what a delivery is answered.

A server of any kind (aiohttp, an ASGI server, a framework's route) hands
:meth:`WebhookReceiver.receive <d360calling.webhooks.WebhookReceiver.receive>` the request's
headers and its body, as bytes already read or as the chunks it arrives in, and sends back the
:class:`WebhookReply` it gets. The pieces here are the parts of that which need no receiver:
the reply, the refusals, the bounded body reader and the throttled log.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from types import MappingProxyType
from typing import Final

import attrs
from multidict import CIMultiDict, CIMultiDictProxy

__all__ = ("BodyChunks", "WebhookReply")

_log = logging.getLogger("d360calling.webhooks")

BodyChunks = AsyncIterable[bytes]
"""A request body as it arrives: chunks of bytes, ended when the body is. Raise
:class:`ConnectionError` from it when the client goes away before the end."""

_LOG_INTERVAL: Final = 60.0  # refusals of one kind: one WARNING, then at most one a minute


def _read_only(headers: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(headers))


@attrs.frozen
class WebhookReply:
    """What to answer a webhook request: ``status``, a short plain-text ``text`` (empty on
    200) and ``headers`` (``Retry-After`` on a 503). ``close`` says the request's body was not
    read to its end (it was refused from its headers, or cut off): ``headers`` then carry
    ``Connection: close``, and a server that can should close the connection rather than read
    the rest of the body to find the next request."""

    status: int
    text: str = ""
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_read_only, hash=False)
    close: bool = False

    @property
    def body(self) -> bytes:
        """``text`` encoded as UTF-8 (the ``Content-Type`` is ``text/plain; charset=utf-8``)."""
        return self.text.encode()


class _Refusal(Exception):
    """A request the receiver answers with an error status (never raised to the server)."""

    def __init__(
        self, kind: str, status: int, text: str, detail: str = "", *, unread: bool = False
    ) -> None:
        super().__init__(text)
        self.kind, self.status, self.text, self.detail = kind, status, text, detail
        self.unread = unread  # the body was not read (to its end): the connection is closed


class _Unreadable(Exception):
    """Raised by an adapter's chunks when the server cannot make a body of what arrived (a
    broken chunked encoding, a body shorter than declared): answered 400."""


class _Throttled:
    """A WARNING for the first of a kind of refusal, then at most one per ``interval`` seconds
    that says how many were not logged: an attacker cannot flood the logs."""

    def __init__(self, clock: Callable[[], float], interval: float = _LOG_INTERVAL) -> None:
        self._clock = clock
        self._interval = interval
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def warn(self, kind: str, message: str, *args: object) -> None:
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and 0 <= now - last < self._interval:
            self._skipped[kind] = self._skipped.get(kind, 0) + 1
            return
        skipped = self._skipped.pop(kind, 0)
        self._last[kind] = now
        if skipped:
            message += " (and %d more like it since the last report)"
            args = (*args, skipped)
        _log.warning(message, *args)


def case_insensitive(headers: Mapping[str, str]) -> Mapping[str, str]:
    """``headers`` looked up whatever the case of a name (HTTP's rule), as aiohttp's are."""
    if isinstance(headers, (CIMultiDict, CIMultiDictProxy)):
        return headers
    return CIMultiDict(headers.items())


def content_encoding(headers: Mapping[str, str]) -> str | None:
    """The request's Content-Encoding, unless it is none or ``identity``."""
    encoding = headers.get("Content-Encoding", "").strip().lower()
    return None if encoding in ("", "identity") else encoding


def declared_length(headers: Mapping[str, str]) -> int | None:
    """The Content-Length the request declares (``None``: none, the body is chunked). A
    request with a Transfer-Encoding as well is refused (RFC 9112 6.3: its framing is not
    one thing): otherwise a ``Content-Length: 0`` would reserve nothing of the bodies read at
    once while its chunked body brings up to ``max_body_bytes``."""
    value = headers.get("Content-Length")
    if value is None:
        return None
    if headers.get("Transfer-Encoding") is not None:
        raise _Refusal(
            "invalid",
            400,
            "a request may not carry both Content-Length and Transfer-Encoding",
            unread=True,
        )
    value = value.strip()
    if not value.isascii() or not value.isdigit():
        raise _Refusal(
            "invalid", 400, "the Content-Length is not a number", f"{value!r:.40}", unread=True
        )
    # More digits than any body has (and than int() takes at once: a header may hold
    # thousands) is a body too large, whatever it says exactly.
    return int(value) if len(value) <= 18 else 10**18


async def read_up_to(chunks: BodyChunks, limit: int) -> bytes:
    """The body ``chunks`` make, refused (413) as soon as it would exceed ``limit`` bytes:
    at most ``limit`` bytes are ever held."""
    body = bytearray()
    iterator: AsyncIterator[bytes] = aiter(chunks)
    try:
        async for chunk in iterator:
            if len(body) + len(chunk) > limit:
                raise _Refusal(
                    "too_large", 413, f"the body is larger than {limit} bytes", unread=True
                )
            body += chunk
    except BaseException:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            # An async generator left at a yield (the body was refused) ends here, not later
            # in the garbage collector's hands (where its finally would run on no loop).
            await close()
        raise
    return bytes(body)
