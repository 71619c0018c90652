"""``WebhookReceiver.wait_for_permission``: resolved by the user's permission reply (matched by
phone number or BSUID, preferring the request's ``context.id``), by a failed status of the
request message, or by its timeout; resolved once; bounded, and leaving nothing behind.
End to end against the fake (async, and blocking through ``BackgroundReceiver``), and with
hand-made replies for the cases the fake does not produce. Timeouts come from an injected
sleep: nothing here waits for real except a delivery on loopback."""

from __future__ import annotations

import asyncio
import datetime
import json
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from d360calling import (
    ClientClosedError,
    ClientMisuseError,
    InvalidRequestError,
    MessageUndeliverableError,
)
from d360calling.testing import FakeCallingAPI, serve
from d360calling.webhooks import (
    BackgroundReceiver,
    MessageStatusEvent,
    PermissionOutcome,
    PermissionReplyEvent,
    PermissionWaitResult,
    WebhookReceiver,
)

from .helpers import wait_until
from .test_webhooks import NOW, envelope

PHONE = "4915112345678"
BSUID = "DE.13491208655302741918"
REQUEST = "wamid.REQUEST-1"


async def instant(seconds: float) -> None:
    """A sleep that is over at once: every timeout has passed."""


def reply(
    response: str = "accept",
    *,
    context: str | None = REQUEST,
    phone: str | None = PHONE,
    bsuid: str | None = None,
    permanent: bool = False,
    expires: Any = None,
    source: str = "user_action",
    message_id: str = "wamid.REPLY-1",
    timestamp: int = NOW,
) -> bytes:
    body: dict[str, Any] = {
        "response": response,
        "is_permanent": permanent,
        "response_source": source,
    }
    if expires is not None:
        body["expiration_timestamp"] = expires
    item: dict[str, Any] = {
        "id": message_id,
        "timestamp": str(timestamp),
        "type": "interactive",
        "interactive": {"type": "call_permission_reply", "call_permission_reply": body},
    }
    if phone is not None:
        item["from"] = phone
    if bsuid is not None:
        item["from_user_id"] = bsuid
    if context is not None:
        item["context"] = {"id": context}
    return envelope("messages", {"messages": [item]})


def failed_status(message_id: str = REQUEST, code: int = 131026) -> bytes:
    item = {
        "id": message_id,
        "status": "failed",
        "timestamp": str(NOW),
        "recipient_id": PHONE,
        "errors": [{"code": code, "title": "Message undeliverable"}],
    }
    return envelope("messages", {"statuses": [item]})


@pytest_asyncio.fixture
async def served() -> AsyncIterator[Callable[[WebhookReceiver], Any]]:
    runners: list[web.AppRunner] = []

    async def serve_receiver(receiver: WebhookReceiver) -> str:
        runner, port = await serve(receiver.app())
        runners.append(runner)
        return f"http://127.0.0.1:{port}/webhook"

    yield serve_receiver
    for runner in runners:
        await runner.cleanup()


async def post(url: str, body: bytes) -> None:
    async with aiohttp.ClientSession() as session, session.post(url, data=body) as response:
        assert response.status == 200


async def registered(receiver: WebhookReceiver, count: int = 1) -> None:
    """Let started waits register (each needs a loop step or two)."""
    for _ in range(1_000):
        if receiver.waiting >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{receiver.waiting} waits registered, not {count}")


def waiting_for(receiver: WebhookReceiver, *args: Any, **kwargs: Any) -> asyncio.Task[Any]:
    return asyncio.ensure_future(receiver.wait_for_permission(*args, **kwargs))


