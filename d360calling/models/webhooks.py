"""The call webhooks (api-facts §2) as events: what happened to which call, with the envelope's
context (the business number, the user's contact) attached. ``d360calling.webhooks`` parses
them; each event can act on its call through a client.

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

from ..errors import InvalidRequestError
from ._enums import (
    CallDirection,
    CallStatus,
    CallTerminateStatus,
    PermissionReplyResponse,
    PermissionReplySource,
)
from .calls import CallActionResponse, CallSession

__all__ = (
    "AsyncCallActions",
    "CallActions",
    "CallConnectEvent",
    "CallEvent",
    "CallStatusEvent",
    "CallTerminateEvent",
    "ContactProfile",
    "PermissionReplyEvent",
    "SyncCallActions",
    "UnknownEvent",
    "WebhookContact",
    "WebhookError",
    "WebhookEvent",
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
        """The user's WhatsApp number: the caller, or the one the business called."""
        return self.from_ if self.is_inbound else self.to

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


@attrs.frozen(kw_only=True)
class CallTerminateEvent(CallEvent):
    """``event: terminate``: the call ended. ``start_time``/``end_time``/``duration`` are there
    only if it was picked up; ``errors`` explain a ``FAILED`` call."""

    kind: ClassVar[str] = "terminate"
    direction: CallDirection | str | None = None
    from_: str | None = None
    to: str | None = None
    status: CallTerminateStatus | str | None = None
    start_time: int | None = None
    end_time: int | None = None
    duration: int | None = None
    errors: tuple[WebhookError, ...] = ()

    @property
    def failed(self) -> bool:
        return self.status == CallTerminateStatus.FAILED

    @property
    def answered(self) -> bool:
        return self.start_time is not None or bool(self.duration)


@attrs.frozen(kw_only=True)
class PermissionReplyEvent:
    """A user's answer to a call-permission request (``interactive.call_permission_reply``), or
    an automatic grant or revoke. ``context_id`` is the request's wamid, the call's wacid for a
    callback permission, or absent (granted from the profile, or revoked automatically)."""

    kind: ClassVar[str] = "permission_reply"
    from_: str | None = None
    from_user_id: str | None = None
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
        try:
            canonical = json.dumps(
                [self.field, self.raw], sort_keys=True, separators=(",", ":"), default=repr
            )  # ASCII only: lone surrogates are escaped, so encoding cannot fail
        except (TypeError, ValueError, RecursionError):
            return None
        return (self.field or "", self.kind, hashlib.sha256(canonical.encode()).hexdigest())


WebhookEvent = (
    CallConnectEvent | CallStatusEvent | CallTerminateEvent | PermissionReplyEvent | UnknownEvent
)
