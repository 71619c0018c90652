"""Client: the blocking face of AsyncClient, run on the private portal loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import ssl
import threading
import warnings
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

from ._async_client import AsyncClient
from ._constants import (
    DEFAULT_ANSWER_WINDOW,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_KEEPALIVE_TIMEOUT,
    DEFAULT_MAX_RETRIES,
    DEFAULT_POOL_SIZE,
    DEFAULT_TIMEOUT,
)
from ._portal import ABANDONED_AFTER_FORK, PORTAL
from ._retry import RetryPolicy
from .errors import ClientClosedError

__all__ = ("Client",)

P = ParamSpec("P")
T = TypeVar("T")


def _blocking(
    method: Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[Client, P], T]:
    """The blocking twin of an AsyncClient method: same parameters, same docs."""

    @functools.wraps(method)
    def call(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(method, *args, **kwargs)

    call.__qualname__ = f"Client.{method.__name__}"
    return call


class Client:
    """Blocking client for 360dialog's WhatsApp Calling API; the same methods as
    :class:`AsyncClient`, which it runs on one private event-loop thread shared by all clients.

    Safe to share between threads (concurrency is bounded by ``pool_size``), usable inside a
    running event loop such as a notebook (it blocks that loop while it waits, so prefer
    ``AsyncClient`` there), and after ``os.fork()`` in the child. Use it as
    ``with Client(...) as client:`` or call :meth:`close`; closing is idempotent and leaves
    no thread, socket or session behind.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        pool_size: int = DEFAULT_POOL_SIZE,
        keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT,
        answer_window: float = DEFAULT_ANSWER_WINDOW,
        retry_policy: RetryPolicy | None = None,
        ssl_context: ssl.SSLContext | None = None,
        ca_bundle: str | os.PathLike[str] | None = None,
        strict: bool = False,
        log_sdp_addresses: bool = False,
    ):
        self._options: dict[str, Any] = {
            "api_key": api_key,
            "base_url": base_url,
            "timeout": timeout,
            "connect_timeout": connect_timeout,
            "max_retries": max_retries,
            "pool_size": pool_size,
            "keepalive_timeout": keepalive_timeout,
            "answer_window": answer_window,
            "retry_policy": retry_policy,
            "ssl_context": ssl_context,
            "ca_bundle": ca_bundle,
            "strict": strict,
            "log_sdp_addresses": log_sdp_addresses,
        }
        # Built here so bad options fail in the caller's thread; it opens nothing yet.
        self._async = AsyncClient(**self._options)
        self._lock = threading.Lock()
        self._closed = False
        self._generation: int | None = None  # the portal generation we are registered in
        self._warned_running_loop = False
        PORTAL.register(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Client base_url={self._async.base_url!r} {state}>"

    @property
    def base_url(self) -> str:
        return self._async.base_url

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool; the loop thread stops when the last client closes."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            started = self._generation == PORTAL.generation
        if started:
            try:
                PORTAL.run(AsyncClient.aclose, self._async)
            finally:
                PORTAL.release(self)

    def __del__(self) -> None:
        # Best effort for a client that was never closed: never block or join here.
        if getattr(self, "_closed", True) or getattr(self, "_generation", None) is None:
            return
        if self._generation == PORTAL.generation and PORTAL.thread is not None:
            PORTAL.close_soon(self._async.aclose)
            PORTAL.release(self, wait=False)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        if self._generation is not None:
            # The parent's session lives on the parent's loop; build a fresh one here.
            self._generation = None
            ABANDONED_AFTER_FORK.append(self._async)
            self._async = AsyncClient(**self._options)

    def _run(
        self,
        method: Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        PORTAL.refuse_reentry()
        with self._lock:
            if self._closed:
                raise ClientClosedError("this Client is closed; create a new one")
            if self._generation != PORTAL.generation:
                PORTAL.acquire(self)
                self._generation = PORTAL.generation
        if not self._warned_running_loop and _running_loop_in_this_thread():
            self._warned_running_loop = True
            warnings.warn(
                "d360calling.Client blocks the running event loop while it waits; "
                "use AsyncClient in async code",
                RuntimeWarning,
                stacklevel=3,
            )
        try:
            return PORTAL.run(method, self._async, *args, **kwargs)
        except concurrent.futures.CancelledError:
            raise ClientClosedError("the client was closed while this call was in flight") from None

    connect_call = _blocking(AsyncClient.connect_call)
    pre_accept_call = _blocking(AsyncClient.pre_accept_call)
    accept_call = _blocking(AsyncClient.accept_call)
    reject_call = _blocking(AsyncClient.reject_call)
    terminate_call = _blocking(AsyncClient.terminate_call)
    perform_call_action = _blocking(AsyncClient.perform_call_action)
    get_call_permissions = _blocking(AsyncClient.get_call_permissions)
    get_settings = _blocking(AsyncClient.get_settings)
    update_settings = _blocking(AsyncClient.update_settings)


def _running_loop_in_this_thread() -> bool:
    # The non-raising form: this runs on every call, and raising costs more than the check.
    return asyncio._get_running_loop() is not None
