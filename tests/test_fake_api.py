"""The fake API is something users build their test suites on, so it is tested like product
code: it checks what it is sent, keeps state the way the real service does, delivers webhooks
over real HTTP, and injects every fault it promises."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from d360calling import (
    APIConnectionError,
    APITimeoutError,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    CallLimitReachedError,
    NoCallPermissionError,
    PermissionDeniedError,
    RateLimitError,
    ResponseDecodeError,
    ServerError,
    SettingsUpdate,
)
from d360calling.models import CallHoursSettings
from d360calling.testing import (
    SIGNATURE_HEADER,
    FakeCallingAPI,
    FakeClock,
    Fault,
    ScenarioError,
    sample_answer,
    sample_offer,
    sign,
)

from .conftest import FAST_RETRY
from .helpers import API_KEY, USER, WebhookSink

DAY = 24 * 3600
OTHER = "4915100000009"


async def raw(
    fake: FakeCallingAPI, method: str, path: str, body: Any = None, **kwargs: Any
) -> tuple[int, Any]:
    """A request that bypasses the client's own checks, to see what the fake enforces."""
    headers = {"D360-API-KEY": fake.api_key, **kwargs.pop("headers", {})}
    data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
    if body is not None and "Content-Type" not in headers:
        headers["Content-Type"] = "application/json"
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, fake.url + path, data=data, headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeCallingAPI]:
    """The fake on the test's own loop (the other tests use it in a thread)."""
    async with FakeCallingAPI(api_key=API_KEY) as server:
        server.grant_permission(USER, notify=False)
        yield server


@pytest_asyncio.fixture
async def client(fake: FakeCallingAPI) -> AsyncIterator[AsyncClient]:
    async with fake.async_client(retry_policy=FAST_RETRY, max_retries=0) as c:
        yield c


# -- the contract -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_wrong_key_gets_the_documented_401(fake: FakeCallingAPI) -> None:
    async with AsyncClient(api_key="wrong", base_url=fake.url) as client:
        with pytest.raises(AuthenticationError, match="Invalid API key") as info:
            await client.connect_call(USER, sample_offer())
    assert json.loads(info.value.body) == {"error": "Invalid API key"}
    assert fake.calls == {}


CALL = {"messaging_product": "whatsapp", "call_id": "wacid.X"}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        ([1, 2], "body: must be a JSON object; got [1, 2]"),
        ({"action": "terminate", "call_id": "wacid.X"}, "messaging_product: is required"),
        ({**CALL, "action": "hold"}, 'action: must be one of "connect", "pre_accept"'),
        (
            {**CALL, "action": "reject", "session": {"sdp_type": "answer", "sdp": "v=0"}},
            "session: not taken by reject",
        ),
        ({**CALL, "action": "accept"}, "session: needed by accept"),
        (
            {**CALL, "action": "pre_accept", "session": {"sdp_type": "offer", "sdp": "v"}},
            'session.sdp_type: must be "answer"; got "offer"',
        ),
        ({**CALL, "action": "terminate", "call_id": "call-1"}, "call_id: must start with 'wacid.'"),
        ({**CALL, "action": "accept", "session": {"sdp": "v=0"}}, "session.sdp_type: is required"),
        ({**CALL, "action": "terminate", "call_id": 7}, "call_id: must be a string; got 7"),
        (
            {"messaging_product": "whatsapp", "action": "connect", "to": USER},
            "session: needed by connect",
        ),
        (
            {
                "messaging_product": "whatsapp",
                "action": "connect",
                "session": {"sdp_type": "offer", "sdp": sample_offer()},
            },
            "to: needed by connect (or 'recipient')",
        ),
        (
            {
                "messaging_product": "whatsapp",
                "action": "connect",
                "to": USER,
                "session": {"sdp_type": "offer", "sdp": sample_offer()},
                "biz_opaque_callback_data": "x" * 513,
            },
            "biz_opaque_callback_data: is longer than 512 characters",
        ),
    ],
)
@pytest.mark.asyncio
async def test_call_bodies_are_checked(fake: FakeCallingAPI, body: Any, fragment: str) -> None:
    status, answer = await raw(fake, "POST", "/calling/calls", body)
    assert status == 400
    assert answer["error"]["code"] == 100
    assert fragment in answer["error"]["error_data"]["details"]
    assert fake.calls == {}


