"""The real Redis the fleet tests run on (tests/redis_server.py and the ``redis_server`` /
``redis_url`` fixtures): it answers, each test starts with it empty, it goes down and comes
back on the same port, and without one the tests skip (or fail, when CI requires Redis)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from .redis_server import (
    NO_REDIS_PY,
    NO_REDIS_SERVER,
    REDIS_URL_ENV,
    REQUIRE_REDIS_ENV,
    RedisServer,
    redis_for_tests,
    skip_unless_managed,
)

if TYPE_CHECKING:
    from redis.retry import Retry

redis = pytest.importorskip("redis", reason=NO_REDIS_PY)


def is_up(server: RedisServer) -> bool:
    return server.running  # a call, so mypy does not hold on to an earlier assert


def no_retries() -> Retry:
    """redis-py retries a lost connection with pauses by default: here a refusal is seen."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Retry(NoBackoff(), 0)


def test_a_value_set_is_read_back(redis_server: RedisServer, redis_url: str) -> None:
    assert redis_url == redis_server.url
    assert redis_url.startswith("redis://")
    with redis.Redis.from_url(redis_url) as client:
        assert client.set("d360:greeting", "hello")
        assert client.get("d360:greeting") == b"hello"


@pytest.mark.parametrize("leaver", ["first", "second"])
def test_each_test_starts_with_an_empty_redis(redis_url: str, leaver: str) -> None:
    # Whichever of the two runs second finds nothing the other left behind.
    with redis.Redis.from_url(redis_url) as client:
        assert client.dbsize() == 0
        client.set(f"d360:left-by-{leaver}", "1")
        client.hset("d360:hash", leaver, "1")
        assert client.dbsize() == 2


def test_redis_goes_down_and_comes_back_on_the_same_port(
    redis_server: RedisServer, redis_url: str
) -> None:
    skip_unless_managed(redis_server)
    with redis.Redis.from_url(
        redis_url, socket_timeout=5, socket_connect_timeout=5, retry=no_retries()
    ) as client:
        client.set("d360:before", "1")
        redis_server.stop()
        assert not is_up(redis_server)
        with pytest.raises(redis.ConnectionError):
            client.get("d360:before")
        redis_server.start()
        assert is_up(redis_server)
        assert redis_server.url == redis_url  # the same port: clients need no new URL
        # The same client reconnects; nothing was persisted (--save "", no AOF).
        assert client.get("d360:before") is None
        assert client.set("d360:after", "1")
        assert client.get("d360:after") == b"1"


def test_stop_and_start_again_are_idempotent(redis_server: RedisServer, redis_url: str) -> None:
    skip_unless_managed(redis_server)
    redis_server.start()  # already running: nothing happens
    assert is_up(redis_server)
    redis_server.stop()
    redis_server.stop()
    assert not is_up(redis_server)
    redis_server.start()
    with redis.Redis.from_url(redis_url, socket_timeout=5) as client:
        assert client.ping()


def test_a_port_taken_by_another_redis_is_not_mistaken_for_ours(
    redis_server: RedisServer,
) -> None:
    skip_unless_managed(redis_server)
    clash = RedisServer(executable=redis_server.executable, port=redis_server.port)
    try:
        # The session's Redis answers on that port; this one cannot bind it and exits.
        with pytest.raises(RuntimeError, match="exited") as failed:
            clash.start()
        assert "Address already in use" in str(failed.value)
        assert not clash.running
    finally:
        clash.close()
    assert redis_server.running


# -- where the Redis comes from, and what happens without one ---------------------------

NOWHERE = {"PATH": "/nonexistent"}


def no_redis_server(name: str) -> str | None:
    return None


def test_without_redis_server_the_fleet_tests_skip_with_the_reason() -> None:
    with pytest.raises(pytest.skip.Exception, match="redis-server not found on PATH") as skipped:
        redis_for_tests(NOWHERE, have_redis_py=True, which=no_redis_server)
    assert str(skipped.value.msg) == NO_REDIS_SERVER
    assert "apt install redis-server" in NO_REDIS_SERVER


def test_without_redis_server_they_fail_when_redis_is_required() -> None:
    environ = {**NOWHERE, REQUIRE_REDIS_ENV: "1"}
    with pytest.raises(pytest.fail.Exception, match="redis-server not found on PATH") as failed:
        redis_for_tests(environ, have_redis_py=True, which=no_redis_server)
    assert NO_REDIS_SERVER in str(failed.value.msg)


def test_without_redis_py_they_skip_even_when_redis_is_required() -> None:
    # The plain ".[test]" install has no redis-py: skipping is right there, whatever is set.
    environ = {REQUIRE_REDIS_ENV: "1", REDIS_URL_ENV: "redis://127.0.0.1:1/0"}
    with pytest.raises(pytest.skip.Exception) as skipped:
        redis_for_tests(environ, have_redis_py=False, which=no_redis_server)
    assert str(skipped.value.msg) == NO_REDIS_PY


def test_a_given_url_is_used_and_not_managed() -> None:
    server = redis_for_tests(
        {REDIS_URL_ENV: "redis://127.0.0.1:6390/3"}, have_redis_py=True, which=no_redis_server
    )
    assert (server.managed, server.url, server.port) == (False, "redis://127.0.0.1:6390/3", 6390)
    with pytest.raises(RuntimeError, match=REDIS_URL_ENV):
        server.stop()
    with pytest.raises(RuntimeError, match=REDIS_URL_ENV):
        server.start()
    with pytest.raises(pytest.skip.Exception, match="not stopped and started"):
        skip_unless_managed(server)


def test_redis_server_from_path_is_found() -> None:
    server = redis_for_tests({}, have_redis_py=True, which=lambda name: f"/opt/bin/{name}")
    assert server.managed
    assert server.executable == "/opt/bin/redis-server"
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
