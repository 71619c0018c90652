"""The fake checks request bodies against the OpenAPI contract it ships (360dialog's seed)
plus the rules Meta documents, and its refusals name each failing field."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from d360calling.testing import FakeCallingAPI, sample_answer, sample_offer
from d360calling.testing._contract import DOCUMENTED_FILE, contract, openapi

from .helpers import USER

BSUID = "US.13491208655302741918"


async def post(fake: FakeCallingAPI, path: str, body: Any) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            fake.url + path,
            data=json.dumps(body),
            headers={"D360-API-KEY": fake.api_key, "Content-Type": "application/json"},
        ) as response,
    ):
        return response.status, await response.json(content_type=None)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeCallingAPI]:
    async with FakeCallingAPI() as server:
        server.grant_permission(USER, notify=False)
        yield server


def test_the_packaged_contract_is_360dialogs_openapi() -> None:
    spec = openapi()
    assert {"/calling/calls", "/calling/settings"} <= set(spec["paths"])
    assert "calling.CallActionRequest" in spec["components"]["schemas"]


def test_every_body_the_seed_describes_has_documented_rules() -> None:
    documented = json.loads(
        resources.files("d360calling.testing").joinpath(DOCUMENTED_FILE).read_text("utf-8")
    )
    with_bodies = {
        f"{method.upper()} {path}"
        for path, operations in openapi()["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation
    }
    assert with_bodies == {"POST /calling/calls", "POST /calling/settings"}
    assert set(documented["requests"]) == with_bodies | {"POST /messages"}
    assert set(contract().validators) == set(documented["requests"])


@pytest.mark.parametrize(
    ("path", "body", "details"),
    [
        # The seed types the field, the documented rules list its values: both refuse.
        (
            "/calling/settings",
            {"calling": {"status": 5}},
            'calling.status: must be a string; got 5; calling.status: must be one of "ENABLED", '
            '"DISABLED"; got 5',
        ),
        # Every failing field is named, not just the first.
        (
            "/calling/calls",
            {"messaging_product": "whatsapp", "action": "terminate", "call_id": "x", "to": USER},
            "call_id: must start with 'wacid.'; to: not taken by reject and terminate",
        ),
        (
            "/calling/settings",
            {
                "calling": {
                    "call_hours": {
                        "status": "ENABLED",
                        "timezone_id": "Europe/Berlin",
                        "weekly_operating_hours": [
                            {"day_of_week": "MONDAY", "open_time": "0900", "close_time": "2500"}
                        ],
                    }
                }
            },
            "calling.call_hours.weekly_operating_hours[0].close_time: must match "
            '^([01][0-9]|2[0-3])[0-5][0-9]$; got "2500"',
        ),
        (
            "/calling/settings",
            {"calling": {"sip": {"status": "ENABLED", "servers": [{"hostname": "h", "port": 0}]}}},
            "calling.sip.servers[0].port: must be at least 1; got 0",
        ),
        (
            "/messages",
            {"messaging_product": "whatsapp", "to": USER, "type": "text", "text": {"body": "hi"}},
            "type: the fake models interactive (call_permission_request, voice_call) and "
            "template messages",
        ),
        # A long refused value is quoted back cut short.
        (
            "/calling/calls",
            {"messaging_product": "whatsapp", "action": "a" * 100, "call_id": "wacid.X"},
            'action: must be one of "connect", "pre_accept", "accept", "reject", "terminate"; '
            'got "' + "a" * 38 + "…",
        ),
    ],
)
@pytest.mark.asyncio
async def test_refusals_are_metas_error_100_naming_each_field(
    fake: FakeCallingAPI, path: str, body: Any, details: str
) -> None:
    status, answer = await post(fake, path, body)
    assert status == 400
    error = answer["error"]
    assert (error["code"], error["type"], error["message"]) == (
        100,
        "OAuthException",
        "(#100) Invalid parameter",
    )
    assert error["error_data"] == {"messaging_product": "whatsapp", "details": details}
    assert fake.calls == {}


@pytest.mark.asyncio
async def test_connect_to_a_bsuid_recipient_is_accepted(fake: FakeCallingAPI) -> None:
    """The seed has no ``recipient``; Meta documents it (a BSUID), so the fake takes it."""
    connect = {
        "messaging_product": "whatsapp",
        "action": "connect",
        "recipient": BSUID,
        "session": {"sdp_type": "offer", "sdp": sample_offer()},
    }
    status, answer = await post(fake, "/calling/calls", connect)
    assert (status, answer["error"]["code"]) == (401, 138006)  # valid; just not permitted
    fake.grant_permission(BSUID, notify=False)
    status, answer = await post(fake, "/calling/calls", connect)
    assert status == 200
    assert fake.calls[answer["calls"][0]["id"]].user == BSUID
    # With both, "to" wins.
    both = {**connect, "to": USER, "session": {"sdp_type": "offer", "sdp": sample_offer("2")}}
    status, answer = await post(fake, "/calling/calls", both)
    assert status == 200
    assert fake.calls[answer["calls"][0]["id"]].user == USER


@pytest.mark.asyncio
async def test_valid_bodies_pass_and_reach_the_world(fake: FakeCallingAPI) -> None:
    call = fake.user_calls("4915100000007")
    accept = {
        "messaging_product": "whatsapp",
        "action": "accept",
        "call_id": call.id,
        "session": {"sdp_type": "answer", "sdp": sample_answer()},
        "biz_opaque_callback_data": "x" * 512,
    }
    assert (await post(fake, "/calling/calls", accept))[0] == 200
    assert call.biz_opaque_callback_data == "x" * 512
    closed = {"calling": {"call_hours": {"status": "DISABLED"}}}  # open 24/7: nothing else needed
    assert await post(fake, "/calling/settings", closed) == (200, {"success": True})
    assert fake.settings["calling"]["call_hours"] == {"status": "DISABLED"}


# The fast validator must agree with jsonschema on every body: it decides alone when a body is
# valid. Bodies are drawn around valid ones, with fields dropped, retyped or replaced.
_JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 70000), st.text(max_size=8), st.just("wacid.X")
)
_VALUES = st.recursive(
    _JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
_VALID: dict[str, list[dict[str, Any]]] = {
    "POST /calling/calls": [
        {
            "messaging_product": "whatsapp",
            "action": "connect",
            "to": USER,
            "session": {"sdp_type": "offer", "sdp": "v=0\r\n"},
            "biz_opaque_callback_data": "x",
        },
        {"messaging_product": "whatsapp", "action": "terminate", "call_id": "wacid.X"},
        {
            "messaging_product": "whatsapp",
            "action": "accept",
            "call_id": "wacid.X",
            "session": {"sdp_type": "answer", "sdp": "v=0\r\n"},
        },
    ],
    "POST /calling/settings": [
        {"calling": {"status": "ENABLED"}},
        {"calling": {"sip": {"status": "DISABLED", "servers": []}}},
        {"calling": {"call_hours": {"status": "DISABLED"}}},
    ],
    "POST /messages": [
        {
            "messaging_product": "whatsapp",
            "to": USER,
            "type": "interactive",
            "interactive": {
                "type": "call_permission_request",
                "action": {"name": "call_permission_request"},
                "body": {"text": "x"},
            },
        },
        {
            "messaging_product": "whatsapp",
            "recipient": BSUID,
            "type": "interactive",
            "interactive": {
                "type": "voice_call",
                "body": {"text": "x"},
                "action": {"name": "voice_call", "parameters": {"ttl_minutes": 5}},
            },
        },
        {
            "messaging_product": "whatsapp",
            "to": USER,
            "type": "template",
            "template": {
                "name": "t",
                "language": {"code": "en"},
                "components": [{"type": "body", "parameters": [{"type": "text", "text": "a"}]}],
            },
        },
    ],
}


@st.composite
def _near_valid(draw: st.DrawFn) -> tuple[str, Any]:
    route = draw(st.sampled_from(sorted(_VALID)))
    body = json.loads(json.dumps(draw(st.sampled_from(_VALID[route]))))
    for _ in range(draw(st.integers(0, 3))):
        target = body
        inner: list[str] = [k for k, v in body.items() if isinstance(v, dict)]
        go_inside = draw(st.booleans())
        if inner and go_inside:
            target = body[draw(st.sampled_from(inner))]
        key = draw(st.sampled_from([*target, "extra"])) if target else "extra"
        if draw(st.booleans()) and key in target:
            del target[key]
        else:
            target[key] = draw(_VALUES)
    return route, body


@settings(deadline=None)
@given(case=_near_valid())
def test_the_fast_validator_agrees_with_jsonschema(case: tuple[str, Any]) -> None:
    route, body = case
    rules = contract()
    assert rules.fast[route].is_valid(body) == rules.validators[route].is_valid(body)
