"""Where a call's packets may go: no STUN/TURN unless asked, and host candidates only on the
configured local addresses.

aioice gathers host candidates from its own ``get_host_addresses`` (every interface but
loopback). That function is wrapped once, process-wide, by one that returns the addresses of
the :class:`MediaConfig` in effect for the current task (a context variable), and falls back
to aioice's own when none is: so other aiortc code in the process is unchanged, and two calls
with different addresses gathering at once do not see each other's.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
from collections.abc import Iterator, Sequence
from typing import Any

import aioice.ice
import attrs
from aiortc import RTCConfiguration, RTCIceServer

from ..errors import InvalidRequestError

__all__ = ("DEFAULT_LOCAL_ADDRESSES", "MediaConfig", "gathering_on", "rtc_configuration")

# Loopback only: a default that can never send a packet off the machine. Production bots
# name the interface WhatsApp's media servers can reach (local_addresses=("203.0.113.7",)).
DEFAULT_LOCAL_ADDRESSES: tuple[str, ...] = ("127.0.0.1",)

_addresses: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "d360calling_media_addresses", default=None
)
_original = aioice.ice.get_host_addresses


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    chosen = _addresses.get()
    if chosen is None:
        return _original(use_ipv4, use_ipv6)
    return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]


def _strings(value: Sequence[str]) -> tuple[str, ...]:
    if isinstance(value, str):  # one address, not its characters
        return (value,)
    return tuple(value)


def _check_addresses(_: object, __: object, value: tuple[str, ...]) -> None:
    if not value:
        raise InvalidRequestError("local_addresses must name at least one address")
    for address in value:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise InvalidRequestError(
                f"local_addresses: {address!r} is not an IP address"
            ) from None


def _check_timeout(_: object, attribute: Any, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 3600:
        raise InvalidRequestError(f"{attribute.name} must be a number of seconds in (0, 3600)")


@attrs.frozen
class MediaConfig:
    """How a :class:`~d360calling.media.MediaCall` sets up its media.

    - ``local_addresses``: the addresses offered as ICE host candidates (all of them go in
      the SDP; WhatsApp takes no trickle). Default ``127.0.0.1`` only, which is safe and
      works against the fake; a real call needs an address WhatsApp's servers can reach.
    - ``ice_servers``: STUN/TURN URLs; none by default (WhatsApp is ICE-lite and needs
      none, and aiortc's own default would ask a public STUN server).
    - ``connect_timeout``: how long ICE and DTLS may take to connect before the call is
      given up (rejected, or terminated for a call you placed).
    - ``media_timeout``: a call with no audio received for this long is terminated (the
      real service ends it after 20 s without media, 30 s mid-call).
    """

    local_addresses: tuple[str, ...] = attrs.field(
        default=DEFAULT_LOCAL_ADDRESSES, converter=_strings, validator=_check_addresses
    )
    ice_servers: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    connect_timeout: float = attrs.field(default=10.0, validator=_check_timeout)
    media_timeout: float = attrs.field(default=20.0, validator=_check_timeout)


def rtc_configuration(config: MediaConfig) -> RTCConfiguration:
    # An explicit empty list: RTCConfiguration() alone means Google's public STUN server.
    return RTCConfiguration(iceServers=[RTCIceServer(urls=url) for url in config.ice_servers])


@contextlib.contextmanager
def gathering_on(addresses: Sequence[str]) -> Iterator[None]:
    """Gather host candidates only on ``addresses`` inside the block (this task only)."""
    if aioice.ice.get_host_addresses is not _host_addresses:
        aioice.ice.get_host_addresses = _host_addresses
    token = _addresses.set(tuple(addresses))
    try:
        yield
    finally:
        _addresses.reset(token)
