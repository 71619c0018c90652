"""The call webhooks (api-facts §2) as events: what happened to which call, with the envelope's
context (the business number, the user's contact) attached. ``d360calling.webhooks`` parses
them; each event can act on its call through a client.

Every event works when the user's phone number is absent and only business-scoped user ids
(BSUIDs, api-2026 §5) are present: ``event.user`` is the user's phone number when the webhook
carries one (the item's, then its contact's), else their BSUID; ``event.user_ids`` holds every
id of the user it carries (phone, BSUID, parent BSUID), for matching.

The shortcuts (``event.accept(client, sdp)`` ...) take any client that has the call-action
methods: :class:`AsyncCallActions` (``AsyncClient``; the shortcut gives a coroutine to await)
or :class:`SyncCallActions` (``Client``; the shortcut gives the response). They are protocols,
so this module never imports the clients."""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from collections.abc import Coroutine, Mapping
from typing import ClassVar, Protocol, TypeAlias, TypeVar, overload

import attrs

from ..errors import APIStatusError, InvalidRequestError, error_from_webhook
from ._enums import (
    CallDirection,
    CallIconVisibility,
    CallStatus,
    CallTerminateStatus,
    FeatureStatus,
    PermissionReplyResponse,
    PermissionReplySource,
    SrtpKeyExchangeProtocol,
    _StrEnum,
)
from .calls import CallActionResponse, CallSession

__all__ = (
    "AccountSettingsUpdateEvent",
    "AsyncCallActions",
    "CallActions",
    "CallConnectEvent",
    "CallEvent",
    "CallRecordingAvailableEvent",
    "CallStatusEvent",
    "CallTerminateEvent",
    "CallTranscriptionAvailableEvent",
    "ContactProfile",
    "MessageStatus",
    "MessageStatusEvent",
    "PermissionReplyEvent",
    "SipCallCreatedEvent",
    "SyncCallActions",
    "UnknownEvent",
    "VoicemailEvent",
    "WebhookContact",
    "WebhookError",
    "WebhookEvent",
    "WebhookMedia",
    "WebhookMetadata",
)

_SPACE = re.compile(r"\s+")

# What an async client's call action gives: a coroutine that returns the response.
_Pending = Coroutine[object, object, CallActionResponse]


_R_co = TypeVar("_R_co", covariant=True)


class CallActions(Protocol[_R_co]):
    """What the event shortcuts need of a client: its answer-side call actions, each giving
    ``_R_co``."""

    def pre_accept_call(
        self,
        call_id: str,
        sdp: str,
        *,
        deadline: float | datetime.datetime | None = ...,
        timeout: float | None = ...,
        max_retries: int | None = ...,
    ) -> _R_co: ...

    def accept_call(
        self,
        call_id: str,
        sdp: str,
        *,
        biz_opaque_callback_data: str | None = ...,
        deadline: float | datetime.datetime | None = ...,
        timeout: float | None = ...,
        max_retries: int | None = ...,
    ) -> _R_co: ...

    def reject_call(
        self,
        call_id: str,
        *,
        deadline: float | datetime.datetime | None = ...,
        timeout: float | None = ...,
        max_retries: int | None = ...,
    ) -> _R_co: ...

    def terminate_call(
        self,
        call_id: str,
        *,
        deadline: float | datetime.datetime | None = ...,
        timeout: float | None = ...,
        max_retries: int | None = ...,
    ) -> _R_co: ...


AsyncCallActions: TypeAlias = CallActions[_Pending]
"""An async client, such as ``AsyncClient``: each action gives a coroutine to await."""
SyncCallActions: TypeAlias = CallActions[CallActionResponse]
"""A blocking client, such as ``Client``: each action gives the response."""


@attrs.frozen(kw_only=True)
class WebhookMetadata:
    """Which business number the webhook is for."""

    display_phone_number: str | None = None
    phone_number_id: str | None = None


@attrs.frozen(kw_only=True)
class ContactProfile:
    name: str | None = None
    username: str | None = None


@attrs.frozen(kw_only=True)
class WebhookContact:
    """The WhatsApp user a webhook is about; ``wa_id`` may be absent for username users."""

    wa_id: str | None = None
    user_id: str | None = None  # BSUID
    parent_user_id: str | None = None
    profile: ContactProfile | None = None

    @property
    def name(self) -> str | None:
        return self.profile.name if self.profile is not None else None


