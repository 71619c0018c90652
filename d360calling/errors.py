"""Every error d360calling raises, and the one function that maps an HTTP response to it.

As in the Stainless SDKs (OpenAI, Anthropic), ``except APIError`` catches everything that
went wrong talking to the API - an error status, no response at all, or a response that is not
what the API promises - while mistakes in the calling code are separate::

    D360Error
    ├── InvalidRequestError (also ValueError)    bad input, raised before anything is sent
    ├── ClientMisuseError (also RuntimeError)    the client used where it cannot work
    │   └── ClientClosedError                    the client was closed
    ├── CallNotAnsweredError                     a business-initiated call that was not answered
    │   ├── CallDeclinedError                    the user declined it
    │   ├── CallUnansweredError                  it rang out, or ringing_timeout passed
    │   └── CallFailedError                      it failed (see ``errors``)
    ├── WebhookParseError (also ValueError)      a webhook body that is not a WhatsApp webhook
    ├── StateUnavailableError                    a receiver's shared state (Redis) unreachable
    └── APIError                                 something went wrong talking to the API
        ├── APIConnectionError                   no HTTP response: refused, reset, TLS, DNS
        │   └── APITimeoutError                  an attempt ran past its timeout
        ├── ResponseDecodeError                  a 2xx body that is not what the API promises
        ├── UnsuccessfulResponseError            a 2xx answer that says ``success: false``
        └── APIStatusError                       the API answered with an error status
            ├── BadRequestError                  400
            ├── AuthenticationError              401
            ├── PermissionDeniedError            403, and calling-eligibility codes
            │   ├── NoCallPermissionError        code 138006: the user has not allowed calls
            │   ├── CallLimitReachedError        code 138012: connected-call limit used up
            │   ├── PermissionRequestLimitError  code 138009: too many permission requests
            │   ├── PermissionAlreadyPermanentError  code 138017: nothing left to request
            │   └── ReEngagementRequiredError    code 131047: outside the 24 h window
            ├── NotFoundError                    404
            ├── MessageUndeliverableError        code 131026: the message cannot reach the user
            ├── RateLimitError                   429, 360dialog's "rate limit" 400, throttling
            └── ServerError                      5xx

How :func:`error_from_response` picks the class of an error status, first match wins:

=====================================================  ===========================
The response                                           Class
=====================================================  ===========================
Meta code 138006 (any HTTP status, often 401)          ``NoCallPermissionError``
Meta code 138000 (calling not enabled)                 ``PermissionDeniedError``
Meta code 138012 (connected-call limit)                ``CallLimitReachedError``
Meta code 138009 (permission-request limit)            ``PermissionRequestLimitError``
Meta code 138017 (permanent permission exists)         ``PermissionAlreadyPermanentError``
Meta code 131047 (outside the 24 h window)             ``ReEngagementRequiredError``
Meta code 131026 (message undeliverable)               ``MessageUndeliverableError``
Meta throttling code (4, 613, 80007, 130429, 131048,   ``RateLimitError``
131056, 138002, 138005), or a 400 whose text says
"rate limit" / "exceeded the limit of"
HTTP 500-599                                           ``ServerError``
HTTP 400 / 401 / 403 / 404 / 429                       ``BadRequestError`` /
                                                       ``AuthenticationError`` /
                                                       ``PermissionDeniedError`` /
                                                       ``NotFoundError`` /
                                                       ``RateLimitError``
any other status                                       ``APIStatusError``
=====================================================  ===========================

A 2xx answer that says it failed (``"success": false``, or a body that is only an ``error``
object) goes through the same table: a code in its first rows gives that class (e.g.
``NoCallPermissionError`` with ``status_code`` 200 and ``code`` 138006), anything else is an
``UnsuccessfulResponseError`` carrying the same Meta fields.

An error keeps at most the first 64 KiB of a response body (``body``), and at most 1,000
characters of each text field the server chose (``message``, ``details``, ...). No error keeps
an aiohttp object: those carry the request's headers, so the API key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy

from . import _json
from ._constants import MAX_ERROR_BODY_BYTES
from ._headers import parse_retry_after, request_id_from

__all__ = (
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "CallDeclinedError",
    "CallFailedError",
    "CallLimitReachedError",
    "CallNotAnsweredError",
    "CallUnansweredError",
    "ClientClosedError",
    "ClientMisuseError",
    "D360Error",
    "InvalidRequestError",
    "MessageUndeliverableError",
    "NoCallPermissionError",
    "NotFoundError",
    "PermissionAlreadyPermanentError",
    "PermissionDeniedError",
    "PermissionRequestLimitError",
    "RateLimitError",
    "ReEngagementRequiredError",
    "ResponseDecodeError",
    "ServerError",
    "StateUnavailableError",
    "UnsuccessfulResponseError",
    "WebhookParseError",
    "error_from_response",
    "error_from_webhook",
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


class ClientMisuseError(D360Error, RuntimeError):
    """The client was used where it cannot work, e.g. on another event loop than its own."""


class ClientClosedError(ClientMisuseError):
    """The client has been closed; create a new one."""


class CallNotAnsweredError(D360Error):
    """A business-initiated call ended without being answered: ``outcome`` says how (a
    ``CallOutcome``), ``call_id`` which call; ``errors`` are the terminate webhook's errors."""

    def __init__(
        self, message: str, *, call_id: str, outcome: object, errors: tuple[object, ...] = ()
    ) -> None:
        super().__init__(message)
        self.call_id = call_id
        self.outcome = outcome
        self.errors = errors


