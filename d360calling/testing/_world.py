"""The fake's world: users, calls, permissions, messages and settings together, and the
webhooks their changes produce. No HTTP here: the routes turn contract-valid requests into
calls on :class:`FakeWorld`, and :class:`FakeAPIError` into error answers.

All state sits behind one lock, because tests drive the world from their own thread
(``user_calls``) while the server's loop answers requests.

Behaviours where the sources are uncertain, as chosen here:

- A free-form message (call-permission request, call button) outside the user's 24-hour
  customer-service window is *accepted* (200, a wamid) and then fails in a ``statuses``
  webhook with 131047, as the Cloud API reports it; a user whose WhatsApp is too old fails
  the same way with 131026. A message that gets through is reported ``sent`` then
  ``delivered``. Only a delivered call-permission request counts against the request limits.
- The window opens (for 24 hours) with every message the user sends (a text, a reply to a
  permission request, a voicemail) and every call the user places or answers ("any call
  opens or refreshes the window", api-facts §6 [UNCERTAIN]).
- Voicemail is for calls *to* the business (the ``voicemail`` setting's triggers: the
  business rejected the call, or let it ring out); the user leaves one with
  :meth:`FakeWorld.user_leaves_voicemail`, it is never left automatically.
"""

from __future__ import annotations

import hashlib
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
    MessageKind,
    PermissionReplyResponse,
    PermissionReplySource,
    PermissionStatus,
)
from ._errors import FakeAPIError, ScenarioError
from ._identity import USER_ID_HINT, is_user_id, is_wa_id
from ._messages import (
    FakeMessage,
    FakeTemplate,
    Messages,
    Templates,
    new_message_id,
    read_message,
)
from ._permissions import PERMISSION_REQUEST_LIFETIME, SERVICE_WINDOW, Permissions, UserState
from ._sdp import sample_offer, user_answer
from ._settings import Settings

__all__ = (
    "Emit",
    "FakeWorld",
    "MAX_CTA_PAYLOAD",
    "MAX_USER_TEXT",
    "MEDIA_TIMEOUT",
)

Emit = Callable[[str, dict[str, Any]], None]
MAX_USER_TEXT = 4096  # characters of a text the fake lets a user send
MAX_CTA_PAYLOAD = 512  # a call button's payload, as the API bounds it
# No media from the business this long after the call starts: the real service ends the
# call (M-TS; api-facts §6), with 138021 in the terminate webhook.
MEDIA_TIMEOUT = 20.0


