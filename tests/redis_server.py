"""A real Redis for the fleet tests: ``redis-server`` from PATH on a free loopback port, with
no persistence, in a temporary directory; stopped and started again on the same port to show
Redis going down and coming back.

With ``D360_TEST_REDIS_URL`` set, that server is used instead and nothing is started: it
cannot be stopped from here (:func:`skip_unless_managed`).

Only the standard library here: the plain ``.[test]`` install has no redis-py, and this module
is still imported (by ``tests/conftest.py``) there.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import pytest

__all__ = (
    "NO_REDIS_PY",
    "NO_REDIS_SERVER",
    "REDIS_URL_ENV",
    "REQUIRE_REDIS_ENV",
    "RedisServer",
    "redis_for_tests",
    "skip_unless_managed",
    "unavailable",
)

REDIS_URL_ENV = "D360_TEST_REDIS_URL"
REQUIRE_REDIS_ENV = "D360_REQUIRE_REDIS"
START_TIMEOUT = 10.0  # seconds for a started redis-server to answer PING
STOP_TIMEOUT = 5.0  # seconds for it to exit after SIGTERM, before SIGKILL
_POLL = 0.02
NO_REDIS_SERVER = (
    "redis-server not found on PATH and D360_TEST_REDIS_URL not set: the fleet tests need a "
    "real Redis (apt install redis-server)"
)
NO_REDIS_PY = (
    "the redis package (redis-py) is not installed: the fleet tests need it "
    "(pip install -e '.[redis]')"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answering_pid(host: str, port: int) -> int | None:
    """The ``process_id`` of the Redis answering on ``host:port`` (``INFO server``, a RESP
    inline command: no client needed), or ``None`` when none answers (yet)."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"INFO server\r\n")
            reply = b""
            while b"process_id:" not in reply or not reply.endswith(b"\r\n"):
                chunk = sock.recv(65536)
                reply += chunk
                if not chunk or reply.startswith(b"-") or len(reply) > 1 << 20:
                    break  # closed, an error (NOAUTH...), or not Redis
    except OSError:
        return None
    for line in reply.split(b"\r\n"):
        if line.startswith(b"process_id:"):
            return int(line.split(b":", 1)[1])
    return None


class RedisServer:
    """One Redis: started here (``managed``) or the one ``D360_TEST_REDIS_URL`` names.

    ``url`` is ``redis://127.0.0.1:PORT/0``. A managed server keeps its port across
    :meth:`stop` and :meth:`start`, so clients reconnect to the same URL.
    """

    def __init__(
        self, *, executable: str | None = None, url: str | None = None, port: int | None = None
    ) -> None:
        if (executable is None) == (url is None):
            raise TypeError("give a redis-server executable or the URL of a running Redis")
        self.executable = executable
        self._url = url
        if url is None:
            self.host = "127.0.0.1"
            self.port = port if port is not None else _free_port()
        else:
            parts = urlsplit(url)
            self.host = parts.hostname or "localhost"
            self.port = parts.port or 6379
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None
        self._registered = False

    @property
    def managed(self) -> bool:
        """Whether this server was started here (and so can be stopped and started)."""
        return self._url is None

    @property
    def url(self) -> str:
        return self._url if self._url is not None else f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the redis-server started here runs (``False`` for an external one)."""
        return self._process is not None and self._process.poll() is None

    @property
    def log(self) -> str:
        """What redis-server wrote (its log goes to stdout), for a failure's message."""
        if self._dir is None:
            return ""
        path = Path(self._dir) / "redis.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def start(self) -> RedisServer:
        """Start redis-server on :attr:`port` and wait until it answers PING (at most
        ``START_TIMEOUT`` seconds); a no-op when it runs already."""
        if not self.managed:
            raise RuntimeError(f"{REDIS_URL_ENV} names the Redis used: it is not started here")
        if self.running:
            return self
        assert self.executable is not None
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="d360-redis-")
        if not self._registered:
            atexit.register(self._kill)  # no redis-server outlives a crashed test run
            self._registered = True
        workdir = self._dir
        # The log file is opened by the child (inherited), and closed here once it has it.
        with open(Path(workdir) / "redis.log", "ab") as log:
            self._process = subprocess.Popen(
                [
                    self.executable,
                    "--port",
                    str(self.port),
                    "--bind",
                    self.host,
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--protected-mode",
                    "yes",
                    "--dir",
                    workdir,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        # Ours must be the one answering: another Redis on the port would answer PING too.
        while _answering_pid(self.host, self.port) != self._process.pid:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise RuntimeError(
                    f"redis-server exited with {code} before answering on port {self.port}:\n"
                    f"{self.log}"
                )
            if time.monotonic() > deadline:
                self._kill()
                raise RuntimeError(
                    f"redis-server did not answer on port {self.port} within "
                    f"{START_TIMEOUT} s:\n{self.log}"
                )
            time.sleep(_POLL)  # startup, not a delay under test
        return self

    def stop(self) -> None:
        """Stop redis-server: SIGTERM, then SIGKILL after ``STOP_TIMEOUT`` seconds. The port
        stays this server's for :meth:`start`. A no-op when it is not running."""
        if not self.managed:
            raise RuntimeError(f"{REDIS_URL_ENV} names the Redis used: it is not stopped here")
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)

    def close(self) -> None:
        """Stop it and remove its directory."""
        if self.managed:
            self.stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(STOP_TIMEOUT)

    def __enter__(self) -> RedisServer:
        return self.start() if self.managed else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "managed" if self.managed else "external"
        return f"<RedisServer {kind} {self.host}:{self.port} running={self.running}>"


def skip_unless_managed(server: RedisServer) -> None:
    """Skip a test that stops and starts Redis when the Redis is not ours to stop."""
    if not server.managed:
        pytest.skip(
            f"{REDIS_URL_ENV} is set: that Redis is not stopped and started by the tests, "
            "so Redis going down and coming back is not tested"
        )


def unavailable(reason: str, environ: Mapping[str, str] = os.environ) -> NoReturn:
    """Skip for ``reason``, or fail with it when ``D360_REQUIRE_REDIS=1`` (CI's full install,
    where the fleet tests must run)."""
    if environ.get(REQUIRE_REDIS_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_REDIS_ENV}=1)", pytrace=False)
    pytest.skip(reason)


def redis_for_tests(
    environ: Mapping[str, str] = os.environ,
    *,
    have_redis_py: bool | None = None,
    which: Callable[[str], str | None] = shutil.which,
) -> RedisServer:
    """The Redis the fixtures use, not started yet: the one ``D360_TEST_REDIS_URL`` names,
    else ``redis-server`` from PATH. Skips (or fails, see :func:`unavailable`) when there is
    neither. Without redis-py it always skips: the plain ``.[test]`` install has none, and
    the fleet tests cannot run there whatever is asked."""
    if have_redis_py is None:
        have_redis_py = importlib.util.find_spec("redis") is not None
    if not have_redis_py:
        pytest.skip(NO_REDIS_PY)
    url = environ.get(REDIS_URL_ENV)
    if url:
        return RedisServer(url=url)
    executable = which("redis-server")
    if executable is None:
        unavailable(NO_REDIS_SERVER, environ)
    return RedisServer(executable=executable)
