"""``WebhookReceiver.place_call`` and its ``OutboundCall``: the true outcome of a
business-initiated call from the fake's webhooks (answered with the user's SDP, declined,
rang out, failed), ``ringing_timeout`` with an injected sleep, ``hangup`` that skips the API
when the call is over, webhooks that arrive before connect's answer, a terminate that arrives
before its connect (``answered()`` never returns for it), bounds and cleanup; the blocking
form through ``BackgroundReceiver`` with the sync ``Client``."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from d360calling import (
    AsyncClient,
    CallDeclinedError,
    CallFailedError,
    CallNotAnsweredError,
    CallUnansweredError,
    ClientClosedError,
    ClientMisuseError,
    InvalidRequestError,
    NoCallPermissionError,
)
from d360calling.models import CallStatus
from d360calling.models.calls import CallRecording
from d360calling.testing import FakeCallingAPI, sample_offer, serve
from d360calling.webhooks import (
    MAX_EARLY_EVENTS,
    BackgroundReceiver,
    CallAnswer,
    CallConnectEvent,
    CallOutcome,
    CallStatusEvent,
    OutboundCall,
    OutboundCallState,
    SyncOutboundCall,
    WebhookReceiver,
)

from .helpers import wait_until

PHONE = "4915112345678"
BSUID = "DE.13491208655302741918"


class ManualSleep:
    """A sleep that ends when the test says: ``fire()`` ends every sleep begun so far."""

    def __init__(self) -> None:
        self.asked: list[float] = []
        self._pending: list[asyncio.Future[None]] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        future = asyncio.get_running_loop().create_future()
        self._pending.append(future)
        await future

    @property
    def sleeping(self) -> int:
        return sum(not future.done() for future in self._pending)

    def fire(self) -> None:
        for future in self._pending:
            if not future.done():
                future.set_result(None)


async def instant(seconds: float) -> None:
    """Every timeout has passed at once."""


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


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeCallingAPI]:
    async with FakeCallingAPI() as api:
        for user in (PHONE, BSUID):
            api.grant_permission(user, notify=False)
        yield api


@pytest_asyncio.fixture
async def client(fake: FakeCallingAPI) -> AsyncIterator[AsyncClient]:
    async with fake.async_client() as async_client:
        yield async_client


async def receiving(fake: FakeCallingAPI, served: Any, **options: Any) -> WebhookReceiver:
    receiver = WebhookReceiver(insecure_no_auth=True, **options)
    fake.webhook_url = await served(receiver)
    return receiver


async def settle(fake: FakeCallingAPI, receiver: WebhookReceiver) -> None:
    """Every webhook the fake made so far delivered and acted on."""
    await fake.drain_webhooks()
    await receiver.drain()


# -- the outcomes -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_answered_returns_the_users_sdp_answer_then_hangup_ends_it(
    fake: FakeCallingAPI, client: AsyncClient, served: Any
) -> None:
    receiver = await receiving(fake, served)
    call = await receiver.place_call(
        client,
        PHONE,
        sample_offer(),
        biz_opaque_callback_data="o-1",
        recording=CallRecording(announcement_language="en_US"),
    )
    assert isinstance(call, OutboundCall)
    assert (call.state, call.outcome, call.user) == (OutboundCallState.RINGING, None, PHONE)
    (connect,) = fake.call_actions("connect")  # the connect options are passed on
    assert connect["biz_opaque_callback_data"] == "o-1"
    assert connect["recording"] == {"status": "ENABLED", "announcement_language": "en_US"}
    assert "transcription" not in connect  # not given: not sent
    fake.user_answers(call.call_id)
    answer = await call.answered(timeout=10)
    assert isinstance(answer, CallAnswer)
    assert answer.sdp == fake.calls[call.call_id].answer_sdp
    assert isinstance(answer.event, CallConnectEvent)
    assert answer.event.call_id == call.call_id
    assert "a=ice-pwd" not in repr(answer)
    assert call.state is OutboundCallState.ANSWERED
    await call.hangup()
    await call.hangup()  # idempotent: one terminate
    assert len(fake.call_actions("terminate")) == 1
    assert await call.ended(timeout=10) is CallOutcome.COMPLETED
    assert (call.state, receiver.followed_calls) == (OutboundCallState.ENDED, 0)
    assert await call.answered() is answer  # it was answered: that stays true


@pytest.mark.parametrize(
    ("act", "error", "outcome"),
    [
        (lambda fake, call_id: fake.user_declines(call_id), CallDeclinedError, "declined"),
        (
            lambda fake, call_id: fake.user_lets_it_ring_out(call_id),
            CallUnansweredError,
            "not_answered",
        ),
        (
            lambda fake, call_id: fake.fail_call(call_id, code=138021, details="no media"),
            CallFailedError,
            "failed",
        ),
    ],
)
@pytest.mark.asyncio
async def test_a_call_that_is_not_answered_raises_its_true_outcome(
    fake: FakeCallingAPI,
    client: AsyncClient,
    served: Any,
    act: Callable[[FakeCallingAPI, str], Any],
    error: type[CallNotAnsweredError],
    outcome: str,
) -> None:
    receiver = await receiving(fake, served)
    call = await receiver.place_call(client, PHONE, sample_offer())
    act(fake, call.call_id)
    with pytest.raises(error) as caught:
        await call.answered(timeout=10)
    assert (caught.value.call_id, caught.value.outcome) == (call.call_id, CallOutcome(outcome))
    if error is CallFailedError:
        assert [e.code for e in caught.value.errors] == [138021]  # type: ignore[attr-defined]
    assert await call.ended(timeout=10) == CallOutcome(outcome)
    await call.hangup()  # over already: no API call
    assert fake.call_actions("terminate") == []
    assert receiver.followed_calls == 0


@pytest.mark.asyncio
async def test_the_user_hanging_up_ends_an_answered_call_without_an_api_call(
    fake: FakeCallingAPI, client: AsyncClient, served: Any
) -> None:
    receiver = await receiving(fake, served)
    call = await receiver.place_call(client, PHONE, sample_offer())
    fake.user_answers(call.call_id)
    await call.answered(timeout=10)
    fake.user_hangs_up(call.call_id)
    assert await call.ended(timeout=10) is CallOutcome.COMPLETED
    assert call.terminate_event is not None
    assert call.terminate_event.duration is not None
    await call.hangup()
    assert fake.call_actions("terminate") == []


@pytest.mark.asyncio
async def test_a_user_known_only_by_a_bsuid_is_called_by_recipient(
    fake: FakeCallingAPI, client: AsyncClient, served: Any
) -> None:
    receiver = await receiving(fake, served)
    call = await receiver.place_call(client, recipient=BSUID, sdp=sample_offer())
    assert fake.call_actions("connect")[0]["recipient"] == BSUID
    fake.user_answers(call.call_id)
    answer = await call.answered(timeout=10)
    assert (answer.event.user, answer.event.to) == (BSUID, None)


# -- ringing_timeout and hangup ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_ringing_timeout_terminates_and_raises_not_answered(
    fake: FakeCallingAPI, client: AsyncClient, served: Any
) -> None:
    sleep = ManualSleep()
    receiver = await receiving(fake, served, sleep=sleep)
    call = await receiver.place_call(client, PHONE, sample_offer(), ringing_timeout=45)
    await asyncio.sleep(0)  # the timer starts
    assert sleep.asked == [45.0]
    answered = asyncio.ensure_future(call.answered())
    await settle(fake, receiver)  # RINGING arrived: still ringing
    assert not answered.done()
    sleep.fire()
    with pytest.raises(CallUnansweredError) as caught:
        await asyncio.wait_for(answered, 10)
    assert caught.value.outcome is CallOutcome.NOT_ANSWERED  # decided before terminate is out
    assert await asyncio.wait_for(call.ended(), 10) is CallOutcome.NOT_ANSWERED
    assert len(fake.call_actions("terminate")) == 1  # terminated through the client
    assert fake.calls[call.call_id].end_reason == "terminated"
    assert receiver.followed_calls == 0  # removed on the ringing timeout
    await settle(fake, receiver)
    await call.hangup()  # over: no second terminate
    assert len(fake.call_actions("terminate")) == 1


@pytest.mark.asyncio
async def test_an_answer_stops_the_ringing_timer(
    fake: FakeCallingAPI, client: AsyncClient, served: Any
) -> None:
    sleep = ManualSleep()
    receiver = await receiving(fake, served, sleep=sleep)
    call = await receiver.place_call(client, PHONE, sample_offer(), ringing_timeout=30)
    fake.user_answers(call.call_id)
    await asyncio.wait_for(call.answered(), 10)
    assert sleep.sleeping == 0  # the timer's sleep was cancelled
    sleep.fire()
    await asyncio.sleep(0)
    assert (call.state, fake.call_actions("terminate")) == (OutboundCallState.ANSWERED, [])


@pytest.mark.asyncio
async def test_hangup_while_ringing_cancels_once_even_when_called_twice_at_once(
    fake: FakeCallingAPI, client: AsyncClient, served: Any
) -> None:
    receiver = await receiving(fake, served)
    call = await receiver.place_call(client, PHONE, sample_offer(), ringing_timeout=None)
    await asyncio.gather(call.hangup(), call.hangup())
    assert len(fake.call_actions("terminate")) == 1
    with pytest.raises(CallUnansweredError) as caught:
        await call.answered()
    assert caught.value.outcome is CallOutcome.CANCELLED
    assert await call.ended() is CallOutcome.CANCELLED


@pytest.mark.asyncio
async def test_a_failed_hangup_raises_and_can_be_tried_again(
    fake: FakeCallingAPI, served: Any
) -> None:
    from d360calling.testing import Fault

    receiver = await receiving(fake, served)
    async with fake.async_client(max_retries=0) as client:
        call = await receiver.place_call(client, PHONE, sample_offer(), ringing_timeout=None)
        fake.inject(Fault(status=503, json={"error": "unavailable"}), action="terminate")
        with pytest.raises(Exception, match="503"):
            await call.hangup()
        assert call.outcome is None  # not over: the call may still ring
        await call.hangup()
    assert len(fake.call_actions("terminate")) == 2
    assert await call.ended() is CallOutcome.CANCELLED


# -- ordering: webhooks before connect's answer, terminate before connect ---------------------


class GatedClient(AsyncClient):
    """An AsyncClient whose connect answer is held back until ``gate`` is set, after the
    call exists: the webhooks of the call can then arrive first."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = asyncio.Event()
        self.placed: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def connect_call(self, *args: Any, **kwargs: Any) -> Any:
        response = await super().connect_call(*args, **kwargs)
        self.placed.set_result(response.call_id)
        await self.gate.wait()
        return response


