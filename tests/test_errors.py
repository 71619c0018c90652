"""Every documented error body (api-facts §5) becomes the right class with a useful message,
both through ``error_from_response`` and through a real response from a loopback server."""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from d360calling import AsyncClient
from d360calling.errors import (
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    NoCallPermissionError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseDecodeError,
    ServerError,
    error_from_response,
)
from d360calling.testing import FakeCallingAPI, Fault

from .helpers import API_KEY

META_SDP_ERROR = {
    "error": {
        "message": "Invalid parameter",
        "type": "OAuthException",
        "code": 100,
        "error_subcode": 2494010,
        "error_data": {"details": "Fingerprint algo is not SHA256"},
        "fbtrace_id": "AbCdEf123",
    }
}
HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
)


def headers(**values: str) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict({k.replace("_", "-"): v for k, v in values.items()}))


def mapped(status: int, body: bytes | Mapping[str, object], **hdrs: str) -> APIStatusError:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return error_from_response(status, headers(**hdrs), raw, method="POST", path="/calling/calls")


@pytest.mark.parametrize(
    ("status", "body", "cls", "in_message"),
    [
        (400, {"error": "invalid call_id"}, BadRequestError, "invalid call_id"),
        (401, {"error": "Invalid API key"}, AuthenticationError, "Invalid API key"),
        (403, {"error": "Endpoint blocked"}, PermissionDeniedError, "Endpoint blocked"),
        (404, {"error": "not found"}, NotFoundError, "not found"),
        (429, {"error": "too many"}, RateLimitError, "too many"),
        (500, {"error": "internal error"}, ServerError, "internal error"),
        (409, {"message": "webhook exists"}, APIStatusError, "webhook exists"),
        (
            400,
            {"error": "You have exceeded the endpoint rate limit."},
            RateLimitError,
            "exceeded the endpoint rate limit",
        ),
        (
            400,
            {"error": "You have exceeded the limit of 1 request every 5 seconds"},
            RateLimitError,
            "limit of 1 request",
        ),
        (
            400,
            {"meta": {"success": False, "http_code": 400, "developer_message": "unpaid invoices"}},
            BadRequestError,
            "unpaid invoices",
        ),
        (
            502,
            {
                "meta": {
                    "success": False,
                    "httpCode": 502,
                    "developerMessage": "WhatsApp Business API not available",
                    "details": ["upstream down", "try later"],
                }
            },
            ServerError,
            "upstream down; try later",
        ),
    ],
)
def test_documented_bodies_map_to_their_class(
    status: int, body: dict[str, object], cls: type[APIError], in_message: str
) -> None:
    error = mapped(status, body)
    assert type(error) is cls
    assert error.status_code == status
    assert in_message in str(error)
    assert str(status) in str(error)
    assert "/calling/calls" in str(error)


def test_meta_error_object_keeps_code_subcode_details() -> None:
    error = mapped(400, META_SDP_ERROR)
    assert type(error) is BadRequestError
    assert (error.code, error.error_subcode) == (100, 2494010)
    assert error.error_type == "OAuthException"
    assert error.details == "Fingerprint algo is not SHA256"
    assert error.fbtrace_id == "AbCdEf123"
    assert "Fingerprint algo is not SHA256" in str(error)
    assert "code 100" in str(error)
    assert "subcode 2494010" in str(error)


def test_meta_error_with_title_instead_of_message() -> None:
    error = mapped(400, {"error": {"title": "Call setup failed", "code": 138019}})
    assert error.message == "Call setup failed"
    assert error.code == 138019


def test_no_permission_code_is_not_an_auth_failure() -> None:
    error = mapped(401, {"error": {"message": "No approved call permission", "code": 138006}})
    assert isinstance(error, NoCallPermissionError)
    assert isinstance(error, PermissionDeniedError)
    assert not isinstance(error, AuthenticationError)


def test_calling_not_enabled_is_permission_denied() -> None:
    error = mapped(401, {"error": {"message": "Calling not enabled", "code": 138000}})
    assert type(error) is PermissionDeniedError


@pytest.mark.parametrize("code", [4, 613, 80007, 130429, 138002, 138005])
def test_throttling_codes_are_rate_limits_whatever_the_status(code: int) -> None:
    assert isinstance(
        mapped(400, {"error": {"message": "slow down", "code": code}}), RateLimitError
    )


def test_html_502_names_the_page_not_the_markup() -> None:
    error = mapped(502, HTML_502, content_type="text/html; charset=utf-8")
    assert type(error) is ServerError
    assert "502 Bad Gateway" in error.message
    assert "text/html" in error.message
    assert "<" not in error.message
    assert error.body == HTML_502


