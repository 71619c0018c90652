"""The fake API attacked as a hostile (or just sloppy) client would: every malformed body and
path gets the 400 the real API gives, never a 500; what the fake keeps is bounded in count
and bytes; a receiver that stalls or misbehaves cannot hang the webhook sender; and the API
key and the webhook secrets show up in no log line or repr. All traffic stays on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import logging
import socket
import subprocess
import sys
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from d360calling import NoCallPermissionError
from d360calling.testing import (
    DEFAULT_MAX_RECORDED_BYTES,
    DEFAULT_MAX_RECORDED_CALLS,
    DEFAULT_MAX_RECORDED_WEBHOOKS,
    MAX_REQUEST_BYTES,
    FakeCallingAPI,
    Fault,
    RecordLog,
    ScenarioError,
    sample_answer,
    sample_offer,
    serve,
)
from d360calling.testing import _calls as fake_calls
from d360calling.testing._jsonbody import MAX_DEPTH
from d360calling.testing._permissions import DAY, Permissions

from .helpers import USER, WebhookSink

OTHER = "4915100000009"
JSON = {"Content-Type": "application/json"}


# -- talking to a fake in a thread, with nothing in between -----------------------------


def send(
    fake: FakeCallingAPI,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One request on a fresh loopback connection: (status, JSON answer or raw bytes)."""
    sent = {"D360-API-KEY": fake.api_key, **JSON, **(headers or {})}
    connection = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw


def assert_invalid_parameter(status: int, answer: Any) -> str:
    """The fake's answer to invalid input: 400 with Meta's error 100; returns its details."""
    assert status == 400, answer
    assert answer["error"]["code"] == 100
    assert answer["error"]["type"] == "OAuthException"
    details = answer["error"]["error_data"]["details"]
    assert isinstance(details, str)
    return details


@pytest.fixture(scope="module")
def shared_fake() -> Iterator[FakeCallingAPI]:
    """One fake for the many stateless probes (a fresh one each would cost a thread)."""
    with FakeCallingAPI() as fake:
        fake.grant_permission(USER, notify=False)
        yield fake


@pytest.fixture
def fake() -> Iterator[FakeCallingAPI]:
    with FakeCallingAPI() as server:
        server.grant_permission(USER, notify=False)
        yield server


@pytest.fixture
def no_server_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fails the test if aiohttp logged a handler error (what a 500 from a crash logs)."""
    caplog.set_level(logging.ERROR, logger="aiohttp")
    yield
    crashes = [r for r in caplog.records if r.name.startswith("aiohttp") and r.exc_info]
    assert crashes == []


# -- malformed bodies -------------------------------------------------------------------

DEEP = 10_000
MALFORMED: dict[str, bytes] = {
    "a list": b"[1]",
    "a string": b'"x"',
    "a number": b"1",
    "null": b"null",
    "true": b"true",
    "nothing": b"",
    "cut short": b'{"action":',
    "arrays 10,000 deep": b"[" * DEEP + b"]" * DEEP,
    "objects 10,000 deep": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "one level too deep": b'{"a":' * MAX_DEPTH + b"[]" + b"}" * MAX_DEPTH,
    "action a list": b'{"action": [1]}',
    "action an object": b'{"action": {"x": 1}}',
    "not UTF-8": b'{"action": "\xff\xfe"}',
    "a UTF-8 BOM": b'\xef\xbb\xbf{"action": "connect"}',
    "UTF-16": '{"action": "connect"}'.encode("utf-16"),
    "NaN": b"NaN",
    "NaN in a field": b'{"action": "connect", "to": NaN}',
    "-Infinity": b'{"a": -Infinity}',
    "1e400": b'{"a": 1e400}',
    "a 5,000-digit integer": b'{"a": ' + b"9" * 5000 + b"}",
    "a 20-digit integer": b'{"a": 99999999999999999999}',
    "a lone surrogate": b'{"action": "\\ud800"}',
    "a lone surrogate key": b'{"\\udc00": 1}',
}
BODY_ROUTES = [
    "/calling/calls",
    "/calling/settings",
    "/messages",
    "/_fake/calls",
    f"/_fake/permissions/{OTHER}",
    f"/_fake/permissions/{OTHER}/grant",
    "/_fake/calls/wacid.nothing/answer",
    "/_fake/calls/wacid.nothing/ring-out",
    "/_fake/users",
    "/_fake/messages",
    "/_fake/messages/wamid.nothing/press",
    "/_fake/templates",
]
OPTIONAL_BODY = {
    f"/_fake/permissions/{OTHER}",
    f"/_fake/permissions/{OTHER}/grant",
    "/_fake/calls/wacid.nothing/answer",
    "/_fake/calls/wacid.nothing/ring-out",
    "/_fake/messages/wamid.nothing/press",
}


@pytest.mark.parametrize("route", BODY_ROUTES)
@pytest.mark.parametrize("name", list(MALFORMED))
@pytest.mark.usefixtures("no_server_errors")
def test_a_malformed_body_is_a_400_never_a_500(
    shared_fake: FakeCallingAPI, route: str, name: str
) -> None:
    if name == "nothing" and route in OPTIONAL_BODY:
        pytest.skip("the body is optional here")
    assert_invalid_parameter(*send(shared_fake, "POST", route, MALFORMED[name]))


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"[" * DEEP + b"]" * DEEP, f"nested deeper than {MAX_DEPTH} levels"),
        (b"[" * 100 + b"]" * 100, f"nested deeper than {MAX_DEPTH} levels"),
        (b'{"action": "\xff"}', "not UTF-8"),
        (b"NaN", "NaN is not a JSON number"),
        (b'{"a": 1e400}', "out of range"),
        (b'{"a": ' + b"9" * 5000 + b"}", "out of 64-bit range"),
        (b'{"a": "\\ud800"}', "lone UTF-16 surrogate"),
    ],
)
def test_the_400_says_what_is_wrong_with_the_json(
    shared_fake: FakeCallingAPI, body: bytes, fragment: str
) -> None:
    details = assert_invalid_parameter(*send(shared_fake, "POST", "/calling/calls", body))
    assert fragment in details


def test_the_deepest_accepted_body_still_reaches_the_contract(shared_fake: FakeCallingAPI) -> None:
    body = b'{"a":' * (MAX_DEPTH - 1) + b"[]" + b"}" * (MAX_DEPTH - 1)
    details = assert_invalid_parameter(*send(shared_fake, "POST", "/calling/calls", body))
    assert "nested deeper" not in details
    assert "messaging_product: is required" in details


_BLOCK_ORJSON = """
import http.client, sys
sys.modules["orjson"] = None  # as on an install without the speedups extra
from d360calling.testing import FakeCallingAPI
with FakeCallingAPI() as fake:
    for body in (b"[" * 10_000 + b"]" * 10_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000):
        connection = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=30)
        connection.request("POST", "/calling/calls", body=body, headers={
            "D360-API-KEY": fake.api_key, "Content-Type": "application/json"})
        print(connection.getresponse().status)
        connection.close()
