"""The messages of the calling workflow on POST /messages: the permission request (interactive
and template) and the call button, their exact wire bodies, every check on their input, the
answer's decoding, retry safety, the errors they map to; and the call deep link."""

from __future__ import annotations

import inspect
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import d360calling
import d360calling.testing
from d360calling import (
    APIConnectionError,
    AsyncClient,
    CallButtonMessage,
    CallPermissionRequestMessage,
    CallPermissionTemplateMessage,
    Client,
    InvalidRequestError,
    MessageResponse,
    MessageUndeliverableError,
    NoCallPermissionError,
    PermissionAlreadyPermanentError,
    PermissionDeniedError,
    PermissionRequestLimitError,
    ReEngagementRequiredError,
    ResponseDecodeError,
    RetryPolicy,
    ServerError,
    TemplateParameter,
    TemplateParameterFormat,
    UnsuccessfulResponseError,
    call_link,
)
from d360calling.errors import (
    APIStatusError,
    CallLimitReachedError,
    error_from_webhook,
)

from .capture import Capture, message_answer
from .conftest import FAST_RETRY
from .helpers import API_KEY, closed_port

USER = "4915112345678"
BSUID = "US.13491208655302741918"
PARENT_BSUID = "US.ENT.11815799212886844830"
FRAME = {"messaging_product": "whatsapp", "recipient_type": "individual"}
CPR = {"type": "call_permission_request", "action": {"name": "call_permission_request"}}


def sent(wire: Capture) -> Any:
    (request,) = wire.requests
    assert (request.method, request.path) == ("POST", "/messages")
    assert request.headers["D360-API-KEY"] == API_KEY
    assert request.headers["Content-Type"] == "application/json"
    return request.json


# -- the wire ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_permission_request_without_body(wire: Capture, wire_client: AsyncClient) -> None:
    wire.reply(json=message_answer("wamid.1"))
    response = await wire_client.send_call_permission_request(USER)
    assert sent(wire) == {**FRAME, "to": USER, "type": "interactive", "interactive": CPR}
    assert response == MessageResponse(
        message_id="wamid.1", wa_id=USER, input=USER, messaging_product="whatsapp"
    )


@pytest.mark.asyncio
async def test_permission_request_with_body_to_a_business_scoped_id(
    wire: Capture, wire_client: AsyncClient
) -> None:
    wire.reply(
        json={
            "messaging_product": "whatsapp",
            "contacts": [{"input": BSUID, "user_id": BSUID}],
            "messages": [{"id": "wamid.2", "message_status": "accepted"}],
        }
    )
    response = await wire_client.send_call_permission_request(BSUID, body="About order 42")
    assert sent(wire) == {
        **FRAME,
        "recipient": BSUID,
        "type": "interactive",
        "interactive": {**CPR, "body": {"text": "About order 42"}},
    }
    assert (response.message_id, response.message_status) == ("wamid.2", "accepted")
    assert (response.user_id, response.wa_id, response.input) == (BSUID, None, BSUID)


@pytest.mark.asyncio
async def test_permission_template_named_parameters(
    wire: Capture, wire_client: AsyncClient
) -> None:
    wire.reply(json=message_answer())
    await wire_client.send_call_permission_template(
        "+" + USER,
        "call_permission_req",
        "en_US",
        body_parameters={"first_name": "Pablo", "order": "42"},
        header_parameters={"shop": "Lucky Shrub"},
    )
    assert sent(wire) == {
        **FRAME,
        "to": "+" + USER,
        "type": "template",
        "template": {
            "name": "call_permission_req",
            "language": {"code": "en_US"},
            "components": [
                {
                    "type": "header",
                    "parameters": [
                        {"type": "text", "text": "Lucky Shrub", "parameter_name": "shop"}
                    ],
                },
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "Pablo", "parameter_name": "first_name"},
                        {"type": "text", "text": "42", "parameter_name": "order"},
                    ],
                },
            ],
        },
    }


@pytest.mark.asyncio
async def test_permission_template_positional_and_without_parameters(
    wire: Capture, wire_client: AsyncClient
) -> None:
    wire.reply(json=message_answer())
    wire.reply(json=message_answer())
    await wire_client.send_call_permission_template(
        PARENT_BSUID, "cpr_2", "pt_BR", body_parameters=["Ana", "7"], parameter_format="positional"
    )
    await wire_client.send_call_permission_template(USER, "cpr_plain", "en")
    first, second = (request.json for request in wire.requests)
    assert first == {
        **FRAME,
        "recipient": PARENT_BSUID,
        "type": "template",
        "template": {
            "name": "cpr_2",
            "language": {"code": "pt_BR"},
            "components": [
                {
                    "type": "body",
                    "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "7"}],
                }
            ],
        },
    }
    assert second["template"] == {"name": "cpr_plain", "language": {"code": "en"}}


