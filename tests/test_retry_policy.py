"""The pure retry decisions: backoff shape and jitter, Retry-After parsing, and the retry
table - every rule of decide() is one row of one table test."""

from __future__ import annotations

import email.utils
import random

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from d360calling import CallKind, InvalidRequestError, RetryPolicy
from d360calling._headers import parse_retry_after
from d360calling._retry import AttemptBudget, GiveUp, Retry, budget, decide
from d360calling.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    D360Error,
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
        ({"retry_after": "1.5"}, 1.5),
        ({"Retry-After": "0"}, 0.0),
        ({"retry_after": "inf"}, None),
        ({"retry_after": "nan"}, None),
        ({"retry_after": "soon"}, None),
        # Only ASCII digits with an optional fraction: what float() also takes is ignored.
        ({"retry_after": "-4"}, None),
        ({"retry_after": " 1.5 "}, None),
        ({"retry_after": "1_0"}, None),
        ({"retry_after": "+1"}, None),
        ({"retry_after": "\u0661"}, None),
        ({"retry_after": "1e3"}, None),
        ({"retry_after": "1."}, None),
        ({"retry_after": "9" * 400}, None),
        ({"retry_after_ms": "1_000", "retry_after": "2"}, 2.0),
        ({"retry_after": "Fri, 31 Dec 99999 23:59:59 GMT"}, None),
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


def err(status: int, body: bytes = b"", **headers: str) -> APIStatusError:
    return error_from_response(status, hdrs(**headers), body, method="POST", path="/calling/calls")


def conn(sent: bool, cls: type[APIConnectionError] = APIConnectionError) -> APIConnectionError:
    return cls("reset", method="POST", path="/calling/calls", request_may_have_been_sent=sent)


LOST = conn(True)
RATE_400 = b'{"error": "You have exceeded the endpoint rate limit."}'
C, A, R = CallKind.CONNECT, CallKind.ANSWER_SIDE, CallKind.IDEMPOTENT  # R: reads, updates
RETRY_05 = Retry(0.5)
GIVE_UP = "give up"  # with the attempt's own error
UNKNOWN = "outcome unknown"  # an APIConnectionError that says the action may have succeeded

# The whole rulebook of decide(): one row per rule. Policy: 0.5 s doubling, no jitter,
# max_retries 2 unless the row says otherwise, no deadline unless given (clock at 100).
RULES: list[tuple[str, CallKind, D360Error, dict[str, object], object]] = [
    # Which errors are worth repeating, for reads/updates and answer-side actions.
    ("idempotent: reset", R, conn(True), {}, RETRY_05),
    ("idempotent: timeout", R, conn(True, APITimeoutError), {}, RETRY_05),
    ("idempotent: never connected", R, conn(False), {}, RETRY_05),
    ("idempotent: 408", R, err(408), {}, RETRY_05),
    ("idempotent: 429", R, err(429), {}, RETRY_05),
    ("idempotent: 500", R, err(500), {}, RETRY_05),
    ("idempotent: 502", R, err(502), {}, RETRY_05),
    ("idempotent: 503", R, err(503), {}, RETRY_05),
    ("idempotent: 504", R, err(504), {}, RETRY_05),
    ("idempotent: 360dialog rate-limit 400", R, err(400, RATE_400), {}, RETRY_05),
    ("idempotent: Meta throttling code", R, err(400, b'{"error": {"code": 613}}'), {}, RETRY_05),
    ("idempotent: plain 400", R, err(400, b'{"error": "bad"}'), {}, GIVE_UP),
    ("idempotent: 401", R, err(401), {}, GIVE_UP),
    ("idempotent: 403", R, err(403), {}, GIVE_UP),
    ("idempotent: 404", R, err(404), {}, GIVE_UP),
    ("idempotent: 501", R, err(501), {}, GIVE_UP),
    ("answer-side: 503", A, err(503), {}, RETRY_05),
    ("answer-side: reset", A, conn(True), {}, Retry(0.5, conn(True))),
    # connect: only what certainly never left the process.
    ("connect: never connected", C, conn(False), {}, RETRY_05),
    ("connect: reset after sending", C, conn(True), {}, GIVE_UP),
    ("connect: timeout after sending", C, conn(True, APITimeoutError), {}, GIVE_UP),
    ("connect: 429", C, err(429), {}, GIVE_UP),
    ("connect: 503", C, err(503), {}, GIVE_UP),
    # How long to wait.
    ("backoff doubles", R, err(503), {"attempt": 1}, Retry(1.0)),
    ("backoff is capped", R, err(503), {"attempt": 6, "max_retries": 10}, Retry(8.0)),
    ("Retry-After wins", R, err(429, retry_after="3"), {}, Retry(3.0)),
    ("Retry-After over the cap: give up", R, err(429, retry_after="61"), {}, GIVE_UP),
    # How many times.
    ("the last attempt gives up", R, err(503), {"attempt": 2}, GIVE_UP),
    ("max_retries=0 never retries", R, err(503), {"max_retries": 0}, GIVE_UP),
    # Deadlines (answer-side actions carry one).
    ("deadline after the wait", A, err(503), {"deadline": 100.6}, RETRY_05),
    ("deadline before the wait ends", A, err(503), {"deadline": 100.5}, GIVE_UP),
    ("deadline passed", A, err(503), {"deadline": 99.0}, GIVE_UP),
    # After a lost answer, a refusal of the repeat means "may have succeeded".
    ("lost answer, then 400", A, err(400, b'{"error": "bad"}'), {"lost": LOST}, UNKNOWN),
    ("lost answer, then 404", A, err(404), {"lost": LOST}, UNKNOWN),
    ("lost answer, then 409", A, err(409), {"lost": LOST}, UNKNOWN),
    ("lost answer, then 409 on the last try", A, err(409), {"lost": LOST, "attempt": 2}, UNKNOWN),
    ("lost answer, then throttled", A, err(429), {"lost": LOST}, Retry(0.5, LOST)),
    ("lost answer, then 401", A, err(401), {"lost": LOST}, GIVE_UP),
]