@pytest.mark.parametrize(
    ("act", "answered"),
    [
        (lambda fake, call_id: fake.user_answers(call_id), True),
        (lambda fake, call_id: fake.user_declines(call_id), False),
    ],
)
@pytest.mark.asyncio
async def test_webhooks_that_arrive_before_connects_answer_are_replayed_to_the_call(
    fake: FakeCallingAPI, served: Any, act: Callable[[FakeCallingAPI, str], Any], answered: bool
) -> None:
    receiver = await receiving(fake, served)
    client = GatedClient(options=fake.client_options())
    async with client:
        placing = asyncio.ensure_future(receiver.place_call(client, PHONE, sample_offer()))
        call_id = await asyncio.wait_for(client.placed, 10)
        act(fake, call_id)
        await settle(fake, receiver)  # RINGING, then connect + ACCEPTED (or REJECTED...)
        assert call_id in receiver._early
        client.gate.set()
        call = await asyncio.wait_for(placing, 10)
    assert receiver._early == {}  # nothing kept once no connect is in flight
    if answered:
        answer = await call.answered(timeout=0.001)  # already known: no waiting
        assert answer.sdp == fake.calls[call_id].answer_sdp
        assert call.accepted_status_seen
    else:
        with pytest.raises(CallDeclinedError):
            await call.answered(timeout=0.001)
        assert receiver.followed_calls == 0