class CallDeclinedError(CallNotAnsweredError):
    """The user declined the call."""


class CallUnansweredError(CallNotAnsweredError):
    """Nobody answered: it rang out, or ``ringing_timeout`` passed and it was terminated."""


class CallFailedError(CallNotAnsweredError):
    """The call failed before it was answered; ``errors`` carries the webhook's errors."""


class StateUnavailableError(D360Error):
    """A receiver's shared state (``d360calling.fleet.RedisState``) cannot be reached or
    refused the request: the receiver answers 503 until it is back. The text names the
    server without its credentials."""


class WebhookParseError(D360Error, ValueError):
    """A webhook body that is not JSON, or not a WhatsApp Business Account webhook."""


class APIError(D360Error):
    """Something went wrong talking to the API: the base of every error below.

    ``method`` and ``path`` name the request; ``request_id`` is 360dialog's or Meta's id of it,
    when a response carried one.
    """

    method: str
    path: str
    request_id: str | None


class APIConnectionError(APIError):
    """No HTTP response was received (connection refused or reset, DNS, TLS, broken body).

    ``request_may_have_been_sent`` is ``False`` only when the connection was never
    established, so the server cannot have seen the request. ``cause`` names what failed
    underneath (e.g. ``"ClientConnectorError: Cannot connect to host ..."``): as text, because
    aiohttp's exceptions can hold the request's headers, so the API key; the exception is
    neither ``__cause__`` nor ``__context__``.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str,
        path: str,
        request_may_have_been_sent: bool,
        cause: str | None = None,
    ):
        super().__init__(f"{message} ({method} {path})")
        self.method = method
        self.path = path
        self.request_id = None
        self.request_may_have_been_sent = request_may_have_been_sent
        self.cause = cause


class APITimeoutError(APIConnectionError):
    """An attempt did not complete within its timeout."""


class _ResponseError(APIError):
    """An error that came with an HTTP response: its status, headers and raw body."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: bytes,
        headers: Mapping[str, str],
        method: str,
        path: str,
    ):
        super().__init__(f"{message} (HTTP {status_code} on {method} {path})")
        self._keep_response(status_code, body, headers, method, path)

    def _keep_response(
        self, status_code: int, body: bytes, headers: Mapping[str, str], method: str, path: str
    ) -> None:
        self.status_code = status_code
        # Bounded: an error may live long (logs, task queues) and a body can be megabytes.
        self.body = body[:MAX_ERROR_BODY_BYTES]
        self.headers = headers
        self.method = method
        self.path = path
        self.request_id = request_id_from(headers)


