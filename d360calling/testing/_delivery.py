"""How the fake delivers webhooks: one at a time, in order, to the configured URL, with the
configured custom headers and 360dialog's ``x-360dialog-signature``; retried on failure like
the real sender. Tests can hold deliveries and release them reversed or duplicated.

Everything here is bounded, so a receiver that never answers (or a hostile one) cannot hang
the fake or grow it: each attempt ends after ``timeout`` seconds, the receiver's answer body
is not kept, there are ``1 + retries`` attempts with pauses doubling up to
:data:`MAX_RETRY_DELAY`, the log keeps the newest deliveries (:class:`WebhookLog`), and at most
``max_pending`` deliveries wait to be sent: beyond that the oldest waiting one is given up.
"""

from __future__ import annotations

import asyncio
import collections
import json
import math
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import attrs

from ..webhooks._auth import SIGNATURE_HEADER
from ..webhooks._auth import signature as sign
from ._records import DEFAULT_MAX_RECORDED_BYTES, DEFAULT_MAX_RECORDED_WEBHOOKS, RecordLog

__all__ = (
    "MAX_RETRY_DELAY",
    "WebhookDelivery",
    "WebhookLog",
    "WebhookSender",
)

MAX_RETRY_DELAY = 30.0  # seconds: the doubling pause between attempts stops growing here
_CLOSE_WAIT = 5.0  # seconds close() waits for the worker to notice it is closing
_READ_REPLY_UP_TO = 64 * 1024  # a longer (or unsized) answer is not read: only its status counts
Sleep = Callable[[float], Awaitable[None]]


@attrs.define(eq=False)
class WebhookDelivery:
    """One webhook the fake produced. ``status`` is the receiver's HTTP status of the last
    attempt (``None`` while pending, when no URL is set, or when the attempt failed with
    ``error``)."""

    field: str
    payload: dict[str, Any]
    body: bytes
    attempts: int = 0
    status: int | None = None
    error: str | None = None
    delivered: bool = False

    @property
    def value(self) -> dict[str, Any]:
        value: dict[str, Any] = self.payload["entry"][0]["changes"][0]["value"]
        return value


class WebhookLog(RecordLog[WebhookDelivery]):
    """The newest webhooks the fake produced: at most ``maxlen`` of them (``None``: no limit)
    holding at most ``max_bytes`` of bodies. Reads like :class:`RequestLog`."""

    _bound_name = "max_recorded_webhooks"

    def __init__(
        self,
        maxlen: int | None = DEFAULT_MAX_RECORDED_WEBHOOKS,
        max_bytes: int | None = DEFAULT_MAX_RECORDED_BYTES,
    ) -> None:
        super().__init__(maxlen, max_bytes)

    def _size(self, item: WebhookDelivery) -> int:
        # The payload holds the same text again as objects; the body stands for both.
        return len(item.body)


