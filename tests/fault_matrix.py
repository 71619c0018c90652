"""The fault matrix: every fault the fake API can make, against every endpoint, through both
clients. ``python -m tests.fault_matrix`` prints it as a table; ``tests/test_fault_matrix.py``
runs the same cases as tests.

Each scenario states its outcome per endpoint: success, or a named error, after a given number
of requests reaching the server, inside a time bound, and the waits the client asks for between
attempts. Nothing waits for real: the retry policy's ``sleep`` records the delay it is asked
for and returns at once. Whatever the fault, ``connect`` never reaches the server twice and
never places two calls.

``--report`` also writes the table into docs/reliability.md (when every case passes).
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import functools
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import attrs

from d360calling import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncClient,
    Client,
    D360Error,
    RateLimitError,
    ResponseDecodeError,
    RetryPolicy,
    ServerError,
    SettingsUpdate,
)
from d360calling.testing import FakeCallingAPI, Fault, sample_answer, sample_offer

from .helpers import closed_port

ROOT = Path(__file__).resolve().parent.parent
RELIABILITY = ROOT / "docs" / "reliability.md"  # where --report writes, here and in tests.soak
USER = "4915112345678"
TIMEOUT = 0.25
RETRIES = 2
POLICY = RetryPolicy(initial_delay=0.05, max_delay=0.2, max_retry_after=5.0)
BACKOFF = (POLICY.initial_delay * (1 - POLICY.jitter), POLICY.max_delay)  # any backoff wait
# In the idle keep-alive scenario, the fake closes idle connections after this long, and the
# client waits IDLE_WAIT before its next request; the other scenarios keep the default.
KEEPALIVE = 0.05
IDLE_WAIT = KEEPALIVE * 5
HTML = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
BIG = 5 * 1024 * 1024  # above the client's 4 MiB response limit
# The endpoints `pytest` runs every scenario against (one of each kind of call: connect, an
# answer-side action, a read); the others run under `pytest -m slow`.
FAST_ENDPOINTS = ("connect", "accept", "permissions")


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str
    resendable: bool
    # Builds the state the call needs (a ringing or answered call); returns the call id.
    setup: Callable[[FakeCallingAPI], str]
    # (client, call id) -> the client call (a coroutine for AsyncClient).
    call: Callable[[Any, str], Any]


def _ringing(api: FakeCallingAPI) -> str:
    return api.user_calls(USER).id


def _answered(api: FakeCallingAPI) -> str:
    call_id = _ringing(api)
    with api.client() as client:
        client.accept_call(call_id, sample_answer(call_id))
    return call_id


def _permitted(api: FakeCallingAPI) -> str:
    api.grant_permission(USER)
    return ""


CALLS = "/calling/calls"
ENDPOINTS = [
    Endpoint(
        "connect",
        "POST",
        CALLS,
        False,
        _permitted,
        lambda c, _: c.connect_call(USER, sample_offer()),
    ),
    Endpoint(
        "pre_accept",
        "POST",
        CALLS,
        True,
        _ringing,
        lambda c, i: c.pre_accept_call(i, sample_answer(i)),
    ),
    Endpoint(
        "accept", "POST", CALLS, True, _ringing, lambda c, i: c.accept_call(i, sample_answer(i))
    ),
    Endpoint("reject", "POST", CALLS, True, _ringing, lambda c, i: c.reject_call(i)),
    Endpoint("terminate", "POST", CALLS, True, _answered, lambda c, i: c.terminate_call(i)),
    Endpoint(
        "permissions",
        "GET",
        f"/calling/permissions/{USER}",
        True,
        lambda api: "",
        lambda c, _: c.get_call_permissions(USER),
    ),
    Endpoint(
        "get settings",
        "GET",
        "/calling/settings",
        True,
        lambda api: "",
        lambda c, _: c.get_settings(),
    ),
    Endpoint(
        "update settings",
        "POST",
        "/calling/settings",
        True,
        lambda api: "",
        lambda c, _: c.update_settings(SettingsUpdate.status("ENABLED")),
    ),
]


@dataclass(frozen=True)
class Expect:
    error: type[D360Error] | None  # None: success
    server_requests: int  # requests that reach the fake (attempts, plus followed redirects)
    # The whole call ends within this (the waits it asks for are not slept): a generous bound
    # for a loaded machine, far below any wait that would be a bug.
    seconds: float = 2.0
    # Only where an attempt must time out: a timer never fires early, so a loaded machine
    # cannot break this bound, only a timeout shorter than asked can.
    min_seconds: float = 0.0
    waits: tuple[float, float] = BACKOFF  # every wait asked for lies in [low, high] seconds


@dataclass(frozen=True)
class Scenario:
    name: str
    expected: str
    faults: Callable[[Endpoint, FakeCallingAPI], list[Fault]]
    expect: Callable[[Endpoint], Expect]
    applies: Callable[[Endpoint], bool] = lambda e: True
    refused: bool = False  # point the client at a closed port instead
    idle_first: bool = False  # one request, then idle past the server's keep-alive
    other_host: bool = False  # the fault redirects to a second server
    # The first answer is a redirect (nothing done): connect reaches the server twice, and
    # must still place exactly one call.
    redirected: bool = False


def _retried(
    error: type[D360Error], min_seconds: float = 0.0, waits: tuple[float, float] = BACKOFF
) -> Callable[[Endpoint], Expect]:
    """Resendable endpoints succeed on the second attempt, after one wait in ``waits``;
    connect fails with ``error`` at once."""

    def expect(e: Endpoint) -> Expect:
        if e.resendable:
            return Expect(None, 2, min_seconds=min_seconds, waits=waits)
        return Expect(error, 1, min_seconds=min_seconds)

    return expect


def _once(error: type[D360Error] | None) -> Callable[[Endpoint], Expect]:
    return lambda e: Expect(error, 1)


def _acted(e: Endpoint) -> Expect:
    """The server acted but its answer was lost: repeatable calls are retried and succeed; a
    repeated action is refused, which must surface as 'may have succeeded'; connect is not
    re-sent."""
    repeatable = e.method == "GET" or e.name in ("update settings", "pre_accept")
    return Expect(None if repeatable else APIConnectionError, 1 if e.name == "connect" else 2)


def _http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


def _just(fault: Fault, endpoint: Endpoint, api: FakeCallingAPI) -> list[Fault]:
    return [fault]


def _status_scenarios() -> list[Scenario]:
    out = []
    for status in (500, 502, 503, 504):
        bodies = {
            "JSON": Fault(
                status=status, json={"error": {"message": "Service unavailable", "code": 2}}
            ),
            "HTML": Fault(status=status, body=HTML, content_type="text/html"),
            "empty": Fault(status=status, body=b""),
        }
        for kind, fault in bodies.items():
            out.append(
                Scenario(
                    f"{status}, {kind} body",
                    "retried, then ok; connect: ServerError at once",
                    functools.partial(_just, fault),
                    _retried(ServerError),
                )
            )
    return out


SCENARIOS: list[Scenario] = [
    Scenario(
        "connection refused",
        "APIConnectionError after 1 + retries attempts, every endpoint (nothing was sent)",
        lambda e, api: [],
        lambda e: Expect(APIConnectionError, 0),
        refused=True,
    ),
    Scenario(
        "reset before the response (not processed)",
        "retried, then ok; connect: APIConnectionError at once",
        lambda e, api: [Fault(drop="before")],
        _retried(APIConnectionError),
    ),
    Scenario(
        "reset after the server acted",
        "connect: APIConnectionError, one call placed; idempotent reads and updates: retried, ok; "
        "answer-side actions: APIConnectionError 'may have succeeded', never a false failure",
        lambda e, api: [Fault(drop="after")],
        _acted,
    ),
    Scenario(
        "reset in the middle of the body",
        "as 'reset after the server acted' (the server acted, the answer broke off)",
        lambda e, api: [Fault(truncate=True)],
        _acted,
    ),
    Scenario(
        "slow headers past the timeout",
        "APITimeoutError on the attempt; retried, then ok; connect: APITimeoutError at once",
        lambda e, api: [Fault(delay=TIMEOUT * 3)],
        _retried(APITimeoutError, min_seconds=TIMEOUT * 0.9),
    ),
    Scenario(
        "slow body past the timeout",
        "APITimeoutError on the attempt; reads retried, ok; actions: outcome unknown, as a reset",
        lambda e, api: [Fault(slow_body=TIMEOUT * 4)],
        lambda e: Expect(
            None
            if e.method == "GET" or e.name in ("update settings", "pre_accept")
            else (APITimeoutError if e.name == "connect" else APIConnectionError),
            1 if e.name == "connect" else 2,
            min_seconds=TIMEOUT * 0.9,
        ),
    ),
    Scenario(
        "429, Retry-After: 1 (seconds)",
        "asks to wait 1 s, then ok; connect: RateLimitError at once",
        lambda e, api: [Fault.error(130429, status=429, retry_after=1)],
        _retried(RateLimitError, waits=(1.0, 1.0)),
    ),
    Scenario(
        "429, Retry-After as an HTTP date",
        "asks to wait until the date, then ok; connect: RateLimitError at once",
        lambda e, api: [Fault.error(130429, status=429, retry_after=_http_date(2))],
        # The date is 2 s ahead in whole seconds, so the wait left is between 1 and 2 s when
        # the answer is read (0.5: slack for a slow machine).
        _retried(RateLimitError, waits=(0.5, 2.0)),
    ),
    Scenario(
        "429, no Retry-After",
        "backs off, then ok; connect: RateLimitError at once",
        lambda e, api: [Fault.error(130429, status=429)],
        _retried(RateLimitError),
    ),
    Scenario(
        "429, Retry-After: 86400",
        "RateLimitError at once: a wait above max_retry_after is the caller's decision",
        lambda e, api: [Fault.error(130429, status=429, retry_after=86400)],
        _once(RateLimitError),
    ),
    Scenario(
        "360dialog 'rate limit' 400",
        "backs off, then ok; connect: RateLimitError at once",
        lambda e, api: [Fault.rate_limited()],
        _retried(RateLimitError),
    ),
    *_status_scenarios(),
    Scenario(
        "truncated JSON with 200",
        "ResponseDecodeError, not retried (the server acted)",
        lambda e, api: [Fault(status=200, body=b'{"messaging_product": "whatsapp", "succ')],
        _once(ResponseDecodeError),
    ),
    Scenario(
        "JSON labelled text/plain",
        "ok: the body decides, not the label",
        lambda e, api: [Fault(content_type="text/plain")],
        _once(None),
    ),
    Scenario(
        "HTML page with 200",
        "ResponseDecodeError",
        lambda e, api: [Fault(status=200, body=HTML, content_type="text/html")],
        _once(ResponseDecodeError),
    ),
    Scenario(
        "oversized body (5 MiB, Content-Length)",
        "ResponseDecodeError before reading it",
        lambda e, api: [Fault(status=200, body=b"x" * BIG)],
        _once(ResponseDecodeError),
    ),
    Scenario(
        "oversized body (5 MiB, chunked)",
        "ResponseDecodeError once 4 MiB have arrived",
        lambda e, api: [Fault(status=200, body=b"x" * BIG, chunked=True)],
        _once(ResponseDecodeError),
    ),
    Scenario(
        "307 redirect to the same host",
        "followed once, ok; connect places one call",
        lambda e, api: [Fault(status=307, headers={"Location": e.path}, body=b"")],
        lambda e: Expect(None, 2),
        redirected=True,
    ),
    Scenario(
        "307 redirect to another host",
        "not followed: APIStatusError 307; the other host sees nothing",
        lambda e, api: [Fault(status=307, body=b"")],  # Location is set per case (other_host)
        _once(APIStatusError),
        other_host=True,
    ),
    Scenario(
        "server closed the idle keep-alive connection",
        "ok on a fresh connection",
        lambda e, api: [],
        lambda e: Expect(None, 1),
        idle_first=True,
    ),
]


@dataclass
class Result:
    scenario: str
    endpoint: str
    kind: str
    outcome: str  # "ok" or the error's class name
    server_requests: int
    client_attempts: int
    seconds: float
    connects_received: int
    calls_placed: int
    other_host_requests: int = 0
    waits: list[float] = field(default_factory=list)  # the delays the client asked to sleep
    problems: list[str] = field(default_factory=list)


class RecordingSleep:
    """A retry policy's ``sleep`` that records each delay it is asked for and returns at once
    (after one turn of the loop, as any sleep yields), so no case waits for real."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        await asyncio.sleep(0)