@pytest.mark.asyncio
async def test_wrong_content_type_and_unknown_routes(fake: FakeCallingAPI) -> None:
    status, answer = await raw(
        fake, "POST", "/calling/calls", b"{}", headers={"Content-Type": "text/plain"}
    )
    assert (status, answer["error"]["error_data"]["details"]) == (
        400,
        "Content-Type must be application/json",
    )
    assert (await raw(fake, "GET", "/calling/nothing"))[0] == 404
    assert (await raw(fake, "DELETE", "/calling/settings"))[0] == 405


@pytest.mark.parametrize(
    ("sdp", "fragment"),
    [
        (sample_answer().replace("\r\n", "\n"), "bare LF"),
        ("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n", "no media section"),
        (
            "".join(
                line + "\r\n" for line in sample_answer().splitlines() if "fingerprint" not in line
            ),
            "No fingerprint",
        ),
    ],
)
@pytest.mark.asyncio
async def test_sdps_are_checked(
    fake: FakeCallingAPI, client: AsyncClient, sdp: str, fragment: str
) -> None:
    call = fake.user_calls(OTHER)
    with pytest.raises(BadRequestError, match=fragment):  # the client's own check off
        await client.with_options(sdp_check="off").accept_call(call.id, sdp)
    assert fake.calls[call.id].state == "ringing"


@pytest.mark.asyncio
async def test_sdes_numbers_need_no_fingerprint(fake: FakeCallingAPI, client: AsyncClient) -> None:
    await client.update_settings(SettingsUpdate.srtp_key_exchange_protocol("SDES"))
    call = fake.user_calls(OTHER)
    # SDES-SRTP: the key in a=crypto (RFC 4568) instead of a DTLS fingerprint.
    no_fingerprint = (
        "".join(
            line.replace("UDP/TLS/RTP/SAVPF", "RTP/SAVPF") + "\r\n"
            for line in sample_answer().splitlines()
            if "fingerprint" not in line and "setup" not in line
        )
        + "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"
        + "A" * 40
        + "\r\n"
    )
    await client.accept_call(call.id, no_fingerprint)
    assert fake.calls[call.id].state == "accepted"


# -- inbound calls ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_inbound_call_lifecycle(fake: FakeCallingAPI, client: AsyncClient) -> None:
    call = fake.user_calls(OTHER, name="Alice")
    answer = sample_answer("mine")
    await client.pre_accept_call(call.id, answer)
    assert fake.calls[call.id].state == "pre_accepted"
    with pytest.raises(BadRequestError, match="does not match the pre_accept"):
        await client.accept_call(call.id, sample_answer("other"))
    await client.accept_call(call.id, answer, biz_opaque_callback_data="ticket-7")
    with pytest.raises(BadRequestError, match="already in progress"):
        await client.reject_call(call.id)
    await client.terminate_call(call.id)
    with pytest.raises(BadRequestError, match="already ended"):
        await client.accept_call(call.id, answer)
    with pytest.raises(BadRequestError, match="already ended"):
        await client.terminate_call(call.id)
    ended = fake.calls[call.id]
    assert (ended.state, ended.end_reason) == ("ended", "terminated")
    assert ended.actions == [
        "pre_accept",
        "accept",
        "accept",
        "reject",
        "terminate",
        "accept",
        "terminate",
    ]
    kinds = [(w.field, w.value["calls"][0]["event"]) for w in fake.webhooks]
    assert kinds == [("calls", "connect"), ("calls", "terminate")]
    terminate = fake.webhooks[-1].value["calls"][0]
    assert terminate["status"] == "COMPLETED"
    assert terminate["biz_opaque_callback_data"] == "ticket-7"
    assert {"start_time", "end_time", "duration"} <= set(terminate)


@pytest.mark.asyncio
async def test_the_callers_offer_is_not_an_answer(
    fake: FakeCallingAPI, client: AsyncClient
) -> None:
    call = fake.user_calls(OTHER)
    with pytest.raises(BadRequestError, match="caller's offer"):
        await client.with_options(sdp_check="off").accept_call(call.id, call.offer_sdp)


