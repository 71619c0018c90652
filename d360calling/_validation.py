"""Checks on client configuration, run before anything is sent. Each failure is an
InvalidRequestError. (What goes into a request is checked by the request models themselves.)"""

from __future__ import annotations

import ipaddress
import math
import ssl
from typing import Any

import yarl

from .errors import InvalidRequestError

__all__ = ("check_base_url", "check_proxy", "check_verifying", "finite_float", "is_loopback")

_LOOPBACK_NAMES = frozenset({"localhost"})


def finite_float(value: Any) -> float | None:
    """``value`` as a float if it is a finite int or float (not a bool), else ``None``. An int
    too large for a float is ``None`` too, not an OverflowError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def is_loopback(host: str) -> bool:
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
        if not is_loopback(url.host):
            raise InvalidRequestError(
                "base_url uses plain http:// to a non-loopback host; the API key would be "
                "sent unencrypted. Use https://"
            )
    elif url.scheme != "https":
        raise InvalidRequestError(f"base_url must be https://, got scheme {url.scheme!r}")
    return str(url).rstrip("/")


def check_proxy(value: Any, base_url: str) -> str | None:
    """An HTTP(S) proxy URL (``http://[user:password@]host:port``), or ``None``.

    With an ``https://`` API the proxy only relays an encrypted tunnel (``CONNECT``): it sees
    the API's host and port, never the key. With plain ``http://`` (loopback only) it would
    read the key, so the proxy must then be on loopback too."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequestError(f"proxy must be a str URL, got {type(value).__name__}")
    try:
        url = yarl.URL(value)
    except (TypeError, ValueError):
        raise InvalidRequestError("proxy is not a URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise InvalidRequestError("proxy must be an http:// or https:// URL with a host")
    if url.query_string or url.fragment or url.path not in ("", "/"):
        raise InvalidRequestError("proxy must not carry a path, query or fragment")
    if base_url.startswith("http://") and not is_loopback(url.host):
        raise InvalidRequestError(
            "a plain http:// base_url sends the API key in clear text, so its proxy must be "
            "on loopback too"
        )
    return value


def check_verifying(context: ssl.SSLContext, name: str = "ssl_context") -> ssl.SSLContext:
    """``context`` if it verifies the server's certificate and host name."""
    if context.verify_mode == ssl.CERT_NONE or not context.check_hostname:
        raise InvalidRequestError(
            f"{name} does not verify the server (verify_mode CERT_NONE or check_hostname "
            "False); TLS verification is never off. For a private CA, pass ca_bundle= or a "
            "context with load_verify_locations()"
        )
    return context
