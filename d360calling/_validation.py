"""Checks on client configuration, run before anything is sent. Each failure is an
InvalidRequestError. (What goes into a request is checked by the request models themselves.)"""

from __future__ import annotations

import ipaddress
from typing import Any

import yarl

from .errors import InvalidRequestError

__all__ = ("check_base_url",)

_LOOPBACK_NAMES = frozenset({"localhost"})


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name such as 127.0.0.1.evil.example resolves through DNS: not loopback


def check_base_url(value: Any) -> str:
    """HTTPS, or plain HTTP to a loopback host only: the API key must not cross a network
    in clear text."""
    if not isinstance(value, str):
        raise InvalidRequestError(f"base_url must be a str, got {type(value).__name__}")
    try:
        url = yarl.URL(value)
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(f"base_url is not a URL: {value!r:.80}") from exc
    if not url.absolute or not url.host:
        raise InvalidRequestError(f"base_url must be an absolute URL, got {value!r:.80}")
    if url.query_string or url.fragment or url.user or url.password:
        raise InvalidRequestError("base_url must not carry a query, fragment or credentials")
    if url.scheme == "http":
        if not _is_loopback(url.host):
            raise InvalidRequestError(
                "base_url uses plain http:// to a non-loopback host; the API key would be "
                "sent unencrypted. Use https://"
            )
    elif url.scheme != "https":
        raise InvalidRequestError(f"base_url must be https://, got scheme {url.scheme!r}")
    return str(url).rstrip("/")