class ResponseDecodeError(_ResponseError):
    """A successful response whose body is not what the API promises."""


class UnsuccessfulResponseError(_ResponseError):
    """A 2xx answer whose body says ``"success": false`` (or is only an ``error`` object): the
    API did not do what was asked. ``code``, ``error_subcode``, ``error_type``, ``details`` and
    ``fbtrace_id`` are Meta's fields when the body carries them (else ``None``).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
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
        self.code = code
        self.error_subcode = error_subcode
        self.error_type = error_type
        self.details = details
        self.fbtrace_id = fbtrace_id
        if code is not None:
            message += f" (code {code})"
        super().__init__(
            message,
            status_code=status_code,
            body=body,
            headers=headers,
            method=method,
            path=path,
        )


class APIStatusError(_ResponseError):
    """The API answered with an error status (``status_code``).

    ``message`` is the best human text found in the body; ``code``, ``error_subcode``,
    ``error_type``, ``details`` and ``fbtrace_id`` are Meta's fields when the body carries them.
    ``body`` is the raw body and ``headers`` the response headers.
    """

    def __init__(
        self,
        *,
        status_code: int,
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
        self.message = message
        self.code = code
        self.error_subcode = error_subcode
        self.error_type = error_type
        self.details = details
        self.fbtrace_id = fbtrace_id
        # Its own text ("HTTP 400 on POST /calling/calls: ..."), not the base's suffix form.
        APIError.__init__(
            self, _describe(status_code, method, path, message, code, error_subcode, details)
        )
        self._keep_response(status_code, body, headers, method, path)

    @property
    def retry_after(self) -> float | None:
        """Seconds the server asked us to wait (``Retry-After``), if it said."""
        return parse_retry_after(self.headers)


class BadRequestError(APIStatusError):
    """HTTP 400: the API refused the request as invalid."""


class AuthenticationError(APIStatusError):
    """HTTP 401: the API key is missing, wrong or revoked."""


class PermissionDeniedError(APIStatusError):
    """HTTP 403, or a calling-eligibility refusal (calling not enabled, no permission)."""


class NoCallPermissionError(PermissionDeniedError):
    """Error 138006: the user has not granted this business permission to call."""


class CallLimitReachedError(PermissionDeniedError):
    """Error 138012: the user's connected-call limit is used up; ``can_call`` says until when."""


class PermissionRequestLimitError(PermissionDeniedError):
    """Error 138009: the permission-request limit (per 24 h / 7 days) for this user is reached."""


class PermissionAlreadyPermanentError(PermissionDeniedError):
    """Error 138017: the user already granted permanent permission; do not ask again."""


class ReEngagementRequiredError(PermissionDeniedError):
    """Error 131047: more than 24 h since the user last wrote; send a template instead."""


class MessageUndeliverableError(APIStatusError):
    """Error 131026: the message cannot be delivered (e.g. the user's WhatsApp is too old).

    Usually reported by a message status webhook rather than the send's answer: see
    :func:`error_from_webhook`.
    """


class NotFoundError(APIStatusError):
    """HTTP 404."""


class RateLimitError(APIStatusError):
    """HTTP 429, 360dialog's throttling 400, or a Meta throttling code. See ``retry_after``."""


class ServerError(APIStatusError):
    """HTTP 5xx: the API or something in front of it failed."""


def _describe(
    status_code: int,
    method: str,
    path: str,
    message: str,
    code: int | None,
    error_subcode: int | None,
    details: str | None,
) -> str:
    if code == _NO_CALL_PERMISSION:
        return _describe_no_call_permission(method, path, message, error_subcode, details)
    text = f"HTTP {status_code} on {method} {path}: {message}"
    codes = []
    if code is not None:
        codes.append(f"code {code}")
    if error_subcode is not None:
        codes.append(f"subcode {error_subcode}")
    if codes:
        text += f" ({', '.join(codes)})"
    if details and details not in message:
        text += f": {details}"
    return text


