"""Follows each call through its lifecycle from its webhooks: ringing, answered, ended, and
why it ended. Records live in a :class:`CallStore`; the in-memory one is the default.

A record is bounded whatever its events carry: at most :data:`MAX_RECORD_EVENTS` labels and
:data:`MAX_RECORD_ERRORS` errors (texts cut to :data:`MAX_RECORD_TEXT` characters), and
``biz_opaque_callback_data`` only up to the API's 512 characters. The in-memory store is
bounded in bytes (``max_bytes``) as well as in records."""

from __future__ import annotations

import sys
from collections import OrderedDict
from typing import Final, Protocol

import attrs

from .._constants import BIZ_OPAQUE_CALLBACK_DATA_MAX
from ..errors import InvalidRequestError
from ..models.webhooks import (
    CallConnectEvent,
    CallStatusEvent,
    CallTerminateEvent,
    WebhookError,
    WebhookEvent,
)

__all__ = (
    "MAX_RECORD_ERRORS",
    "MAX_RECORD_EVENTS",
    "MAX_RECORD_TEXT",
    "CallRecord",
    "CallStore",
    "CallTracker",
    "InMemoryCallStore",
)

RINGING, ANSWERED, ENDED = "ringing", "answered", "ended"

MAX_RECORD_EVENTS: Final = 16
"""Labels a record keeps in ``events`` (later ones are not added; a real call has about 4)."""
MAX_RECORD_ERRORS: Final = 4
"""Errors a record keeps (the terminate event itself carries them all)."""
MAX_RECORD_TEXT: Final = 256
"""Characters a record keeps of each error's ``message``, ``title``, ``href`` and details."""
_LABEL_STATUS: Final = 64  # characters of a status kept in its event label


@attrs.frozen(kw_only=True)
class CallRecord:
    """A call as its webhooks described it so far."""

    call_id: str
    state: str = RINGING  # ringing | answered | ended
    direction: str | None = None
    # The user's phone number when a webhook of the call carried one, else their BSUID; a
    # user known only by a business-scoped id is still tracked.
    user: str | None = None
    user_id: str | None = None  # the user's BSUID, when a webhook carried one
    started_at: int | None = None
    answered_at: int | None = None
    ended_at: int | None = None
    duration: int | None = None
    end_status: str | None = None  # COMPLETED | FAILED | REJECTED (declined by the user)
    errors: tuple[WebhookError, ...] = ()
    biz_opaque_callback_data: str | None = None
    # "connect", "status:RINGING", "terminate", ...: in lifecycle order, however they arrived
    events: tuple[str, ...] = ()

    @property
    def ended(self) -> bool:
        return self.state == ENDED


class CallStore(Protocol):
    """Where call records live; implement it over Redis or a database to share state between
    processes."""

    async def get(self, call_id: str) -> CallRecord | None: ...

    async def put(self, record: CallRecord) -> None: ...


