"""Waiting for a user's answer to a call-permission request: the receiver resolves a waiter on
the ``call_permission_reply`` webhook for that user, or on a ``failed`` status of the request
message, and never keeps more than it is allowed to."""

from __future__ import annotations

import asyncio
import datetime
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Final

import attrs

from ..errors import APIStatusError, ClientMisuseError, InvalidRequestError
from ..models._checks import check_user_id
from ..models._enums import _StrEnum
from ..models.webhooks import MessageStatusEvent, PermissionReplyEvent
from ._parse import MAX_ID_LENGTH

__all__ = (
    "MAX_REMEMBERED_ANSWERS",
    "PermissionOutcome",
    "PermissionWaitResult",
    "PermissionWaiters",
    "check_message_id",
    "check_timeout",
    "check_user",
    "user_key",
)

Sleep = Callable[[float], Awaitable[None]]

MAX_REMEMBERED_ANSWERS: Final = 1_024
"""How many answers to permission requests (replies that name their request, and failed
statuses of request messages) the receiver remembers, so that a waiter naming its request's
``message_id`` gets an answer that arrived before it started waiting."""


class PermissionOutcome(_StrEnum):
    """How a wait for permission ended."""

    GRANTED_TEMPORARY = "granted_temporary"  # accepted; lasts until ``expires_at``
    GRANTED_PERMANENT = "granted_permanent"
    DECLINED = "declined"  # the user rejected, or the permission was revoked automatically
    TIMED_OUT = "timed_out"  # no answer within the timeout
    FAILED = "failed"  # the request message failed (its status webhook): see ``error``


@attrs.frozen(kw_only=True)
class PermissionWaitResult:
    """What :meth:`WebhookReceiver.wait_for_permission` found. ``event`` is the reply (or
    the failed message status) that decided it; ``expires_at`` is when a temporary grant ends
    (an aware UTC datetime, when the reply says); ``error`` is the failed message's typed
    error (e.g. ``MessageUndeliverableError`` for 131026)."""

    outcome: PermissionOutcome
    user: str
    message_id: str | None = None
    expires_at: datetime.datetime | None = None
    event: PermissionReplyEvent | MessageStatusEvent | None = None
    error: APIStatusError | None = None

    @property
    def granted(self) -> bool:
        return self.outcome in (
            PermissionOutcome.GRANTED_TEMPORARY,
            PermissionOutcome.GRANTED_PERMANENT,
        )


def check_user(user: object, name: str = "user") -> str:
    """``user`` if it is a phone number (digits, optional leading ``+``) or a business-scoped
    user id; else :class:`InvalidRequestError` naming ``name`` (the client's own rule)."""
    return check_user_id(user, name)


def user_key(user: str) -> str:
    """The form users are matched in: webhooks carry numbers without the ``+``."""
    return user.removeprefix("+")


def check_timeout(name: str, value: object, *, allow_none: bool = True) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequestError(f"{name} must be a number of seconds, got {value!r:.40}")
    if not math.isfinite(value) or value < 0:
        raise InvalidRequestError(f"{name} must be a finite number of seconds >= 0")
    return float(value)


def check_message_id(message_id: object) -> str | None:
    if message_id is None:
        return None
    if not isinstance(message_id, str) or not message_id.strip():
        raise InvalidRequestError(f"message_id must be a non-empty str, got {message_id!r:.40}")
    if len(message_id) > MAX_ID_LENGTH:
        raise InvalidRequestError(f"message_id is longer than {MAX_ID_LENGTH} characters")
    return message_id


class _Waiter:
    __slots__ = ("future", "message_id", "user")

    def __init__(
        self, user: str, message_id: str | None, future: asyncio.Future[PermissionWaitResult]
    ) -> None:
        self.user = user
        self.message_id = message_id
        self.future = future


def _answers_any_request(reply: PermissionReplyEvent) -> bool:
    """A reply that answers no request: granted from the business profile, revoked
    automatically (no ``context``), or granted automatically after the user called (the
    ``context`` is the call's wacid)."""
    return reply.context_id is None or reply.context_id.startswith("wacid.")


def _result(
    waiter: _Waiter, event: PermissionReplyEvent | MessageStatusEvent
) -> PermissionWaitResult:
    if isinstance(event, MessageStatusEvent):
        return PermissionWaitResult(
            outcome=PermissionOutcome.FAILED,
            user=waiter.user,
            message_id=waiter.message_id,
            event=event,
            error=event.error,
        )
    if not event.granted:  # reject, or a response the library does not know: no grant
        outcome = PermissionOutcome.DECLINED
    elif event.is_permanent:
        outcome = PermissionOutcome.GRANTED_PERMANENT
    else:
        outcome = PermissionOutcome.GRANTED_TEMPORARY
    return PermissionWaitResult(
        outcome=outcome,
        user=waiter.user,
        message_id=waiter.message_id,
        expires_at=event.expires_at if event.granted else None,
        event=event,
    )


def _kept(
    event: PermissionReplyEvent | MessageStatusEvent,
) -> PermissionReplyEvent | MessageStatusEvent:
    """What the memory of answers keeps of an event: no contact or envelope, one error."""
    if isinstance(event, MessageStatusEvent):
        return attrs.evolve(event, contact=None, metadata=None, errors=event.errors[:1])
    return attrs.evolve(event, contact=None, metadata=None)