@pytest.mark.asyncio
async def test_call_button(wire: Capture, wire_client: AsyncClient) -> None:
    wire.reply(json=message_answer())
    wire.reply(json=message_answer())
    await wire_client.send_call_button(
        USER, "Call us now", "Call on WhatsApp", ttl_minutes=100, payload="campaign-7"
    )
    await wire_client.send_call_button(BSUID, "Call us", "Call")
    first, second = (request.json for request in wire.requests)
    assert first == {
        **FRAME,
        "to": USER,
        "type": "interactive",
        "interactive": {
            "type": "voice_call",
            "body": {"text": "Call us now"},
            "action": {
                "name": "voice_call",
                "parameters": {
                    "display_text": "Call on WhatsApp",
                    "ttl_minutes": 100,
                    "payload": "campaign-7",
                },
            },
        },
    }
    assert second["recipient"] == BSUID
    assert "to" not in second
    assert second["interactive"]["action"]["parameters"] == {"display_text": "Call"}


@pytest.mark.asyncio
async def test_send_message_general_form(wire: Capture, wire_client: AsyncClient) -> None:
    wire.reply(json=message_answer("wamid.9"))
    message = CallButtonMessage(recipient=BSUID, body="b", display_text="d")
    assert (await wire_client.send_message(message)).message_id == "wamid.9"
    assert sent(wire)["recipient"] == BSUID
    with pytest.raises(InvalidRequestError, match="got dict"):
        await wire_client.send_message({"to": USER})  # type: ignore[arg-type]
    assert len(wire.requests) == 1


# -- bad input: a typed error naming the field, and nothing sent --------------------------------


def _text(n: int) -> str:
    return "x" * n


