"""``d360calling.testing.serve``: the one runner the fake, the demo and the tests use."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from d360calling.testing import FakeCallingAPI, ServedApp, serve


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


def _app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", _hello)
    return app


@pytest.mark.asyncio
async def test_port_zero_serves_on_the_port_the_runner_bound() -> None:
    served = await serve(_app())
    try:
        assert isinstance(served, ServedApp)
        host, port = served.runner.addresses[0][:2]
        assert (host, served.port) == ("127.0.0.1", port)
        assert served.port > 0
        assert served.url == f"http://127.0.0.1:{port}"
        runner, same_port = served  # unpacks like the old (runner, port) pair
        assert (runner, same_port) == (served.runner, served.port)
        async with aiohttp.ClientSession() as session, session.get(served.url + "/") as reply:
            assert await reply.text() == "hello"
    finally:
        await served.close()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"http://127.0.0.1:{port}/")


@pytest.mark.asyncio
async def test_a_taken_port_raises_and_leaves_nothing_running() -> None:
    served = await serve(_app())
    try:
        with pytest.raises(OSError, match=r"(?i)address already in use"):
            await serve(_app(), port=served.port)
    finally:
        await served.close()


@pytest.mark.asyncio
async def test_the_fake_runs_on_it_and_reports_its_port() -> None:
    async with FakeCallingAPI(port=0) as fake:
        assert fake.port > 0
        assert fake.url == f"http://127.0.0.1:{fake.port}"
        async with (
            aiohttp.ClientSession() as session,
            session.get(fake.url + "/calling/settings") as reply,
        ):
            assert reply.status == 401  # it is the fake answering: no key