class PermissionWaiters:
    """The waiters of one receiver, by user and by request message id, and the memory of the
    newest answers to requests. Everything runs on the receiver's loop."""

    def __init__(self, max_waiters: int, sleep: Sleep) -> None:
        self.max_waiters = max_waiters
        self._sleep = sleep
        self._by_user: dict[str, set[_Waiter]] = {}
        self._by_message: dict[str, set[_Waiter]] = {}
        self._count = 0
        self._answers: OrderedDict[str, PermissionReplyEvent | MessageStatusEvent] = OrderedDict()
        self._closed: Callable[[], BaseException] | None = None

    def __len__(self) -> int:
        """Waiters registered now."""
        return self._count

    @property
    def remembered(self) -> int:
        return len(self._answers)

    async def wait(
        self,
        user: str,
        timeout: float | None,
        message_id: str | None,
        *,
        prepare: Callable[[], Awaitable[None]] | None = None,
    ) -> PermissionWaitResult:
        """Wait for ``user``'s answer (see :meth:`WebhookReceiver.wait_for_permission`).

        ``prepare`` runs once the waiter is registered and before the wait (the receiver
        watches the user's topics there and recalls what was kept): an answer that arrives
        meanwhile resolves this waiter, and if ``prepare`` fails the waiter is removed and
        its error raised. The timeout counts from when ``prepare`` has returned."""
        if self._closed is not None:
            raise self._closed()
        if self._count >= self.max_waiters:
            raise ClientMisuseError(
                f"{self._count} permission waiters are registered already (max_waiters)"
            )
        loop = asyncio.get_running_loop()
        waiter = _Waiter(user, message_id, loop.create_future())
        early = None if message_id is None else self._answers.get(message_id)
        if early is not None:
            return _result(waiter, early)
        self._add(waiter)
        try:
            if prepare is not None:
                try:
                    await prepare()
                except BaseException:
                    if waiter.future.done() and not waiter.future.cancelled():
                        waiter.future.exception()  # retrieved: the prepare's error is raised
                    raise
            if waiter.future.done():  # answered (or closed) while prepare ran
                return waiter.future.result()
            if timeout is None:
                await waiter.future
            else:
                sleeper = asyncio.ensure_future(self._sleep(timeout))
                racing: set[asyncio.Future[Any]] = {waiter.future, sleeper}
                try:
                    await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    sleeper.cancel()
            if not waiter.future.done():
                return PermissionWaitResult(
                    outcome=PermissionOutcome.TIMED_OUT, user=user, message_id=message_id
                )
            return waiter.future.result()  # raises the receiver's closing error
        finally:
            self._remove(waiter)

    def _add(self, waiter: _Waiter) -> None:
        self._by_user.setdefault(user_key(waiter.user), set()).add(waiter)
        if waiter.message_id is not None:
            self._by_message.setdefault(waiter.message_id, set()).add(waiter)
        self._count += 1

    def _remove(self, waiter: _Waiter) -> None:
        _discard(self._by_user, user_key(waiter.user), waiter)
        if waiter.message_id is not None:
            _discard(self._by_message, waiter.message_id, waiter)
        self._count -= 1

    def reply(self, event: PermissionReplyEvent) -> None:
        """A permission reply arrived: resolve the waiters it answers."""
        general = _answers_any_request(event)
        if not general and event.context_id is not None:
            self._remember(event.context_id, event, replace=True)
        for user in {user_key(user) for user in event.user_ids}:
            for waiter in tuple(self._by_user.get(user, ())):
                if waiter.message_id is None or general or waiter.message_id == event.context_id:
                    _resolve(waiter, _result(waiter, event))

    def status(self, event: MessageStatusEvent) -> None:
        """A message status arrived: a failed one fails the waiters for that message."""
        if not event.failed:
            return
        self._remember(event.message_id, event, replace=False)
        for waiter in tuple(self._by_message.get(event.message_id, ())):
            _resolve(waiter, _result(waiter, event))

    def _remember(
        self, message_id: str, event: PermissionReplyEvent | MessageStatusEvent, *, replace: bool
    ) -> None:
        if message_id in self._answers and not replace:
            return  # a reply proves the request arrived: a later failure does not undo it
        self._answers[message_id] = _kept(event)
        self._answers.move_to_end(message_id)
        while len(self._answers) > MAX_REMEMBERED_ANSWERS:
            self._answers.popitem(last=False)

    def close(self, error: Callable[[], BaseException]) -> None:
        """Fail every waiter with a fresh ``error()`` (the receiver is closing) and refuse
        new ones with it."""
        self._closed = error
        for waiters in tuple(self._by_user.values()):
            for waiter in tuple(waiters):
                if not waiter.future.done():
                    waiter.future.set_exception(error())


def _discard(index: dict[str, set[_Waiter]], key: str, waiter: _Waiter) -> None:
    found = index.get(key)
    if found is not None:
        found.discard(waiter)
        if not found:
            del index[key]


def _resolve(waiter: _Waiter, result: PermissionWaitResult) -> None:
    if not waiter.future.done():  # a duplicate, or a second matching reply: resolved once
        waiter.future.set_result(result)
