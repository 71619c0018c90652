"""Each retry rule, shown against a real loopback server: what is retried, what never is,
how long the client waits, and that answer-side actions stop at their deadline."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from d360calling import (
    APIConnectionError,
    APITimeoutError,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    CallingSettings,
    RateLimitError,
    RetryPolicy,
    ServerError,
)

from .conftest import FAST_RETRY
from .loopback import API_KEY, LoopbackAPI, Reply, closed_port

OFFER = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n"
CALL_ID = "wacid.ABC"
WA_ID = "4915112345678"

# A reply per failure the API or the network can produce that is worth retrying.
TRANSIENT = {
    "dropped": Reply(drop=True),
    "timeout": Reply(delay=1.0),
    "429": Reply(status=429, json={"error": "Too many requests"}),
    "500": Reply(status=500, json={"error": "Internal error"}),
    "502-html": Reply(status=502, body=b"<html><title>502</title></html>"),
    "503": Reply(status=503, body=b""),
    "504": Reply(status=504, json={"error": "Gateway timeout"}),
    "360-rate-limit-400": Reply(
        status=400, json={"error": "You have exceeded the endpoint rate limit."}
    ),
    "meta-613": Reply(status=429, json={"error": {"message": "limit", "code": 613}}),
}
ENDPOINTS: dict[str, tuple[str, str, Callable[[AsyncClient], Awaitable[Any]]]] = {
    "get_settings": ("GET", "/calling/settings", lambda c: c.get_settings()),
    "get_call_permissions": (
        "GET",
        f"/calling/permissions/{WA_ID}",
        lambda c: c.get_call_permissions(WA_ID),
    ),
    "update_settings": (
        "POST",
        "/calling/settings",
        lambda c: c.update_settings(CallingSettings(status="ENABLED")),
    ),
    "accept_call": ("POST", "/calling/calls", lambda c: c.accept_call(CALL_ID, sdp=OFFER)),
    "terminate_call": ("POST", "/calling/calls", lambda c: c.terminate_call(CALL_ID)),
}


def fast_client(api: LoopbackAPI, **options: Any) -> AsyncClient:
    options.setdefault("retry_policy", FAST_RETRY)
    options.setdefault("timeout", 0.3)
    return AsyncClient(api_key=API_KEY, base_url=api.url, **options)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("failure", TRANSIENT)
@pytest.mark.asyncio
async def test_resendable_calls_retry_transient_failures(
    api: LoopbackAPI, endpoint: str, failure: str
) -> None:
    method, path, call = ENDPOINTS[endpoint]
    api.script(method, path, TRANSIENT[failure], TRANSIENT[failure])
    async with fast_client(api) as client:
        await call(client)  # third attempt reaches the contract's answer
    assert len(api.requests_to(method, path)) == 3


@pytest.mark.parametrize("failure", TRANSIENT)
@pytest.mark.asyncio
async def test_resendable_calls_give_up_after_max_retries(api: LoopbackAPI, failure: str) -> None:
    # A POST, because aiohttp itself re-sends a GET once on a dropped connection.
    api.script("POST", "/calling/settings", *[TRANSIENT[failure]] * 4)
    async with fast_client(api, max_retries=2) as client:
        with pytest.raises((APIConnectionError, RateLimitError, ServerError)):
            await client.update_settings(CallingSettings(status="ENABLED"))
    assert len(api.requests) == 3


@pytest.mark.parametrize("failure", TRANSIENT)
@pytest.mark.asyncio
async def test_connect_is_never_resent_once_it_reached_the_server(
    api: LoopbackAPI, failure: str
) -> None:
    api.script("POST", "/calling/calls", TRANSIENT[failure], TRANSIENT[failure])
    async with fast_client(api, max_retries=5) as client:
        with pytest.raises((APIConnectionError, RateLimitError, ServerError)) as info:
            await client.connect_call(WA_ID, OFFER)
    assert len(api.requests) == 1
    if isinstance(info.value, APIConnectionError):
        assert info.value.request_may_have_been_sent


@pytest.mark.asyncio
async def test_connect_is_retried_when_the_connection_was_never_made(api: LoopbackAPI) -> None:
    """A full pool makes the wait for a connection time out: the request never left, so
    connect may be retried, and it is sent exactly once."""
    api.script("GET", "/calling/settings", Reply(delay=0.4))
    async with fast_client(
        api, pool_size=1, connect_timeout=0.1, timeout=2.0, max_retries=8
    ) as client:
        slow = asyncio.create_task(client.get_settings())
        await asyncio.sleep(0.05)  # the slow request holds the only connection
        r = await client.connect_call(WA_ID, OFFER)
        await slow
    assert r.call_id == "wacid.T1"
    assert len(api.requests_to("POST", "/calling/calls")) == 1


@pytest.mark.asyncio
async def test_connection_refused_is_retried_for_connect() -> None:
    """Nothing listens at first; the server comes up during the client's backoff."""
    port = closed_port()
    later = LoopbackAPI()
    starter = threading.Timer(0.15, later.start, kwargs={"port": port})
    starter.start()
    policy = RetryPolicy(initial_delay=0.1, max_delay=0.1, jitter=0)
    try:
        async with AsyncClient(
            api_key=API_KEY,
            base_url=f"http://127.0.0.1:{port}",
            retry_policy=policy,
            max_retries=10,
        ) as client:
            r = await client.connect_call(WA_ID, OFFER)
    finally:
        starter.join()
        later.stop()
    assert r.call_id == "wacid.T1"
    assert len(later.requests) == 1


