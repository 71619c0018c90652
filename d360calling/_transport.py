"""One HTTP attempt over a pooled aiohttp session: no retries, no models.

The session is created lazily inside the running loop, on first use. An injected session is
never closed by us. aiohttp and asyncio errors never escape: they become APIConnectionError
or APITimeoutError, with ``request_may_have_been_sent`` telling whether the server could
have seen the request (only a connection that was never established, or never free, is
certain not to). A request the client's closing cut short, or that found it closed after
waiting for a slot, is ClientClosedError. No mapped error keeps the aiohttp exception: those
carry the request's headers, so the API key; its class and text are kept as ``cause``.

With our own session an attempt first waits for a free slot in the pool (at most
``connect_timeout``), and only then does its ``timeout`` start: time spent queued behind
other requests in this process is not the server being slow, and an attempt that never got
a connection was certainly not sent, so even ``connect`` may retry it.

Responses are read with aiohttp's decompression off: we ask for ``identity``, and a server
that compresses anyway (gzip or deflate) is inflated here, only as far as the size cap, so
the cap is on what is kept in memory whatever the body's encoded size.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import ssl
import sys
import zlib
from collections.abc import Mapping

import aiohttp
import attrs
import yarl
from multidict import CIMultiDictProxy

from ._constants import API_KEY_HEADER, MAX_REDIRECTS, MAX_RESPONSE_BYTES
from ._redact import REDACTED, Secret
from ._validation import check_verifying
from ._version import __version__
from .errors import (
    APIConnectionError,
    APITimeoutError,
    ClientClosedError,
    ClientMisuseError,
    D360Error,
    ResponseDecodeError,
)

__all__ = ("AsyncTransport", "RawResponse", "request_headers")

USER_AGENT = f"d360calling/{__version__}"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Redirects that keep the method and body; others would turn a POST into a GET.
_METHOD_KEEPING_REDIRECTS = frozenset({307, 308})
# aiohttp rounds timeouts of 5 s and more up to whole seconds; we want them exact.
_NO_CEIL = 1e9
_MAX_CACHED_URLS = 256
# What a body refused for its size keeps of its start, for a look at what it was.
_REFUSED_BODY_KEPT = 1024
# The text of an underlying error kept in a message.
_CAUSE_MAX = 300
_GZIP = frozenset({"gzip", "x-gzip"})


@attrs.frozen(kw_only=True)
class RawResponse:
    """What came back from one attempt, before any decoding."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    method: str
    path: str
    elapsed: float


def request_headers(api_key: str) -> tuple[dict[str, str], dict[str, str]]:
    """The headers of a request without and with a JSON body, for one API key (each client
    builds its own once: the key is per number, the pool may be shared). The key is a
    :class:`Secret`, so a repr of these dicts (a traceback's locals) does not show it."""
    headers = {
        API_KEY_HEADER: api_key if isinstance(api_key, Secret) else Secret(api_key),
        "User-Agent": USER_AGENT,
        "Accept": "application/json",
        # The answers are a few KB: compression saves nothing and would let a small body
        # inflate past the size cap (a server that compresses anyway is inflated by us).
        "Accept-Encoding": "identity",
    }
    return headers, {**headers, "Content-Type": "application/json"}