# -- against the fake -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "permanent", "outcome"),
    [
        (True, False, PermissionOutcome.GRANTED_TEMPORARY),
        (True, True, PermissionOutcome.GRANTED_PERMANENT),
        (False, False, PermissionOutcome.DECLINED),
    ],
)
@pytest.mark.asyncio
async def test_the_users_reply_to_the_request_resolves_the_wait(
    served: Any, accept: bool, permanent: bool, outcome: PermissionOutcome
) -> None:
    async with FakeCallingAPI() as fake, fake.async_client() as client:
        receiver = WebhookReceiver(insecure_no_auth=True)
        fake.webhook_url = await served(receiver)
        fake.user_sends_message(PHONE)  # opens the 24 h window for the free-form request
        sent = await client.send_call_permission_request(PHONE, body="May we call you?")
        wait = waiting_for(receiver, PHONE, timeout=10, message_id=sent.message_id)
        await registered(receiver)
        fake.user_replies_to_permission_request(PHONE, accept=accept, permanent=permanent)
        result = await wait
    assert isinstance(result, PermissionWaitResult)
    assert (result.outcome, result.user, result.message_id) == (outcome, PHONE, sent.message_id)
    assert result.granted is accept
    assert isinstance(result.event, PermissionReplyEvent)
    assert result.event.context_id == sent.message_id
    if outcome is PermissionOutcome.GRANTED_TEMPORARY:
        assert result.expires_at is not None
        assert result.expires_at.tzinfo is not None  # aware
        left = result.expires_at - datetime.datetime.now(datetime.timezone.utc)
        assert datetime.timedelta(days=6) < left <= datetime.timedelta(days=7, minutes=1)
    else:
        assert result.expires_at is None
    assert receiver.waiting == 0


@pytest.mark.asyncio
async def test_a_failed_request_message_fails_the_wait_with_its_typed_error(served: Any) -> None:
    async with FakeCallingAPI() as fake, fake.async_client() as client:
        receiver = WebhookReceiver(insecure_no_auth=True)
        fake.webhook_url = await served(receiver)
        fake.add_user(PHONE, old_client=True)  # too old for the request: status 131026
        fake.user_sends_message(PHONE)
        sent = await client.send_call_permission_request(PHONE)
        result = await receiver.wait_for_permission(PHONE, timeout=10, message_id=sent.message_id)
    assert result.outcome is PermissionOutcome.FAILED
    assert not result.granted
    assert isinstance(result.error, MessageUndeliverableError)
    assert isinstance(result.event, MessageStatusEvent)


@pytest.mark.asyncio
async def test_a_user_known_only_by_a_bsuid_is_waited_for_by_it(served: Any) -> None:
    async with FakeCallingAPI() as fake, fake.async_client() as client:
        receiver = WebhookReceiver(insecure_no_auth=True)
        fake.webhook_url = await served(receiver)
        fake.user_sends_message(BSUID)
        sent = await client.send_call_permission_request(BSUID)
        wait = waiting_for(receiver, BSUID, timeout=10)  # no message_id: by the user alone
        await registered(receiver)
        fake.user_replies_to_permission_request(BSUID)
        result = await wait
    assert result.outcome is PermissionOutcome.GRANTED_TEMPORARY
    assert isinstance(result.event, PermissionReplyEvent)
    assert (result.event.from_, result.event.from_user_id) == (None, BSUID)
    assert result.event.context_id == sent.message_id


def test_the_blocking_form_with_the_sync_client(d360_fake_api: FakeCallingAPI) -> None:
    fake = d360_fake_api
    with (
        BackgroundReceiver(WebhookReceiver(insecure_no_auth=True)) as served,
        fake.client() as client,
    ):
        fake.webhook_url = served.url
        fake.user_sends_message(PHONE)
        sent = client.send_call_permission_request(PHONE, body="May we call you?")
        # The reply comes from another thread once the wait is registered.
        replier = threading.Thread(
            target=lambda: (
                wait_until(lambda: served.receiver.waiting == 1)
                and fake.user_replies_to_permission_request(PHONE, permanent=True)
            )
        )
        replier.start()
        result = served.wait_for_permission(PHONE, timeout=10)
        replier.join(10)
        assert result.outcome is PermissionOutcome.GRANTED_PERMANENT
        assert result.event is not None
        assert result.event.message_id != sent.message_id  # the reply's own id ...
        assert isinstance(result.event, PermissionReplyEvent)
        assert result.event.context_id == sent.message_id  # ... naming the request
        # A reply that came before the wait still answers a wait that names its request.
        other = "4915100000009"
        fake.user_sends_message(other)
        second = client.send_call_permission_request(other)
        fake.user_replies_to_permission_request(other, accept=False)
        fake.wait_for_webhooks()
        assert wait_until(lambda: served.receiver.pending == 0)
        early = served.wait_for_permission(other, timeout=10, message_id=second.message_id)
        assert early.outcome is PermissionOutcome.DECLINED
        assert served.receiver.waiting == 0


