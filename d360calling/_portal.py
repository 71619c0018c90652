"""The portal: one private event loop in a daemon thread, shared by every sync Client.

It starts with the first Client that makes a call and stops when the last one closes, so
closing every client leaves no thread behind. Only ``call_soon_threadsafe`` crosses threads.
After ``os.fork()`` the child forgets the parent's loop (without touching it: its sockets
belong to the parent) and starts its own on first use. Ctrl-C in the waiting thread cancels
the in-flight task before the KeyboardInterrupt propagates. A call from the portal's own
thread raises at once instead of deadlocking.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import contextvars
import os
import sys
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

__all__ = ("PORTAL", "Portal", "PortalUser")

T = TypeVar("T")

# How long an interrupted or closing caller waits for the task to finish cancelling.
_CANCEL_GRACE = 2.0
_JOIN_TIMEOUT = 5.0
# Windows cannot interrupt a blocking wait with Ctrl-C; poll there.
_POLL = 0.1 if sys.platform == "win32" else None


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

    def release(self, user: PortalUser) -> None:
        """``user`` has closed; stop the loop thread once nobody uses it."""
        with self._lock:
            self._users.discard(user)
            if self._users or self._thread is None:
                return
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        assert loop is not None
        loop.call_soon_threadsafe(loop.stop)
        if thread is not threading.current_thread():
            thread.join(_JOIN_TIMEOUT)

    def _start(self) -> None:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=_serve, args=(loop,), name="d360calling-portal", daemon=True
        )
        thread.start()
        self._loop, self._thread = loop, thread

    def run(
        self,
        fn: Callable[..., Coroutine[Any, Any, T]],
        /,
        *args: Any,
        **kwargs: Any,
    ) -> T:
        """Run ``fn(*args, **kwargs)`` on the portal loop and wait for its result."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            raise RuntimeError("the portal is not running")
        if threading.current_thread() is thread:
            raise RuntimeError(
                "deadlock detected: a blocking d360calling.Client method was called from "
                "the client's own event loop; use AsyncClient there"
            )
        context = contextvars.copy_context()
        done: concurrent.futures.Future[T] = concurrent.futures.Future()
        task: list[asyncio.Task[T]] = []
        abandoned = threading.Event()

        def start() -> None:
            if abandoned.is_set():
                done.cancel()
                return
            # The task runs in a copy of the caller's context (logging/tracing context vars).
            new = context.run(loop.create_task, fn(*args, **kwargs))
            new.add_done_callback(lambda t: _transfer(t, done))
            task.append(new)

        def cancel() -> None:
            abandoned.set()
            if task:
                task[0].cancel()

        loop.call_soon_threadsafe(start)
        try:
            return _wait(done)
        except BaseException:
            if done.done():
                raise  # the call's own outcome
            # Interrupted while waiting (Ctrl-C): cancel the request, then let it propagate.
            loop.call_soon_threadsafe(cancel)
            with contextlib.suppress(BaseException):
                _wait(done, _CANCEL_GRACE)
            raise

    def shutdown(self) -> None:
        """At interpreter exit: close every open client, which stops the loop."""
        for user in list(self._users):
            # Exit must go on whatever one client's close does.
            with contextlib.suppress(Exception):
                user.close()

    def after_fork_in_child(self) -> None:
        # The parent's loop thread does not exist here; its loop and sockets are not ours.
        self._lock = threading.Lock()
        self._loop = self._thread = None
        self._users = weakref.WeakSet()
        self.generation += 1
        for user in list(self._known):
            user._after_fork_in_child()


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        try:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _transfer(task: asyncio.Task[T], done: concurrent.futures.Future[T]) -> None:
    if task.cancelled():
        done.cancel()
        return
    exc = task.exception()
    if exc is not None:
        done.set_exception(exc)
    else:
        done.set_result(task.result())


def _wait(done: concurrent.futures.Future[T], timeout: float | None = None) -> T:
    if _POLL is None or timeout is not None:
        return done.result(timeout)
    while True:  # pragma: no cover - Windows only
        try:
            return done.result(_POLL)
        except concurrent.futures.TimeoutError:
            if done.done():
                raise


PORTAL = Portal()
atexit.register(PORTAL.shutdown)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=PORTAL.after_fork_in_child)