@pytest.mark.asyncio
async def test_reject_and_unknown_calls(fake: FakeCallingAPI, client: AsyncClient) -> None:
    call = fake.user_calls(OTHER)
    await client.reject_call(call.id)
    assert fake.calls[call.id].end_reason == "rejected"
    terminate = fake.webhooks[-1].value["calls"][0]
    assert "duration" not in terminate  # never picked up
    with pytest.raises(BadRequestError, match="Invalid call_id"):
        await client.terminate_call("wacid.nobody")


@pytest.mark.asyncio
async def test_unanswered_call_ends_after_the_answer_window() -> None:
    async with FakeCallingAPI(answer_window=0.2) as fake, fake.async_client() as client:
        call, answered = fake.user_calls(OTHER), fake.user_calls("4915100000008")
        await client.accept_call(answered.id, sample_answer())
        await asyncio.sleep(0.5)
        assert (call.state, call.end_reason) == ("ended", "not_answered")
        assert answered.state == "accepted"  # the window is for answering, not for talking
        with pytest.raises(BadRequestError, match="already ended"):
            await client.accept_call(call.id, sample_answer())
        assert fake.webhooks[-1].value["calls"][0]["event"] == "terminate"


@pytest.mark.asyncio
async def test_the_clock_drives_the_answer_window() -> None:
    clock = FakeClock()
    async with FakeCallingAPI(clock=clock) as fake:
        call = fake.user_calls(OTHER)
        await asyncio.sleep(0.15)
        assert call.state == "ringing"
        clock.advance(61)
        await asyncio.sleep(0.15)
        assert call.end_reason == "not_answered"


@pytest.mark.asyncio
async def test_user_side_failures_and_hangups(fake: FakeCallingAPI, client: AsyncClient) -> None:
    failed, hung_up = fake.user_calls(OTHER), fake.user_calls("4915100000008")
    fake.fail_call(failed.id, code=138022, details="no media sent")
    fake.user_hangs_up(hung_up.id)
    value = fake.webhooks[-2].value
    assert value["calls"][0]["status"] == "FAILED"
    assert value["errors"][0]["code"] == 138022
    assert value["errors"][0]["error_data"]["details"] == "no media sent"
    assert fake.calls[hung_up.id].end_reason == "hung_up"
    with pytest.raises(ScenarioError):
        fake.user_hangs_up(hung_up.id)
    with pytest.raises(ScenarioError, match="not a phone number"):
        fake.user_calls("not a number")


# -- business-initiated calls and permissions ---------------------------------------------


@pytest.mark.asyncio
async def test_connect_needs_permission(fake: FakeCallingAPI, client: AsyncClient) -> None:
    with pytest.raises(NoCallPermissionError) as info:
        await client.connect_call(OTHER, sample_offer())
    assert (info.value.status_code, info.value.code) == (401, 138006)
    assert fake.calls == {}


@pytest.mark.asyncio
async def test_business_initiated_lifecycle(fake: FakeCallingAPI, client: AsyncClient) -> None:
    r = await client.connect_call(USER, sample_offer(), biz_opaque_callback_data="order-1")
    with pytest.raises(BadRequestError, match="already ongoing") as info:
        await client.connect_call(USER, sample_offer("again"))
    assert info.value.code == 138003
    with pytest.raises(BadRequestError, match="user-initiated"):
        await client.accept_call(r.call_id, sample_answer())
    fake.user_answers(r.call_id)
    await client.terminate_call(r.call_id)
    values = [w.value for w in fake.webhooks]
    assert values[0]["statuses"][0]["status"] == "RINGING"
    connect = values[1]["calls"][0]
    assert (connect["event"], connect["direction"]) == ("connect", "BUSINESS_INITIATED")
    assert connect["session"]["sdp_type"] == "answer"
    assert connect["biz_opaque_callback_data"] == "order-1"
    assert values[2]["statuses"][0]["status"] == "ACCEPTED"
    assert values[3]["calls"][0]["event"] == "terminate"
    usage = (await client.get_call_permissions(USER)).action("start_call")
    assert usage is not None
    assert usage.limits[0].current_usage == 1


