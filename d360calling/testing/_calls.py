"""Calls and their lifecycle: which action is allowed in which state, by which side, and
what each does to the call (api-facts §1). Webhooks and permissions are the world's business;
this module only keeps the calls. Not thread-safe on its own: the world calls it under its
lock."""

from __future__ import annotations

import collections
import secrets

import attrs

from ._enums import CallAction, CallDirection, CallState, EndReason
from ._errors import FakeAPIError, ScenarioError
from ._sdp import check_sdp

__all__ = (
    "Calls",
    "DEFAULT_MAX_RECORDED_CALLS",
    "FakeCall",
    "MAX_RECORDED_ACTIONS",
    "check_sdp",
)

DEFAULT_MAX_RECORDED_CALLS = 10_000  # ended calls kept; calls still going are always kept
# Business actions kept per call: the real flow needs 3, and refused actions are recorded
# too, so a client retrying forever against one ended call must not grow it without end.
MAX_RECORDED_ACTIONS = 1_000


@attrs.define(eq=False)
class FakeCall:
    """One call as the fake sees it. Read it; change it only through the fake's methods.
    The fake updates this object in place, so a test may hold on to it."""

    id: str
    direction: CallDirection
    user: str
    state: CallState
    created_at: float
    answer_by: float
    offer_sdp: str
    answer_sdp: str | None = None
    biz_opaque_callback_data: str | None = None
    user_name: str | None = None
    connected_at: float | None = None
    ended_at: float | None = None
    end_reason: EndReason | None = None
    # Business actions, in order: the newest MAX_RECORDED_ACTIONS of them.
    actions: list[CallAction] = attrs.field(factory=list)
    # What brought the user to call: a deep link's or a call button's payload. Both come
    # back on the connect and the terminate webhooks.
    deeplink_payload: str | None = None
    cta_payload: str | None = None
    # The "recording"/"transcription" objects connect or accept asked for (ENABLED only),
    # and the media ids of what the fake sent once the call ended.
    recording: dict[str, str] | None = None
    transcription: dict[str, str] | None = None
    recording_media_id: str | None = None
    transcript_media_id: str | None = None
    voicemail_media_id: str | None = None
    sip: bool = False  # signalled over SIP: the Graph call endpoints do not reach it
    # When media from the business was last seen (media mode only: the fake cannot see
    # media otherwise). A connected call with none for ``media_timeout`` fails (138021).
    media_seen_at: float | None = None

    @property
    def active(self) -> bool:
        return self.state is not CallState.ENDED

    @property
    def size(self) -> int:
        """Roughly the bytes this call holds: what the byte bound on ended calls counts."""
        texts = (
            self.offer_sdp,
            self.answer_sdp,
            self.user_name,
            self.biz_opaque_callback_data,
            self.deeplink_payload,
            self.cta_payload,
        )
        extra = sum(
            len(k) + len(v) for d in (self.recording, self.transcription) if d for k, v in d.items()
        )
        return sum(len(text) for text in texts if text) + 8 * len(self.actions) + extra

    @property
    def duration(self) -> int | None:
        if self.connected_at is None or self.ended_at is None:
            return None
        return round(self.ended_at - self.connected_at)


