"""Enumerations of the API's string values.

They are ``str`` subclasses, so ``status == "ENABLED"`` works. Decoding keeps a value the
API adds later as a plain ``str`` instead of failing, which is why model fields are typed
``SomeEnum | str``.
"""

from __future__ import annotations

import enum

__all__ = (
    "AudioCodec",
    "CallAction",
    "CallDirection",
    "CallStatus",
    "CallTerminateStatus",
    "CallIconVisibility",
    "DayOfWeek",
    "FeatureStatus",
    "PermissionAction",
    "PermissionReplyResponse",
    "PermissionReplySource",
    "PermissionStatus",
    "SdpType",
    "SrtpKeyExchangeProtocol",
    "VoicemailTrigger",
)


class _StrEnum(str, enum.Enum):
    def __str__(self) -> str:
        return str(self.value)


class CallAction(_StrEnum):
    """The ``action`` of ``POST /calling/calls``."""

    CONNECT = "connect"
    PRE_ACCEPT = "pre_accept"
    ACCEPT = "accept"
    REJECT = "reject"
    TERMINATE = "terminate"


class SdpType(_StrEnum):
    OFFER = "offer"
    ANSWER = "answer"


class PermissionStatus(_StrEnum):
    """May the business call this user? ``temporary`` lasts 7 days; ``permanent`` has no expiry."""

    NO_PERMISSION = "no_permission"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"


class PermissionAction(_StrEnum):
    SEND_CALL_PERMISSION_REQUEST = "send_call_permission_request"
    START_CALL = "start_call"


class FeatureStatus(_StrEnum):
    ENABLED = "ENABLED"
    DISABLED = "DISABLED"


class CallIconVisibility(_StrEnum):
    DEFAULT = "DEFAULT"
    DISABLE_ALL = "DISABLE_ALL"


class SrtpKeyExchangeProtocol(_StrEnum):
    DTLS = "DTLS"
    SDES = "SDES"


class DayOfWeek(_StrEnum):
    MONDAY = "MONDAY"
    TUESDAY = "TUESDAY"
    WEDNESDAY = "WEDNESDAY"
    THURSDAY = "THURSDAY"
    FRIDAY = "FRIDAY"
    SATURDAY = "SATURDAY"
    SUNDAY = "SUNDAY"


class AudioCodec(_StrEnum):
    """Codecs besides Opus (always on) that Meta transcodes to."""

    PCMA = "PCMA"
    PCMU = "PCMU"


class VoicemailTrigger(_StrEnum):
    REJECT = "REJECT"
    TIMEOUT = "TIMEOUT"


class CallDirection(_StrEnum):
    USER_INITIATED = "USER_INITIATED"
    BUSINESS_INITIATED = "BUSINESS_INITIATED"


class CallStatus(_StrEnum):
    """A business-initiated call's ``statuses[].status`` webhook."""

    RINGING = "RINGING"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"


class CallTerminateStatus(_StrEnum):
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


class PermissionReplyResponse(_StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"


class PermissionReplySource(_StrEnum):
    USER_ACTION = "user_action"
    AUTOMATIC = "automatic"