@pytest.mark.asyncio
async def test_connected_call_limit_and_its_expiry() -> None:
    clock = FakeClock()
    async with FakeCallingAPI(connected_call_limit=2, clock=clock) as fake:
        fake.grant_permission(USER, permanent=True, notify=False)
        async with fake.async_client(max_retries=0) as client:
            for _ in range(2):
                call = await client.connect_call(USER, sample_offer())
                fake.user_answers(call.call_id)
                fake.user_hangs_up(call.call_id)
            with pytest.raises(CallLimitReachedError, match="next call allowed") as info:
                await client.connect_call(USER, sample_offer())
            assert info.value.code == 138012
            permissions = await client.get_call_permissions(USER)
            start = permissions.action("start_call")
            assert start is not None
            assert not start.can_perform_action
            first = min(c.connected_at or 0 for c in fake.calls.values())
            assert start.limits[0].limit_expiration_time == int(first + DAY)
            clock.advance(DAY + 1)
            assert (await client.get_call_permissions(USER)).can_start_call
            await client.connect_call(USER, sample_offer())


@pytest.mark.asyncio
async def test_declined_calls_four_times_revoke_the_permission(
    fake: FakeCallingAPI, client: AsyncClient
) -> None:
    for _ in range(4):
        call = await client.connect_call(USER, sample_offer())
        fake.user_declines(call.call_id)
    revoke = fake.webhooks[-1].value["messages"][0]
    reply = revoke["interactive"]["call_permission_reply"]
    assert (reply["response"], reply["response_source"]) == ("reject", "automatic")
    assert "context" not in revoke
    with pytest.raises(NoCallPermissionError):
        await client.connect_call(USER, sample_offer())


@pytest.mark.asyncio
async def test_permission_requests_count_against_their_limits() -> None:
    clock = FakeClock()
    async with FakeCallingAPI(clock=clock) as fake, fake.async_client() as client:
        message = {
            "messaging_product": "whatsapp",
            "to": OTHER,
            "type": "interactive",
            "interactive": {
                "type": "call_permission_request",
                "action": {"name": "call_permission_request"},
            },
        }
        fake.user_sends_message(OTHER, "hello")  # free-form needs the 24-hour window
        status, sent = await raw(fake, "POST", "/messages", message)
        assert status == 200
        status, again = await raw(fake, "POST", "/messages", message)
        assert (status, again["error"]["code"]) == (400, 138009)
        request_limits = (await client.get_call_permissions(OTHER)).action(
            "send_call_permission_request"
        )
        assert request_limits is not None
        assert not request_limits.can_perform_action
        assert request_limits.limits[0].limit_expiration_time is not None
        clock.advance(DAY + 1)
        fake.user_sends_message(OTHER, "still there")
        assert (await raw(fake, "POST", "/messages", message))[0] == 200
        clock.advance(DAY + 1)
        fake.user_sends_message(OTHER, "and again")
        status, weekly = await raw(fake, "POST", "/messages", message)
        assert (status, weekly["error"]["code"]) == (400, 138009)  # 2 per 7 days

        fake.user_replies_to_permission_request(OTHER, accept=True)
        reply = fake.webhooks[-1].value["messages"][0]
        assert reply["context"]["id"] != sent["messages"][0]["id"]  # the newest request's
        assert reply["interactive"]["call_permission_reply"]["response_source"] == "user_action"
        granted = await client.get_call_permissions(OTHER)
        assert granted.permission.status == "temporary"
        clock.advance(7 * DAY + 1)
        assert (await client.get_call_permissions(OTHER)).permission.status == "no_permission"

        fake.grant_permission(OTHER, permanent=True)
        status, permanent = await raw(fake, "POST", "/messages", message)
        assert (status, permanent["error"]["code"]) == (400, 138017)


@pytest.mark.asyncio
async def test_calling_in_grants_callback_permission(
    fake: FakeCallingAPI, client: AsyncClient
) -> None:
    await client.update_settings(SettingsUpdate.callback_permission_status("ENABLED"))
    call = fake.user_calls(OTHER)
    message = fake.webhooks[-1].value["messages"][0]
    assert message["context"]["id"] == call.id
    assert message["interactive"]["call_permission_reply"]["response_source"] == "automatic"
    assert (await client.get_call_permissions(OTHER)).can_start_call


