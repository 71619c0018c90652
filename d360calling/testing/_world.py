"""The fake's world: calls, permissions and settings together, and the webhooks their changes
produce. No HTTP here: the routes turn contract-valid requests into calls on
:class:`FakeWorld`, and :class:`FakeAPIError` into error answers.

All state sits behind one lock, because tests drive the world from their own thread
(``user_calls``) while the server's loop answers requests.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from typing import Any

from . import _payloads as payloads
from ._calls import Calls, FakeCall, check_sdp
from ._clock import FakeClock
from ._enums import (
    CallAction,
    CallDirection,
    CallStatus,
    EndReason,
    PermissionReplyResponse,
    PermissionReplySource,
    PermissionStatus,
)
from ._errors import ScenarioError
from ._permissions import WA_ID, Permissions, UserState
from ._sdp import sample_answer, sample_offer
from ._settings import Settings

__all__ = (
    "Emit",
    "FakeWorld",
)

Emit = Callable[[str, dict[str, Any]], None]


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
        max_ended_calls: int | None,
        max_ended_bytes: int | None,
    ) -> None:
        self.lock = threading.RLock()
        self._emit = emit
        self.clock = clock
        self.business_number = business_number
        self.calls = Calls(
            answer_window=answer_window,
            max_concurrent_calls=max_concurrent_calls,
            max_ended_calls=max_ended_calls,
            max_ended_bytes=max_ended_bytes,
        )
        self.permissions = Permissions(
            connected_call_limit=connected_call_limit,
            reads_per_second=permission_reads_per_second,
        )
        self.settings = Settings()

    def now(self) -> float:
        return self.clock.time()

    def user(self, wa_id: str) -> UserState:
        return self.permissions.user(wa_id, self.now())

    # -- the API's side -----------------------------------------------------------------

    def call_action(self, body: dict[str, Any]) -> dict[str, Any]:
        """A contract-valid ``POST /calling/calls`` body."""
        with self.lock:
            action = CallAction(body["action"])
            self.settings.check_graph_calling()
            if action is CallAction.CONNECT:
                return self._connect(body)
            call = self.calls.for_action(body["call_id"], action)
            if action is CallAction.PRE_ACCEPT or action is CallAction.ACCEPT:
                connected = self.calls.answer(
                    call,
                    action,
                    body["session"]["sdp"],
                    body.get("biz_opaque_callback_data"),
                    need_fingerprint=self.settings.needs_fingerprint,
                    now=self.now(),
                )
                if connected:
                    self.permissions.connected(self.user(call.user), self.now())
            elif action is CallAction.REJECT:
                self.calls.check_reject(call)
                self._end(call, EndReason.REJECTED)
            else:
                self.calls.check_terminate(call)
                self._end(call, EndReason.TERMINATED)
            return {"messaging_product": "whatsapp", "success": True}

    def _connect(self, body: dict[str, Any]) -> dict[str, Any]:
        sdp = body["session"]["sdp"]
        check_sdp(sdp, need_fingerprint=self.settings.needs_fingerprint)
        # "to" wins when both are sent; a user nobody allowed calls is refused, not stored.
        user = self.permissions.peek(body.get("to") or body["recipient"], self.now())
        self.permissions.check_can_call(user, self.now())
        self.calls.check_room_for(user.wa_id)
        call = self.calls.new(CallDirection.BUSINESS_INITIATED, user.wa_id, sdp, None, self.now())
        call.actions.append(CallAction.CONNECT)
        call.biz_opaque_callback_data = body.get("biz_opaque_callback_data")
        self._emit("calls", payloads.call_status(call, CallStatus.RINGING, self.now()))
        return {"messaging_product": "whatsapp", "calls": [{"id": call.id}]}

    def permission_report(self, wa_id: str) -> dict[str, Any]:
        with self.lock:
            return self.permissions.report(wa_id, self.now())

    def request_permission(self, to: str) -> str:
        """A call-permission request message was sent to ``to``; returns its wamid."""
        with self.lock:
            return self.permissions.record_request(to, self.now())

    def get_settings(self, include_sip_credentials: bool) -> dict[str, Any]:
        with self.lock:
            return self.settings.get(include_sip_credentials)

    def update_settings(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            return self.settings.update(body, self.now())

    # -- the user's side (the test) -----------------------------------------------------

    def set_permission(
        self,
        wa_id: str,
        response: PermissionReplyResponse,
        *,
        permanent: bool,
        source: PermissionReplySource,
        context_id: str | None,
        notify: bool,
    ) -> None:
        with self.lock:
            reply = self.permissions.answer(
                wa_id, response, permanent=permanent, source=source, now=self.now()
            )
            if notify:
                self._emit("messages", payloads.permission_reply(reply, self.now(), context_id))

    def user_calls(
        self, wa_id: str, sdp: str | None, name: str | None, deeplink_payload: str | None
    ) -> FakeCall:
        with self.lock:
            if not WA_ID.fullmatch(wa_id):
                raise ScenarioError(f"{wa_id!r} is not a WhatsApp ID")
            if not self.settings.calling_enabled or self.settings.sip_enabled:
                raise ScenarioError("calling over the Graph API is not enabled on this number")
            if self.calls.full:
                # The user sees "call cannot be placed" and no webhook is sent (M-FAQ).
                raise ScenarioError("the concurrent-call limit is reached; no webhook is sent")
            user = self.user(wa_id)
            offer = sdp if sdp is not None else sample_offer(secrets.token_hex(4))
            call = self.calls.new(CallDirection.USER_INITIATED, user.wa_id, offer, name, self.now())
            self._emit(
                "calls",
                payloads.call_connect(
                    call, self.business_number, self.now(), deeplink_payload=deeplink_payload
                ),
            )
            if self.settings.callback_permission and (
                user.permission is PermissionStatus.NO_PERMISSION
            ):
                self.set_permission(
                    user.wa_id,
                    PermissionReplyResponse.ACCEPT,
                    permanent=False,
                    source=PermissionReplySource.AUTOMATIC,
                    context_id=call.id,
                    notify=True,
                )
            return call

    def user_answers(self, call_id: str, sdp: str | None) -> FakeCall:
        with self.lock:
            call = self.calls.ringing_outbound(call_id, "answer")
            self.calls.picked_up(
                call, sdp if sdp is not None else sample_answer(call.id), self.now()
            )
            self.permissions.connected(self.user(call.user), self.now())
            self._emit("calls", payloads.call_connect(call, self.business_number, self.now()))
            self._emit("calls", payloads.call_status(call, CallStatus.ACCEPTED, self.now()))
            return call

    def user_declines(self, call_id: str) -> FakeCall:
        with self.lock:
            call = self.calls.ringing_outbound(call_id, "decline")
            self._emit("calls", payloads.call_status(call, CallStatus.REJECTED, self.now()))
            self._end(call, EndReason.DECLINED)
            self._unanswered(call)
            return call

    def user_hangs_up(self, call_id: str) -> FakeCall:
        with self.lock:
            call = self.calls.active_call(call_id)
            self._end(call, EndReason.HUNG_UP)
            return call

    def fail_call(self, call_id: str, code: int, details: str | None) -> FakeCall:
        with self.lock:
            call = self.calls.active_call(call_id)
            self._end(call, EndReason.FAILED, error_code=code, details=details)
            return call

    def expire_unanswered(self) -> None:
        """End every call whose answer window has passed; runs on a short timer."""
        with self.lock:
            for call in self.calls.due(self.now()):
                self._end(call, EndReason.NOT_ANSWERED)
                if call.direction is CallDirection.BUSINESS_INITIATED:
                    self._unanswered(call)

    def _unanswered(self, call: FakeCall) -> None:
        if self.permissions.unanswered(self.user(call.user)):
            self.set_permission(
                call.user,
                PermissionReplyResponse.REJECT,
                permanent=False,
                source=PermissionReplySource.AUTOMATIC,
                context_id=None,
                notify=True,
            )

    def _end(
        self,
        call: FakeCall,
        reason: EndReason,
        *,
        error_code: int | None = None,
        details: str | None = None,
    ) -> None:
        self.calls.end(call, reason, self.now())
        self._emit(
            "calls",
            payloads.call_terminate(
                call, self.business_number, self.now(), error_code=error_code, details=details
            ),
        )