class AsyncTransport:
    def __init__(
        self,
        *,
        base_url: str,
        connect_timeout: float,
        pool_size: int,
        keepalive_timeout: float,
        ssl_context: ssl.SSLContext | None,
        session: aiohttp.ClientSession | None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        proxy: str | None = None,
        trust_env: bool = False,
    ):
        self._base_url = base_url
        self._origin = yarl.URL(base_url).origin()
        self._connect_timeout = connect_timeout
        self._pool_size = pool_size
        self._keepalive_timeout = keepalive_timeout
        self._ssl_context = ssl_context
        self._session = session
        self._owns_session = session is None
        self._loop: asyncio.AbstractEventLoop | None = None
        # One slot per pooled connection, so aiohttp's own pool never queues (its wait would
        # count against the attempt's timeout); only with a session we made and sized.
        self._slots: asyncio.Semaphore | None = None
        self._closed = False
        self._max_response_bytes = max_response_bytes
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self._urls: dict[str, yarl.URL] = {}
        # Credentials in the proxy URL travel as a Proxy-Authorization header we build, never
        # in the URL aiohttp gets: its errors show that URL (so a 407 would show them).
        self._proxy, proxy_auth, self._secrets = _proxy_parts(proxy)
        self._proxy_headers: dict[str, str] | None = None
        self._forward_headers: dict[str, str] | None = None
        if proxy_auth is not None:
            if self._origin.scheme == "https":
                self._proxy_headers = {"Proxy-Authorization": proxy_auth}  # on the CONNECT
            else:  # a plain-http proxy reads the request itself: the header goes with it
                self._forward_headers = {"Proxy-Authorization": proxy_auth}
        # The environment's proxies only for https: over plain http (loopback) a proxy from
        # the environment would read the key.
        self._trust_env = trust_env and self._origin.scheme == "https"

    @property
    def closed(self) -> bool:
        return self._closed

    def _session_for_running_loop(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ClientClosedError("this client is closed; create a new one")
        loop = asyncio.get_running_loop()
        if self._session is None:
            context = self._ssl_context
            connector = aiohttp.TCPConnector(
                limit=self._pool_size,
                keepalive_timeout=self._keepalive_timeout,
                ttl_dns_cache=10,
                ssl=check_verifying(context) if context is not None else True,
                timeout_ceil_threshold=_NO_CEIL,
            )
            session = aiohttp.ClientSession(connector=connector, trust_env=self._trust_env)
            # aiohttp resends a GET once, out of sight, when its connection breaks
            # (aio-libs/aiohttp#10790): our retry loop must be the only one, or attempts,
            # backoff and the one log line per attempt stop being true. aiohttp's own test
            # client turns it off the same way; there is no public switch.
            if hasattr(session, "_retry_connection"):
                session._retry_connection = False
            self._session = session
            self._slots = asyncio.Semaphore(self._pool_size)
            self._loop = loop
        elif self._session.closed:
            raise ClientClosedError("the aiohttp session given to this client has been closed")
        elif self._loop is None:
            self._loop = loop
        elif self._loop is not loop and self._owns_session:
            # aiohttp sessions are bound to the loop that made them; using one elsewhere
            # fails later in confusing ways.
            raise ClientMisuseError(
                "this AsyncClient is bound to the event loop it first ran on; "
                "create one client per event loop (or use the sync Client)"
            )
        return self._session

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(
                total=seconds,
                connect=min(self._connect_timeout, seconds),
                ceil_threshold=_NO_CEIL,
            )
            if len(self._timeouts) < 64:
                self._timeouts[seconds] = timeout
        return timeout

    async def send(
        self,
        method: str,
        path: str,
        body: bytes | None,
        *,
        headers: dict[str, str],
        timeout: float,
        pool_timeout: float | None = None,
    ) -> RawResponse:
        """Make one attempt; follow redirects only within the API's own origin.

        The wait for a free connection is bounded by ``connect_timeout`` and, if given, by
        ``pool_timeout``; ``timeout`` bounds the attempt itself, from when it has one."""
        session = self._session_for_running_loop()
        if self._forward_headers is not None:
            headers = {**headers, **self._forward_headers}
        client_timeout = self._timeout(timeout)
        url = self._urls.get(path)
        if url is None:
            url = yarl.URL(self._base_url + path, encoded=True)
            if len(self._urls) >= _MAX_CACHED_URLS:
                self._urls.clear()  # permission paths vary by user: keep the memo bounded
            self._urls[path] = url
        slots = self._slots
        if slots is not None:
            if slots.locked():
                await self._wait_for_slot(slots, method, path, pool_timeout)
            else:
                await slots.acquire()  # free: taken without suspending
        failure: D360Error
        try:
            if self._closed or session.closed:
                # Closed while this call waited for a slot: it was never sent.
                failure = self._closed_error(method, path, sent=False)
            else:
                return await self._exchange(
                    session, method, path, url, body, headers, client_timeout
                )
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            cls = APITimeoutError if isinstance(exc, asyncio.TimeoutError) else APIConnectionError
            failure = cls(
                f"could not connect to {self._origin}: "
                f"{connect_failure_reason(exc) or self._describe(exc, headers)}",
                method=method,
                path=path,
                request_may_have_been_sent=False,
                cause=self._cause(exc, headers),
            )
        except aiohttp.ClientHttpProxyError as exc:
            # The proxy refused the CONNECT tunnel: nothing reached the API.
            failure = APIConnectionError(
                f"the proxy refused a tunnel to {self._origin}: {self._describe(exc, headers)}",
                method=method,
                path=path,
                request_may_have_been_sent=False,
                cause=self._cause(exc, headers),
            )
        except asyncio.TimeoutError as exc:
            failure = APITimeoutError(
                f"no complete response within {timeout:g} s",
                method=method,
                path=path,
                request_may_have_been_sent=True,
                cause=self._cause(exc, headers),
            )
        except (aiohttp.ClientError, OSError) as exc:
            cause = self._cause(exc, headers)
            failure = APIConnectionError(
                f"connection failed: {cause}",
                method=method,
                path=path,
                request_may_have_been_sent=True,
                cause=cause,
            )
        except RuntimeError as exc:
            if session.closed or self._closed:
                # aiohttp's "Session is closed", when it was closed under a request in flight.
                failure = self._closed_error(method, path, sent=True)
            else:  # e.g. "Event loop is closed": still a typed error, never a bare one
                cause = self._cause(exc, headers)
                failure = APIConnectionError(
                    f"the request failed: {cause}",
                    method=method,
                    path=path,
                    request_may_have_been_sent=True,
                    cause=cause,
                )
        finally:
            if slots is not None:
                slots.release()
        if isinstance(failure, APIConnectionError) and (self._closed or session.closed):
            # The close cut this request short: that, not the network, is what happened.
            failure = self._closed_error(method, path, sent=True)
        # Raised here, outside the except blocks, so the aiohttp exception is not even the
        # implicit __context__ (it holds the request headers).
        raise failure

    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        method: str,
        path: str,
        url: yarl.URL,
        body: bytes | None,
        headers: dict[str, str],
        client_timeout: aiohttp.ClientTimeout,
    ) -> RawResponse:
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(MAX_REDIRECTS + 1):
            async with session.request(
                method,
                url,
                data=body,
                headers=headers,
                timeout=client_timeout,
                allow_redirects=False,
                raise_for_status=False,
                auto_decompress=False,
                proxy=self._proxy,
                proxy_headers=self._proxy_headers,
            ) as resp:
                next_url = (
                    self._redirect_target(resp, method) if resp.status in _REDIRECTS else None
                )
                if next_url is None:
                    data = await self._read_body(resp, method, path)
                    return RawResponse(
                        status=resp.status,
                        headers=resp.headers,
                        body=data,
                        method=method,
                        path=path,
                        elapsed=loop.time() - started,
                    )
            url = next_url
        raise APIConnectionError(
            f"more than {MAX_REDIRECTS} redirects",
            method=method,
            path=path,
            request_may_have_been_sent=True,
        )

    def _closed_error(self, method: str, path: str, *, sent: bool) -> ClientClosedError:
        what = "this client was closed" if self._closed else "its aiohttp session was closed"
        if sent:
            return ClientClosedError(
                f"{what} while {method} {path} was in flight; it may have reached the server"
            )
        return ClientClosedError(f"{what} while {method} {path} waited for a connection")

    async def _wait_for_slot(
        self, slots: asyncio.Semaphore, method: str, path: str, pool_timeout: float | None
    ) -> None:
        wait = self._connect_timeout
        if pool_timeout is not None:
            wait = min(wait, pool_timeout)
        if not await _acquire_within(slots, wait):
            if self._closed:
                raise self._closed_error(method, path, sent=False)
            raise APITimeoutError(
                f"no free connection within {wait:g} s: all {self._pool_size} pooled "
                "connections are busy (raise pool_size or send less at once)",
                method=method,
                path=path,
                request_may_have_been_sent=False,
            )

    def _redirect_target(self, resp: aiohttp.ClientResponse, method: str) -> yarl.URL | None:
        """Where to follow ``resp`` to, or ``None`` to hand it back as it is (it then becomes
        an APIStatusError: "redirect to ... not followed").

        Only redirects within the API's origin are followed, so the API key never goes to
        another host; a POST follows only 307/308, which keep the method and body. A
        ``Location`` that is not an http(s) reference with a host (``mailto:``, ``about:blank``,
        ``urn:``, ``//``, control characters, a bad port) is not followed.
        """
        if method != "GET" and resp.status not in _METHOD_KEEPING_REDIRECTS:
            return None
        location = resp.headers.get("Location")
        if not location or not location.isascii() or not location.isprintable():
            return None
        try:
            reference = yarl.URL(location)
            if (reference.scheme or location.startswith("//")) and not reference.host:
                return None  # a scheme or an authority, but no host to go to
            target = resp.url.join(reference)
            origin = target.origin()
        except (ValueError, TypeError):  # UnicodeError is a ValueError
            return None
        return target if origin == self._origin else None

    async def _read_body(self, resp: aiohttp.ClientResponse, method: str, path: str) -> bytes:
        """The body, decoded, refused past the size cap. The cap counts decoded bytes, and
        reading stops at it: neither a long nor a compressed body is ever held whole."""
        limit = self._max_response_bytes
        length = resp.content_length
        try:
            inflater = _Inflater.for_encoding(resp.headers.get("Content-Encoding"))
        except _Undecodable as exc:
            raise self._refused(resp, method, path, str(exc), b"") from None
        if length is not None and length > limit:
            raise self._too_large(resp, method, path, b"")
        if inflater is None and length is not None:
            return await resp.read()  # exactly `length` bytes, within the cap
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_any():
            if inflater is not None:
                try:
                    chunk = inflater.inflate(chunk, limit - size)
                except _Undecodable as exc:
                    raise self._refused(resp, method, path, str(exc), b"") from None
            size += len(chunk)
            if size > limit:  # keep a look at its start (bounded by _refused)
                raise self._too_large(resp, method, path, chunks[0] if chunks else chunk)
            chunks.append(chunk)
        if inflater is not None and not inflater.complete:
            raise self._refused(resp, method, path, "the compressed body is truncated", b"")
        return b"".join(chunks)

    def _too_large(
        self, resp: aiohttp.ClientResponse, method: str, path: str, start: bytes
    ) -> ResponseDecodeError:
        return self._refused(
            resp,
            method,
            path,
            f"response body larger than {self._max_response_bytes} bytes (decoded) refused",
            start,
        )

    def _refused(
        self, resp: aiohttp.ClientResponse, method: str, path: str, message: str, start: bytes
    ) -> ResponseDecodeError:
        return ResponseDecodeError(
            message,
            status_code=resp.status,
            body=start[:_REFUSED_BODY_KEPT],
            headers=resp.headers,
            method=method,
            path=path,
        )

    def _describe(self, exc: BaseException, headers: Mapping[str, str]) -> str:
        """The text of ``exc``, bounded, with any secret header value and the proxy's
        credentials in it redacted."""
        text = str(exc)
        for value in headers.values():
            if isinstance(value, Secret) and value:
                text = text.replace(value, REDACTED)
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text if len(text) <= _CAUSE_MAX else text[: _CAUSE_MAX - 1] + "…"

    def _cause(self, exc: BaseException, headers: Mapping[str, str]) -> str:
        text = self._describe(exc, headers)
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

    async def aclose(self) -> None:
        """Close the session if we made it; an injected one is left to its owner. Calls
        waiting for a pooled connection then get ClientClosedError, as do calls in flight."""
        if self._closed:
            return
        self._closed = True
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()


