"""The fake API's world: calls and their lifecycle, call permissions and their limits, and
settings. No HTTP here: handlers turn requests into calls on :class:`FakeWorld` and
:class:`FakeAPIError` into error responses; webhook payloads go out through ``emit``.

All state sits behind one lock, because tests drive the world from their own thread
(``user_calls``) while the server's loop answers requests.
"""

from __future__ import annotations

import copy
import re
import secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import attrs

from ._faults import meta_error_body, status_for
from ._sdp import sample_answer, sample_offer, sdp_problem

DAY = 24 * 3600
WEEK = 7 * DAY
TEMPORARY_PERMISSION_LIFETIME = WEEK
UNANSWERED_BEFORE_REVOKE = 4

_WA_ID = re.compile(r"^\+?[0-9]{6,15}$")
_HHMM = re.compile(r"^([01][0-9]|2[0-3])[0-5][0-9]$")
_TIMEZONE = re.compile(r"^(UTC|[A-Z][A-Za-z_]+(/[A-Za-z0-9_+\-]+)+)$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
_ON_OFF = ("ENABLED", "DISABLED")

Emit = Callable[[str, dict[str, Any]], None]


class FakeAPIError(Exception):
    """An error answer of the fake API: HTTP status and JSON body."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body

    @classmethod
    def meta(cls, code: int, details: str | None = None, status: int | None = None) -> FakeAPIError:
        return cls(status or status_for(code), meta_error_body(code, details))

    @classmethod
    def invalid(cls, details: str) -> FakeAPIError:
        return cls.meta(100, details)


class ScenarioError(RuntimeError):
    """A test asked the fake world for something that cannot happen (e.g. to answer a call
    that has ended)."""


class FakeClock:
    """Wall-clock time that tests can move forward: answer windows, permission expiry and
    24-hour limits all read it."""

    def __init__(self) -> None:
        self._offset = 0.0

    def time(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._offset += seconds


@attrs.define(eq=False)
class FakeCall:
    """One call as the fake sees it. Read it; change it only through the fake's methods."""

    id: str
    direction: str  # "USER_INITIATED" | "BUSINESS_INITIATED"
    user: str
    state: str  # "ringing" | "pre_accepted" | "accepted" | "ended"
    created_at: float
    answer_by: float
    offer_sdp: str
    answer_sdp: str | None = None
    biz_opaque_callback_data: str | None = None
    user_name: str | None = None
    connected_at: float | None = None
    ended_at: float | None = None
    end_reason: str | None = (
        None  # terminated | hung_up | rejected | declined | not_answered | failed
    )
    actions: list[str] = attrs.field(factory=list)  # business actions received, in order

    @property
    def active(self) -> bool:
        return self.state != "ended"

    @property
    def duration(self) -> int | None:
        if self.connected_at is None or self.ended_at is None:
            return None
        return round(self.ended_at - self.connected_at)


@attrs.define(eq=False)
class UserState:
    wa_id: str
    permission: str = "no_permission"  # no_permission | temporary | permanent
    expires_at: int | None = None
    permission_requests: list[float] = attrs.field(factory=list)
    connected_calls: list[float] = attrs.field(factory=list)
    unanswered_in_a_row: int = 0
    last_request_id: str | None = None


@attrs.frozen
class Limit:
    period: str
    seconds: int
    max_allowed: int


def default_settings() -> dict[str, Any]:
    return {
        "calling": {
            "status": "ENABLED",
            "call_icon_visibility": "DEFAULT",
            "call_icons": {"restrict_to_user_countries": []},
            "callback_permission_status": "DISABLED",
            "call_hours": {"status": "DISABLED"},
            "sip": {"status": "DISABLED", "servers": []},
            "srtp_key_exchange_protocol": "DTLS",
            "audio": {"additional_codecs": []},
            "restrictions": {"restrictions_list": []},
        },
        "payload_encryption": {"status": "DISABLED"},
        "storage_configuration": {"status": "DEFAULT"},
    }


class FakeWorld:
    def __init__(
        self,
        *,
        emit: Emit,
        clock: FakeClock,
        business_number: str,
        answer_window: float,
        connected_call_limit: int,
        max_concurrent_calls: int,
        permission_reads_per_second: int,
    ) -> None:
        self.lock = threading.RLock()
        self._emit = emit
        self.clock = clock
        self.business_number = business_number
        self.answer_window = answer_window
        self.max_concurrent_calls = max_concurrent_calls
        self.permission_reads_per_second = permission_reads_per_second
        self.request_limits = (Limit("PT24H", DAY, 1), Limit("P7D", WEEK, 2))
        self.call_limits = (Limit("PT24H", DAY, connected_call_limit),)
        self.calls: dict[str, FakeCall] = {}
        # Calls still waiting for an answer: the timer looks at these only, not at history.
        self._unanswered_calls: dict[str, FakeCall] = {}
        self.users: dict[str, UserState] = {}
        self.settings = default_settings()
        self._permission_reads: list[float] = []

    # -- helpers ------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock.time()

    def _ts(self, at: float | None = None) -> str:
        return str(int(self.now() if at is None else at))

    def user(self, wa_id: str) -> UserState:
        wa_id = wa_id.lstrip("+")
        state = self.users.get(wa_id)
        if state is None:
            state = self.users[wa_id] = UserState(wa_id)
        if state.permission == "temporary" and (state.expires_at or 0) <= self.now():
            state.permission, state.expires_at = "no_permission", None
        return state

    def _calling(self) -> dict[str, Any]:
        calling: dict[str, Any] = self.settings["calling"]
        return calling

    def _check_graph_calling(self) -> None:
        calling = self._calling()
        if calling.get("sip", {}).get("status") == "ENABLED":
            raise FakeAPIError.meta(131055, "SIP is enabled: calls are signalled over SIP")
        if calling.get("status") != "ENABLED":
            raise FakeAPIError.meta(138000, "Calling is disabled for this phone number")

    def _active_calls(self) -> int:
        return sum(call.active for call in self.calls.values())

    def _new_call(self, direction: str, user: str, offer: str, name: str | None) -> FakeCall:
        now = self.now()
        call = FakeCall(
            id="wacid." + secrets.token_urlsafe(33),
            direction=direction,
            user=user,
            state="ringing",
            created_at=now,
            answer_by=now + self.answer_window,
            offer_sdp=offer,
            user_name=name,
        )
        self.calls[call.id] = call
        self._unanswered_calls[call.id] = call
        return call

    def _usage(self, stamps: list[float], limit: Limit) -> tuple[int, float | None]:
        now = self.now()
        inside = [t for t in stamps if t > now - limit.seconds]
        until = min(inside) + limit.seconds if len(inside) >= limit.max_allowed else None
        return len(inside), until

    def _action(
        self, name: str, stamps: list[float], limits: tuple[Limit, ...], allowed: bool
    ) -> dict[str, Any]:
        out = []
        for limit in limits:
            used, until = self._usage(stamps, limit)
            entry: dict[str, Any] = {
                "time_period": limit.period,
                "max_allowed": limit.max_allowed,
                "current_usage": used,
            }
            if until is not None:
                entry["limit_expiration_time"] = int(until)
                allowed = False
            out.append(entry)
        return {"action_name": name, "can_perform_action": allowed, "limits": out}

    # -- permissions --------------------------------------------------------------------

    def permissions(self, wa_id: str) -> dict[str, Any]:
        with self.lock:
            if not _WA_ID.match(wa_id):
                raise FakeAPIError.invalid(f"'{wa_id}' is not a WhatsApp ID (digits only)")
            now = self.now()
            reads = self._permission_reads = [t for t in self._permission_reads if t > now - 1]
            if len(reads) >= self.permission_reads_per_second:
                raise FakeAPIError.meta(613, "Fetch call permission: 100 requests per second")
            reads.append(now)
            user = self.user(wa_id)
            permission: dict[str, Any] = {"status": user.permission}
            if user.expires_at is not None:
                permission["expiration_time"] = user.expires_at
            has_permission = user.permission != "no_permission"
            return {
                "messaging_product": "whatsapp",
                "permission": permission,
                "actions": [
                    self._action(
                        "send_call_permission_request",
                        user.permission_requests,
                        self.request_limits,
                        user.permission != "permanent",
                    ),
                    self._action(
                        "start_call", user.connected_calls, self.call_limits, has_permission
                    ),
                ],
            }

    def request_permission(self, to: str) -> str:
        """A call-permission request message was sent to ``to``; returns its wamid."""
        with self.lock:
            user = self.user(to)
            if user.permission == "permanent":
                raise FakeAPIError.meta(138017, "The user already granted permanent permission")
            for limit in self.request_limits:
                used, _ = self._usage(user.permission_requests, limit)
                if used >= limit.max_allowed:
                    raise FakeAPIError.meta(
                        138009,
                        f"{limit.max_allowed} permission request(s) per {limit.period} reached",
                    )
            user.permission_requests.append(self.now())
            user.last_request_id = "wamid." + secrets.token_urlsafe(24)
            return user.last_request_id

    def set_permission(
        self,
        wa_id: str,
        response: str,
        *,
        permanent: bool,
        source: str,
        context_id: str | None,
        notify: bool,
    ) -> None:
        with self.lock:
            user = self.user(wa_id)
            reply: dict[str, Any] = {
                "response": response,
                "is_permanent": permanent and response == "accept",
                "response_source": source,
            }
            if response == "accept":
                user.permission = "permanent" if permanent else "temporary"
                user.expires_at = (
                    None if permanent else int(self.now() + TEMPORARY_PERMISSION_LIFETIME)
                )
                if user.expires_at is not None:
                    reply["expiration_timestamp"] = str(user.expires_at)
                user.unanswered_in_a_row = 0
            else:
                user.permission, user.expires_at = "no_permission", None
            if notify:
                message: dict[str, Any] = {
                    "from": user.wa_id,
                    "id": "wamid." + secrets.token_urlsafe(24),
                    "timestamp": self._ts(),
                    "type": "interactive",
                    "interactive": {
                        "type": "call_permission_reply",
                        "call_permission_reply": reply,
                    },
                }
                if context_id is not None:
                    message["context"] = {"from": user.wa_id, "id": context_id}
                self._emit(
                    "messages", {"contacts": self._contacts(user.wa_id), "messages": [message]}
                )

    def _contacts(self, wa_id: str, name: str | None = None) -> list[dict[str, Any]]:
        return [{"profile": {"name": name or f"User {wa_id[-4:]}"}, "wa_id": wa_id}]

    # -- calls driven by the API --------------------------------------------------------

    def call_action(self, body: Any) -> dict[str, Any]:
        with self.lock:
            action = _check_call_body(body)
            self._check_graph_calling()
            if action == "connect":
                return self._connect(body)
            call = self.calls.get(body["call_id"])
            if call is None:
                raise FakeAPIError.invalid(f"Invalid call_id '{body['call_id']}'")
            call.actions.append(action)
            if action in ("pre_accept", "accept"):
                self._answer(call, action, body)
            elif action == "reject":
                self._reject(call)
            else:
                self._terminate(call)
            return {"messaging_product": "whatsapp", "success": True}

    def _check_sdp(self, sdp: str) -> None:
        dtls = self._calling().get("srtp_key_exchange_protocol", "DTLS") == "DTLS"
        problem = sdp_problem(sdp, need_fingerprint=dtls)
        if problem:
            raise FakeAPIError.invalid(f"Invalid SDP: {problem}")

    def _connect(self, body: dict[str, Any]) -> dict[str, Any]:
        to = body.get("to") or body.get("recipient")
        if not isinstance(to, str) or not to:
            raise FakeAPIError.invalid("connect needs 'to' (or 'recipient')")
        self._check_sdp(body["session"]["sdp"])
        user = self.user(to)
        if user.permission == "no_permission":
            raise FakeAPIError.meta(138006, f"No approved call permission from {user.wa_id}")
        used, until = self._usage(user.connected_calls, self.call_limits[0])
        if until is not None:
            raise FakeAPIError.meta(
                138012, f"{used} connected calls in 24 hours; next call allowed at {int(until)}"
            )
        if any(c.active and c.user == user.wa_id for c in self.calls.values()):
            raise FakeAPIError.meta(138003, f"A call with {user.wa_id} is already ongoing")
        if self._active_calls() >= self.max_concurrent_calls:
            raise FakeAPIError.meta(138002, f"{self.max_concurrent_calls} concurrent calls")
        call = self._new_call("BUSINESS_INITIATED", user.wa_id, body["session"]["sdp"], None)
        call.actions.append("connect")
        call.biz_opaque_callback_data = body.get("biz_opaque_callback_data")
        self._emit_status(call, "RINGING")
        return {"messaging_product": "whatsapp", "calls": [{"id": call.id}]}

    def _answer(self, call: FakeCall, action: str, body: dict[str, Any]) -> None:
        if call.direction != "USER_INITIATED":
            raise FakeAPIError.invalid(f"{action} is for user-initiated calls only")
        self._refuse_if_over(call, action)
        sdp = body["session"]["sdp"]
        self._check_sdp(sdp)
        if sdp == call.offer_sdp:
            raise FakeAPIError.invalid(f"{action}: the SDP is the caller's offer, not an answer")
        if call.state == "pre_accepted" and sdp != call.answer_sdp:
            raise FakeAPIError.invalid("The accept SDP answer does not match the pre_accept one")
        if call.state == "accepted":
            raise FakeAPIError.invalid(f"{action}: the call is already in progress")
        call.answer_sdp = sdp
        if action == "pre_accept":
            call.state = "pre_accepted"
            return
        call.state = "accepted"
        self._unanswered_calls.pop(call.id, None)
        call.connected_at = self.now()
        if body.get("biz_opaque_callback_data") is not None:
            call.biz_opaque_callback_data = body["biz_opaque_callback_data"]
        self._connected(self.user(call.user))

    def _refuse_if_over(self, call: FakeCall, action: str) -> None:
        if call.state == "ended":
            reason = call.end_reason or "ended"
            raise FakeAPIError.invalid(f"{action}: the call has already ended ({reason})")

    def _reject(self, call: FakeCall) -> None:
        if call.direction != "USER_INITIATED":
            raise FakeAPIError.invalid("reject is for user-initiated calls; use terminate")
        self._refuse_if_over(call, "reject")
        if call.state == "accepted":
            raise FakeAPIError.invalid("reject: the call is already in progress; use terminate")
        self._end(call, "rejected")

    def _terminate(self, call: FakeCall) -> None:
        self._refuse_if_over(call, "terminate")
        self._end(call, "terminated")

    def _connected(self, user: UserState) -> None:
        # A connected call resets the permission-request counters (api-facts §3.3).
        user.connected_calls.append(self.now())
        user.permission_requests.clear()
        user.unanswered_in_a_row = 0

    # -- calls driven by the user (test API) --------------------------------------------

    def user_calls(
        self,
        wa_id: str,
        sdp: str | None,
        name: str | None,
        deeplink_payload: str | None,
    ) -> FakeCall:
        with self.lock:
            if not _WA_ID.match(wa_id):
                raise ScenarioError(f"{wa_id!r} is not a WhatsApp ID")
            calling = self._calling()
            if calling.get("status") != "ENABLED" or calling.get("sip", {}).get("status") == (
                "ENABLED"
            ):
                raise ScenarioError("calling over the Graph API is not enabled on this number")
            if self._active_calls() >= self.max_concurrent_calls:
                # The user sees "call cannot be placed" and no webhook is sent (M-FAQ).
                raise ScenarioError("the concurrent-call limit is reached; no webhook is sent")
            user = self.user(wa_id)
            offer = sdp if sdp is not None else sample_offer(secrets.token_hex(4))
            call = self._new_call("USER_INITIATED", user.wa_id, offer, name)
            entry: dict[str, Any] = {
                "id": call.id,
                "from": user.wa_id,
                "to": self.business_number,
                "event": "connect",
                "timestamp": self._ts(),
                "direction": "USER_INITIATED",
                "session": {"sdp_type": "offer", "sdp": offer},
            }
            if deeplink_payload is not None:
                entry["deeplink_payload"] = deeplink_payload
            self._emit("calls", {"contacts": self._contacts(user.wa_id, name), "calls": [entry]})
            if calling.get("callback_permission_status") == "ENABLED" and (
                user.permission == "no_permission"
            ):
                self.set_permission(
                    user.wa_id,
                    "accept",
                    permanent=False,
                    source="automatic",
                    context_id=call.id,
                    notify=True,
                )
            return call

    def _ringing_outbound(self, call_id: str, verb: str) -> FakeCall:
        call = self.calls.get(call_id)
        if call is None:
            raise ScenarioError(f"no call {call_id!r}")
        if call.direction != "BUSINESS_INITIATED" or call.state != "ringing":
            raise ScenarioError(f"the user can only {verb} a ringing business-initiated call")
        return call

    def user_answers(self, call_id: str, sdp: str | None) -> FakeCall:
        with self.lock:
            call = self._ringing_outbound(call_id, "answer")
            call.answer_sdp = sdp if sdp is not None else sample_answer(call.id)
            call.state = "accepted"
            self._unanswered_calls.pop(call.id, None)
            call.connected_at = self.now()
            self._connected(self.user(call.user))
            entry: dict[str, Any] = {
                "id": call.id,
                "from": self.business_number,
                "to": call.user,
                "event": "connect",
                "timestamp": self._ts(),
                "direction": "BUSINESS_INITIATED",
                "session": {"sdp_type": "answer", "sdp": call.answer_sdp},
            }
            if call.biz_opaque_callback_data is not None:
                entry["biz_opaque_callback_data"] = call.biz_opaque_callback_data
            self._emit("calls", {"contacts": self._contacts(call.user), "calls": [entry]})
            self._emit_status(call, "ACCEPTED")
            return call

    def user_declines(self, call_id: str) -> FakeCall:
        with self.lock:
            call = self._ringing_outbound(call_id, "decline")
            self._emit_status(call, "REJECTED")
            self._end(call, "declined")
            self._unanswered(call)
            return call

    def user_hangs_up(self, call_id: str) -> FakeCall:
        with self.lock:
            call = self.calls.get(call_id)
            if call is None or not call.active:
                raise ScenarioError(f"no active call {call_id!r}")
            self._end(call, "hung_up")
            return call

    def fail_call(self, call_id: str, code: int, details: str | None) -> FakeCall:
        with self.lock:
            call = self.calls.get(call_id)
            if call is None or not call.active:
                raise ScenarioError(f"no active call {call_id!r}")
            self._end(call, "failed", error_code=code, details=details)
            return call

    def expire_unanswered(self) -> None:
        """End every call whose answer window has passed; runs on a short timer."""
        with self.lock:
            now = self.now()
            for call in list(self._unanswered_calls.values()):
                if call.answer_by <= now:
                    self._end(call, "not_answered")
                    if call.direction == "BUSINESS_INITIATED":
                        self._unanswered(call)

    def _unanswered(self, call: FakeCall) -> None:
        user = self.user(call.user)
        user.unanswered_in_a_row += 1
        if user.unanswered_in_a_row >= UNANSWERED_BEFORE_REVOKE and user.permission != (
            "no_permission"
        ):
            self.set_permission(
                user.wa_id,
                "reject",
                permanent=False,
                source="automatic",
                context_id=None,
                notify=True,
            )

    # -- webhooks -----------------------------------------------------------------------

    def _emit_status(self, call: FakeCall, status: str) -> None:
        entry: dict[str, Any] = {
            "id": call.id,
            "timestamp": self._ts(),
            "type": "call",
            "status": status,
            "recipient_id": call.user,
        }
        if call.biz_opaque_callback_data is not None:
            entry["biz_opaque_callback_data"] = call.biz_opaque_callback_data
        self._emit("calls", {"statuses": [entry]})

    def _end(
        self,
        call: FakeCall,
        reason: str,
        *,
        error_code: int | None = None,
        details: str | None = None,
    ) -> None:
        call.state, call.end_reason, call.ended_at = "ended", reason, self.now()
        self._unanswered_calls.pop(call.id, None)
        inbound = call.direction == "USER_INITIATED"
        entry: dict[str, Any] = {
            "id": call.id,
            "from": call.user if inbound else self.business_number,
            "to": self.business_number if inbound else call.user,
            "event": "terminate",
            "direction": call.direction,
            "timestamp": self._ts(),
            "status": "FAILED" if error_code is not None else "COMPLETED",
        }
        if call.connected_at is not None:
            entry["start_time"] = self._ts(call.connected_at)
            entry["end_time"] = self._ts(call.ended_at)
            entry["duration"] = call.duration
        if call.biz_opaque_callback_data is not None:
            entry["biz_opaque_callback_data"] = call.biz_opaque_callback_data
        value: dict[str, Any] = {"contacts": self._contacts(call.user), "calls": [entry]}
        if error_code is not None:
            error = meta_error_body(error_code, details)["error"]
            value["errors"] = [
                {
                    "code": error_code,
                    "message": error["message"],
                    "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
                    "error_data": {"details": details or error["message"]},
                }
            ]
        self._emit("calls", value)

    # -- settings -----------------------------------------------------------------------

    def get_settings(self, include_sip_credentials: bool) -> dict[str, Any]:
        with self.lock:
            out = copy.deepcopy(self.settings)
            if not include_sip_credentials:
                for server in out["calling"].get("sip", {}).get("servers", []):
                    server.pop("sip_user_password", None)
            return out

    def update_settings(self, body: Any) -> dict[str, Any]:
        with self.lock:
            calling = _check_settings_body(body, self.now())
            (feature, value), *_ = calling.items()
            current = self._calling()
            if feature == "sip":
                old = {s["hostname"]: s for s in current.get("sip", {}).get("servers", [])}
                for server in value.get("servers", []):
                    server.setdefault("port", 5061)
                    previous = old.get(server["hostname"], {})
                    server["sip_user_password"] = previous.get(
                        "sip_user_password", secrets.token_urlsafe(18)
                    )
                if "servers" not in value:
                    value["servers"] = current.get("sip", {}).get("servers", [])
            # Every feature object is replaced whole: a call_hours without holiday_schedule
            # deletes the stored schedule, as the real API does.
            current[feature] = value
            return {"success": True}


# -- request-body rules (api-facts §1, §4) ----------------------------------------------

_CALL_FIELDS = {
    "connect": ({"to", "session"}, {"recipient", "biz_opaque_callback_data"}),
    "pre_accept": ({"call_id", "session"}, set()),
    "accept": ({"call_id", "session"}, {"biz_opaque_callback_data"}),
    "reject": ({"call_id"}, set()),
    "terminate": ({"call_id"}, set()),
}


def _check_call_body(body: Any) -> str:
    if not isinstance(body, dict):
        raise FakeAPIError.invalid("The request body must be a JSON object")
    if body.get("messaging_product") != "whatsapp":
        raise FakeAPIError.invalid("messaging_product must be 'whatsapp'")
    action = body.get("action")
    if action not in _CALL_FIELDS:
        raise FakeAPIError.invalid(
            f"action must be one of {', '.join(_CALL_FIELDS)}; got {action!r}"
        )
    required, optional = _CALL_FIELDS[action]
    if action == "connect" and "to" not in body and "recipient" in body:
        required = {"recipient", "session"}
    present = set(body) - {"messaging_product", "action"}
    missing = required - present
    if missing:
        raise FakeAPIError.invalid(f"{action} needs {', '.join(sorted(missing))}")
    unexpected = present - required - optional
    if unexpected:
        raise FakeAPIError.invalid(f"{action} does not take {', '.join(sorted(unexpected))}")
    for key in present:
        if key != "session" and not (isinstance(body[key], str) and body[key]):
            raise FakeAPIError.invalid(f"{key} must be a non-empty string")
    if "call_id" in body and not body["call_id"].startswith("wacid."):
        raise FakeAPIError.invalid("call_id must start with 'wacid.'")
    if len(body.get("biz_opaque_callback_data", "")) > 512:
        raise FakeAPIError.invalid("biz_opaque_callback_data is longer than 512 characters")
    if "session" in body:
        session = body["session"]
        want = "offer" if action == "connect" else "answer"
        if not isinstance(session, dict) or set(session) != {"sdp_type", "sdp"}:
            raise FakeAPIError.invalid("session must be an object with sdp_type and sdp")
        if session["sdp_type"] != want:
            raise FakeAPIError.invalid(f"{action} needs session.sdp_type '{want}'")
        if not isinstance(session["sdp"], str):
            raise FakeAPIError.invalid("session.sdp must be a string")
    return str(action)


def _enum(value: Any, allowed: tuple[str, ...], name: str) -> None:
    if value not in allowed:
        raise FakeAPIError.invalid(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _object(value: Any, name: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FakeAPIError.invalid(f"{name} must be an object")
    unknown = set(value) - allowed
    if unknown:
        raise FakeAPIError.invalid(f"{name} does not take {', '.join(sorted(unknown))}")
    return value


def _check_call_hours(hours: Any, now: float) -> None:
    hours = _object(
        hours, "call_hours", {"status", "timezone_id", "weekly_operating_hours", "holiday_schedule"}
    )
    _enum(hours.get("status"), _ON_OFF, "call_hours.status")
    # Disabled call hours mean "open 24/7": the rest is optional then, but checked if given.
    enabled = hours["status"] == "ENABLED"
    timezone_id = hours.get("timezone_id")
    if (enabled or timezone_id is not None) and not (
        isinstance(timezone_id, str) and _TIMEZONE.match(timezone_id)
    ):
        raise FakeAPIError.invalid(f"call_hours.timezone_id is not a time zone: {timezone_id!r}")
    weekly = hours.get("weekly_operating_hours", None if enabled else [])
    if not isinstance(weekly, list) or (enabled and not weekly):
        raise FakeAPIError.invalid("call_hours.weekly_operating_hours must be a non-empty list")
    per_day: dict[str, list[tuple[str, str]]] = {}
    for slot in weekly:
        slot = _object(slot, "weekly_operating_hours[]", {"day_of_week", "open_time", "close_time"})
        _enum(slot.get("day_of_week"), _DAYS, "day_of_week")
        opens, closes = slot.get("open_time"), slot.get("close_time")
        if not (isinstance(opens, str) and _HHMM.match(opens)) or not (
            isinstance(closes, str) and _HHMM.match(closes)
        ):
            raise FakeAPIError.invalid("open_time and close_time must be 'HHMM'")
        if opens >= closes:
            raise FakeAPIError.invalid(f"open_time {opens} must be before close_time {closes}")
        per_day.setdefault(slot["day_of_week"], []).append((opens, closes))
    for day, slots in per_day.items():
        if len(slots) > 2:
            raise FakeAPIError.invalid(f"at most 2 operating-hour entries per day ({day})")
        slots.sort()
        if len(slots) == 2 and slots[1][0] < slots[0][1]:
            raise FakeAPIError.invalid(f"operating hours overlap on {day}")
    holidays = hours.get("holiday_schedule", [])
    if not isinstance(holidays, list) or len(holidays) > 20:
        raise FakeAPIError.invalid("holiday_schedule must be a list of at most 20 entries")
    today = datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%d")
    for holiday in holidays:
        holiday = _object(holiday, "holiday_schedule[]", {"date", "start_time", "end_time"})
        date = holiday.get("date")
        if not (isinstance(date, str) and _DATE.match(date)):
            raise FakeAPIError.invalid(f"holiday date must be 'YYYY-MM-DD'; got {date!r}")
        if date < today:
            raise FakeAPIError.invalid(f"holiday date {date} is in the past")
        start, end = holiday.get("start_time"), holiday.get("end_time")
        if not (isinstance(start, str) and _HHMM.match(start)) or not (
            isinstance(end, str) and _HHMM.match(end)
        ):
            raise FakeAPIError.invalid("holiday start_time and end_time must be 'HHMM'")


def _check_settings_body(body: Any, now: float) -> dict[str, Any]:
    if not isinstance(body, dict) or set(body) != {"calling"}:
        raise FakeAPIError.invalid('The body must be {"calling": {...}}')
    calling = body["calling"]
    if not isinstance(calling, dict) or len(calling) != 1:
        raise FakeAPIError.invalid("Only one feature setting can be specified per request")
    (feature, value), *_ = calling.items()
    if feature in ("status", "callback_permission_status"):
        _enum(value, _ON_OFF, feature)
    elif feature == "call_icon_visibility":
        _enum(value, ("DEFAULT", "DISABLE_ALL"), feature)
    elif feature == "srtp_key_exchange_protocol":
        _enum(value, ("DTLS", "SDES"), feature)
    elif feature == "call_icons":
        countries = _object(value, feature, {"restrict_to_user_countries"}).get(
            "restrict_to_user_countries", []
        )
        if not isinstance(countries, list) or not all(
            isinstance(c, str) and re.match(r"^[A-Z]{2}$", c) for c in countries
        ):
            raise FakeAPIError.invalid("restrict_to_user_countries must be ISO 3166 alpha-2 codes")
    elif feature == "call_hours":
        _check_call_hours(value, now)
    elif feature == "sip":
        sip = _object(value, feature, {"status", "servers"})
        _enum(sip.get("status"), _ON_OFF, "sip.status")
        servers = sip.get("servers", [])
        if not isinstance(servers, list) or len(servers) > 1:
            raise FakeAPIError.invalid("sip.servers holds at most one server")
        for server in servers:
            server = _object(
                server, "sip.servers[]", {"hostname", "port", "request_uri_user_params"}
            )
            if not isinstance(server.get("hostname"), str) or not server["hostname"]:
                raise FakeAPIError.invalid("sip.servers[].hostname is required")
            port = server.get("port", 5061)
            if not isinstance(port, int) or not 0 < port < 65536:
                raise FakeAPIError.invalid("sip.servers[].port must be 1-65535")
    elif feature in ("video",):
        _enum(_object(value, feature, {"status"}).get("status"), _ON_OFF, f"{feature}.status")
    elif feature == "audio":
        codecs = _object(value, feature, {"additional_codecs"}).get("additional_codecs", [])
        if not isinstance(codecs, list) or not set(codecs) <= {"PCMA", "PCMU"}:
            raise FakeAPIError.invalid("audio.additional_codecs takes PCMA and PCMU only")
    elif feature == "voicemail":
        voicemail = _object(value, feature, {"status", "triggers", "audio"})
        _enum(voicemail.get("status"), _ON_OFF, "voicemail.status")
        if not set(voicemail.get("triggers", [])) <= {"REJECT", "TIMEOUT"}:
            raise FakeAPIError.invalid("voicemail.triggers takes REJECT and TIMEOUT only")
    else:
        raise FakeAPIError.invalid(f"Unknown or read-only calling setting {feature!r}")
    return {feature: copy.deepcopy(value)}