# The client's argument is Any: the calls pass wrong types on purpose.
BAD: list[tuple[Callable[[Any], Any], str]] = [
    (lambda c: c.send_call_permission_request(""), "to must be a phone number"),
    (lambda c: c.send_call_permission_request("abc"), "to must be a phone number"),
    (lambda c: c.send_call_permission_request("+49 151 123"), "to must be"),
    (lambda c: c.send_call_permission_request("0151123456"), "to must be"),
    (lambda c: c.send_call_permission_request("us.1349120865"), "to must be"),
    (lambda c: c.send_call_permission_request("US."), "to must be"),
    (lambda c: c.send_call_permission_request("US.ENT."), "to must be"),
    (lambda c: c.send_call_permission_request("USA.123456"), "to must be"),
    (lambda c: c.send_call_permission_request("US.ENT.12.3"), "to must be"),
    (lambda c: c.send_call_permission_request(4915112345678), "to must be"),
    (lambda c: c.send_call_permission_request(None), "to must be"),
    (lambda c: c.send_call_permission_request(USER, body=""), "body must not be empty"),
    (lambda c: c.send_call_permission_request(USER, body=" \n"), "body must not be empty"),
    (lambda c: c.send_call_permission_request(USER, body=_text(1025)), "body is 1025 char"),
    (lambda c: c.send_call_permission_request(USER, body=b"x"), "body must be a str"),
    (lambda c: c.send_call_button(USER, "", "Call"), "body must not be empty"),
    (lambda c: c.send_call_button(USER, _text(1025), "Call"), "body is 1025 characters"),
    (lambda c: c.send_call_button(USER, "b", ""), "display_text must not be empty"),
    (lambda c: c.send_call_button(USER, "b", _text(21)), "display_text is 21 characters"),
    (lambda c: c.send_call_button(USER, "b", None), "display_text must be a str"),
    (lambda c: c.send_call_button(USER, "b", "d", ttl_minutes=0), "between 1 and 43200"),
    (lambda c: c.send_call_button(USER, "b", "d", ttl_minutes=43201), "got 43201"),
    (lambda c: c.send_call_button(USER, "b", "d", ttl_minutes=-5), "between 1 and 43200"),
    (lambda c: c.send_call_button(USER, "b", "d", ttl_minutes=True), "ttl_minutes must be an int"),
    (lambda c: c.send_call_button(USER, "b", "d", ttl_minutes=60.0), "ttl_minutes must be an int"),
    (lambda c: c.send_call_button(USER, "b", "d", payload=_text(513)), "payload is 513 char"),
    (lambda c: c.send_call_button(USER, "b", "d", payload=""), "payload must not be empty"),
    (lambda c: c.send_call_button(USER, "b", "d", payload=5), "payload must be a str"),
    (lambda c: c.send_call_button("x", "b", "d"), "to must be a phone number"),
    (lambda c: c.send_call_permission_template(USER, "Bad-Name", "en"), "template must be"),
    (lambda c: c.send_call_permission_template(USER, "has space", "en"), "template must be"),
    (lambda c: c.send_call_permission_template(USER, "", "en"), "template must be"),
    (lambda c: c.send_call_permission_template(USER, _text(513), "en"), "template must be"),
    (lambda c: c.send_call_permission_template(USER, None, "en"), "template must be"),
    (lambda c: c.send_call_permission_template(USER, "t", "EN"), "language must be"),
    (lambda c: c.send_call_permission_template(USER, "t", "en-US"), "language must be"),
    (lambda c: c.send_call_permission_template(USER, "t", "english"), "language must be"),
    (lambda c: c.send_call_permission_template(USER, "t", "en_us"), "language must be"),
    (lambda c: c.send_call_permission_template(USER, "t", ""), "language must be"),
    (
        lambda c: c.send_call_permission_template(USER, "t", "en", body_parameters="Pablo"),
        "body_parameters must be a sequence of texts",
    ),
    (
        lambda c: c.send_call_permission_template(USER, "t", "en", body_parameters=[""]),
        "body_parameters[0] must not be empty",
    ),
    (
        lambda c: c.send_call_permission_template(USER, "t", "en", body_parameters=[1]),
        "body_parameters[0] must be a str",
    ),
    (
        lambda c: c.send_call_permission_template(
            USER, "t", "en", body_parameters={"First Name": "x"}
        ),
        "parameter names are lowercase",
    ),
    (
        lambda c: c.send_call_permission_template(
            USER, "t", "en", body_parameters={"name": _text(1025)}
        ),
        "body_parameters['name'] is 1025 characters",
    ),
    (
        lambda c: c.send_call_permission_template(USER, "t", "en", header_parameters=[_text(61)]),
        "header_parameters[0] is 61 characters",
    ),
    (
        lambda c: c.send_call_permission_template(USER, "t", "en", header_parameters=["a", "b"]),
        "a text header takes 1 parameter, got 2",
    ),
    (
        lambda c: c.send_call_permission_template(
            USER, "t", "en", body_parameters={"a": "x"}, header_parameters=["y"]
        ),
        "mix named and positional",
    ),
    (
        lambda c: c.send_call_permission_template(
            USER, "t", "en", body_parameters={"a": "x"}, parameter_format="positional"
        ),
        "parameter_format is 'positional' but the parameters are a mapping",
    ),
    (
        lambda c: c.send_call_permission_template(
            USER, "t", "en", body_parameters=["x"], parameter_format=TemplateParameterFormat.NAMED
        ),
        "parameter_format is 'named' but the parameters are a sequence",
    ),
    (
        lambda c: c.send_call_permission_template(USER, "t", "en", parameter_format="both"),
        "parameter_format must be 'positional' or 'named'",
    ),
]


