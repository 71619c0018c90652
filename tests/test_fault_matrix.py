"""The fault matrix (``tests/fault_matrix.py``) as tests: one per scenario, endpoint and client.

Every scenario runs against one endpoint of each kind (``FAST_ENDPOINTS``) through
``AsyncClient``, and against ``accept`` through the sync ``Client`` too, in the default run;
the rest of the matrix is marked ``slow`` (``pytest -m slow``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .fault_matrix import (
    ENDPOINTS,
    FAST_ENDPOINTS,
    SCENARIOS,
    Endpoint,
    Result,
    Scenario,
    cases,
    check,
    run_case,
    update_report,
)

CASES = cases()
SLOW = pytest.mark.slow
# The sync Client runs the same request path on its own loop: one endpoint shows it per fault.
SYNC_FAST_ENDPOINT = "accept"


def in_fast_slice(endpoint: str, kind: str) -> bool:
    return endpoint in FAST_ENDPOINTS and (kind == "async" or endpoint == SYNC_FAST_ENDPOINT)


@pytest.mark.parametrize(
    ("scenario", "endpoint", "kind"),
    [
        pytest.param(
            s, e, k, id=f"{s.name}-{e.name}-{k}", marks=() if in_fast_slice(e.name, k) else SLOW
        )
        for s, e, k in CASES
    ],
)
def test_fault(scenario: Scenario, endpoint: Endpoint, kind: str) -> None:
    result = run_case(scenario, endpoint, kind)
    assert check(scenario, endpoint, result) == [], result


def test_the_fast_slice_runs_every_scenario_for_each_kind_of_call_through_both_clients() -> None:
    fast = {(s.name, e.name, k) for s, e, k in CASES if in_fast_slice(e.name, k)}
    assert fast == {(s.name, e, "async") for s in SCENARIOS for e in FAST_ENDPOINTS} | {
        (s.name, SYNC_FAST_ENDPOINT, "sync") for s in SCENARIOS
    }
    kinds = {e.name: (e.resendable, e.method) for e in ENDPOINTS if e.name in FAST_ENDPOINTS}
    assert kinds == {
        "connect": (False, "POST"),
        "accept": (True, "POST"),
        "permissions": (True, "GET"),
    }


def test_the_matrix_covers_every_endpoint_through_both_clients() -> None:
    covered = {(e.name, k) for _, e, k in CASES}
    names = {"connect", "pre_accept", "accept", "reject", "terminate"}
    names |= {"permissions", "get settings", "update settings"}
    assert covered == {(n, k) for n in names for k in ("async", "sync")}


def _scenario(prefix: str) -> Scenario:
    return next(s for s in SCENARIOS if s.name.startswith(prefix))


def _endpoint(name: str) -> Endpoint:
    return next(e for e in ENDPOINTS if e.name == name)


def test_the_check_catches_a_connect_sent_twice() -> None:
    scenario = next(s for s in SCENARIOS if s.name.startswith("reset before the response"))
    connect = next(e for e in ENDPOINTS if e.name == "connect")
    doubled = Result(scenario.name, "connect", "async", "APIConnectionError", 2, 2, 0.1, 2, 2)
    problems = check(scenario, connect, doubled)
    assert "connect reached the server 2 times" in problems
    assert "2 calls placed" in problems


def test_the_check_catches_a_request_resent_behind_the_clients_back() -> None:
    scenario = next(s for s in SCENARIOS if s.name.startswith("reset before the response"))
    settings = next(e for e in ENDPOINTS if e.name == "get settings")
    resent = Result(scenario.name, "get settings", "async", "ok", 2, 1, 0.1, 0, 0)
    assert check(scenario, settings, resent) == [
        "2 requests reached the server for 1 logged attempts"
    ]


def test_a_retry_after_is_asked_for_not_slept() -> None:
    """The 429 case takes no real second: the client asks the policy's sleep for 1.0 s."""
    scenario, endpoint = _scenario("429, Retry-After: 1 "), _endpoint("permissions")
    result = run_case(scenario, endpoint, "async")
    assert (result.outcome, result.server_requests, result.waits) == ("ok", 2, [1.0])
    assert result.seconds < 1.0  # generous: the one case that must not be near 1 s
    assert check(scenario, endpoint, result) == []


def test_the_check_catches_a_wrong_wait_and_a_retry_without_one() -> None:
    scenario, settings = _scenario("429, Retry-After: 1 "), _endpoint("get settings")
    ok = Result(scenario.name, "get settings", "async", "ok", 2, 2, 0.1, 0, 0, waits=[1.0])
    assert check(scenario, settings, ok) == []
    short = Result(scenario.name, "get settings", "async", "ok", 2, 2, 0.1, 0, 0, waits=[0.1])
    assert check(scenario, settings, short) == ["asked to wait 0.1 s, expected 1-1 s"]
    unwaited = Result(scenario.name, "get settings", "async", "ok", 2, 2, 0.1, 0, 0)
    assert check(scenario, settings, unwaited) == ["asked to wait 0 times for 1 retries"]


def test_the_report_replaces_only_its_block(tmp_path: Path) -> None:
    doc = tmp_path / "reliability.md"
    doc.write_text("intro\n<!-- fault-matrix:start -->\nold\n<!-- fault-matrix:end -->\nrest\n")
    update_report(doc, "fault-matrix", "| new |\n")
    assert doc.read_text() == (
        "intro\n<!-- fault-matrix:start -->\n| new |\n<!-- fault-matrix:end -->\nrest\n"
    )
    with pytest.raises(SystemExit, match="no <!-- soak:start -->"):
        update_report(doc, "soak", "x")
