"""Who may post webhooks: 360dialog's ``x-360dialog-signature`` (hex HMAC-SHA256 of the raw
body) and/or a shared-secret header set with the webhook URL. Comparisons are constant-time."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

import attrs

__all__ = ("SIGNATURE_HEADER", "WebhookAuth", "signature", "verify_signature")

SIGNATURE_HEADER = "x-360dialog-signature"


def signature(secret: str | bytes, body: bytes) -> str:
    """The ``x-360dialog-signature`` value for ``body``."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, header: str | None, secret: str | bytes) -> bool:
    """Whether ``header`` is the HMAC-SHA256 of ``body`` (hex, with or without ``sha256=``)."""
    if not header:
        return False
    given = header.strip()
    if given.lower().startswith("sha256="):
        given = given[7:]
    return hmac.compare_digest(given.lower().encode(), signature(secret, body).encode())


@attrs.frozen(kw_only=True)
class WebhookAuth:
    """What a webhook request must carry. With nothing configured every request passes; with
    both, both must match."""

    signing_secret: str | bytes | None = attrs.field(default=None, repr=False)
    header_name: str | None = None
    header_value: str | None = attrs.field(default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        if (self.header_name is None) != (self.header_value is None):
            raise ValueError("give both header_name and header_value, or neither")

    @property
    def enabled(self) -> bool:
        return self.signing_secret is not None or self.header_name is not None

    def check(self, headers: Mapping[str, str], body: bytes) -> bool:
        ok = True
        if self.signing_secret is not None:
            ok &= verify_signature(body, headers.get(SIGNATURE_HEADER), self.signing_secret)
        if self.header_name is not None and self.header_value is not None:
            given = headers.get(self.header_name, "")
            ok &= hmac.compare_digest(given.encode(), self.header_value.encode())
        return ok
