"""How the fake delivers webhooks: in order, to the configured URL (or round-robin across
several, as to a fleet of receiver workers), with the configured custom headers and
360dialog's ``x-360dialog-signature``; retried on failure like the real sender. Tests can hold
deliveries and release them reversed or duplicated, and a fleet test can have a seeded share
of them duplicated to another URL or swapped with the next one (:class:`FleetDelivery`).

Everything here is bounded, so a receiver that never answers (or a hostile one) cannot hang
the fake or grow it: each attempt ends after ``timeout`` seconds, the receiver's answer body
is not kept, there are ``1 + retries`` attempts with pauses doubling up to
:data:`MAX_RETRY_DELAY`, at most ``concurrency`` (up to :data:`MAX_WEBHOOK_CONCURRENCY`)
deliveries are in flight at once, the log keeps the newest deliveries (:class:`WebhookLog`),
and at most ``max_pending`` deliveries wait to be sent: beyond that the oldest waiting one is
given up.
"""

from __future__ import annotations

import asyncio
import collections
import json
import math
import random
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aiohttp
import attrs

from .._redact import SecretURL
from .._transport import connect_failure_reason
from ..errors import InvalidRequestError
from ..webhooks._auth import SIGNATURE_HEADER
from ..webhooks._auth import signature as sign
from ._records import DEFAULT_MAX_RECORDED_BYTES, DEFAULT_MAX_RECORDED_WEBHOOKS, RecordLog

__all__ = (
    "MAX_RETRY_DELAY",
    "MAX_WEBHOOK_CONCURRENCY",
    "FleetDelivery",
    "WebhookDelivery",
    "WebhookLog",
    "WebhookSender",
    "check_webhook_urls",
)

MAX_RETRY_DELAY = 30.0  # seconds: the doubling pause between attempts stops growing here
MAX_WEBHOOK_CONCURRENCY = 256  # deliveries in flight at once, at most
_CLOSE_WAIT = 5.0  # seconds close() waits for the worker to notice it is closing
_READ_REPLY_UP_TO = 64 * 1024  # a longer (or unsized) answer is not read: only its status counts
_MAX_URLS = 1024
Sleep = Callable[[float], Awaitable[None]]


def _fraction(name: str) -> Callable[[Any, Any, Any], None]:
    def check(instance: Any, attribute: Any, value: Any) -> None:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not 0.0 <= value <= 1.0
        ):
            raise InvalidRequestError(f"{name} must be a number from 0 to 1, got {value!r:.40}")

    return check


