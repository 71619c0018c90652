"""Call webhooks: typed events, authentication, and a receiver that survives real delivery.

>>> from d360calling.webhooks import parse_webhook
>>> events = parse_webhook(body)          # doctest: +SKIP
"""

from ..errors import WebhookParseError
from ..models.webhooks import (
    AsyncCallActions,
    CallActions,
    CallConnectEvent,
    CallEvent,
    CallStatusEvent,
    CallTerminateEvent,
    ContactProfile,
    PermissionReplyEvent,
    SyncCallActions,
    UnknownEvent,
    WebhookContact,
    WebhookError,
    WebhookEvent,
    WebhookMetadata,
)
from ._auth import SIGNATURE_HEADER, WebhookAuth, signature, verify_signature
from ._dedupe import DedupeMemory, InMemoryDedupeMemory
from ._parse import MAX_ID_LENGTH, MAX_TIMESTAMP, parse_webhook
from ._receiver import WebhookReceiver
from ._tracker import CallRecord, CallStore, CallTracker, InMemoryCallStore

__all__ = (
    "MAX_ID_LENGTH",
    "MAX_TIMESTAMP",
    "SIGNATURE_HEADER",
    "AsyncCallActions",
    "CallActions",
    "CallConnectEvent",
    "CallEvent",
    "CallRecord",
    "CallStatusEvent",
    "CallStore",
    "CallTerminateEvent",
    "CallTracker",
    "ContactProfile",
    "DedupeMemory",
    "InMemoryCallStore",
    "InMemoryDedupeMemory",
    "PermissionReplyEvent",
    "SyncCallActions",
    "UnknownEvent",
    "WebhookAuth",
    "WebhookContact",
    "WebhookError",
    "WebhookEvent",
    "WebhookMetadata",
    "WebhookParseError",
    "WebhookReceiver",
    "parse_webhook",
    "signature",
    "verify_signature",
)
