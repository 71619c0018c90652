"""The portal: one private event loop in a daemon thread, shared by every sync Client.

It starts with the first Client that makes a call and stops when the last one closes, so
closing every client leaves no thread behind. Only ``call_soon_threadsafe`` crosses threads.
After ``os.fork()`` the child forgets the parent's loop (without touching it: its sockets
belong to the parent) and starts its own on first use; a child of a uvloop parent restarts
libuv's thread pool at exit (see ``_restart_libuv_pool``) so that it can exit normally. Ctrl-C
in the waiting thread cancels the in-flight task before the KeyboardInterrupt propagates. A
call from the portal's own thread raises at once instead of deadlocking; a call that reaches a
stopping loop is cancelled, never left to run against a closed session.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import contextvars
import os
import socket
import sys
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from .errors import ClientMisuseError

__all__ = ("ABANDONED_AFTER_FORK", "PORTAL", "Portal", "PortalUser")

T = TypeVar("T")

# How long an interrupted or closing caller waits for the task to finish cancelling.
_CANCEL_GRACE = 2.0
# How long a stopping loop lets unfinished tasks (a closing session) end before cancelling them.
_DRAIN = 1.0
_JOIN_TIMEOUT = 5.0
# A waiting caller wakes this often to check the loop thread is alive (Windows: to see Ctrl-C).
_POLL = 0.1 if sys.platform == "win32" else 0.5
# Objects a forked child inherited but must neither use nor finalise (their finalisers would
# touch the parent's loop and sockets); kept alive until the child exits.
ABANDONED_AFTER_FORK: list[object] = []
# False: the portal runs on asyncio's own loop even when uvloop is installed (for tests that
# compare the two; not an API).
USE_UVLOOP = True
# Set once this process, or the parent it was forked from, ran a portal on uvloop: only then
# may libuv's thread pool have been started (and a forked child need it restarted at exit).
_uvloop_used = False
_restart_registered = False


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when it is installed (the ``speedups`` extra): the loop is ours, and on uvloop a
    sync call costs about a quarter less CPU (benchmarks: 135 vs 183 µs per request)."""
    global _uvloop_used
    if USE_UVLOOP:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            _uvloop_used = True
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def _restart_libuv_pool() -> None:
    """At interpreter exit in a forked child: give libuv a thread pool of this process.

    libuv (inside uvloop) joins its worker threads in a C destructor that runs when the process
    exits normally. After fork those threads exist only in the parent, but libuv still counts
    them, and joining them crashes the child (SIGSEGV). libuv does reset its start-once flag in
    the child, so one unit of pool work here starts fresh workers that the destructor can join.
    A numeric getnameinfo is that unit: it goes through the pool and never reaches the network.
    A child that leaves with ``os._exit`` runs neither this nor the destructor.
    """
    try:
        import uvloop
    except ImportError:  # pragma: no cover - only registered after uvloop ran here
        return
    # Exit must go on whatever happens here (no fds left, say): then at worst the old crash.
    with contextlib.suppress(Exception):
        loop = uvloop.new_event_loop()
        try:
            loop.run_until_complete(
                loop.getnameinfo(("127.0.0.1", 0), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)
            )
        finally:
            loop.close()


class PortalUser(Protocol):
    """What the portal needs of a client: a way to close it at interpreter exit."""

    def close(self) -> None: ...

    def _after_fork_in_child(self) -> None: ...