@pytest.mark.asyncio
async def test_connection_refused_everywhere_says_not_sent() -> None:
    port = closed_port()
    async with AsyncClient(
        api_key=API_KEY, base_url=f"http://127.0.0.1:{port}", retry_policy=FAST_RETRY
    ) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.connect_call(WA_ID, OFFER)
    assert not info.value.request_may_have_been_sent
    assert not isinstance(info.value, APITimeoutError)
    assert f"127.0.0.1:{port}" in str(info.value)


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply(status=400, json={"error": "invalid parameter"}), BadRequestError),
        (Reply(status=401, json={"error": "Invalid API key"}), AuthenticationError),
        (Reply(status=400, json={"error": {"message": "limit", "code": 138012}}), BadRequestError),
    ],
)
@pytest.mark.asyncio
async def test_client_errors_are_not_retried(
    api: LoopbackAPI, reply: Reply, error: type[Exception]
) -> None:
    api.script("GET", "/calling/settings", reply)
    async with fast_client(api, max_retries=5) as client:
        with pytest.raises(error):
            await client.get_settings()
    assert len(api.requests) == 1


@pytest.mark.asyncio
async def test_per_call_max_retries_override(api: LoopbackAPI) -> None:
    api.script("GET", "/calling/settings", *[TRANSIENT["503"]] * 6)
    async with fast_client(api, max_retries=5) as client:
        with pytest.raises(ServerError):
            await client.get_settings(max_retries=0)
        assert len(api.requests) == 1
        with pytest.raises(ServerError):
            await client.get_settings(max_retries=1)
        assert len(api.requests) == 3


@pytest.mark.asyncio
async def test_per_call_timeout_override(api: LoopbackAPI) -> None:
    api.script("GET", "/calling/settings", Reply(delay=0.5))
    async with fast_client(api, timeout=0.1, max_retries=0) as client:
        settings = await client.get_settings(timeout=2.0)
    assert settings.calling.status == "ENABLED"


@pytest.mark.asyncio
async def test_retry_after_is_honoured(api: LoopbackAPI) -> None:
    api.script(
        "GET", "/calling/settings", Reply(status=429, json={}, headers={"Retry-After": "0.4"})
    )
    async with fast_client(api) as client:
        started = time.monotonic()
        await client.get_settings()
        elapsed = time.monotonic() - started
    assert elapsed >= 0.4
    assert len(api.requests) == 2


@pytest.mark.asyncio
async def test_retry_after_above_the_cap_raises_without_sleeping(api: LoopbackAPI) -> None:
    api.script(
        "GET", "/calling/settings", Reply(status=429, json={}, headers={"Retry-After": "120"})
    )
    policy = RetryPolicy(initial_delay=0.01, max_retry_after=5)
    async with fast_client(api, retry_policy=policy) as client:
        started = time.monotonic()
        with pytest.raises(RateLimitError) as info:
            await client.get_settings()
        elapsed = time.monotonic() - started
    assert elapsed < 1.0
    assert info.value.retry_after == 120
    assert len(api.requests) == 1


@pytest.mark.asyncio
async def test_answer_side_retries_stop_at_the_deadline(api: LoopbackAPI) -> None:
    api.script("POST", "/calling/calls", *[TRANSIENT["503"]] * 50)
    policy = RetryPolicy(initial_delay=0.05, max_delay=0.05, jitter=0)
    async with fast_client(api, retry_policy=policy, max_retries=10) as client:
        started = time.monotonic()
        with pytest.raises(ServerError):
            await client.accept_call(CALL_ID, OFFER, deadline=time.time() + 0.3)
        elapsed = time.monotonic() - started
    assert elapsed < 1.0  # without the deadline: 11 attempts and 10 waits
    assert 2 <= len(api.requests) <= 7  # well short of the 11 that max_retries allows


@pytest.mark.asyncio
async def test_a_retry_is_cut_to_the_time_left_before_the_deadline(api: LoopbackAPI) -> None:
    api.script("POST", "/calling/calls", TRANSIENT["503"], Reply(delay=5.0))
    async with fast_client(api, timeout=10.0) as client:
        started = time.monotonic()
        with pytest.raises(APITimeoutError):
            await client.terminate_call(CALL_ID, deadline=time.time() + 0.4)
        elapsed = time.monotonic() - started
    assert elapsed < 2.0  # the retry's own timeout (10 s) was cut to the time left


@pytest.mark.asyncio
async def test_default_answer_window_is_the_deadline(api: LoopbackAPI) -> None:
    api.script("POST", "/calling/calls", *[TRANSIENT["503"]] * 50)
    policy = RetryPolicy(initial_delay=0.05, max_delay=0.05, jitter=0)
    async with fast_client(api, retry_policy=policy, max_retries=10, answer_window=0.2) as client:
        with pytest.raises(ServerError):
            await client.reject_call(CALL_ID)
    assert len(api.requests) <= 5


@pytest.mark.asyncio
async def test_a_passed_deadline_still_sends_once(api: LoopbackAPI) -> None:
    api.script("POST", "/calling/calls", TRANSIENT["503"])
    async with fast_client(api) as client:
        with pytest.raises(ServerError):
            await client.accept_call(CALL_ID, OFFER, deadline=time.time() - 10)
    assert len(api.requests) == 1