def os_error_reason(error: BaseException) -> str | None:
    """What went wrong, once, e.g. ``connection refused``: the text of an :class:`OSError`'s
    errno (asyncio's own text repeats the address), a DNS failure's own; ``None`` when there
    is no short reason (an SSL error, "Multiple exceptions: ...")."""
    if not isinstance(error, OSError) or isinstance(error, ssl.SSLError):
        return None
    if isinstance(error, socket.gaierror):
        return error.strerror or None
    if isinstance(error.errno, int) and error.errno > 0:
        text = os.strerror(error.errno)
        if not text.startswith("Unknown error"):
            return text[:1].lower() + text[1:]  # a new string each time, as asyncio words it
    return error.strerror or None


def connect_failure_reason(error: BaseException) -> str | None:
    """The short reason an aiohttp connection could not be made (:func:`os_error_reason` of
    the OSError underneath), or ``None`` where aiohttp's own text says more: a certificate or
    SSL failure, or a proxy that could not be reached (the text names the proxy)."""
    if not isinstance(error, aiohttp.ClientConnectorError) or isinstance(
        error, (aiohttp.ClientSSLError, aiohttp.ClientProxyConnectionError)
    ):
        return None
    return os_error_reason(error.os_error)


class _Undecodable(Exception):
    """A Content-Encoding we cannot or will not decode, or a body that does not decode."""


