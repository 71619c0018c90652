"""The sync Client under attack from its own process: forked children that exit normally, a
close() that races 48 waiting threads, calls that reach a loop that is shutting down. Every
outcome is a result or a typed error, and no child crashes. Loopback only; subprocesses have
timeouts."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import subprocess
import sys
import textwrap
import threading
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from d360calling import (
    APIConnectionError,
    Client,
    ClientClosedError,
    InvalidRequestError,
    _portal,
)
from d360calling._portal import PORTAL, Portal
from d360calling.testing import FakeCallingAPI, Fault

from .conftest import FAST_RETRY
from .helpers import API_KEY, wait_until

ROOT = Path(__file__).resolve().parent.parent


def portal_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "d360calling-portal"]


# -- fork: children that exit normally ----------------------------------------------------

FORK_SCRIPT = textwrap.dedent(
    """
    import os, sys, time, warnings
    warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)
    from d360calling import _portal
    _portal.USE_UVLOOP = sys.argv[2] == "uvloop"
    from d360calling import Client

    url, key = sys.argv[1], sys.argv[3]
    client = Client(api_key=key, base_url=url)
    assert client.get_settings().calling.status == "ENABLED"  # the portal and pool are live
    print("loop", type(_portal.PORTAL._loop).__module__.split(".")[0], flush=True)

    def child(kind):
        if kind == "idle":
            sys.exit(0)
        if kind == "exit-code":
            sys.exit(7)
        if kind == "inherited-client":
            client.get_settings()  # and never closed
            sys.exit(0)
        if kind == "new-client":
            with Client(api_key=key, base_url=url) as other:
                other.get_settings()
            # and falls off the end of the script

    role = None
    for kind in ("idle", "exit-code", "inherited-client", "new-client"):
        pid = os.fork()
        if pid == 0:
            role = kind
            child(kind)
            break
        deadline = time.monotonic() + 20
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                print(kind, os.waitstatus_to_exitcode(status), flush=True)
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                print(kind, "hung", flush=True)
                break
            time.sleep(0.01)
    if role is None:
        client.close()
        print("parent done", flush=True)
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_a_forked_child_that_exits_normally_does_not_crash(api: FakeCallingAPI, loop: str) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    # In its own interpreter: a crash must not take pytest down with it.
    result = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT, api.url, loop, API_KEY],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    # Without the fix, libuv's exit-time destructor killed the uvloop children: -11 (SIGSEGV).
    assert result.stdout.splitlines() == [
        f"loop {loop}",
        "idle 0",
        "exit-code 7",
        "inherited-client 0",
        "new-client 0",
        "parent done",
    ]
    assert "Exception ignored" not in result.stderr
    assert "Traceback" not in result.stderr


# -- close() against waiting threads ------------------------------------------------------


def count_tasks_on_the_portal() -> int:
    async def count() -> int:
        return len(asyncio.all_tasks()) - 1  # not this one

    return PORTAL.run(count)


def test_close_while_48_threads_wait_for_a_pool_slot(api: FakeCallingAPI) -> None:
    client = Client(api_key=API_KEY, base_url=api.url, pool_size=2, max_retries=0, timeout=30)
    client.get_settings()
    api.inject(Fault(delay=30), method="GET", path="/calling/settings", times=None)
    outcomes: list[BaseException | None] = [None] * 48

    def call(i: int) -> None:
        try:
            client.get_settings()
        except BaseException as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(48)]
    for thread in threads:
        thread.start()
    # Two requests on the wire, 46 waiting for a slot: every call is a task on the portal.
    assert wait_until(lambda: api.in_flight == 2 and count_tasks_on_the_portal() == 48)
    client.close()
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads)
    kinds = Counter(type(outcome).__name__ for outcome in outcomes)
    # The two on the wire may see their connection closed; the waiters only that it closed.
    assert kinds["ClientClosedError"] >= 46, kinds
    assert set(kinds) <= {"ClientClosedError", "APIConnectionError"}, kinds
    assert portal_threads() == []