class FakeWorld:
    def __init__(
        self,
        *,
        emit: Emit,
        clock: FakeClock,
        business_number: str,
        phone_number_id: str = "",
        answer_window: float,
        connected_call_limit: int,
        max_concurrent_calls: int,
        permission_reads_per_second: int,
        max_ended_calls: int | None,
        max_ended_bytes: int | None,
        max_messages: int | None = None,
        media_timeout: float | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self._emit = emit
        self.clock = clock
        self.business_number = business_number
        self.phone_number_id = phone_number_id
        self.media_base: str | None = None  # where media urls point; set once serving
        # Told of every call action the API took (the media mode's peers listen here).
        self.call_observers: list[Callable[[FakeCall, CallAction], None]] = []
        self.calls = Calls(
            answer_window=answer_window,
            max_concurrent_calls=max_concurrent_calls,
            max_ended_calls=max_ended_calls,
            max_ended_bytes=max_ended_bytes,
        )
        self.permissions = Permissions(
            connected_call_limit=connected_call_limit,
            reads_per_second=permission_reads_per_second,
            business=business_number,
        )
        self.messages = Messages(max_messages, max_ended_bytes)
        self.templates = Templates()
        self.settings = Settings()
        # Seconds a connected call may go without media_seen() before it fails with 138021;
        # None: never (the fake sees no media unless its media mode reports it).
        self.media_timeout = media_timeout
        self._awaiting_media: dict[str, FakeCall] = {}  # connected, no media seen yet

    def now(self) -> float:
        return self.clock.time()

    def user(self, user_id: str) -> UserState:
        return self.permissions.user(user_id, self.now())

    def _who(self, user: UserState, name: str | None = None) -> payloads.Who:
        return payloads.Who(user.phone, user.user_id, name or user.name)

    def _call_who(self, call: FakeCall) -> payloads.Who:
        return self._who(self.permissions.peek(call.user, self.now()), call.user_name)

    def _opened(self, user: UserState) -> None:
        """The user wrote or called: the customer-service window is open for 24 hours."""
        user.window_until = self.now() + SERVICE_WINDOW

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
                    self._awaiting_media[call.id] = call
                    _ask_for_media(call, body)
                    self.permissions.connected(self.user(call.user), self.now())
            elif action is CallAction.REJECT:
                self.calls.check_reject(call)
                self._end(call, EndReason.REJECTED)
            else:
                self.calls.check_terminate(call)
                self._end(call, EndReason.TERMINATED)
            self._observed(call, action)
            return {"messaging_product": "whatsapp", "success": True}

    def _observed(self, call: FakeCall, action: CallAction) -> None:
        for observer in self.call_observers:
            observer(call, action)

    def _connect(self, body: dict[str, Any]) -> dict[str, Any]:
        sdp = body["session"]["sdp"]
        check_sdp(sdp, role="offer", need_fingerprint=self.settings.needs_fingerprint)
        # "to" wins when both are sent; a user nobody allowed calls is refused, not stored.
        user = self.permissions.peek(_addressee(body), self.now())
        self.permissions.check_can_call(user, self.now())
        self.calls.check_room_for(user.wa_id)
        call = self.calls.new(CallDirection.BUSINESS_INITIATED, user.wa_id, sdp, None, self.now())
        call.actions.append(CallAction.CONNECT)
        call.biz_opaque_callback_data = body.get("biz_opaque_callback_data")
        _ask_for_media(call, body)
        self._emit(
            "calls", payloads.call_status(call, self._who(user), CallStatus.RINGING, self.now())
        )
        self._observed(call, CallAction.CONNECT)
        return {"messaging_product": "whatsapp", "calls": [{"id": call.id}]}

    def permission_report(self, user_id: str) -> dict[str, Any]:
        with self.lock:
            return self.permissions.report(user_id, self.now())

    def send_message(self, body: dict[str, Any]) -> dict[str, Any]:
        """A contract-valid ``POST /messages`` body: the message is accepted (or refused
        for its limits or its template), then delivered or failed by status webhooks."""
        with self.lock:
            now = self.now()
            outgoing = read_message(body, self.templates)
            user_id = _addressee(body)
            user = self.permissions.peek(user_id, now)
            if outgoing.call_permission_request:
                self.permissions.check_request(user, now)
            user = self.user(user_id)  # accepted: from now on the fake knows the user
            failure = None
            if outgoing.free_form and not user.in_window(now):
                failure = (
                    131047,
                    (
                        "Message failed to send because more than 24 hours have passed since the "
                        "customer last replied to this number."
                    ),
                )
            elif user.old_client:
                failure = (
                    131026,
                    (
                        "Unable to deliver message: the recipient's WhatsApp version does not "
                        "support it."
                    ),
                )
            message = self.messages.add(
                FakeMessage(
                    id=new_message_id(),
                    kind=outgoing.kind,
                    user=user.wa_id,
                    sent_at=now,
                    status="failed" if failure else "delivered",
                    error_code=failure[0] if failure else None,
                    body=outgoing.body,
                    template=outgoing.template,
                    language=outgoing.language,
                    call_permission_request=outgoing.call_permission_request,
                    display_text=outgoing.display_text,
                    ttl_minutes=None if outgoing.ttl_minutes is None else int(outgoing.ttl_minutes),
                    payload=outgoing.payload,
                )
            )
            who = self._who(user)
            if failure is not None:
                code, details = failure
                self._emit(
                    "messages",
                    payloads.message_status(
                        message.id, who, "failed", now, error_code=code, details=details
                    ),
                )
            else:
                if outgoing.call_permission_request:
                    self.permissions.count_request(user, message.id, now)
                for status in ("sent", "delivered"):
                    self._emit("messages", payloads.message_status(message.id, who, status, now))
            contact: dict[str, Any] = {"input": user_id}
            if user.phone is not None:
                contact["wa_id"] = user.phone
            if "to" not in body:
                contact["user_id"] = user.user_id
            sent: dict[str, Any] = {"id": message.id}
            if outgoing.kind is MessageKind.TEMPLATE:  # only templates report it (Cloud API)
                sent["message_status"] = "accepted"
            return {"messaging_product": "whatsapp", "contacts": [contact], "messages": [sent]}

    def get_settings(self, include_sip_credentials: bool) -> dict[str, Any]:
        with self.lock:
            return self.settings.get(include_sip_credentials)

    def update_settings(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            before = self.settings.watched()
            answer = self.settings.update(body, self.now())
            if self.settings.watched() != before:
                calling = self.settings.get(include_sip_credentials=False)["calling"]
                self._emit(
                    "account_settings_update",
                    payloads.account_settings_update(self.phone_number_id, calling, self.now()),
                )
            return answer

    def media(self, media_id: str) -> dict[str, Any] | None:
        """What the fake knows of a media id it gave out (it keeps no media bytes)."""
        with self.lock:
            for call in self.calls.by_id.values():
                kinds = (
                    (call.recording_media_id, payloads.AUDIO_MIME_TYPE),
                    (call.transcript_media_id, payloads.TRANSCRIPT_MIME_TYPE),
                    (call.voicemail_media_id, payloads.AUDIO_MIME_TYPE),
                )
                for known, mime_type in kinds:
                    if known == media_id:
                        return {
                            "messaging_product": "whatsapp",
                            **self._media(media_id, mime_type).json(),
                            "file_size": 0,
                            "call_id": call.id,
                        }
            return None

    def _media(self, media_id: str, mime_type: str) -> payloads.Media:
        url = None if self.media_base is None else self.media_base + media_id
        digest = hashlib.sha256(media_id.encode()).hexdigest()
        return payloads.Media(media_id, digest, mime_type, url)

    # -- the user's side (the test) -----------------------------------------------------

    def add_user(self, user_id: str, name: str | None, old_client: bool | None) -> UserState:
        with self.lock:
            _check_user_id(user_id)
            user = self.user(user_id)
            if name is not None:
                user.name = name
            if old_client is not None:
                user.old_client = old_client
            return user

    def add_template(self, template: FakeTemplate) -> FakeTemplate:
        with self.lock:
            return self.templates.add(template)

    def set_permission(
        self,
        user_id: str,
        response: PermissionReplyResponse,
        *,
        permanent: bool,
        source: PermissionReplySource,
        context_id: str | None,
        notify: bool,
    ) -> None:
        with self.lock:
            _check_user_id(user_id)
            reply = self.permissions.answer(
                user_id, response, permanent=permanent, source=source, now=self.now()
            )
            if notify:
                who = self._who(reply.user)
                self._emit(
                    "messages", payloads.permission_reply(reply, who, self.now(), context_id)
                )

    def reply_to_request(self, user_id: str, *, accept: bool, permanent: bool) -> str:
        """The user answers the newest call-permission request they received; returns the
        request's wamid (the reply's ``context.id``)."""
        with self.lock:
            _check_user_id(user_id)
            user = self.permissions.peek(user_id, self.now())
            request_id, sent_at = user.last_request_id, user.last_request_at
            if request_id is None or sent_at is None:
                raise ScenarioError(f"no call-permission request reached {user_id}")
            if user.last_request_answered:
                raise ScenarioError(f"{user_id} already answered request {request_id}")
            if self.now() >= sent_at + PERMISSION_REQUEST_LIFETIME:
                raise ScenarioError(
                    f"request {request_id} expired: 7 days passed with no answer (api-facts §3.3)"
                )
            self.set_permission(
                user_id,
                PermissionReplyResponse.ACCEPT if accept else PermissionReplyResponse.REJECT,
                permanent=permanent,
                source=PermissionReplySource.USER_ACTION,
                context_id=request_id,
                notify=True,
            )
            user = self.user(user_id)
            user.last_request_answered = True
            self._opened(user)  # the reply is a message from the user
            return request_id

    def user_sends_message(self, user_id: str, text: str) -> str:
        """The user writes to the business: a text message webhook, and the window opens."""
        with self.lock:
            _check_user_id(user_id)
            if not isinstance(text, str) or not text or len(text) > MAX_USER_TEXT:
                raise ScenarioError(f"a user's text is 1 to {MAX_USER_TEXT} characters")
            user = self.user(user_id)
            self._opened(user)
            message_id = new_message_id()
            self._emit(
                "messages", payloads.text_message(self._who(user), message_id, text, self.now())
            )
            return message_id

    def user_calls(
        self,
        user_id: str,
        sdp: str | None,
        name: str | None,
        deeplink_payload: str | None,
        cta_payload: str | None = None,
    ) -> FakeCall:
        with self.lock:
            _check_user_id(user_id)
            if cta_payload is not None and len(cta_payload) > MAX_CTA_PAYLOAD:
                raise ScenarioError(f"a call button's payload is at most {MAX_CTA_PAYLOAD} chars")
            over_sip = self.settings.sip_webhooks
            if not self.settings.calling_enabled or (self.settings.sip_enabled and not over_sip):
                raise ScenarioError("calling over the Graph API is not enabled on this number")
            if self.calls.full:
                # The user sees "call cannot be placed" and no webhook is sent (M-FAQ).
                raise ScenarioError("the concurrent-call limit is reached; no webhook is sent")
            user = self.user(user_id)
            self._opened(user)
            offer = sdp if sdp is not None else sample_offer(secrets.token_hex(4))
            call = self.calls.new(CallDirection.USER_INITIATED, user.wa_id, offer, name, self.now())
            call.deeplink_payload, call.cta_payload = deeplink_payload, cta_payload
            who = self._who(user, name)
            if over_sip:
                # Signalled over SIP: SIP's own webhook, and nothing the Graph endpoints reach.
                call.sip = True
                self._emit(
                    "calls", payloads.call_created(call, who, self.business_number, self.now())
                )
                return call
            self._emit("calls", payloads.call_connect(call, who, self.business_number, self.now()))
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

    def user_presses_call_button(self, message_id: str, sdp: str | None) -> FakeCall:
        """The user taps the call button of a ``voice_call`` message: a call to the business
        whose connect and terminate carry the button's payload as ``cta_payload``."""
        with self.lock:
            message = self.messages.by_id.get(message_id)
            if message is None or message.kind is not MessageKind.VOICE_CALL:
                raise ScenarioError(f"no call-button message {message_id!r}")
            if message.status != "delivered":
                raise ScenarioError(
                    f"call-button message {message_id!r} was not delivered ({message.error_code})"
                )
            expires_at = message.button_expires_at
            if expires_at is not None and self.now() >= expires_at:
                raise ScenarioError(
                    f"the call button of {message_id!r} expired "
                    f"({message.ttl_minutes or 'the default 10,080'} minutes after it was sent)"
                )
            return self.user_calls(message.user, sdp, None, None, message.payload)

    def user_answers(self, call_id: str, sdp: str | None) -> FakeCall:
        with self.lock:
            call = self.calls.ringing_outbound(call_id, "answer")
            self.calls.picked_up(
                call, sdp if sdp is not None else user_answer(call.id, call.offer_sdp), self.now()
            )
            user = self.user(call.user)
            self._awaiting_media[call.id] = call
            self.permissions.connected(user, self.now())
            self._opened(user)
            who = self._call_who(call)
            self._emit("calls", payloads.call_connect(call, who, self.business_number, self.now()))
            self._emit("calls", payloads.call_status(call, who, CallStatus.ACCEPTED, self.now()))
            return call

    def user_declines(self, call_id: str) -> FakeCall:
        with self.lock:
            call = self.calls.ringing_outbound(call_id, "decline")
            self._emit(
                "calls",
                payloads.call_status(call, self._call_who(call), CallStatus.REJECTED, self.now()),
            )
            self._end(call, EndReason.DECLINED)
            self._unanswered(call)
            return call

    def user_lets_it_ring_out(self, call_id: str) -> FakeCall:
        """Nobody answers a ringing call until it times out, now rather than after the
        answer window: a business-initiated call the user does not pick up (it counts
        towards the unanswered calls that revoke a permission), or a call to the business it
        does not accept."""
        with self.lock:
            call = self.calls.unanswered(call_id)
            self._end(call, EndReason.NOT_ANSWERED)
            if call.direction is CallDirection.BUSINESS_INITIATED:
                self._unanswered(call)
            return call

    def user_leaves_voicemail(self, call_id: str) -> str:
        """The caller leaves a voicemail after the business rejected or missed their call,
        with the ``voicemail`` setting on for that trigger; returns the audio's media id."""
        with self.lock:
            call = self.calls.by_id.get(call_id)
            if call is None:
                raise ScenarioError(f"no call {call_id!r}")
            if call.direction is not CallDirection.USER_INITIATED or call.sip:
                raise ScenarioError("voicemail is for calls to the business over the Graph API")
            trigger = {EndReason.REJECTED: "REJECT", EndReason.NOT_ANSWERED: "TIMEOUT"}.get(
                call.end_reason or EndReason.FAILED
            )
            if trigger is None:
                raise ScenarioError(
                    "a voicemail follows a call the business rejected or let ring out, "
                    f"not one that is {call.end_reason or call.state}"
                )
            if not self.settings.voicemail_on(trigger):
                raise ScenarioError(f"voicemail is not enabled for the {trigger} trigger")
            if call.voicemail_media_id is not None:
                raise ScenarioError(f"a voicemail was already left for {call_id!r}")
            media = self._media(_media_id(), payloads.AUDIO_MIME_TYPE)
            call.voicemail_media_id = media.id
            user = self.user(call.user)
            self._opened(user)
            self._emit(
                "messages", payloads.voicemail(self._call_who(call), call, media, self.now())
            )
            return media.id

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

    def media_seen(self, call_id: str) -> FakeCall:
        """Media from the business reached the fake's user on this call (its media mode
        calls this): the call no longer fails for want of media."""
        with self.lock:
            call = self.calls.active_call(call_id)
            call.media_seen_at = self.now()
            self._awaiting_media.pop(call.id, None)
            return call

    def expire_media(self) -> None:
        """Fail every connected call that has had no media for ``media_timeout`` since it
        started, as the real service does (138021); runs on the same timer as the answer
        window."""
        with self.lock:
            now = self.now()
            for call in list(self._awaiting_media.values()):
                if not call.active:
                    del self._awaiting_media[call.id]
                elif (
                    self.media_timeout is not None
                    and call.connected_at is not None
                    and (now >= call.connected_at + self.media_timeout)
                ):
                    del self._awaiting_media[call.id]
                    self._end(
                        call,
                        EndReason.FAILED,
                        error_code=138021,
                        details=(
                            f"No media received from the business within "
                            f"{self.media_timeout:g} s of the call's start"
                        ),
                    )

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
        if call.sip and not self.settings.sip_webhooks:
            return
        who, number, now = self._call_who(call), self.business_number, self.now()
        self._emit(
            "calls",
            payloads.call_terminate(call, who, number, now, error_code=error_code, details=details),
        )
        if call.connected_at is None:
            return  # nothing was said, so nothing was recorded
        if call.recording is not None:
            media = self._media(_media_id(), payloads.AUDIO_MIME_TYPE)
            call.recording_media_id = media.id
            self._emit("calls", payloads.call_recording_available(call, who, number, media, now))
        if call.transcription is not None:
            media = self._media(_media_id(), payloads.TRANSCRIPT_MIME_TYPE)
            call.transcript_media_id = media.id
            self._emit(
                "calls", payloads.call_transcription_available(call, who, number, media, now)
            )


def _check_user_id(user_id: str) -> None:
    if not isinstance(user_id, str) or not is_user_id(user_id):
        raise ScenarioError(f"{user_id!r} is not {USER_ID_HINT}")


def _addressee(body: dict[str, Any]) -> str:
    """The user a request addresses: ``to`` (a phone number; it wins when both are sent) or
    ``recipient`` (a business-scoped id; a phone number is taken there too)."""
    if "to" in body:
        if not is_wa_id(body["to"]):
            raise FakeAPIError.invalid(
                f"to: '{body['to'][:40]}' is not a phone number (a business-scoped id goes in "
                "'recipient')"
            )
        return str(body["to"])
    if not is_user_id(body["recipient"]):
        raise FakeAPIError.invalid(f"recipient: '{body['recipient'][:40]}' is not {USER_ID_HINT}")
    return str(body["recipient"])


def _ask_for_media(call: FakeCall, body: dict[str, Any]) -> None:
    """Keep the ``recording``/``transcription`` a connect or accept asked for."""
    for name in ("recording", "transcription"):
        option = body.get(name)
        if option is not None and option["status"] == "ENABLED":
            setattr(call, name, dict(option))


def _media_id() -> str:
    return str(10**15 + secrets.randbelow(9 * 10**15))  # Meta's media ids are 16 digits
