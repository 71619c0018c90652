"""A business-initiated call and its true outcome, fed by the receiver's webhooks.

Which webhook decides what (api-facts §2.2-2.4):

======================================================  =====================================
Webhook (for this call, while it is not over)           Effect
======================================================  =====================================
``connect`` (``BUSINESS_INITIATED``, with the user's    **answered**: ``answered()`` returns
SDP answer in ``session``)                              the SDP; the ringing timer stops
``statuses[]`` ``RINGING``                              nothing (the phone rings)
``statuses[]`` ``ACCEPTED`` (sent after the call is     nothing: it carries no SDP, so only
established, for auditing)                              the connect answers
``statuses[]`` ``REJECTED``                             over: ``DECLINED``
``terminate`` after the connect                         over: ``COMPLETED``, or ``FAILED``
                                                        when its status is ``FAILED``
``terminate`` before any connect                        over: ``FAILED`` (status ``FAILED``
                                                        or errors), ``DECLINED`` (a
                                                        ``terminate_reason`` that says
                                                        rejected/declined), else
                                                        ``NOT_ANSWERED`` (it rang out); one
                                                        that says the call was picked up
                                                        (``start_time``) is ``COMPLETED``,
                                                        but ``answered()`` still raises:
                                                        the answer never reached you
======================================================  =====================================

Once a call is over nothing changes it: a connect that arrives after the call's terminate (no
ordering guarantee, api-facts §2.7) never makes ``answered()`` return. ``ringing_timeout``
passing (``NOT_ANSWERED``) and :meth:`OutboundCall.hangup` before an answer (``CANCELLED``)
decide the outcome at once, then terminate the call through the client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import attrs

from .._async_client import AsyncClient
from .._sync_client import Client
from ..errors import (
    CallDeclinedError,
    CallFailedError,
    CallNotAnsweredError,
    CallUnansweredError,
)
from ..models._enums import CallStatus, _StrEnum
from ..models.webhooks import (
    CallConnectEvent,
    CallStatusEvent,
    CallTerminateEvent,
    WebhookError,
    WebhookEvent,
)
from ._waiters import check_timeout

__all__ = (
    "AsyncClientActions",
    "CallAnswer",
    "CallOutcome",
    "OutboundCall",
    "OutboundCallState",
    "OutboundActions",
    "ThreadedClientActions",
)

_log = logging.getLogger("d360calling.webhooks")

Sleep = Callable[[float], Awaitable[None]]


class CallOutcome(_StrEnum):
    """How a business-initiated call ended."""

    COMPLETED = "completed"  # answered, then ended
    DECLINED = "declined"  # the user declined it
    NOT_ANSWERED = "not_answered"  # it rang out, or ringing_timeout passed
    CANCELLED = "cancelled"  # the business hung up before it was answered
    FAILED = "failed"  # it failed (the terminate's errors say why)


class OutboundCallState(_StrEnum):
    RINGING = "ringing"  # placed, not answered yet
    ANSWERED = "answered"  # the user accepted (the connect webhook with their SDP arrived)
    ENDED = "ended"


@attrs.frozen
class CallAnswer:
    """The user accepted: ``sdp`` is their SDP answer, to apply to your peer connection;
    ``event`` the connect webhook that carried it."""

    sdp: str = attrs.field(repr=False)  # holds the ICE password
    event: CallConnectEvent = attrs.field(repr=False)


class OutboundActions(Protocol):
    """What a call handle needs of a client, as coroutines on the receiver's loop."""

    async def connect(
        self, to: str | None, sdp: str, recipient: str | None, options: Mapping[str, object]
    ) -> str: ...

    async def terminate(self, call_id: str) -> None: ...


class AsyncClientActions:
    """An :class:`~d360calling.AsyncClient` (on the receiver's loop)."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def connect(
        self, to: str | None, sdp: str, recipient: str | None, options: Mapping[str, object]
    ) -> str:
        response = await self._client.connect_call(to, sdp, **_with_recipient(recipient, options))
        return response.call_id

    async def terminate(self, call_id: str) -> None:
        await self._client.terminate_call(call_id)


class ThreadedClientActions:
    """A blocking :class:`~d360calling.Client`, called in a worker thread so the receiver's
    loop keeps serving webhooks while the request is out (the client runs it on its own
    portal loop)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    async def connect(
        self, to: str | None, sdp: str, recipient: str | None, options: Mapping[str, object]
    ) -> str:
        kwargs = _with_recipient(recipient, options)
        response = await asyncio.to_thread(self._client.connect_call, to, sdp, **kwargs)
        return response.call_id

    async def terminate(self, call_id: str) -> None:
        await asyncio.to_thread(self._client.terminate_call, call_id)


def _with_recipient(recipient: str | None, options: Mapping[str, object]) -> dict[str, Any]:
    # recipient only when given: a client that predates it keeps working for `to` calls.
    kwargs = dict(options)
    if recipient is not None:
        kwargs["recipient"] = recipient
    return kwargs