def test_stopping_the_background_receiver_ends_a_blocked_wait() -> None:
    errors: list[BaseException] = []
    with BackgroundReceiver(WebhookReceiver(insecure_no_auth=True)) as served:

        def wait() -> None:
            try:
                served.wait_for_permission(PHONE, timeout=None)
            except BaseException as exc:
                errors.append(exc)

        waiter = threading.Thread(target=wait)
        waiter.start()
        assert wait_until(lambda: served.receiver.waiting == 1)
    waiter.join(10)
    assert not waiter.is_alive()
    assert [type(error) for error in errors] == [ClientClosedError]
    with pytest.raises(ClientClosedError):
        served.wait_for_permission(PHONE, timeout=1)


# -- matching ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_reply_to_another_request_does_not_end_a_wait_for_this_one(served: Any) -> None:
    receiver = WebhookReceiver(insecure_no_auth=True)
    url = await served(receiver)
    named = waiting_for(receiver, PHONE, timeout=10, message_id=REQUEST)
    anyone = waiting_for(receiver, PHONE, timeout=10)
    await registered(receiver, 2)
    await post(url, reply(context="wamid.OTHER-REQUEST"))
    assert (await anyone).outcome is PermissionOutcome.GRANTED_TEMPORARY
    await receiver.drain()
    assert not named.done()  # the reply answered another request
    await post(url, reply("reject", context=REQUEST, message_id="wamid.REPLY-2"))
    assert (await named).outcome is PermissionOutcome.DECLINED


@pytest.mark.parametrize(
    ("context", "response", "source", "outcome"),
    [
        # Revoked automatically (4 unanswered calls): no context.
        (None, "reject", "automatic", PermissionOutcome.DECLINED),
        # Granted from the business profile: no context.
        (None, "accept", "user_action", PermissionOutcome.GRANTED_TEMPORARY),
        # Granted automatically after the user called: the call's wacid.
        ("wacid.CALLED", "accept", "automatic", PermissionOutcome.GRANTED_TEMPORARY),
    ],
)
@pytest.mark.asyncio
async def test_a_reply_that_answers_no_request_ends_every_wait_of_the_user(
    served: Any, context: str | None, response: str, source: str, outcome: PermissionOutcome
) -> None:
    receiver = WebhookReceiver(insecure_no_auth=True)
    url = await served(receiver)
    wait = waiting_for(receiver, PHONE, timeout=10, message_id=REQUEST)
    await registered(receiver)
    await post(url, reply(response, context=context, source=source, expires=str(NOW + 3600)))
    result = await wait
    assert result.outcome is outcome
    if result.granted:
        assert result.expires_at == datetime.datetime.fromtimestamp(
            NOW + 3600, datetime.timezone.utc
        )


@pytest.mark.parametrize(
    ("waited_for", "sent"),
    [
        (PHONE, {"phone": PHONE}),
        ("+" + PHONE, {"phone": PHONE}),
        (BSUID, {"phone": None, "bsuid": BSUID}),
        (BSUID, {"phone": PHONE, "bsuid": BSUID}),
        (PHONE, {"phone": PHONE, "bsuid": BSUID}),
    ],
)
@pytest.mark.asyncio
async def test_the_user_is_matched_by_whichever_id_the_reply_carries(
    served: Any, waited_for: str, sent: dict[str, Any]
) -> None:
    receiver = WebhookReceiver(insecure_no_auth=True)
    url = await served(receiver)
    wait = waiting_for(receiver, waited_for, timeout=10)
    other = waiting_for(receiver, "4915100000000", timeout=10)
    await registered(receiver, 2)
    await post(url, reply(**sent))
    assert (await wait).outcome is PermissionOutcome.GRANTED_TEMPORARY
    await receiver.drain()
    assert not other.done()  # another user's wait
    other.cancel()


