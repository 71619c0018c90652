"""Transport behaviour over real loopback connections: timeouts, pooling, keep-alive,
redirects, session ownership, lifecycle, response size limit, and secrets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

import aiohttp
import pytest
from aioresponses import aioresponses

from d360calling import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AsyncClient,
    ClientClosedError,
    D360Error,
    ResponseDecodeError,
    RetryPolicy,
)
from d360calling._constants import MAX_RESPONSE_BYTES
from d360calling.testing import FakeCallingAPI, Fault, sample_answer, sample_offer

from .conftest import FAST_RETRY
from .helpers import API_KEY, running_api

OFFER = sample_offer()


def make(api: FakeCallingAPI, **options: object) -> AsyncClient:
    options.setdefault("retry_policy", FAST_RETRY)
    return AsyncClient(api_key=API_KEY, base_url=api.url, **options)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_slow_server_times_out_within_the_attempt_timeout(api: FakeCallingAPI) -> None:
    api.inject(Fault(delay=3.0), method="GET", path="/calling/settings")
    async with make(api, timeout=0.2, max_retries=0) as client:
        started = time.monotonic()
        with pytest.raises(APITimeoutError) as info:
            await client.get_settings()
        elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 1.5  # the server would have taken 3 s
    assert info.value.request_may_have_been_sent
    assert "0.2 s" in str(info.value)


def test_timeouts_are_handed_to_aiohttp_without_its_rounding() -> None:
    """aiohttp rounds timeouts of ``ceil_threshold`` (5 s) or more up to whole seconds; ours
    are passed with the rounding off (the slow test below shows it on the wire)."""
    transport = AsyncClient(api_key=API_KEY, base_url="http://127.0.0.1:1")._transport
    timeout = transport._timeout(5.2)
    assert timeout.total == 5.2
    assert timeout.ceil_threshold is not None
    assert timeout.ceil_threshold > 3600


@pytest.mark.slow
@pytest.mark.asyncio
async def test_timeouts_above_five_seconds_are_not_rounded_up(api: FakeCallingAPI) -> None:
    """aiohttp rounds timeouts of 5 s or more up to whole seconds unless told not to."""
    api.inject(Fault(delay=7.0), method="GET", path="/calling/settings")
    async with make(api, timeout=5.2, max_retries=0) as client:
        started = time.monotonic()
        with pytest.raises(APITimeoutError):
            await client.get_settings()
        elapsed = time.monotonic() - started
    assert elapsed < 5.7


@pytest.mark.asyncio
async def test_connections_are_kept_alive_and_reused(api: FakeCallingAPI) -> None:
    async with make(api) as client:
        for _ in range(10):
            await client.get_settings()
    assert len(api.requests) == 10
    assert len({r.peer for r in api.requests}) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("reused", [False, True])
async def test_a_broken_get_is_not_resent_behind_the_retry_loop(
    api: FakeCallingAPI, reused: bool
) -> None:
    """aiohttp on its own resends a GET whose connection breaks; the client's retry loop is
    the only one, so max_retries=0 means one request and one log line."""
    async with make(api, max_retries=0) as client:
        if reused:
            await client.get_settings()  # the next request goes over a kept-alive connection
        api.inject(Fault(drop="before"), method="GET")
        before = len(api.requests)
        with pytest.raises(APIConnectionError):
            await client.get_call_permissions("4915112345678")
        assert len(api.requests) - before == 1
        api.inject(Fault(drop="after"), method="GET")
        with pytest.raises(APIConnectionError):
            await client.get_settings()
        assert len(api.requests) - before == 2


@pytest.mark.asyncio
async def test_pool_size_bounds_concurrent_connections(api: FakeCallingAPI) -> None:
    api.inject(*[Fault(delay=0.05)] * 12, method="GET", path="/calling/settings")
    async with make(api, pool_size=2) as client:
        await asyncio.gather(*(client.get_settings() for _ in range(12)))
    assert len(api.requests) == 12
    assert api.max_in_flight == 2
    assert len({r.peer for r in api.requests}) == 2


@pytest.mark.asyncio
async def test_time_queued_for_a_pooled_connection_is_not_the_attempts_timeout(
    api: FakeCallingAPI,
) -> None:
    """Three requests through one connection, 0.2 s each: the last waits 0.4 s for the
    connection, past its 0.3 s timeout, yet the server answers it in time."""
    api.inject(Fault(delay=0.2), method="GET", path="/calling/settings", times=3)
    async with make(api, pool_size=1, timeout=0.3, max_retries=0) as client:
        started = time.monotonic()
        await asyncio.gather(*(client.get_settings() for _ in range(3)))
        assert time.monotonic() - started >= 0.6
    assert len(api.requests) == 3


@pytest.mark.asyncio
async def test_no_free_connection_in_time_is_a_timeout_that_sent_nothing(
    api: FakeCallingAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="d360calling")
    api.grant_permission("4915100000001", notify=False)
    api.inject(Fault(delay=0.6), method="GET", path="/calling/settings")
    async with make(api, pool_size=1, connect_timeout=0.1, timeout=2.0, max_retries=0) as client:
        busy = asyncio.ensure_future(client.get_settings())  # holds the only connection
        await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(APITimeoutError, match=r"no free connection within 0\.1 s") as info:
            await client.connect_call("4915100000001", OFFER)
        assert 0.09 <= time.monotonic() - started < 1.5  # connect_timeout's 0.1 s, not 2 s
        assert info.value.request_may_have_been_sent is False
        assert api.call_actions("connect") == []
        (line,) = [r for r in caplog.records if r.name == "d360calling"]
        assert line.d360_sent is False  # type: ignore[attr-defined]
        assert "APITimeoutError (not sent); giving up" in line.getMessage()
        # Nothing was sent, so even connect is retried; it goes out once the slot frees.
        placed = await client.connect_call("4915100000001", OFFER, max_retries=10)
        await busy
    assert placed.call_id is not None
    assert len(api.call_actions("connect")) == 1


@pytest.mark.asyncio
async def test_a_retry_waits_for_a_connection_no_longer_than_the_deadline(
    api: FakeCallingAPI,
) -> None:
    call = api.user_calls("4915100000002")
    api.inject(Fault(status=503, body=b""), action="accept")
    api.inject(Fault(delay=30.0), method="GET", path="/calling/settings")
    busy: list[asyncio.Future[object]] = []

    async def take_the_only_connection(seconds: float) -> None:
        """The backoff before the retry: meanwhile another request takes the pool's one
        connection (and keeps it: the fake answers it in 30 s)."""
        busy.append(asyncio.ensure_future(client.get_settings()))
        for _ in range(1000):  # until the fake has it in hand; bounded
            if api.in_flight:
                return
            await asyncio.sleep(0.005)
        raise AssertionError("the busy request never reached the fake")

    policy = RetryPolicy(initial_delay=0.1, jitter=0.0, sleep=take_the_only_connection)
    async with make(
        api, pool_size=1, connect_timeout=5.0, max_retries=3, retry_policy=policy
    ) as client:
        started = time.monotonic()
        with pytest.raises(APITimeoutError, match="no free connection") as info:
            await client.accept_call(call.id, sample_answer(), deadline=time.time() + 0.5)
        assert time.monotonic() - started < 3.0  # the deadline, not connect_timeout's 5 s
        assert info.value.request_may_have_been_sent is False
        busy[0].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await busy[0]
    assert len(api.call_actions("accept")) == 1


@pytest.mark.asyncio
async def test_same_origin_redirect_is_followed_keeping_method_and_body(
    api: FakeCallingAPI,
) -> None:
    api.inject(
        Fault(status=307, body=b"", headers={"Location": "/calling/calls"}),
        method="POST",
        path="/calling/calls",
    )
    async with make(api) as client:
        r = await client.connect_call("4915112345678", OFFER)
    assert set(api.calls) == {r.call_id}
    first, second = api.requests
    assert second.json == first.json
    assert second.headers["D360-API-KEY"] == API_KEY


@pytest.mark.asyncio
async def test_redirect_to_another_host_is_not_followed_and_gets_no_key(
    api: FakeCallingAPI,
) -> None:
    with running_api(api_key="other") as other:
        for method, path in (("GET", "/calling/settings"), ("POST", "/calling/calls")):
            api.inject(
                Fault(status=307, body=b"", headers={"Location": other.url + path}),
                method=method,
                path=path,
            )
        async with make(api, max_retries=3) as client:
            with pytest.raises(APIStatusError) as info:
                await client.get_settings()
            assert info.value.status_code == 307
            assert other.url in str(info.value)
            with pytest.raises(APIStatusError):
                await client.terminate_call("wacid.X")
        assert other.requests == []
    assert len(api.requests) == 2  # and a redirect is not retried


@pytest.mark.asyncio
async def test_a_post_does_not_follow_a_redirect_that_would_turn_it_into_a_get(
    api: FakeCallingAPI,
) -> None:
    api.inject(
        Fault(status=302, body=b"", headers={"Location": "/elsewhere"}),
        method="POST",
        path="/calling/calls",
    )
    async with make(api) as client:
        with pytest.raises(APIStatusError) as info:
            await client.terminate_call("wacid.X")
    assert info.value.status_code == 302
    assert len(api.requests) == 1


@pytest.mark.asyncio
async def test_oversized_response_is_refused(api: FakeCallingAPI) -> None:
    api.inject(Fault(body=b"x" * (MAX_RESPONSE_BYTES + 1)), method="GET", path="/calling/settings")
    async with make(api) as client:
        with pytest.raises(ResponseDecodeError, match="larger than"):
            await client.get_settings()


@pytest.mark.asyncio
async def test_chunked_bodies_are_read_up_to_the_limit(api: FakeCallingAPI) -> None:
    settings = json.dumps(api.settings).encode()
    api.inject(
        Fault(body=settings, chunked=True),
        Fault(body=b" " * (MAX_RESPONSE_BYTES + 10), chunked=True),
        method="GET",
        path="/calling/settings",
    )
    async with make(api, max_retries=0) as client:
        assert (await client.get_settings()).calling.status == "ENABLED"
        with pytest.raises(ResponseDecodeError, match="larger than"):
            await client.get_settings()


@pytest.mark.asyncio
async def test_injected_session_is_used_and_never_closed(api: FakeCallingAPI) -> None:
    async with aiohttp.ClientSession() as session:
        async with AsyncClient(api_key=API_KEY, base_url=api.url, session=session) as client:
            await client.get_settings()
        assert not session.closed
        async with session.get(api.url + "/calling/settings") as resp:
            assert resp.status == 401  # still usable, and it never got our key
    assert api.requests[0].headers["D360-API-KEY"] == API_KEY


@pytest.mark.asyncio
async def test_a_closed_injected_session_is_a_clear_error(api: FakeCallingAPI) -> None:
    session = aiohttp.ClientSession()
    client = AsyncClient(api_key=API_KEY, base_url=api.url, session=session)
    await session.close()
    with pytest.raises(ClientClosedError, match="session given to this client"):
        await client.get_settings()
    assert api.requests == []


@pytest.mark.asyncio
async def test_injected_session_with_raise_for_status_still_maps_errors(
    api: FakeCallingAPI,
) -> None:
    api.inject(Fault(status=404, json={"error": "gone"}), method="GET", path="/calling/settings")
    async with (
        aiohttp.ClientSession(raise_for_status=True) as session,
        AsyncClient(api_key=API_KEY, base_url=api.url, session=session) as client,
    ):
        with pytest.raises(APIError, match="gone"):
            await client.get_settings()


@pytest.mark.asyncio
async def test_close_is_idempotent_and_later_calls_fail_clearly(api: FakeCallingAPI) -> None:
    client = make(api)
    await client.get_settings()
    await client.aclose()
    await client.aclose()
    assert client.closed
    with pytest.raises(ClientClosedError):
        await client.get_settings()
    assert len(api.requests) == 1


@pytest.mark.asyncio
async def test_closing_an_unused_client_is_fine() -> None:
    client = AsyncClient(api_key="k")
    await client.aclose()
    assert client.closed


def test_a_client_is_bound_to_the_loop_it_first_ran_on(api: FakeCallingAPI) -> None:
    client = make(api)

    async def use() -> None:
        await client.get_settings()

    async def close() -> None:
        await client.aclose()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(use())
        with pytest.raises(D360Error, match="event loop"):
            asyncio.run(use())
        loop.run_until_complete(close())
    finally:
        loop.close()


# -- how aiohttp failures are mapped (narrow units; aioresponses injects the exception) -------


@pytest.mark.parametrize(
    ("exception", "cls", "sent"),
    [
        (
            aiohttp.ClientConnectorError(
                aiohttp.client_reqrep.ConnectionKey("127.0.0.1", 1, False, True, None, None, None),
                ConnectionRefusedError(111, "Connection refused"),
            ),
            APIConnectionError,
            False,
        ),
        (aiohttp.ConnectionTimeoutError("pool full"), APITimeoutError, False),
        (aiohttp.ServerDisconnectedError(), APIConnectionError, True),
        (aiohttp.ClientPayloadError("truncated"), APIConnectionError, True),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), APIConnectionError, True),
        (asyncio.TimeoutError(), APITimeoutError, True),
    ],
)
@pytest.mark.asyncio
async def test_transport_failures_are_mapped(
    exception: Exception, cls: type[APIConnectionError], sent: bool
) -> None:
    async with AsyncClient(api_key=API_KEY, base_url="http://127.0.0.1:9", max_retries=0) as c:
        with aioresponses() as mocked:
            mocked.post("http://127.0.0.1:9/calling/calls", exception=exception)
            with pytest.raises(cls) as info:
                await c.connect_call("4915112345678", OFFER)
    assert type(info.value) is cls
    assert info.value.request_may_have_been_sent is sent
    # The aiohttp exception is named, as text, but not kept: it can hold the request headers.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None
    assert info.value.cause is not None
    assert info.value.cause.startswith(type(exception).__name__)
    assert "POST /calling/calls" in str(info.value)


# -- secrets ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_api_key_never_in_repr_errors_or_logs(
    api: FakeCallingAPI, caplog: pytest.LogCaptureFixture
) -> None:
    api.inject(
        Fault(status=503, body=b""),
        Fault(status=400, json={"error": "bad"}),
        method="GET",
        path="/calling/settings",
    )
    caplog.set_level(logging.DEBUG, logger="d360calling")
    async with make(api) as client:
        assert API_KEY not in repr(client)
        with pytest.raises(APIStatusError) as info:
            await client.get_settings()
    assert API_KEY not in str(info.value)
    assert API_KEY not in repr(info.value)
    assert "GET /calling/settings -> 503 attempt=1" in caplog.text
    assert "retry 1 of 2" in caplog.text
    assert API_KEY not in caplog.text
