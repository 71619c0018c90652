"""The fake's messaging endpoint, as the calling workflow uses it: the call-permission request
(interactive and template), the call button, the 24-hour customer-service window, the
request limits, the user's reply and the statuses of what was sent. Requests are raw JSON
(no client method in between), so what is tested is what the fake enforces; time moves on the
fake's clock."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from d360calling import MessageUndeliverableError, ReEngagementRequiredError
from d360calling.errors import error_from_webhook
from d360calling.testing import FakeCallingAPI, FakeClock, ScenarioError, sample_offer

from .helpers import WebhookSink

DAY = 24 * 3600
USER = "4915100000101"
BSUID = "US.13491208655302741918"


async def call(fake: FakeCallingAPI, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    headers = {"D360-API-KEY": fake.api_key, "Content-Type": "application/json"}
    data = None if body is None else json.dumps(body)
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, fake.url + path, data=data, headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


async def send(fake: FakeCallingAPI, body: dict[str, Any]) -> tuple[int, Any]:
    return await call(fake, "POST", "/messages", body)


def request(to: str = USER, text: str | None = "May we call you?") -> dict[str, Any]:
    interactive: dict[str, Any] = {
        "type": "call_permission_request",
        "action": {"name": "call_permission_request"},
    }
    if text is not None:
        interactive["body"] = {"text": text}
    return {
        "messaging_product": "whatsapp",
        "to": to,
        "type": "interactive",
        "interactive": interactive,
    }


def button(to: str = USER, **parameters: Any) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "to": to,
        "type": "interactive",
        "interactive": {
            "type": "voice_call",
            "body": {"text": "Call us now"},
            "action": {"name": "voice_call", "parameters": parameters},
        },
    }


def template(to: str = USER, name: str = "call_request", **extra: Any) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "to": to,
        "type": "template",
        "template": {"name": name, "language": {"code": "en_US"}, **extra},
    }


def statuses(fake: FakeCallingAPI, message_id: str) -> list[dict[str, Any]]:
    return [
        s
        for w in fake.webhooks
        if w.field == "messages"
        for s in w.value.get("statuses", ())
        if s["id"] == message_id
    ]


def inbound(fake: FakeCallingAPI) -> list[dict[str, Any]]:
    return [m for w in fake.webhooks if w.field == "messages" for m in w.value.get("messages", ())]


async def request_usage(fake: FakeCallingAPI, user: str = USER) -> dict[str, Any]:
    status, answer = await call(fake, "GET", f"/calling/permissions/{user}")
    assert status == 200
    (action,) = [a for a in answer["actions"] if a["action_name"] == "send_call_permission_request"]
    return dict(action)


@pytest_asyncio.fixture
async def clock() -> FakeClock:
    return FakeClock()


@pytest_asyncio.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeCallingAPI]:
    async with FakeCallingAPI(clock=clock) as server:
        yield server


# -- the window and the statuses ----------------------------------------------------------


@pytest.mark.asyncio
async def test_a_request_inside_the_window_is_sent_and_delivered(fake: FakeCallingAPI) -> None:
    text_id = fake.user_sends_message(USER, "Hello!")
    (text,) = inbound(fake)
    user_id = fake.add_user(USER).user_id
    assert text == {
        "from": USER,
        "from_user_id": user_id,
        "id": text_id,
        "timestamp": text["timestamp"],
        "type": "text",
        "text": {"body": "Hello!"},
    }
    assert fake.webhooks[-1].value["contacts"][0]["user_id"] == user_id

    status, answer = await send(fake, request())
    assert status == 200
    message_id = answer["messages"][0]["id"]
    assert answer == {
        "messaging_product": "whatsapp",
        "contacts": [{"input": USER, "wa_id": USER}],
        "messages": [{"id": message_id}],  # message_status is a template's only
    }
    assert message_id.startswith("wamid.")
    assert [s["status"] for s in statuses(fake, message_id)] == ["sent", "delivered"]
    delivered = statuses(fake, message_id)[-1]
    assert (delivered["recipient_id"], delivered["recipient_user_id"]) == (USER, user_id)
    assert "errors" not in delivered
    sent = fake.messages[message_id]
    assert (sent.kind, sent.status, sent.body, sent.call_permission_request) == (
        "call_permission_request",
        "delivered",
        "May we call you?",
        True,
    )
    assert [limit["current_usage"] for limit in (await request_usage(fake))["limits"]] == [1, 1]


@pytest.mark.asyncio
async def test_free_form_outside_the_window_fails_with_131047_and_does_not_count(
    fake: FakeCallingAPI, clock: FakeClock
) -> None:
    for body in (request(), button()):
        status, answer = await send(fake, body)
        assert status == 200  # accepted: the Cloud API reports 131047 in a status webhook
        message_id = answer["messages"][0]["id"]
        (failed,) = statuses(fake, message_id)
        assert failed["status"] == "failed"
        (error,) = failed["errors"]
        assert (error["code"], error["title"]) == (131047, "Re-engagement message")
        assert "24 hours" in error["error_data"]["details"]
        typed = error_from_webhook(error["code"], error["message"], error["error_data"]["details"])
        assert isinstance(typed, ReEngagementRequiredError)
        assert fake.messages[message_id].status == "failed"
    usage = await request_usage(fake)
    assert usage["can_perform_action"]
    assert [limit["current_usage"] for limit in usage["limits"]] == [0, 0]
    with pytest.raises(ScenarioError, match="no call-permission request reached"):
        fake.user_replies_to_permission_request(USER)

    fake.user_sends_message(USER)
    clock.advance(DAY - 1)
    status, answer = await send(fake, request())
    assert [s["status"] for s in statuses(fake, answer["messages"][0]["id"])] == [
        "sent",
        "delivered",
    ]
    clock.advance(2)  # 24 hours after the user's message: the window has closed
    status, answer = await send(fake, button())
    assert [s["status"] for s in statuses(fake, answer["messages"][0]["id"])] == ["failed"]


@pytest.mark.asyncio
async def test_calls_and_replies_open_the_window(fake: FakeCallingAPI) -> None:
    fake.user_calls(USER)  # the user calling the business opens it
    _, answer = await send(fake, button(payload="after-the-call"))
    assert statuses(fake, answer["messages"][0]["id"])[-1]["status"] == "delivered"

    other = "4915100000102"
    await send(fake, template(to=other))  # outside the window: a template
    fake.user_replies_to_permission_request(other, accept=True)
    _, answer = await send(fake, button(to=other))  # the reply opened it
    assert statuses(fake, answer["messages"][0]["id"])[-1]["status"] == "delivered"


@pytest.mark.asyncio
async def test_an_old_whatsapp_fails_with_131026(fake: FakeCallingAPI) -> None:
    user = fake.add_user(USER, name="Old Phone", old_client=True)
    assert (user.wa_id, user.old_client, user.name) == (USER, True, "Old Phone")
    fake.user_sends_message(USER)
    for body in (request(), button(), template()):
        status, answer = await send(fake, body)
        assert status == 200
        (failed,) = statuses(fake, answer["messages"][0]["id"])
        (error,) = failed["errors"]
        assert (failed["status"], error["code"]) == ("failed", 131026)
        typed = error_from_webhook(error["code"], error["message"], error["error_data"]["details"])
        assert isinstance(typed, MessageUndeliverableError)
    assert (await request_usage(fake))["limits"][0]["current_usage"] == 0
    assert fake.add_user(USER, old_client=False).name == "Old Phone"  # the rest is kept
    status, answer = await send(fake, template())
    assert statuses(fake, answer["messages"][0]["id"])[-1]["status"] == "delivered"


# -- templates ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_template_works_outside_the_window_and_counts_as_a_request(
    fake: FakeCallingAPI,
) -> None:
    status, answer = await send(fake, template())
    assert status == 200
    assert answer["messages"][0]["message_status"] == "accepted"
    assert statuses(fake, answer["messages"][0]["id"])[-1]["status"] == "delivered"
    assert fake.messages[answer["messages"][0]["id"]].call_permission_request
    fake.user_sends_message(USER)
    status, again = await send(fake, request())  # the template used the day's one request
    assert (status, again["error"]["code"]) == (400, 138009)
    usage = await request_usage(fake)
    assert not usage["can_perform_action"]
    assert usage["limits"][0]["limit_expiration_time"] == int(
        fake.messages[answer["messages"][0]["id"]].sent_at + DAY
    )

    fake.grant_permission(USER, permanent=True)
    for body in (template(), request()):
        status, refused = await send(fake, body)
        assert (status, refused["error"]["code"]) == (400, 138017)


@pytest.mark.asyncio
async def test_registered_templates_are_checked_as_the_api_checks_them(
    fake: FakeCallingAPI,
) -> None:
    fake.add_template("call_me", "en_US", body_text="Hi {{first_name}}, may we call?")
    fake.add_template("promo", "en_US", body_text="Sale!", call_permission_request=False)
    named = {"type": "text", "parameter_name": "first_name", "text": "Pablo"}
    body = [{"type": "BODY", "parameters": [named]}, {"type": "CALL_PERMISSION_REQUEST"}]
    for components, code, fragment in [
        ([{"type": "body", "parameters": [{"type": "text", "text": "Pablo"}]}], 132012, "named"),
        ([], 132000, "1 parameter(s) expected, 0 given"),
        ([{"type": "body", "parameters": [named, named]}], 132000, "expected, 2 given"),
        (
            [{"type": "body", "parameters": [{**named, "parameter_name": "last_name"}]}],
            132000,
            "missing: first_name",
        ),
    ]:
        status, answer = await send(fake, template(name="call_me", components=components))
        assert (status, answer["error"]["code"]) == (400, code), answer
        assert fragment in answer["error"]["error_data"]["details"]
    wrong_language = template(name="call_me")
    wrong_language["template"]["language"] = {"code": "de"}
    status, answer = await send(fake, wrong_language)
    assert (status, answer["error"]["code"]) == (404, 132001)
    with_button = template(name="call_me", components=[*body, {"type": "button", "index": 0}])
    assert (await send(fake, with_button))[1]["error"]["code"] == 100
    assert fake.messages == {}  # refused sends leave nothing behind

    status, answer = await send(fake, template(name="call_me", components=body))
    assert status == 200
    assert fake.messages[answer["messages"][0]["id"]].body == "Hi {{first_name}}, may we call?"
    # A template without the call-permission component is no request: no limit, no reply.
    other = "4915100000103"
    status, answer = await send(fake, template(to=other, name="promo"))
    assert status == 200
    assert not fake.messages[answer["messages"][0]["id"]].call_permission_request
    assert (await request_usage(fake, other))["limits"][0]["current_usage"] == 0
    with pytest.raises(ScenarioError):
        fake.user_replies_to_permission_request(other)

    with pytest.raises(ValueError, match="MARKETING or UTILITY"):
        fake.add_template("bad", body_text="Hi", category="AUTHENTICATION")
    with pytest.raises(ValueError, match="must not be empty"):
        fake.add_template("bad", body_text=" ")
    with pytest.raises(ValueError, match="all positional"):
        fake.add_template("bad", body_text="Hi {{1}} {{name}}")
    with pytest.raises(ValueError, match="language"):
        fake.add_template("bad", "english", body_text="Hi")
    with pytest.raises(ValueError, match="template name"):
        fake.add_template("Bad Name", body_text="Hi")


# -- limits ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_connected_call_resets_the_request_limits(fake: FakeCallingAPI) -> None:
    fake.user_sends_message(USER)
    assert (await send(fake, request()))[0] == 200
    assert (await send(fake, request()))[1]["error"]["code"] == 138009
    fake.user_replies_to_permission_request(USER, accept=True)
    async with fake.async_client(max_retries=0) as client:
        placed = await client.connect_call(USER, sample_offer())
    fake.user_answers(placed.call_id)
    fake.user_hangs_up(placed.call_id)
    usage = await request_usage(fake)
    assert usage["can_perform_action"]
    assert [limit["current_usage"] for limit in usage["limits"]] == [0, 0]
    status, answer = await send(fake, request())
    assert status == 200
    assert statuses(fake, answer["messages"][0]["id"])[-1]["status"] == "delivered"


# -- the reply --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_reply_answers_the_newest_request_by_its_id(
    fake: FakeCallingAPI, clock: FakeClock
) -> None:
    _, first = await send(fake, template())
    clock.advance(DAY + 1)  # a day later the limit allows another
    _, second = await send(fake, template())
    newest = second["messages"][0]["id"]
    assert fake.user_replies_to_permission_request(USER, accept=True) == newest
    reply = inbound(fake)[-1]
    user_id = fake.add_user(USER).user_id
    assert reply["from"] == USER
    assert reply["from_user_id"] == user_id
    assert reply["context"] == {"from": USER, "id": newest}
    assert reply["context"]["id"] != first["messages"][0]["id"]
    assert reply["interactive"] == {
        "type": "call_permission_reply",
        "call_permission_reply": {
            "response": "accept",
            "is_permanent": False,
            "response_source": "user_action",
            "expiration_timestamp": reply["interactive"]["call_permission_reply"][
                "expiration_timestamp"
            ],
        },
    }
    expires = int(reply["interactive"]["call_permission_reply"]["expiration_timestamp"])
    assert abs(expires - (clock.time() + 7 * DAY)) < 5  # the clock is wall time moved on
    with pytest.raises(ScenarioError, match="already answered"):
        fake.user_replies_to_permission_request(USER, accept=False)

    permanent, declining = "4915100000104", "4915100000105"
    sent = {user: (await send(fake, template(to=user)))[1] for user in (permanent, declining)}
    fake.user_replies_to_permission_request(permanent, permanent=True)
    assert inbound(fake)[-1]["interactive"]["call_permission_reply"] == {
        "response": "accept",
        "is_permanent": True,
        "response_source": "user_action",
    }
    fake.user_replies_to_permission_request(declining, accept=False)
    declined = inbound(fake)[-1]
    assert declined["interactive"]["call_permission_reply"]["response"] == "reject"
    assert "expiration_timestamp" not in declined["interactive"]["call_permission_reply"]
    assert declined["context"]["id"] == sent[declining]["messages"][0]["id"]


@pytest.mark.asyncio
async def test_an_unanswered_request_expires_after_seven_days(
    fake: FakeCallingAPI, clock: FakeClock
) -> None:
    await send(fake, template())
    clock.advance(7 * DAY)
    with pytest.raises(ScenarioError, match="expired"):
        fake.user_replies_to_permission_request(USER)


@pytest.mark.asyncio
async def test_the_reply_reaches_a_receiver_over_http() -> None:
    async with WebhookSink() as sink, FakeCallingAPI(webhook_url=sink.url) as fake:
        _, answer = await send(fake, template())
        fake.user_replies_to_permission_request(USER)
        await fake.drain_webhooks()
    kinds = [(kind, item.get("status")) for kind, item in sink.items]
    assert kinds == [("statuses", "sent"), ("statuses", "delivered"), ("messages", None)]
    reply = sink.items[-1][1]
    assert reply["context"]["id"] == answer["messages"][0]["id"]


# -- call buttons ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_call_button_starts_a_call_carrying_its_payload(
    fake: FakeCallingAPI, clock: FakeClock
) -> None:
    fake.user_sends_message(USER)
    status, answer = await send(
        fake, button(display_text="Call support", ttl_minutes=60, payload="order-4471")
    )
    assert status == 200
    message_id = answer["messages"][0]["id"]
    sent = fake.messages[message_id]
    assert (sent.kind, sent.display_text, sent.ttl_minutes, sent.payload) == (
        "voice_call",
        "Call support",
        60,
        "order-4471",
    )
    assert not sent.call_permission_request  # a call button is no permission request
    pressed = fake.user_presses_call_button(message_id)
    assert (pressed.user, pressed.cta_payload) == (USER, "order-4471")
    connect = fake.webhooks[-1].value["calls"][0]
    assert (connect["event"], connect["id"], connect["cta_payload"]) == (
        "connect",
        pressed.id,
        "order-4471",
    )
    fake.user_hangs_up(pressed.id)
    terminate = [w.value["calls"][0] for w in fake.webhooks if w.field == "calls"][-1]
    assert (terminate["event"], terminate["cta_payload"]) == ("terminate", "order-4471")

    again = fake.user_presses_call_button(message_id)  # pressed again within its ttl
    fake.user_hangs_up(again.id)
    clock.advance(60 * 60)
    with pytest.raises(ScenarioError, match="expired"):
        fake.user_presses_call_button(message_id)


@pytest.mark.asyncio
async def test_a_call_button_lives_seven_days_by_default(
    fake: FakeCallingAPI, clock: FakeClock
) -> None:
    fake.user_sends_message(USER)
    _, answer = await send(fake, button())
    message_id = answer["messages"][0]["id"]
    clock.advance(7 * DAY - 1)
    call = fake.user_presses_call_button(message_id)
    assert call.cta_payload is None
    assert "cta_payload" not in fake.webhooks[-1].value["calls"][0]
    fake.user_hangs_up(call.id)
    clock.advance(1)
    with pytest.raises(ScenarioError, match="10,080"):
        fake.user_presses_call_button(message_id)


@pytest.mark.asyncio
async def test_only_a_delivered_call_button_can_be_pressed(fake: FakeCallingAPI) -> None:
    _, failed = await send(fake, button(payload="x"))  # outside the window
    with pytest.raises(ScenarioError, match="not delivered"):
        fake.user_presses_call_button(failed["messages"][0]["id"])
    _, not_a_button = await send(fake, template())
    for message_id in (not_a_button["messages"][0]["id"], "wamid.unknown"):
        with pytest.raises(ScenarioError, match="no call-button message"):
            fake.user_presses_call_button(message_id)
    assert fake.calls == {}


# -- users addressed by their business-scoped id ------------------------------------------


@pytest.mark.asyncio
async def test_a_bsuid_only_user_is_addressed_by_recipient(fake: FakeCallingAPI) -> None:
    fake.user_sends_message(BSUID, "hi from a username")
    (text,) = inbound(fake)
    assert "from" not in text
    assert text["from_user_id"] == BSUID
    assert fake.webhooks[-1].value["contacts"][0] == {
        "profile": {"name": "User 1918"},
        "user_id": BSUID,
    }
    body = request()
    del body["to"]
    status, answer = await send(fake, {**body, "recipient": BSUID})
    assert status == 200
    assert answer["contacts"] == [{"input": BSUID, "user_id": BSUID}]
    delivered = statuses(fake, answer["messages"][0]["id"])[-1]
    assert "recipient_id" not in delivered
    assert delivered["recipient_user_id"] == BSUID
    assert fake.user_replies_to_permission_request(BSUID) == answer["messages"][0]["id"]
    reply = inbound(fake)[-1]
    assert "from" not in reply
    assert reply["context"] == {"id": answer["messages"][0]["id"]}
    assert (await request_usage(fake, BSUID))["limits"][0]["current_usage"] == 1


@pytest.mark.asyncio
async def test_a_phone_user_can_be_addressed_by_their_bsuid_too(fake: FakeCallingAPI) -> None:
    user_id = fake.add_user(USER).user_id
    body = template()
    del body["to"]
    status, answer = await send(fake, {**body, "recipient": user_id})
    assert status == 200
    assert answer["contacts"] == [{"input": user_id, "wa_id": USER, "user_id": user_id}]
    assert fake.messages[answer["messages"][0]["id"]].user == USER
    # The same user, so the same limit: the phone number now has no request left today.
    assert (await send(fake, template()))[1]["error"]["code"] == 138009
    with_both = {**template(), "recipient": BSUID}  # "to" wins
    assert (await send(fake, with_both))[1]["error"]["code"] == 138009


# -- what the endpoint refuses --------------------------------------------------------------


def _without(body: dict[str, Any], *path: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(body))
    target = out
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return out


def _with(body: dict[str, Any], value: Any, *path: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(body))
    target = out
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return out


REFUSED = [
    (
        _with(request(), {"type": "text", "text": "Hi"}, "interactive", "header"),
        "interactive.header",
    ),
    (_with(request(), {"text": "bye"}, "interactive", "footer"), "interactive.footer"),
    (_without(request(), "interactive", "action"), "interactive.action: needed"),
    (_with(request(), "voice_call", "interactive", "action", "name"), 'must be "call_permission'),
    (_with(request(), "", "interactive", "body", "text"), "must not be empty"),
    (_with(request(), "b" * 1025, "interactive", "body", "text"), "longer than 1024"),
    (_without(button(), "interactive", "body"), "interactive.body: needed by voice_call"),
    (button(ttl_minutes=0), "ttl_minutes: must be at least 1"),
    (button(ttl_minutes=43201), "ttl_minutes: must be at most 43200"),
    (button(payload="p" * 513), "payload: is longer than 512"),
    (button(display_text="d" * 21), "display_text: is longer than 20"),
    (button(colour="red"), "parameters.colour: is not a field here"),
    (_without(request(), "to"), "to: needed (or 'recipient')"),
    (
        {"messaging_product": "whatsapp", "to": USER, "type": "text", "text": {"body": "Hi"}},
        "type: the fake models",
    ),
    (template(name="Call-Me"), "template.name: is not a template name"),
    (_with(template(), {"code": "english"}, "template", "language"), "is not a language code"),
    (template(components=[{"type": "footer"}]), "components[0].type: must be one of"),
    (
        template(components=[{"type": "body", "parameters": [{"type": "text"}]}]),
        "parameters[0].text: needed by a text parameter",
    ),
    (request(to=BSUID), "to: 'US.13491208655302741918' is not a phone number"),
    (_with(_without(request(), "to"), "abc", "recipient"), "recipient: 'abc' is not"),
    (_without(request(), "messaging_product"), "messaging_product: is required"),
]


@pytest.mark.parametrize(("body", "fragment"), REFUSED)
@pytest.mark.asyncio
async def test_malformed_messages_are_metas_error_100(
    fake: FakeCallingAPI, body: dict[str, Any], fragment: str
) -> None:
    fake.user_sends_message(USER)
    before = len(fake.webhooks)
    status, answer = await send(fake, body)
    assert status == 400, answer
    assert answer["error"]["code"] == 100
    assert fragment in answer["error"]["error_data"]["details"]
    assert fake.messages == {}
    assert len(fake.webhooks) == before


# -- the user's side over HTTP --------------------------------------------------------------


@pytest.mark.asyncio
async def test_control_routes_drive_the_messaging_side(fake: FakeCallingAPI) -> None:
    status, user = await call(fake, "POST", "/_fake/users", {"user": USER, "name": "Ana"})
    assert (status, user["wa_id"], user["name"]) == (200, USER, "Ana")
    assert user["user_id"] == fake.add_user(USER).user_id
    status, written = await call(fake, "POST", "/_fake/messages", {"from": USER, "text": "Hi"})
    assert status == 200
    assert inbound(fake)[-1]["id"] == written["id"]

    _, sent = await send(fake, request())
    request_id = sent["messages"][0]["id"]
    status, granted = await call(fake, "POST", f"/_fake/permissions/{USER}/grant", {})
    assert (status, granted) == (200, {"success": True, "context_id": request_id})
    assert inbound(fake)[-1]["context"]["id"] == request_id
    status, again = await call(fake, "POST", f"/_fake/permissions/{USER}/decline")
    assert status == 409
    assert "already answered" in again["error"]

    _, pressed_button = await send(fake, button(payload="from-curl"))
    button_id = pressed_button["messages"][0]["id"]
    status, pressed = await call(fake, "POST", f"/_fake/messages/{button_id}/press")
    assert (status, pressed["cta_payload"], pressed["state"]) == (200, "from-curl", "ringing")
    status, listed = await call(fake, "GET", "/_fake/messages")
    assert [(m["id"], m["kind"], m["status"]) for m in listed["messages"]] == [
        (request_id, "call_permission_request", "delivered"),
        (button_id, "voice_call", "delivered"),
    ]

    status, added = await call(
        fake, "POST", "/_fake/templates", {"name": "cpr", "body_text": "Hi {{1}}"}
    )
    assert (status, added) == (200, {"name": "cpr", "language": "en_US", "category": "UTILITY"})
    status, refused = await send(fake, template(name="cpr", to="4915100000106"))
    assert (status, refused["error"]["code"]) == (400, 132000)
    status, bad = await call(
        fake, "POST", "/_fake/templates", {"name": "x", "body_text": "b", "category": "OTHER"}
    )
    assert (status, bad["error"]["code"]) == (400, 100)
    assert "MARKETING or UTILITY" in bad["error"]["error_data"]["details"]

    other = "4915100000107"
    await send(fake, template(to=other))
    status, declined = await call(fake, "POST", f"/_fake/permissions/{other}/decline")
    assert (status, declined["success"]) == (200, True)
    assert inbound(fake)[-1]["interactive"]["call_permission_reply"]["response"] == "reject"
    for path, body in [
        ("/_fake/messages", {"from": USER}),
        ("/_fake/messages", {"from": "nobody", "text": "x"}),
        ("/_fake/users", {"name": "no user"}),
        ("/_fake/templates", {"name": "x"}),
    ]:
        status, answer = await call(fake, "POST", path, body)
        assert (status, answer["error"]["code"]) == (400, 100), (path, answer)