@pytest.mark.asyncio
async def test_a_duplicate_reply_resolves_once_and_no_later_wait(served: Any) -> None:
    receiver = WebhookReceiver(insecure_no_auth=True)
    url = await served(receiver)
    results: list[PermissionWaitResult] = []

    async def wait() -> None:
        results.append(await receiver.wait_for_permission(PHONE, timeout=10))

    first = asyncio.ensure_future(wait())
    await registered(receiver)
    await post(url, reply())
    await first
    later = waiting_for(receiver, PHONE, timeout=10)
    await registered(receiver)
    await post(url, reply())  # the redelivery
    await receiver.drain()
    assert receiver.stats["duplicates"] == 1
    assert not later.done()  # an old reply does not answer a wait that started after it
    assert len(results) == 1
    later.cancel()


@pytest.mark.asyncio
async def test_an_answer_that_came_first_answers_a_wait_naming_its_request(served: Any) -> None:
    receiver = WebhookReceiver(insecure_no_auth=True, sleep=instant)
    url = await served(receiver)
    await post(url, reply(permanent=True))
    await post(url, failed_status("wamid.FAILED-REQUEST"))
    await receiver.drain()
    named = await receiver.wait_for_permission(PHONE, timeout=5, message_id=REQUEST)
    assert named.outcome is PermissionOutcome.GRANTED_PERMANENT
    failed = await receiver.wait_for_permission(PHONE, timeout=5, message_id="wamid.FAILED-REQUEST")
    assert failed.outcome is PermissionOutcome.FAILED
    assert isinstance(failed.error, MessageUndeliverableError)
    # Without the request's id only what comes later counts.
    unnamed = await receiver.wait_for_permission(PHONE, timeout=5)
    assert unnamed.outcome is PermissionOutcome.TIMED_OUT


@pytest.mark.asyncio
async def test_a_failed_status_of_another_message_or_a_delivered_one_ends_nothing(
    served: Any,
) -> None:
    receiver = WebhookReceiver(insecure_no_auth=True)
    url = await served(receiver)
    wait = waiting_for(receiver, PHONE, timeout=10, message_id=REQUEST)
    await registered(receiver)
    await post(url, failed_status("wamid.A-TEXT"))
    delivered = json.loads(failed_status())
    status = delivered["entry"][0]["changes"][0]["value"]["statuses"][0]
    status["status"], status["errors"] = "delivered", []
    await post(url, json.dumps(delivered).encode())
    await receiver.drain()
    assert not wait.done()
    await post(url, failed_status(code=131047))
    result = await wait
    assert result.outcome is PermissionOutcome.FAILED
    assert result.error is not None
    assert result.error.code == 131047


@pytest.mark.asyncio
async def test_a_stale_reply_ends_no_wait(served: Any) -> None:
    receiver = WebhookReceiver(insecure_no_auth=True, max_age=60)
    url = await served(receiver)
    wait = waiting_for(receiver, PHONE, timeout=10)
    await registered(receiver)
    await post(url, reply(timestamp=NOW - 3600))  # an hour old: perhaps a replay
    await receiver.drain()
    assert not wait.done()
    wait.cancel()


# -- timeouts, bounds, cleanup ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_timeout_is_waited_out_with_the_receivers_sleep() -> None:
    asked: list[float] = []

    async def sleep(seconds: float) -> None:
        asked.append(seconds)

    receiver = WebhookReceiver(insecure_no_auth=True, sleep=sleep)
    result = await receiver.wait_for_permission(PHONE, timeout=600, message_id=REQUEST)
    assert (result.outcome, result.user, result.message_id, result.event) == (
        PermissionOutcome.TIMED_OUT,
        PHONE,
        REQUEST,
        None,
    )
    assert asked == [600.0]


