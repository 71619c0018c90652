"""Call actions: ``POST /calling/calls``."""

from __future__ import annotations

import attrs

from ._enums import CallAction, SdpType

__all__ = (
    "CallActionRequest",
    "CallActionResponse",
    "CallInfo",
    "CallSession",
    "ConnectCallResponse",
)

# Which SDP each action carries; actions not listed carry none.
SDP_TYPE_FOR_ACTION: dict[CallAction, SdpType] = {
    CallAction.CONNECT: SdpType.OFFER,
    CallAction.PRE_ACCEPT: SdpType.ANSWER,
    CallAction.ACCEPT: SdpType.ANSWER,
}


@attrs.frozen(kw_only=True)
class CallSession:
    """The SDP of a call action or webhook: ``sdp`` is an RFC 8866 text with CRLF line ends."""

    sdp_type: SdpType | str
    sdp: str = attrs.field(repr=lambda sdp: f"<{len(sdp)} chars>")


@attrs.frozen(kw_only=True)
class CallActionRequest:
    """The general form of ``POST /calling/calls``.

    ``session.sdp_type`` is not given: it follows from ``action`` (``offer`` for connect,
    ``answer`` for pre_accept and accept) and is sent that way. ``sdp`` is sent as given.
    """

    action: CallAction | str
    call_id: str | None = None
    to: str | None = None
    sdp: str | None = attrs.field(
        default=None, repr=lambda sdp: "None" if sdp is None else f"<{len(sdp)} chars>"
    )
    biz_opaque_callback_data: str | None = None

    @property
    def session(self) -> CallSession | None:
        """The session object sent on the wire, or ``None`` for actions without SDP."""
        if self.sdp is None:
            return None
        try:
            sdp_type = SDP_TYPE_FOR_ACTION[CallAction(self.action)]
        except (ValueError, KeyError):
            return None
        return CallSession(sdp_type=sdp_type, sdp=self.sdp)


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