@pytest.mark.parametrize(("call", "fragment"), BAD)
@pytest.mark.asyncio
async def test_bad_input_is_refused_before_sending(
    wire: Capture, wire_client: AsyncClient, call: Callable[[AsyncClient], Any], fragment: str
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        await call(wire_client)
    assert fragment in str(info.value)
    assert wire.requests == []


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.send_call_permission_request(USER, body=_text(1024)),
        lambda c: c.send_call_permission_request("4915112"),  # the shortest number taken
        lambda c: c.send_call_permission_request("US.1"),
        lambda c: c.send_call_button(USER, _text(1024), _text(20)),
        lambda c: c.send_call_button(USER, "b", "d", ttl_minutes=1),
        lambda c: c.send_call_button(USER, "b", "d", ttl_minutes=43200),
        lambda c: c.send_call_button(USER, "b", "d", payload=_text(512)),
        lambda c: c.send_call_permission_template(USER, _text(512), "fil"),
        lambda c: c.send_call_permission_template(
            USER, "t", "en", header_parameters=[_text(60)], body_parameters=[_text(1024)]
        ),
        lambda c: c.send_call_permission_template(
            USER, "t", "en", body_parameters=[TemplateParameter(text="x")]
        ),
    ],
)
@pytest.mark.asyncio
async def test_values_at_the_bounds_are_sent(
    wire: Capture, wire_client: AsyncClient, call: Callable[[AsyncClient], Any]
) -> None:
    wire.reply(json=message_answer())
    assert (await call(wire_client)).message_id
    assert len(wire.requests) == 1


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: CallPermissionRequestMessage(), "needs its user"),
        (
            lambda: CallPermissionRequestMessage(to=USER, recipient=BSUID),
            "either to or recipient, not both",
        ),
        (lambda: CallPermissionRequestMessage(to=BSUID), "goes in 'recipient'"),
        (lambda: CallPermissionRequestMessage(recipient=USER), "recipient must be a business"),
        (
            lambda: CallButtonMessage(to=USER, recipient=BSUID, body="b", display_text="d"),
            "not both",
        ),
        (
            lambda: CallPermissionTemplateMessage(template="t", language="en"),
            "needs its user",
        ),
    ],
)
def test_a_message_names_exactly_one_user(make: Callable[[], object], fragment: str) -> None:
    with pytest.raises(InvalidRequestError, match=fragment):
        make()


def test_the_parameter_format_follows_from_the_parameters() -> None:
    def template(**kwargs: Any) -> CallPermissionTemplateMessage:
        return CallPermissionTemplateMessage(to=USER, template="t", language="en", **kwargs)

    assert template().parameter_format is None
    assert template(body_parameters=["a"]).parameter_format is TemplateParameterFormat.POSITIONAL
    assert template(body_parameters={"a": "b"}).parameter_format is TemplateParameterFormat.NAMED
    assert template(parameter_format="named").parameter_format is TemplateParameterFormat.NAMED
    assert template(body_parameters={"a": "b"}).body_parameters == (
        TemplateParameter(text="b", name="a"),
    )


@given(
    body=st.one_of(st.none(), st.text(max_size=1100)),
    user=st.one_of(st.just(USER), st.just(BSUID), st.text(max_size=30)),
)
def test_a_permission_request_is_made_or_refused_never_anything_else(
    body: str | None, user: str
) -> None:
    try:
        message = CallPermissionRequestMessage(
            **({"recipient": user} if user.startswith("US.") else {"to": user}), body=body
        )
    except InvalidRequestError:
        return
    assert message.body is None or (0 < len(message.body) <= 1024 and message.body.strip())


# -- the answer -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        {"messaging_product": "whatsapp", "contacts": [], "messages": []},
        {"messaging_product": "whatsapp", "messages": [{}]},
        {"messaging_product": "whatsapp", "messages": [{"id": ""}]},
        {},
    ],
)
@pytest.mark.asyncio
async def test_an_answer_without_a_message_id_is_a_decode_error(
    wire: Capture, wire_client: AsyncClient, answer: dict[str, Any]
) -> None:
    wire.reply(json=answer)
    with pytest.raises(ResponseDecodeError, match="without a message id") as info:
        await wire_client.send_call_permission_request(USER)
    assert info.value.status_code == 200
    assert len(wire.requests) == 1


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ({"body": b"<html>ok</html>"}, ResponseDecodeError),
        ({"json": [1, 2]}, ResponseDecodeError),
        ({"json": {"messages": [{"id": {"nested": 1}}]}}, ResponseDecodeError),
        ({"json": {"success": False}}, UnsuccessfulResponseError),
    ],
)
@pytest.mark.asyncio
async def test_bad_answers_are_typed_errors(
    wire: Capture, wire_client: AsyncClient, reply: dict[str, Any], error: type[Exception]
) -> None:
    wire.reply(**reply)
    with pytest.raises(error):
        await wire_client.send_call_button(USER, "b", "d")


@pytest.mark.asyncio
async def test_the_tolerant_client_reads_answers_with_more_fields(wire: Capture) -> None:
    answer = message_answer("wamid.7")
    answer["contacts"][0]["profile"] = {"username": "pablo"}
    answer["messages"][0]["message_status"] = "held_for_quality_assessment"
    answer["unheard_of"] = True
    wire.reply(json=answer)
    async with AsyncClient(api_key=API_KEY, base_url=wire.url) as tolerant:
        response = await tolerant.send_call_permission_request(USER)
    assert (response.message_id, response.message_status) == (
        "wamid.7",
        "held_for_quality_assessment",
    )