class _AttemptCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.attempts = 0

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "d360_attempt"):
            self.attempts += 1


def _client_options(base_url: str, api_key: str, sleep: RecordingSleep) -> dict[str, Any]:
    return {
        "api_key": api_key,
        "base_url": base_url,
        "timeout": TIMEOUT,
        "connect_timeout": TIMEOUT,
        "max_retries": RETRIES,
        "retry_policy": attrs.evolve(POLICY, sleep=sleep),
    }


def _call(
    kind: str, endpoint: Endpoint, options: dict[str, Any], call_id: str, idle_first: bool
) -> Any:
    if kind == "sync":
        with Client(**options) as client:
            if idle_first:
                client.get_settings()
                time.sleep(IDLE_WAIT)
            return endpoint.call(client, call_id)

    async def run() -> Any:
        async with AsyncClient(**options) as client:
            if idle_first:
                await client.get_settings()
                await asyncio.sleep(IDLE_WAIT)
            return await endpoint.call(client, call_id)

    return asyncio.run(run())


def run_case(scenario: Scenario, endpoint: Endpoint, kind: str) -> Result:
    fake = FakeCallingAPI(keepalive_timeout=KEEPALIVE) if scenario.idle_first else FakeCallingAPI()
    with fake as api, FakeCallingAPI() as other:
        call_id = endpoint.setup(api)
        base_url = f"http://127.0.0.1:{closed_port()}" if scenario.refused else api.url
        for fault in scenario.faults(endpoint, api):
            if scenario.other_host:
                headers = {**fault.headers, "Location": other.url + endpoint.path}
                fault = Fault(status=fault.status, body=fault.body, headers=headers)
            api.inject(fault, method=endpoint.method, path=endpoint.path)
        before = len(api.requests_to(endpoint.method, endpoint.path))
        calls_before = len(api.calls)
        counter, sleep = _AttemptCounter(), RecordingSleep()
        logger = logging.getLogger("d360calling")
        logger.addHandler(counter)
        old_level = logger.level
        logger.setLevel(logging.DEBUG)
        started = time.monotonic()
        try:
            options = _client_options(base_url, api.api_key, sleep)
            _call(kind, endpoint, options, call_id, scenario.idle_first)
            outcome = "ok"
        except D360Error as exc:
            outcome = type(exc).__name__
        finally:
            seconds = time.monotonic() - started
            logger.removeHandler(counter)
            logger.setLevel(old_level)
        attempts = counter.attempts - (1 if scenario.idle_first else 0)
        server = len(api.requests_to(endpoint.method, endpoint.path)) - before
        if (
            scenario.idle_first
            and endpoint.path == "/calling/settings"
            and endpoint.method == "GET"
        ):
            server -= 1
        return Result(
            scenario=scenario.name,
            endpoint=endpoint.name,
            kind=kind,
            outcome=outcome,
            server_requests=server,
            client_attempts=attempts,
            seconds=seconds,
            connects_received=len(api.call_actions("connect")),
            calls_placed=len(api.calls) - calls_before if endpoint.name == "connect" else 0,
            other_host_requests=len(other.requests),
            waits=list(sleep.asked),
        )