@pytest.mark.asyncio
async def test_ten_thousand_timed_out_waits_leave_nothing_behind() -> None:
    receiver = WebhookReceiver(insecure_no_auth=True, sleep=instant)
    before = len(asyncio.all_tasks())
    results = await asyncio.gather(
        *(
            receiver.wait_for_permission(f"49151{i:08d}", timeout=1, message_id=f"wamid.{i}")
            for i in range(10_000)
        )
    )
    assert {result.outcome for result in results} == {PermissionOutcome.TIMED_OUT}
    await asyncio.sleep(0)  # the cancelled sleepers unwind
    waiters = receiver._waiters
    assert (receiver.waiting, waiters._by_user, waiters._by_message) == (0, {}, {})
    assert len(asyncio.all_tasks()) == before


@pytest.mark.asyncio
async def test_a_cancelled_wait_is_removed() -> None:
    receiver = WebhookReceiver(insecure_no_auth=True)
    wait = waiting_for(receiver, PHONE, timeout=None, message_id=REQUEST)
    await registered(receiver)
    wait.cancel()
    with pytest.raises(asyncio.CancelledError):
        await wait
    assert (receiver.waiting, receiver._waiters._by_user, receiver._waiters._by_message) == (
        0,
        {},
        {},
    )


@pytest.mark.asyncio
async def test_waits_are_capped() -> None:
    receiver = WebhookReceiver(insecure_no_auth=True, max_waiters=2)
    waits = [waiting_for(receiver, PHONE, timeout=None) for _ in range(2)]
    await registered(receiver, 2)
    with pytest.raises(ClientMisuseError, match="max_waiters"):
        await receiver.wait_for_permission(PHONE, timeout=1)
    for wait in waits:
        wait.cancel()
    await asyncio.gather(*waits, return_exceptions=True)
    third = waiting_for(receiver, PHONE, timeout=None)
    await registered(receiver)  # room again
    third.cancel()


@pytest.mark.asyncio
async def test_the_answers_remembered_are_bounded() -> None:
    from d360calling.webhooks import MAX_REMEMBERED_ANSWERS, parse_webhook

    receiver = WebhookReceiver(insecure_no_auth=True)
    for i in range(MAX_REMEMBERED_ANSWERS + 50):
        (event,) = parse_webhook(reply(context=f"wamid.R{i}", message_id=f"wamid.A{i}"))
        assert isinstance(event, PermissionReplyEvent)
        receiver._waiters.reply(event)
    assert receiver._waiters.remembered == MAX_REMEMBERED_ANSWERS


@pytest.mark.asyncio
async def test_closing_the_receiver_ends_every_wait_with_a_typed_error() -> None:
    receiver = WebhookReceiver(insecure_no_auth=True)
    waits = [waiting_for(receiver, PHONE, timeout=None), waiting_for(receiver, BSUID, timeout=5)]
    await registered(receiver, 2)
    await receiver.close()
    for outcome in await asyncio.gather(*waits, return_exceptions=True):
        assert isinstance(outcome, ClientClosedError)
    assert receiver.waiting == 0
    with pytest.raises(ClientClosedError):
        await receiver.wait_for_permission(PHONE, timeout=1)


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"user": "alice"}, "user"),
        ({"user": "US.abc"}, "user"),
        ({"user": 4915112345678}, "user"),
        ({"user": PHONE, "timeout": -1}, "timeout"),
        ({"user": PHONE, "timeout": float("nan")}, "timeout"),
        ({"user": PHONE, "timeout": "10"}, "timeout"),
        ({"user": PHONE, "message_id": ""}, "message_id"),
        ({"user": PHONE, "message_id": "wamid." + "x" * 300}, "message_id"),
        ({"user": PHONE, "message_id": 5}, "message_id"),
    ],
)
@pytest.mark.asyncio
async def test_bad_arguments_are_refused_naming_the_field(
    arguments: dict[str, Any], field: str
) -> None:
    receiver = WebhookReceiver(insecure_no_auth=True)
    user = arguments.pop("user")
    arguments.setdefault("timeout", 1)
    with pytest.raises(InvalidRequestError, match=field):
        await receiver.wait_for_permission(user, **arguments)
    assert receiver.waiting == 0