@pytest.mark.asyncio
async def test_a_call_whose_terminate_came_first_is_never_answered(
    fake: FakeCallingAPI, client: AsyncClient, served: Any
) -> None:
    """The greeting-on-a-call-that-ended bug: the user picked up and hung up, and the
    webhooks arrive reversed (terminate, ACCEPTED, connect, RINGING)."""
    receiver = await receiving(fake, served)
    fake.hold_webhooks()
    call = await receiver.place_call(client, PHONE, sample_offer())
    fake.user_answers(call.call_id)
    fake.user_hangs_up(call.call_id)
    fake.release_webhooks(reverse=True)
    await settle(fake, receiver)
    with pytest.raises(CallNotAnsweredError) as caught:
        await call.answered(timeout=0.001)
    assert caught.value.outcome is CallOutcome.COMPLETED  # picked up, but not by us
    assert call.answer is None
    assert call.state is OutboundCallState.ENDED


@pytest.mark.asyncio
async def test_a_duplicated_delivery_changes_nothing(
    fake: FakeCallingAPI, client: AsyncClient, served: Any
) -> None:
    receiver = await receiving(fake, served)
    fake.hold_webhooks()
    call = await receiver.place_call(client, PHONE, sample_offer())
    fake.user_declines(call.call_id)
    fake.release_webhooks(duplicate=True)
    await settle(fake, receiver)
    assert call.outcome is CallOutcome.DECLINED
    assert receiver.stats["duplicates"] == 3  # RINGING, REJECTED, terminate


