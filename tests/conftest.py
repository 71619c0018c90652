from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, settings

from d360calling import AsyncClient, Client, RetryPolicy
from d360calling.testing import FakeCallingAPI

from .capture import Capture
from .helpers import API_KEY, running_api

# Hypothesis profiles, chosen by HYPOTHESIS_PROFILE. Without it: "ci" when CI is set, else
# "dev". Both are derandomized (the examples follow from the test's code, so a red run is red
# again on any machine) and derandomize also means no example database: nothing is written.
# "explore" is the opt-in hunt: random seeds, many more examples, failures saved in
# .hypothesis/ and replayed first until fixed.
_COMMON = settings(
    deadline=None,  # a loopback round trip on a loaded machine is not a bug
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
# 100 examples (Hypothesis's default) keeps the property tests to a few seconds of the fast
# suite; derandomized, they are the same 100 every run. "explore" is where the search goes deep.
settings.register_profile("ci", _COMMON, derandomize=True, max_examples=100)
settings.register_profile("dev", _COMMON, derandomize=True, max_examples=100)
settings.register_profile("explore", _COMMON, derandomize=False, max_examples=2000)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)

# Fast, deterministic backoff so retry tests take milliseconds, not seconds.
FAST_RETRY = RetryPolicy(initial_delay=0.01, max_delay=0.05)


@pytest.fixture
def api() -> Iterator[FakeCallingAPI]:
    with running_api() as server:
        yield server


@pytest_asyncio.fixture
async def client(api: FakeCallingAPI) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(
        api_key=API_KEY, base_url=api.url, retry_policy=FAST_RETRY, strict=True
    ) as async_client:
        yield async_client


@pytest.fixture
def sync_client(api: FakeCallingAPI) -> Iterator[Client]:
    with Client(api_key=API_KEY, base_url=api.url, retry_policy=FAST_RETRY, strict=True) as c:
        yield c


pytest_plugins = ["pytester"]


@pytest.fixture
def wire() -> Iterator[Capture]:
    """A loopback server that records each request and answers what the test queues."""
    with Capture() as server:
        yield server


@pytest_asyncio.fixture
async def wire_client(wire: Capture) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(
        api_key=API_KEY, base_url=wire.url, retry_policy=FAST_RETRY, strict=True
    ) as c:
        yield c


# -- a real Redis, for the fleet tests ---------------------------------------------------
# redis_server: the session's Redis (tests/redis_server.py), started from PATH's redis-server
# or the one D360_TEST_REDIS_URL names; skipped without one (failed with D360_REQUIRE_REDIS=1)
# and without redis-py. redis_url: its URL, emptied (FLUSHALL) for each test.
# Appended here, so imported here: the helper is stdlib and pytest only (no redis-py).
from .redis_server import START_TIMEOUT, RedisServer, redis_for_tests  # noqa: E402


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = redis_for_tests()
    if not server.managed:
        import redis

        try:
            with redis.Redis.from_url(server.url, socket_connect_timeout=START_TIMEOUT) as probe:
                probe.ping()
        except redis.RedisError as exc:
            pytest.fail(f"D360_TEST_REDIS_URL names a Redis that does not answer: {exc}")
    with server:  # starts a managed one (and stops it at the end); an external one as it is
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    import redis

    if redis_server.managed:
        redis_server.start()  # running again after a test that stopped it and then failed
    with redis.Redis.from_url(redis_server.url, socket_timeout=10) as client:
        client.flushall()
    return redis_server.url


@pytest.fixture
def raw(redis_url: str) -> Iterator[Any]:
    """A plain (blocking) redis-py client on the test's Redis, to look at and tamper with
    keys."""
    import redis

    with redis.Redis.from_url(redis_url, socket_timeout=10) as client:
        yield client