class _Inflater:
    """Incremental gzip/deflate decoding that never yields more than it is given room for."""

    def __init__(self, coding: str):
        self._coding = coding
        self._zlib: zlib._Decompress | None = None

    @classmethod
    def for_encoding(cls, header: str | None) -> _Inflater | None:
        codings = [c.strip().lower() for c in (header or "").split(",")]
        codings = [c for c in codings if c and c != "identity"]
        if not codings:
            return None
        if len(codings) == 1 and (codings[0] in _GZIP or codings[0] == "deflate"):
            return cls(codings[0])
        raise _Undecodable(
            f"response encoded as {header!r:.60}, which the client did not ask for "
            "(it asks for identity) and does not decode"
        )

    @property
    def complete(self) -> bool:
        return self._zlib is None or self._zlib.eof

    def inflate(self, data: bytes, room: int) -> bytes:
        """Decode ``data``; at most ``room + 1`` bytes come back (more than ``room`` means the
        body is over the cap; decoding stops there)."""
        if not data:
            return b""
        decoder = self._zlib
        if decoder is None:
            if self._coding in _GZIP:
                wbits = 16 + zlib.MAX_WBITS
            else:  # deflate: zlib-wrapped as specified, or raw as some servers send it
                wbits = zlib.MAX_WBITS if data[0] & 0x0F == 8 else -zlib.MAX_WBITS
            decoder = self._zlib = zlib.decompressobj(wbits)
        if decoder.eof:
            raise _Undecodable("data after the end of the compressed body")
        try:
            # Output short of max_length means all input was used: nothing is left pending.
            out = decoder.decompress(data, room + 1)
        except zlib.error:
            raise _Undecodable(f"the {self._coding} body cannot be decoded") from None
        if decoder.unused_data:
            raise _Undecodable("data after the end of the compressed body")
        return out


