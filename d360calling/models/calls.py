"""Call actions: ``POST /calling/calls``.

One frozen class per action, carrying only that action's fields and checked when it is
made, so a request that exists is one the API can take. Their wire form (``action``,
``messaging_product``, the ``session`` around the SDP) is added by the converter.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeAlias

import attrs

from ..errors import InvalidRequestError
from . import _checks
from ._enums import CallAction, FeatureStatus, SdpType

__all__ = (
    "AcceptCallRequest",
    "CallActionRequest",
    "CallActionResponse",
    "CallInfo",
    "CallRecording",
    "CallSession",
    "CallTranscription",
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
    """The SDP of a call action or webhook.

    Attributes:
        sdp_type: ``"offer"`` or ``"answer"``.
        sdp: An RFC 8866 text with CRLF line ends (never shown in a ``repr``).
    """

    sdp_type: SdpType | str
    sdp: str = attrs.field(repr=_sdp_repr)


def _feature_status(value: Any) -> FeatureStatus:
    """``ENABLED`` or ``DISABLED`` (the enum or its exact text)."""
    try:
        return FeatureStatus(value)
    except (ValueError, TypeError):
        raise InvalidRequestError(
            f"status must be FeatureStatus.ENABLED or DISABLED, got {value!r:.40}"
        ) from None


def _purpose(_: object, __: Any, value: Any) -> None:
    if value is not None:
        _checks.check_text(value, "purpose", 512)


def _announcement_language(_: object, __: Any, value: Any) -> None:
    if value is not None:
        _checks.check_language(value, "announcement_language")


@attrs.frozen(kw_only=True)
class CallRecording:
    """Record this call (``recording`` on ``connect`` or ``accept``): both parties first hear
    an announcement, in ``announcement_language`` (e.g. ``"en_US"``) when given. Priced
    separately; the recording arrives afterwards as a ``call_recording_available`` webhook.

    Whether 360dialog passes the object on is not documented: it is sent only when given.

    Attributes:
        status: ``ENABLED`` (the default) or ``DISABLED``.
        purpose: What the recording is for; 512 characters at most (the API documents no
            bound, so this one is ours).
        announcement_language: The announcement's language, e.g. ``"en_US"``.

    Raises:
        InvalidRequestError: A field is not valid; nothing can be sent with it.
    """

    status: FeatureStatus = attrs.field(default=FeatureStatus.ENABLED, converter=_feature_status)
    purpose: str | None = attrs.field(default=None, validator=_purpose)
    announcement_language: str | None = attrs.field(default=None, validator=_announcement_language)


@attrs.frozen(kw_only=True)
class CallTranscription:
    """Transcribe this call (``transcription`` on ``connect`` or ``accept``); the same fields
    as :class:`CallRecording`. The transcript arrives afterwards as a
    ``call_transcription_available`` webhook.

    Attributes:
        status: ``ENABLED`` (the default) or ``DISABLED``.
        purpose: What the transcript is for; 512 characters at most.
        announcement_language: The announcement's language, e.g. ``"en_US"``.

    Raises:
        InvalidRequestError: A field is not valid; nothing can be sent with it.
    """

    status: FeatureStatus = attrs.field(default=FeatureStatus.ENABLED, converter=_feature_status)
    purpose: str | None = attrs.field(default=None, validator=_purpose)
    announcement_language: str | None = attrs.field(default=None, validator=_announcement_language)


def _recording(_: object, __: Any, value: Any) -> None:
    if value is not None and not isinstance(value, CallRecording):
        raise InvalidRequestError(
            f"recording must be a CallRecording (e.g. CallRecording()), got {value!r:.40}"
        )


def _transcription(_: object, __: Any, value: Any) -> None:
    if value is not None and not isinstance(value, CallTranscription):
        raise InvalidRequestError(
            f"transcription must be a CallTranscription (e.g. CallTranscription()), "
            f"got {value!r:.40}"
        )


@attrs.frozen(kw_only=True)
class ConnectCallRequest:
    """Call a user (business-initiated) with an SDP offer.

    Exactly one of ``to`` and ``recipient``: the API takes both and lets ``to`` win, so a
    request with both is refused here, as a mix-up.

    Attributes:
        to: The user's phone number.
        recipient: The user's business-scoped id (``US.…``).
        sdp: The SDP offer.
        biz_opaque_callback_data: Your text (at most 512 characters), which the call's
            webhooks carry back.
        recording: Record the call; sent only when given.
        transcription: Transcribe the call; sent only when given.

    Raises:
        InvalidRequestError: A field is not valid; nothing can be sent with it.
    """

    action: ClassVar[CallAction] = CallAction.CONNECT
    sdp_type: ClassVar[SdpType | None] = SdpType.OFFER

    to: str | None = attrs.field(default=None, validator=_checks.optional_whatsapp_id)
    recipient: str | None = attrs.field(default=None, validator=_checks.optional_business_scoped_id)
    sdp: str = attrs.field(validator=_checks.sdp_offer, repr=_sdp_repr)
    biz_opaque_callback_data: str | None = attrs.field(default=None, validator=_checks.opaque_data)
    recording: CallRecording | None = attrs.field(default=None, validator=_recording)
    transcription: CallTranscription | None = attrs.field(default=None, validator=_transcription)

    def __attrs_post_init__(self) -> None:
        if self.to is None and self.recipient is None:
            raise InvalidRequestError(
                "connect needs the user: to (a phone number) or recipient (a business-scoped id)"
            )
        if self.to is not None and self.recipient is not None:
            raise InvalidRequestError(
                "give either to or recipient, not both (the API would call to and ignore recipient)"
            )


@attrs.frozen(kw_only=True)
class PreAcceptCallRequest:
    """Pre-accept an inbound call with the SDP answer, so media can start connecting.

    Attributes:
        call_id: The call's id, from its connect webhook.
        sdp: The SDP answer (:meth:`~d360calling.AsyncClient.accept_call` must send the
            same).

    Raises:
        InvalidRequestError: A field is not valid; nothing can be sent with it.
    """

    action: ClassVar[CallAction] = CallAction.PRE_ACCEPT
    sdp_type: ClassVar[SdpType | None] = SdpType.ANSWER

    call_id: str = attrs.field(validator=_checks.call_id)
    sdp: str = attrs.field(validator=_checks.sdp_answer, repr=_sdp_repr)


@attrs.frozen(kw_only=True)
class AcceptCallRequest:
    """Accept an inbound call with the SDP answer (the same one given to pre-accept).

    Attributes:
        call_id: The call's id, from its connect webhook.
        sdp: The SDP answer.
        biz_opaque_callback_data: Your text (at most 512 characters), which the call's later
            webhooks carry back.
        recording: Record the call; sent only when given.
        transcription: Transcribe the call; sent only when given.

    Raises:
        InvalidRequestError: A field is not valid; nothing can be sent with it.
    """

    action: ClassVar[CallAction] = CallAction.ACCEPT
    sdp_type: ClassVar[SdpType | None] = SdpType.ANSWER

    call_id: str = attrs.field(validator=_checks.call_id)
    sdp: str = attrs.field(validator=_checks.sdp_answer, repr=_sdp_repr)
    biz_opaque_callback_data: str | None = attrs.field(default=None, validator=_checks.opaque_data)
    recording: CallRecording | None = attrs.field(default=None, validator=_recording)
    transcription: CallTranscription | None = attrs.field(default=None, validator=_transcription)


@attrs.frozen(kw_only=True)
class RejectCallRequest:
    """Reject an inbound call.

    Attributes:
        call_id: The call's id, from its connect webhook.

    Raises:
        InvalidRequestError: A field is not valid; nothing can be sent with it.
    """

    action: ClassVar[CallAction] = CallAction.REJECT
    sdp_type: ClassVar[SdpType | None] = None

    call_id: str = attrs.field(validator=_checks.call_id)


@attrs.frozen(kw_only=True)
class TerminateCallRequest:
    """End a call in progress (either direction).

    Attributes:
        call_id: The call's id.

    Raises:
        InvalidRequestError: A field is not valid; nothing can be sent with it.
    """

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
    """A call the API names in an answer.

    Attributes:
        id: The call's id (``wacid.…``).
    """

    id: str


@attrs.frozen(kw_only=True)
class CallActionResponse:
    """The answer to a call action.

    Attributes:
        success: Set by answer-side actions (``pre_accept``, ``accept``, ``reject``,
            ``terminate``).
        calls: Set by ``connect``: the call it created.
        messaging_product: ``"whatsapp"``, when the API says.
    """

    success: bool | None = None
    calls: tuple[CallInfo, ...] = ()
    messaging_product: str | None = None

    @property
    def call_id(self) -> str | None:
        """The id (``wacid.…``) of the call this action created, if it created one."""
        return self.calls[0].id if self.calls else None


@attrs.frozen(kw_only=True)
class ConnectCallResponse:
    """The answer to ``connect``.

    Attributes:
        call_id: The new call's id (``wacid.…``), which the call's webhooks carry.
        calls: The calls the API named, as it sent them.
        messaging_product: ``"whatsapp"``, when the API says.
    """

    call_id: str
    calls: tuple[CallInfo, ...] = ()
    messaging_product: str | None = None
