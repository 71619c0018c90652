"""The fault matrix (``tests/fault_matrix.py``) as tests: one per scenario, endpoint and client."""

from __future__ import annotations

import pytest

from .fault_matrix import Endpoint, Scenario, cases, check, run_case

CASES = cases()


@pytest.mark.parametrize(
    ("scenario", "endpoint", "kind"),
    CASES,
    ids=[f"{s.name}-{e.name}-{k}" for s, e, k in CASES],
)
def test_fault(scenario: Scenario, endpoint: Endpoint, kind: str) -> None:
    result = run_case(scenario, endpoint, kind)
    assert check(scenario, endpoint, result) == [], result


def test_the_matrix_covers_every_endpoint_through_both_clients() -> None:
    covered = {(e.name, k) for _, e, k in CASES}
    names = {"connect", "pre_accept", "accept", "reject", "terminate"}
    names |= {"permissions", "get settings", "update settings"}
    assert covered == {(n, k) for n in names for k in ("async", "sync")}


def test_the_check_catches_a_connect_sent_twice() -> None:
    from .fault_matrix import ENDPOINTS, SCENARIOS, Result

    scenario = next(s for s in SCENARIOS if s.name.startswith("reset before the response"))
    connect = next(e for e in ENDPOINTS if e.name == "connect")
    doubled = Result(scenario.name, "connect", "async", "APIConnectionError", 2, 2, 0.1, 2, 2)
    problems = check(scenario, connect, doubled)
    assert "connect reached the server 2 times" in problems
    assert "2 calls placed" in problems


def test_the_check_catches_a_request_resent_behind_the_clients_back() -> None:
    from .fault_matrix import ENDPOINTS, SCENARIOS, Result

    scenario = next(s for s in SCENARIOS if s.name.startswith("reset before the response"))
    settings = next(e for e in ENDPOINTS if e.name == "get settings")
    resent = Result(scenario.name, "get settings", "async", "ok", 2, 1, 0.1, 0, 0)
    assert check(scenario, settings, resent) == [
        "2 requests reached the server for 1 logged attempts"
    ]