@attrs.frozen(kw_only=True)
class WebhookError:
    """An item of ``errors[]``; some senders give ``title`` instead of ``message``."""

    code: int | None = None
    message: str | None = None
    title: str | None = None
    href: str | None = None
    error_data: Mapping[str, object] | None = None

    @property
    def text(self) -> str:
        return self.message or self.title or ""

    @property
    def details(self) -> str | None:
        details = (self.error_data or {}).get("details")
        return details if isinstance(details, str) else None

    def to_exception(self, field: str = "calls") -> APIStatusError:
        """This error as the library's typed error, through the same table as API answers
        (:func:`~d360calling.errors.error_from_webhook`): e.g. 131026 gives a
        ``MessageUndeliverableError``, 138006 a ``NoCallPermissionError``."""
        return error_from_webhook(self.code, self.text or None, self.details, field=field)


@attrs.frozen(kw_only=True)
class WebhookMedia:
    """A media object of a webhook (a recording's ``audio``, a transcript's ``document``, a
    voicemail's ``audio``): download it by ``id`` like any WhatsApp media."""

    id: str | None = None
    sha256: str | None = None
    mime_type: str | None = None
    url: str | None = attrs.field(default=None, repr=False)  # may be a signed download URL


class MessageStatus(_StrEnum):
    """A sent message's ``statuses[].status`` on the ``messages`` field."""

    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


def _user(phone: str | None, bsuid: str | None, contact: WebhookContact | None) -> str | None:
    """The id a user is keyed by: the phone number when the webhook carries one (the item's,
    then its contact's), else the BSUID (the item's, then its contact's). Phone first because
    it is what the API's permission path and older stores take; a webhook without one still
    names its user."""
    if phone:
        return phone
    if contact is not None and contact.wa_id:
        return contact.wa_id
    return _bsuid(bsuid, contact)


def _bsuid(bsuid: str | None, contact: WebhookContact | None) -> str | None:
    if bsuid:
        return bsuid
    return contact.user_id if contact is not None and contact.user_id else None


def _ids(contact: WebhookContact | None, *ids: str | None) -> frozenset[str]:
    found = {user for user in ids if user}
    if contact is not None:
        found.update(u for u in (contact.wa_id, contact.user_id, contact.parent_user_id) if u)
    return frozenset(found)


def _digits(number: str | None) -> str:
    return "".join(c for c in number or "" if c.isdigit())


def _user_is_caller(
    direction: CallDirection | str | None, from_: str | None, metadata: WebhookMetadata | None
) -> bool:
    """Whether ``from`` (rather than ``to``) is the user: by the direction when given, else
    by ``from`` not being the business's own number."""
    if direction is not None:
        return direction != CallDirection.BUSINESS_INITIATED
    business = metadata.display_phone_number if metadata is not None else None
    return not (from_ and business and _digits(from_) == _digits(business))


def _first_error(errors: tuple[WebhookError, ...], field: str) -> APIStatusError | None:
    return errors[0].to_exception(field) if errors else None


def _same_sdp(a: str, b: str) -> bool:
    return _SPACE.sub("", a) == _SPACE.sub("", b)