class OutboundCall:
    """A business-initiated call placed by :meth:`WebhookReceiver.place_call`, followed
    through the receiver's webhooks (the module docstring has the rules).

    ``await call.answered()`` returns the :class:`CallAnswer` once the user accepted, or raises
    ``CallDeclinedError``, ``CallUnansweredError`` (rang out, ``ringing_timeout``, or hung up
    by you first) or ``CallFailedError`` (with the webhook's ``errors``); ``await
    call.ended()`` gives the :class:`CallOutcome`; ``await call.hangup()`` ends it.
    The ``timeout`` of ``answered``/``ended`` bounds only that wait (``TimeoutError``); the
    call goes on.
    """

    def __init__(
        self,
        *,
        call_id: str,
        user: str,
        actions: OutboundActions,
        ringing_timeout: float | None,
        sleep: Sleep,
        on_over: Callable[[OutboundCall], None],
    ) -> None:
        self.call_id = call_id
        self.user = user
        self._actions = actions
        self._ringing_timeout = ringing_timeout
        self._sleep = sleep
        self._on_over = on_over
        self._answer: CallAnswer | None = None
        self._outcome: CallOutcome | None = None
        # Decided by us (hangup, ringing_timeout) before the call is over: no answer counts.
        self._giving_up: CallOutcome | None = None
        self._ended_by_webhook = False
        self._terminated = False  # our terminate request succeeded
        self._errors: tuple[WebhookError, ...] = ()
        self._terminate_event: CallTerminateEvent | None = None
        self._accepted_status = False
        self._closed: Callable[[], BaseException] | None = None
        self._decided = asyncio.Event()  # answered, or known not to be
        self._over = asyncio.Event()
        self._hangup_lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        # The receiver's topics for this call (its webhooks that land on other workers).
        self.watched: list[str] = []

    def __repr__(self) -> str:
        return f"<OutboundCall {self.call_id} {self.state}>"

    # -- what is known ------------------------------------------------------------------

    @property
    def state(self) -> OutboundCallState:
        if self._outcome is not None:
            return OutboundCallState.ENDED
        if self._answer is not None:
            return OutboundCallState.ANSWERED
        return OutboundCallState.RINGING

    @property
    def outcome(self) -> CallOutcome | None:
        """How the call ended; ``None`` while it goes on."""
        return self._outcome

    @property
    def answer(self) -> CallAnswer | None:
        return self._answer

    @property
    def errors(self) -> tuple[WebhookError, ...]:
        """The terminate webhook's errors (a failed call's reasons)."""
        return self._errors

    @property
    def terminate_event(self) -> CallTerminateEvent | None:
        return self._terminate_event

    @property
    def accepted_status_seen(self) -> bool:
        """Whether the ``ACCEPTED`` status (sent for auditing) arrived."""
        return self._accepted_status

    # -- waiting ------------------------------------------------------------------------

    async def answered(self, timeout: float | None = None) -> CallAnswer:
        """The user's answer once they accepted; raises the true outcome otherwise (see the
        class). ``timeout`` bounds this wait only: ``TimeoutError``, the call goes on."""
        await self._wait(self._decided, check_timeout("timeout", timeout), "answered")
        if self._answer is not None:
            return self._answer
        outcome = self._outcome or self._giving_up
        if outcome is None:
            assert self._closed is not None
            raise self._closed()
        raise self._not_answered(outcome)

    async def ended(self, timeout: float | None = None) -> CallOutcome:
        """The outcome once the call is over. ``timeout`` bounds this wait only."""
        await self._wait(self._over, check_timeout("timeout", timeout), "over")
        if self._outcome is None:
            assert self._closed is not None
            raise self._closed()
        return self._outcome

    async def hangup(self) -> None:
        """End the call (``terminate``). Skips the API call when the call is over already,
        and is idempotent. If the request fails and the call did not end meanwhile, the
        error is raised and a later ``hangup()`` tries again."""
        async with self._hangup_lock:
            if self._ended_by_webhook or self._terminated:
                return
            if self._answer is None and self._giving_up is None:
                self._giving_up = CallOutcome.CANCELLED  # answered() can no longer return
                self._decided.set()
            try:
                await self._actions.terminate(self.call_id)
            except BaseException:
                if self._over_by_webhook():
                    return  # it ended meanwhile (the user hung up): nothing left to end
                raise
            self._terminated = True
            self._finish(CallOutcome.COMPLETED if self._answer is not None else self._giving_up)

    async def _wait(self, event: asyncio.Event, timeout: float | None, what: str) -> None:
        if event.is_set():
            return
        if timeout is None:
            await event.wait()
            return
        waiting = asyncio.ensure_future(event.wait())
        sleeper = asyncio.ensure_future(self._sleep(timeout))
        try:
            await asyncio.wait({waiting, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()
            sleeper.cancel()
        if not event.is_set():
            raise TimeoutError(f"call {self.call_id} not {what} within {timeout:g} s")

    def _not_answered(self, outcome: CallOutcome) -> CallNotAnsweredError:
        call_id, errors = self.call_id, self._errors
        if outcome is CallOutcome.DECLINED:
            return CallDeclinedError(
                f"call {call_id} was declined", call_id=call_id, outcome=outcome, errors=errors
            )
        if outcome is CallOutcome.NOT_ANSWERED:
            return CallUnansweredError(
                f"call {call_id} was not answered", call_id=call_id, outcome=outcome, errors=errors
            )
        if outcome is CallOutcome.CANCELLED:
            return CallUnansweredError(
                f"call {call_id} was hung up before it was answered",
                call_id=call_id,
                outcome=outcome,
                errors=errors,
            )
        if outcome is CallOutcome.FAILED:
            text = "; ".join(f"{e.code}: {e.text}"[:200] for e in errors[:4]) or "no details"
            return CallFailedError(
                f"call {call_id} failed ({text})", call_id=call_id, outcome=outcome, errors=errors
            )
        return CallNotAnsweredError(
            f"call {call_id} ended before its answer (the connect webhook) arrived",
            call_id=call_id,
            outcome=outcome,
            errors=errors,
        )

    # -- fed by the receiver (on its loop) ----------------------------------------------

    def start(self) -> None:
        """Start the ringing timer (after the events that came before the call id)."""
        if self._ringing_timeout is not None and self.state is OutboundCallState.RINGING:
            self._timer = asyncio.ensure_future(self._ring_out(self._ringing_timeout))

    def feed(self, event: WebhookEvent) -> None:
        if self._outcome is not None:
            return  # over: nothing changes it (a late connect above all)
        if isinstance(event, CallConnectEvent):
            self._connected(event)
        elif isinstance(event, CallStatusEvent):
            if event.status == CallStatus.ACCEPTED:
                self._accepted_status = True
            elif event.status == CallStatus.REJECTED and self._answer is None:
                self._ended_by_webhook = True
                self._finish(self._giving_up or CallOutcome.DECLINED)
        elif isinstance(event, CallTerminateEvent):
            self._ended_by_webhook = True
            self._terminate_event = event
            self._errors = event.errors
            self._finish(self._terminated_outcome(event))

    def _connected(self, event: CallConnectEvent) -> None:
        if event.is_inbound or self._answer is not None or self._giving_up is not None:
            return
        if not event.sdp:
            _log.warning("connect webhook of call %s without an SDP answer: ignored", self.call_id)
            return
        self._answer = CallAnswer(event.sdp, event)
        self._stop_timer()
        self._decided.set()

    def _terminated_outcome(self, event: CallTerminateEvent) -> CallOutcome:
        if self._answer is not None:
            return CallOutcome.FAILED if event.failed else CallOutcome.COMPLETED
        if self._giving_up is not None:
            return self._giving_up
        if event.failed or event.errors:
            return CallOutcome.FAILED
        reason = (event.terminate_reason or "").casefold()
        if "reject" in reason or "declin" in reason:
            return CallOutcome.DECLINED
        if event.answered:
            return CallOutcome.COMPLETED  # picked up, but the answer never reached us
        return CallOutcome.NOT_ANSWERED

    async def _ring_out(self, seconds: float) -> None:
        await self._sleep(seconds)
        if self._answer is not None or self._outcome is not None or self._giving_up is not None:
            return
        self._giving_up = CallOutcome.NOT_ANSWERED
        self._decided.set()
        self._timer = None  # this task is ending: not one to cancel
        try:
            await self._actions.terminate(self.call_id)
        except Exception as exc:  # the call may ring on (hangup() tries again); the outcome stands
            if not self._ended_by_webhook:
                _log.warning(
                    "could not terminate call %s after its ringing_timeout: %s: %.200s",
                    self.call_id,
                    type(exc).__name__,
                    exc,
                )
        else:
            self._terminated = True
        self._finish(CallOutcome.NOT_ANSWERED)

    def _over_by_webhook(self) -> bool:
        # A method, not the attribute: it changes while a request is out.
        return self._ended_by_webhook

    def _stop_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    def _finish(self, outcome: CallOutcome | None) -> None:
        if self._outcome is not None or outcome is None:
            return
        self._outcome = outcome
        self._stop_timer()
        self._decided.set()
        self._over.set()
        self._on_over(self)

    def close(self, error: Callable[[], BaseException]) -> None:
        """The receiver is closing: waits end with ``error()``; the call itself is left as
        it is (nothing is sent)."""
        if self._outcome is not None:
            return
        self._closed = error
        self._stop_timer()
        self._decided.set()
        self._over.set()
