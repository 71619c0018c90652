"""Keeping what must not reach a log, a repr or a traceback out of them: the API key, the
credentials an SDP carries, and (by default) its network addresses."""

from __future__ import annotations

import re

__all__ = (
    "REDACTED",
    "Secret",
    "SecretBytes",
    "SecretURL",
    "hide_userinfo",
    "redact_addresses",
    "redact_sdp",
    "redact_sdp_credentials",
)

REDACTED = "<redacted>"


class Secret(str):
    """A ``str`` whose ``repr`` is ``<redacted>``: the API key as it sits in options and request
    headers, so a dict of headers in a frame's locals (what error reporters capture with a
    traceback) or in a log line shows no key. ``str()``, formatting, comparison and the bytes
    on the wire are the key's own."""

    __slots__ = ()

    def __repr__(self) -> str:
        return REDACTED


class SecretBytes(bytes):
    """:class:`Secret` for a secret given as bytes (a webhook signing secret)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return REDACTED


# The userinfo of a URL: from after "scheme://" to the last "@" before any blank. Not only
# to the authority's end (the first "/", "?" or "#"): a password with an unescaped "/" (a
# base64 one) must not show either, and hiding too much of a URL with an "@" in its path is
# the safe mistake. A regex rather than a URL parser, so it never raises.
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)\S*@")


def hide_userinfo(url: str) -> str:
    """``url`` with any ``user:password@`` (or ``token@``) replaced by ``<redacted>@``."""
    return _USERINFO.sub(lambda match: f"{match.group(1)}{REDACTED}@", url, count=1)


class SecretURL(str):
    """A URL ``str`` (a proxy's) whose ``repr`` hides its credentials; otherwise the URL."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str.__repr__(hide_userinfo(self))  # str's own repr: never this one again


# IPv4 dotted quads and IPv6 addresses (at least two colon-separated hex groups and a "::" or
# eight groups), as SDP carries them in o=, c= and a=candidate lines.
_IPV4 = r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])"
_IPV6 = (
    r"(?<![\w:.])(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}(?![\w:])"
    r"|(?<![\w:.])(?:[0-9A-Fa-f]{1,4}:){0,6}(?:[0-9A-Fa-f]{1,4})?::(?:[0-9A-Fa-f]{1,4}:){0,6}"
    r"[0-9A-Fa-f]{0,4}(?![\w:])"
)
_ADDRESS = re.compile(f"{_IPV4}|{_IPV6}")

# The ICE password and username fragment (RFC 8839), the SDES master key and salt after
# "inline:" (RFC 4568, a=crypto) and MIKEY key data (RFC 4567, a=key-mgmt). Each is redacted
# to the end of its line: a CR or LF, or, in an SDP inside a JSON string, the escaped "\r"/"\n"
# or the closing quote. Other escapes ("\/", "\u00..") count as part of the value, so
# nothing of it shows.
_REST_OF_LINE = r'(?:[^\r\n"\\]|\\[^rn])*'
_CREDENTIAL = re.compile(
    rf"(a=ice-pwd:|a=ice-ufrag:|a=key-mgmt:|inline:){_REST_OF_LINE}", re.IGNORECASE
)


def redact_addresses(text: str) -> str:
    """``text`` with every IPv4 and IPv6 address replaced by ``<ip>``."""
    return _ADDRESS.sub("<ip>", text)


def redact_sdp_credentials(text: str) -> str:
    """``text`` with what follows every ``a=ice-pwd:``, ``a=ice-ufrag:``, ``a=key-mgmt:`` and
    ``inline:`` up to the end of its line replaced by ``<redacted>``, in plain SDP or in SDP
    inside a JSON string."""
    return _CREDENTIAL.sub(lambda match: match.group(1) + REDACTED, text)


def redact_sdp(text: str, *, addresses: bool = True) -> str:
    """What the wire log shows of a body: SDP credentials always redacted, addresses too
    unless ``addresses=False``."""
    text = redact_sdp_credentials(text)
    return redact_addresses(text) if addresses else text
