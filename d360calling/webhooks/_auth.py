"""Who may post webhooks: 360dialog's ``x-360dialog-signature`` (hex HMAC-SHA256 of the raw
body) and/or a shared-secret header set with the webhook URL. Comparisons are constant-time
and on bytes, so a header with any byte in it is a plain mismatch (401), never an error."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping

import attrs

from ..errors import InvalidRequestError

__all__ = ("SIGNATURE_HEADER", "WebhookAuth", "signature", "verify_signature")

SIGNATURE_HEADER = "x-360dialog-signature"

# RFC 9110: a field name is a token; a value that must match exactly has no surrounding
# whitespace (servers strip it) and only visible ASCII (what every proxy passes unchanged).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VISIBLE = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")


def signature(secret: str | bytes, body: bytes) -> str:
    """The ``x-360dialog-signature`` value for ``body``."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, header: str | None, secret: str | bytes) -> bool:
    """Whether ``header`` is the HMAC-SHA256 of ``body`` (hex, with or without ``sha256=``).

    An empty ``secret`` raises :class:`~d360calling.InvalidRequestError`: anyone can compute
    a signature with it."""
    _check_secret(secret)
    if not header:
        return False
    given = _raw(header).strip()
    if given[:7].lower() == b"sha256=":
        given = given[7:]
    return hmac.compare_digest(given.lower(), signature(secret, body).encode())


def _raw(value: str) -> bytes:
    # Never raises, whatever the str holds (aiohttp may hand over undecodable bytes as lone
    # surrogates); non-ASCII then simply does not match, and compare_digest on bytes never
    # raises (on str it does, for non-ASCII).
    return value.encode("utf-8", "surrogatepass")


def _check_secret(secret: object) -> None:
    if not isinstance(secret, (str, bytes)):
        raise InvalidRequestError(
            f"signing_secret must be a str or bytes, got {type(secret).__name__}"
        )
    if not secret.strip():
        raise InvalidRequestError("signing_secret is empty: anyone could sign a webhook with it")


@attrs.frozen(kw_only=True)
class WebhookAuth:
    """What a webhook request must carry. With nothing configured every request passes; with
    both, both must match. An empty secret, or a header name or value that cannot travel in
    HTTP unchanged, raises :class:`~d360calling.InvalidRequestError`."""

    signing_secret: str | bytes | None = attrs.field(default=None, repr=False)
    header_name: str | None = None
    header_value: str | None = attrs.field(default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        if (self.header_name is None) != (self.header_value is None):
            raise InvalidRequestError("give both header_name and header_value, or neither")
        if self.signing_secret is not None:
            _check_secret(self.signing_secret)
        if self.header_name is not None:
            if not isinstance(self.header_name, str) or not _TOKEN.fullmatch(self.header_name):
                raise InvalidRequestError(
                    f"the secret header's name must be an HTTP header name, got "
                    f"{self.header_name!r:.60}"
                )
            if self.header_name.lower() == SIGNATURE_HEADER:
                raise InvalidRequestError(
                    f"the secret header cannot be {SIGNATURE_HEADER} (use signing_secret=)"
                )
        if self.header_value is not None and (
            not isinstance(self.header_value, str) or not _VISIBLE.fullmatch(self.header_value)
        ):
            # The value is a secret: say what is wrong with it, never what it is.
            raise InvalidRequestError(
                "the secret header's value must be non-empty visible ASCII without surrounding "
                "spaces"
            )

    @property
    def enabled(self) -> bool:
        return self.signing_secret is not None or self.header_name is not None

    def check_header(self, headers: Mapping[str, str]) -> bool:
        """Whether the shared-secret header matches (``True`` when none is configured): what
        can be decided before the body is read."""
        if self.header_name is None or self.header_value is None:
            return True
        given = _raw(headers.get(self.header_name, ""))
        return hmac.compare_digest(given, self.header_value.encode())

    def check(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Whether the request carries everything configured: the signature of ``body`` and
        the shared-secret header."""
        ok = self.check_header(headers)
        if self.signing_secret is not None:
            ok &= verify_signature(body, headers.get(SIGNATURE_HEADER), self.signing_secret)
        return ok