def _seed(instance: Any, attribute: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestError(f"seed must be an int, got {value!r:.40}")


@attrs.frozen
class FleetDelivery:
    """How the fake misbehaves towards a fleet of receiver workers, repeatably from ``seed``.

    - ``duplicate``: the share of webhooks that are *also* delivered, as a separate copy (its
      own entry in :attr:`FakeCallingAPI.webhooks`), to the URL after the original's in
      ``webhook_urls`` (so another worker than the original's when there are several);
    - ``out_of_order``: the share of webhooks that are swapped with the next one produced: the
      next one is sent first. A webhook moved ahead is not swapped again, so none moves more
      than one place; a webhook already on its way when the next one is produced (the
      receiver was idle) is not swapped.

    Each webhook produced (``release_webhooks`` and ``redeliver`` included, copies not) takes
    two draws of ``random.Random(seed)``, in order: ``random() < duplicate``, then
    ``random() < out_of_order``. The same seed and the same webhooks give the same decisions.
    Setting :attr:`FakeCallingAPI.fleet_delivery` starts the draws again from its seed.
    """

    duplicate: float = attrs.field(default=0.0, validator=_fraction("duplicate"))
    out_of_order: float = attrs.field(default=0.0, validator=_fraction("out_of_order"))
    seed: int = attrs.field(default=0, validator=_seed)


def check_webhook_urls(urls: Sequence[str] | None) -> tuple[str, ...] | None:
    """``urls`` checked: ``None`` (no URL: webhooks are recorded, not sent) or a non-empty
    sequence of distinct non-empty ``str`` URLs. :class:`InvalidRequestError` otherwise."""
    if urls is None:
        return None
    if isinstance(urls, (str, bytes)) or not isinstance(urls, Sequence):
        raise InvalidRequestError(
            "webhook_urls must be a list of URLs (for one URL, webhook_url= or [url])"
        )
    if not urls:
        raise InvalidRequestError("webhook_urls must name at least one URL (or be None)")
    if len(urls) > _MAX_URLS:
        raise InvalidRequestError(f"webhook_urls takes at most {_MAX_URLS} URLs")
    checked: list[str] = []
    for url in urls:
        if not isinstance(url, str) or not url:
            raise InvalidRequestError(
                f"each of webhook_urls must be a non-empty str, got {url!r:.40}"
            )
        if url in checked:
            raise InvalidRequestError("webhook_urls names a URL twice")
        checked.append(SecretURL(url))
    return tuple(checked)


@attrs.define(eq=False)
class WebhookDelivery:
    """One webhook the fake produced. ``status`` is the receiver's HTTP status of the last
    attempt (``None`` while pending, when no URL is set, or when the attempt failed with
    ``error``); ``url`` is where the last attempt went (``None`` before the first)."""

    field: str
    payload: dict[str, Any]
    body: bytes
    attempts: int = 0
    status: int | None = None
    error: str | None = None
    delivered: bool = False
    url: str | None = None

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


@attrs.define(eq=False)
class _Entry:
    """A delivery waiting to be sent, and its place in the round-robin: attempt ``j`` goes
    to ``urls[(slot + j) % len(urls)]``."""

    delivery: WebhookDelivery
    slot: int


class WebhookSender:
    def __init__(
        self,
        *,
        urls: Sequence[str] | None,
        headers: Mapping[str, str] | None,
        signing_secret: str | None,
        retries: int,
        retry_delay: float,
        timeout: float,
        log: WebhookLog | None = None,
        max_pending: int | None = DEFAULT_MAX_RECORDED_WEBHOOKS,
        concurrency: int = 1,
        fleet: FleetDelivery | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise InvalidRequestError("webhook_retries must be an integer >= 0")
        if not (isinstance(retry_delay, (int, float)) and 0 <= retry_delay < math.inf):
            raise InvalidRequestError("webhook_retry_delay must be a finite number of seconds >= 0")
        if not (isinstance(timeout, (int, float)) and 0 < timeout < math.inf):
            raise InvalidRequestError("webhook_timeout must be a finite number of seconds > 0")
        if max_pending is not None and max_pending < 1:
            raise InvalidRequestError("max_recorded_webhooks must be >= 1 (or None for no limit)")
        if (
            isinstance(concurrency, bool)
            or not isinstance(concurrency, int)
            or not 1 <= concurrency <= MAX_WEBHOOK_CONCURRENCY
        ):
            raise InvalidRequestError(
                f"webhook_concurrency must be an int from 1 to {MAX_WEBHOOK_CONCURRENCY}"
            )
        self.urls: tuple[str, ...] = check_webhook_urls(urls) or ()
        self.headers = dict(headers or {})
        self.signing_secret = signing_secret
        self.retries = retries
        self.retry_delay = float(retry_delay)
        self.timeout = float(timeout)
        self.log = log if log is not None else WebhookLog()
        self.max_pending = max_pending
        self.concurrency = concurrency
        self.sleep = sleep
        self.given_up = 0  # deliveries pushed out of a full queue before they were sent
        self.duplicated = 0  # copies made by the fleet's duplicate share
        self.reordered = 0  # swaps made by the fleet's out_of_order share
        self._fleet: tuple[FleetDelivery, random.Random] | None = None
        self.fleet = fleet
        self._lock = threading.Lock()
        self._held: list[WebhookDelivery] | None = None
        self._pending = 0
        self._sequence = 0  # webhooks queued so far: the next one's round-robin slot
        self._swap_with: _Entry | None = None  # waiting; the next webhook goes before it
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: collections.deque[_Entry] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._closing = False
        self._session: aiohttp.ClientSession | None = None

    @property
    def fleet(self) -> FleetDelivery | None:
        return None if self._fleet is None else self._fleet[0]

    @fleet.setter
    def fleet(self, fleet: FleetDelivery | None) -> None:
        if fleet is not None and not isinstance(fleet, FleetDelivery):
            raise InvalidRequestError("fleet_delivery must be a FleetDelivery or None")
        # One assignment: the loop reads the pair, never half of an old and half of a new one.
        self._fleet = None if fleet is None else (fleet, random.Random(fleet.seed))

    # -- lifecycle (on the server's loop) -----------------------------------------------

    async def start(self) -> None:
        self._closing = False
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._in_flight = set()
        # No proxy from the environment: webhooks go where the test says, nowhere else.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max(100, self.concurrency)),
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            trust_env=False,
        )
        self._worker = asyncio.create_task(self._run(), name="d360calling-fake-webhooks")

    async def close(self) -> None:
        # A flag as well as the cancel: Python 3.11's wait_for can swallow a cancellation that
        # lands as the attempt finishes, and the worker would then wait for work forever.
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()
        tasks = set(self._in_flight)
        if self._worker is not None:
            tasks.add(self._worker)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=_CLOSE_WAIT)
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
        if not self.urls or not deliveries:
            return
        if self._loop is None:
            raise RuntimeError("the fake server is not running")
        with self._lock:
            self._pending += len(deliveries)
        self._loop.call_soon_threadsafe(self._put, deliveries)

    def _put(self, deliveries: list[WebhookDelivery]) -> None:
        """On the loop, in the order the webhooks were produced: give each its round-robin
        slot and the fleet's decisions, and queue it, giving up the oldest waiting ones when
        full."""
        assert self._wakeup is not None
        for delivery in deliveries:
            entry = _Entry(delivery, self._sequence)
            self._sequence += 1
            group = [entry]
            duplicate = out_of_order = False
            fleet = self._fleet
            if fleet is not None:
                config, rng = fleet
                duplicate = rng.random() < config.duplicate
                out_of_order = rng.random() < config.out_of_order
            if duplicate:
                # To the URL after the original's, as a delivery of its own.
                group.append(_Entry(self._copy(delivery), entry.slot + 1))
                self.duplicated += 1
                with self._lock:
                    self._pending += 1
            for _ in group:
                self._make_room()
            place = self._place_of(self._swap_with)
            if place is not None:
                # The previous webhook (and its copy) is still waiting: this one goes first,
                # and having moved ahead is not swapped again.
                for offset, item in enumerate(group):
                    self._queue.insert(place + offset, item)
                self.reordered += 1
                self._swap_with = None
            else:
                self._queue.extend(group)
                self._swap_with = entry if out_of_order else None
        self._wakeup.set()

    def _make_room(self) -> None:
        if self.max_pending is not None and len(self._queue) >= self.max_pending:
            oldest = self._queue.popleft()
            oldest.delivery.error = "not sent: more than max_recorded_webhooks were waiting"
            self.given_up += 1
            self._done()

    def _place_of(self, entry: _Entry | None) -> int | None:
        """Where ``entry`` waits in the queue: it was queued last (maybe with its copy after
        it), so it is one of the last two, or it is gone."""
        if entry is None:
            return None
        for place in range(len(self._queue) - 1, max(len(self._queue) - 3, -1), -1):
            if self._queue[place] is entry:
                return place
        return None

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
        """Start the waiting deliveries in queue order, at most ``concurrency`` at once (with
        1, each ends before the next starts)."""
        assert self._wakeup is not None
        while True:
            while (
                not self._queue or len(self._in_flight) >= self.concurrency
            ) and not self._closing:
                self._wakeup.clear()
                await self._wakeup.wait()
            if self._closing:
                return
            entry = self._queue.popleft()
            task = asyncio.create_task(self._deliver(entry), name="d360calling-fake-webhook")
            self._in_flight.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        # No exception to retrieve: _deliver records on the delivery what went wrong.
        self._in_flight.discard(task)
        self._done()
        if self._wakeup is not None:
            self._wakeup.set()

    async def _deliver(self, entry: _Entry) -> None:
        delivery = entry.delivery
        headers = {"Content-Type": "application/json", **self.headers}
        if self.signing_secret is not None:
            headers[SIGNATURE_HEADER] = sign(self.signing_secret, delivery.body)
        delay = self.retry_delay
        for attempt in range(self.retries + 1):
            urls = self.urls  # read each time: the test may change them
            if not urls or self._closing:
                return
            # A failed attempt is tried again on the next URL: a dead worker's webhooks reach
            # the others.
            url = urls[(entry.slot + attempt) % len(urls)]
            delivery.attempts += 1
            delivery.url = url
            try:
                # The session's total timeout does not cover every wait (closing a request
                # whose body the receiver never reads); this bounds the whole attempt.
                status = await asyncio.wait_for(
                    self._attempt(url, delivery.body, headers), self.timeout
                )
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                # The type and text only: no aiohttp object (it carries our headers) is kept.
                # A refused connection says so, once (aiohttp's text repeats the address).
                reason = connect_failure_reason(exc)
                delivery.status = None
                delivery.error = reason or f"{type(exc).__name__}: {exc}"[:500]
            except Exception as exc:  # an aiohttp error of another kind (a malformed URL...)
                delivery.status, delivery.error = None, f"{type(exc).__name__}: {exc}"[:500]
                return
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