class Portal:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._users: weakref.WeakSet[PortalUser] = weakref.WeakSet()
        # Every client ever made, so a fork can reset their locks.
        self._known: weakref.WeakSet[PortalUser] = weakref.WeakSet()
        self.generation = 0

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def register(self, user: PortalUser) -> None:
        self._known.add(user)

    def acquire(self, user: PortalUser) -> None:
        """Count ``user`` as open; start the loop thread if it is not running."""
        with self._lock:
            self._users.add(user)
            if self._thread is None:
                self._start()

    def release(self, user: PortalUser, *, wait: bool = True) -> None:
        """``user`` has closed; stop the loop thread once nobody uses it (``wait``: and join it)."""
        with self._lock:
            self._users.discard(user)
            if self._users or self._thread is None:
                return
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        assert loop is not None
        loop.call_soon_threadsafe(loop.stop)
        if wait and thread is not threading.current_thread():
            thread.join(_JOIN_TIMEOUT)

    def close_soon(self, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Start ``fn()`` on the loop without waiting for it (for finalisers, which must not
        block); the loop lets it finish before it stops."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(lambda: loop.create_task(fn()))

    def _start(self) -> None:
        loop = _new_loop()
        thread = threading.Thread(
            target=_serve, args=(loop,), name="d360calling-portal", daemon=True
        )
        thread.start()
        self._loop, self._thread = loop, thread

    def refuse_reentry(self) -> None:
        """Waiting for the portal from its own thread would never end: refuse at once."""
        if self._thread is not None and threading.current_thread() is self._thread:
            raise ClientMisuseError(
                "deadlock detected: a blocking d360calling.Client method was called from "
                "the client's own event loop; use AsyncClient there"
            )

    def run(
        self,
        fn: Callable[..., Coroutine[Any, Any, T]],
        /,
        *args: Any,
        **kwargs: Any,
    ) -> T:
        """Run ``fn(*args, **kwargs)`` on the portal loop and wait for its result."""
        self.refuse_reentry()
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            raise concurrent.futures.CancelledError("the portal stopped")
        context = contextvars.copy_context()
        done: concurrent.futures.Future[T] = concurrent.futures.Future()
        task: list[asyncio.Task[T]] = []
        abandoned: list[bool] = []  # a plain flag: only the loop thread reads or sets it

        def start() -> None:
            if abandoned or loop in _STOPPING:
                # Cancelled by the caller, or queued as the last client closed: never start
                # a call against a session that is closing (the caller sees CancelledError).
                done.cancel()
                return
            # The task runs in a copy of the caller's context (logging/tracing context vars).
            try:
                coro = context.run(fn, *args, **kwargs)
                new = _create_task(loop, coro, context)
            except BaseException as exc:  # fn failed before it could be awaited
                done.set_exception(exc)
                return
            new.add_done_callback(lambda t: _transfer(t, done))
            task.append(new)

        def cancel() -> None:
            abandoned.append(True)
            if task:
                task[0].cancel()

        try:
            loop.call_soon_threadsafe(start)
        except RuntimeError:  # closed by a concurrent close()
            raise concurrent.futures.CancelledError("the portal stopped") from None
        try:
            return _wait(done, thread)
        except BaseException:
            if done.done():
                raise  # the call's own outcome
            # Interrupted while waiting (Ctrl-C): cancel the request, then let it propagate.
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(cancel)
            with contextlib.suppress(BaseException):
                done.result(_CANCEL_GRACE)
            raise

    def shutdown(self) -> None:
        """At interpreter exit: close every open client, which stops the loop."""
        for user in list(self._users):
            # Exit must go on whatever one client's close does.
            with contextlib.suppress(Exception):
                user.close()

    def after_fork_in_child(self) -> None:
        global _restart_registered
        # The parent's loop thread does not exist here; its loop and sockets are not ours.
        # Keep the loop referenced so its finaliser never runs here against the parent's state.
        if self._loop is not None:
            ABANDONED_AFTER_FORK.append(self._loop)
        if _uvloop_used and not _restart_registered:
            # Registered here, it runs before the portal's own atexit handler and before the
            # C destructors; a grandchild inherits the registration (hence the flag).
            _restart_registered = True
            atexit.register(_restart_libuv_pool)
        self._lock = threading.Lock()
        self._loop = self._thread = None
        self._users = weakref.WeakSet()
        self.generation += 1
        for user in list(self._known):
            user._after_fork_in_child()


# Loops whose run_forever has returned: calls that reach them are cancelled, not started.
_STOPPING: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        _STOPPING.add(loop)
        try:
            pending = asyncio.all_tasks(loop)
            if pending:
                # Let a session that is closing finish; cancel whatever is still running.
                loop.run_until_complete(asyncio.wait(pending, timeout=_DRAIN))
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


if sys.version_info >= (3, 11):

    def _create_task(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], context: contextvars.Context
    ) -> asyncio.Task[T]:
        return loop.create_task(coro, context=context)

else:  # pragma: no cover - Python 3.10

    def _create_task(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], context: contextvars.Context
    ) -> asyncio.Task[T]:
        return context.run(loop.create_task, coro)


def _transfer(task: asyncio.Task[T], done: concurrent.futures.Future[T]) -> None:
    if task.cancelled():
        done.cancel()
        return
    exc = task.exception()
    if exc is not None:
        done.set_exception(exc)
    else:
        done.set_result(task.result())


def _wait(done: concurrent.futures.Future[T], thread: threading.Thread) -> T:
    """Wait for ``done``; if the loop thread stops first (a concurrent close), raise
    CancelledError instead of waiting forever."""
    while True:
        try:
            return done.result(_POLL)
        except concurrent.futures.TimeoutError:
            if done.done():
                raise  # the call's own TimeoutError
            if not thread.is_alive():
                raise concurrent.futures.CancelledError("the portal stopped") from None


PORTAL = Portal()
atexit.register(PORTAL.shutdown)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=PORTAL.after_fork_in_child)
