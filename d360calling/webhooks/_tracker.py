"""Follows each call through its lifecycle from its webhooks: ringing, answered, ended, and
why it ended. Records live in a :class:`CallStore`; the in-memory one is the default."""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

import attrs

from ..models.webhooks import (
    CallConnectEvent,
    CallStatusEvent,
    CallTerminateEvent,
    WebhookError,
    WebhookEvent,
)

__all__ = ("CallRecord", "CallStore", "CallTracker", "InMemoryCallStore")

RINGING, ANSWERED, ENDED = "ringing", "answered", "ended"


@attrs.frozen(kw_only=True)
class CallRecord:
    """A call as its webhooks described it so far."""

    call_id: str
    state: str = RINGING  # ringing | answered | ended
    direction: str | None = None
    user: str | None = None
    started_at: int | None = None
    answered_at: int | None = None
    ended_at: int | None = None
    duration: int | None = None
    end_status: str | None = None  # COMPLETED | FAILED | REJECTED (declined by the user)
    errors: tuple[WebhookError, ...] = ()
    biz_opaque_callback_data: str | None = None
    events: tuple[str, ...] = ()  # "connect", "status:RINGING", "terminate", ... as applied

    @property
    def ended(self) -> bool:
        return self.state == ENDED


class CallStore(Protocol):
    """Where call records live; implement it over Redis or a database to share state between
    processes."""

    async def get(self, call_id: str) -> CallRecord | None: ...

    async def put(self, record: CallRecord) -> None: ...


class InMemoryCallStore:
    """Records in a dict, keeping the newest ``max_calls`` (oldest dropped first)."""

    def __init__(self, max_calls: int = 100_000) -> None:
        self._records: OrderedDict[str, CallRecord] = OrderedDict()
        self._max = max_calls

    async def get(self, call_id: str) -> CallRecord | None:
        return self._records.get(call_id)

    async def put(self, record: CallRecord) -> None:
        self._records[record.call_id] = record
        self._records.move_to_end(record.call_id)
        while len(self._records) > self._max:
            self._records.popitem(last=False)

    def __len__(self) -> int:
        return len(self._records)


class CallTracker:
    def __init__(self, store: CallStore | None = None) -> None:
        self.store: CallStore = store if store is not None else InMemoryCallStore()

    async def get(self, call_id: str) -> CallRecord | None:
        return await self.store.get(call_id)

    async def apply(self, event: WebhookEvent) -> CallRecord | None:
        """Fold ``event`` into its call's record; returns the record (``None`` for events that
        are not about a call). An ended call stays ended, whatever arrives late."""
        if not isinstance(event, (CallConnectEvent, CallStatusEvent, CallTerminateEvent)):
            return None
        record = await self.store.get(event.call_id) or CallRecord(call_id=event.call_id)
        record = _fold(record, event)
        await self.store.put(record)
        return record

    async def mark_answered(self, call_id: str, at: int | None = None) -> CallRecord:
        """Record that the business accepted an inbound call (no webhook says so)."""
        record = await self.store.get(call_id) or CallRecord(call_id=call_id)
        if record.state == RINGING:
            record = attrs.evolve(record, state=ANSWERED, answered_at=at)
        await self.store.put(record)
        return record


def _fold(
    record: CallRecord, event: CallConnectEvent | CallStatusEvent | CallTerminateEvent
) -> CallRecord:
    changes: dict[str, object] = {}
    if event.biz_opaque_callback_data is not None:
        changes["biz_opaque_callback_data"] = event.biz_opaque_callback_data
    if isinstance(event, CallConnectEvent):
        label = "connect"
        changes.update(direction=str(event.direction) if event.direction else None, user=event.user)
        changes["started_at"] = record.started_at or event.timestamp
        if not event.is_inbound and record.state != ENDED:  # the user picked up
            changes.update(state=ANSWERED, answered_at=event.timestamp)
    elif isinstance(event, CallStatusEvent):
        label = f"status:{event.status}"
        changes.setdefault("user", record.user or event.recipient_id)
        if record.state != ENDED:
            if event.status == "ACCEPTED":
                changes.update(state=ANSWERED, answered_at=record.answered_at or event.timestamp)
            elif event.status == "REJECTED":
                changes.update(state=ENDED, end_status="REJECTED", ended_at=event.timestamp)
    else:
        label = "terminate"
        changes.update(
            state=ENDED,
            direction=record.direction or (str(event.direction) if event.direction else None),
            ended_at=event.end_time or event.timestamp,
            duration=event.duration,
            errors=event.errors,
            answered_at=record.answered_at or event.start_time,
        )
        if record.end_status != "REJECTED":
            changes["end_status"] = str(event.status) if event.status else None
    return attrs.evolve(record, events=(*record.events, label), **changes)  # type: ignore[arg-type]