"""


def test_deep_nesting_is_a_400_without_orjson_too() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _BLOCK_ORJSON], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["400", "400"]
    assert "Traceback" not in done.stderr


def test_a_deep_body_recorded_reads_as_a_value_error(shared_fake: FakeCallingAPI) -> None:
    shared_fake.requests.clear()
    send(shared_fake, "POST", "/calling/calls", MALFORMED["arrays 10,000 deep"])
    (recorded,) = shared_fake.requests
    with pytest.raises(ValueError, match="nested deeper"):
        _ = recorded.json
    assert shared_fake.call_actions() == []  # skipped, not a RecursionError


@pytest.mark.usefixtures("no_server_errors")
def test_a_deep_body_is_a_400_while_faults_are_injected(fake: FakeCallingAPI) -> None:
    # With a fault waiting, the handler reads the body's action to match it.
    (waiting,) = fake.inject(Fault(status=503), action="accept")
    for body in (MALFORMED["arrays 10,000 deep"], b"[1]", b'{"action": ["accept"]}'):
        assert_invalid_parameter(*send(fake, "POST", "/calling/calls", body))
    assert waiting.hits == 0  # none of them was an accept


# -- wrong types for every field of every route -----------------------------------------

NOT_A_STRING: list[Any] = [1, 1.5, True, None, [], {}, ["x"], {"x": "y"}]
NOT_AN_INTEGER: list[Any] = ["5061", 1.5, True, None, [], {}]
NOT_A_BOOLEAN: list[Any] = ["true", 1, None, [], {}]


def _set(body: Any, where: tuple[str | int, ...], value: Any) -> Any:
    out = json.loads(json.dumps(body))
    target = out
    for part in where[:-1]:
        target = target[part]
    target[where[-1]] = value
    return out


def _templates(
    fake: FakeCallingAPI,
) -> dict[str, tuple[str, Any, dict[tuple[Any, ...], list[Any]]]]:
    """Per case: (path, a body the fake accepts, {field: values of a wrong type})."""
    inbound = fake.user_calls(OTHER).id
    fake.grant_permission("4915100000077", notify=False)
    with fake.client(max_retries=0) as client:
        outbound = client.connect_call(USER, sample_offer()).call_id
    session = ("session", "sdp_type"), ("session", "sdp")
    sip_server = ("calling", "sip", "servers", 0)
    return {
        "connect": (
            "/calling/calls",
            {
                "messaging_product": "whatsapp",
                "action": "connect",
                "to": "4915100000077",
                "session": {"sdp_type": "offer", "sdp": sample_offer()},
                "biz_opaque_callback_data": "order-1",
                "recording": {"status": "ENABLED", "purpose": "quality"},
                "transcription": {"status": "DISABLED", "announcement_language": "en_US"},
            },
            {
                ("messaging_product",): NOT_A_STRING,
                ("action",): NOT_A_STRING,
                ("to",): NOT_A_STRING,
                ("session",): [1, "x", [], None],
                **dict.fromkeys(session, NOT_A_STRING),
                ("biz_opaque_callback_data",): NOT_A_STRING,
                ("recording",): [1, "x", [], None],
                ("recording", "status"): NOT_A_STRING,
                ("recording", "purpose"): NOT_A_STRING,
                ("transcription", "announcement_language"): NOT_A_STRING,
            },
        ),
        "accept": (
            "/calling/calls",
            {
                "messaging_product": "whatsapp",
                "action": "accept",
                "call_id": inbound,
                "session": {"sdp_type": "answer", "sdp": sample_answer(inbound)},
            },
            {("call_id",): NOT_A_STRING, **dict.fromkeys(session, NOT_A_STRING)},
        ),
        "call hours": (
            "/calling/settings",
            {
                "calling": {
                    "call_hours": {
                        "status": "ENABLED",
                        "timezone_id": "Europe/Berlin",
                        "weekly_operating_hours": [
                            {"day_of_week": "MONDAY", "open_time": "0900", "close_time": "1700"}
                        ],
                        "holiday_schedule": [
                            {"date": "2999-12-24", "start_time": "0000", "end_time": "2359"}
                        ],
                    }
                }
            },
            {
                ("calling",): [1, "x", [], None],
                ("calling", "call_hours", "status"): NOT_A_STRING,
                ("calling", "call_hours", "timezone_id"): NOT_A_STRING,
                ("calling", "call_hours", "weekly_operating_hours"): [1, "x", {}, None],
                ("calling", "call_hours", "weekly_operating_hours", 0, "open_time"): NOT_A_STRING,
                ("calling", "call_hours", "holiday_schedule", 0, "date"): NOT_A_STRING,
            },
        ),
        "sip": (
            "/calling/settings",
            {
                "calling": {
                    "sip": {
                        "status": "DISABLED",
                        "servers": [
                            {
                                "hostname": "sip.example.com",
                                "port": 5061,
                                "request_uri_user_params": {"tgrp": "a"},
                            }
                        ],
                    }
                }
            },
            {
                ("calling", "sip", "status"): NOT_A_STRING,
                ("calling", "sip", "servers"): [1, "x", {}, None],
                (*sip_server, "hostname"): NOT_A_STRING,
                (*sip_server, "port"): NOT_AN_INTEGER,
                (*sip_server, "request_uri_user_params", "tgrp"): NOT_A_STRING,
            },
        ),
        "permission request": (
            "/messages",
            {
                "messaging_product": "whatsapp",
                "to": "4915100000078",
                "type": "interactive",
                "interactive": {
                    "type": "call_permission_request",
                    "action": {"name": "call_permission_request"},
                    "body": {"text": "May we call you?"},
                },
            },
            {
                ("messaging_product",): NOT_A_STRING,
                ("to",): NOT_A_STRING,
                ("type",): NOT_A_STRING,
                ("interactive",): [1, "x", [], None],
                ("interactive", "type"): NOT_A_STRING,
                ("interactive", "action"): [1, "x", [], None],
                ("interactive", "action", "name"): NOT_A_STRING,
                ("interactive", "body", "text"): NOT_A_STRING,
            },
        ),
        "call button": (
            "/messages",
            {
                "messaging_product": "whatsapp",
                "recipient": "US.13491208655302741918",
                "type": "interactive",
                "interactive": {
                    "type": "voice_call",
                    "body": {"text": "Call us"},
                    "action": {
                        "name": "voice_call",
                        "parameters": {"display_text": "Call", "ttl_minutes": 60, "payload": "p"},
                    },
                },
            },
            {
                ("recipient",): NOT_A_STRING,
                ("interactive", "body"): [1, "x", [], None],
                ("interactive", "action", "parameters"): [1, "x", [], None],
                ("interactive", "action", "parameters", "display_text"): NOT_A_STRING,
                ("interactive", "action", "parameters", "ttl_minutes"): NOT_AN_INTEGER,
                ("interactive", "action", "parameters", "payload"): NOT_A_STRING,
            },
        ),
        "template": (
            "/messages",
            {
                "messaging_product": "whatsapp",
                "to": "4915100000076",
                "type": "template",
                "template": {
                    "name": "call_request",
                    "language": {"code": "en_US"},
                    "components": [
                        {"type": "BODY", "parameters": [{"type": "text", "text": "Al"}]},
                        {"type": "call_permission_request"},
                    ],
                },
            },
            {
                ("template",): [1, "x", [], None],
                ("template", "name"): NOT_A_STRING,
                ("template", "language"): [1, "x", [], None],
                ("template", "language", "code"): NOT_A_STRING,
                ("template", "components"): [1, "x", {}, None],
                ("template", "components", 0, "type"): NOT_A_STRING,
                ("template", "components", 0, "parameters"): [1, "x", {}, None],
                ("template", "components", 0, "parameters", 0, "type"): NOT_A_STRING,
                ("template", "components", 0, "parameters", 0, "text"): NOT_A_STRING,
            },
        ),
        "a user calls in": (
            "/_fake/calls",
            {"from": "4915100000079", "sdp": sample_offer(), "name": "Al", "deeplink_payload": "p"},
            {
                ("from",): NOT_A_STRING,
                ("sdp",): [x for x in NOT_A_STRING if x is not None],
                ("name",): [x for x in NOT_A_STRING if x is not None],
                ("deeplink_payload",): [x for x in NOT_A_STRING if x is not None],
            },
        ),
        "the user answers": (
            f"/_fake/calls/{outbound}/answer",
            {"sdp": sample_answer(outbound)},
            {("sdp",): [x for x in NOT_A_STRING if x is not None]},
        ),
        "the user allows calls": (
            f"/_fake/permissions/{OTHER}",
            {"permanent": True},
            {("permanent",): NOT_A_BOOLEAN},
        ),
        "the user writes": (
            "/_fake/messages",
            {"from": "4915100000075", "text": "hello"},
            {("from",): NOT_A_STRING, ("text",): NOT_A_STRING},
        ),
        "a user is added": (
            "/_fake/users",
            {"user": "US.1", "name": "Bo", "old_client": True},
            {
                ("user",): NOT_A_STRING,
                ("name",): [x for x in NOT_A_STRING if x is not None],
                ("old_client",): NOT_A_BOOLEAN,
            },
        ),
        "a template is added": (
            "/_fake/templates",
            {
                "name": "t",
                "body_text": "Hi {{1}}",
                "language": "en",
                "category": "MARKETING",
                "call_permission_request": True,
            },
            {
                ("name",): NOT_A_STRING,
                ("body_text",): NOT_A_STRING,
                ("category",): NOT_A_STRING,
                ("call_permission_request",): NOT_A_BOOLEAN,
            },
        ),
    }


CASES = [
    "connect",
    "accept",
    "call hours",
    "sip",
    "permission request",
    "call button",
    "template",
    "a user calls in",
    "the user answers",
    "the user allows calls",
    "the user writes",
    "a user is added",
    "a template is added",
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.usefixtures("no_server_errors")
def test_a_wrong_type_in_any_field_is_a_400_naming_it(fake: FakeCallingAPI, case: str) -> None:
    path, valid, wrong = _templates(fake)[case]
    for where, values in wrong.items():
        for value in values:
            details = assert_invalid_parameter(
                *send(fake, "POST", path, json.dumps(_set(valid, where, value)).encode())
            )
            named = [str(p) for p in where if isinstance(p, str)][-1]
            assert named in details, (where, value, details)
    if path != "/messages":  # the general messages endpoint takes many more fields
        unknown = {**valid, "surprise": 1}
        assert "surprise" in assert_invalid_parameter(
            *send(fake, "POST", path, json.dumps(unknown).encode())
        )
    # The template itself is fine: the 400s were the fields' doing.
    status, answer = send(fake, "POST", path, json.dumps(valid).encode())
    assert status == 200, answer


@pytest.mark.usefixtures("no_server_errors")
def test_control_routes_refuse_what_the_python_api_would_not_make(fake: FakeCallingAPI) -> None:
    for path, body in [
        ("/_fake/calls", {"from": "abc"}),
        ("/_fake/calls", {"from": f"{OTHER}\n"}),
        ("/_fake/calls", {"from": OTHER, "name": "\ud800"}),
        ("/_fake/calls", {}),
        ("/_fake/permissions/abc", {}),
        ("/_fake/permissions/", {}),
        (f"/_fake/permissions/{OTHER}", {"permanent": "yes"}),
        ("/_fake/calls/wacid.x/hangup", {"please": True}),
        ("/_fake/calls/wacid.x/decline", [1]),
    ]:
        assert_invalid_parameter(*send(fake, "POST", path, json.dumps(body).encode()))
    assert fake.calls.keys() == set()
    status, _ = send(fake, "GET", "/calling/permissions/abc")
    assert status == 400


@pytest.mark.parametrize(
    "user",
    [
        "",
        "abc",
        "+",
        "1" * 16,
        "12345",
        "\u0661\u0662\u0663\u0664\u0665\u0666\u0667",  # Arabic-Indic digits are not [0-9]
        f"{USER}\n",
        f"{USER}/extra",
        "\x00",
        "\udcff",
    ],
)
@pytest.mark.usefixtures("no_server_errors")
def test_odd_permission_paths_are_a_400(shared_fake: FakeCallingAPI, user: str) -> None:
    path = "/calling/permissions/" + urllib.parse.quote(user, safe="/", errors="surrogateescape")
    details = assert_invalid_parameter(*send(shared_fake, "GET", path))
    assert "consumer_whatsapp_id" in details


@pytest.mark.usefixtures("no_server_errors")
def test_a_permission_read_with_the_right_id_works(fake: FakeCallingAPI) -> None:
    status, answer = send(fake, "GET", f"/calling/permissions/{USER}")
    assert (status, answer["permission"]["status"]) == (200, "temporary")


@pytest.mark.parametrize("value", ["maybe", "1", "", "%ff"])
def test_a_non_boolean_query_flag_is_a_400(shared_fake: FakeCallingAPI, value: str) -> None:
    path = f"/calling/settings?include_sip_credentials={value}"
    assert "include_sip_credentials" in assert_invalid_parameter(*send(shared_fake, "GET", path))
    assert send(shared_fake, "GET", "/calling/settings?include_sip_credentials=TRUE")[0] == 200


# -- the property: nothing a client sends is a 500 --------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and Infinity too: json.dumps writes them
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
# Bodies shaped like the real ones, with any value in any field: they get past the first
# checks and reach the deeper ones.
shaped = st.fixed_dictionaries(
    {},
    optional={
        "messaging_product": st.just("whatsapp") | json_values,
        "action": st.sampled_from(["connect", "pre_accept", "accept", "reject", "terminate"])
        | json_values,
        "to": st.just(USER) | json_values,
        "recipient": json_values,
        "call_id": st.just("wacid.x") | json_values,
        "session": st.fixed_dictionaries(
            {"sdp_type": st.sampled_from(["offer", "answer"]) | json_values},
            optional={"sdp": st.sampled_from([sample_offer(), sample_answer()]) | json_values},
        )
        | json_values,
        "calling": st.dictionaries(
            st.sampled_from(["status", "call_hours", "sip", "voicemail", "audio", "call_icons"]),
            json_values,
            max_size=2,
        )
        | json_values,
        "type": st.sampled_from(["interactive", "template"]) | json_values,
        "interactive": st.fixed_dictionaries(
            {"type": st.sampled_from(["call_permission_request", "voice_call"]) | json_values},
            optional={
                "action": st.fixed_dictionaries(
                    {"name": st.sampled_from(["call_permission_request", "voice_call"])},
                    optional={"parameters": json_values},
                )
                | json_values,
                "body": json_values,
            },
        )
        | json_values,
        "template": st.fixed_dictionaries(
            {"name": st.just("t") | json_values, "language": st.just({"code": "en"}) | json_values},
            optional={"components": json_values},
        )
        | json_values,
        "recording": json_values,
        "text": json_values,
        "user": st.just("US.1") | json_values,
        "old_client": json_values,
        "body_text": json_values,
        "from": st.just(OTHER) | json_values,
        "sdp": json_values,
        "name": json_values,
        "permanent": json_values,
    },
)
routes = st.sampled_from(BODY_ROUTES)


# Now and then nested past any limit (the stdlib parser gives up at about 1,000 levels).
depths = st.sampled_from([0, MAX_DEPTH - 2, MAX_DEPTH, 10_000])
deep_bytes = st.integers(MAX_DEPTH - 2, 20_000).map(lambda n: b"[" * n + b"]" * n)


def _assert_handled(status: int, answer: Any) -> None:
    assert status < 500, answer
    if status >= 400:
        assert isinstance(answer, dict), answer
        assert "error" in answer, answer


@given(route=routes, value=json_values | shaped, depth=depths)
def test_no_json_value_makes_a_500(
    shared_fake: FakeCallingAPI, route: str, value: Any, depth: int
) -> None:
    body = b"[" * depth + json.dumps(value).encode() + b"]" * depth  # json.dumps would recurse
    _assert_handled(*send(shared_fake, "POST", route, body))


@given(route=routes, body=st.binary(max_size=64) | deep_bytes)
def test_no_bytes_make_a_500(shared_fake: FakeCallingAPI, route: str, body: bytes) -> None:
    _assert_handled(*send(shared_fake, "POST", route, body))


@given(user=st.text(max_size=30), flag=st.text(max_size=5))
def test_no_path_or_query_makes_a_500(shared_fake: FakeCallingAPI, user: str, flag: str) -> None:
    quoted = urllib.parse.quote(user, safe="", errors="surrogateescape")
    _assert_handled(*send(shared_fake, "GET", f"/calling/permissions/{quoted}"))
    query = urllib.parse.urlencode({"include_sip_credentials": flag})
    _assert_handled(*send(shared_fake, "GET", f"/calling/settings?{query}"))


def test_a_bug_in_the_fake_still_shows_as_a_500(
    fake: FakeCallingAPI, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Bad input is validated, not caught: an exception of the fake's own is not a 400."""

    def broken(body: Any) -> Any:
        raise RuntimeError("a bug in the fake")

    monkeypatch.setattr(fake._world, "call_action", broken)
    caplog.set_level(logging.ERROR, logger="aiohttp")
    body = {"messaging_product": "whatsapp", "action": "terminate", "call_id": "wacid.x"}
    status, _ = send(fake, "POST", "/calling/calls", json.dumps(body).encode())
    assert status == 500
    assert any(r.exc_info and "a bug in the fake" in str(r.exc_info[1]) for r in caplog.records)


