"""The sync Client: every method, many threads, inside a running loop, the deadlock guard,
closing, and (in subprocesses) Ctrl-C, fork and exit without close."""

from __future__ import annotations

import contextvars
import gc
import os
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from d360calling import (
    APIConnectionError,
    AuthenticationError,
    Client,
    ClientClosedError,
    ClientMisuseError,
    InvalidRequestError,
    PermissionStatus,
    SettingsUpdate,
)
from d360calling._portal import PORTAL
from d360calling.testing import FakeCallingAPI, Fault, sample_answer, sample_offer

from .conftest import FAST_RETRY
from .helpers import API_KEY, USER, wait_until

ROOT = Path(__file__).resolve().parent.parent
OFFER = sample_offer()
ANSWER = sample_answer()


def portal_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "d360calling-portal"]


def test_every_method_works_blocking(api: FakeCallingAPI, sync_client: Client) -> None:
    outbound = sync_client.connect_call(USER, OFFER).call_id
    assert api.calls[outbound].state == "ringing"
    answered, rejected = api.user_calls("4915100000001"), api.user_calls("4915100000002")
    assert sync_client.pre_accept_call(answered.id, sdp=ANSWER).success
    assert sync_client.accept_call(answered.id, sdp=ANSWER, biz_opaque_callback_data="x").success
    assert sync_client.reject_call(rejected.id).success
    assert sync_client.terminate_call(answered.id).success
    assert api.calls[answered.id].end_reason == "terminated"
    assert api.calls[rejected.id].end_reason == "rejected"
    p = sync_client.get_call_permissions("4915112345678")
    assert p.permission.status is PermissionStatus.TEMPORARY
    assert sync_client.update_settings(SettingsUpdate.status("DISABLED")).success
    assert sync_client.get_settings().calling.status == "DISABLED"
    actions = [r.json["action"] for r in api.requests_to("POST", "/calling/calls")]
    assert actions == ["connect", "pre_accept", "accept", "reject", "terminate"]


def test_errors_cross_the_thread_with_their_type(api: FakeCallingAPI, sync_client: Client) -> None:
    api.inject(
        Fault(status=401, json={"error": "Invalid API key"}), method="GET", path="/calling/settings"
    )
    with pytest.raises(AuthenticationError, match="Invalid API key"):
        sync_client.get_settings()
    with pytest.raises(InvalidRequestError):
        sync_client.accept_call("", OFFER)


def test_retries_work_through_the_facade(api: FakeCallingAPI, sync_client: Client) -> None:
    api.inject(
        Fault(status=503, body=b""), Fault(drop="before"), method="GET", path="/calling/settings"
    )
    assert sync_client.get_settings().calling.status == "ENABLED"


def test_bad_options_fail_at_construction_in_the_callers_thread() -> None:
    with pytest.raises(InvalidRequestError, match="plain http"):
        Client(api_key="k", base_url="http://api.example.com")
    assert portal_threads() == []