@pytest.mark.parametrize("status", [500, 503, 504])
def test_empty_body(status: int) -> None:
    error = mapped(status, b"")
    assert type(error) is ServerError
    assert "empty body" in str(error)


def test_plain_text_and_odd_json_bodies() -> None:
    assert "upstream timed out" in str(mapped(504, b"upstream timed out"))
    assert "[1, 2]" in str(mapped(400, b"[1, 2]"))
    assert type(mapped(418, {"error": "teapot"})) is APIStatusError


def test_long_bodies_are_cut_in_the_message() -> None:
    error = mapped(500, b"x" * 10_000)
    assert len(str(error)) < 400
    assert len(error.body) == 10_000


def test_request_id_and_retry_after_are_exposed() -> None:
    error = mapped(429, {"error": "slow"}, x_request_id="req-77", retry_after="12")
    assert error.request_id == "req-77"
    assert error.retry_after == 12.0


def test_errors_survive_pickling() -> None:
    error = mapped(429, META_SDP_ERROR, retry_after="3", x_request_id="r-1")
    copy = pickle.loads(pickle.dumps(error))
    assert type(error) is RateLimitError
    assert type(copy) is RateLimitError
    assert (copy.status_code, copy.code, copy.retry_after) == (429, 100, 3.0)
    assert copy.details == "Fingerprint algo is not SHA256"
    assert copy.request_id == "r-1"
    assert str(copy) == str(error)
    timeout = APITimeoutError("slow", method="GET", path="/x", request_may_have_been_sent=True)
    copy_timeout = pickle.loads(pickle.dumps(timeout))
    assert type(copy_timeout) is APITimeoutError
    assert copy_timeout.request_may_have_been_sent
    assert str(copy_timeout) == str(timeout)
    decode_error = ResponseDecodeError(
        "bad", status_code=200, body=b"x", headers=headers(), method="GET", path="/"
    )
    assert pickle.loads(pickle.dumps(decode_error)).body == b"x"


def test_redirect_status_says_where_it_was_going() -> None:
    error = mapped(302, b"", location="https://elsewhere.example/x")
    assert "https://elsewhere.example/x" in str(error)
    assert "not followed" in str(error)


@pytest.mark.parametrize(
    ("reply", "cls", "in_message"),
    [
        (Fault(status=401, json={"error": "Invalid API key"}), AuthenticationError, "Invalid API"),
        (Fault(status=400, json=META_SDP_ERROR), BadRequestError, "Fingerprint"),
        (
            Fault(status=502, body=HTML_502, headers={"Content-Type": "text/html"}),
            ServerError,
            "502 Bad Gateway",
        ),
        (Fault(status=500, body=b""), ServerError, "empty body"),
        (
            Fault(status=401, json={"error": {"message": "no permission", "code": 138006}}),
            NoCallPermissionError,
            "138006",
        ),
    ],
)
@pytest.mark.asyncio
async def test_error_bodies_from_a_real_server(
    api: FakeCallingAPI, reply: Fault, cls: type[APIStatusError], in_message: str
) -> None:
    api.inject(reply, method="POST", path="/calling/calls")
    async with AsyncClient(
        api_key=API_KEY, base_url=api.url, max_retries=0, sdp_check="off"
    ) as client:
        with pytest.raises(cls) as info:
            await client.connect_call("4915112345678", "v=0\r\n")
    assert in_message in str(info.value)
    assert info.value.status_code == reply.status


def test_every_failure_talking_to_the_api_is_an_api_error() -> None:
    """As in the Stainless SDKs: ``except APIError`` catches status errors, no response at
    all, and answers that are not what the API promises; misuse of the client is separate."""
    from d360calling import (
        APIConnectionError,
        APITimeoutError,
        ClientClosedError,
        ClientMisuseError,
        D360Error,
        InvalidRequestError,
        RateLimitError,
        ResponseDecodeError,
        UnsuccessfulResponseError,
    )

    api_errors: tuple[type[D360Error], ...] = (
        APIConnectionError,
        APITimeoutError,
        ResponseDecodeError,
        UnsuccessfulResponseError,
        APIStatusError,
        RateLimitError,
    )
    for cls in api_errors:
        assert issubclass(cls, APIError), cls
    assert issubclass(RateLimitError, APIStatusError)
    assert not issubclass(APIConnectionError, APIStatusError)
    misuse: tuple[type[D360Error], ...] = (
        InvalidRequestError,
        ClientMisuseError,
        ClientClosedError,
    )
    for cls in misuse:
        assert not issubclass(cls, APIError), cls
    assert issubclass(ClientClosedError, ClientMisuseError)
    assert issubclass(ClientMisuseError, RuntimeError)