# -- request size ------------------------------------------------------------------------


def test_the_body_limit_is_aiohttps_default_one_mib(fake: FakeCallingAPI) -> None:
    assert MAX_REQUEST_BYTES == 1024 * 1024
    at_limit = b" " * (MAX_REQUEST_BYTES - 2) + b"[]"
    assert_invalid_parameter(*send(fake, "POST", "/calling/calls", at_limit))
    status, answer = send(fake, "POST", "/calling/calls", at_limit + b" ")
    assert (status, answer) == (
        413,
        {"error": f"Request body larger than {MAX_REQUEST_BYTES} bytes"},
    )
    assert fake.requests[-1].body == b""  # recorded, but the refused body is not kept


def test_a_huge_declared_body_is_refused_before_it_is_sent(fake: FakeCallingAPI) -> None:
    with socket.create_connection(("127.0.0.1", fake.port), timeout=10) as sock:
        sock.sendall(
            b"POST /calling/calls HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n{"
        )
        response = http.client.HTTPResponse(sock)
        response.begin()  # the answer comes now, without the other 10 GB
        assert (response.status, response.getheader("Connection")) == (413, "close")
        expected = {"error": f"Request body larger than {MAX_REQUEST_BYTES} bytes"}
        assert json.loads(response.read()) == expected


