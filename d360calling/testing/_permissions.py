"""Call permissions and their limits, per WhatsApp user (api-facts §3): what a user allowed,
for how long, how many permission requests and connected calls count against the limits, and
the answer of ``GET /calling/permissions/{wa_id}``. Not thread-safe on its own: the world
calls it under its lock."""

from __future__ import annotations

import re
import secrets
from typing import Any

import attrs

from ._enums import PermissionReplyResponse, PermissionReplySource, PermissionStatus
from ._errors import FakeAPIError

__all__ = (
    "DAY",
    "Limit",
    "MAX_USERS",
    "PermissionReply",
    "Permissions",
    "TEMPORARY_PERMISSION_LIFETIME",
    "UNANSWERED_BEFORE_REVOKE",
    "UserState",
    "WA_ID",
    "WEEK",
)

DAY = 24 * 3600
WEEK = 7 * DAY
TEMPORARY_PERMISSION_LIFETIME = WEEK
UNANSWERED_BEFORE_REVOKE = 4
# Users whose state is kept. A user is stored only once something happened to them (a
# permission, a request, a call); past this many, the least recently seen is forgotten (as
# if it never had a permission), so a hostile client cannot grow the fake without end.
MAX_USERS = 100_000

# A WhatsApp ID as the path of GET /calling/permissions/{id} takes it: the phone number in
# international format, digits only (a leading "+" is tolerated).
WA_ID = re.compile(r"^\+?[0-9]{6,15}$")


@attrs.frozen
class Limit:
    period: str  # ISO 8601, as the API reports it
    seconds: int
    max_allowed: int


@attrs.define(eq=False)
class UserState:
    """One user's permission and the time stamps its limits count."""

    wa_id: str
    permission: PermissionStatus = PermissionStatus.NO_PERMISSION
    expires_at: int | None = None
    permission_requests: list[float] = attrs.field(factory=list)
    connected_calls: list[float] = attrs.field(factory=list)
    unanswered_in_a_row: int = 0
    last_request_id: str | None = None


@attrs.frozen
class PermissionReply:
    """A change of permission the user (or WhatsApp, ``automatic``) made: the
    ``call_permission_reply`` webhook reports it."""

    wa_id: str
    response: PermissionReplyResponse
    is_permanent: bool
    source: PermissionReplySource
    expires_at: int | None


