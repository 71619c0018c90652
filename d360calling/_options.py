"""ClientOptions: every setting of a client, validated once, shared by both clients, the CLI
and the fake's client factories."""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import attrs

from ._constants import (
    API_KEY_ENV,
    BASE_URL_ENV,
    DEFAULT_ANSWER_WINDOW,
    DEFAULT_BASE_URL,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_KEEPALIVE_TIMEOUT,
    DEFAULT_MAX_RETRIES,
    DEFAULT_POOL_SIZE,
    DEFAULT_TIMEOUT,
    MAX_RETRIES_LIMIT,
)
from ._redact import Secret, SecretURL
from ._retry import RetryPolicy
from ._validation import check_base_url, check_proxy, check_verifying, finite_float
from .errors import InvalidRequestError
from .sdp import SdpCheck

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = (
    "ClientOptionChanges",
    "ClientOptions",
    "check_max_retries",
    "check_seconds",
    "hide_secrets",
)


def check_seconds(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequestError(f"{name} must be a number of seconds, got {value!r:.40}")
    seconds = finite_float(value)
    if seconds is None or seconds <= 0:
        raise InvalidRequestError(f"{name} must be a positive, finite number of seconds")
    return seconds


def check_max_retries(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestError(f"max_retries must be an int, got {value!r:.40}")
    if not 0 <= value <= MAX_RETRIES_LIMIT:
        raise InvalidRequestError(f"max_retries must be between 0 and {MAX_RETRIES_LIMIT}")
    return value


def hide_secrets(changes: Mapping[str, Any]) -> None:
    """Wrap a given ``api_key`` in :class:`Secret` and ``proxy`` in :class:`SecretURL` in
    place, so the frames an error passes through (a traceback with locals) show
    ``<redacted>`` for the key and for the proxy's credentials. First thing, before any
    check can fail with them in a frame."""
    key = changes.get("api_key")
    if isinstance(key, str) and type(key) is not Secret:
        changes["api_key"] = Secret(key)  # type: ignore[index]
    proxy = changes.get("proxy")
    if isinstance(proxy, str) and type(proxy) is not SecretURL:
        changes["proxy"] = SecretURL(proxy)  # type: ignore[index]


def _api_key(value: str | None) -> str:
    if value is None:
        value = os.environ.get(API_KEY_ENV)
    if isinstance(value, str) and type(value) is not Secret:
        value = Secret(value)  # before a check fails with the key in this frame's locals
    if not value:
        raise InvalidRequestError(f"no API key: pass api_key= or set {API_KEY_ENV}")
    if not isinstance(value, str) or not value.isprintable() or value.strip() != value:
        raise InvalidRequestError("api_key must be a printable str without surrounding spaces")
    if not value.isascii():  # a header value; aiohttp would fail on it only when sending
        raise InvalidRequestError("api_key must be ASCII")
    return value


def _base_url(value: str | None) -> str:
    return check_base_url(value or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL)


# One typed converter per field, so type checkers see what each constructor argument takes.
def _timeout(value: float) -> float:
    return check_seconds(value, "timeout")


def _connect_timeout(value: float) -> float:
    return check_seconds(value, "connect_timeout")


def _keepalive_timeout(value: float) -> float:
    return check_seconds(value, "keepalive_timeout")


def _answer_window(value: float) -> float:
    return check_seconds(value, "answer_window")


def _max_retries(value: int) -> int:
    return check_max_retries(value)


# Far above what one process can hold open (each is a socket); a bound, not a tuning value.
_MAX_POOL_SIZE = 10_000


def _pool_size(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_POOL_SIZE:
        raise InvalidRequestError(f"pool_size must be an int from 1 to {_MAX_POOL_SIZE}")
    return value


def _retry_policy(value: RetryPolicy | None) -> RetryPolicy:
    if value is None:
        return RetryPolicy()
    if not isinstance(value, RetryPolicy):
        raise InvalidRequestError(f"retry_policy must be a RetryPolicy, got {value!r:.40}")
    return value


def _ssl_context(value: ssl.SSLContext | None) -> ssl.SSLContext | None:
    if value is None:
        return None
    if not isinstance(value, ssl.SSLContext):
        raise InvalidRequestError("ssl_context must be an ssl.SSLContext")
    return check_verifying(value)


def _ca_bundle(value: str | os.PathLike[str] | None) -> str | None:
    if value is None:
        return None
    try:
        path = os.fspath(value)
    except TypeError:
        raise InvalidRequestError(f"ca_bundle must be a path, got {value!r:.40}") from None
    if not path or "\0" in str(path):  # "" would silently mean the system's CAs
        raise InvalidRequestError(f"ca_bundle must be a path to a PEM file, got {value!r:.40}")
    return path


def _flag(value: bool, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequestError(f"{name} must be True or False, got {value!r:.40}")
    return value


def _strict(value: bool) -> bool:
    return _flag(value, "strict")


def _log_sdp_addresses(value: bool) -> bool:
    return _flag(value, "log_sdp_addresses")


def _trust_env(value: bool) -> bool:
    return _flag(value, "trust_env")


def _sdp_check(value: SdpCheck | str) -> SdpCheck:
    try:
        return SdpCheck(value)
    except (ValueError, TypeError):
        raise InvalidRequestError(
            f"sdp_check must be 'off', 'warn' or 'refuse', got {value!r:.40}"
        ) from None


def _proxy(value: str | None) -> str | None:
    # A proxy URL may carry the proxy's credentials (a user, a password, or a token as the
    # user): its repr hides them. Anything else is left for check_proxy to refuse.
    return SecretURL(value) if isinstance(value, str) else value


@attrs.frozen(kw_only=True, repr=False, init=False)
class ClientOptions:
    """Every setting of an :class:`AsyncClient` or :class:`Client`, checked when it is made.

    ``api_key`` falls back to the ``D360_API_KEY`` environment variable and ``base_url`` to
    ``D360_BASE_URL``, then to ``https://waba-v2.360dialog.io`` (plain ``http://`` only to a
    loopback address). ``connect_timeout`` bounds the wait for a free pooled connection and,
    separately, opening one; ``timeout`` bounds one attempt once it has its connection.
    ``max_retries`` retries follow ``retry_policy``; answer-side actions stop retrying
    ``answer_window`` seconds after the call unless given a ``deadline``. TLS is always
    verified, against the system's CAs, the PEM file ``ca_bundle`` or ``ssl_context``.
    ``strict=True`` makes unknown keys in responses an error (for tests that watch for API
    drift); ``log_sdp_addresses=True`` stops redacting IP addresses in the wire log (ICE
    credentials and SRTP keys are redacted from it always). ``sdp_check`` says what to do
    with an SDP that WhatsApp would refuse or whose media would fail (see
    :func:`d360calling.sdp.check`) before ``connect``, ``pre_accept`` or ``accept`` sends it:
    ``"warn"`` (the default) warns with :class:`~d360calling.SdpWarning` and sends it,
    ``"refuse"`` raises :class:`~d360calling.InvalidRequestError` and sends nothing, ``"off"``
    sends it unchecked.

    ``proxy`` sends every request through an HTTP proxy, ``http://[user:password@]host:port``
    (or ``https://``; credentials go to the proxy as ``Proxy-Authorization``). With the default
    ``https://`` API the proxy relays a ``CONNECT`` tunnel and sees only the API's host and
    port, never the key; a plain ``http://`` base_url (loopback only) takes a loopback proxy
    only. ``trust_env=True`` reads ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` (and
    ``~/.netrc``) as aiohttp does, for an ``https://`` base_url; it is off by default, so the
    environment changes nothing unless asked. An explicit ``proxy`` wins over the environment.
    Both belong to the connection pool (not changeable in ``with_options``) and do not apply
    to an injected ``session``, which keeps its own settings.

    Every number is checked when the options are made: seconds must be finite and positive
    (no NaN, infinity or bool); counts are ints, not bools.

    ``options.evolve(timeout=3)`` returns a copy with changes, checked the same way.
    """

    api_key: str = attrs.field(default=None, converter=_api_key, repr=False)
    base_url: str = attrs.field(default=None, converter=_base_url)
    timeout: float = attrs.field(default=DEFAULT_TIMEOUT, converter=_timeout)
    connect_timeout: float = attrs.field(
        default=DEFAULT_CONNECT_TIMEOUT, converter=_connect_timeout
    )
    max_retries: int = attrs.field(default=DEFAULT_MAX_RETRIES, converter=_max_retries)
    pool_size: int = attrs.field(default=DEFAULT_POOL_SIZE, converter=_pool_size)
    keepalive_timeout: float = attrs.field(
        default=DEFAULT_KEEPALIVE_TIMEOUT, converter=_keepalive_timeout
    )
    answer_window: float = attrs.field(default=DEFAULT_ANSWER_WINDOW, converter=_answer_window)
    retry_policy: RetryPolicy = attrs.field(default=None, converter=_retry_policy)
    ssl_context: ssl.SSLContext | None = attrs.field(default=None, converter=_ssl_context, eq=False)
    ca_bundle: str | None = attrs.field(default=None, converter=_ca_bundle)
    strict: bool = attrs.field(default=False, converter=_strict)
    log_sdp_addresses: bool = attrs.field(default=False, converter=_log_sdp_addresses)
    proxy: str | None = attrs.field(default=None, converter=_proxy)
    trust_env: bool = attrs.field(default=False, converter=_trust_env)
    sdp_check: SdpCheck = attrs.field(default=SdpCheck.WARN, converter=_sdp_check)

    def __init__(self, **changes: Unpack[ClientOptionChanges]) -> None:
        # The secrets are hidden before attrs' __init__ runs: a traceback captured with its
        # locals shows that frame's arguments.
        hide_secrets(changes)
        self.__attrs_init__(**changes)

    def __attrs_post_init__(self) -> None:
        if self.ssl_context is not None and self.ca_bundle is not None:
            raise InvalidRequestError("give ssl_context or ca_bundle, not both")
        # Checked against base_url, so after both are set (evolve() runs this again).
        check_proxy(self.proxy, self.base_url)

    def __repr__(self) -> str:
        # attrs' repr, but one that also works on options whose __init__ failed halfway (a
        # traceback captured with its locals calls repr() on them).
        shown = []
        for field in attrs.fields(ClientOptions):
            value = getattr(self, field.name, attrs.NOTHING)
            if field.repr is False or value is attrs.NOTHING:
                continue
            text = field.repr(value) if callable(field.repr) else repr(value)
            shown.append(f"{field.name}={text}")
        return f"ClientOptions({', '.join(shown)})"

    def evolve(self, **changes: Unpack[ClientOptionChanges]) -> ClientOptions:
        """A copy with ``changes`` applied (the same names as the constructor's)."""
        hide_secrets(changes)  # first: the checks below may fail with it in this frame
        unknown = set(changes) - _FIELD_NAMES
        if unknown:
            raise InvalidRequestError(f"unknown client option(s): {', '.join(sorted(unknown))}")
        given: dict[str, Any] = dict(changes)  # typed by the constructor's signature
        return attrs.evolve(self, **given)

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context connections use: ``ssl_context``, one built from ``ca_bundle``, or
        ``None`` for the system's defaults."""
        if self.ca_bundle is None:
            # Checked again: an SSLContext can be changed after it was given.
            return None if self.ssl_context is None else check_verifying(self.ssl_context)
        try:
            return ssl.create_default_context(cafile=self.ca_bundle)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise InvalidRequestError(
                f"ca_bundle {self.ca_bundle!r:.80} cannot be loaded: {exc}"
            ) from None


class ClientOptionChanges(TypedDict, total=False):
    """The keyword spelling of :class:`ClientOptions`, for ``Client(**options)``-style calls
    and :meth:`AsyncClient.with_options`."""

    api_key: str | None
    base_url: str | None
    timeout: float
    connect_timeout: float
    max_retries: int
    pool_size: int
    keepalive_timeout: float
    answer_window: float
    retry_policy: RetryPolicy | None
    ssl_context: ssl.SSLContext | None
    ca_bundle: str | os.PathLike[str] | None
    strict: bool
    log_sdp_addresses: bool
    proxy: str | None
    trust_env: bool
    sdp_check: SdpCheck | Literal["off", "warn", "refuse"]


_FIELD_NAMES = frozenset(field.name for field in attrs.fields(ClientOptions))