@pytest.mark.asyncio
async def test_permission_reads_are_rate_limited() -> None:
    async with (
        FakeCallingAPI(permission_reads_per_second=3) as fake,
        fake.async_client(max_retries=0) as client,
    ):
        for _ in range(3):
            await client.get_call_permissions(OTHER)
        with pytest.raises(RateLimitError) as info:
            await client.get_call_permissions(OTHER)
        assert info.value.code == 613


# -- settings -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_settings_persist_and_call_hours_replace_the_holidays(
    fake: FakeCallingAPI, client: AsyncClient
) -> None:
    weekly = [{"day_of_week": "MONDAY", "open_time": "0900", "close_time": "1700"}]
    hours: dict[str, Any] = {
        "status": "ENABLED",
        "timezone_id": "Europe/Berlin",
        "weekly_operating_hours": weekly,
        "holiday_schedule": [{"date": "2099-12-25", "start_time": "0000", "end_time": "2359"}],
    }
    assert (await raw(fake, "POST", "/calling/settings", {"calling": {"call_hours": hours}}))[
        0
    ] == 200
    stored = (await client.get_settings()).calling.call_hours
    assert stored is not None
    assert len(stored.holiday_schedule or ()) == 1
    await client.update_settings(
        SettingsUpdate.call_hours(
            CallHoursSettings(
                status="ENABLED",
                timezone_id="Europe/Berlin",
                weekly_operating_hours=stored.weekly_operating_hours,
            )
        )
    )
    assert "holiday_schedule" not in fake.settings["calling"]["call_hours"]


@pytest.mark.parametrize(
    ("calling", "fragment"),
    [
        ({"status": "ENABLED", "srtp_key_exchange_protocol": "DTLS"}, "calling: only one feature"),
        ({}, "calling: only one feature"),
        ({"restrictions": {}}, "calling.restrictions: unknown or read-only"),
        ({"status": "ON"}, 'calling.status: must be one of "ENABLED", "DISABLED"; got "ON"'),
        (
            {"call_hours": {"status": "ENABLED", "timezone_id": "Berlin"}},
            "calling.call_hours.timezone_id: is not a time zone",
        ),
        (
            {"call_hours": {"status": "ENABLED", "timezone_id": "Europe/Berlin"}},
            "calling.call_hours.weekly_operating_hours: needed when call_hours is ENABLED",
        ),
        (
            {
                "call_hours": {
                    "status": "ENABLED",
                    "timezone_id": "Europe/Berlin",
                    "weekly_operating_hours": [
                        {"day_of_week": "MONDAY", "open_time": "0900", "close_time": "1200"},
                        {"day_of_week": "MONDAY", "open_time": "1100", "close_time": "1700"},
                    ],
                }
            },
            "weekly_operating_hours: operating hours overlap on MONDAY",
        ),
        (
            {
                "call_hours": {
                    "status": "ENABLED",
                    "timezone_id": "Europe/Berlin",
                    "weekly_operating_hours": [
                        {"day_of_week": "MONDAY", "open_time": "1700", "close_time": "0900"}
                    ],
                }
            },
            "before close_time",
        ),
        (
            {
                "call_hours": {
                    "status": "ENABLED",
                    "timezone_id": "Europe/Berlin",
                    "weekly_operating_hours": [
                        {"day_of_week": "MONDAY", "open_time": "0900", "close_time": "1700"}
                    ],
                    "holiday_schedule": [
                        {"date": "2001-01-01", "start_time": "0000", "end_time": "2359"}
                    ],
                }
            },
            "holiday_schedule: holiday date 2001-01-01 is in the past",
        ),
        (
            {"sip": {"status": "ENABLED", "servers": [{"port": 5061}]}},
            "calling.sip.servers[0].hostname: is required",
        ),
        (
            {"audio": {"additional_codecs": ["G729"]}},
            'calling.audio.additional_codecs[0]: must be one of "PCMA", "PCMU"; got "G729"',
        ),
    ],
)
@pytest.mark.asyncio
async def test_settings_updates_are_checked(
    fake: FakeCallingAPI, calling: dict[str, Any], fragment: str
) -> None:
    before = fake.settings
    status, answer = await raw(fake, "POST", "/calling/settings", {"calling": calling})
    assert status == 400
    assert fragment in answer["error"]["error_data"]["details"]
    assert fake.settings == before