@pytest.mark.asyncio
async def test_a_chunked_or_compressed_body_is_cut_off_at_the_limit() -> None:
    async def endless() -> AsyncIterator[bytes]:
        for _ in range(10_000):  # 640 MiB if the fake read it all; it stops after 1 MiB
            yield b" " * 65536

    bomb = gzip.compress(b" " * (4 * MAX_REQUEST_BYTES))  # 4 MiB that travel as 4 kB
    async with FakeCallingAPI() as fake, aiohttp.ClientSession() as session:
        headers = {"D360-API-KEY": fake.api_key, **JSON}
        async with session.post(
            fake.url + "/calling/calls", data=endless(), headers=headers
        ) as response:
            assert response.status == 413
        async with session.post(
            fake.url + "/calling/calls",
            data=bomb,
            headers={**headers, "Content-Encoding": "gzip"},
        ) as response:
            assert response.status == 413
    assert len(bomb) < 10_000


# -- what the fake keeps is bounded -----------------------------------------------------


def test_the_request_log_is_bounded_in_bytes_too() -> None:
    body = b" " * (MAX_REQUEST_BYTES - 2) + b"{}"
    with FakeCallingAPI(max_recorded_bytes=3 * MAX_REQUEST_BYTES) as fake:
        for _ in range(6):
            send(fake, "POST", "/calling/calls", body)
        log = fake.requests
        assert log.max_bytes == 3 * MAX_REQUEST_BYTES
        assert log.bytes <= 3 * MAX_REQUEST_BYTES
        assert (len(log), log.dropped) == (2, 4)  # each holds its headers too
        assert all(r.body == body for r in log)  # a kept body is kept whole
    assert FakeCallingAPI().requests.max_bytes == DEFAULT_MAX_RECORDED_BYTES == 64 * 2**20