class Permissions:
    def __init__(
        self, *, connected_call_limit: int, reads_per_second: int, max_users: int = MAX_USERS
    ) -> None:
        self.users: dict[str, UserState] = {}  # least recently seen first
        self.max_users = max_users
        self.request_limits = (Limit("PT24H", DAY, 1), Limit("P7D", WEEK, 2))
        self.call_limits = (Limit("PT24H", DAY, connected_call_limit),)
        self.reads_per_second = reads_per_second
        self._reads: list[float] = []

    def user(self, wa_id: str, now: float) -> UserState:
        """The user's state, stored from now on."""
        wa_id = wa_id.lstrip("+")
        state = self.users.pop(wa_id, None)
        if state is None:
            state = UserState(wa_id)
            while len(self.users) >= self.max_users:
                del self.users[next(iter(self.users))]
        self.users[wa_id] = state  # the most recently seen is last
        return _lapse(state, now)

    def peek(self, wa_id: str, now: float) -> UserState:
        """The user's state without storing a user seen for the first time (a read, or a
        refused call, leaves nothing behind)."""
        wa_id = wa_id.lstrip("+")
        state = self.users.get(wa_id)
        return UserState(wa_id) if state is None else _lapse(state, now)

    # -- the API's side -----------------------------------------------------------------

    def report(self, wa_id: str, now: float) -> dict[str, Any]:
        """The body of ``GET /calling/permissions/{wa_id}``; each read counts against the
        per-second limit (613 when over it)."""
        if not WA_ID.fullmatch(wa_id):
            raise FakeAPIError.invalid(
                f"consumer_whatsapp_id: '{wa_id}' is not a WhatsApp ID (digits only)"
            )
        reads = self._reads = [t for t in self._reads if t > now - 1]
        if len(reads) >= self.reads_per_second:
            raise FakeAPIError.meta(
                613, f"Fetch call permission: {self.reads_per_second} requests per second"
            )
        reads.append(now)
        user = self.peek(wa_id, now)
        permission: dict[str, Any] = {"status": user.permission}
        if user.expires_at is not None:
            permission["expiration_time"] = user.expires_at
        return {
            "messaging_product": "whatsapp",
            "permission": permission,
            "actions": [
                _action(
                    "send_call_permission_request",
                    user.permission_requests,
                    self.request_limits,
                    user.permission is not PermissionStatus.PERMANENT,
                    now,
                ),
                _action(
                    "start_call",
                    user.connected_calls,
                    self.call_limits,
                    user.permission is not PermissionStatus.NO_PERMISSION,
                    now,
                ),
            ],
        }

    def record_request(self, to: str, now: float) -> str:
        """A call-permission request message was sent to ``to``; returns its wamid."""
        user = self.user(to, now)
        if user.permission is PermissionStatus.PERMANENT:
            raise FakeAPIError.meta(138017, "The user already granted permanent permission")
        for limit in self.request_limits:
            if _used(user.permission_requests, limit, now) >= limit.max_allowed:
                raise FakeAPIError.meta(
                    138009,
                    f"{limit.max_allowed} permission request(s) per {limit.period} reached",
                )
        _stamp(user.permission_requests, now, self.request_limits)
        user.last_request_id = "wamid." + secrets.token_urlsafe(24)
        return user.last_request_id

    def check_can_call(self, user: UserState, now: float) -> None:
        """What ``connect`` needs of the user: a permission, and room in the 24-hour limit."""
        if user.permission is PermissionStatus.NO_PERMISSION:
            raise FakeAPIError.meta(138006, f"No approved call permission from {user.wa_id}")
        limit = self.call_limits[0]
        until = _full_until(user.connected_calls, limit, now)
        if until is not None:
            used = _used(user.connected_calls, limit, now)
            raise FakeAPIError.meta(
                138012, f"{used} connected calls in 24 hours; next call allowed at {int(until)}"
            )

    # -- the user's side ----------------------------------------------------------------

    def answer(
        self,
        wa_id: str,
        response: PermissionReplyResponse,
        *,
        permanent: bool,
        source: PermissionReplySource,
        now: float,
    ) -> PermissionReply:
        user = self.user(wa_id, now)
        if response is PermissionReplyResponse.ACCEPT:
            user.permission = (
                PermissionStatus.PERMANENT if permanent else PermissionStatus.TEMPORARY
            )
            user.expires_at = None if permanent else int(now + TEMPORARY_PERMISSION_LIFETIME)
            user.unanswered_in_a_row = 0
        else:
            user.permission, user.expires_at = PermissionStatus.NO_PERMISSION, None
        return PermissionReply(
            user.wa_id,
            response,
            permanent and response is PermissionReplyResponse.ACCEPT,
            source,
            user.expires_at,
        )

    def connected(self, user: UserState, now: float) -> None:
        # A connected call resets the permission-request counters (api-facts §3.3).
        _stamp(user.connected_calls, now, self.call_limits)
        user.permission_requests.clear()
        user.unanswered_in_a_row = 0

    def unanswered(self, user: UserState) -> bool:
        """Count a declined or unanswered business-initiated call; True when this one should
        revoke the permission (the fourth in a row)."""
        user.unanswered_in_a_row += 1
        return (
            user.unanswered_in_a_row >= UNANSWERED_BEFORE_REVOKE
            and user.permission is not PermissionStatus.NO_PERMISSION
        )


def _lapse(state: UserState, now: float) -> UserState:
    # A temporary permission lapses silently: no webhook is sent (api-facts §2.5).
    if state.permission is PermissionStatus.TEMPORARY and (state.expires_at or 0) <= now:
        state.permission, state.expires_at = PermissionStatus.NO_PERMISSION, None
    return state


def _stamp(stamps: list[float], now: float, limits: tuple[Limit, ...]) -> None:
    """Count a use at ``now``, forgetting the uses no limit counts any more (else a user's
    list grows with every call over a long run)."""
    oldest = now - max(limit.seconds for limit in limits)
    stamps[:] = [t for t in stamps if t > oldest]
    stamps.append(now)


def _used(stamps: list[float], limit: Limit, now: float) -> int:
    return sum(t > now - limit.seconds for t in stamps)


def _full_until(stamps: list[float], limit: Limit, now: float) -> float | None:
    """When the oldest counted use leaves the window, if the limit is reached; else None."""
    inside = [t for t in stamps if t > now - limit.seconds]
    return min(inside) + limit.seconds if len(inside) >= limit.max_allowed else None


def _action(
    name: str, stamps: list[float], limits: tuple[Limit, ...], allowed: bool, now: float
) -> dict[str, Any]:
    out = []
    for limit in limits:
        entry: dict[str, Any] = {
            "time_period": limit.period,
            "max_allowed": limit.max_allowed,
            "current_usage": _used(stamps, limit, now),
        }
        until = _full_until(stamps, limit, now)
        if until is not None:
            entry["limit_expiration_time"] = int(until)
            allowed = False
        out.append(entry)
    return {"action_name": name, "can_perform_action": allowed, "limits": out}
