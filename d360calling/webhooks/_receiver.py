"""An aiohttp.web receiver for call webhooks that survives real delivery.

It authenticates, parses, answers 200 at once (so the sender does not time out and deliver
again), then runs the user's callbacks in the background: events of one call in order, calls
in parallel. Duplicates are dropped; a connect that arrives after its call's terminate is not
answered; events older than ``max_age`` are reported as stale instead of acted on.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import TypeVar

from aiohttp import web

from ..errors import WebhookParseError
from ..models.webhooks import (
    CallConnectEvent,
    CallStatusEvent,
    CallTerminateEvent,
    PermissionReplyEvent,
    UnknownEvent,
    WebhookEvent,
)
from ._auth import WebhookAuth
from ._parse import parse_webhook
from ._tracker import CallRecord, CallTracker

__all__ = ("Callback", "StaleCallback", "WebhookReceiver")

_log = logging.getLogger("d360calling.webhooks")

E = TypeVar("E")
K = TypeVar("K", bound=Hashable)

Callback = Callable[[E], Awaitable[None]]
"""An async callback for one kind of event: ``Callback[CallConnectEvent]``."""
StaleCallback = Callable[[WebhookEvent, str], Awaitable[None]]


class WebhookReceiver:
    """Route webhook deliveries to async callbacks.

    ``on_event`` gets every event; the specific callbacks get theirs. ``on_stale(event,
    reason)`` gets events that are not acted on: older than ``max_age`` seconds, or a connect
    whose call already ended. Use :meth:`app` for a ready application, or :meth:`handle` as
    the handler of your own route; call :meth:`close` (the app does it on cleanup).
    """

    def __init__(
        self,
        *,
        on_connect: Callback[CallConnectEvent] | None = None,
        on_status: Callback[CallStatusEvent] | None = None,
        on_terminate: Callback[CallTerminateEvent] | None = None,
        on_permission_reply: Callback[PermissionReplyEvent] | None = None,
        on_unknown: Callback[UnknownEvent] | None = None,
        on_event: Callback[WebhookEvent] | None = None,
        on_stale: StaleCallback | None = None,
        signing_secret: str | bytes | None = None,
        secret_header: tuple[str, str] | None = None,
        max_age: float | None = 300.0,
        tracker: CallTracker | None = None,
        remember: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.auth = WebhookAuth(
            signing_secret=signing_secret,
            header_name=secret_header[0] if secret_header else None,
            header_value=secret_header[1] if secret_header else None,
        )
        self._on_connect = on_connect
        self._on_status = on_status
        self._on_terminate = on_terminate
        self._on_permission_reply = on_permission_reply
        self._on_unknown = on_unknown
        self._on_event = on_event
        self._on_stale = on_stale
        self.max_age = max_age
        self.tracker = tracker if tracker is not None else CallTracker()
        self._clock = clock
        self._remember = remember
        self._seen: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._ended: OrderedDict[str, None] = OrderedDict()  # calls a terminate was seen for
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = {"received": 0, "events": 0, "duplicates": 0, "stale": 0, "refused": 0}

    # -- HTTP ---------------------------------------------------------------------------

    def app(self, path: str = "/webhook") -> web.Application:
        app = web.Application()
        app.router.add_post(path, self.handle)
        app.on_cleanup.append(lambda _: self.close())
        return app

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.stats["received"] += 1
        if self.auth.enabled and not self.auth.check(request.headers, body):
            self.stats["refused"] += 1
            _log.warning("webhook refused: authentication failed (from %s)", request.remote)
            return web.Response(status=401, text="unauthenticated")
        try:
            events = parse_webhook(body)
        except WebhookParseError as exc:
            self.stats["refused"] += 1
            _log.warning("webhook refused: %s", exc)
            return web.Response(status=400, text=str(exc))
        for event in events:
            self._accept(event)
        return web.Response(status=200)

    # -- dispatch -----------------------------------------------------------------------

    def _accept(self, event: WebhookEvent) -> None:
        self.stats["events"] += 1
        key = event.dedupe_key
        if key is not None:
            if key in self._seen:
                self.stats["duplicates"] += 1
                return
            self._remember_key(self._seen, key)
        reason = self._stale_reason(event)
        if isinstance(event, CallTerminateEvent):
            self._remember_key(self._ended, event.call_id)
        task = asyncio.create_task(self._run(event, reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _remember_key(self, memory: OrderedDict[K, None], key: K) -> None:
        memory[key] = None
        if len(memory) > self._remember:
            memory.popitem(last=False)

    def _stale_reason(self, event: WebhookEvent) -> str | None:
        if isinstance(event, CallConnectEvent) and event.call_id in self._ended:
            return "the call already ended (its terminate arrived first)"
        timestamp = event.timestamp
        if self.max_age is not None and timestamp is not None:
            age = self._clock() - timestamp
            if age > self.max_age:
                return f"{age:.0f} s old (max_age {self.max_age:.0f} s)"
        return None

    async def _run(self, event: WebhookEvent, stale: str | None) -> None:
        call_id = getattr(event, "call_id", None)
        lock = None
        if call_id is not None:
            lock = self._locks.get(call_id)
            if lock is None:
                lock = self._locks[call_id] = asyncio.Lock()
        try:
            if lock is None:
                await self._dispatch(event, stale)
            else:
                async with lock:  # one call's events in the order they arrived
                    await self._dispatch(event, stale)
        except Exception:
            _log.exception("webhook callback failed for %s", type(event).__name__)

    async def _dispatch(self, event: WebhookEvent, stale: str | None) -> None:
        await self.tracker.apply(event)
        if stale is not None:
            self.stats["stale"] += 1
            _log.info("webhook event not acted on: %s: %s", type(event).__name__, stale)
            if self._on_stale is not None:
                await self._on_stale(event, stale)
            return
        pending = self._specific_callback(event)
        if pending is not None:
            await pending
        if self._on_event is not None:
            await self._on_event(event)

    def _specific_callback(self, event: WebhookEvent) -> Awaitable[None] | None:
        """The run of the callback for this kind of event, if one was given (exact types, as
        parse_webhook makes them)."""
        if type(event) is CallConnectEvent:
            return None if self._on_connect is None else self._on_connect(event)
        if type(event) is CallStatusEvent:
            return None if self._on_status is None else self._on_status(event)
        if type(event) is CallTerminateEvent:
            return None if self._on_terminate is None else self._on_terminate(event)
        if type(event) is PermissionReplyEvent:
            callback = self._on_permission_reply
            return None if callback is None else callback(event)
        if type(event) is UnknownEvent:
            return None if self._on_unknown is None else self._on_unknown(event)
        return None

    async def call(self, call_id: str) -> CallRecord | None:
        """The tracked state of a call."""
        return await self.tracker.get(call_id)

    async def drain(self) -> None:
        """Wait until every callback started so far has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Let running callbacks finish; idempotent."""
        await self.drain()