def test_many_threads_share_one_client(api: FakeCallingAPI) -> None:
    calls = [api.user_calls(f"49151000{i:05d}").id for i in range(8 * 20)]
    with Client(api_key=API_KEY, base_url=api.url, pool_size=8) as client:

        def work(i: int) -> int:
            done = 0
            for j in range(20):
                if i % 2:
                    done += client.get_settings().calling.status == "ENABLED"
                else:
                    done += bool(client.terminate_call(calls[i // 2 * 20 + j]).success)
            return done

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(work, range(16)))
    assert results == [20] * 16
    assert len(api.requests) == 320
    assert len({r.peer for r in api.requests}) <= 8
    assert len(portal_threads()) == 0


@pytest.mark.asyncio
async def test_usable_inside_a_running_event_loop(api: FakeCallingAPI) -> None:
    with Client(api_key=API_KEY, base_url=api.url) as client:
        with pytest.warns(RuntimeWarning, match="AsyncClient"):
            assert client.get_settings().calling.status == "ENABLED"
        # The warning is given once per client.
        assert client.terminate_call(api.user_calls(USER).id).success


def test_calling_from_the_portal_loop_raises_instead_of_deadlocking(
    api: FakeCallingAPI, sync_client: Client
) -> None:
    sync_client.get_settings()  # the portal is running

    async def reenter() -> Any:
        return sync_client.get_settings()

    with pytest.raises(ClientMisuseError, match="deadlock"):
        PORTAL.run(reenter)


def test_a_function_failing_before_it_is_awaited_does_not_hang(sync_client: Client) -> None:
    sync_client.get_settings()

    def not_a_coroutine_function() -> Any:
        raise LookupError("failed at call time")

    with pytest.raises(LookupError, match="call time"):
        PORTAL.run(not_a_coroutine_function)


def test_context_variables_reach_the_request(api: FakeCallingAPI, sync_client: Client) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("trace", default="unset")
    sync_client.get_settings()

    async def read() -> str:
        return var.get()

    var.set("trace-42")
    assert PORTAL.run(read) == "trace-42"


def test_close_is_idempotent_and_leaves_no_thread(api: FakeCallingAPI) -> None:
    client = Client(api_key=API_KEY, base_url=api.url)
    assert portal_threads() == []  # nothing starts before the first call
    client.get_settings()
    assert len(portal_threads()) == 1
    client.close()
    client.close()
    assert client.closed
    assert portal_threads() == []
    with pytest.raises(ClientClosedError):
        client.get_settings()


def test_clients_share_one_portal_that_stops_with_the_last(api: FakeCallingAPI) -> None:
    first = Client(api_key=API_KEY, base_url=api.url)
    second = Client(api_key=API_KEY, base_url=api.url)
    first.get_settings()
    second.get_settings()
    assert len(portal_threads()) == 1
    first.close()
    assert len(portal_threads()) == 1
    assert second.get_settings().calling.status == "ENABLED"
    second.close()
    assert portal_threads() == []
    third = Client(api_key=API_KEY, base_url=api.url)  # and it starts again on demand
    try:
        assert third.get_settings().calling.status == "ENABLED"
    finally:
        third.close()
    assert portal_threads() == []


def test_close_while_a_call_is_in_flight(api: FakeCallingAPI) -> None:
    # A POST: for a GET, aiohttp itself would open a new connection to re-send it.
    api.inject(Fault(delay=5.0), method="POST", path="/calling/calls")
    client = Client(api_key=API_KEY, base_url=api.url, max_retries=0, retry_policy=FAST_RETRY)
    client.get_call_permissions("4915112345678")
    call_id = api.user_calls(USER).id
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            client.terminate_call(call_id)
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    assert wait_until(lambda: api.in_flight == 1)
    client.close()
    caller.join(5)
    assert not caller.is_alive()
    assert len(outcome) == 1
    # The session closed under the request, or the loop stopped first: never a hang.
    assert isinstance(outcome[0], (ClientClosedError, APIConnectionError)), repr(outcome[0])
    assert portal_threads() == []


def test_an_abandoned_client_is_closed_and_its_thread_stops(api: FakeCallingAPI) -> None:
    client = Client(api_key=API_KEY, base_url=api.url)
    client.get_settings()
    assert len(portal_threads()) == 1
    del client
    gc.collect()
    # No "Unclosed client session" (warnings are errors here), and the thread ends.
    assert wait_until(lambda: portal_threads() == [])


def test_repr_hides_the_key(api: FakeCallingAPI) -> None:
    client = Client(api_key=API_KEY, base_url=api.url)
    assert API_KEY not in repr(client)
    assert "open" in repr(client)
    client.close()
    assert "closed" in repr(client)


def test_sync_methods_keep_their_signatures_and_docs() -> None:
    import inspect

    from d360calling import AsyncClient

    for name in ("connect_call", "accept_call", "get_settings", "update_settings"):
        sync_method = getattr(Client, name)
        async_method = getattr(AsyncClient, name)
        assert sync_method.__doc__ == async_method.__doc__
        assert sync_method.__qualname__ == f"Client.{name}"
        assert inspect.signature(sync_method) == inspect.signature(async_method)


# -- process-level behaviour, each in its own interpreter -------------------------------------


def run_script(body: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(
        """
        import os, signal, sys, threading, time, warnings
        warnings.simplefilter("always", ResourceWarning)
        warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)
        from d360calling.testing import Fault
        from tests.helpers import API_KEY, running_api, wait_until
        from d360calling import Client
        def portal_threads():
            return [t for t in threading.enumerate() if t.name == "d360calling-portal"]
        """
    ) + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_ctrl_c_cancels_the_request_in_flight() -> None:
    result = run_script(
        """
        with running_api() as api:
            api.inject(Fault(delay=30), method="GET", path="/calling/settings")
            client = Client(api_key=API_KEY, base_url=api.url, timeout=60)
            threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
            started = time.monotonic()
            try:
                client.get_settings()
                print("NOT INTERRUPTED")
            except KeyboardInterrupt:
                print(f"interrupted after {time.monotonic() - started:.2f} s")
            print("server saw the request cancelled:", wait_until(lambda: api.cancelled == 1))
            client.close()
            print("portal threads:", len(portal_threads()))
        """
    )
    assert result.returncode == 0, result.stderr
    # The request would have taken 30 s; Ctrl-C came at 0.5 s.
    waited = float(result.stdout.split("interrupted after ")[1].split(" s")[0])
    assert 0.5 <= waited < 3.0
    assert "server saw the request cancelled: True" in result.stdout
    assert "portal threads: 0" in result.stdout
    assert "Unclosed" not in result.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_client_works_in_a_forked_child() -> None:
    result = run_script(
        """
        with running_api() as api:
            client = Client(api_key=API_KEY, base_url=api.url)
            client.get_settings()          # the parent's portal and pool are live
            quick = client.with_options(max_retries=0)  # shares the pool it was made from
            child_call = api.user_calls("4915112345678")
            pid = os.fork()
            if pid == 0:
                try:
                    ok = client.get_settings().calling.status == "ENABLED"
                    ok = ok and quick.get_settings().calling.status == "ENABLED"
                    client.terminate_call(child_call.id)
                    client.close()
                    print("child ok", ok, "portal threads:", len(portal_threads()), flush=True)
                    os._exit(0)
                except BaseException as exc:
                    print("child failed", repr(exc), flush=True)
                    os._exit(1)
            _, status = os.waitpid(pid, 0)
            print("child exit", os.waitstatus_to_exitcode(status))
            print("parent ok", client.get_settings().calling.status == "ENABLED")
            client.close()
            print("requests", len(api.requests), "peers", len({r.peer for r in api.requests}))
        """
    )
    assert result.returncode == 0, result.stderr
    assert "child ok True portal threads: 0" in result.stdout
    assert "child exit 0" in result.stdout
    assert "parent ok True" in result.stdout
    # The child (and its with_options client, on the child's new pool) used its own
    # connection, not the parent's pooled socket.
    assert "requests 5 peers 2" in result.stdout


def test_exit_without_close_leaves_no_unclosed_session() -> None:
    result = run_script(
        """
        from d360calling.testing import FakeCallingAPI
        api = FakeCallingAPI(api_key=API_KEY).start()  # left running: the process just ends
        client = Client(api_key=API_KEY, base_url=api.url)
        client.get_settings()
        print("done")
        """
    )
    assert result.returncode == 0, result.stderr
    assert "done" in result.stdout
    assert "Unclosed" not in result.stderr
    assert "Exception ignored" not in result.stderr


def test_the_portal_runs_on_uvloop_when_it_is_installed(api: FakeCallingAPI) -> None:
    uvloop = pytest.importorskip("uvloop")
    with Client(api_key=api.api_key, base_url=api.url) as client:
        client.get_settings()
        assert isinstance(PORTAL._loop, uvloop.Loop)
