"""The one request path end to end, with the retry policy's sleep and clock injected: the
loop carries out decide()'s answers (how long it asked to wait, when it stopped), one pass
per attempt; and the options object with with_options() sharing one pool."""

from __future__ import annotations

import asyncio

import pytest

from d360calling import (
    APIConnectionError,
    APIError,
    AsyncClient,
    AuthenticationError,
    Client,
    ClientMisuseError,
    ClientOptions,
    InvalidRequestError,
    RetryPolicy,
    ServerError,
)
from d360calling.testing import FakeCallingAPI, Fault, sample_answer

from .helpers import API_KEY, USER


class FakeTime:
    """A monotonic clock that only the recorded sleeps move."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.asked: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.asked.append(seconds)
        self.now += seconds


def policy(time: FakeTime) -> RetryPolicy:
    return RetryPolicy(jitter=0, sleep=time.sleep, clock=time.clock)


@pytest.mark.asyncio
async def test_the_loop_waits_what_the_policy_asks_without_sleeping(api: FakeCallingAPI) -> None:
    time = FakeTime()
    api.inject(
        Fault(status=429, json={"error": "slow down"}, headers={"Retry-After": "7"}),
        Fault(status=503, body=b""),
        Fault(status=503, body=b""),
        path="/calling/settings",
    )
    async with AsyncClient(
        api_key=API_KEY, base_url=api.url, max_retries=3, retry_policy=policy(time)
    ) as client:
        settings = await client.get_settings()
    assert settings.calling.status == "ENABLED"
    # Retry-After wins for the 429, then backoff 0.5 s doubling (attempts 1 and 2).
    assert time.asked == [7.0, 1.0, 2.0]
    assert len(api.requests_to("GET", "/calling/settings")) == 4


@pytest.mark.asyncio
async def test_an_answer_side_retry_stops_at_the_deadline_on_the_injected_clock(
    api: FakeCallingAPI,
) -> None:
    time = FakeTime()
    call = api.user_calls(USER)
    api.inject(Fault(status=503, body=b""), path="/calling/calls", times=None)
    async with AsyncClient(
        api_key=API_KEY,
        base_url=api.url,
        max_retries=10,
        answer_window=3.6,  # 0.5 + 1 + 2 = 3.5 s of waits fit; the next 4 s would not
        retry_policy=policy(time),
    ) as client:
        with pytest.raises(ServerError):
            await client.accept_call(call.id, sample_answer())
    assert time.asked == [0.5, 1.0, 2.0]
    assert len(api.requests_to("POST", "/calling/calls")) == 4


@pytest.mark.asyncio
async def test_attempts_are_bounded_by_max_retries(api: FakeCallingAPI) -> None:
    time = FakeTime()
    api.inject(Fault(drop="before"), path="/calling/settings", times=None)
    async with AsyncClient(
        api_key=API_KEY, base_url=api.url, max_retries=2, retry_policy=policy(time)
    ) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.get_settings(max_retries=4)
    assert isinstance(info.value, APIError)  # `except APIError` catches a reset too
    assert len(time.asked) == 4
    assert len(api.requests_to("GET", "/calling/settings")) == 5


# -- options ------------------------------------------------------------------------------


def test_options_are_checked_when_made_and_hide_the_key() -> None:
    options = ClientOptions(api_key="secret-key-123", base_url="http://127.0.0.1:1", timeout=3)
    assert options.timeout == 3.0
    assert "secret-key-123" not in repr(options)
    for bad in (
        {"timeout": "soon"},
        {"timeout": 0},
        {"max_retries": True},
        {"pool_size": 0},
        {"strict": "yes"},
        {"retry_policy": "fast"},
        {"base_url": "http://127.0.0.1.evil.example"},
    ):
        with pytest.raises(InvalidRequestError):
            options.evolve(**bad)
    with pytest.raises(InvalidRequestError, match="unknown client option"):
        options.evolve(timeot=3)  # type: ignore[call-arg]


@pytest.mark.asyncio
async def test_with_options_shares_the_pool_and_never_closes_it(api: FakeCallingAPI) -> None:
    async with AsyncClient(api_key=API_KEY, base_url=api.url, max_retries=2) as client:
        await client.get_settings()
        quick = client.with_options(max_retries=0, timeout=2)
        assert (quick.options.max_retries, quick.options.timeout) == (0, 2.0)
        assert client.options.max_retries == 2  # the original is unchanged
        api.inject(Fault(status=503, body=b""), path="/calling/settings")
        with pytest.raises(ServerError):
            await quick.get_settings()  # not retried
        assert quick._transport is client._transport
        await quick.aclose()
        assert not client.closed
        assert (await client.get_settings()).calling.status == "ENABLED"
        with pytest.raises(InvalidRequestError, match="pool_size"):
            client.with_options(pool_size=3)
        other_number = client.with_options(api_key="another-numbers-key")
        with pytest.raises(AuthenticationError):
            await other_number.get_settings()  # sent with the other key, on the same pool
    assert quick.closed  # the pool closed with its owner


def test_sync_with_options_shares_the_pool(api: FakeCallingAPI) -> None:
    with Client(options=ClientOptions(api_key=API_KEY, base_url=api.url)) as client:
        quick = client.with_options(max_retries=0)
        api.inject(Fault(status=503, body=b""), path="/calling/settings")
        with pytest.raises(ServerError):
            quick.get_settings()
        quick.close()
        assert client.get_settings().calling.status == "ENABLED"
        assert len(api.requests_to("GET", "/calling/settings")) == 2


@pytest.mark.asyncio
async def test_a_client_used_on_another_loop_is_client_misuse(api: FakeCallingAPI) -> None:
    async with AsyncClient(api_key=API_KEY, base_url=api.url) as client:
        await client.get_settings()  # the client is now bound to this loop

        def from_another_loop() -> BaseException | None:
            try:
                asyncio.run(client.get_settings())
            except BaseException as exc:  # handed back to the test's loop to assert on
                return exc
            return None

        error = await asyncio.to_thread(from_another_loop)
        assert isinstance(error, ClientMisuseError)
        assert not isinstance(error, APIError)  # a mistake in the calling code, not the API's
        assert "one client per event loop" in str(error)
        assert len(api.requests_to("GET", "/calling/settings")) == 1