@pytest.mark.parametrize(
    ("kind", "error", "given", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in RULES],
)
def test_the_retry_table(
    kind: CallKind, error: D360Error, given: dict[str, object], expected: object
) -> None:
    policy = RetryPolicy(initial_delay=0.5, max_delay=8.0, jitter=0)
    decision = decide(
        error,
        kind,
        int(given.get("attempt", 0)),  # type: ignore[call-overload]
        max_retries=int(given.get("max_retries", 2)),  # type: ignore[call-overload]
        deadline=given.get("deadline"),  # type: ignore[arg-type]
        now=100.0,
        policy=policy,
        lost_answer=given.get("lost"),  # type: ignore[arg-type]
    )
    if expected == GIVE_UP:
        assert decision == GiveUp(error)
    elif expected == UNKNOWN:
        assert isinstance(decision, GiveUp)
        outcome = decision.error
        assert type(outcome) is APIConnectionError
        assert outcome.request_may_have_been_sent
        assert outcome.__cause__ is error
        assert "may have succeeded" in str(outcome)
    else:
        assert isinstance(expected, Retry)
        assert isinstance(decision, Retry)
        assert decision.after == expected.after
        assert (decision.lost_answer is None) == (expected.lost_answer is None)


def test_a_lost_answer_is_carried_forward() -> None:
    """Once an answer-side attempt may have taken effect, later decisions hear of it."""
    policy = RetryPolicy(jitter=0)
    first = decide(conn(True), A, 0, max_retries=3, deadline=None, now=0, policy=policy)
    assert isinstance(first, Retry)
    assert first.lost_answer is not None
    second = decide(
        err(503),
        A,
        1,
        max_retries=3,
        deadline=None,
        now=0,
        policy=policy,
        lost_answer=first.lost_answer,
    )
    assert isinstance(second, Retry)
    assert second.lost_answer is first.lost_answer


@pytest.mark.parametrize(
    ("attempt", "deadline", "now", "expected"),
    [
        (0, None, 0.0, AttemptBudget(10.0, None)),
        (0, 5.0, 4.0, AttemptBudget(10.0, None)),  # the first attempt: its full timeout
        (1, None, 0.0, AttemptBudget(10.0, None)),
        (1, 25.0, 20.0, AttemptBudget(5.0, 5.0)),  # a retry stops at the deadline
        (1, 100.0, 20.0, AttemptBudget(10.0, 80.0)),
        (2, 20.0, 20.5, AttemptBudget(0.001, 0.001)),  # past it: one real try, not none
    ],
)
def test_attempt_budget(
    attempt: int, deadline: float | None, now: float, expected: AttemptBudget
) -> None:
    assert budget(attempt, timeout=10.0, deadline=deadline, now=now) == expected


def test_policy_values_are_checked() -> None:
    with pytest.raises(InvalidRequestError, match="jitter"):
        RetryPolicy(jitter=2)
    with pytest.raises(InvalidRequestError, match="initial_delay"):
        RetryPolicy(initial_delay=-1)