class WebhookSender:
    def __init__(
        self,
        *,
        url: str | None,
        headers: Mapping[str, str] | None,
        signing_secret: str | None,
        retries: int,
        retry_delay: float,
        timeout: float,
        log: WebhookLog | None = None,
        max_pending: int | None = DEFAULT_MAX_RECORDED_WEBHOOKS,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError("webhook_retries must be an integer >= 0")
        if not (isinstance(retry_delay, (int, float)) and 0 <= retry_delay < math.inf):
            raise ValueError("webhook_retry_delay must be a finite number of seconds >= 0")
        if not (isinstance(timeout, (int, float)) and 0 < timeout < math.inf):
            raise ValueError("webhook_timeout must be a finite number of seconds > 0")
        if max_pending is not None and max_pending < 1:
            raise ValueError("max_recorded_webhooks must be >= 1 (or None for no limit)")
        self.url = url
        self.headers = dict(headers or {})
        self.signing_secret = signing_secret
        self.retries = retries
        self.retry_delay = float(retry_delay)
        self.timeout = float(timeout)
        self.log = log if log is not None else WebhookLog()
        self.max_pending = max_pending
        self.sleep = sleep
        self.given_up = 0  # deliveries pushed out of a full queue before they were sent
        self._lock = threading.Lock()
        self._held: list[WebhookDelivery] | None = None
        self._pending = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: collections.deque[WebhookDelivery] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closing = False
        self._session: aiohttp.ClientSession | None = None

    # -- lifecycle (on the server's loop) -----------------------------------------------

    async def start(self) -> None:
        self._closing = False
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        # No proxy from the environment: webhooks go where the test says, nowhere else.
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout), trust_env=False
        )
        self._worker = asyncio.create_task(self._run(), name="d360calling-fake-webhooks")

    async def close(self) -> None:
        # A flag as well as the cancel: Python 3.11's wait_for can swallow a cancellation that
        # lands as the attempt finishes, and the worker would then wait for work forever.
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.wait({self._worker}, timeout=_CLOSE_WAIT)
        if self._session is not None:
            await self._session.close()

    # -- producing ----------------------------------------------------------------------

    def enqueue(self, field: str, payload: dict[str, Any]) -> WebhookDelivery:
        delivery = WebhookDelivery(field, payload, json.dumps(payload).encode())
        with self._lock:
            self.log.append(delivery)
            if self._held is not None:
                self._held.append(delivery)
                return delivery
        self._send_later([delivery])
        return delivery

    def _send_later(self, deliveries: list[WebhookDelivery]) -> None:
        if self.url is None or not deliveries:
            return
        if self._loop is None:
            raise RuntimeError("the fake server is not running")
        with self._lock:
            self._pending += len(deliveries)
        self._loop.call_soon_threadsafe(self._put, deliveries)

    def _put(self, deliveries: list[WebhookDelivery]) -> None:
        """On the loop: queue ``deliveries``, giving up the oldest waiting ones when full."""
        assert self._wakeup is not None
        for delivery in deliveries:
            if self.max_pending is not None and len(self._queue) >= self.max_pending:
                oldest = self._queue.popleft()
                oldest.error = "not sent: more than max_recorded_webhooks were waiting"
                self.given_up += 1
                self._done()
            self._queue.append(delivery)
        self._wakeup.set()

    def _done(self) -> None:
        with self._lock:
            self._pending -= 1

    def hold(self) -> None:
        with self._lock:
            if self._held is None:
                self._held = []

    def release(self, *, reverse: bool = False, duplicate: bool = False) -> list[WebhookDelivery]:
        """Send what was held: in order, reversed, and/or each twice (as a redelivery)."""
        with self._lock:
            held, self._held = self._held or [], None
        order = list(reversed(held)) if reverse else list(held)
        if duplicate:
            order = [d for delivery in order for d in (delivery, self._copy(delivery))]
        self._send_later(order)
        return order

    def redeliver(self, delivery: WebhookDelivery) -> WebhookDelivery:
        """Send ``delivery`` again, as the real sender does after a timeout."""
        again = self._copy(delivery)
        self._send_later([again])
        return again

    def _copy(self, delivery: WebhookDelivery) -> WebhookDelivery:
        again = WebhookDelivery(delivery.field, delivery.payload, delivery.body)
        with self._lock:
            self.log.append(again)
        return again

    # -- sending ------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            while not self._queue and not self._closing:
                self._wakeup.clear()
                await self._wakeup.wait()
            if self._closing:
                return
            delivery = self._queue.popleft()
            try:
                await self._deliver(delivery)
            finally:
                self._done()

    async def _deliver(self, delivery: WebhookDelivery) -> None:
        headers = {"Content-Type": "application/json", **self.headers}
        if self.signing_secret is not None:
            headers[SIGNATURE_HEADER] = sign(self.signing_secret, delivery.body)
        delay = self.retry_delay
        for attempt in range(self.retries + 1):
            url = self.url
            if url is None or self._closing:
                return
            delivery.attempts += 1
            try:
                # The session's total timeout does not cover every wait (closing a request
                # whose body the receiver never reads); this bounds the whole attempt.
                status = await asyncio.wait_for(
                    self._attempt(url, delivery.body, headers), self.timeout
                )
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                # The type and text only: no aiohttp object (it carries our headers) is kept.
                delivery.status, delivery.error = None, f"{type(exc).__name__}: {exc}"[:500]
            else:
                delivery.status, delivery.error = status, None
                if 200 <= status < 300:
                    delivery.delivered = True
                    return
            if attempt < self.retries:
                await self.sleep(delay)
                delay = min(delay * 2, max(MAX_RETRY_DELAY, self.retry_delay))

    async def _attempt(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        assert self._session is not None
        async with self._session.post(
            url, data=body, headers=headers, allow_redirects=False
        ) as reply:
            if reply.content_length is not None and reply.content_length <= _READ_REPLY_UP_TO:
                await reply.read()  # lets the connection be reused
            return reply.status

    # -- waiting ------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        with self._lock:
            return self._pending

    async def drain(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.pending} webhook(s) still undelivered after {timeout} s")
            await asyncio.sleep(0.005)

    def drain_blocking(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.pending} webhook(s) still undelivered after {timeout} s")
            time.sleep(0.005)