def test_a_record_log_keeps_the_newest_even_when_it_alone_is_over_the_bytes() -> None:
    class Sized(RecordLog[bytes]):
        def _size(self, item: bytes) -> int:
            return len(item)

    log = Sized(maxlen=None, max_bytes=10)
    for item in (b"aaaa", b"bbbb", b"cc"):
        log.append(item)
    assert (log == [b"aaaa", b"bbbb", b"cc"], log.bytes) == (True, 10)
    log.append(b"d")
    assert (list(log), log.dropped) == ([b"bbbb", b"cc", b"d"], 1)
    log.append(b"x" * 50)
    assert (list(log), log.bytes, log.dropped) == ([b"x" * 50], 50, 4)
    with pytest.raises(ValueError, match="max_recorded_bytes"):
        Sized(maxlen=None, max_bytes=0)


def test_the_webhook_log_keeps_the_newest_and_counts_the_dropped() -> None:
    assert FakeCallingAPI().webhooks.maxlen == DEFAULT_MAX_RECORDED_WEBHOOKS == 10_000
    with FakeCallingAPI(max_recorded_webhooks=3) as fake:
        calls = [fake.user_calls(f"49151000001{i:02d}") for i in range(5)]
        log = fake.webhooks
        assert (len(log), log.maxlen, log.dropped) == (3, 3, 2)
        assert [w.value["calls"][0]["id"] for w in log] == [c.id for c in calls[2:]]
        assert log == list(log)
        log.clear()
        assert (len(fake.webhooks), fake.webhooks.dropped) == (0, 0)
    with pytest.raises(ValueError, match="max_recorded_webhooks"):
        FakeCallingAPI(max_recorded_webhooks=0)