def test_the_early_events_kept_are_bounded() -> None:
    from d360calling.webhooks import parse_webhook

    from .test_webhooks import status

    receiver = WebhookReceiver(insecure_no_auth=True)
    receiver._connecting = 1
    for i in range(MAX_EARLY_EVENTS + 10):
        (event,) = parse_webhook(status("RINGING", call_id=f"wacid.E{i}"))
        receiver._feed_workflows(event, None)
    assert receiver._early_count == MAX_EARLY_EVENTS
    assert len(receiver._early) == MAX_EARLY_EVENTS
    assert "wacid.E0" not in receiver._early  # the oldest went first


def test_the_accepted_status_alone_does_not_answer() -> None:
    async def run() -> None:
        call = OutboundCall(
            call_id="wacid.A",
            user=PHONE,
            actions=None,  # type: ignore[arg-type]
            ringing_timeout=None,
            sleep=instant,
            on_over=lambda _: None,
        )
        call.feed(CallStatusEvent(call_id="wacid.A", status=CallStatus.ACCEPTED))
        assert (call.state, call.accepted_status_seen) == (OutboundCallState.RINGING, True)
        with pytest.raises(TimeoutError):
            await call.answered(timeout=1)  # `instant`: the timeout passes at once
        # An inbound connect (another call's shape) does not answer it either.
        call.feed(CallConnectEvent(call_id="wacid.A", direction="USER_INITIATED"))
        assert call.state is OutboundCallState.RINGING

    asyncio.run(run())


