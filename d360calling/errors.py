"""Every error d360calling raises, and the one function that maps an HTTP response to it.

::

    D360Error
    ├── InvalidRequestError (also ValueError)   bad input, raised before anything is sent
    ├── ClientClosedError (also RuntimeError)   the client was closed
    ├── WebhookParseError (also ValueError)     a webhook body that is not a WhatsApp webhook
    ├── ResponseDecodeError                     a 2xx body that is not what the API promises
    ├── APIConnectionError                      no HTTP response: refused, reset, TLS, DNS
    │   └── APITimeoutError                     an attempt ran past its timeout
    └── APIError                                the API answered with an error status
        ├── BadRequestError                     400
        ├── AuthenticationError                 401
        ├── PermissionDeniedError               403, and calling-eligibility codes
        │   └── NoCallPermissionError           code 138006: the user has not allowed calls
        ├── NotFoundError                       404
        ├── RateLimitError                      429, 360dialog's "rate limit" 400, throttling codes
        └── ServerError                         5xx
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy

from . import _json
from ._headers import parse_retry_after, request_id_from

__all__ = (
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "D360Error",
    "InvalidRequestError",
    "NoCallPermissionError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseDecodeError",
    "ServerError",
    "WebhookParseError",
    "error_from_response",
)


class D360Error(Exception):
    """Base class of every error raised by d360calling.

    Errors pickle (to cross process boundaries, e.g. in task queues) with all their fields.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        state = {
            key: CIMultiDict(value) if isinstance(value, CIMultiDictProxy) else value
            for key, value in self.__dict__.items()
        }
        return (_restore, (type(self), self.args, state))


def _restore(cls: type[D360Error], args: tuple[Any, ...], state: dict[str, Any]) -> D360Error:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class InvalidRequestError(D360Error, ValueError):
    """The arguments cannot make a valid request; nothing was sent."""


class ClientClosedError(D360Error, RuntimeError):
    """The client has been closed; create a new one."""


class WebhookParseError(D360Error, ValueError):
    """A webhook body that is not JSON, or not a WhatsApp Business Account webhook."""


class APIConnectionError(D360Error):
    """No HTTP response was received (connection refused or reset, DNS, TLS, broken body).

    ``request_may_have_been_sent`` is ``False`` only when the connection was never
    established, so the server cannot have seen the request.
    """

    def __init__(self, message: str, *, method: str, path: str, request_may_have_been_sent: bool):
        super().__init__(f"{message} ({method} {path})")
        self.method = method
        self.path = path
        self.request_may_have_been_sent = request_may_have_been_sent


class APITimeoutError(APIConnectionError):
    """An attempt did not complete within its timeout."""


class ResponseDecodeError(D360Error):
    """A successful response whose body is not what the API promises."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        body: bytes,
        headers: Mapping[str, str],
        method: str,
        path: str,
    ):
        super().__init__(f"{message} (HTTP {status} on {method} {path})")
        self.status = status
        self.body = body
        self.headers = headers
        self.method = method
        self.path = path
        self.request_id = request_id_from(headers)


class APIError(D360Error):
    """The API answered with an error status.

    ``message`` is the best human text found in the body; ``code``, ``error_subcode``,
    ``error_type``, ``details`` and ``fbtrace_id`` are Meta's fields when the body carries them.
    ``body`` is the raw body and ``headers`` the response headers.
    """

    def __init__(
        self,
        *,
        status: int,
        message: str,
        body: bytes,
        headers: Mapping[str, str],
        method: str,
        path: str,
        code: int | None = None,
        error_subcode: int | None = None,
        error_type: str | None = None,
        details: str | None = None,
        fbtrace_id: str | None = None,
    ):
        self.status = status
        self.message = message
        self.body = body
        self.headers = headers
        self.method = method
        self.path = path
        self.code = code
        self.error_subcode = error_subcode
        self.error_type = error_type
        self.details = details
        self.fbtrace_id = fbtrace_id
        self.request_id = request_id_from(headers)
        super().__init__(self._describe())

    @property
    def retry_after(self) -> float | None:
        """Seconds the server asked us to wait (``Retry-After``), if it said."""
        return parse_retry_after(self.headers)

    def _describe(self) -> str:
        text = f"HTTP {self.status} on {self.method} {self.path}: {self.message}"
        codes = []
        if self.code is not None:
            codes.append(f"code {self.code}")
        if self.error_subcode is not None:
            codes.append(f"subcode {self.error_subcode}")
        if codes:
            text += f" ({', '.join(codes)})"
        if self.details and self.details not in self.message:
            text += f": {self.details}"
        return text


class BadRequestError(APIError):
    """HTTP 400: the API refused the request as invalid."""


class AuthenticationError(APIError):
    """HTTP 401: the API key is missing, wrong or revoked."""


class PermissionDeniedError(APIError):
    """HTTP 403, or a calling-eligibility refusal (calling not enabled, no permission)."""


class NoCallPermissionError(PermissionDeniedError):
    """Error 138006: the user has not granted this business permission to call."""


class NotFoundError(APIError):
    """HTTP 404."""


class RateLimitError(APIError):
    """HTTP 429, 360dialog's throttling 400, or a Meta throttling code. See ``retry_after``."""