def test_the_webhook_log_is_bounded_in_bytes() -> None:
    with FakeCallingAPI(max_recorded_bytes=5000) as fake:
        for i in range(10):
            fake.user_calls(f"49151000002{i:02d}")  # about 1.5 kB each, with the SDP offer
        assert 0 < fake.webhooks.bytes <= 5000
        assert len(fake.webhooks) + fake.webhooks.dropped == 10
        assert fake.webhooks.dropped >= 6


def test_ended_calls_are_forgotten_oldest_first_active_ones_never() -> None:
    assert DEFAULT_MAX_RECORDED_CALLS == 10_000
    with FakeCallingAPI(max_recorded_calls=2) as fake, fake.client(max_retries=0) as client:
        going = fake.user_calls("4915100000100")
        ended = [fake.user_calls(f"49151000001{i:02d}") for i in range(1, 5)]
        for call in ended:
            fake.user_hangs_up(call.id)
        assert set(fake.calls) == {going.id, ended[2].id, ended[3].id}
        status, answer = send(
            fake,
            "POST",
            "/calling/calls",
            json.dumps(
                {"messaging_product": "whatsapp", "action": "reject", "call_id": ended[0].id}
            ).encode(),
        )
        assert "Invalid call_id" in assert_invalid_parameter(status, answer)
        client.reject_call(going.id)  # the old active call is still there
    with pytest.raises(ValueError, match="max_recorded_calls"):
        FakeCallingAPI(max_recorded_calls=0)


def test_ended_calls_are_bounded_in_bytes_too() -> None:
    sdp = sample_offer() + "a=x-padding:" + "p" * 9000 + "\r\n"
    with FakeCallingAPI(max_recorded_bytes=20_000) as fake:
        ended = [fake.user_calls(f"49151000007{i:02d}", sdp=sdp) for i in range(4)]
        for call in ended:
            fake.user_hangs_up(call.id)
        assert set(fake.calls) == {ended[2].id, ended[3].id}


@pytest.mark.usefixtures("no_server_errors")
def test_what_a_call_keeps_has_a_length_limit(fake: FakeCallingAPI) -> None:
    long_sdp = sample_offer() + "a=x-padding:" + "p" * 65536 + "\r\n"
    connect = {
        "messaging_product": "whatsapp",
        "action": "connect",
        "to": USER,
        "session": {"sdp_type": "offer", "sdp": long_sdp},
    }
    for path, body, fragment in [
        ("/calling/calls", connect, "session.sdp: is longer than 65536 characters"),
        ("/_fake/calls", {"from": OTHER, "sdp": long_sdp}, "sdp: is longer than 65536"),
        ("/_fake/calls", {"from": OTHER, "name": "n" * 1025}, "name: is longer than 1024"),
        ("/_fake/calls", {"from": OTHER, "deeplink_payload": "d" * 1025}, "deeplink_payload"),
        ("/_fake/calls", {"from": OTHER, "cta_payload": "c" * 513}, "cta_payload: is longer"),
        ("/_fake/messages", {"from": OTHER, "text": "t" * 4097}, "text: is longer than 4096"),
        ("/_fake/users", {"user": OTHER, "name": "n" * 1025}, "name: is longer than 1024"),
        ("/_fake/templates", {"name": "t", "body_text": "b" * 1025}, "body_text: is longer"),
    ]:
        details = assert_invalid_parameter(*send(fake, "POST", path, json.dumps(body).encode()))
        assert fragment in details
    assert fake.calls == {}


def test_a_call_keeps_only_its_newest_actions(
    fake: FakeCallingAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fake_calls, "MAX_RECORDED_ACTIONS", 3)
    call = fake.user_calls(OTHER)
    fake.user_hangs_up(call.id)
    body = {"messaging_product": "whatsapp", "action": "terminate", "call_id": call.id}
    for _ in range(5):  # a client retrying forever against an ended call
        assert send(fake, "POST", "/calling/calls", json.dumps(body).encode())[0] == 400
    assert fake.calls[call.id].actions == ["terminate"] * 3


def test_reading_permissions_stores_no_user(fake: FakeCallingAPI) -> None:
    users = fake._world.permissions.users
    before = set(users)
    for i in range(20):
        assert send(fake, "GET", f"/calling/permissions/49151000003{i:02d}")[0] == 200
    with fake.client(max_retries=0) as client:
        for i in range(5):  # refused: no permission, and nothing stored
            with pytest.raises(NoCallPermissionError):
                client.connect_call(f"49151000004{i:02d}", sample_offer())
    assert set(users) == before


def test_users_past_the_bound_are_forgotten_least_recently_seen_first(
    fake: FakeCallingAPI,
) -> None:
    fake._world.permissions.max_users = 3
    for i in range(5):
        fake.grant_permission(f"49151000005{i:02d}", notify=False)
    fake.grant_permission("4915100000502", notify=False)  # seen again: now the newest
    fake.grant_permission("4915100000599", notify=False)
    assert list(fake._world.permissions.users) == [
        "4915100000504",
        "4915100000502",
        "4915100000599",
    ]
    assert send(fake, "GET", "/calling/permissions/4915100000500")[1]["permission"] == {
        "status": "no_permission"
    }


