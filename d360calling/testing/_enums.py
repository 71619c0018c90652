"""The fake's states and the API's fixed vocabularies, as string enums: a member equals its
wire value (``CallState.ACCEPTED == "accepted"``), so tests may compare with either."""

from __future__ import annotations

import sys
from enum import Enum

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # pragma: no cover - Python 3.10

    class StrEnum(str, Enum):
        def __str__(self) -> str:
            return str(self.value)


__all__ = (
    "CallAction",
    "CallDirection",
    "CallState",
    "CallStatus",
    "EndReason",
    "PermissionResponse",
    "PermissionSource",
    "PermissionStatus",
    "TerminateStatus",
)


class CallState(StrEnum):
    """Where a call is in its lifecycle, as the fake tracks it."""

    RINGING = "ringing"
    PRE_ACCEPTED = "pre_accepted"
    ACCEPTED = "accepted"
    ENDED = "ended"


class CallDirection(StrEnum):
    USER_INITIATED = "USER_INITIATED"
    BUSINESS_INITIATED = "BUSINESS_INITIATED"


class CallAction(StrEnum):
    """The ``action`` of ``POST /calling/calls``."""

    CONNECT = "connect"
    PRE_ACCEPT = "pre_accept"
    ACCEPT = "accept"
    REJECT = "reject"
    TERMINATE = "terminate"


class EndReason(StrEnum):
    """Why a call ended: which side ended it, and how."""

    TERMINATED = "terminated"  # the business sent terminate
    HUNG_UP = "hung_up"  # the user hung up
    REJECTED = "rejected"  # the business rejected an inbound call
    DECLINED = "declined"  # the user declined a business-initiated call
    NOT_ANSWERED = "not_answered"  # the answer window passed
    FAILED = "failed"  # a media or connection failure (terminate ``FAILED``)


class CallStatus(StrEnum):
    """The ``statuses[].status`` webhook of a business-initiated call."""

    RINGING = "RINGING"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"


class TerminateStatus(StrEnum):
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


class PermissionStatus(StrEnum):
    NO_PERMISSION = "no_permission"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"


class PermissionResponse(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"


class PermissionSource(StrEnum):
    """``response_source`` of a permission reply: ``automatic`` covers the callback grant
    after an inbound call and the revoke after four unanswered calls."""

    USER_ACTION = "user_action"
    AUTOMATIC = "automatic"