@attrs.frozen(kw_only=True)
class CallEvent:
    """What every call event has: the call's id, when, and the envelope's context."""

    kind: ClassVar[str] = ""
    call_id: str
    timestamp: int | None = None
    biz_opaque_callback_data: str | None = None
    metadata: WebhookMetadata | None = attrs.field(default=None, repr=False)
    contact: WebhookContact | None = None

    @property
    def dedupe_key(self) -> tuple[str, str, str]:
        """Two deliveries with this key are the same event (call id + event + status)."""
        return (self.call_id, self.kind, "")

    @overload
    def terminate(
        self,
        client: AsyncCallActions,
        *,
        deadline: float | datetime.datetime | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> _Pending: ...
    @overload
    def terminate(
        self,
        client: SyncCallActions,
        *,
        deadline: float | datetime.datetime | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> CallActionResponse: ...
    def terminate(
        self,
        client: AsyncCallActions | SyncCallActions,
        *,
        deadline: float | datetime.datetime | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> _Pending | CallActionResponse:
        """End this call: ``client.terminate_call(call_id)`` (awaitable with an AsyncClient)."""
        return client.terminate_call(
            self.call_id, deadline=deadline, timeout=timeout, max_retries=max_retries
        )


@attrs.frozen(kw_only=True)
class CallConnectEvent(CallEvent):
    """``event: connect``. Inbound (``USER_INITIATED``): a user is calling, ``session`` holds
    their SDP offer; answer with :meth:`pre_accept`/:meth:`accept` or :meth:`reject`.
    Business-initiated: the user picked up, ``session`` holds their SDP answer."""

    kind: ClassVar[str] = "connect"
    direction: CallDirection | str | None = None
    from_: str | None = None
    to: str | None = None
    session: CallSession | None = None
    from_user_id: str | None = None
    to_user_id: str | None = None
    from_parent_user_id: str | None = None
    to_parent_user_id: str | None = None
    deeplink_payload: str | None = None
    cta_payload: str | None = None

    @property
    def is_inbound(self) -> bool:
        return self.direction != CallDirection.BUSINESS_INITIATED

    @property
    def sdp(self) -> str | None:
        """The caller's offer (inbound) or the user's answer (business-initiated)."""
        return self.session.sdp if self.session is not None else None

    @property
    def user(self) -> str | None:
        """The user (the caller, or the one the business called): their phone number when
        the webhook carries one, else their BSUID."""
        if self.is_inbound:
            return _user(self.from_, self.from_user_id, self.contact)
        return _user(self.to, self.to_user_id, self.contact)

    @property
    def user_id(self) -> str | None:
        """The user's business-scoped id (BSUID), when the webhook carries one."""
        return _bsuid(self.from_user_id if self.is_inbound else self.to_user_id, self.contact)

    @property
    def user_ids(self) -> frozenset[str]:
        """Every id of the user this webhook carries (phone number, BSUID, parent BSUID)."""
        if self.is_inbound:
            return _ids(self.contact, self.from_, self.from_user_id, self.from_parent_user_id)
        return _ids(self.contact, self.to, self.to_user_id, self.to_parent_user_id)

    def _answer_sdp(self, action: str, sdp: str) -> str:
        if not self.is_inbound:
            raise InvalidRequestError(
                f"{action}: this business-initiated call is answered by the user, not by you"
            )
        if self.sdp is not None and isinstance(sdp, str) and _same_sdp(sdp, self.sdp):
            raise InvalidRequestError(
                f"{action}: the SDP given is the caller's own offer; pass your SDP answer to it"
            )
        return sdp

    @overload
    def pre_accept(
        self,
        client: AsyncCallActions,
        sdp: str,
        *,
        deadline: float | datetime.datetime | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> _Pending: ...
    @overload
    def pre_accept(
        self,
        client: SyncCallActions,
        sdp: str,
        *,
        deadline: float | datetime.datetime | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> CallActionResponse: ...
    def pre_accept(
        self,
        client: AsyncCallActions | SyncCallActions,
        sdp: str,
        *,
        deadline: float | datetime.datetime | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> _Pending | CallActionResponse:
        """Pre-accept with your SDP answer, so media can start connecting."""
        answer = self._answer_sdp("pre_accept", sdp)  # checked before anything is looked up
        return client.pre_accept_call(
            self.call_id, answer, deadline=deadline, timeout=timeout, max_retries=max_retries
        )

    @overload
    def accept(
        self,
        client: AsyncCallActions,
        sdp: str,
        *,
        biz_opaque_callback_data: str | None = None,
        deadline: float | datetime.datetime | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> _Pending: ...
    @overload
    def accept(
        self,
        client: SyncCallActions,
        sdp: str,
        *,
        biz_opaque_callback_data: str | None = None,
        deadline: float | datetime.datetime | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> CallActionResponse: ...
    def accept(
        self,
        client: AsyncCallActions | SyncCallActions,
        sdp: str,
        *,
        biz_opaque_callback_data: str | None = None,
        deadline: float | datetime.datetime | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> _Pending | CallActionResponse:
        """Accept with your SDP answer (the same as a pre-accept's)."""
        answer = self._answer_sdp("accept", sdp)
        return client.accept_call(
            self.call_id,
            answer,
            biz_opaque_callback_data=biz_opaque_callback_data,
            deadline=deadline,
            timeout=timeout,
            max_retries=max_retries,
        )

    @overload
    def reject(
        self,
        client: AsyncCallActions,
        *,
        deadline: float | datetime.datetime | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> _Pending: ...
    @overload
    def reject(
        self,
        client: SyncCallActions,
        *,
        deadline: float | datetime.datetime | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> CallActionResponse: ...
    def reject(
        self,
        client: AsyncCallActions | SyncCallActions,
        *,
        deadline: float | datetime.datetime | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> _Pending | CallActionResponse:
        """Reject this inbound call."""
        self._answer_sdp("reject", "")
        return client.reject_call(
            self.call_id, deadline=deadline, timeout=timeout, max_retries=max_retries
        )


@attrs.frozen(kw_only=True)
class CallStatusEvent(CallEvent):
    """``statuses[]`` of a business-initiated call: RINGING, ACCEPTED or REJECTED."""

    kind: ClassVar[str] = "status"
    status: CallStatus | str
    recipient_id: str | None = None
    recipient_user_id: str | None = None
    recipient_parent_user_id: str | None = None

    @property
    def dedupe_key(self) -> tuple[str, str, str]:
        return (self.call_id, self.kind, str(self.status))

    @property
    def user(self) -> str | None:
        """The user called: their phone number when the webhook carries one, else their BSUID."""
        return _user(self.recipient_id, self.recipient_user_id, self.contact)

    @property
    def user_id(self) -> str | None:
        return _bsuid(self.recipient_user_id, self.contact)

    @property
    def user_ids(self) -> frozenset[str]:
        return _ids(
            self.contact, self.recipient_id, self.recipient_user_id, self.recipient_parent_user_id
        )


@attrs.frozen(kw_only=True)
class CallTerminateEvent(CallEvent):
    """``event: terminate``: the call ended. ``start_time``/``end_time``/``duration`` are there
    only if it was picked up; ``errors`` explain a ``FAILED`` call (those of the call item and
    those of the change, both read). ``terminate_reason`` (e.g. ``no_answer``),
    ``cta_payload`` and ``deeplink_payload`` are there when the sender gives them; for a
    missed call the terminate is the only webhook that carries the payloads."""

    kind: ClassVar[str] = "terminate"
    direction: CallDirection | str | None = None
    from_: str | None = None
    to: str | None = None
    from_user_id: str | None = None
    to_user_id: str | None = None
    from_parent_user_id: str | None = None
    to_parent_user_id: str | None = None
    status: CallTerminateStatus | str | None = None
    terminate_reason: str | None = None
    start_time: int | None = None
    end_time: int | None = None
    duration: int | None = None
    deeplink_payload: str | None = None
    cta_payload: str | None = None
    errors: tuple[WebhookError, ...] = ()

    @property
    def failed(self) -> bool:
        return self.status == CallTerminateStatus.FAILED

    @property
    def answered(self) -> bool:
        return self.start_time is not None or bool(self.duration)

    @property
    def is_inbound(self) -> bool:
        return _user_is_caller(self.direction, self.from_, self.metadata)

    @property
    def user(self) -> str | None:
        """The user of the call: their phone number when the webhook carries one, else their
        BSUID."""
        if self.is_inbound:
            return _user(self.from_, self.from_user_id, self.contact)
        return _user(self.to, self.to_user_id, self.contact)

    @property
    def user_id(self) -> str | None:
        return _bsuid(self.from_user_id if self.is_inbound else self.to_user_id, self.contact)

    @property
    def user_ids(self) -> frozenset[str]:
        if self.is_inbound:
            return _ids(self.contact, self.from_, self.from_user_id, self.from_parent_user_id)
        return _ids(self.contact, self.to, self.to_user_id, self.to_parent_user_id)

    @property
    def error(self) -> APIStatusError | None:
        """The first of ``errors`` as the library's typed error (``None`` without errors)."""
        return _first_error(self.errors, "calls")


@attrs.frozen(kw_only=True)
class PermissionReplyEvent:
    """A user's answer to a call-permission request (``interactive.call_permission_reply``), or
    an automatic grant or revoke. ``context_id`` is the request's wamid, the call's wacid for a
    callback permission, or absent (granted from the profile, or revoked automatically)."""

    kind: ClassVar[str] = "permission_reply"
    from_: str | None = None
    from_user_id: str | None = None
    from_parent_user_id: str | None = None
    message_id: str | None = None
    timestamp: int | None = None
    response: PermissionReplyResponse | str
    is_permanent: bool = False
    expiration_timestamp: int | None = None
    response_source: PermissionReplySource | str | None = None
    context_id: str | None = None
    metadata: WebhookMetadata | None = attrs.field(default=None, repr=False)
    contact: WebhookContact | None = None

    @property
    def granted(self) -> bool:
        return self.response == PermissionReplyResponse.ACCEPT

    @property
    def user(self) -> str | None:
        """Who replied: their phone number when the webhook carries one, else their BSUID."""
        return _user(self.from_, self.from_user_id, self.contact)

    @property
    def user_id(self) -> str | None:
        return _bsuid(self.from_user_id, self.contact)

    @property
    def user_ids(self) -> frozenset[str]:
        return _ids(self.contact, self.from_, self.from_user_id, self.from_parent_user_id)

    @property
    def expires_at(self) -> datetime.datetime | None:
        """When a temporary grant ends (``expiration_timestamp``, as an aware UTC datetime)."""
        return _utc(self.expiration_timestamp)

    @property
    def dedupe_key(self) -> tuple[str, ...]:
        """The message id and the response; a reply without a message id is identified by
        everything it says (who, when, what), so two users' replies never share a key."""
        if self.message_id:
            return (self.message_id, self.kind, str(self.response))
        return (
            "",
            self.kind,
            str(self.response),
            self.from_ or "",
            self.from_user_id or "",
            str(self.timestamp),
            str(self.response_source or ""),
            self.context_id or "",
            str(self.expiration_timestamp),
            str(self.is_permanent),
        )


def _utc(timestamp: int | None) -> datetime.datetime | None:
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)


def _digest(*parts: object) -> str | None:
    """A fixed-size digest of JSON-able ``parts`` (``None`` for data without a JSON form)."""
    try:
        canonical = json.dumps(list(parts), sort_keys=True, separators=(",", ":"), default=repr)
    except (TypeError, ValueError, RecursionError):
        return None
    return hashlib.sha256(canonical.encode()).hexdigest()


@attrs.frozen(kw_only=True)
class _CallMediaEvent:
    """What a recording or a transcript of a call says (api-2026 §3): the call, its parties,
    the media, and (a variant one BSP documents **[UNCERTAIN]**) a failure: ``status``
    ``FAILED`` with ``errors`` and ``retryable``."""

    kind: ClassVar[str] = ""
    call_id: str
    timestamp: int | None = None
    direction: CallDirection | str | None = None
    from_: str | None = None
    to: str | None = None
    from_user_id: str | None = None
    to_user_id: str | None = None
    from_parent_user_id: str | None = None
    to_parent_user_id: str | None = None
    media: WebhookMedia | None = None
    media_type: str | None = None  # "audio" for a recording
    status: str | None = None
    retryable: bool | None = None
    errors: tuple[WebhookError, ...] = ()
    biz_opaque_callback_data: str | None = None
    metadata: WebhookMetadata | None = attrs.field(default=None, repr=False)
    contact: WebhookContact | None = None

    @property
    def media_id(self) -> str | None:
        """The media id to download the file by."""
        return self.media.id if self.media is not None else None

    @property
    def failed(self) -> bool:
        """The sender reports a failure (``status: FAILED``, or errors and no media)."""
        if isinstance(self.status, str) and self.status.casefold() == "failed":
            return True
        return self.media_id is None and bool(self.errors)

    @property
    def error(self) -> APIStatusError | None:
        return _first_error(self.errors, "calls")

    @property
    def is_inbound(self) -> bool:
        return _user_is_caller(self.direction, self.from_, self.metadata)

    @property
    def user(self) -> str | None:
        if self.is_inbound:
            return _user(self.from_, self.from_user_id, self.contact)
        return _user(self.to, self.to_user_id, self.contact)

    @property
    def user_id(self) -> str | None:
        return _bsuid(self.from_user_id if self.is_inbound else self.to_user_id, self.contact)

    @property
    def user_ids(self) -> frozenset[str]:
        if self.is_inbound:
            return _ids(self.contact, self.from_, self.from_user_id, self.from_parent_user_id)
        return _ids(self.contact, self.to, self.to_user_id, self.to_parent_user_id)

    @property
    def dedupe_key(self) -> tuple[str, str, str]:
        """The call, the kind, and the media id (or the status of a failure)."""
        return (self.call_id, self.kind, self.media_id or f"status:{self.status or ''}")


@attrs.frozen(kw_only=True)
class CallRecordingAvailableEvent(_CallMediaEvent):
    """``event: call_recording_available`` (``calls`` field): the call's recording is ready;
    ``media`` is ``call_recording.audio`` (``id``, ``sha256``, ``mime_type`` -- usually
    ``audio/ogg; codecs=opus`` --, ``url``)."""

    kind: ClassVar[str] = "recording"


@attrs.frozen(kw_only=True)
class CallTranscriptionAvailableEvent(_CallMediaEvent):
    """``event: call_transcription_available`` (``calls`` field): the call's transcript is
    ready; ``media`` is ``call_transcript.document`` (``mime_type`` ``application/json``)."""

    kind: ClassVar[str] = "transcription"


@attrs.frozen(kw_only=True)
class SipCallCreatedEvent:
    """``event: call_created`` (``calls`` field): a call was created over SIP signalling
    (sent when the SIP settings ask for webhooks). Nothing to answer here: SIP does that."""

    kind: ClassVar[str] = "sip_call_created"
    call_id: str
    timestamp: int | None = None
    direction: CallDirection | str | None = None
    from_: str | None = None
    to: str | None = None
    from_user_id: str | None = None
    to_user_id: str | None = None
    from_parent_user_id: str | None = None
    to_parent_user_id: str | None = None
    biz_opaque_callback_data: str | None = None
    metadata: WebhookMetadata | None = attrs.field(default=None, repr=False)
    contact: WebhookContact | None = None

    @property
    def is_inbound(self) -> bool:
        return _user_is_caller(self.direction, self.from_, self.metadata)

    @property
    def user(self) -> str | None:
        if self.is_inbound:
            return _user(self.from_, self.from_user_id, self.contact)
        return _user(self.to, self.to_user_id, self.contact)

    @property
    def user_id(self) -> str | None:
        return _bsuid(self.from_user_id if self.is_inbound else self.to_user_id, self.contact)

    @property
    def user_ids(self) -> frozenset[str]:
        if self.is_inbound:
            return _ids(self.contact, self.from_, self.from_user_id, self.from_parent_user_id)
        return _ids(self.contact, self.to, self.to_user_id, self.to_parent_user_id)

    @property
    def dedupe_key(self) -> tuple[str, str, str]:
        return (self.call_id, self.kind, "")


@attrs.frozen(kw_only=True)
class VoicemailEvent:
    """A voicemail (``messages`` field): an ordinary ``type: audio`` message whose id is the
    **call's** ``wacid``, which is how it is tied to the call (``call_id``). Delivery is
    best-effort (api-facts §2.6)."""

    kind: ClassVar[str] = "voicemail"
    call_id: str
    timestamp: int | None = None
    from_: str | None = None
    from_user_id: str | None = None
    from_parent_user_id: str | None = None
    media: WebhookMedia | None = None
    metadata: WebhookMetadata | None = attrs.field(default=None, repr=False)
    contact: WebhookContact | None = None

    @property
    def media_id(self) -> str | None:
        return self.media.id if self.media is not None else None

    @property
    def user(self) -> str | None:
        return _user(self.from_, self.from_user_id, self.contact)

    @property
    def user_id(self) -> str | None:
        return _bsuid(self.from_user_id, self.contact)

    @property
    def user_ids(self) -> frozenset[str]:
        return _ids(self.contact, self.from_, self.from_user_id, self.from_parent_user_id)

    @property
    def dedupe_key(self) -> tuple[str, str, str]:
        return (self.call_id, self.kind, self.media_id or "")


@attrs.frozen(kw_only=True)
class MessageStatusEvent:
    """A sent message's status (``statuses[]`` on the ``messages`` field): ``sent``,
    ``delivered``, ``read`` or ``failed``. A failed call-permission request shows here, e.g.
    131026 (the user's WhatsApp cannot show it) or 131047 (outside the 24 h window): ``error``
    is its typed error."""

    kind: ClassVar[str] = "message_status"
    message_id: str
    status: MessageStatus | str
    timestamp: int | None = None
    recipient_id: str | None = None
    recipient_user_id: str | None = None
    recipient_parent_user_id: str | None = None
    biz_opaque_callback_data: str | None = None
    errors: tuple[WebhookError, ...] = ()
    metadata: WebhookMetadata | None = attrs.field(default=None, repr=False)
    contact: WebhookContact | None = None

    @property
    def failed(self) -> bool:
        return self.status == MessageStatus.FAILED

    @property
    def error(self) -> APIStatusError | None:
        """The first error as the library's typed error (e.g. ``MessageUndeliverableError``
        for 131026, ``ReEngagementRequiredError`` for 131047); ``None`` without errors."""
        return _first_error(self.errors, "messages")

    @property
    def user(self) -> str | None:
        return _user(self.recipient_id, self.recipient_user_id, self.contact)

    @property
    def user_id(self) -> str | None:
        return _bsuid(self.recipient_user_id, self.contact)

    @property
    def user_ids(self) -> frozenset[str]:
        return _ids(
            self.contact, self.recipient_id, self.recipient_user_id, self.recipient_parent_user_id
        )

    @property
    def dedupe_key(self) -> tuple[str, str, str]:
        return (self.message_id, self.kind, str(self.status))


@attrs.frozen(kw_only=True)
class AccountSettingsUpdateEvent:
    """``field: account_settings_update`` (since mid-2025): the number's settings changed.
    Read tolerantly: ``calling`` is the raw ``phone_number_settings.calling`` mapping (the
    shape of ``GET /calling/settings``; kept out of ``repr``, since it may hold SIP
    credentials), and the watched values are typed fields when they are strings."""

    kind: ClassVar[str] = "settings_update"
    timestamp: int | None = None
    type: str | None = None  # "PHONE_NUMBER_SETTINGS"
    phone_number_id: str | None = None
    calling: Mapping[str, object] | None = attrs.field(default=None, repr=False)
    calling_status: FeatureStatus | str | None = None
    call_icon_visibility: CallIconVisibility | str | None = None
    callback_permission_status: FeatureStatus | str | None = None
    sip_status: FeatureStatus | str | None = None
    srtp_key_exchange_protocol: SrtpKeyExchangeProtocol | str | None = None
    raw: Mapping[str, object] | None = attrs.field(default=None, repr=False)
    metadata: WebhookMetadata | None = attrs.field(default=None, repr=False)

    @property
    def dedupe_key(self) -> tuple[str, str, str] | None:
        """A digest of the whole change: settings updates carry no id of their own."""
        digest = _digest(self.raw)
        return None if digest is None else ("", self.kind, digest)


@attrs.frozen(kw_only=True)
class UnknownEvent:
    """A change the library does not model (or could not read): kept whole, never dropped."""

    kind: ClassVar[str] = "unknown"
    field: str | None
    raw: object = attrs.field(repr=False)
    problem: str | None = None
    timestamp: int | None = None

    @property
    def dedupe_key(self) -> tuple[str, str, str] | None:
        """A digest of the field and the raw data: a redelivery of the same unmodelled item is
        the same event. ``None`` (not de-duplicated) for data that has no JSON form."""
        # ASCII only: lone surrogates are escaped, so encoding cannot fail
        digest = _digest(self.field, self.raw)
        return None if digest is None else (self.field or "", self.kind, digest)


WebhookEvent = (
    CallConnectEvent
    | CallStatusEvent
    | CallTerminateEvent
    | PermissionReplyEvent
    | CallRecordingAvailableEvent
    | CallTranscriptionAvailableEvent
    | SipCallCreatedEvent
    | VoicemailEvent
    | MessageStatusEvent
    | AccountSettingsUpdateEvent
    | UnknownEvent
)
