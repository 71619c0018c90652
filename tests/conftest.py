from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from d360calling import AsyncClient, Client, RetryPolicy
from d360calling.testing import FakeCallingAPI

from .helpers import API_KEY, running_api

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