class HeldActions:
    """Call actions whose terminate waits until ``release`` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.terminated: list[str] = []

    async def connect(self, to: Any, sdp: Any, recipient: Any, options: Any) -> str:
        return "wacid.H"

    async def terminate(self, call_id: str) -> None:
        await self.release.wait()
        self.terminated.append(call_id)


def _bic_connect(call_id: str) -> CallConnectEvent:
    from d360calling.models import CallSession

    session = CallSession(sdp_type="answer", sdp="v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n")
    return CallConnectEvent(call_id=call_id, direction="BUSINESS_INITIATED", session=session)


def test_once_over_or_given_up_no_connect_answers_the_call() -> None:
    from d360calling.webhooks import CallTerminateEvent

    async def run() -> None:
        # Over first (the terminate), then the connect: the handle itself refuses it.
        ended = OutboundCall(
            call_id="wacid.T",
            user=PHONE,
            actions=HeldActions(),
            ringing_timeout=None,
            sleep=instant,
            on_over=lambda _: None,
        )
        ended.feed(CallTerminateEvent(call_id="wacid.T", status="COMPLETED"))
        ended.feed(_bic_connect("wacid.T"))
        with pytest.raises(CallUnansweredError):
            await ended.answered()
        assert ended.answer is None
        # A connect that arrives while our hangup is out does not answer it either.
        actions = HeldActions()
        cancelled = OutboundCall(
            call_id="wacid.H",
            user=PHONE,
            actions=actions,
            ringing_timeout=None,
            sleep=instant,
            on_over=lambda _: None,
        )
        hanging_up = asyncio.ensure_future(cancelled.hangup())
        await asyncio.sleep(0)
        cancelled.feed(_bic_connect("wacid.H"))
        actions.release.set()
        await hanging_up
        with pytest.raises(CallUnansweredError) as caught:
            await cancelled.answered()
        assert caught.value.outcome is CallOutcome.CANCELLED
        assert actions.terminated == ["wacid.H"]

    asyncio.run(run())


# -- bounds, cleanup, bad input ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_followed_calls_are_capped_before_anything_is_sent(
    fake: FakeCallingAPI, client: AsyncClient, served: Any
) -> None:
    receiver = await receiving(fake, served, max_outbound_calls=1)
    first = await receiver.place_call(client, PHONE, sample_offer())
    with pytest.raises(ClientMisuseError, match="max_outbound_calls"):
        await receiver.place_call(client, BSUID, sample_offer())
    assert len(fake.call_actions("connect")) == 1
    await first.hangup()
    second = await receiver.place_call(client, BSUID, sample_offer())  # room again
    await second.hangup()


@pytest.mark.asyncio
async def test_calls_that_never_get_a_webhook_leave_nothing_behind(
    fake: FakeCallingAPI, client: AsyncClient
) -> None:
    receiver = WebhookReceiver(insecure_no_auth=True, sleep=instant)  # never served
    users = [f"49151000{i:05d}" for i in range(20)]
    for user in users:
        fake.grant_permission(user, notify=False)
    calls = [await receiver.place_call(client, user, sample_offer()) for user in users]
    await asyncio.gather(*(call.ended() for call in calls))  # every ringing_timeout passed
    assert {call.outcome for call in calls} == {CallOutcome.NOT_ANSWERED}
    assert (receiver.followed_calls, receiver._early, receiver._connecting) == (0, {}, 0)
    assert len(fake.call_actions("terminate")) == len(users)
    # One nobody holds and no timer holds (no ringing_timeout) goes with its handle.
    fake.grant_permission("4915199999999", notify=False)
    await receiver.place_call(client, "4915199999999", sample_offer(), ringing_timeout=None)
    gc.collect()
    assert receiver.followed_calls == 0


@pytest.mark.asyncio
async def test_a_refused_connect_raises_and_follows_nothing(
    fake: FakeCallingAPI, client: AsyncClient, served: Any
) -> None:
    receiver = await receiving(fake, served)
    with pytest.raises(NoCallPermissionError):
        await receiver.place_call(client, "4915100000077", sample_offer())
    assert (receiver.followed_calls, receiver._connecting, receiver._early) == (0, 0, {})


@pytest.mark.asyncio
async def test_closing_the_receiver_ends_the_waits_of_a_ringing_call(
    fake: FakeCallingAPI, client: AsyncClient, served: Any
) -> None:
    sleep = ManualSleep()
    receiver = await receiving(fake, served, sleep=sleep)
    call = await receiver.place_call(client, PHONE, sample_offer(), ringing_timeout=60)
    answered = asyncio.ensure_future(call.answered())
    await asyncio.sleep(0)
    await receiver.close()
    with pytest.raises(ClientClosedError):
        await asyncio.wait_for(answered, 10)
    with pytest.raises(ClientClosedError):
        await call.ended()
    assert sleep.sleeping == 0  # its ringing timer is gone: nothing is sent later
    with pytest.raises(ClientClosedError):
        await receiver.place_call(client, PHONE, sample_offer())


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"to": PHONE}, "sdp"),
        ({"sdp": "v=0\r\n"}, "recipient"),
        ({"to": "alice", "sdp": "v=0\r\n"}, "to"),
        ({"recipient": "4915112345678x", "sdp": "v=0\r\n"}, "recipient"),
        ({"to": PHONE, "sdp": "v=0\r\n", "ringing_timeout": 0}, "ringing_timeout"),
        ({"to": PHONE, "sdp": "v=0\r\n", "ringing_timeout": float("inf")}, "ringing_timeout"),
        ({"to": PHONE, "sdp": "v=0\r\n", "ringing_timeout": "60"}, "ringing_timeout"),
        ({"to": PHONE, "recipient": BSUID, "sdp": sample_offer()}, "recipient"),
    ],
)
@pytest.mark.asyncio
async def test_bad_arguments_are_refused_before_anything_is_sent(
    fake: FakeCallingAPI, client: AsyncClient, arguments: dict[str, Any], field: str
) -> None:
    receiver = WebhookReceiver(insecure_no_auth=True)
    with pytest.raises(InvalidRequestError, match=field):
        await receiver.place_call(client, **arguments)
    assert fake.call_actions("connect") == []
    assert (receiver.followed_calls, receiver._connecting) == (0, 0)


# -- the blocking form ------------------------------------------------------------------------


def test_the_blocking_form_with_the_sync_client(d360_fake_api: FakeCallingAPI) -> None:
    fake = d360_fake_api
    fake.grant_permission(PHONE, notify=False)
    receiver = WebhookReceiver(insecure_no_auth=True)
    with BackgroundReceiver(receiver) as served, fake.client() as client:
        fake.webhook_url = served.url
        call = served.place_call(client, PHONE, sample_offer(), ringing_timeout=60)
        assert isinstance(call, SyncOutboundCall)
        assert call.state is OutboundCallState.RINGING
        # The user picks up from another thread while this one blocks in answered().
        answering = threading.Thread(target=lambda: fake.user_answers(call.call_id))
        answering.start()
        answer = call.answered(timeout=10)
        answering.join(10)
        assert answer.sdp == fake.calls[call.call_id].answer_sdp
        call.hangup()
        call.hangup()
        assert call.ended(timeout=10) is CallOutcome.COMPLETED
        assert len(fake.call_actions("terminate")) == 1
        # Declined, and the ringing timeout, the same way.
        declined = served.place_call(client, PHONE, sample_offer())
        fake.user_declines(declined.call_id)
        with pytest.raises(CallDeclinedError):
            declined.answered(timeout=10)
    assert receiver.followed_calls == 0


def test_the_blocking_ringing_timeout_terminates_through_the_sync_client(
    d360_fake_api: FakeCallingAPI,
) -> None:
    fake = d360_fake_api
    fake.grant_permission(PHONE, notify=False)
    receiver = WebhookReceiver(insecure_no_auth=True, sleep=instant)
    with BackgroundReceiver(receiver) as served, fake.client() as client:
        fake.webhook_url = served.url
        call = served.place_call(client, PHONE, sample_offer(), ringing_timeout=5)
        with pytest.raises(CallUnansweredError):
            call.answered()
        assert call.ended() is CallOutcome.NOT_ANSWERED
        assert wait_until(lambda: fake.calls[call.call_id].end_reason == "terminated")


def test_stopping_ends_a_blocked_answered_with_a_typed_error(
    d360_fake_api: FakeCallingAPI,
) -> None:
    fake = d360_fake_api
    fake.grant_permission(PHONE, notify=False)
    errors: list[BaseException] = []
    with fake.client() as client:
        with BackgroundReceiver(WebhookReceiver(insecure_no_auth=True)) as served:
            call = served.place_call(client, PHONE, sample_offer(), ringing_timeout=None)

            def wait() -> None:
                try:
                    call.answered()
                except BaseException as exc:
                    errors.append(exc)

            waiter = threading.Thread(target=wait)
            waiter.start()
            assert wait_until(lambda: waiter.is_alive())
        waiter.join(10)
        assert [type(error) for error in errors] == [ClientClosedError]
        with pytest.raises(ClientClosedError):
            call.hangup()
        client.terminate_call(call.call_id)  # the call itself is the caller's to end


def test_a_blocking_method_on_the_receivers_own_thread_is_refused() -> None:
    refused: list[BaseException] = []
    with BackgroundReceiver(WebhookReceiver(insecure_no_auth=True)) as served:

        async def inside() -> None:
            try:
                served.wait_for_permission(PHONE, timeout=1)
            except ClientMisuseError as exc:
                refused.append(exc)

        served.run(inside())
    assert len(refused) == 1


def test_background_receiver_arguments_and_lifecycle() -> None:
    receiver = WebhookReceiver(insecure_no_auth=True)
    for bad in ({"port": -1}, {"port": "80"}, {"path": "webhook"}, {"stop_timeout": 0}):
        with pytest.raises(InvalidRequestError):
            BackgroundReceiver(receiver, **bad)
    served = BackgroundReceiver(receiver)
    with pytest.raises(ClientMisuseError):
        _ = served.url
    with served:
        assert served.url.startswith("http://127.0.0.1:")
        assert served.port != 0
        with pytest.raises(ClientMisuseError):
            served.start()
    served.stop()  # idempotent
