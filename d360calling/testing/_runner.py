"""Serving an ``aiohttp.web`` app on loopback, on the running loop: the one runner the fake,
the demo's webhook inbox and the tests' receivers share; and :class:`DeliveryWatch`, which
tells ``d360calling fake-server`` what became of the fake's webhook deliveries."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import attrs
from aiohttp import web

if TYPE_CHECKING:
    from ._delivery import WebhookDelivery

__all__ = (
    "DeliveryNote",
    "DeliveryWatch",
    "ServedApp",
    "serve",
)


class ServedApp(NamedTuple):
    """A running app: its runner and the port it is bound to. A pair, so
    ``runner, port = await serve(app)`` works."""

    runner: web.AppRunner
    port: int

    @property
    def url(self) -> str:
        """``http://host:port`` of the bound address, without a trailing slash."""
        host = str(self.runner.addresses[0][0])
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    async def close(self) -> None:
        """Stop serving and close every connection; idempotent."""
        await self.runner.cleanup()


async def serve(
    app: web.Application, host: str = "127.0.0.1", port: int = 0, **runner_options: Any
) -> ServedApp:
    """Serve ``app`` on ``host:port`` (port 0: a free one, which the result tells).

    ``runner_options`` go to :class:`aiohttp.web.AppRunner` (e.g. ``keepalive_timeout``);
    the access log is off unless given.
    """
    runner_options.setdefault("access_log", None)
    runner = web.AppRunner(app, **runner_options)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        # The runner knows its bound addresses; with port 0 that is where the port is.
        bound = runner.addresses[0]
    except BaseException:
        await runner.cleanup()
        raise
    return ServedApp(runner, int(bound[1]))


# -- what `d360calling fake-server` says about its webhook deliveries ------------------------

# A delivery whose record has not changed for this long is no longer watched (every delivery
# ends long before: at most 1 + retries attempts of webhook_timeout, pauses under 30 s each).
_FORGET_AFTER = 300.0
_MAX_WATCHED = 10_000


@attrs.frozen
class DeliveryNote:
    """One thing worth telling about a webhook delivery: an attempt that failed (``status``
    is the receiver's HTTP status, else ``error`` says what went wrong), the delivery that got
    through after failing (``delivered``), or one given up before it was sent (``attempt``
    0). ``number`` counts the webhooks the fake produced, from 1."""

    number: int
    delivery: WebhookDelivery
    attempt: int
    attempts: int
    url: str | None
    status: int | None = None
    error: str | None = None
    delivered: bool = False

    @property
    def final(self) -> bool:
        """No attempt follows: delivered, given up, or the last attempt failed."""
        return self.delivered or self.attempt in (0, self.attempts)


@attrs.define
class _Watched:
    number: int
    attempt: int = 0  # the attempts count seen last
    result: tuple[int | None, str | None] = (None, None)  # (status, error) seen last
    owner: int = 0  # the attempt that result is known to be from
    since: float = 0.0  # when ``attempt`` was first seen
    failed: bool = False
    urls: dict[int, str | None] = attrs.Factory(dict)


class DeliveryWatch:
    """The failed attempts of a fake's webhook deliveries, read from its log
    (:attr:`FakeCallingAPI.webhooks`): call :meth:`poll` on the fake's loop more often than
    the fake pauses between attempts (``webhook_retry_delay``, 0.2 s by default), and it
    returns what happened since the last call, each attempt once.

    It reads only what each :class:`WebhookDelivery` records, and a record shows the result
    of the latest attempt that *ended* next to the count of attempts *started*: just after an
    attempt starts, the result shown is still the one before. So a result is taken as the
    current attempt's when it is a new one: each ended attempt stores a new ``status`` or
    ``error`` object, told apart by identity (an equal one too), not by value. Where an
    attempt's result is an object shared with the one before (CPython's small ints), it is
    the current attempt's once the next attempt starts, or once ``attempt_timeout`` (the
    fake's ``webhook_timeout``, which bounds each attempt) and a second have passed.
    """

    def __init__(
        self,
        log: Sequence[WebhookDelivery],
        *,
        attempts: int,
        attempt_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._attempts = attempts
        self._settle = attempt_timeout + 1.0
        self._clock = clock
        self._seen = 0
        self._watched: dict[WebhookDelivery, _Watched] = {}

    def poll(self) -> list[DeliveryNote]:
        now = self._clock()
        self._take_new(now)
        notes: list[DeliveryNote] = []
        for delivery, watched in list(self._watched.items()):
            done = self._observe(delivery, watched, now, notes)
            if done or now - watched.since > _FORGET_AFTER:
                del self._watched[delivery]
        return notes

    def _take_new(self, now: float) -> None:
        kept = len(self._log)  # cheap: the log is copied only when it grew
        total = kept + getattr(self._log, "dropped", 0)
        new = total - self._seen
        if new <= 0:
            return
        fresh = self._log[max(kept - new, 0) :]
        for offset, delivery in enumerate(fresh):
            self._watched[delivery] = _Watched(total - len(fresh) + offset + 1, since=now)
        self._seen = total
        while len(self._watched) > _MAX_WATCHED:
            del self._watched[next(iter(self._watched))]

    def _observe(
        self, delivery: WebhookDelivery, w: _Watched, now: float, notes: list[DeliveryNote]
    ) -> bool:
        """Note what changed on ``delivery``; True once nothing more will happen to it."""
        attempt, url = delivery.attempts, delivery.url
        status, error = delivery.status, delivery.error
        if delivery.delivered:
            if w.failed:
                notes.append(self._note(delivery, w, attempt, url, delivered=True))
            return True
        if attempt == 0:
            if error is not None:  # given up while waiting: never sent
                notes.append(self._note(delivery, w, 0, None, error=error))
                return True
            return False
        if attempt > w.attempt:
            # An attempt started since the last look, so the one seen then had ended (a
            # pause lies between two attempts): its result is the one seen then.
            if w.owner < w.attempt:
                self._own(delivery, w, w.attempt, w.result, notes)
            w.attempt, w.since = attempt, now
            w.urls.setdefault(attempt, url)
        new = status is not w.result[0] or error is not w.result[1]
        if new or (
            w.owner < attempt and (status, error) != (None, None) and now - w.since > self._settle
        ):
            self._own(delivery, w, attempt, (status, error), notes)
        w.result = (status, error)
        return w.owner >= self._attempts

    def _own(
        self,
        delivery: WebhookDelivery,
        w: _Watched,
        attempt: int,
        result: tuple[int | None, str | None],
        notes: list[DeliveryNote],
    ) -> None:
        w.owner = attempt
        status, error = result
        if error is not None or (status is not None and not 200 <= status < 300):
            w.failed = True
            url = w.urls.get(attempt)
            notes.append(self._note(delivery, w, attempt, url, status=status, error=error))

    def _note(
        self,
        delivery: WebhookDelivery,
        w: _Watched,
        attempt: int,
        url: str | None,
        **result: Any,
    ) -> DeliveryNote:
        return DeliveryNote(w.number, delivery, attempt, self._attempts, url, **result)
