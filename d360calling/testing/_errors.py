"""What the fake answers when it refuses something: the catalogue of documented Meta error
codes, the error body 360dialog passes through, and the two exceptions of the fake.

:class:`FakeAPIError` is an error *answer* (it becomes an HTTP response);
:class:`ScenarioError` is a test asking for something that cannot happen.
"""

from __future__ import annotations

import secrets
from typing import Any

__all__ = (
    "DIALOG_RATE_LIMIT_MESSAGE",
    "ERROR_CATALOGUE",
    "FakeAPIError",
    "ScenarioError",
    "meta_error_body",
    "status_for",
)

# Meta's calling error codes with the HTTP status and title they come with (api-facts §5.2),
# the Graph throttling codes the client must understand, and the messaging codes of the
# messages the fake models (131026 and 131047 arrive in a failed status webhook, not as an
# answer; the template codes 132xxx are answers).
ERROR_CATALOGUE: dict[int, tuple[int, str]] = {
    4: (429, "Application request limit reached"),
    100: (400, "Invalid parameter"),
    613: (429, "Calls to this api have exceeded the rate limit"),
    80007: (429, "Rate limit issues"),
    130429: (429, "Rate limit hit"),
    131009: (400, "Parameter value is not valid"),
    131026: (400, "Message undeliverable"),
    131030: (400, "Recipient phone number not in allowed list"),
    131047: (400, "Re-engagement message"),
    131044: (400, "Payment method is not valid"),
    131055: (400, "Method not allowed: calling is handled over SIP on this number"),
    132000: (400, "Number of parameters does not match the expected number of params"),
    132001: (404, "Template name does not exist in the translation"),
    132012: (400, "Parameter format does not match format in the created template"),
    138000: (401, "Calling not enabled"),
    138001: (400, "Receiver is not able to receive calls"),
    138002: (429, "Concurrent calls limit reached"),
    138003: (400, "Duplicate call"),
    138004: (500, "Connection error"),
    138005: (429, "Call rate limit reached"),
    138006: (401, "No approved call permission from the recipient"),
    138007: (500, "Call connect timeout"),
    138008: (400, "SDP Validation error"),  # integrators; undocumented by Meta
    138009: (400, "Call permission request limit reached"),
    138012: (400, "Business initiated calls limit reached"),
    138013: (400, "Business initiated calling is not available"),
    138014: (400, "Calling temporarily disabled due to low quality"),
    138015: (400, "Calling cannot be enabled for this phone number"),
    138017: (400, "Permanent call permission already exists"),
    138018: (400, "Calling prerequisites not met"),
    138019: (400, "Call setup failed"),
    138020: (400, "Relay connection failed"),
    138021: (400, "Media receive timeout"),
    138022: (400, "Media transmit timeout"),
    138023: (400, "Call accepted but no media signals received"),
}

DIALOG_RATE_LIMIT_MESSAGE = "You have exceeded the endpoint rate limit."


def meta_error_body(
    code: int,
    details: str | None = None,
    message: str | None = None,
    subcode: int | None = None,
) -> Any:
    """The Graph error object as 360dialog passes it through for ``code``."""
    title = message or ERROR_CATALOGUE.get(code, (400, "Unknown error"))[1]
    error: dict[str, Any] = {
        "message": f"(#{code}) {title}",
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": "A" + secrets.token_urlsafe(16),
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return {"error": error}


def status_for(code: int) -> int:
    return ERROR_CATALOGUE.get(code, (400, ""))[0]


class FakeAPIError(Exception):
    """An error answer of the fake API: HTTP status and JSON body."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body

    @classmethod
    def meta(
        cls,
        code: int,
        details: str | None = None,
        status: int | None = None,
        *,
        subcode: int | None = None,
    ) -> FakeAPIError:
        return cls(status or status_for(code), meta_error_body(code, details, subcode=subcode))

    @classmethod
    def invalid(cls, details: str) -> FakeAPIError:
        """Meta's 100 "Invalid parameter", which is what a malformed request gets."""
        return cls.meta(100, details)

    @classmethod
    def dialog(cls, status: int, message: str) -> FakeAPIError:
        """A 360dialog-level error, ``{"error": "<message>"}`` (401, 404, 405...)."""
        return cls(status, {"error": message})


class ScenarioError(RuntimeError):
    """A test asked the fake world for something that cannot happen (e.g. to answer a call
    that has ended)."""
