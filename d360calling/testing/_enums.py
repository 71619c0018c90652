"""The fake's own states as string enums: a member equals its value
(``CallState.ACCEPTED == "accepted"``), so tests may compare with either. The API's
vocabularies (call actions, directions, statuses, permission states) are the models' enums,
re-exported here for the fake's users."""

from __future__ import annotations

import sys
from enum import Enum

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # pragma: no cover - Python 3.10

    class StrEnum(str, Enum):
        def __str__(self) -> str:
            return str(self.value)


from ..models._enums import (
    CallAction,
    CallDirection,
    CallStatus,
    CallTerminateStatus,
    PermissionReplyResponse,
    PermissionReplySource,
    PermissionStatus,
)

__all__ = (
    "CallAction",
    "CallDirection",
    "CallState",
    "CallStatus",
    "CallTerminateStatus",
    "EndReason",
    "MessageKind",
    "PermissionReplyResponse",
    "PermissionReplySource",
    "PermissionStatus",
)


class CallState(StrEnum):
    """Where a call is in its lifecycle, as the fake tracks it."""

    RINGING = "ringing"
    PRE_ACCEPTED = "pre_accepted"
    ACCEPTED = "accepted"
    ENDED = "ended"


class EndReason(StrEnum):
    """Why a call ended: which side ended it, and how."""

    TERMINATED = "terminated"  # the business sent terminate
    HUNG_UP = "hung_up"  # the user hung up
    REJECTED = "rejected"  # the business rejected an inbound call
    DECLINED = "declined"  # the user declined a business-initiated call
    NOT_ANSWERED = "not_answered"  # the answer window passed
    FAILED = "failed"  # a media or connection failure (terminate ``FAILED``)


class MessageKind(StrEnum):
    """What a message the business sent (``POST /messages``) is."""

    CALL_PERMISSION_REQUEST = "call_permission_request"  # interactive, free-form
    VOICE_CALL = "voice_call"  # the interactive call button, free-form
    TEMPLATE = "template"