@pytest.mark.asyncio
async def test_sip_and_disabled_calling_turn_off_the_graph_endpoints(
    fake: FakeCallingAPI, client: AsyncClient
) -> None:
    sip = {"status": "ENABLED", "servers": [{"hostname": "sip.example.com"}]}
    assert (await raw(fake, "POST", "/calling/settings", {"calling": {"sip": sip}}))[0] == 200
    hidden = (await client.get_settings()).calling.sip
    assert hidden is not None
    assert hidden.servers is not None
    assert hidden.servers[0].sip_user_password is None
    assert hidden.servers[0].port == 5061
    _, shown = await raw(fake, "GET", "/calling/settings?include_sip_credentials=true")
    assert shown["calling"]["sip"]["servers"][0]["sip_user_password"]
    with pytest.raises(BadRequestError) as info:
        await client.connect_call(USER, sample_offer())
    assert info.value.code == 131055
    await raw(fake, "POST", "/calling/settings", {"calling": {"sip": {"status": "DISABLED"}}})
    await client.update_settings(SettingsUpdate.status("DISABLED"))
    with pytest.raises(PermissionDeniedError) as denied:
        await client.connect_call(USER, sample_offer())
    assert denied.value.code == 138000
    with pytest.raises(ScenarioError):
        fake.user_calls(OTHER)


# -- webhooks -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_webhooks_are_delivered_signed_with_custom_headers() -> None:
    async with (
        WebhookSink() as sink,
        FakeCallingAPI(
            webhook_url=sink.url, webhook_headers={"X-Secret": "s3"}, webhook_signing_secret="k"
        ) as fake,
    ):
        call = fake.user_calls(OTHER, name="Alice", deeplink_payload="promo")
        await fake.drain_webhooks()
    ((headers, body),) = sink.received
    assert headers["X-Secret"] == "s3"
    assert headers[SIGNATURE_HEADER] == sign("k", body)
    payload = json.loads(body)
    assert payload["object"] == "whatsapp_business_account"
    change = payload["entry"][0]["changes"][0]
    assert change["field"] == "calls"
    value = change["value"]
    assert value["metadata"]["phone_number_id"] == fake.phone_number_id
    user_id = fake.add_user(OTHER).user_id
    assert user_id.startswith("DE.")  # 49: Germany; a business-scoped id of the fake's making
    assert value["contacts"][0] == {
        "profile": {"name": "Alice"},
        "wa_id": OTHER,
        "user_id": user_id,
    }
    connect = value["calls"][0]
    assert connect["id"] == call.id
    assert (connect["from"], connect["from_user_id"], connect["to"]) == (
        OTHER,
        user_id,
        "15550001111",
    )
    assert connect["deeplink_payload"] == "promo"
    assert isinstance(connect["timestamp"], str)
    assert connect["session"] == {"sdp_type": "offer", "sdp": call.offer_sdp}
    assert fake.webhooks[0].delivered


@pytest.mark.asyncio
async def test_held_webhooks_can_arrive_reversed_and_twice() -> None:
    async with WebhookSink() as sink, FakeCallingAPI(webhook_url=sink.url) as fake:
        fake.hold_webhooks()
        call = fake.user_calls(OTHER)
        fake.user_hangs_up(call.id)
        await asyncio.sleep(0.1)
        assert sink.received == []
        fake.release_webhooks(reverse=True, duplicate=True)
        await fake.drain_webhooks()
        assert sink.events() == ["terminate", "terminate", "connect", "connect"]
        fake.redeliver(fake.webhooks[0])
        await fake.drain_webhooks()
    assert sink.events()[-1] == "connect"
    assert len(fake.webhooks) == 5


