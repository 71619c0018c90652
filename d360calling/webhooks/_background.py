"""The blocking form of the receiver's workflow: a :class:`WebhookReceiver` served on its own
event-loop thread, with blocking ``wait_for_permission`` and ``place_call`` for code that
uses the sync :class:`~d360calling.Client`."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import TypeVar

from aiohttp import web

from .._sync_client import Client
from ..errors import ClientClosedError, ClientMisuseError, InvalidRequestError
from ..models.calls import CallRecording, CallTranscription
from ._outbound import (
    CallAnswer,
    CallOutcome,
    OutboundCall,
    OutboundCallState,
    ThreadedClientActions,
)
from ._receiver import WebhookReceiver, _connect_options
from ._waiters import PermissionWaitResult, check_timeout

__all__ = ("BackgroundReceiver", "SyncOutboundCall")

_log = logging.getLogger("d360calling.webhooks")

T = TypeVar("T")


class BackgroundReceiver:
    """Serve ``receiver`` at ``http://host:port/webhook`` on an event loop in a background
    thread, for blocking code::

        with BackgroundReceiver(receiver) as served:
            fake_or_360dialog.webhook_url = served.url
            result = served.wait_for_permission(user, timeout=600, message_id=sent.message_id)
            call = served.place_call(client, user, sdp=offer, ringing_timeout=45)
            answer = call.answered()
            ...
            call.hangup()

    ``port=0`` picks a free port (``url`` tells it). Starting waits at most
    ``start_timeout`` seconds, stopping at most ``stop_timeout`` (the receiver's
    :meth:`~WebhookReceiver.close` with that timeout: waits still blocked end with
    :class:`~d360calling.ClientClosedError`). The receiver's callbacks run on that thread's
    loop; while it is served here, use its workflow through this object, not directly.
    Stopping closes the receiver: serve a new one to start again.
    """

    def __init__(
        self,
        receiver: WebhookReceiver,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        path: str = "/webhook",
        start_timeout: float = 30.0,
        stop_timeout: float = 30.0,
    ) -> None:
        if not isinstance(receiver, WebhookReceiver):
            raise InvalidRequestError("receiver must be a WebhookReceiver")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise InvalidRequestError(f"port must be an int in 0..65535, got {port!r:.20}")
        if not isinstance(path, str) or not path.startswith("/"):
            raise InvalidRequestError("path must start with '/'")
        self.receiver = receiver
        self.host = host
        self.port = port
        self.path = path
        self.start_timeout = _positive("start_timeout", start_timeout)
        self.stop_timeout = _positive("stop_timeout", stop_timeout)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = "serving" if self._runner is not None else "stopped"
        return f"<BackgroundReceiver {self.host}:{self.port}{self.path} {state}>"

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Where the receiver is served, e.g. ``http://127.0.0.1:54321/webhook``."""
        if self._runner is None:
            raise ClientMisuseError("the BackgroundReceiver is not running")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.path}"

    def start(self) -> BackgroundReceiver:
        with self._lock:
            if self._thread is not None:
                raise ClientMisuseError("the BackgroundReceiver is running already")
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="d360calling-webhook-receiver", daemon=True
            )
            thread.start()
            self._loop, self._thread = loop, thread
        future = asyncio.run_coroutine_threadsafe(self._serve(), loop)
        try:
            future.result(self.start_timeout)
        except BaseException:
            future.cancel()
            self._stop_loop()
            raise
        return self

    async def _serve(self) -> None:
        app = self.receiver.app(self.path)
        # Open requests get a short grace at shutdown; the receiver's close bounds the rest.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self.port = int(runner.addresses[0][1])
        self._runner = runner

    def stop(self) -> None:
        """Stop serving, end the waits still blocked (``ClientClosedError``), stop the
        thread; idempotent, and bounded by ``stop_timeout``."""
        with self._lock:
            loop = self._loop
            if loop is None or self._thread is None:
                return
        if threading.current_thread() is self._thread:
            raise ClientMisuseError("stop() cannot be called from the receiver's own thread")
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        try:
            future.result(self.stop_timeout + 5.0)
        except concurrent.futures.TimeoutError:
            future.cancel()
            _log.warning("the webhook receiver did not stop within %g s", self.stop_timeout)
        finally:
            self._stop_loop()

    async def _shutdown(self) -> None:
        await self.receiver.close(timeout=self.stop_timeout)
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        # The worker threads a sync Client's requests ran in (asyncio.to_thread).
        await asyncio.get_running_loop().shutdown_default_executor()

    def _stop_loop(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
            self._runner = None
        if loop is None or thread is None:
            return

        def cancel_all() -> None:
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.call_soon(loop.stop)  # after the cancelled tasks had a step to unwind

        loop.call_soon_threadsafe(cancel_all)
        thread.join(self.stop_timeout)
        if not thread.is_alive():
            loop.close()

    def __enter__(self) -> BackgroundReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the workflow, blocking ---------------------------------------------------------

    def run(self, coroutine: Coroutine[object, object, T]) -> T:
        """Run ``coroutine`` on the receiver's loop and block until it is done (if the
        calling thread is interrupted, the coroutine is cancelled)."""
        loop = self._loop
        if loop is None or self._runner is None:
            coroutine.close()
            raise ClientClosedError("the BackgroundReceiver is not running")
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise ClientMisuseError(
                "a blocking BackgroundReceiver method was called on the receiver's own "
                "thread (from a callback?): await the receiver's own method there"
            )
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise ClientClosedError("the BackgroundReceiver stopped while waiting") from None
        except BaseException:
            future.cancel()
            raise

    def wait_for_permission(
        self, user: str, *, timeout: float | None, message_id: str | None = None
    ) -> PermissionWaitResult:
        """Blocking :meth:`WebhookReceiver.wait_for_permission`."""
        return self.run(
            self.receiver.wait_for_permission(user, timeout=timeout, message_id=message_id)
        )

    def place_call(
        self,
        client: Client,
        to: str | None = None,
        sdp: str | None = None,
        *,
        recipient: str | None = None,
        ringing_timeout: float | None = 60.0,
        biz_opaque_callback_data: str | None = None,
        recording: CallRecording | None = None,
        transcription: CallTranscription | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> SyncOutboundCall:
        """Blocking :meth:`WebhookReceiver.place_call` with a sync ``Client`` (its requests
        run in a worker thread, so webhooks keep being served meanwhile)."""
        options = _connect_options(
            biz_opaque_callback_data=biz_opaque_callback_data,
            recording=recording,
            transcription=transcription,
            timeout=timeout,
            max_retries=max_retries,
        )
        actions = ThreadedClientActions(client)
        call = self.run(
            self.receiver._place_call(actions, to, sdp, recipient, ringing_timeout, options)
        )
        return SyncOutboundCall(self, call)


class SyncOutboundCall:
    """The blocking face of an :class:`OutboundCall`: the same attributes and methods,
    blocking until done."""

    def __init__(self, background: BackgroundReceiver, call: OutboundCall) -> None:
        self._background = background
        self.call = call

    def __repr__(self) -> str:
        return f"<SyncOutboundCall {self.call_id} {self.state}>"

    @property
    def call_id(self) -> str:
        return self.call.call_id

    @property
    def user(self) -> str:
        return self.call.user

    @property
    def state(self) -> OutboundCallState:
        return self.call.state

    @property
    def outcome(self) -> CallOutcome | None:
        return self.call.outcome

    @property
    def answer(self) -> CallAnswer | None:
        return self.call.answer

    def answered(self, timeout: float | None = None) -> CallAnswer:
        """Blocking :meth:`OutboundCall.answered`."""
        check_timeout("timeout", timeout)
        return self._background.run(self.call.answered(timeout))

    def ended(self, timeout: float | None = None) -> CallOutcome:
        """Blocking :meth:`OutboundCall.ended`."""
        check_timeout("timeout", timeout)
        return self._background.run(self.call.ended(timeout))

    def hangup(self) -> None:
        """Blocking :meth:`OutboundCall.hangup`."""
        self._background.run(self.call.hangup())


def _positive(name: str, value: object) -> float:
    seconds = check_timeout(name, value, allow_none=False)
    if not seconds:
        raise InvalidRequestError(f"{name} must be positive")
    return seconds
