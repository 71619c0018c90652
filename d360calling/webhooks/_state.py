"""Everything a :class:`~d360calling.webhooks.WebhookReceiver` remembers, behind one seam: a
:class:`ReceiverState`. The in-memory one (:class:`InMemoryState`, the default) is one
process's memory; ``d360calling.fleet.RedisState`` shares it between the workers of a fleet,
so that they behave like one process.

What a state keeps:

- **claims**: which events have been acted on (the dedupe memory). The first worker to claim
  an event acts on it; a duplicate, wherever it lands, is dropped;
- **call records**, updated atomically (two workers applying events of one call at once lose
  neither update), which are also the memory of ended calls;
- **work**: the events a worker has claimed and not finished, so that the work of a worker
  that dies is taken over by another;
- **topics**: events that concern a call or a user are published to it, so that the worker
  holding a waiter or a placed call for it hears events that land on other workers; some are
  kept a while, so that a waiter that starts after they arrived still gets them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final, Protocol

import attrs

from ..models.webhooks import CallConnectEvent, CallStatusEvent, CallTerminateEvent
from ._dedupe import DedupeMemory, InMemoryDedupeMemory
from ._tracker import CallRecord, CallTracker

__all__ = (
    "MAX_TOPIC_LENGTH",
    "EventClaim",
    "InMemoryState",
    "ReceiverState",
    "StateListener",
    "decode_payload",
    "encode_payload",
)

_log = logging.getLogger("d360calling.webhooks")

CallEventKind = CallConnectEvent | CallStatusEvent | CallTerminateEvent

MAX_TOPIC_LENGTH: Final = 300
"""The longest topic a receiver names (``call:``/``user:``/``msg:`` and an id of at most 256
characters)."""


@attrs.frozen(kw_only=True)
class EventClaim:
    """One event of a delivery, as the receiver asks a state to claim it.

    ``key`` is its dedupe key (``None``: it has none and is always fresh); ``work`` the name
    its unfinished work goes by (unique in the fleet); ``index`` its place
    in the delivery's body; ``call_id`` the call whose record it updates; ``topics`` where
    a fresh event is published, and ``keep`` the topics under which it is also kept a while
    (see :meth:`ReceiverState.recall`)."""

    key: str | None
    work: str
    index: int
    call_id: str | None = None
    topics: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()


def encode_payload(worker: str, index: int, body: bytes) -> bytes:
    """How an event travels between workers: the worker that received it, its index in the
    delivery, and the delivery's body as received (which the hearing worker parses)."""
    return b"%s\n%d\n%s" % (worker.encode(), index, body)


def decode_payload(payload: bytes) -> tuple[str, int, bytes] | None:
    """``(worker, index, body)`` of a payload; ``None`` if it is not one of ours."""
    parts = payload.split(b"\n", 2)
    if len(parts) != 3 or not parts[1].isdigit() or len(parts[1]) > 6:
        return None
    try:
        worker = parts[0].decode()
    except UnicodeDecodeError:
        return None
    return worker, int(parts[1]), parts[2]


class StateListener(Protocol):
    """What a state calls back on its receiver (on the receiver's loop)."""

    def heard(self, payload: bytes) -> None:
        """An event another worker published to a watched topic (see
        :func:`encode_payload`)."""
        ...

    def recovered(self, payloads: Sequence[tuple[str, bytes]]) -> None:
        """Work a dead worker claimed and never finished, now this worker's: ``(work,
        payload)`` pairs, to act on and then report :meth:`ReceiverState.finish`."""
        ...


class ReceiverState(Protocol):
    """The receiver's memory (see the module). Every method may be called concurrently.
    Methods raise :class:`~d360calling.StateUnavailableError` when the state cannot be
    reached; the receiver then answers 503 (the sender delivers again later)."""

    worker: str
    """This worker's id in payloads and work (any string without a newline)."""

    async def start(self, listener: StateListener) -> None:
        """Connect (raising a clear error when that fails) and start any background work."""
        ...

    async def close(self) -> None:
        """Stop the background work and release connections; idempotent."""
        ...

    async def claim(self, body: bytes, claims: Sequence[EventClaim]) -> list[bool]:
        """Claim each event of one delivery (``body`` as received) in one atomic step:
        ``True`` for each this worker acts on; of two concurrent claims of one key, exactly
        one gets ``True``. A fresh event is recorded as this worker's work, published to its
        topics and kept under its ``keep`` topics."""
        ...

    async def apply(self, event: CallEventKind) -> tuple[CallRecord | None, CallRecord]:
        """Fold ``event`` into its call's record atomically; the record before and after."""
        ...

    async def record(self, call_id: str) -> CallRecord | None:
        """The call's record, if any."""
        ...

    async def finish(self, claim: EventClaim) -> None:
        """The claimed event has been acted on: it is no longer this worker's work."""
        ...

    async def watch(self, topic: str) -> None:
        """Hear events published to ``topic`` by other workers until :meth:`unwatch`
        (counted: two watches need two unwatches). Returns once that is in effect."""
        ...

    async def unwatch(self, topic: str) -> None: ...

    async def recall(self, topic: str) -> list[bytes]:
        """The payloads kept under ``topic`` that other workers published, oldest first."""
        ...


class InMemoryState:
    """One process's memory: a :class:`DedupeMemory` (``dedupe``), a
    :class:`CallTracker` over a :class:`~d360calling.webhooks.CallStore` (``tracker``), no
    topics (a single worker hears everything itself) and no work to take over. This is
    what a receiver uses when it is given no ``state``."""

    worker = "local"

    def __init__(
        self,
        *,
        tracker: CallTracker | None = None,
        dedupe: DedupeMemory | None = None,
        remember: int = 100_000,
    ) -> None:
        self.tracker = tracker if tracker is not None else CallTracker()
        self.dedupe: DedupeMemory = dedupe if dedupe is not None else InMemoryDedupeMemory(remember)

    async def start(self, listener: StateListener) -> None:
        return None

    async def close(self) -> None:
        return None

    async def claim(self, body: bytes, claims: Sequence[EventClaim]) -> list[bool]:
        fresh: list[bool] = []
        recorded: list[str] = []
        try:
            for claim in claims:
                if claim.key is None:
                    fresh.append(True)
                elif await self.dedupe.first_time(claim.key):
                    recorded.append(claim.key)
                    fresh.append(True)
                else:
                    fresh.append(False)
        except BaseException:
            # One atomic step: a dedupe memory that fails midway takes back what it recorded.
            for key in recorded:
                try:
                    await self.dedupe.forget(key)
                except Exception:
                    _log.exception("webhook dedupe memory failed to forget a key")
            raise
        return fresh

    async def apply(self, event: CallEventKind) -> tuple[CallRecord | None, CallRecord]:
        # The receiver applies one call's events under that call's lock: get, fold and put
        # are not interleaved with another event of the call.
        before = await self.tracker.get(event.call_id)
        after = await self.tracker.apply(event)
        assert after is not None  # a call event always has a record
        return before, after

    async def record(self, call_id: str) -> CallRecord | None:
        return await self.tracker.get(call_id)

    async def finish(self, claim: EventClaim) -> None:
        return None

    async def watch(self, topic: str) -> None:
        return None

    async def unwatch(self, topic: str) -> None:
        return None

    async def recall(self, topic: str) -> list[bytes]:
        return []