# -- never sent twice -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "send",
    [
        lambda c: c.send_call_permission_request(USER),
        lambda c: c.send_call_permission_template(USER, "t", "en"),
        lambda c: c.send_call_button(USER, "b", "d"),
    ],
)
@pytest.mark.asyncio
async def test_a_message_that_may_have_arrived_is_never_resent(
    wire: Capture, wire_client: AsyncClient, send: Callable[[AsyncClient], Any]
) -> None:
    wire.reply(drop=True)
    with pytest.raises(APIConnectionError) as lost:
        await send(wire_client)
    assert lost.value.request_may_have_been_sent
    wire.reply(status=503, json={"error": "unavailable"})
    with pytest.raises(ServerError):
        await send(wire_client)
    wire.reply(status=429, json={"error": {"code": 130429, "message": "throughput"}})
    with pytest.raises(APIStatusError):
        await send(wire_client)
    assert len(wire.requests) == 3  # one each, although max_retries is 2
    # The same failures on a read are retried: the kind of call, not the status, decides.
    wire.reply(drop=True)
    wire.reply(json={"calling": {}})
    await wire_client.get_settings()
    assert len(wire.requests) == 5


@pytest.mark.asyncio
async def test_a_message_that_never_left_is_retried() -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    policy = RetryPolicy(initial_delay=0.01, sleep=sleep)
    base_url = f"http://127.0.0.1:{closed_port()}"
    async with AsyncClient(api_key=API_KEY, base_url=base_url, retry_policy=policy) as c:
        with pytest.raises(APIConnectionError) as info:
            await c.send_call_permission_request(USER)
    assert info.value.request_may_have_been_sent is False
    assert len(waits) == 2  # refused before anything left: safe to try again


# -- errors -----------------------------------------------------------------------------------

CODES: list[tuple[int, type[APIStatusError]]] = [
    (138009, PermissionRequestLimitError),
    (138017, PermissionAlreadyPermanentError),
    (131047, ReEngagementRequiredError),
    (138006, NoCallPermissionError),
    (138012, CallLimitReachedError),
    (131026, MessageUndeliverableError),
]


@pytest.mark.parametrize(("code", "cls"), CODES)
@pytest.mark.parametrize("status", [400, 401, 403, 200])
@pytest.mark.asyncio
async def test_documented_codes_map_to_their_errors(
    wire: Capture, wire_client: AsyncClient, code: int, cls: type[APIStatusError], status: int
) -> None:
    wire.reply(
        status=status,
        json={
            "error": {
                "message": "refused",
                "type": "OAuthException",
                "code": code,
                "error_data": {"details": "see the docs"},
                "fbtrace_id": "Az1",
            }
        },
    )
    with pytest.raises(cls) as info:
        await wire_client.send_call_permission_request(USER)
    error = info.value
    assert type(error) is cls
    assert (error.status_code, error.code, error.details) == (status, code, "see the docs")
    # All but 131026 are reasons the business may not do this: PermissionDeniedError.
    assert isinstance(error, PermissionDeniedError) is (code != 131026)
    assert len(wire.requests) == 1


@pytest.mark.parametrize(("code", "cls"), CODES)
def test_errors_a_webhook_reports_map_to_the_same_classes(
    code: int, cls: type[APIStatusError]
) -> None:
    error = error_from_webhook(code, "Message undeliverable", "upgrade WhatsApp")
    assert type(error) is cls
    assert (error.code, error.status_code, error.method) == (code, 200, "WEBHOOK")


# -- the sync client --------------------------------------------------------------------------

NEW_METHODS = (
    "send_call_permission_request",
    "send_call_permission_template",
    "send_call_button",
    "send_message",
    "can_call",
    "update_call_hours",
    "get_settings",
    "connect_call",
    "accept_call",
)


@pytest.mark.parametrize("name", NEW_METHODS)
def test_the_sync_client_has_every_new_method(name: str) -> None:
    sync_method, async_method = getattr(Client, name), getattr(AsyncClient, name)
    assert inspect.signature(sync_method) == inspect.signature(async_method)
    assert sync_method.__doc__ == async_method.__doc__


