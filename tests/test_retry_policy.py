"""The pure retry decisions: backoff shape and jitter, Retry-After parsing, and which errors
each kind of call retries."""

from __future__ import annotations

import email.utils
import random

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from d360calling import RetryPolicy
from d360calling._headers import parse_retry_after
from d360calling._retry import Resend
from d360calling.errors import (
    APIConnectionError,
    APITimeoutError,
    error_from_response,
)

NOW = 1_800_000_000.0


def hdrs(**values: str) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict({k.replace("_", "-"): v for k, v in values.items()}))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry_after": "3"}, 3.0),
        ({"retry_after": " 1.5 "}, 1.5),
        ({"Retry-After": "0"}, 0.0),
        ({"retry_after": "-4"}, 0.0),
        ({"retry_after": "inf"}, None),
        ({"retry_after": "nan"}, None),
        ({"retry_after": "soon"}, None),
        ({"retry_after_ms": "250", "retry_after": "9"}, 0.25),
        ({"retry_after_ms": "junk", "retry_after": "9"}, 9.0),
        ({"retry_after": email.utils.formatdate(NOW + 30, usegmt=True)}, 30.0),
        ({"retry_after": email.utils.formatdate(NOW - 30, usegmt=True)}, 0.0),
        ({"retry_after": "Wed, 21 Oct 2015 07:28:00"}, None),  # no zone: not an HTTP date
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(hdrs(**headers), now=NOW) == expected


def test_backoff_doubles_up_to_the_cap_with_bounded_jitter() -> None:
    policy = RetryPolicy(initial_delay=0.5, max_delay=8.0, jitter=0.25, random=random.Random(7))
    error = APIConnectionError("x", method="GET", path="/", request_may_have_been_sent=True)
    for attempt, base in enumerate([0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]):
        delays = {policy.delay(error, attempt) for _ in range(50)}
        assert all(d is not None and base * 0.75 <= d <= base for d in delays)
        assert len(delays) > 1  # jittered, not fixed


def test_no_jitter_gives_exact_delays() -> None:
    policy = RetryPolicy(initial_delay=0.1, max_delay=1.0, jitter=0)
    error = APITimeoutError("x", method="GET", path="/", request_may_have_been_sent=True)
    assert [policy.delay(error, n) for n in range(5)] == [0.1, 0.2, 0.4, 0.8, 1.0]


def test_retry_after_wins_over_backoff_up_to_the_cap() -> None:
    policy = RetryPolicy(max_retry_after=60)
    asked = error_from_response(429, hdrs(retry_after="42"), b"", method="GET", path="/")
    too_long = error_from_response(429, hdrs(retry_after="61"), b"", method="GET", path="/")
    assert policy.delay(asked, 0) == 42.0
    assert policy.delay(too_long, 0) is None


@pytest.mark.parametrize(
    ("status", "body", "resendable"),
    [
        (429, b"", True),
        (500, b"", True),
        (502, b"", True),
        (503, b"", True),
        (504, b"", True),
        (408, b"", True),
        (400, b'{"error": "You have exceeded the endpoint rate limit."}', True),
        (400, b'{"error": {"message": "x", "code": 613}}', True),
        (400, b'{"error": "bad"}', False),
        (401, b"", False),
        (403, b"", False),
        (404, b"", False),
        (501, b"", False),
    ],
)
def test_which_statuses_are_retried(status: int, body: bytes, resendable: bool) -> None:
    policy = RetryPolicy()
    error = error_from_response(status, hdrs(), body, method="POST", path="/calling/calls")
    assert policy.is_retryable(error, Resend.RESENDABLE) is resendable
    # connect is never re-sent once the server answered, whatever the answer.
    assert policy.is_retryable(error, Resend.NEVER_RESENT) is False


@pytest.mark.parametrize("sent", [True, False])
def test_connection_errors_retry_for_connect_only_when_not_sent(sent: bool) -> None:
    policy = RetryPolicy()
    for cls in (APIConnectionError, APITimeoutError):
        error = cls("x", method="POST", path="/", request_may_have_been_sent=sent)
        assert policy.is_retryable(error, Resend.RESENDABLE)
        assert policy.is_retryable(error, Resend.NEVER_RESENT) is not sent
