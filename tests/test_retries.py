"""Each retry rule, shown against a real loopback server: what is retried, what never is,
how long the client waits, and that answer-side actions stop at their deadline."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest

from d360calling import (
    APIConnectionError,
    APITimeoutError,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    CallLimitReachedError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    SettingsUpdate,
)
from d360calling.testing import FakeCallingAPI, Fault, sample_answer, sample_offer

from .conftest import FAST_RETRY
from .helpers import API_KEY, closed_port

OFFER = sample_offer()
ANSWER = sample_answer()
CALL_ID = "wacid.ABC"  # only in tests where every answer is a fault: the call need not exist
WA_ID = "4915112345678"

# A reply per failure the API or the network can produce that is worth retrying.
TRANSIENT = {
    "dropped": Fault(drop="before"),
    "timeout": Fault(delay=1.0),
    "429": Fault(status=429, json={"error": "Too many requests"}),
    "500": Fault(status=500, json={"error": "Internal error"}),
    "502-html": Fault(status=502, body=b"<html><title>502</title></html>"),
    "503": Fault(status=503, body=b""),
    "504": Fault(status=504, json={"error": "Gateway timeout"}),
    "360-rate-limit-400": Fault(
        status=400, json={"error": "You have exceeded the endpoint rate limit."}
    ),
    "meta-613": Fault(status=429, json={"error": {"message": "limit", "code": 613}}),
}
# Each endpoint, called on a client; answer-side actions act on a fresh inbound call.
Endpoint = Callable[[AsyncClient, FakeCallingAPI], Awaitable[Any]]
ENDPOINTS: dict[str, tuple[str, str, Endpoint]] = {
    "get_settings": ("GET", "/calling/settings", lambda c, api: c.get_settings()),
    "get_call_permissions": (
        "GET",
        f"/calling/permissions/{WA_ID}",
        lambda c, api: c.get_call_permissions(WA_ID),
    ),
    "update_settings": (
        "POST",
        "/calling/settings",
        lambda c, api: c.update_settings(SettingsUpdate.status("ENABLED")),
    ),
    "accept_call": (
        "POST",
        "/calling/calls",
        lambda c, api: c.accept_call(api.user_calls(WA_ID).id, sdp=ANSWER),
    ),
    "terminate_call": (
        "POST",
        "/calling/calls",
        lambda c, api: c.terminate_call(api.user_calls(WA_ID).id),
    ),
}


def fast_client(api: FakeCallingAPI, **options: Any) -> AsyncClient:
    options.setdefault("retry_policy", FAST_RETRY)
    options.setdefault("timeout", 0.3)
    return AsyncClient(api_key=API_KEY, base_url=api.url, **options)


# A timeout takes real time (the attempt's own 0.3 s): one endpoint per kind of call runs it
# in the fast suite, the others with the slow one.
_TIMEOUT_EVERYWHERE = {"get_settings", "accept_call"}


@pytest.mark.parametrize(
    ("failure", "endpoint"),
    [
        pytest.param(
            failure,
            endpoint,
            marks=[pytest.mark.slow]
            if failure == "timeout" and endpoint not in _TIMEOUT_EVERYWHERE
            else [],
        )
        for failure in TRANSIENT
        for endpoint in ENDPOINTS
    ],
)
@pytest.mark.asyncio
async def test_resendable_calls_retry_transient_failures(
    api: FakeCallingAPI, endpoint: str, failure: str
) -> None:
    method, path, call = ENDPOINTS[endpoint]
    api.inject(TRANSIENT[failure], TRANSIENT[failure], method=method, path=path)
    async with fast_client(api) as client:
        await call(client, api)  # third attempt reaches the contract's answer
    assert len(api.requests_to(method, path)) == 3


@pytest.mark.parametrize("failure", TRANSIENT)
@pytest.mark.asyncio
async def test_resendable_calls_give_up_after_max_retries(
    api: FakeCallingAPI, failure: str
) -> None:
    # A POST, because aiohttp itself re-sends a GET once on a dropped connection.
    api.inject(*[TRANSIENT[failure]] * 4, method="POST", path="/calling/settings")
    async with fast_client(api, max_retries=2) as client:
        with pytest.raises((APIConnectionError, RateLimitError, ServerError)):
            await client.update_settings(SettingsUpdate.status("ENABLED"))
    assert len(api.requests) == 3


@pytest.mark.parametrize("failure", TRANSIENT)
@pytest.mark.asyncio
async def test_connect_is_never_resent_once_it_reached_the_server(
    api: FakeCallingAPI, failure: str
) -> None:
    api.inject(TRANSIENT[failure], TRANSIENT[failure], method="POST", path="/calling/calls")
    async with fast_client(api, max_retries=5) as client:
        with pytest.raises((APIConnectionError, RateLimitError, ServerError)) as info:
            await client.connect_call(WA_ID, OFFER)
    assert len(api.requests) == 1
    if isinstance(info.value, APIConnectionError):
        assert info.value.request_may_have_been_sent


@pytest.mark.asyncio
async def test_connect_is_retried_when_the_connection_was_never_made(api: FakeCallingAPI) -> None:
    """A full pool makes the wait for a connection time out: the request never left, so
    connect may be retried, and it is sent exactly once."""
    api.inject(Fault(delay=0.4), method="GET", path="/calling/settings")
    async with fast_client(
        api, pool_size=1, connect_timeout=0.1, timeout=2.0, max_retries=8
    ) as client:
        slow = asyncio.create_task(client.get_settings())
        await asyncio.sleep(0.05)  # the slow request holds the only connection
        r = await client.connect_call(WA_ID, OFFER)
        await slow
    assert api.calls[r.call_id].state == "ringing"
    assert len(api.requests_to("POST", "/calling/calls")) == 1


@pytest.mark.asyncio
async def test_connection_refused_is_retried_for_connect() -> None:
    """Nothing listens at first; the server comes up during the client's backoff."""
    port = closed_port()
    later = FakeCallingAPI(api_key=API_KEY, port=port)
    later.grant_permission(WA_ID, notify=False)
    starter = threading.Timer(0.15, later.start)
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
    assert set(later.calls) == {r.call_id}
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
        (Fault(status=400, json={"error": "invalid parameter"}), BadRequestError),
        (Fault(status=401, json={"error": "Invalid API key"}), AuthenticationError),
        (
            Fault(status=400, json={"error": {"message": "limit", "code": 138012}}),
            CallLimitReachedError,
        ),
    ],
)
@pytest.mark.asyncio
async def test_client_errors_are_not_retried(
    api: FakeCallingAPI, reply: Fault, error: type[Exception]
) -> None:
    api.inject(reply, method="GET", path="/calling/settings")
    async with fast_client(api, max_retries=5) as client:
        with pytest.raises(error):
            await client.get_settings()
    assert len(api.requests) == 1


