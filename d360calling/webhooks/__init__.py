"""Call webhooks: typed events, authentication, and a receiver that survives real delivery,
served by aiohttp or any ASGI server or framework.

>>> from d360calling.webhooks import parse_webhook
>>> events = parse_webhook(body)          # doctest: +SKIP
"""

from ..errors import WebhookParseError
from ..models.webhooks import (
    AccountSettingsUpdateEvent,
    AsyncCallActions,
    CallActions,
    CallConnectEvent,
    CallEvent,
    CallRecordingAvailableEvent,
    CallStatusEvent,
    CallTerminateEvent,
    CallTranscriptionAvailableEvent,
    ContactProfile,
    MessageStatus,
    MessageStatusEvent,
    PermissionReplyEvent,
    SipCallCreatedEvent,
    SyncCallActions,
    UnknownEvent,
    VoicemailEvent,
    WebhookContact,
    WebhookError,
    WebhookEvent,
    WebhookMedia,
    WebhookMetadata,
)
from ._asgi import ASGIReceive, ASGIScope, ASGISend, WebhookASGIApp
from ._auth import SIGNATURE_HEADER, WebhookAuth, signature, verify_signature
from ._background import BackgroundReceiver, SyncOutboundCall
from ._core import BodyChunks, WebhookReply
from ._dedupe import DedupeMemory, InMemoryDedupeMemory
from ._outbound import CallAnswer, CallOutcome, OutboundCall, OutboundCallState
from ._parse import MAX_ID_LENGTH, MAX_TIMESTAMP, parse_webhook
from ._receiver import MAX_EARLY_EVENTS, WebhookReceiver
from ._state import EventClaim, InMemoryState, ReceiverState, StateListener
from ._tracker import CallRecord, CallStore, CallTracker, InMemoryCallStore
from ._waiters import MAX_REMEMBERED_ANSWERS, PermissionOutcome, PermissionWaitResult

__all__ = (
    "MAX_EARLY_EVENTS",
    "MAX_ID_LENGTH",
    "MAX_REMEMBERED_ANSWERS",
    "MAX_TIMESTAMP",
    "SIGNATURE_HEADER",
    "ASGIReceive",
    "ASGIScope",
    "ASGISend",
    "AccountSettingsUpdateEvent",
    "AsyncCallActions",
    "BackgroundReceiver",
    "BodyChunks",
    "CallActions",
    "CallAnswer",
    "CallConnectEvent",
    "CallEvent",
    "CallOutcome",
    "CallRecord",
    "CallRecordingAvailableEvent",
    "CallStatusEvent",
    "CallStore",
    "CallTerminateEvent",
    "CallTracker",
    "CallTranscriptionAvailableEvent",
    "ContactProfile",
    "DedupeMemory",
    "EventClaim",
    "InMemoryCallStore",
    "InMemoryDedupeMemory",
    "InMemoryState",
    "MessageStatus",
    "MessageStatusEvent",
    "OutboundCall",
    "OutboundCallState",
    "PermissionOutcome",
    "PermissionReplyEvent",
    "PermissionWaitResult",
    "ReceiverState",
    "SipCallCreatedEvent",
    "StateListener",
    "SyncCallActions",
    "SyncOutboundCall",
    "UnknownEvent",
    "VoicemailEvent",
    "WebhookASGIApp",
    "WebhookAuth",
    "WebhookContact",
    "WebhookError",
    "WebhookEvent",
    "WebhookMedia",
    "WebhookMetadata",
    "WebhookParseError",
    "WebhookReceiver",
    "WebhookReply",
    "parse_webhook",
    "signature",
    "verify_signature",
)