_NO_CALL_PERMISSION = 138006
# Meta puts the code in front of its text as well: "(#138006) No approved call permission...".
_CODE_PREFIX = re.compile(r"^\(#[0-9]{1,18}\)\s*")
# Two texts that start alike for this long say the same thing (Meta's title and its details).
_SAME_START = 12


def _describe_no_call_permission(
    method: str, path: str, message: str, error_subcode: int | None, details: str | None
) -> str:
    """138006, each thing once: what the API said (its details are the specific form of its
    message), the code and the request, and what to do. No HTTP status: it comes with 401,
    which would read as a wrong API key (``status_code`` still has it)."""
    said = _CODE_PREFIX.sub("", message, count=1).strip()
    if said.lower() in ("", "error"):
        said = ""
    if details:
        start = said[:_SAME_START].lower()
        same = len(start) == _SAME_START and details.lower().startswith(start)
        said = details if same or not said or said in details else f"{said}: {details}"
    said = said or "No approved call permission from the user"
    where = f"in a {path} webhook" if method == "WEBHOOK" else f"{method} {path}"
    codes = f"code {_NO_CALL_PERMISSION}" + (
        f", subcode {error_subcode}" if error_subcode is not None else ""
    )
    return f"{said} ({codes}, {where}); ask the user for call permission first"


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
}
# Meta throttling codes (api-facts §5.2/§5.3); they win over the HTTP status.
_RATE_LIMIT_CODES = frozenset({4, 613, 80007, 130429, 131048, 131056, 138002, 138005})
# Not an API-key problem even when sent with HTTP 401: calling not enabled / no permission.
_CODE_CLASSES: dict[int, type[APIStatusError]] = {
    138000: PermissionDeniedError,
    138006: NoCallPermissionError,
    138009: PermissionRequestLimitError,
    138012: CallLimitReachedError,
    138017: PermissionAlreadyPermanentError,
    131047: ReEngagementRequiredError,
    131026: MessageUndeliverableError,
}
# 360dialog throttles with a 400 and a text: "You have exceeded the endpoint rate limit." or
# "You have exceeded the limit of 1 request every * seconds".
_RATE_LIMIT_TEXT = re.compile(r"rate.?limit|exceeded the limit of", re.IGNORECASE)
# Linear on any input: a tag cannot contain "<", so a run of "<" without ">" costs nothing.
_TAG = re.compile(r"<[^<>]*>")
_SPACE = re.compile(r"\s+")
_SNIPPET = 200
# Server-chosen text kept in an error's fields (message, details, ...), in characters.
_FIELD_MAX = 1000


def error_from_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    method: str,
    path: str,
) -> APIStatusError:
    """Map a non-success response to the right :class:`APIStatusError` subclass (the table
    in this module's docstring).

    Understands every error body the API is documented to send: ``{"error": "text"}``,
    Meta's ``{"error": {...}}``, 360dialog's ``{"meta": {...}}``, ``{"message": ...}``,
    and non-JSON bodies (an HTML 502 from a proxy, an empty body).
    """
    fields = _parse_error_body(status, headers, body)
    cls = _error_class(status, fields) or APIStatusError
    return cls(status_code=status, body=body, headers=headers, method=method, path=path, **fields)


def _error_from_answer(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    method: str,
    path: str,
) -> APIStatusError | UnsuccessfulResponseError:
    """Map a 2xx answer that says it failed (``"success": false``, or only an ``error``
    object) through the same table: a code in it gives its class, else
    :class:`UnsuccessfulResponseError`, with Meta's fields either way."""
    fields = _answer_fields(body)
    cls = _error_class(status, fields)
    if cls is not None:
        fields.setdefault("message", "error")
        return cls(
            status_code=status, body=body, headers=headers, method=method, path=path, **fields
        )
    message = fields.pop("message", None)
    text = "the API answered success=false"
    return UnsuccessfulResponseError(
        f"{text}: {message}" if message else text,
        status_code=status,
        body=body,
        headers=headers,
        method=method,
        path=path,
        **fields,
    )