def test_a_users_time_stamps_keep_only_what_a_limit_counts() -> None:
    permissions = Permissions(connected_call_limit=100, reads_per_second=100)
    user = permissions.user(USER, 0.0)
    for day in range(30):
        permissions.connected(user, day * DAY + 1.0)
    assert user.connected_calls == [29 * DAY + 1.0]


def _template_to(user: str, name: str = "call_request", language: str = "en_US") -> bytes:
    return json.dumps(
        {
            "messaging_product": "whatsapp",
            "to": user,
            "type": "template",
            "template": {"name": name, "language": {"code": language}},
        }
    ).encode()


def test_sent_messages_are_forgotten_oldest_first() -> None:
    with pytest.raises(ValueError, match="max_recorded_messages"):
        FakeCallingAPI(max_recorded_messages=0)
    with FakeCallingAPI(max_recorded_messages=2) as fake:
        sent = [
            send(fake, "POST", "/messages", _template_to(f"49151000008{i:02d}"))[1]
            for i in range(3)
        ]
        ids = [answer["messages"][0]["id"] for answer in sent]
        assert list(fake.messages) == ids[1:]


def test_sent_messages_are_bounded_in_bytes_too() -> None:
    with FakeCallingAPI(max_recorded_bytes=200) as fake:
        ids = [
            send(fake, "POST", "/messages", _template_to(f"49151000008{i:02d}", "t" * 60))[1][
                "messages"
            ][0]["id"]
            for i in range(3)
        ]
        assert list(fake.messages) == ids[-1:]  # each holds over 100 bytes


def test_templates_the_fake_keeps_are_bounded(fake: FakeCallingAPI) -> None:
    fake._world.templates.max_templates = 2
    fake.add_template("one", body_text="Hi")
    fake.add_template("two", body_text="Hi")
    fake.add_template("two", body_text="Hi again")  # a template told again replaces itself
    with pytest.raises(ValueError, match="at most 2 templates"):
        fake.add_template("three", body_text="Hi")
    status, answer = send(
        fake, "POST", "/_fake/templates", json.dumps({"name": "four", "body_text": "x"}).encode()
    )
    assert "at most 2 templates" in assert_invalid_parameter(status, answer)


def test_a_refused_message_stores_no_user(fake: FakeCallingAPI) -> None:
    fake.add_template("known", "de", body_text="Hallo")
    users = fake._world.permissions.users
    before = set(users)
    for i, body in enumerate(
        [
            _template_to("4915100000901", "known", "en"),  # 132001: not in that language
            _template_to("US.1"),  # a BSUID is no "to"
            json.dumps({"messaging_product": "whatsapp", "to": "4915100000902"}).encode(),
        ]
    ):
        status, _ = send(fake, "POST", "/messages", body)
        assert status in (400, 404), i
    assert set(users) == before
    assert fake.messages == {}


def test_a_forgotten_phone_user_takes_their_bsuid_along(fake: FakeCallingAPI) -> None:
    permissions = fake._world.permissions
    permissions.max_users = 2
    forgotten = fake.add_user("4915100000911").user_id
    fake.grant_permission("4915100000911", notify=False)
    fake.add_user("4915100000912")
    fake.add_user("US.777")
    assert list(permissions.users) == ["4915100000912", "US.777"]
    assert len(permissions._by_bsuid) == 1  # only the phone user still kept
    assert permissions.key(forgotten) == forgotten  # no longer the forgotten number
    connect = {
        "messaging_product": "whatsapp",
        "action": "connect",
        "recipient": forgotten,
        "session": {"sdp_type": "offer", "sdp": sample_offer()},
    }
    status, answer = send(fake, "POST", "/calling/calls", json.dumps(connect).encode())
    assert (status, answer["error"]["code"]) == (401, 138006)


def test_what_a_user_sends_has_a_length_limit(fake: FakeCallingAPI) -> None:
    with pytest.raises(ScenarioError, match="4096"):
        fake.user_sends_message(OTHER, "t" * 4097)
    with pytest.raises(ScenarioError, match="1 to 4096"):
        fake.user_sends_message(OTHER, "")
    assert OTHER not in fake._world.permissions.users


# -- webhook delivery to a receiver that misbehaves -------------------------------------


class Receiver:
    """A loopback webhook receiver whose handler the test chooses."""

    def __init__(self, handler: Any) -> None:
        self.hits = 0
        self._handler = handler
        self.url = ""
        self._served: Any = None

    async def __aenter__(self) -> Receiver:
        app = web.Application()

        async def counted(request: web.Request) -> web.StreamResponse:
            self.hits += 1
            result: web.StreamResponse = await self._handler(request)
            return result

        app.router.add_post("/hook", counted)
        # A stalled handler is cancelled when the fake hangs up, and teardown does not wait.
        self._served = await serve(app, handler_cancellation=True, shutdown_timeout=0.5)
        self.url = self._served.url + "/hook"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._served.close()


@pytest_asyncio.fixture
async def stalling() -> AsyncIterator[Receiver]:
    never = asyncio.Event()

    async def stall(request: web.Request) -> web.Response:
        await never.wait()  # never answers; cancelled when the receiver closes
        return web.Response()  # pragma: no cover

    async with Receiver(stall) as receiver:
        yield receiver


@pytest.mark.asyncio
async def test_a_receiver_that_never_answers_costs_a_bounded_time(stalling: Receiver) -> None:
    async with FakeCallingAPI(
        webhook_url=stalling.url, webhook_timeout=0.2, webhook_retries=1, webhook_retry_delay=0
    ) as fake:
        fake.user_calls(OTHER)
        await fake.drain_webhooks(timeout=10)  # well above the 2 x 0.2 s it takes
        (delivery,) = fake.webhooks
    assert (delivery.attempts, delivery.status, delivery.delivered) == (2, None, False)
    assert delivery.error is not None
    assert "Timeout" in delivery.error
    assert stalling.hits == 2