class ServerError(APIError):
    """HTTP 5xx: the API or something in front of it failed."""


_STATUS_CLASSES: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
}
# Meta throttling codes (api-facts §5.2/§5.3); they win over the HTTP status.
_RATE_LIMIT_CODES = frozenset({4, 613, 80007, 130429, 131048, 131056, 138002, 138005})
# Not an API-key problem even when sent with HTTP 401: calling not enabled / no permission.
_CODE_CLASSES: dict[int, type[APIError]] = {
    138000: PermissionDeniedError,
    138006: NoCallPermissionError,
}
# 360dialog throttles with a 400 and a text: "You have exceeded the endpoint rate limit." or
# "You have exceeded the limit of 1 request every * seconds".
_RATE_LIMIT_TEXT = re.compile(r"rate.?limit|exceeded the limit of", re.IGNORECASE)
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")
_SNIPPET = 200


def error_from_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    method: str,
    path: str,
) -> APIError:
    """Map a non-success response to the right :class:`APIError` subclass.

    Understands every error body the API is documented to send: ``{"error": "text"}``,
    Meta's ``{"error": {...}}``, 360dialog's ``{"meta": {...}}``, ``{"message": ...}``,
    and non-JSON bodies (an HTML 502 from a proxy, an empty body).
    """
    fields = _parse_error_body(status, headers, body)
    code = fields.get("code")
    cls: type[APIError]
    if code in _CODE_CLASSES:
        cls = _CODE_CLASSES[code]
    elif code in _RATE_LIMIT_CODES or (
        status == 400 and _RATE_LIMIT_TEXT.search(fields["message"])
    ):
        cls = RateLimitError
    elif status >= 500:
        cls = ServerError
    else:
        cls = _STATUS_CLASSES.get(status, APIError)
    return cls(status=status, body=body, headers=headers, method=method, path=path, **fields)


def _parse_error_body(status: int, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {"message": _status_text(status, headers, "empty body")}
    try:
        data = _json.loads(body)
    except _json.JSONDecodeError:
        return {"message": _status_text(status, headers, _non_json_summary(headers, body))}
    if isinstance(data, dict):
        fields = _from_error_object(data)
        if fields is not None:
            return fields
    return {"message": _status_text(status, headers, _snippet(body.decode("utf-8", "replace")))}


def _from_error_object(data: dict[str, Any]) -> dict[str, Any] | None:
    error = data.get("error")
    if isinstance(error, str) and error:
        return {"message": error}
    if isinstance(error, dict):
        return _from_meta_error(error)
    meta = data.get("meta")
    if isinstance(meta, dict):
        message = _first_text(meta, "developer_message", "developerMessage", "message")
        details = meta.get("details")
        return {
            "message": message or "error",
            "details": _join_details(details) if details else None,
        }
    message = _first_text(data, "message", "detail", "error_description")
    if message:
        return {"message": message}
    return None


def _from_meta_error(error: dict[str, Any]) -> dict[str, Any]:
    # Meta's own text first; the user-facing title/message when the technical one is absent.
    message = _first_text(error, "message", "error_user_msg", "error_user_title", "title")
    error_data = error.get("error_data")
    details = None
    if isinstance(error_data, dict):
        details = _first_text(error_data, "details")
    elif isinstance(error_data, str):
        details = error_data
    return {
        "message": message or "error",
        "code": _int_or_none(error.get("code")),
        "error_subcode": _int_or_none(error.get("error_subcode")),
        "error_type": _first_text(error, "type"),
        "details": details,
        "fbtrace_id": _first_text(error, "fbtrace_id"),
    }


def _first_text(data: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _join_details(details: Any) -> str:
    if isinstance(details, list):
        return "; ".join(str(item) for item in details)
    return str(details)


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _status_text(status: int, headers: Mapping[str, str], summary: str) -> str:
    if 300 <= status < 400:
        location = headers.get("location", "")
        return f"redirect to {location or 'an unknown location'} not followed"
    return summary


def _non_json_summary(headers: Mapping[str, str], body: bytes) -> str:
    content_type = headers.get("content-type", "unknown content type").split(";")[0]
    title = _TITLE.search(body)
    if title:
        text = title.group(1).decode("utf-8", "replace")
    else:
        text = _TAG.sub(" ", body.decode("utf-8", "replace"))
    return f"non-JSON body ({content_type}, {len(body)} bytes): {_snippet(text)}"


def _snippet(text: str) -> str:
    text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= _SNIPPET else text[: _SNIPPET - 1] + "…"
