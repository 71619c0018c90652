"""pytest fixtures for testing code that uses d360calling; registered through the ``pytest11``
entry point, so installing d360calling is enough.

- ``d360_fake_api``: a :class:`~d360calling.testing.FakeCallingAPI` running in a background
  thread, fresh for each test. It works from sync and async tests alike.
- ``d360_client``: a blocking :class:`~d360calling.Client` connected to it.

For an :class:`~d360calling.AsyncClient`, use ``async with d360_fake_api.async_client() as c``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .._sync_client import Client
    from ._server import FakeCallingAPI

__all__ = ("d360_client", "d360_fake_api")

# The library is imported inside the fixtures, so a project that has d360calling installed
# but does not use these fixtures does not pay for importing aiohttp at pytest start-up.


@pytest.fixture
def d360_fake_api() -> Iterator[FakeCallingAPI]:
    from ._server import FakeCallingAPI

    with FakeCallingAPI() as fake:
        yield fake


@pytest.fixture
def d360_client(d360_fake_api: FakeCallingAPI) -> Iterator[Client]:
    with d360_fake_api.client() as client:
        yield client