class Calls:
    def __init__(
        self,
        *,
        answer_window: float,
        max_concurrent_calls: int,
        max_ended_calls: int | None = DEFAULT_MAX_RECORDED_CALLS,
        max_ended_bytes: int | None = None,
    ) -> None:
        if max_ended_calls is not None and max_ended_calls < 1:
            raise ValueError("max_recorded_calls must be >= 1 (or None for no limit)")
        self.answer_window = answer_window
        self.max_concurrent_calls = max_concurrent_calls
        self.max_ended_calls = max_ended_calls
        self.max_ended_bytes = max_ended_bytes
        self.by_id: dict[str, FakeCall] = {}
        # Calls still waiting for an answer: the timer looks at these only, not at history.
        self._unanswered: dict[str, FakeCall] = {}
        # Ended calls, oldest first, with the bytes each holds (its SDPs, mostly).
        self._ended: collections.deque[tuple[str, int]] = collections.deque()
        self._ended_bytes = 0

    def new(
        self, direction: CallDirection, user: str, offer: str, name: str | None, now: float
    ) -> FakeCall:
        call = FakeCall(
            id="wacid." + secrets.token_urlsafe(33),
            direction=direction,
            user=user,
            state=CallState.RINGING,
            created_at=now,
            answer_by=now + self.answer_window,
            offer_sdp=offer,
            user_name=name,
        )
        self.by_id[call.id] = call
        self._unanswered[call.id] = call
        return call

    @property
    def full(self) -> bool:
        return sum(call.active for call in self.by_id.values()) >= self.max_concurrent_calls

    def due(self, now: float) -> list[FakeCall]:
        """The calls whose answer window has passed."""
        return [call for call in self._unanswered.values() if call.answer_by <= now]

    def end(self, call: FakeCall, reason: EndReason, now: float) -> None:
        if call.state is CallState.ENDED:  # pragma: no cover - the world ends a call once
            return
        call.state, call.end_reason, call.ended_at = CallState.ENDED, reason, now
        self._unanswered.pop(call.id, None)
        size = call.size
        self._ended.append((call.id, size))
        self._ended_bytes += size
        while len(self._ended) > 1 and (
            (self.max_ended_calls is not None and len(self._ended) > self.max_ended_calls)
            or (self.max_ended_bytes is not None and self._ended_bytes > self.max_ended_bytes)
        ):
            old_id, old_size = self._ended.popleft()
            self._ended_bytes -= old_size
            self.by_id.pop(old_id, None)  # forgotten: its id is now unknown

    def _connect(self, call: FakeCall, now: float) -> None:
        call.state, call.connected_at = CallState.ACCEPTED, now
        self._unanswered.pop(call.id, None)

    # -- the business's side (the API) --------------------------------------------------

    def for_action(self, call_id: str, action: CallAction) -> FakeCall:
        call = self.by_id.get(call_id)
        if call is None:
            raise FakeAPIError.invalid(f"call_id: Invalid call_id '{call_id}'")
        call.actions.append(action)  # recorded even when refused: tests check what was tried
        if len(call.actions) > MAX_RECORDED_ACTIONS:
            del call.actions[0]
        return call

    def check_room_for(self, wa_id: str) -> None:
        """What ``connect`` needs of the calls: none ongoing with the user, and room."""
        if any(call.active and call.user == wa_id for call in self.by_id.values()):
            raise FakeAPIError.meta(138003, f"A call with {wa_id} is already ongoing")
        if self.full:
            raise FakeAPIError.meta(138002, f"{self.max_concurrent_calls} concurrent calls")

    def answer(
        self,
        call: FakeCall,
        action: CallAction,
        sdp: str,
        callback_data: str | None,
        *,
        need_fingerprint: bool,
        now: float,
    ) -> bool:
        """``pre_accept`` or ``accept`` an inbound call; True when it connected the call."""
        if call.direction is not CallDirection.USER_INITIATED:
            raise FakeAPIError.invalid(f"{action} is for user-initiated calls only")
        _refuse_if_over(call, action)
        if sdp == call.offer_sdp:
            raise FakeAPIError.invalid(f"{action}: the SDP is the caller's offer, not an answer")
        check_sdp(sdp, role="answer", need_fingerprint=need_fingerprint, offer=call.offer_sdp)
        if call.state is CallState.PRE_ACCEPTED and sdp != call.answer_sdp:
            raise FakeAPIError.invalid("The accept SDP answer does not match the pre_accept one")
        if call.state is CallState.ACCEPTED:
            raise FakeAPIError.invalid(f"{action}: the call is already in progress")
        call.answer_sdp = sdp
        if action is CallAction.PRE_ACCEPT:
            call.state = CallState.PRE_ACCEPTED
            return False
        self._connect(call, now)
        if callback_data is not None:
            call.biz_opaque_callback_data = callback_data
        return True

    def check_reject(self, call: FakeCall) -> None:
        if call.direction is not CallDirection.USER_INITIATED:
            raise FakeAPIError.invalid("reject is for user-initiated calls; use terminate")
        _refuse_if_over(call, CallAction.REJECT)
        if call.state is CallState.ACCEPTED:
            raise FakeAPIError.invalid("reject: the call is already in progress; use terminate")

    def check_terminate(self, call: FakeCall) -> None:
        _refuse_if_over(call, CallAction.TERMINATE)

    # -- the user's side (the test) -----------------------------------------------------

    def ringing_outbound(self, call_id: str, verb: str) -> FakeCall:
        call = self.by_id.get(call_id)
        if call is None:
            raise ScenarioError(f"no call {call_id!r}")
        if call.direction is not CallDirection.BUSINESS_INITIATED or (
            call.state is not CallState.RINGING
        ):
            raise ScenarioError(f"the user can only {verb} a ringing business-initiated call")
        return call

    def unanswered(self, call_id: str) -> FakeCall:
        """A call still waiting to be answered: a ringing business-initiated call, or an
        inbound one the business has not accepted."""
        call = self.by_id.get(call_id)
        if call is None:
            raise ScenarioError(f"no call {call_id!r}")
        if call.state not in (CallState.RINGING, CallState.PRE_ACCEPTED):
            raise ScenarioError(f"call {call_id!r} is not ringing ({call.state})")
        return call

    def active_call(self, call_id: str) -> FakeCall:
        call = self.by_id.get(call_id)
        if call is None or not call.active:
            raise ScenarioError(f"no active call {call_id!r}")
        return call

    def picked_up(self, call: FakeCall, sdp: str, now: float) -> None:
        """The user answered a business-initiated call."""
        call.answer_sdp = sdp
        self._connect(call, now)


def _refuse_if_over(call: FakeCall, action: CallAction) -> None:
    if call.state is CallState.ENDED:
        reason = call.end_reason or "ended"
        raise FakeAPIError.invalid(f"{action}: the call has already ended ({reason})")
