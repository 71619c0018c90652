"""The fake's users, their call permissions and the limits on them (api-facts §3): who a user
is (phone number and business-scoped id), what they allowed and for how long, how many
permission requests and connected calls count against the limits, their 24-hour
customer-service window, and the answer of ``GET /calling/permissions/{id}``. Not thread-safe
on its own: the world calls it under its lock."""

from __future__ import annotations

from typing import Any

import attrs

from ._enums import PermissionReplyResponse, PermissionReplySource, PermissionStatus
from ._errors import FakeAPIError
from ._identity import derive_bsuid, is_bsuid, is_user_id

__all__ = (
    "DAY",
    "Limit",
    "MAX_USERS",
    "PERMISSION_REQUEST_LIFETIME",
    "PermissionReply",
    "Permissions",
    "SERVICE_WINDOW",
    "TEMPORARY_PERMISSION_LIFETIME",
    "UNANSWERED_BEFORE_REVOKE",
    "UserState",
    "WEEK",
)

DAY = 24 * 3600
WEEK = 7 * DAY
TEMPORARY_PERMISSION_LIFETIME = WEEK
# A request the user has not answered expires 7 days after delivery (api-facts §3.3).
PERMISSION_REQUEST_LIFETIME = WEEK
# The customer-service window a user's message (or call) opens: free-form messages only inside.
SERVICE_WINDOW = DAY
UNANSWERED_BEFORE_REVOKE = 4
# Users whose state is kept. A user is stored only once something happened to them (a
# permission, a request, a call); past this many, the least recently seen is forgotten (as
# if it never had a permission), so a hostile client cannot grow the fake without end.
MAX_USERS = 100_000


@attrs.frozen
class Limit:
    period: str  # ISO 8601, as the API reports it
    seconds: int
    max_allowed: int


@attrs.define(eq=False)
class UserState:
    """One user: who they are, their permission and the time stamps its limits count.

    ``wa_id`` is the key the fake files the user under: the phone number, or the BSUID of a
    user known only by it (then ``phone`` is None)."""

    wa_id: str
    user_id: str = ""  # the BSUID
    phone: str | None = None
    name: str | None = None
    old_client: bool = False  # a WhatsApp too old for call-permission and call-button messages
    permission: PermissionStatus = PermissionStatus.NO_PERMISSION
    expires_at: int | None = None
    permission_requests: list[float] = attrs.field(factory=list)
    connected_calls: list[float] = attrs.field(factory=list)
    unanswered_in_a_row: int = 0
    last_request_id: str | None = None
    last_request_at: float | None = None
    last_request_answered: bool = False
    window_until: float = 0.0  # the end of the customer-service window

    def in_window(self, now: float) -> bool:
        return now < self.window_until


@attrs.frozen
class PermissionReply:
    """A change of permission the user (or WhatsApp, ``automatic``) made: the
    ``call_permission_reply`` webhook reports it."""

    user: UserState
    response: PermissionReplyResponse
    is_permanent: bool
    source: PermissionReplySource
    expires_at: int | None


class Permissions:
    def __init__(
        self,
        *,
        connected_call_limit: int,
        reads_per_second: int,
        max_users: int = MAX_USERS,
        business: str = "",
    ) -> None:
        self.users: dict[str, UserState] = {}  # least recently seen first
        self.max_users = max_users
        self.business = business  # what the BSUIDs the fake makes are scoped to
        # The BSUID of each phone user stored, to find them when addressed by it.
        self._by_bsuid: dict[str, str] = {}
        self.request_limits = (Limit("PT24H", DAY, 1), Limit("P7D", WEEK, 2))
        self.call_limits = (Limit("PT24H", DAY, connected_call_limit),)
        self.reads_per_second = reads_per_second
        self._reads: list[float] = []

    def key(self, user_id: str) -> str:
        """The key a user is filed under: the phone number (without "+") for a phone number
        or a phone user's BSUID, the BSUID itself for a user known only by it."""
        if is_bsuid(user_id):
            return self._by_bsuid.get(user_id, user_id)
        return user_id.lstrip("+")

    def user(self, user_id: str, now: float) -> UserState:
        """The user's state, stored from now on."""
        key = self.key(user_id)
        state = self.users.pop(key, None)
        if state is None:
            state = self._new(key)
            while len(self.users) >= self.max_users:
                forgotten = self.users.pop(next(iter(self.users)))
                self._by_bsuid.pop(forgotten.user_id, None)
            if state.phone is not None:
                self._by_bsuid[state.user_id] = key
        self.users[key] = state  # the most recently seen is last
        return _lapse(state, now)

    def peek(self, user_id: str, now: float) -> UserState:
        """The user's state without storing a user seen for the first time (a read, or a
        refused call, leaves nothing behind)."""
        key = self.key(user_id)
        state = self.users.get(key)
        return self._new(key) if state is None else _lapse(state, now)

    def _new(self, key: str) -> UserState:
        if is_bsuid(key):
            return UserState(key, user_id=key)
        return UserState(key, user_id=derive_bsuid(key, self.business), phone=key)

    # -- the API's side -----------------------------------------------------------------

    def report(self, user_id: str, now: float) -> dict[str, Any]:
        """The body of ``GET /calling/permissions/{id}``; each read counts against the
        per-second limit (613 when over it). 360dialog documents the path with a wa_id only;
        a BSUID is served too, as Meta's ``?recipient=`` is [UNCERTAIN]."""
        if not is_user_id(user_id):
            raise FakeAPIError.invalid(
                f"consumer_whatsapp_id: '{user_id}' is not a WhatsApp ID (digits only) or a "
                "business-scoped user id"
            )
        reads = self._reads = [t for t in self._reads if t > now - 1]
        if len(reads) >= self.reads_per_second:
            raise FakeAPIError.meta(
                613, f"Fetch call permission: {self.reads_per_second} requests per second"
            )
        reads.append(now)
        user = self.peek(user_id, now)
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

    def check_request(self, user: UserState, now: float) -> None:
        """What a call-permission request (free-form or template) needs: no permanent
        permission already (138017), and room in both request limits (138009)."""
        if user.permission is PermissionStatus.PERMANENT:
            raise FakeAPIError.meta(138017, "The user already granted permanent permission")
        for limit in self.request_limits:
            if _used(user.permission_requests, limit, now) >= limit.max_allowed:
                raise FakeAPIError.meta(
                    138009,
                    f"{limit.max_allowed} permission request(s) per {limit.period} reached",
                )

    def count_request(self, user: UserState, message_id: str, now: float) -> None:
        """A call-permission request reached the user: it counts, and it is the one the
        user can answer (a newer request expires the older ones)."""
        _stamp(user.permission_requests, now, self.request_limits)
        user.last_request_id, user.last_request_at = message_id, now
        user.last_request_answered = False

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
        user_id: str,
        response: PermissionReplyResponse,
        *,
        permanent: bool,
        source: PermissionReplySource,
        now: float,
    ) -> PermissionReply:
        user = self.user(user_id, now)
        if response is PermissionReplyResponse.ACCEPT:
            user.permission = (
                PermissionStatus.PERMANENT if permanent else PermissionStatus.TEMPORARY
            )
            user.expires_at = None if permanent else int(now + TEMPORARY_PERMISSION_LIFETIME)
            user.unanswered_in_a_row = 0
        else:
            user.permission, user.expires_at = PermissionStatus.NO_PERMISSION, None
        return PermissionReply(
            user,
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