class InMemoryCallStore:
    """Records in a dict, keeping the newest ``max_calls`` and at most ``max_bytes`` of them
    (oldest dropped first; sizes as ``sys.getsizeof`` counts them, strings included, about
    900 bytes for a typical call, so the count is what binds at the defaults). A record larger
    than ``max_bytes`` on its own is not kept."""

    def __init__(self, max_calls: int = 100_000, *, max_bytes: int = 128 * 1024 * 1024) -> None:
        self._max = _positive_int("max_calls", max_calls)
        self._max_bytes = _positive_int("max_bytes", max_bytes)
        self._records: OrderedDict[str, tuple[CallRecord, int]] = OrderedDict()
        self._bytes = 0

    async def get(self, call_id: str) -> CallRecord | None:
        found = self._records.get(call_id)
        return None if found is None else found[0]

    async def put(self, record: CallRecord) -> None:
        old = self._records.pop(record.call_id, None)
        if old is not None:
            self._bytes -= old[1]
        size = _record_size(record)
        if size > self._max_bytes:
            return
        self._records[record.call_id] = (record, size)
        self._bytes += size
        while len(self._records) > self._max or self._bytes > self._max_bytes:
            self._bytes -= self._records.popitem(last=False)[1][1]

    @property
    def bytes(self) -> int:
        """What the records take, as counted against ``max_bytes``."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._records)


def _positive_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InvalidRequestError(f"{name} must be a positive int, got {value!r:.40}")
    return value


_ENTRY = 100  # a dict slot, its key's share and the (record, size) tuple


def _record_size(record: CallRecord) -> int:
    """About how many bytes ``record`` holds on to: itself, its strings, ints and errors."""
    size = _ENTRY + sys.getsizeof(record) + sys.getsizeof(record.events)
    for value in attrs.astuple(record, recurse=False):
        if isinstance(value, (str, int)):
            size += sys.getsizeof(value)
    size += sum(sys.getsizeof(label) for label in record.events)
    size += sys.getsizeof(record.errors)
    for error in record.errors:
        size += sys.getsizeof(error) + sys.getsizeof(error.code)
        size += sum(sys.getsizeof(text) for text in (error.message, error.title, error.href))
        if error.error_data is not None:
            size += sys.getsizeof(error.error_data) + sum(
                sys.getsizeof(key) + sys.getsizeof(value) for key, value in error.error_data.items()
            )
    return size


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
    opaque = event.biz_opaque_callback_data
    if opaque is not None and len(opaque) <= BIZ_OPAQUE_CALLBACK_DATA_MAX:
        changes["biz_opaque_callback_data"] = opaque
    # Phone first: a record keyed by a BSUID gains the number when a later webhook has it.
    user = event.user
    if user is not None and (record.user is None or record.user == record.user_id):
        changes["user"] = user
    if record.user_id is None and event.user_id is not None:
        changes["user_id"] = event.user_id
    # Order-free: each field is a state no later than, or a time no earlier/later than, what
    # every event of the call says, so a record does not depend on which event came first
    # (on which worker of a fleet).
    given = getattr(event, "direction", None)  # status events carry none
    direction = str(given) if given else None
    if isinstance(event, CallConnectEvent):
        label = "connect"
        changes["direction"] = direction or record.direction
        changes["started_at"] = _earliest(record.started_at, event.timestamp)
        if not event.is_inbound:  # the user picked up
            changes["state"] = _later(record.state, ANSWERED)
            changes["answered_at"] = _earliest(record.answered_at, event.timestamp)
    elif isinstance(event, CallStatusEvent):
        label = f"status:{str(event.status)[:_LABEL_STATUS]}"
        if event.status == "ACCEPTED":
            changes["state"] = _later(record.state, ANSWERED)
            changes["answered_at"] = _earliest(record.answered_at, event.timestamp)
        elif event.status == "REJECTED":  # declined by the user: more telling than terminate's
            changes.update(
                state=ENDED,
                end_status="REJECTED",
                ended_at=_latest(record.ended_at, event.timestamp),
            )
    else:
        label = "terminate"
        changes.update(
            state=ENDED,
            direction=record.direction or direction,
            ended_at=_latest(record.ended_at, event.end_time or event.timestamp),
            duration=event.duration,
            errors=tuple(_kept(error) for error in event.errors[:MAX_RECORD_ERRORS]),
            answered_at=_earliest(record.answered_at, event.start_time),
        )
        if record.end_status != "REJECTED":
            changes["end_status"] = str(event.status) if event.status else None
    events = (
        record.events if len(record.events) >= MAX_RECORD_EVENTS else _placed(record.events, label)
    )
    return attrs.evolve(record, events=events, **changes)  # type: ignore[arg-type]


_STATE_ORDER: Final = {RINGING: 0, ANSWERED: 1, ENDED: 2}


def _later(state: str, other: str) -> str:
    """The later of two lifecycle states (an ended call stays ended)."""
    return other if _STATE_ORDER.get(other, 0) > _STATE_ORDER.get(state, 0) else state


def _earliest(*times: int | None) -> int | None:
    known = [time for time in times if time is not None]
    return min(known) if known else None


def _latest(*times: int | None) -> int | None:
    known = [time for time in times if time is not None]
    return max(known) if known else None


def _rank(label: str) -> int:
    if label == "connect":
        return 0
    if label == "status:RINGING":
        return 1
    return 3 if label == "terminate" else 2


def _placed(events: tuple[str, ...], label: str) -> tuple[str, ...]:
    """``label`` added in its call's lifecycle order (connect, ringing, accepted or rejected,
    terminate), wherever it arrived: a record is the same whichever worker applied which
    event first (events of one rank stay in the order they were applied), and applying an
    event twice adds it once."""
    if label in events:  # the same event applied again (a dead worker's, taken over)
        return events
    rank = _rank(label)
    at = len(events)
    while at and _rank(events[at - 1]) > rank:
        at -= 1
    return (*events[:at], label, *events[at:])


def _kept(error: WebhookError) -> WebhookError:
    """``error`` as a record keeps it: texts cut short, ``error_data`` only its details."""

    def cut(text: str | None) -> str | None:
        return None if text is None else text[:MAX_RECORD_TEXT]

    details = cut(error.details)
    code = error.code if error.code is not None and abs(error.code) < 2**63 else None
    return WebhookError(
        code=code,
        message=cut(error.message),
        title=cut(error.title),
        href=cut(error.href),
        error_data=None if details is None else {"details": details},
    )
