"""A fake 360dialog Calling API to test against, without the real API or a phone.

>>> from d360calling.testing import CallState, FakeCallingAPI, sample_answer
>>> with FakeCallingAPI() as fake:          # a real server on loopback, in a thread
...     call = fake.user_calls("4915112345678")
...     with fake.client() as client:
...         _ = client.accept_call(call.id, sample_answer())
...     fake.calls[call.id].state is CallState.ACCEPTED
True

States are string enums (``CallState.ACCEPTED == "accepted"``). Request bodies are checked
against the OpenAPI contract shipped in this package (jsonschema: the ``testing`` extra).
:func:`serve` runs any ``aiohttp.web`` app on loopback, as the fake itself runs, e.g. for a
webhook receiver in a test.

Installing d360calling also gives pytest the fixtures ``d360_fake_api`` and ``d360_client``
(see :mod:`d360calling.testing.pytest_plugin`).
"""

from ..webhooks._auth import SIGNATURE_HEADER
from ..webhooks._auth import signature as sign
from ._calls import DEFAULT_MAX_RECORDED_CALLS, FakeCall
from ._clock import FakeClock
from ._delivery import MAX_WEBHOOK_CONCURRENCY, FleetDelivery, WebhookDelivery, WebhookLog
from ._enums import (
    CallAction,
    CallDirection,
    CallState,
    CallStatus,
    CallTerminateStatus,
    EndReason,
    MessageKind,
    PermissionReplyResponse,
    PermissionReplySource,
    PermissionStatus,
)
from ._errors import ERROR_CATALOGUE, ScenarioError
from ._faults import Fault, InjectedFault, RandomFaults
from ._http import MAX_REQUEST_BYTES
from ._identity import FakeUser
from ._messages import DEFAULT_MAX_RECORDED_MESSAGES, FakeMessage, FakeTemplate
from ._records import (
    DEFAULT_MAX_RECORDED_BYTES,
    DEFAULT_MAX_RECORDED_REQUESTS,
    DEFAULT_MAX_RECORDED_WEBHOOKS,
    RecordedRequest,
    RecordLog,
    RequestLog,
)
from ._runner import ServedApp, serve
from ._sdp import SDP_ERROR_CODE, SDP_ERROR_SUBCODE, sample_answer, sample_offer
from ._server import DEFAULT_API_KEY, FakeCallingAPI
from ._world import MEDIA_TIMEOUT

__all__ = (
    "MAX_WEBHOOK_CONCURRENCY",
    "FleetDelivery",
    "DEFAULT_API_KEY",
    "DEFAULT_MAX_RECORDED_BYTES",
    "DEFAULT_MAX_RECORDED_CALLS",
    "DEFAULT_MAX_RECORDED_MESSAGES",
    "DEFAULT_MAX_RECORDED_REQUESTS",
    "DEFAULT_MAX_RECORDED_WEBHOOKS",
    "ERROR_CATALOGUE",
    "MAX_REQUEST_BYTES",
    "MEDIA_TIMEOUT",
    "SDP_ERROR_CODE",
    "SDP_ERROR_SUBCODE",
    "SIGNATURE_HEADER",
    "CallAction",
    "CallDirection",
    "CallState",
    "CallStatus",
    "EndReason",
    "FakeCall",
    "FakeCallingAPI",
    "FakeClock",
    "FakeMessage",
    "FakeTemplate",
    "FakeUser",
    "Fault",
    "InjectedFault",
    "MessageKind",
    "PermissionReplyResponse",
    "PermissionReplySource",
    "PermissionStatus",
    "RandomFaults",
    "RecordLog",
    "RecordedRequest",
    "RequestLog",
    "ScenarioError",
    "ServedApp",
    "CallTerminateStatus",
    "WebhookDelivery",
    "WebhookLog",
    "sample_answer",
    "sample_offer",
    "serve",
    "sign",
)
