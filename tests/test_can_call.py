"""can_call: one permissions read turned into a decision (may I call, why not, what next),
from the limits the API reports and a clock the test controls."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from d360calling import (
    AsyncClient,
    CallDecision,
    CallDecisionReason,
    CallNextStep,
    Client,
    InvalidRequestError,
)
from d360calling._converter import decode
from d360calling.models import CallPermissions
from d360calling.testing import FakeCallingAPI

from .capture import Capture
from .helpers import USER

NOW = 1_800_000_000  # 2027-01-15T08:00:00Z
UTC = datetime.timezone.utc
BSUID = "US.13491208655302741918"


def at(unix: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(unix, UTC)


def limit(period: str, allowed: int, used: int, until: int | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"time_period": period, "max_allowed": allowed, "current_usage": used}
    if until is not None:
        entry["limit_expiration_time"] = until
    return entry


def permissions(
    status: str,
    *,
    expiration: int | None = None,
    ask: tuple[bool, list[dict[str, Any]]] | None = (True, []),
    start: tuple[bool, list[dict[str, Any]]] | None = (True, []),
) -> CallPermissions:
    permission: dict[str, Any] = {"status": status}
    if expiration is not None:
        permission["expiration_time"] = expiration
    actions = []
    if ask is not None:
        actions.append(
            {
                "action_name": "send_call_permission_request",
                "can_perform_action": ask[0],
                "limits": ask[1],
            }
        )
    if start is not None:
        actions.append(
            {"action_name": "start_call", "can_perform_action": start[0], "limits": start[1]}
        )
    body = {"messaging_product": "whatsapp", "permission": permission, "actions": actions}
    return decode(CallPermissions, body, strict=True)


def decide(p: CallPermissions, now: float = NOW) -> CallDecision:
    return CallDecision.from_permissions(p, now=now)


def summary(d: CallDecision) -> tuple[Any, ...]:
    return (d.allowed, d.reason, d.next_step, d.retry_at, d.until, d.can_request_permission)


# -- the decision -----------------------------------------------------------------------------


def test_a_temporary_permission_with_room_allows_a_call() -> None:
    p = permissions("temporary", expiration=NOW + 1, ask=(True, [limit("PT24H", 1, 0)]))
    d = decide(p)
    assert summary(d) == (True, None, CallNextStep.CALL, None, None, True)
    assert d.permissions is p


def test_a_permanent_permission_allows_a_call_and_no_request() -> None:
    d = decide(permissions("permanent", ask=(False, [])))
    assert summary(d) == (True, None, CallNextStep.CALL, None, None, False)


@pytest.mark.parametrize(
    ("expiration", "expired"), [(NOW - 3600, True), (NOW, True), (NOW + 1, False)]
)
def test_a_temporary_permission_expires_at_its_expiration_time(
    expiration: int, expired: bool
) -> None:
    # The API still says "temporary" and even that a call may start: the read is older
    # than the clock.
    d = decide(permissions("temporary", expiration=expiration))
    if expired:
        assert summary(d) == (
            False,
            CallDecisionReason.EXPIRED,
            CallNextStep.SEND_PERMISSION_REQUEST,
            None,
            None,
            True,
        )
    else:
        assert d.allowed


def test_no_permission_means_send_a_request() -> None:
    d = decide(permissions("no_permission", start=(False, [])))
    assert summary(d) == (
        False,
        CallDecisionReason.NO_PERMISSION,
        CallNextStep.SEND_PERMISSION_REQUEST,
        None,
        None,
        True,
    )


def test_the_call_limit_says_until_when() -> None:
    # Not the documented 100: whatever the API reports is what counts.
    start = (False, [limit("PT24H", 7, 7, until=NOW + 5000)])
    d = decide(permissions("temporary", expiration=NOW + 10_000, start=start))
    assert summary(d) == (
        False,
        CallDecisionReason.CALL_LIMIT_REACHED,
        CallNextStep.WAIT_UNTIL,
        at(NOW + 5000),
        at(NOW + 5000),
        True,
    )
    assert d.retry_at is not None
    assert d.retry_at.tzinfo is not None


def test_the_request_limit_waits_for_the_latest_of_the_used_up_limits() -> None:
    ask = (
        False,
        [
            limit("PT24H", 1, 1, until=NOW + 100),
            limit("P7D", 2, 2, until=NOW + 90_000),
            limit("P30D", 9, 3),  # room left: not what blocks
        ],
    )
    d = decide(permissions("no_permission", ask=ask, start=(False, [])))
    assert summary(d) == (
        False,
        CallDecisionReason.REQUEST_LIMIT_REACHED,
        CallNextStep.WAIT_UNTIL,
        at(NOW + 90_000),
        at(NOW + 90_000),
        False,
    )


def test_a_used_up_limit_without_an_end_means_no_next_step() -> None:
    ask = (False, [limit("PT24H", 1, 1, until=NOW + 100), limit("P7D", 2, 2)])
    d = decide(permissions("no_permission", ask=ask))
    assert summary(d) == (
        False,
        CallDecisionReason.REQUEST_LIMIT_REACHED,
        CallNextStep.NONE,
        None,
        None,
        False,
    )


def test_an_expired_permission_that_cannot_be_asked_again() -> None:
    ask = (False, [limit("P7D", 2, 2, until=NOW + 60)])
    d = decide(permissions("temporary", expiration=NOW - 1, ask=ask))
    assert (d.reason, d.next_step, d.retry_at) == (
        CallDecisionReason.REQUEST_LIMIT_REACHED,
        CallNextStep.WAIT_UNTIL,
        at(NOW + 60),
    )


def test_a_refusal_without_a_used_up_limit_is_unknown() -> None:
    d = decide(permissions("permanent", start=(False, [limit("PT24H", 100, 3)])))
    assert summary(d)[:4] == (False, CallDecisionReason.UNKNOWN, CallNextStep.NONE, None)


def test_actions_the_api_left_out_are_not_taken_as_limited() -> None:
    assert decide(permissions("temporary", expiration=NOW + 60, ask=None, start=None)).allowed
    d = decide(permissions("no_permission", ask=None, start=None))
    assert (d.next_step, d.can_request_permission) == (CallNextStep.SEND_PERMISSION_REQUEST, True)


def test_an_unknown_status_is_not_a_permission() -> None:
    d = decide(permissions("pending_review"))
    assert (d.allowed, d.reason, d.next_step) == (
        False,
        CallDecisionReason.UNKNOWN,
        CallNextStep.SEND_PERMISSION_REQUEST,
    )


def test_a_limit_end_no_datetime_can_hold_is_no_end() -> None:
    start = (False, [limit("PT24H", 1, 1, until=10**20)])
    d = decide(permissions("permanent", start=start))
    assert (d.reason, d.next_step, d.until) == (
        CallDecisionReason.CALL_LIMIT_REACHED,
        CallNextStep.NONE,
        None,
    )


limits = st.builds(
    limit,
    st.sampled_from(["PT24H", "P7D"]),
    st.integers(0, 5),
    st.integers(0, 6),
    st.one_of(st.none(), st.integers(-(10**12), 10**14)),
)
actions = st.one_of(st.none(), st.tuples(st.booleans(), st.lists(limits, max_size=3)))


@given(
    status=st.sampled_from(["no_permission", "temporary", "permanent", "granted"]),
    expiration=st.one_of(st.none(), st.integers(0, 2 * NOW)),
    ask=actions,
    start=actions,
    now=st.integers(0, 2 * NOW),
)
def test_every_read_gives_a_consistent_decision(
    status: str, expiration: int | None, ask: Any, start: Any, now: int
) -> None:
    d = decide(permissions(status, expiration=expiration, ask=ask, start=start), now)
    assert d.allowed is (d.reason is None) is (d.next_step is CallNextStep.CALL)
    assert (d.retry_at is not None) is (d.next_step is CallNextStep.WAIT_UNTIL)
    if d.retry_at is not None:
        assert d.retry_at.tzinfo is not None
        assert d.retry_at == d.until
    if d.next_step is CallNextStep.SEND_PERMISSION_REQUEST:
        assert d.can_request_permission


# -- the client: one read, the user's path, the clock ------------------------------------------


def answer(status: str, expiration: int | None = None) -> dict[str, Any]:
    permission: dict[str, Any] = {"status": status}
    if expiration is not None:
        permission["expiration_time"] = expiration
    return {
        "messaging_product": "whatsapp",
        "permission": permission,
        "actions": [
            {"action_name": "send_call_permission_request", "can_perform_action": True},
            {"action_name": "start_call", "can_perform_action": True},
        ],
    }


@pytest.mark.asyncio
async def test_can_call_is_one_read_at_the_users_path(
    wire: Capture, wire_client: AsyncClient
) -> None:
    wire.reply(json=answer("permanent"))
    wire.reply(json=answer("permanent"))
    assert (await wire_client.can_call("+" + USER)).allowed
    assert (await wire_client.can_call(BSUID)).allowed
    assert [(r.method, r.path, r.body) for r in wire.requests] == [
        ("GET", f"/calling/permissions/{USER}", b""),
        ("GET", f"/calling/permissions/{BSUID}", b""),  # [UNCERTAIN] api-2026 §5: as given
    ]


@pytest.mark.parametrize(
    "now",
    [
        NOW + 10,
        at(NOW + 10),
        datetime.datetime(
            2027, 1, 15, 9, 0, 10, tzinfo=datetime.timezone(datetime.timedelta(hours=1))
        ),
    ],
)
@pytest.mark.asyncio
async def test_the_clock_is_the_callers(
    wire: Capture, wire_client: AsyncClient, now: float | datetime.datetime
) -> None:
    wire.reply(json=answer("temporary", expiration=NOW + 10))
    wire.reply(json=answer("temporary", expiration=NOW + 10))
    assert (await wire_client.can_call(USER, now=now)).reason is CallDecisionReason.EXPIRED
    assert (await wire_client.can_call(USER, now=NOW + 9)).allowed


@pytest.mark.asyncio
async def test_without_a_clock_it_is_now(wire: Capture, wire_client: AsyncClient) -> None:
    wire.reply(json=answer("temporary", expiration=1))  # 1970
    wire.reply(json=answer("temporary", expiration=4_000_000_000))  # 2096
    assert (await wire_client.can_call(USER)).reason is CallDecisionReason.EXPIRED
    assert (await wire_client.can_call(USER)).allowed


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"user": "abc"}, "user must be a phone number"),
        ({"user": "123/../settings"}, "user must be a phone number"),
        ({"user": "US.123/.."}, "user must be a phone number"),
        ({"user": None}, "user must be a phone number"),
        ({"user": USER, "now": datetime.datetime(2027, 1, 1)}, "timezone-aware"),
        ({"user": USER, "now": "soon"}, "now must be"),
        ({"user": USER, "now": float("nan")}, "now must be"),
        ({"user": USER, "now": -1}, "now must be"),
        ({"user": USER, "now": True}, "now must be"),
        ({"user": USER, "timeout": 0}, "timeout"),
    ],
)
@pytest.mark.asyncio
async def test_bad_input_is_refused_before_the_read(
    wire: Capture, wire_client: AsyncClient, kwargs: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(InvalidRequestError, match=fragment):
        await wire_client.can_call(**kwargs)
    assert wire.requests == []


@pytest.mark.asyncio
async def test_get_call_permissions_takes_a_business_scoped_id_too(
    wire: Capture, wire_client: AsyncClient
) -> None:
    wire.reply(json=answer("no_permission"))
    p = await wire_client.get_call_permissions("US.ENT.11815799212886844830")
    assert p.permission.status == "no_permission"
    assert wire.requests[0].path == "/calling/permissions/US.ENT.11815799212886844830"


# -- against the fake -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_can_call_against_the_fake(api: FakeCallingAPI, client: AsyncClient) -> None:
    granted = await client.can_call(USER)  # the fixture's user has a temporary permission
    assert (granted.allowed, granted.next_step) == (True, CallNextStep.CALL)
    stranger = await client.can_call("4915100000077")
    assert (stranger.reason, stranger.next_step) == (
        CallDecisionReason.NO_PERMISSION,
        CallNextStep.SEND_PERMISSION_REQUEST,
    )
    expiry = granted.permissions.permission.expiration_time
    assert expiry is not None
    later = await client.can_call(USER, now=expiry + 1)
    assert later.reason is CallDecisionReason.EXPIRED


def test_sync_can_call(api: FakeCallingAPI, sync_client: Client) -> None:
    assert sync_client.can_call(USER).allowed
    assert not sync_client.can_call("4915100000077").allowed
    with pytest.raises(InvalidRequestError, match="user"):
        sync_client.can_call("nobody")
