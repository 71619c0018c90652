"""One HTTP attempt over a pooled aiohttp session: no retries, no models.

The session is created lazily inside the running loop, on first use. An injected session is
never closed by us. aiohttp and asyncio errors never escape: they become APIConnectionError
or APITimeoutError, with ``request_may_have_been_sent`` telling whether the server could
have seen the request (only a connection that was never established, or never free, is
certain not to).

With our own session an attempt first waits for a free slot in the pool (at most
``connect_timeout``), and only then does its ``timeout`` start: time spent queued behind
other requests in this process is not the server being slow, and an attempt that never got
a connection was certainly not sent, so even ``connect`` may retry it.
"""

from __future__ import annotations

import asyncio
import ssl
import sys

import aiohttp
import attrs
import yarl
from multidict import CIMultiDictProxy

from ._constants import API_KEY_HEADER, MAX_REDIRECTS, MAX_RESPONSE_BYTES
from ._version import __version__
from .errors import (
    APIConnectionError,
    APITimeoutError,
    ClientClosedError,
    ClientMisuseError,
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
    builds its own once: the key is per number, the pool may be shared)."""
    headers = {API_KEY_HEADER: api_key, "User-Agent": USER_AGENT, "Accept": "application/json"}
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

    @property
    def closed(self) -> bool:
        return self._closed

    def _session_for_running_loop(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ClientClosedError("this client is closed; create a new one")
        loop = asyncio.get_running_loop()
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._pool_size,
                keepalive_timeout=self._keepalive_timeout,
                ttl_dns_cache=10,
                ssl=self._ssl_context if self._ssl_context is not None else True,
                timeout_ceil_threshold=_NO_CEIL,
            )
            session = aiohttp.ClientSession(connector=connector, trust_env=False)
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
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            for _ in range(MAX_REDIRECTS + 1):
                async with session.request(
                    method,
                    url,
                    data=body,
                    headers=headers,
                    timeout=client_timeout,
                    allow_redirects=False,
                    raise_for_status=False,
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
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            cls = APITimeoutError if isinstance(exc, asyncio.TimeoutError) else APIConnectionError
            raise cls(
                f"could not connect to {self._origin}: {exc}",
                method=method,
                path=path,
                request_may_have_been_sent=False,
            ) from exc
        except asyncio.TimeoutError as exc:
            raise APITimeoutError(
                f"no complete response within {timeout:g} s",
                method=method,
                path=path,
                request_may_have_been_sent=True,
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise APIConnectionError(
                f"connection failed: {type(exc).__name__}: {exc}",
                method=method,
                path=path,
                request_may_have_been_sent=True,
            ) from exc
        finally:
            if slots is not None:
                slots.release()

    async def _wait_for_slot(
        self, slots: asyncio.Semaphore, method: str, path: str, pool_timeout: float | None
    ) -> None:
        wait = self._connect_timeout
        if pool_timeout is not None:
            wait = min(wait, pool_timeout)
        if not await _acquire_within(slots, wait):
            raise APITimeoutError(
                f"no free connection within {wait:g} s: all {self._pool_size} pooled "
                "connections are busy (raise pool_size or send less at once)",
                method=method,
                path=path,
                request_may_have_been_sent=False,
            )

    def _redirect_target(self, resp: aiohttp.ClientResponse, method: str) -> yarl.URL | None:
        """Where to follow ``resp`` to, or ``None`` to hand it back as it is.

        Only redirects within the API's origin are followed, so the API key never goes to
        another host; a POST follows only 307/308, which keep the method and body.
        """
        if method != "GET" and resp.status not in _METHOD_KEEPING_REDIRECTS:
            return None
        location = resp.headers.get("Location")
        if not location:
            return None
        try:
            target = resp.url.join(yarl.URL(location))
        except ValueError:
            return None
        return target if target.origin() == self._origin else None

    async def _read_body(self, resp: aiohttp.ClientResponse, method: str, path: str) -> bytes:
        limit = self._max_response_bytes
        length = resp.content_length
        if length is not None and length <= limit:
            return await resp.read()
        chunks: list[bytes] = []
        size = 0
        if length is None:
            async for chunk in resp.content.iter_any():
                size += len(chunk)
                if size > limit:
                    break
                chunks.append(chunk)
            else:
                return b"".join(chunks)
        raise ResponseDecodeError(
            f"response body larger than {limit} bytes refused",
            status_code=resp.status,
            body=b"".join(chunks)[:1024],
            headers=resp.headers,
            method=method,
            path=path,
        )

    async def aclose(self) -> None:
        """Close the session if we made it; an injected one is left to its owner."""
        if self._closed:
            return
        self._closed = True
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()


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