@pytest.mark.asyncio
async def test_per_call_max_retries_override(api: FakeCallingAPI) -> None:
    api.inject(*[TRANSIENT["503"]] * 6, method="GET", path="/calling/settings")
    async with fast_client(api, max_retries=5) as client:
        with pytest.raises(ServerError):
            await client.get_settings(max_retries=0)
        assert len(api.requests) == 1
        with pytest.raises(ServerError):
            await client.get_settings(max_retries=1)
        assert len(api.requests) == 3


@pytest.mark.asyncio
async def test_per_call_timeout_override(api: FakeCallingAPI) -> None:
    api.inject(Fault(delay=0.5), method="GET", path="/calling/settings")
    async with fast_client(api, timeout=0.1, max_retries=0) as client:
        settings = await client.get_settings(timeout=2.0)
    assert settings.calling.status == "ENABLED"


@pytest.mark.asyncio
async def test_retry_after_is_honoured(api: FakeCallingAPI) -> None:
    api.inject(
        Fault(status=429, json={}, headers={"Retry-After": "0.4"}),
        method="GET",
        path="/calling/settings",
    )
    asked: list[float] = []

    async def sleep(seconds: float) -> None:  # records the wait instead of taking it
        asked.append(seconds)

    async with fast_client(api, retry_policy=attrs.evolve(FAST_RETRY, sleep=sleep)) as client:
        await client.get_settings()
    assert asked == [0.4]
    assert len(api.requests) == 2


@pytest.mark.asyncio
async def test_retry_after_above_the_cap_raises_without_sleeping(api: FakeCallingAPI) -> None:
    api.inject(
        Fault(status=429, json={}, headers={"Retry-After": "120"}),
        method="GET",
        path="/calling/settings",
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
async def test_answer_side_retries_stop_at_the_deadline(api: FakeCallingAPI) -> None:
    api.inject(*[TRANSIENT["503"]] * 50, method="POST", path="/calling/calls")
    now = [0.0]  # the policy's clock, moved only by its sleeps

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    policy = RetryPolicy(
        initial_delay=0.05, max_delay=0.05, jitter=0, sleep=sleep, clock=lambda: now[0]
    )
    async with fast_client(api, retry_policy=policy, max_retries=10) as client:
        with pytest.raises(ServerError):
            # 0.3 s from now: five waits of 0.05 s fit before it, the sixth would end on it.
            await client.accept_call(CALL_ID, ANSWER, deadline=time.time() + 0.3)
    assert len(api.requests) in (5, 6)  # short of the 11 max_retries allows


@pytest.mark.asyncio
async def test_a_retry_is_cut_to_the_time_left_before_the_deadline(api: FakeCallingAPI) -> None:
    api.inject(TRANSIENT["503"], Fault(delay=5.0), method="POST", path="/calling/calls")
    async with fast_client(api, timeout=10.0) as client:
        started = time.monotonic()
        with pytest.raises(APITimeoutError):
            await client.terminate_call(CALL_ID, deadline=time.time() + 0.4)
        elapsed = time.monotonic() - started
    assert elapsed < 2.0  # the retry's own timeout (10 s) was cut to the time left


@pytest.mark.asyncio
async def test_default_answer_window_is_the_deadline(api: FakeCallingAPI) -> None:
    api.inject(*[TRANSIENT["503"]] * 50, method="POST", path="/calling/calls")
    policy = RetryPolicy(initial_delay=0.05, max_delay=0.05, jitter=0)
    async with fast_client(api, retry_policy=policy, max_retries=10, answer_window=0.2) as client:
        with pytest.raises(ServerError):
            await client.reject_call(CALL_ID)
    assert len(api.requests) <= 5


@pytest.mark.asyncio
async def test_a_passed_deadline_still_sends_once(api: FakeCallingAPI) -> None:
    api.inject(TRANSIENT["503"], method="POST", path="/calling/calls")
    async with fast_client(api) as client:
        with pytest.raises(ServerError):
            await client.accept_call(CALL_ID, ANSWER, deadline=time.time() - 10)
    assert len(api.requests) == 1
