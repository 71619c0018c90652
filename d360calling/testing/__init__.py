"""A fake 360dialog Calling API to test against, without the real API or a phone.

>>> from d360calling.testing import FakeCallingAPI, Fault
>>> with FakeCallingAPI() as fake:          # a real server on loopback, in a thread
...     call = fake.user_calls("4915112345678")
...     with fake.client() as client:
...         _ = client.accept_call(call.id, sample_answer())
...     fake.calls[call.id].state
'accepted'

Installing d360calling also gives pytest the fixtures ``d360_fake_api`` and ``d360_client``
(see :mod:`d360calling.testing.pytest_plugin`).
"""

from ..webhooks._auth import SIGNATURE_HEADER
from ..webhooks._auth import signature as sign
from ._delivery import WebhookDelivery
from ._faults import ERROR_CATALOGUE, Fault, InjectedFault, RandomFaults
from ._sdp import sample_answer, sample_offer
from ._server import DEFAULT_API_KEY, FakeCallingAPI, RecordedRequest
from ._state import FakeCall, FakeClock, ScenarioError

__all__ = (
    "DEFAULT_API_KEY",
    "ERROR_CATALOGUE",
    "SIGNATURE_HEADER",
    "FakeCall",
    "FakeCallingAPI",
    "FakeClock",
    "Fault",
    "InjectedFault",
    "RandomFaults",
    "RecordedRequest",
    "ScenarioError",
    "WebhookDelivery",
    "sample_answer",
    "sample_offer",
    "sign",
)
