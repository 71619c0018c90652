"""Call actions: ``POST /calling/calls``.

One frozen class per action, carrying only that action's fields and checked when it is
made, so a request that exists is one the API can take. Their wire form (``action``,
``messaging_product``, the ``session`` around the SDP) is added by the converter.
"""

from __future__ import annotations

from typing import ClassVar, TypeAlias

import attrs

from . import _checks
from ._enums import CallAction, SdpType

__all__ = (
    "AcceptCallRequest",
    "CallActionRequest",
    "CallActionResponse",
    "CallInfo",
    "CallSession",
    "ConnectCallRequest",
    "ConnectCallResponse",
    "PreAcceptCallRequest",
    "RejectCallRequest",
    "TerminateCallRequest",
)


def _sdp_repr(sdp: str) -> str:
    return f"<{len(sdp)} chars>"  # SDPs carry ICE passwords and keys: never in a repr


@attrs.frozen(kw_only=True)
class CallSession:
    """The SDP of a call action or webhook: ``sdp`` is an RFC 8866 text with CRLF line ends."""

    sdp_type: SdpType | str
    sdp: str = attrs.field(repr=_sdp_repr)


@attrs.frozen(kw_only=True)
class ConnectCallRequest:
    """Call a user (business-initiated) with an SDP offer."""

    action: ClassVar[CallAction] = CallAction.CONNECT
    sdp_type: ClassVar[SdpType | None] = SdpType.OFFER

    to: str = attrs.field(validator=_checks.whatsapp_id)
    sdp: str = attrs.field(validator=_checks.sdp_offer, repr=_sdp_repr)
    biz_opaque_callback_data: str | None = attrs.field(default=None, validator=_checks.opaque_data)


@attrs.frozen(kw_only=True)
class PreAcceptCallRequest:
    """Pre-accept an inbound call with the SDP answer, so media can start connecting."""

    action: ClassVar[CallAction] = CallAction.PRE_ACCEPT
    sdp_type: ClassVar[SdpType | None] = SdpType.ANSWER

    call_id: str = attrs.field(validator=_checks.call_id)
    sdp: str = attrs.field(validator=_checks.sdp_answer, repr=_sdp_repr)


@attrs.frozen(kw_only=True)
class AcceptCallRequest:
    """Accept an inbound call with the SDP answer (the same one given to pre-accept)."""

    action: ClassVar[CallAction] = CallAction.ACCEPT
    sdp_type: ClassVar[SdpType | None] = SdpType.ANSWER

    call_id: str = attrs.field(validator=_checks.call_id)
    sdp: str = attrs.field(validator=_checks.sdp_answer, repr=_sdp_repr)
    biz_opaque_callback_data: str | None = attrs.field(default=None, validator=_checks.opaque_data)


@attrs.frozen(kw_only=True)
class RejectCallRequest:
    """Reject an inbound call."""

    action: ClassVar[CallAction] = CallAction.REJECT
    sdp_type: ClassVar[SdpType | None] = None

    call_id: str = attrs.field(validator=_checks.call_id)


@attrs.frozen(kw_only=True)
class TerminateCallRequest:
    """End a call in progress (either direction)."""

    action: ClassVar[CallAction] = CallAction.TERMINATE
    sdp_type: ClassVar[SdpType | None] = None

    call_id: str = attrs.field(validator=_checks.call_id)


CallActionRequest: TypeAlias = (
    ConnectCallRequest
    | PreAcceptCallRequest
    | AcceptCallRequest
    | RejectCallRequest
    | TerminateCallRequest
)
"""Any one call action; :meth:`AsyncClient.perform_call_action` takes each."""

CALL_ACTION_REQUESTS: tuple[type[CallActionRequest], ...] = (
    ConnectCallRequest,
    PreAcceptCallRequest,
    AcceptCallRequest,
    RejectCallRequest,
    TerminateCallRequest,
)


@attrs.frozen(kw_only=True)
class CallInfo:
    id: str


@attrs.frozen(kw_only=True)
class CallActionResponse:
    """The answer to a call action: ``success`` for answer-side actions, ``calls`` for connect."""

    success: bool | None = None
    calls: tuple[CallInfo, ...] = ()
    messaging_product: str | None = None

    @property
    def call_id(self) -> str | None:
        """The id (``wacid.…``) of the call this action created, if it created one."""
        return self.calls[0].id if self.calls else None


@attrs.frozen(kw_only=True)
class ConnectCallResponse:
    """The answer to ``connect``: the new call's id, which the call's webhooks carry."""

    call_id: str
    calls: tuple[CallInfo, ...] = ()
    messaging_product: str | None = None