def error_from_webhook(
    code: int | None, message: str | None, details: str | None = None, *, field: str = "messages"
) -> APIStatusError:
    """The error class the table gives for an error a webhook reported (a failed message
    status, a terminate's ``errors[]``): e.g. 131026 → :class:`MessageUndeliverableError`.

    Such an error has no HTTP exchange of its own: ``status_code`` is 200 (the delivery that
    carried it), ``method`` is ``"WEBHOOK"`` and ``path`` the webhook's ``field``.
    """
    fields: dict[str, Any] = {
        "message": _bounded(message) if message else "error",
        "code": code,
        "details": _bounded(details) if details else None,
    }
    cls = _error_class(200, fields) or APIStatusError
    return cls(status_code=200, body=b"", headers={}, method="WEBHOOK", path=field, **fields)


def _answer_fields(body: bytes) -> dict[str, Any]:
    """Meta's fields in the error object of a 2xx body, if it has one."""
    try:
        data = _json.loads(body)
    except _json.JSONDecodeError:
        return {}
    fields = _from_error_object(data) if isinstance(data, dict) else None
    return {} if fields is None else fields


def _error_class(status: int, fields: Mapping[str, Any]) -> type[APIStatusError] | None:
    """The class for a response (the table in this module's docstring); ``None`` for a 2xx
    whose code is not in the table."""
    code = fields.get("code")
    if code in _CODE_CLASSES:
        return _CODE_CLASSES[code]
    if code in _RATE_LIMIT_CODES or (
        status == 400 and _RATE_LIMIT_TEXT.search(fields.get("message") or "")
    ):
        return RateLimitError
    if status >= 500:
        return ServerError
    if 200 <= status < 300:
        return None
    return _STATUS_CLASSES.get(status, APIStatusError)


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
    text = body[:MAX_ERROR_BODY_BYTES].decode("utf-8", "replace")
    return {"message": _status_text(status, headers, _snippet(text))}


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
            return _bounded(value)
    return None


def _bounded(text: str) -> str:
    return text if len(text) <= _FIELD_MAX else text[: _FIELD_MAX - 1] + "…"


def _join_details(details: Any) -> str:
    if isinstance(details, list):
        return _bounded("; ".join(str(item) for item in details[:_FIELD_MAX]))
    return _bounded(str(details))


# Meta's codes are small; a longer digit string is not one (and int() of 4,300+ digits fails).
_CODE = re.compile(r"[0-9]{1,18}", re.ASCII)


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _CODE.fullmatch(value.strip()):
        return int(value)
    return None


def _status_text(status: int, headers: Mapping[str, str], summary: str) -> str:
    if 300 <= status < 400:
        location = headers.get("location", "")
        where = f"{location!r:.200}" if location else "an unknown location"
        return f"redirect to {where} not followed"
    return summary


def _non_json_summary(headers: Mapping[str, str], body: bytes) -> str:
    content_type = headers.get("content-type", "unknown content type").split(";")[0]
    head = body[:MAX_ERROR_BODY_BYTES]  # a summary needs the start only
    text = _html_title(head)
    if text is None:
        text = _TAG.sub(" ", head.decode("utf-8", "replace"))
    return f"non-JSON body ({content_type:.80}, {len(body)} bytes): {_snippet(text)}"


def _html_title(head: bytes) -> str | None:
    # find() rather than a regex with ".*?": linear however many "<title" there are.
    lower = head.lower()
    start = lower.find(b"<title")
    if start < 0:
        return None
    start = lower.find(b">", start)
    end = lower.find(b"</title>", start)
    if start < 0 or end < 0:
        return None
    return head[start + 1 : end].decode("utf-8", "replace")


def _snippet(text: str) -> str:
    text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= _SNIPPET else text[: _SNIPPET - 1] + "…"