# Credentials shorter than this are not replaced wherever they occur in an error's text (a
# one-letter user would blank every such letter); whole as "user:password" they still are.
_MIN_SCRUBBED = 4


def _proxy_parts(proxy: str | None) -> tuple[yarl.URL | None, Secret | None, tuple[str, ...]]:
    """The proxy URL without its credentials, the ``Proxy-Authorization`` value they make
    (Basic, as aiohttp would send them), and what of them an error's text must not show,
    longest first."""
    if proxy is None:
        return None, None, ()
    url = yarl.URL(proxy)
    if url.raw_user is None and url.raw_password is None:
        return url, None, ()
    user, password = url.user or "", url.password or ""
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    pieces = {f"{url.raw_user or ''}:{url.raw_password or ''}", f"{user}:{password}", token}
    # The password alone; the user alone only when there is no password (then it is the
    # credential, a token): a plain user name is not secret, and may be a common word.
    alone = (password, url.raw_password or "") if password else (user, url.raw_user or "")
    pieces.update(piece for piece in alone if len(piece) >= _MIN_SCRUBBED)
    secrets = tuple(sorted(pieces - {":"}, key=len, reverse=True))
    return url.with_user(None).with_password(None), Secret(f"Basic {token}"), secrets


if sys.version_info >= (3, 11):

    async def _acquire_within(slots: asyncio.Semaphore, seconds: float) -> bool:
        try:
            async with asyncio.timeout(seconds):
                await slots.acquire()
        except TimeoutError:
            return False
        return True

else:  # pragma: no cover - Python 3.10

    async def _acquire_within(slots: asyncio.Semaphore, seconds: float) -> bool:
        try:
            await asyncio.wait_for(slots.acquire(), seconds)
        except asyncio.TimeoutError:
            return False
        return True