@pytest.mark.asyncio
async def test_failed_deliveries_are_retried() -> None:
    async with (
        WebhookSink(500) as sink,
        FakeCallingAPI(webhook_url=sink.url, webhook_retry_delay=0.01) as fake,
    ):
        fake.user_calls(OTHER)
        await fake.drain_webhooks()
    assert len(sink.received) == 2
    delivery = fake.webhooks[0]
    assert (delivery.attempts, delivery.status, delivery.delivered) == (2, 200, True)


@pytest.mark.asyncio
async def test_an_unreachable_receiver_is_recorded_not_raised() -> None:
    async with FakeCallingAPI(
        webhook_url="http://127.0.0.1:9/hook", webhook_retries=1, webhook_retry_delay=0.01
    ) as fake:
        fake.user_calls(OTHER)
        await fake.drain_webhooks()
    delivery = fake.webhooks[0]
    assert delivery.attempts == 2
    assert not delivery.delivered
    assert delivery.error is not None


# -- faults -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_drop_before_changes_nothing_drop_after_does(
    fake: FakeCallingAPI, client: AsyncClient
) -> None:
    fake.inject(Fault(drop="before"), action="connect")
    with pytest.raises(APIConnectionError):
        await client.connect_call(USER, sample_offer())
    assert fake.calls == {}
    fake.inject(Fault(drop="after"), action="connect")
    with pytest.raises(APIConnectionError) as info:
        await client.connect_call(USER, sample_offer())
    assert info.value.request_may_have_been_sent
    (placed,) = fake.calls.values()  # the call was placed; the client never heard
    assert placed.state == "ringing"


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault(truncate=True), APIConnectionError),
        (Fault(slow_body=1.0), APITimeoutError),
        (Fault(delay=1.0), APITimeoutError),
        (Fault.error(138006), NoCallPermissionError),
        (Fault.error(138002, retry_after=1), RateLimitError),
        (Fault.rate_limited(), RateLimitError),
        (
            Fault(status=502, body=b"<html>bad gateway</html>", content_type="text/html"),
            ServerError,
        ),
        (Fault(body=b'{"calling": '), ResponseDecodeError),
        (Fault(body=b"plain words", content_type="text/plain"), ResponseDecodeError),
    ],
)
@pytest.mark.asyncio
async def test_each_fault_reaches_the_client_as_its_error(
    fake: FakeCallingAPI, fault: Fault, error: type[Exception]
) -> None:
    fake.inject(fault, path="/calling/settings")
    async with fake.async_client(max_retries=0, timeout=0.4) as client:
        with pytest.raises(error):
            await client.get_settings()
        assert (await client.get_settings()).calling.status == "ENABLED"  # spent after one use


@pytest.mark.asyncio
async def test_fault_matching(fake: FakeCallingAPI, client: AsyncClient) -> None:
    forever = fake.inject(Fault.error(613), path="/calling/permissions/*", times=None)
    fake.inject(Fault(status=503, body=b""), method="POST", action="terminate", times=2)
    for wa_id in (USER, OTHER):
        with pytest.raises(RateLimitError):
            await client.get_call_permissions(wa_id)
    assert forever[0].hits == 2
    call = fake.user_calls(OTHER)
    await client.pre_accept_call(call.id, sample_answer())  # another action: untouched
    for _ in range(2):
        with pytest.raises(ServerError):
            await client.terminate_call(call.id)
    await client.terminate_call(call.id)
    fake.clear_faults()
    await client.get_call_permissions(USER)
    with pytest.raises(ValueError, match="either json= or body="):
        Fault(json={}, body=b"")
    with pytest.raises(ValueError, match="at least one"):
        fake.inject()


@pytest.mark.asyncio
async def test_random_faults_strike_at_their_rate_repeatably(
    fake: FakeCallingAPI, client: AsyncClient
) -> None:
    async def outcomes(seed: int) -> list[str]:
        fake.clear_faults()
        chaos = fake.inject_random(
            Fault(status=503, body=b""),
            Fault.error(613),
            rate=0.3,
            seed=seed,
            path="/calling/settings",
        )
        seen = []
        for _ in range(200):
            try:
                await client.get_settings()
                seen.append("ok")
            except (ServerError, RateLimitError) as exc:
                seen.append(type(exc).__name__)
        await client.get_call_permissions(USER)  # another path: never struck
        assert chaos.seen == 200
        assert sum(chaos.hits) == seen.count("ServerError") + seen.count("RateLimitError")
        assert chaos.hits == [seen.count("ServerError"), seen.count("RateLimitError")]
        return seen

    first = await outcomes(seed=7)
    assert 30 <= 200 - first.count("ok") <= 90  # 60 expected; a 5-sigma band
    assert first.count("ServerError")
    assert first.count("RateLimitError")
    assert await outcomes(seed=7) == first  # the same seed, the same draws
    assert await outcomes(seed=8) != first


