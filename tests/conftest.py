from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from d360calling import AsyncClient, Client, RetryPolicy

from .loopback import API_KEY, LoopbackAPI, running_api

# Fast, deterministic backoff so retry tests take milliseconds, not seconds.
FAST_RETRY = RetryPolicy(initial_delay=0.01, max_delay=0.05)


@pytest.fixture
def api() -> Iterator[LoopbackAPI]:
    with running_api() as server:
        yield server


@pytest_asyncio.fixture
async def client(api: LoopbackAPI) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(
        api_key=API_KEY, base_url=api.url, retry_policy=FAST_RETRY, strict=True
    ) as async_client:
        yield async_client


@pytest.fixture
def sync_client(api: LoopbackAPI) -> Iterator[Client]:
    with Client(api_key=API_KEY, base_url=api.url, retry_policy=FAST_RETRY, strict=True) as c:
        yield c
