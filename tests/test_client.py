"""AsyncClient against a loopback server speaking the contract: every method, what it puts on
the wire, and bad input refused before anything is sent."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from d360calling import (
    AsyncClient,
    CallingSettings,
    FeatureStatus,
    InvalidRequestError,
    PermissionStatus,
    ResponseDecodeError,
    SettingsUpdate,
    TerminateCallRequest,
)
from d360calling.errors import APIError, BadRequestError, UnsuccessfulResponseError
from d360calling.models import (
    CallHoursSettings,
    CallSession,
    SipServer,
    SipSettings,
    WeeklyOperatingHours,
)
from d360calling.testing import FakeCallingAPI, Fault, sample_answer, sample_offer

from .helpers import API_KEY, USER

OFFER = sample_offer()
ANSWER = sample_answer()
CALL_ID = "wacid.HBgLMTY0NjcwNDM1OTUVAgARGCA2QjE4RDY2NDFBNjM5N0U4QjA0QTAxMUVBOUU1MUEA"


@pytest.mark.asyncio
async def test_connect_call_sends_offer_and_returns_call_id(
    api: FakeCallingAPI, client: AsyncClient
) -> None:
    r = await client.connect_call(
        to="4915112345678", sdp=OFFER, biz_opaque_callback_data="order-42"
    )
    assert api.calls[r.call_id].state == "ringing"
    assert api.calls[r.call_id].biz_opaque_callback_data == "order-42"
    (sent,) = api.requests
    assert (sent.method, sent.path) == ("POST", "/calling/calls")
    assert sent.json == {
        "messaging_product": "whatsapp",
        "action": "connect",
        "to": "4915112345678",
        "session": {"sdp_type": "offer", "sdp": OFFER},
        "biz_opaque_callback_data": "order-42",
    }
    assert sent.headers["Content-Type"] == "application/json"


@pytest.mark.asyncio
async def test_sdp_is_sent_byte_for_byte(api: FakeCallingAPI, client: AsyncClient) -> None:
    sdp = 'v=0\r\na=x:ünïcode "quotes" \\ back\r\n\r\n'
    call = api.user_calls(USER)
    with pytest.raises(BadRequestError, match="Invalid SDP"):  # the fake checks SDPs too
        await client.with_options(sdp_check="off").accept_call(call.id, sdp=sdp)
    assert api.requests[0].json["session"]["sdp"] == sdp
    assert "\\r\\n" in api.requests[0].body.decode()  # CRLF escaped once, not twice


@pytest.mark.parametrize(
    ("method", "args", "kwargs", "expected"),
    [
        (
            "pre_accept_call",
            (),
            {"sdp": ANSWER},
            {"action": "pre_accept", "session": {"sdp_type": "answer", "sdp": ANSWER}},
        ),
        (
            "accept_call",
            (),
            {"sdp": ANSWER, "biz_opaque_callback_data": "x"},
            {
                "action": "accept",
                "session": {"sdp_type": "answer", "sdp": ANSWER},
                "biz_opaque_callback_data": "x",
            },
        ),
        ("reject_call", (), {}, {"action": "reject"}),
        ("terminate_call", (), {}, {"action": "terminate"}),
    ],
)
@pytest.mark.asyncio
async def test_answer_side_actions(
    api: FakeCallingAPI,
    client: AsyncClient,
    method: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    call = api.user_calls(USER)
    r = await getattr(client, method)(call.id, *args, **kwargs)
    assert r.success is True
    assert api.requests[0].json == {"messaging_product": "whatsapp", "call_id": call.id, **expected}
    assert api.calls[call.id].actions == [expected["action"]]


@pytest.mark.asyncio
async def test_perform_call_action_general_form(api: FakeCallingAPI, client: AsyncClient) -> None:
    call = api.user_calls(USER)
    r = await client.perform_call_action(TerminateCallRequest(call_id=call.id))
    assert r.success
    assert api.requests[0].json["action"] == "terminate"
    assert api.calls[call.id].end_reason == "terminated"


@pytest.mark.asyncio
async def test_get_call_permissions(api: FakeCallingAPI, client: AsyncClient) -> None:
    p = await client.get_call_permissions("+4915112345678")
    assert api.requests[0].path == "/calling/permissions/4915112345678"
    assert api.requests[0].body == b""
    assert p.permission.status is PermissionStatus.TEMPORARY
    assert p.permission.expiration_time is not None
    assert p.can_start_call
    assert p.actions[1].limits[0].max_allowed == 100


@pytest.mark.asyncio
async def test_settings_get_update_get(api: FakeCallingAPI, client: AsyncClient) -> None:
    before = await client.get_settings()
    assert before.calling.status is FeatureStatus.ENABLED
    assert before.calling.sip is not None
    assert before.calling.sip.servers == ()
    result = await client.update_settings(SettingsUpdate.status("DISABLED"))
    assert result.success
    assert api.requests_to("POST", "/calling/settings")[0].json == {
        "calling": {"status": "DISABLED"}
    }
    after = await client.get_settings()
    assert after.calling.status is FeatureStatus.DISABLED


@pytest.mark.asyncio
async def test_every_request_carries_key_and_user_agent(
    api: FakeCallingAPI, client: AsyncClient
) -> None:
    await client.get_settings()
    await client.terminate_call(api.user_calls(USER).id)
    for request in api.requests:
        assert request.headers["D360-API-KEY"] == API_KEY
        assert request.headers["User-Agent"].startswith("d360calling/")
        assert request.headers["Accept"] == "application/json"


@pytest.mark.asyncio
async def test_api_key_from_environment(
    api: FakeCallingAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("D360_API_KEY", API_KEY)
    monkeypatch.setenv("D360_BASE_URL", api.url)
    async with AsyncClient() as client:
        assert client.base_url == api.url
        await client.get_settings()
    assert api.requests[0].headers["D360-API-KEY"] == API_KEY


def test_missing_api_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("D360_API_KEY", raising=False)
    with pytest.raises(InvalidRequestError, match="D360_API_KEY"):
        AsyncClient()


def test_default_base_url() -> None:
    assert AsyncClient(api_key="k").base_url == "https://waba-v2.360dialog.io"


# -- bad responses -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "fragment"),
    [
        (Fault(body=b"<html>oops</html>", headers={"Content-Type": "text/html"}), "not JSON"),
        (Fault(body=b'{"permission": {"status": "temp'), "not JSON"),
        (Fault(json=[1, 2, 3]), "got an array"),
        (Fault(json={"actions": []}), "permission"),
        (Fault(body=b""), "not JSON"),
    ],
)
@pytest.mark.asyncio
async def test_bad_bodies_raise_response_decode_error(
    api: FakeCallingAPI, client: AsyncClient, reply: Fault, fragment: str
) -> None:
    api.inject(reply, method="GET", path="/calling/permissions/4915112345678")
    with pytest.raises(ResponseDecodeError) as info:
        await client.get_call_permissions("4915112345678")
    assert fragment in str(info.value)
    assert info.value.status_code == 200
    assert len(api.requests) == 1  # a bad body is not retried


@pytest.mark.asyncio
async def test_connect_without_call_id_is_a_decode_error(
    api: FakeCallingAPI, client: AsyncClient
) -> None:
    api.inject(
        Fault(json={"messaging_product": "whatsapp", "calls": []}),
        method="POST",
        path="/calling/calls",
    )
    with pytest.raises(ResponseDecodeError, match="without a call id"):
        await client.connect_call("4915112345678", OFFER)


@pytest.mark.asyncio
async def test_success_false_is_an_error(api: FakeCallingAPI, client: AsyncClient) -> None:
    api.inject(Fault(json={"success": False}), method="POST", path="/calling/calls")
    with pytest.raises(UnsuccessfulResponseError, match="success=false") as info:
        await client.reject_call(CALL_ID)
    assert info.value.status_code == 200
    assert isinstance(info.value, APIError)


@pytest.mark.asyncio
async def test_strict_mode_refuses_unknown_keys_tolerant_mode_reads_them(
    api: FakeCallingAPI, client: AsyncClient
) -> None:
    body = {"success": True, "brand_new_field": 1}
    api.inject(Fault(json=body), Fault(json=body), method="POST", path="/calling/calls")
    with pytest.raises(ResponseDecodeError, match="brand_new_field"):
        await client.terminate_call(CALL_ID)
    async with AsyncClient(api_key=API_KEY, base_url=api.url) as tolerant:
        assert (await tolerant.terminate_call(CALL_ID)).success


# -- bad input: a typed error, and nothing sent -------------------------------------------

LONG = "x" * 513


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda c: c.connect_call("", OFFER), "to must be a phone number"),
        (lambda c: c.connect_call("+49 151 1234", OFFER), "to must be a phone number"),
        (lambda c: c.connect_call("not-a-number", OFFER), "to must be a phone number"),
        (lambda c: c.connect_call("4915112345678", ""), "start with 'v=0'"),
        (lambda c: c.connect_call("4915112345678", "hello"), "start with 'v=0'"),
        (lambda c: c.connect_call("4915112345678", b"v=0\r\n"), "must be a str"),
        (lambda c: c.connect_call("4915112345678", OFFER, biz_opaque_callback_data=LONG), "513"),
        (lambda c: c.accept_call("", ANSWER), "call_id must be a non-empty"),
        (lambda c: c.accept_call("   ", ANSWER), "call_id must be a non-empty"),
        (lambda c: c.accept_call("wacid. 1", ANSWER), "whitespace"),
        (lambda c: c.accept_call(CALL_ID, None), "sdp (the SDP answer) must be a str"),
        (lambda c: c.pre_accept_call(CALL_ID, "m=audio"), "SDP answer"),
        (lambda c: c.reject_call(""), "call_id"),
        (lambda c: c.terminate_call(None), "call_id"),
        (lambda c: c.accept_call(CALL_ID, ANSWER, deadline="soon"), "deadline"),
        (
            lambda c: c.accept_call(CALL_ID, ANSWER, deadline=datetime.datetime(2030, 1, 1)),
            "timezone-aware",
        ),
        (lambda c: c.perform_call_action({"action": "reject"}), "RejectCallRequest"),
        (
            lambda c: c.perform_call_action(CallSession(sdp_type="offer", sdp=OFFER)),
            "got CallSession",
        ),
        (lambda c: c.get_call_permissions("abc"), "consumer_whatsapp_id"),
        (lambda c: c.get_call_permissions("123/../settings"), "consumer_whatsapp_id"),
        (lambda c: c.update_settings(CallingSettings(status="ENABLED")), "SettingsUpdate"),
        (lambda c: c.update_settings({"status": "ENABLED"}), "SettingsUpdate"),
        (
            lambda c: c.update_settings(SettingsUpdate.status(object())),  # type: ignore[arg-type]
            "calling.status must be FeatureStatus or str, got <object",
        ),
        (
            lambda c: c.update_settings(SettingsUpdate.status(False)),  # type: ignore[arg-type]
            "calling.status must be FeatureStatus or str, got False",
        ),
        (
            lambda c: c.update_settings(SettingsUpdate.sip("ENABLED")),  # type: ignore[arg-type]
            "calling.sip must be SipSettings, got 'ENABLED'",
        ),
        (
            lambda c: c.update_settings(
                SettingsUpdate.sip(SipSettings(servers=(SipServer(hostname="h", port=True),)))
            ),
            "calling.sip.servers[0].port",
        ),
        (
            lambda c: c.update_settings(
                SettingsUpdate.sip(SipSettings(servers=(SipServer(hostname=5, port=5061),)))  # type: ignore[arg-type]
            ),
            "calling.sip.servers[0].hostname",
        ),
        (
            lambda c: c.update_settings(
                SettingsUpdate.call_hours(
                    CallHoursSettings(
                        status="ENABLED",
                        weekly_operating_hours=(
                            WeeklyOperatingHours(
                                day_of_week="MONDAY",
                                open_time="0900",
                                close_time=1700,  # type: ignore[arg-type]
                            ),
                        ),
                    )
                )
            ),
            "calling.call_hours.weekly_operating_hours[0].close_time",
        ),
        (lambda c: c.get_settings(timeout=0), "timeout"),
        (lambda c: c.get_settings(timeout=float("nan")), "timeout"),
        (lambda c: c.get_settings(max_retries=-1), "max_retries"),
        (lambda c: c.get_settings(max_retries=99), "max_retries"),
    ],
)
@pytest.mark.asyncio
async def test_bad_input_is_refused_before_sending(
    api: FakeCallingAPI, client: AsyncClient, call: Any, fragment: str
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        await call(client)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)
    assert api.requests == []


@pytest.mark.asyncio
async def test_call_hours_update_is_one_feature(api: FakeCallingAPI, client: AsyncClient) -> None:
    hours = CallHoursSettings(status="DISABLED", timezone_id="Europe/Berlin")
    await client.update_settings(SettingsUpdate.call_hours(hours))
    assert api.requests[0].json == {
        "calling": {"call_hours": {"status": "DISABLED", "timezone_id": "Europe/Berlin"}}
    }


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"base_url": "http://api.example.com"}, "plain http"),
        ({"base_url": "ftp://127.0.0.1"}, "https"),
        ({"base_url": "waba-v2.360dialog.io"}, "absolute"),
        ({"base_url": "https://user:pw@waba-v2.360dialog.io"}, "credentials"),
        ({"timeout": -1}, "timeout"),
        ({"max_retries": 1.5}, "max_retries"),
        ({"pool_size": 0}, "pool_size"),
        ({"api_key": "key\nX-Injected: 1"}, "api_key"),
        ({"session": object()}, "aiohttp.ClientSession"),
    ],
)
def test_bad_options_are_refused_at_construction(options: dict[str, Any], fragment: str) -> None:
    options.setdefault("api_key", "k")
    with pytest.raises(InvalidRequestError, match=fragment):
        AsyncClient(**options)


def test_plain_http_is_allowed_to_loopback_only() -> None:
    for url in ("http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9"):
        assert AsyncClient(api_key="k", base_url=url).base_url == url


def test_async_client_refuses_plain_with() -> None:
    client = AsyncClient(api_key="k")
    with pytest.raises(TypeError, match="async with"), client:
        pass


@pytest.mark.asyncio
async def test_a_repeated_answer_is_decoded_once_and_a_different_one_never_mistaken_for_it(
    api: FakeCallingAPI, client: AsyncClient
) -> None:
    ok = Fault(status=200, json={"messaging_product": "whatsapp", "success": True})
    refused = Fault(status=200, json={"messaging_product": "whatsapp", "success": False})
    api.inject(ok, ok, refused, path="/calling/calls")
    first = await client.terminate_call("wacid.one")
    second = await client.reject_call("wacid.two")
    assert first.success is True
    assert second is first  # frozen, so sharing one decoded answer is safe
    with pytest.raises(APIError, match="success=false"):
        await client.terminate_call("wacid.three")

    distinct = [
        Fault(status=200, json={"success": True, "messaging_product": f"whatsapp{n}"})
        for n in range(100)
    ]
    api.inject(*distinct, path="/calling/calls")
    for _ in distinct:
        assert (await client.terminate_call("wacid.four")).success is True
    assert len(client._decoded) <= 64  # the memo stays bounded
