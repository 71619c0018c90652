"""Serving an ``aiohttp.web`` app on loopback, on the running loop: the one runner the fake,
the demo's webhook inbox and the tests' receivers share."""

from __future__ import annotations

from typing import Any, NamedTuple

from aiohttp import web

__all__ = (
    "ServedApp",
    "serve",
)


class ServedApp(NamedTuple):
    """A running app: its runner and the port it is bound to. A pair, so
    ``runner, port = await serve(app)`` works."""

    runner: web.AppRunner
    port: int

    @property
    def url(self) -> str:
        """``http://host:port`` of the bound address, without a trailing slash."""
        host = str(self.runner.addresses[0][0])
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    async def close(self) -> None:
        """Stop serving and close every connection; idempotent."""
        await self.runner.cleanup()


async def serve(
    app: web.Application, host: str = "127.0.0.1", port: int = 0, **runner_options: Any
) -> ServedApp:
    """Serve ``app`` on ``host:port`` (port 0: a free one, which the result tells).

    ``runner_options`` go to :class:`aiohttp.web.AppRunner` (e.g. ``keepalive_timeout``);
    the access log is off unless given.
    """
    runner_options.setdefault("access_log", None)
    runner = web.AppRunner(app, **runner_options)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        # The runner knows its bound addresses; with port 0 that is where the port is.
        bound = runner.addresses[0]
    except BaseException:
        await runner.cleanup()
        raise
    return ServedApp(runner, int(bound[1]))