def check(scenario: Scenario, endpoint: Endpoint, result: Result) -> list[str]:
    """What the result gets wrong against the scenario's expectation (empty: nothing)."""
    expect = scenario.expect(endpoint)
    problems = []
    wanted = "ok" if expect.error is None else expect.error.__name__
    if result.outcome != wanted and not (
        expect.error is not None and _is_subclass(result.outcome, expect.error)
    ):
        problems.append(f"outcome {result.outcome}, expected {wanted}")
    if result.server_requests != expect.server_requests:
        problems.append(
            f"{result.server_requests} requests reached the server, "
            f"expected {expect.server_requests}"
        )
    if scenario.refused and result.client_attempts != RETRIES + 1:
        problems.append(f"{result.client_attempts} attempts, expected {RETRIES + 1}")
    if not (scenario.refused or scenario.redirected) and (
        result.client_attempts != result.server_requests
    ):
        # Each attempt the client logs is exactly one request: no re-send behind its back.
        problems.append(
            f"{result.server_requests} requests reached the server for "
            f"{result.client_attempts} logged attempts"
        )
    if not expect.min_seconds <= result.seconds <= expect.seconds:
        problems.append(
            f"took {result.seconds:.2f} s, expected {expect.min_seconds:g}-{expect.seconds:g} s"
        )
    retries = max(result.client_attempts - 1, 0)
    if len(result.waits) != retries:
        problems.append(f"asked to wait {len(result.waits)} times for {retries} retries")
    low, high = expect.waits
    wrong = [w for w in result.waits if not low <= w <= high]
    if wrong:
        problems.append(
            f"asked to wait {', '.join(f'{w:g}' for w in wrong)} s, expected {low:g}-{high:g} s"
        )
    if endpoint.name == "connect" and scenario.redirected and result.calls_placed != 1:
        problems.append(f"{result.calls_placed} calls placed after the redirect, expected 1")
    if result.connects_received > (2 if scenario.redirected else 1):
        problems.append(f"connect reached the server {result.connects_received} times")
    if result.calls_placed > 1:
        problems.append(f"{result.calls_placed} calls placed")
    if result.other_host_requests:
        problems.append(f"the other host received {result.other_host_requests} requests")
    return problems


