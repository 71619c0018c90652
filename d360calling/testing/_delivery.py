"""How the fake delivers webhooks: one at a time, in order, to the configured URL, with the
configured custom headers and 360dialog's ``x-360dialog-signature``; retried on failure like
the real sender. Tests can hold deliveries and release them reversed or duplicated."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import attrs

from ..webhooks._auth import SIGNATURE_HEADER
from ..webhooks._auth import signature as sign

__all__ = (
    "WebhookDelivery",
    "WebhookSender",
)


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
    ) -> None:
        self.url = url
        self.headers = dict(headers or {})
        self.signing_secret = signing_secret
        self.retries = retries
        self.retry_delay = retry_delay
        self.timeout = timeout
        self.log: list[WebhookDelivery] = []
        self._lock = threading.Lock()
        self._held: list[WebhookDelivery] | None = None
        self._pending = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[WebhookDelivery] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    # -- lifecycle (on the server's loop) -----------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        self._worker = asyncio.create_task(self._run(), name="d360calling-fake-webhooks")

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
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
        if self._loop is None or self._queue is None:
            raise RuntimeError("the fake server is not running")
        with self._lock:
            self._pending += len(deliveries)
        queue = self._queue
        for delivery in deliveries:
            self._loop.call_soon_threadsafe(queue.put_nowait, delivery)

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
        assert self._queue is not None
        while True:
            delivery = await self._queue.get()
            try:
                await self._deliver(delivery)
            finally:
                with self._lock:
                    self._pending -= 1

    async def _deliver(self, delivery: WebhookDelivery) -> None:
        assert self._session is not None
        headers = {"Content-Type": "application/json", **self.headers}
        if self.signing_secret is not None:
            headers[SIGNATURE_HEADER] = sign(self.signing_secret, delivery.body)
        delay = self.retry_delay
        for attempt in range(self.retries + 1):
            delivery.attempts += 1
            url = self.url
            if url is None:
                return
            try:
                async with self._session.post(url, data=delivery.body, headers=headers) as reply:
                    await reply.read()
                    delivery.status, delivery.error = reply.status, None
                    if 200 <= reply.status < 300:
                        delivery.delivered = True
                        return
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                delivery.status, delivery.error = None, f"{type(exc).__name__}: {exc}"
            if attempt < self.retries:
                await asyncio.sleep(delay)
                delay *= 2

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