@pytest.mark.asyncio
async def test_an_endless_answer_is_not_read() -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        try:
            for _ in range(100_000):  # 6 GiB if the fake read it all
                await response.write(b"x" * 65536)
        except ConnectionResetError:
            pass  # the fake hung up: what it should do
        return response

    async with (
        Receiver(endless) as receiver,
        FakeCallingAPI(webhook_url=receiver.url, webhook_timeout=5.0) as fake,
    ):
        fake.user_calls(OTHER)
        await fake.drain_webhooks(timeout=10)
        (delivery,) = fake.webhooks
    assert (delivery.attempts, delivery.status, delivery.delivered) == (1, 200, True)


@pytest.mark.asyncio
async def test_retries_are_capped_and_the_pause_stops_doubling() -> None:
    pauses: list[float] = []

    async def no_wait(seconds: float) -> None:
        pauses.append(seconds)

    async with (
        WebhookSink(*[500] * 20) as sink,
        FakeCallingAPI(webhook_url=sink.url, webhook_retries=8, webhook_retry_delay=10.0) as fake,
    ):
        fake._sender.sleep = no_wait  # the pauses are recorded, not waited
        fake.user_calls(OTHER)
        await fake.drain_webhooks(timeout=10)
        (delivery,) = fake.webhooks
    assert pauses == [10.0, 20.0, 30.0, 30.0, 30.0, 30.0, 30.0, 30.0]
    assert (delivery.attempts, delivery.status, delivery.delivered) == (9, 500, False)
    assert len(sink.received) == 9


@pytest.mark.asyncio
async def test_the_waiting_webhooks_are_bounded_oldest_given_up(stalling: Receiver) -> None:
    async with FakeCallingAPI(
        webhook_url=stalling.url, webhook_timeout=0.2, webhook_retries=0, max_recorded_webhooks=2
    ) as fake:
        calls = [fake.user_calls("4915100000600")]
        for _ in range(1000):  # until the first is out, stalled
            if stalling.hits:
                break
            await asyncio.sleep(0.01)
        calls += [fake.user_calls(f"49151000006{i:02d}") for i in range(1, 5)]
        await fake.drain_webhooks(timeout=10)
        by_call = {w.value["calls"][0]["id"]: w for w in fake.webhooks}
    # The first went out (and timed out); of the four that waited, the two oldest gave way.
    assert fake._sender.given_up == 2
    assert stalling.hits == 3
    assert set(by_call) == {calls[3].id, calls[4].id}  # the log keeps the newest two
    assert all(w.attempts == 1 and w.error for w in by_call.values())


@pytest.mark.asyncio
async def test_a_redirect_is_not_followed_with_the_secrets() -> None:
    async with WebhookSink() as elsewhere:

        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPTemporaryRedirect(elsewhere.url)

        async with (
            Receiver(redirect) as receiver,
            FakeCallingAPI(
                webhook_url=receiver.url,
                webhook_headers={"X-Webhook-Secret": "s3cr3t-header"},
                webhook_retries=0,
            ) as fake,
        ):
            fake.user_calls(OTHER)
            await fake.drain_webhooks(timeout=10)
            (delivery,) = fake.webhooks
    assert (delivery.status, delivery.delivered) == (307, False)
    assert elsewhere.received == []


@pytest.mark.parametrize(
    "settings",
    [
        {"webhook_retries": -1},
        {"webhook_retries": 1.5},
        {"webhook_retry_delay": -1.0},
        {"webhook_retry_delay": float("nan")},
        {"webhook_retry_delay": float("inf")},
        {"webhook_timeout": 0},
        {"webhook_timeout": float("inf")},
        {"webhook_timeout": float("nan")},
    ],
)
def test_unbounded_delivery_settings_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(settings))):
        FakeCallingAPI(**settings)


# -- secrets -----------------------------------------------------------------------------

KEY = "key-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
SIGNING = "signing-a1b2c3d4e5f60718293a4b5c6d7e8f90"
HEADER_SECRET = "header-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
BEARER = "bearer-00112233445566778899aabbccddeeff"


@pytest.mark.asyncio
async def test_no_secret_in_any_log_line_or_repr(
    stalling: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with FakeCallingAPI(
        api_key=KEY,
        webhook_url=stalling.url,
        webhook_signing_secret=SIGNING,
        webhook_headers={"X-Webhook-Secret": HEADER_SECRET},
        webhook_timeout=0.2,
        webhook_retries=1,
        webhook_retry_delay=0,
    ) as fake:
        fake.grant_permission(USER)
        async with aiohttp.ClientSession() as session:
            for key in (KEY, "wrong"):
                headers = {"D360-API-KEY": key, "Authorization": f"Bearer {BEARER}"}
                async with session.get(fake.url + "/calling/settings", headers=headers) as r:
                    assert KEY.encode() not in await r.read()
        async with fake.async_client(max_retries=0) as client:
            await client.get_settings()
        await fake.drain_webhooks(timeout=10)
        fake.webhook_url = "http://127.0.0.1:9/hook"  # unreachable: an error of another kind
        fake.redeliver(fake.webhooks[0])
        await fake.drain_webhooks(timeout=10)
        assert fake.requests[0].headers["D360-API-KEY"] == KEY  # tests can still read it
        shown = [
            repr(fake),
            repr(fake.requests),
            repr(fake.webhooks),
            *(repr(r) for r in fake.requests),
            *(str(w.error) for w in fake.webhooks),
            *(repr(w) for w in fake.webhooks),
            caplog.text,
            *(str(r.exc_info) for r in caplog.records if r.exc_info),
        ]
    assert all(w.error for w in fake.webhooks)
    for secret in (KEY, SIGNING, HEADER_SECRET, BEARER):
        assert not [text for text in shown if secret in text], secret
    assert "<redacted>" in repr(fake.requests[0])
