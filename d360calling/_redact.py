"""Keeping what must not reach a log out of it: network addresses in SDPs."""

from __future__ import annotations

import re

__all__ = ("redact_addresses",)

# IPv4 dotted quads and IPv6 addresses (at least two colon-separated hex groups and a "::" or
# eight groups), as SDP carries them in o=, c= and a=candidate lines.
_IPV4 = r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])"
_IPV6 = (
    r"(?<![\w:.])(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}(?![\w:])"
    r"|(?<![\w:.])(?:[0-9A-Fa-f]{1,4}:){0,6}(?:[0-9A-Fa-f]{1,4})?::(?:[0-9A-Fa-f]{1,4}:){0,6}"
    r"[0-9A-Fa-f]{0,4}(?![\w:])"
)
_ADDRESS = re.compile(f"{_IPV4}|{_IPV6}")


def redact_addresses(text: str) -> str:
    """``text`` with every IPv4 and IPv6 address replaced by ``<ip>``."""
    return _ADDRESS.sub("<ip>", text)