def test_calls_racing_close_from_many_threads_get_a_result_or_a_typed_error(
    api: FakeCallingAPI,
) -> None:
    client = Client(api_key=API_KEY, base_url=api.url, pool_size=4, retry_policy=FAST_RETRY)
    results: Counter[str] = Counter()
    lock = threading.Lock()
    started = threading.Barrier(17)

    def work() -> None:
        started.wait()
        for _ in range(200):  # bounded: the close comes long before
            try:
                client.get_settings()
                outcome = "ok"
            except (ClientClosedError, APIConnectionError) as exc:
                outcome = type(exc).__name__
            except BaseException as exc:  # what this test is about
                outcome = repr(exc)
            with lock:
                results[outcome] += 1
            if outcome != "ok":
                return

    threads = [threading.Thread(target=work) for _ in range(16)]
    for thread in threads:
        thread.start()
    started.wait()
    assert wait_until(lambda: results["ok"] >= 32)
    client.close()
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads)
    assert set(results) <= {"ok", "ClientClosedError", "APIConnectionError"}, results
    assert sum(n for kind, n in results.items() if kind != "ok") == 16  # each thread stopped
    assert portal_threads() == []


def test_a_call_in_flight_when_the_loop_stops_is_client_closed_error(
    api: FakeCallingAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_portal, "_DRAIN", 0.05)  # how long the stopping loop lets it run
    client = Client(api_key=API_KEY, base_url=api.url)
    client.get_settings()
    entered = threading.Event()

    async def hang(_: Any) -> None:
        entered.set()
        await asyncio.Event().wait()  # never set: only cancelling ends it

    outcome: list[BaseException] = []

    def call() -> None:
        try:
            client._run(hang)
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    assert entered.wait(5)
    client.close()
    caller.join(10)
    assert not caller.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], ClientClosedError), repr(outcome[0])


class _User:
    def close(self) -> None:
        pass

    def _after_fork_in_child(self) -> None:
        pass


def test_a_call_that_reaches_a_stopping_loop_is_cancelled_not_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A long drain keeps the stopped loop finishing its tasks while the late call arrives.
    monkeypatch.setattr(_portal, "_DRAIN", 30.0)
    portal, user = Portal(), _User()
    portal.acquire(user)
    loop, thread = portal._loop, portal.thread
    assert loop is not None
    assert thread is not None
    lingering: list[asyncio.Task[Any]] = []

    async def linger() -> None:
        lingering.append(asyncio.get_running_loop().create_task(asyncio.Event().wait()))

    portal.run(linger)
    loop.call_soon_threadsafe(loop.stop)
    assert wait_until(lambda: loop in _portal._STOPPING)
    ran: list[bool] = []

    async def late() -> str:
        ran.append(True)
        return "ran"

    try:
        with pytest.raises(concurrent.futures.CancelledError):
            portal.run(late)
        assert ran == []  # it never started against what is being shut down
    finally:
        loop.call_soon_threadsafe(lingering[0].cancel)
        thread.join(10)
    assert not thread.is_alive()
    assert loop.is_closed()


# -- the key in a failing constructor's traceback -------------------------------------------

SYNC_KEY = "sk-sync-adversarial-5d0c2e7b91"  # distinctive: found only if it leaks


def _rendered_with_locals(error: BaseException) -> str:
    """What a reporter capturing locals renders; it calls repr() on half-built objects."""
    return "".join(
        traceback.TracebackException(
            type(error), error, error.__traceback__, capture_locals=True
        ).format()
    )


# Each builds the arguments from the key in the call: no local of the test holds it.
@pytest.mark.parametrize(
    "make",
    [
        lambda key: {"api_key": key, "timeout": -1},
        lambda key: {"api_key": key + "\n"},
        lambda key: {"api_key": key, "base_url": "ftp://x"},
    ],
)
def test_a_failing_client_renders_with_locals_and_shows_no_key(
    make: Callable[[str], dict[str, Any]],
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        Client(**make(SYNC_KEY))
    rendered = _rendered_with_locals(info.value)  # a half-built Client's repr must not fail
    assert "<Client (not constructed)>" in rendered
    assert SYNC_KEY not in rendered
    with Client(api_key=API_KEY, base_url="http://127.0.0.1:1") as client:
        with pytest.raises(InvalidRequestError) as derived:
            client.with_options(**make(SYNC_KEY))
        rendered = _rendered_with_locals(derived.value)
    assert "<redacted>" in rendered
    assert SYNC_KEY not in rendered


def test_a_half_built_client_has_a_repr() -> None:
    client = object.__new__(Client)
    assert repr(client) == "<Client (not constructed)>"
