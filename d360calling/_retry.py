"""When to retry and how long to wait: pure decisions, no I/O.

Retry semantics follow the call, not only the status:

* ``RESENDABLE`` - reads and settings updates: retried on connection errors, timeouts,
  408, 429, 5xx, 360dialog's "rate limit" 400 and Meta's throttling codes.
* ``NEVER_RESENT`` - ``connect``: retried only when the connection could not be
  established, so the server cannot have seen the request. A duplicate call is worse
  than an error.
* Answer-side actions are ``RESENDABLE`` but carry a deadline: no retry starts after it.
"""

from __future__ import annotations

import enum
import random

import attrs

from ._constants import (
    DEFAULT_MAX_RETRY_AFTER,
    INITIAL_RETRY_DELAY,
    MAX_RETRY_DELAY,
)
from .errors import APIConnectionError, APIError, D360Error, RateLimitError

__all__ = ("Resend", "RetryPolicy")

_RETRY_STATUSES = frozenset({408, 500, 502, 503, 504})


class Resend(enum.Enum):
    RESENDABLE = "resendable"
    NEVER_RESENT = "never_resent"


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """Backoff ``min(initial * 2**attempt, maximum)``, minus up to ``jitter`` of it at random."""

    initial_delay: float = INITIAL_RETRY_DELAY
    max_delay: float = MAX_RETRY_DELAY
    jitter: float = 0.25
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER
    random: random.Random = attrs.field(factory=random.Random, eq=False, repr=False)

    def is_retryable(self, error: D360Error, resend: Resend) -> bool:
        if isinstance(error, APIConnectionError):
            return resend is Resend.RESENDABLE or not error.request_may_have_been_sent
        if resend is Resend.NEVER_RESENT:
            return False
        if isinstance(error, RateLimitError):
            return True
        return isinstance(error, APIError) and error.status in _RETRY_STATUSES

    def delay(self, error: D360Error, attempt: int) -> float | None:
        """Seconds to wait before retry number ``attempt + 1``; ``None``: do not retry, because
        the server asked for a wait longer than ``max_retry_after``."""
        if isinstance(error, APIError):
            asked = error.retry_after
            if asked is not None:
                return asked if asked <= self.max_retry_after else None
        base = min(self.initial_delay * 2.0**attempt, self.max_delay)
        return base * (1.0 - self.jitter * self.random.random())
