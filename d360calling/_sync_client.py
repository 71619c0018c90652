"""Client: the blocking face of AsyncClient, run on the private portal loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
import warnings
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from ._async_client import AsyncClient
from ._options import ClientOptions, hide_secrets
from ._portal import ABANDONED_AFTER_FORK, PORTAL
from .errors import ClientClosedError

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._options import ClientOptionChanges

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

    Each method blocks until the AsyncClient method of the same name is done, and takes the
    same arguments, returns the same result and raises the same errors. Ctrl-C cancels the
    request in flight; calling a client from its own loop thread (say, in a callback that
    runs there) raises instead of deadlocking.

    Args:
        options: All the settings at once; keywords given too change those.
        **changes: Settings by name (``api_key=``, ``timeout=``...): the fields of
            :class:`ClientOptions`.

    Raises:
        InvalidRequestError: A setting is not valid, or no API key was given and
            ``D360_API_KEY`` is not set.
    """

    def __init__(
        self,
        *,
        options: ClientOptions | None = None,
        **changes: Unpack[ClientOptionChanges],
    ):
        hide_secrets(changes)  # this frame's locals show in a traceback if the next line fails
        # Built here so bad options fail in the caller's thread; it opens nothing yet.
        self._async = AsyncClient(options=options, **changes)
        self._parent: Client | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._generation: int | None = None  # the portal generation we are registered in
        self._warned_running_loop = False
        PORTAL.register(self)

    def with_options(self, **changes: Unpack[ClientOptionChanges]) -> Client:
        """A client with ``changes`` to this one's settings, on this client's connection pool
        (see :meth:`AsyncClient.with_options`). Closing it does nothing; closing this client
        closes the pool for both.

        Args:
            **changes: Settings by name, as for the constructor.

        Returns:
            The new client, sharing this one's connections.

        Raises:
            InvalidRequestError: A setting is not valid, or belongs to the pool and cannot
                change here (``base_url``, ``pool_size``, ``connect_timeout``,
                ``keepalive_timeout``, TLS, proxy).
        """
        hide_secrets(changes)  # first: this frame's locals show if with_options() fails
        derived = object.__new__(Client)
        derived._async = self._async.with_options(**changes)
        derived._parent = self._parent or self
        derived._closed = False
        derived._warned_running_loop = False
        return derived

    @property
    def options(self) -> ClientOptions:
        """This client's settings."""
        return self._async.options

    def __repr__(self) -> str:
        # Also for a Client whose __init__ or with_options() failed: a traceback captured
        # with its locals calls repr() on it.
        inner = getattr(self, "_async", None)
        if inner is None:
            return "<Client (not constructed)>"
        state = "closed" if getattr(self, "_closed", False) else "open"
        return f"<Client base_url={inner.base_url!r} {state}>"

    @property
    def base_url(self) -> str:
        """The API's base URL (``options.base_url``)."""
        return self._async.base_url

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called on this client."""
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
        """Close the connection pool; the loop thread stops when the last client closes.
        On a client made by :meth:`with_options` it only stops this client's use. Safe to
        call twice; the client cannot be used afterwards (``ClientClosedError``)."""
        if self._parent is not None:
            self._closed = True
            return
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
        if (
            getattr(self, "_parent", None) is not None
            or getattr(self, "_closed", True)
            or getattr(self, "_generation", None) is None
        ):
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
            self._async = AsyncClient(options=self._async.options)

    def _enter_portal(self) -> None:
        with self._lock:
            if self._closed:
                raise ClientClosedError("this Client is closed; create a new one")
            if self._generation != PORTAL.generation:
                PORTAL.acquire(self)
                self._generation = PORTAL.generation

    def _run(
        self,
        method: Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        PORTAL.refuse_reentry()
        parent = self._parent
        if parent is not None:
            if self._closed:
                raise ClientClosedError("this Client is closed; create a new one")
            parent._enter_portal()
            if parent._async._transport is not self._async._transport:  # rebuilt after a fork
                self._async = parent._async._sharing_pool(self._async.options)
        else:
            self._enter_portal()
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
    can_call = _blocking(AsyncClient.can_call)
    get_settings = _blocking(AsyncClient.get_settings)
    update_settings = _blocking(AsyncClient.update_settings)
    update_call_hours = _blocking(AsyncClient.update_call_hours)
    send_call_permission_request = _blocking(AsyncClient.send_call_permission_request)
    send_call_permission_template = _blocking(AsyncClient.send_call_permission_template)
    send_call_button = _blocking(AsyncClient.send_call_button)
    send_message = _blocking(AsyncClient.send_message)


def _running_loop_in_this_thread() -> bool:
    # The non-raising form: this runs on every call, and raising costs more than the check.
    return asyncio._get_running_loop() is not None