def test_sync_messages(wire: Capture) -> None:
    for n in range(3):
        wire.reply(json=message_answer(f"wamid.{n}"))
    with Client(api_key=API_KEY, base_url=wire.url, retry_policy=FAST_RETRY, strict=True) as c:
        assert c.send_call_permission_request(USER, body="b").message_id == "wamid.0"
        assert c.send_call_permission_template(BSUID, "t", "en").message_id == "wamid.1"
        assert c.send_call_button(USER, "b", "d", ttl_minutes=5).message_id == "wamid.2"
        with pytest.raises(InvalidRequestError):
            c.send_call_button(USER, "b", "d", ttl_minutes=0)
    kinds = [request.json["type"] for request in wire.requests]
    assert kinds == ["interactive", "template", "interactive"]
    assert wire.requests[1].json["recipient"] == BSUID


# -- deep links -------------------------------------------------------------------------------


def test_call_link() -> None:
    assert call_link("4915112345678") == "https://wa.me/call/4915112345678"
    assert call_link("+4915112345678") == "https://wa.me/call/4915112345678"
    assert (
        call_link("4915112345678", payload="ad 7/b&c=ü")
        == "https://wa.me/call/4915112345678?biz_payload=ad%207%2Fb%26c%3D%C3%BC"
    )
    assert call_link("4915112345678", payload="x" * 512).endswith("x" * 512)
    assert d360calling.call_link is call_link


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"business_number": "+49 151 123"}, "business_number must be a phone number"),
        ({"business_number": BSUID}, "business_number must be a phone number"),
        ({"business_number": 4915112345678}, "business_number must be a phone number"),
        ({"business_number": USER, "payload": "x" * 513}, "payload is 513 characters"),
        ({"business_number": USER, "payload": ""}, "payload must not be empty"),
        ({"business_number": USER, "payload": 7}, "payload must be a str"),
        ({"business_number": USER, "payload": "\ud800"}, "UTF-8"),
    ],
)
def test_bad_call_links_are_refused(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidRequestError, match=fragment):
        call_link(**kwargs)


@given(st.text(st.characters(codec="utf-8"), min_size=1, max_size=512))
def test_a_deep_link_payload_survives_the_round_trip(payload: str) -> None:
    link = urllib.parse.urlsplit(call_link(USER, payload=payload))
    assert (link.scheme, link.netloc, link.path) == ("https", "wa.me", f"/call/{USER}")
    assert urllib.parse.parse_qs(link.query, keep_blank_values=True) == {"biz_payload": [payload]}


# -- against the fake -------------------------------------------------------------------------

STRANGER = "4915100000042"  # no permission, no conversation


@pytest.mark.asyncio
async def test_the_permission_flow_against_the_fake(
    api: d360calling.testing.FakeCallingAPI, client: AsyncClient
) -> None:
    # Outside the 24-hour window the send is accepted and the message fails later: its
    # status webhook carries 131047, which error_from_webhook maps.
    outside = await client.send_call_permission_request(STRANGER, body="May we call you?")
    failed = api.messages[outside.message_id]
    assert (failed.status, failed.error_code) == ("failed", 131047)
    assert isinstance(error_from_webhook(failed.error_code, "failed"), ReEngagementRequiredError)
    sent_template = await client.send_call_permission_template(
        STRANGER, "call_permission_req", "en_US", body_parameters={"first_name": "Ana"}
    )
    assert sent_template.wa_id == STRANGER
    with pytest.raises(PermissionRequestLimitError):  # 1 per 24 hours
        await client.send_call_permission_template(STRANGER, "call_permission_req", "en_US")
    reply_to = api.user_replies_to_permission_request(STRANGER, accept=True, permanent=True)
    assert reply_to == sent_template.message_id  # the reply's context.id
    assert (await client.can_call(STRANGER)).allowed
    api.user_sends_message(STRANGER)  # the window opens, but there is nothing left to ask
    with pytest.raises(PermissionAlreadyPermanentError):
        await client.send_call_permission_request(STRANGER)


def test_a_call_button_against_the_fake(
    api: d360calling.testing.FakeCallingAPI, sync_client: Client
) -> None:
    api.user_sends_message(STRANGER)
    button = sync_client.send_call_button(
        STRANGER, "Talk to us", "Call now", ttl_minutes=60, payload="campaign-7"
    )
    call = api.user_presses_call_button(button.message_id)
    assert call.cta_payload == "campaign-7"
    assert api.messages[button.message_id].ttl_minutes == 60