def _is_subclass(name: str, cls: type) -> bool:
    import d360calling

    found = getattr(d360calling, name, None) or getattr(d360calling.errors, name, None)
    return isinstance(found, type) and issubclass(found, cls)


def cases() -> list[tuple[Scenario, Endpoint, str]]:
    return [
        (s, e, kind)
        for s in SCENARIOS
        for e in ENDPOINTS
        if s.applies(e)
        for kind in ("async", "sync")
    ]


def update_report(path: Path, name: str, text: str) -> None:
    """Replace what lies between ``<!-- name:start -->`` and ``<!-- name:end -->`` in ``path``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    head, found, rest = path.read_text().partition(start)
    _, found_end, tail = rest.partition(end)
    if not (found and found_end):
        raise SystemExit(f"{path} has no {start} ... {end} markers")
    path.write_text(f"{head}{start}\n{text}{end}{tail}")


def _waits(waits: Sequence[float]) -> str:
    if not waits:
        return "none"
    low, high = min(waits), max(waits)
    return f"{low:.2g} s" if low == high else f"{low:.2g}-{high:.2g} s"


def _label(endpoint: Endpoint, full: bool) -> str:
    return endpoint.name if full or endpoint.name == "connect" else "others"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fault_matrix", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--full", action="store_true", help="name every endpoint's outcome")
    parser.add_argument(
        "--report",
        type=Path,
        nargs="?",
        const=RELIABILITY,
        metavar="PATH",
        help=f"if every case passes, write the table into PATH ({RELIABILITY.relative_to(ROOT)})",
    )
    args = parser.parse_args(argv)
    rows: dict[str, list[tuple[Endpoint, Result]]] = {}
    failures = 0
    for scenario, endpoint, kind in cases():
        result = run_case(scenario, endpoint, kind)
        result.problems = check(scenario, endpoint, result)
        failures += bool(result.problems)
        rows.setdefault(scenario.name, []).append((endpoint, result))
    lines = [
        "| scenario | expected | observed | requests to server | waits asked | time "
        "| cases passed |",
        "|---|---|---|---|---|---:|---:|",
    ]
    for scenario in SCENARIOS:
        results = rows.get(scenario.name, [])
        observed = sorted({f"{_label(e, args.full)}: {r.outcome}" for e, r in results})
        requests = sorted({r.server_requests for _, r in results})
        passed = sum(not r.problems for _, r in results)
        worst = max(r.seconds for _, r in results)
        lines.append(
            f"| {scenario.name} | {scenario.expected} | {'; '.join(observed)} | "
            f"{'/'.join(map(str, requests))} | {_waits([w for _, r in results for w in r.waits])} "
            f"| ≤ {worst:.2f} s | {passed}/{len(results)} |"
        )
    table = "\n".join(lines) + "\n"
    print(table, end="")
    if args.report and not failures:
        update_report(args.report, "fault-matrix", table)
        print(f"wrote {args.report}", file=sys.stderr)
    for name, results in rows.items():
        for endpoint, r in results:
            for problem in r.problems:
                print(f"FAILED {name} / {endpoint.name} / {r.kind}: {problem}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
