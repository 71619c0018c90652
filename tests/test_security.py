"""The API key stays secret, TLS is verified, SDP addresses stay out of logs, and every attempt
logs one line with what an operator needs."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import pytest

from d360calling import (
    AsyncClient,
    D360Error,
    InvalidRequestError,
    ResponseDecodeError,
    RetryPolicy,
)
from d360calling.testing import FakeCallingAPI, Fault, sample_answer

from .helpers import USER

FAST = RetryPolicy(initial_delay=0.01, max_delay=0.02)


@pytest.mark.asyncio
async def test_the_key_is_in_no_log_line_repr_or_error_at_any_level(
    api: FakeCallingAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="d360calling")
    api.inject(Fault.error(131000, status=500), Fault(drop="before"), path="/calling/settings")
    api.inject(Fault(status=401, json={"error": "Invalid API key"}), path="/calling/permissions/*")
    async with AsyncClient(
        api_key=api.api_key, base_url=api.url, max_retries=2, retry_policy=FAST
    ) as client:
        await client.get_settings()
        call = api.user_calls(USER)
        await client.accept_call(call.id, sample_answer())
        with pytest.raises(D360Error) as caught:
            await client.get_call_permissions(USER)
        seen = [repr(client), str(caught.value), repr(caught.value)]
    seen += [record.getMessage() for record in caplog.records]
    seen += [str(record.__dict__) for record in caplog.records]
    assert len(caplog.records) >= 4
    assert all(api.api_key not in text for text in seen)


@pytest.mark.asyncio
async def test_one_line_per_attempt_with_method_path_status_attempt_elapsed_and_request_id(
    api: FakeCallingAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="d360calling")
    api.inject(Fault.error(131000, status=503), path="/calling/settings")
    async with AsyncClient(
        api_key=api.api_key, base_url=api.url, max_retries=2, retry_policy=FAST
    ) as client:
        await client.get_settings()
    lines = [r for r in caplog.records if r.name == "d360calling"]
    assert [(r.levelno, r.d360_status, r.d360_attempt, r.d360_sent) for r in lines] == [  # type: ignore[attr-defined]
        (logging.INFO, 503, 1, True),
        (logging.DEBUG, 200, 2, True),
    ]
    for record in lines:
        text = record.getMessage()
        assert "GET /calling/settings ->" in text
        assert f"attempt={record.d360_attempt}" in text  # type: ignore[attr-defined]
        assert "elapsed=" in text
        assert "request_id=" in text
    assert "retry 1 of 2" in lines[0].getMessage()


@pytest.mark.asyncio
async def test_an_attempt_refused_for_its_body_size_logs_its_line_too(
    api: FakeCallingAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="d360calling")
    api.inject(Fault(status=200, body=b" " * (5 * 1024 * 1024)), path="/calling/settings")
    async with AsyncClient(
        api_key=api.api_key, base_url=api.url, max_retries=2, retry_policy=FAST
    ) as client:
        with pytest.raises(ResponseDecodeError, match="larger than"):
            await client.get_settings()
    (line,) = [r for r in caplog.records if r.name == "d360calling"]
    assert (line.levelno, line.d360_status, line.d360_attempt) == (logging.INFO, 200, 1)  # type: ignore[attr-defined]
    assert "ResponseDecodeError; giving up" in line.getMessage()
    assert len(api.requests) == 1


@pytest.mark.asyncio
async def test_sdp_addresses_are_redacted_in_the_wire_log_unless_asked_for(
    api: FakeCallingAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="d360calling.wire")
    sdp = sample_answer()
    assert "192.0.2.10" in sdp
    for opt_in in (False, True):
        caplog.clear()
        call = api.user_calls(USER)
        async with AsyncClient(
            api_key=api.api_key, base_url=api.url, log_sdp_addresses=opt_in
        ) as client:
            await client.pre_accept_call(call.id, sdp)
        # The request body, then the answer's.
        line, _ = [r.getMessage() for r in caplog.records if r.name == "d360calling.wire"]
        assert "a=setup:active" in line
        assert ("192.0.2.10" in line) is opt_in
        assert ("<ip>" in line) is not opt_in
        assert api.api_key not in line


def test_tls_is_verified_and_takes_a_ca_bundle(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="cannot be loaded"):
        AsyncClient(api_key="k", ca_bundle=tmp_path / "missing.pem")
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(InvalidRequestError):
        AsyncClient(api_key="k", ca_bundle=bad)
    with pytest.raises(InvalidRequestError, match="not both"):
        AsyncClient(api_key="k", ca_bundle=bad, ssl_context=ssl.create_default_context())
    bundle = Path(ssl.get_default_verify_paths().cafile or "")
    if not bundle.is_file():
        pytest.skip("no system CA file to load")
    client = AsyncClient(api_key="k", ca_bundle=bundle)
    context = client._transport._ssl_context
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname


@pytest.mark.parametrize(
    "url", ["http://example.com", "http://10.0.0.5:8080", "http://waba-v2.360dialog.io"]
)
def test_the_key_never_goes_over_plain_http_to_another_machine(url: str) -> None:
    with pytest.raises(InvalidRequestError, match="unencrypted"):
        AsyncClient(api_key="k", base_url=url)
