"""d360calling: an asyncio-first client for 360dialog's WhatsApp Calling API, with a sync facade.

>>> from d360calling import AsyncClient, Client
"""

from . import errors, models
from ._async_client import AsyncClient, Deadline
from ._retry import RetryPolicy
from ._sync_client import Client
from ._version import __version__
from .errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    D360Error,
    InvalidRequestError,
    NoCallPermissionError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseDecodeError,
    ServerError,
    WebhookParseError,
)
from .models import (
    CallAction,
    CallActionRequest,
    CallActionResponse,
    CallHoursSettings,
    CallingSettings,
    CallPermissions,
    ConnectCallResponse,
    FeatureStatus,
    PermissionStatus,
    Settings,
    SipSettings,
)

__all__ = (
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "CallAction",
    "CallActionRequest",
    "CallActionResponse",
    "CallHoursSettings",
    "CallPermissions",
    "CallingSettings",
    "Client",
    "ClientClosedError",
    "ConnectCallResponse",
    "D360Error",
    "Deadline",
    "FeatureStatus",
    "InvalidRequestError",
    "NoCallPermissionError",
    "NotFoundError",
    "PermissionDeniedError",
    "PermissionStatus",
    "RateLimitError",
    "ResponseDecodeError",
    "RetryPolicy",
    "ServerError",
    "Settings",
    "SipSettings",
    "WebhookParseError",
    "__version__",
    "errors",
    "models",
)
