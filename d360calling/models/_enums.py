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
    "CallDecisionReason",
    "CallDirection",
    "CallNextStep",
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
    "TemplateParameterFormat",
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


class CallDecisionReason(_StrEnum):
    """Why :meth:`AsyncClient.can_call` says the business may not call the user now."""

    NO_PERMISSION = "no_permission"
    """The user has not allowed calls (or has revoked the permission)."""
    EXPIRED = "expired"
    """A temporary permission whose ``expiration_time`` has passed (the API may still report
    it as ``temporary``)."""
    CALL_LIMIT_REACHED = "call_limit_reached"
    """The connected-call limit is used up until ``until``."""
    REQUEST_LIMIT_REACHED = "request_limit_reached"
    """No permission, and no permission request may be sent now either."""
    UNKNOWN = "unknown"
    """The API said no without saying why (e.g. a status this library does not know)."""


class CallNextStep(_StrEnum):
    """What to do after :meth:`AsyncClient.can_call`."""

    CALL = "call"
    SEND_PERMISSION_REQUEST = "send_permission_request"
    WAIT_UNTIL = "wait_until"
    """Ask again at ``retry_at``."""
    NONE = "none"
    """Nothing the business can do now brings a call closer."""


class TemplateParameterFormat(_StrEnum):
    """How a template's variables are written: ``{{1}}`` (positional) or ``{{first_name}}``
    (named). It is chosen when the template is created; a send must match it."""

    POSITIONAL = "positional"
    NAMED = "named"