@pytest.mark.asyncio
async def test_random_faults_give_way_to_earlier_faults_and_clear(
    fake: FakeCallingAPI, client: AsyncClient
) -> None:
    fake.inject(Fault.error(613), path="/calling/settings", times=1)
    fake.inject_random(Fault(status=503, body=b""), rate=1.0, path="/calling/settings")
    with pytest.raises(RateLimitError):  # injected first, used first
        await client.get_settings()
    with pytest.raises(ServerError):
        await client.get_settings()
    spared = fake.inject_random(Fault(status=503, body=b""), rate=0.0)
    fake.clear_faults()
    assert (await client.get_settings()).calling.status == "ENABLED"
    assert spared.seen == 0
    with pytest.raises(ValueError, match="between 0 and 1"):
        fake.inject_random(Fault(), rate=1.5)
    with pytest.raises(ValueError, match="at least one"):
        fake.inject_random(rate=0.1)


# -- records, control routes, lifecycle ---------------------------------------------------


@pytest.mark.asyncio
async def test_every_request_is_recorded(fake: FakeCallingAPI, client: AsyncClient) -> None:
    call = fake.user_calls(OTHER)
    await client.reject_call(call.id)
    await raw(fake, "GET", "/calling/settings?include_sip_credentials=true")
    reject, settings = fake.requests
    assert reject.headers["d360-api-key"] == API_KEY
    assert reject.peer[0] == "127.0.0.1"
    assert settings.query == {"include_sip_credentials": "true"}
    assert fake.call_actions("reject") == [
        {"messaging_product": "whatsapp", "action": "reject", "call_id": call.id}
    ]
    assert fake.call_actions("accept") == []


@pytest.mark.asyncio
async def test_control_routes_drive_the_user_side_over_http(fake: FakeCallingAPI) -> None:
    status, call = await raw(fake, "POST", "/_fake/calls", {"from": OTHER})
    assert (status, call["state"]) == (200, "ringing")
    status, _ = await raw(fake, "POST", f"/_fake/permissions/{OTHER}", {"permanent": True})
    assert status == 200
    assert (await raw(fake, "POST", f"/_fake/calls/{call['id']}/hangup"))[1]["state"] == "ended"
    status, answer = await raw(fake, "POST", f"/_fake/calls/{call['id']}/answer")
    assert status == 409
    assert "ringing business-initiated" in answer["error"]
    listed = (await raw(fake, "GET", "/_fake/calls"))[1]["calls"]
    assert [c["end_reason"] for c in listed] == ["hung_up"]


@pytest.mark.asyncio
async def test_lifecycle_guards() -> None:
    fake = FakeCallingAPI()
    with pytest.raises(RuntimeError, match="not running"):
        _ = fake.url
    async with fake:
        with pytest.raises(RuntimeError, match="already running"):
            await fake.start_async()
        with pytest.raises(RuntimeError, match=r"await fake\.drain_webhooks"):
            fake.wait_for_webhooks()
    await fake.close_async()  # idempotent


def test_the_threaded_fake_waits_for_webhooks_blocking() -> None:
    with FakeCallingAPI() as receiver, FakeCallingAPI() as fake:
        # The other fake refuses a request without its API key: retried, then recorded.
        fake.webhook_url = receiver.url + "/_fake/calls"
        fake.user_calls(OTHER)
        fake.wait_for_webhooks(timeout=10)
        delivery = fake.webhooks[0]
        assert (delivery.status, delivery.attempts, delivery.delivered) == (401, 3, False)
        assert len(receiver.requests_to("POST", "/_fake/calls")) == 3
