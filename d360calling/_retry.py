"""When to retry and how long to wait: one pure decision per attempt, no I/O.

The rules follow the kind of call, not only the status:

* ``IDEMPOTENT`` - reads and settings updates: retried on connection errors, timeouts,
  408, 429, 5xx, 360dialog's "rate limit" 400 and Meta's throttling codes.
* ``CONNECT`` - placing a call or sending a message: retried only when the request certainly
  never left the process (no connection, or none free in the pool). A duplicate call is worse
  than an error, and a message sent twice is two (billed) messages.
* ``ANSWER_SIDE`` - pre_accept/accept/reject/terminate: retried like ``IDEMPOTENT`` but never
  past the deadline. After an attempt whose answer was lost, a retry refused as a repeat
  (400/404/409) is reported as "may have succeeded", not as the action having failed.

:func:`decide` is the whole rulebook; the client's loop only carries out what it returns.
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections.abc import Awaitable, Callable

import attrs

from ._constants import DEFAULT_MAX_RETRY_AFTER, INITIAL_RETRY_DELAY, MAX_RETRY_DELAY
from ._validation import finite_float
from .errors import (
    APIConnectionError,
    APIStatusError,
    D360Error,
    InvalidRequestError,
    RateLimitError,
)

__all__ = ("AttemptBudget", "CallKind", "GiveUp", "Retry", "RetryPolicy", "budget", "decide")

_RETRY_STATUSES = frozenset({408, 500, 502, 503, 504})
# What repeating a call action that already took effect gets: a plain refusal, not throttling.
_REPEAT_REFUSALS = frozenset({400, 404, 409})
# A retry always gets at least this long, so a deadline reached mid-sleep still means one
# real try rather than a timeout before anything is sent.
_MIN_ATTEMPT = 0.001


class CallKind(enum.Enum):
    """How a call may be repeated; each public method passes its own down."""

    CONNECT = "connect"
    ANSWER_SIDE = "answer_side"
    IDEMPOTENT = "idempotent"


def _non_negative(name: str) -> Callable[[object, attrs.Attribute[float], float], None]:
    def check(_: object, __: attrs.Attribute[float], value: float) -> None:
        number = finite_float(value)  # None for NaN, infinity, a bool, a non-number
        if number is None or number < 0:
            raise InvalidRequestError(
                f"RetryPolicy.{name} must be a finite number >= 0, got {value!r:.40}"
            )

    return check


def _fraction(_: object, __: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise InvalidRequestError(f"RetryPolicy.jitter must be between 0 and 1, got {value!r:.40}")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """Backoff ``min(initial * 2**attempt, maximum)``, minus up to ``jitter`` of it at random;
    a ``Retry-After`` up to ``max_retry_after`` seconds is honoured instead.

    ``sleep`` and ``clock`` (monotonic seconds) are what the retry loop waits with and reads
    deadlines from; tests pass their own to check delays without waiting for them.
    """

    initial_delay: float = attrs.field(
        default=INITIAL_RETRY_DELAY, validator=_non_negative("initial_delay")
    )
    max_delay: float = attrs.field(default=MAX_RETRY_DELAY, validator=_non_negative("max_delay"))
    jitter: float = attrs.field(default=0.25, validator=_fraction)
    max_retry_after: float = attrs.field(
        default=DEFAULT_MAX_RETRY_AFTER, validator=_non_negative("max_retry_after")
    )
    random: random.Random = attrs.field(factory=random.Random, eq=False, repr=False)
    sleep: Callable[[float], Awaitable[None]] = attrs.field(
        default=asyncio.sleep, eq=False, repr=False
    )
    clock: Callable[[], float] = attrs.field(default=time.monotonic, eq=False, repr=False)

    def delay(self, error: D360Error, attempt: int) -> float | None:
        """Seconds to wait before retry number ``attempt + 1``; ``None``: do not retry, because
        the server asked for a wait longer than ``max_retry_after``."""
        if isinstance(error, APIStatusError):
            asked = error.retry_after
            if asked is not None:
                return asked if asked <= self.max_retry_after else None
        base = min(self.initial_delay * 2.0**attempt, self.max_delay)
        return base * (1.0 - self.jitter * self.random.random())


@attrs.frozen
class Retry:
    """Wait ``after`` seconds, then try again. ``lost_answer`` is carried to the next decision:
    an earlier attempt that may have taken effect although its answer never came."""

    after: float
    lost_answer: APIConnectionError | None = None


@attrs.frozen
class GiveUp:
    """Raise ``error``: the call is over."""

    error: D360Error


@attrs.frozen
class AttemptBudget:
    """How long the next attempt may take, and may wait for a pooled connection (``None``:
    the transport's own bound)."""

    timeout: float
    pool_timeout: float | None


def _retryable(error: D360Error, kind: CallKind) -> bool:
    """Could repeating the request help, and is it safe for this kind of call?"""
    if isinstance(error, APIConnectionError):
        return kind is not CallKind.CONNECT or not error.request_may_have_been_sent
    if kind is CallKind.CONNECT or not isinstance(error, APIStatusError):
        return False  # includes a body refused for its size: asking again gets the same
    return isinstance(error, RateLimitError) or error.status_code in _RETRY_STATUSES


def decide(
    error: D360Error,
    kind: CallKind,
    attempt: int,
    *,
    max_retries: int,
    deadline: float | None,
    now: float,
    policy: RetryPolicy,
    lost_answer: APIConnectionError | None = None,
) -> Retry | GiveUp:
    """What to do after attempt number ``attempt`` (0-based) of a ``kind`` call ended in
    ``error``, at ``now`` on ``policy.clock``; ``deadline`` is on the same clock."""
    if lost_answer is not None and _is_repeat_refusal(error):
        return GiveUp(_outcome_unknown(lost_answer, error))
    if attempt >= max_retries or not _retryable(error, kind):
        return GiveUp(error)
    delay = policy.delay(error, attempt)
    if delay is None or (deadline is not None and now + delay >= deadline):
        return GiveUp(error)
    if (
        kind is CallKind.ANSWER_SIDE
        and isinstance(error, APIConnectionError)
        and error.request_may_have_been_sent
    ):
        lost_answer = error
    return Retry(delay, lost_answer)


def budget(attempt: int, *, timeout: float, deadline: float | None, now: float) -> AttemptBudget:
    """The first attempt always gets its full ``timeout`` (the deadline may come from a clock
    we do not share); a retry never runs past the deadline."""
    if deadline is None or attempt == 0:
        return AttemptBudget(timeout, None)
    left = max(deadline - now, _MIN_ATTEMPT)
    return AttemptBudget(min(timeout, left), left)


def _is_repeat_refusal(error: D360Error) -> bool:
    return (
        isinstance(error, APIStatusError)
        and error.status_code in _REPEAT_REFUSALS
        and not isinstance(error, RateLimitError)
    )


def _outcome_unknown(lost: APIConnectionError, refused: D360Error) -> APIConnectionError:
    lost_text = str(lost).removesuffix(f" ({lost.method} {lost.path})")
    outcome = APIConnectionError(
        f"{lost_text}; the retry was refused ({refused}), which is what repeating an action "
        "that already took effect gets: the action may have succeeded",
        method=lost.method,
        path=lost.path,
        request_may_have_been_sent=True,
    )
    outcome.__cause__ = refused
    return outcome
