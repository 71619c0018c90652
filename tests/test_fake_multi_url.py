"""The fake's webhooks to a fleet: several URLs round-robin, a failed attempt retried on the
next URL, seeded duplicates to another URL and swaps, and several deliveries in flight."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from d360calling.errors import InvalidRequestError
from d360calling.testing import FakeCallingAPI, serve
from d360calling.testing._delivery import MAX_WEBHOOK_CONCURRENCY, FleetDelivery

from .helpers import WebhookSink, closed_port


def caller(i: int) -> str:
    return f"4915100{i:06d}"


def call_ids(sink: WebhookSink) -> list[str]:
    """The call id of each webhook the sink received, in arrival order."""
    return [
        json.loads(body)["entry"][0]["changes"][0]["value"]["calls"][0]["id"]
        for _, body in sink.received
    ]


def produced_ids(fake: FakeCallingAPI) -> list[str]:
    return [w.value["calls"][0]["id"] for w in fake.webhooks]


@pytest_asyncio.fixture
async def sinks() -> AsyncIterator[list[WebhookSink]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(WebhookSink()) for _ in range(3)]


def draws(seed: int, count: int, fleet: FleetDelivery) -> list[tuple[bool, bool]]:
    """(duplicate, out_of_order) of each webhook, as FleetDelivery documents its draws."""
    rng = random.Random(seed)
    return [
        (rng.random() < fleet.duplicate, rng.random() < fleet.out_of_order) for _ in range(count)
    ]


# -- round-robin, and where a failed attempt goes ---------------------------------------


@pytest.mark.asyncio
async def test_webhooks_go_round_robin_across_the_urls(sinks: list[WebhookSink]) -> None:
    urls = [s.url for s in sinks]
    async with FakeCallingAPI(webhook_urls=urls) as fake:
        assert fake.webhook_urls == tuple(urls)
        assert fake.webhook_url == urls[0]
        for i in range(9):
            fake.user_calls(caller(i))
        await fake.drain_webhooks()
    produced = produced_ids(fake)
    assert len(produced) == 9
    for k, sink in enumerate(sinks):
        assert call_ids(sink) == produced[k::3]
    assert [w.url for w in fake.webhooks] == [urls[i % 3] for i in range(9)]
    assert all(w.delivered and w.attempts == 1 for w in fake.webhooks)


@pytest.mark.asyncio
async def test_a_dead_urls_webhooks_are_retried_on_the_next_url(
    sinks: list[WebhookSink],
) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/hook"
    urls = [sinks[0].url, dead, sinks[1].url]
    pauses: list[float] = []

    async def no_wait(seconds: float) -> None:
        pauses.append(seconds)

    async with FakeCallingAPI(
        webhook_urls=urls, webhook_retries=2, webhook_retry_delay=0.5
    ) as fake:
        fake._sender.sleep = no_wait  # the pauses are recorded, not waited
        for i in range(9):
            fake.user_calls(caller(i))
        await fake.drain_webhooks()
    produced = produced_ids(fake)
    assert all(w.delivered for w in fake.webhooks)
    assert sorted(call_ids(sinks[0]) + call_ids(sinks[1])) == sorted(produced)
    assert call_ids(sinks[0]) == produced[0::3]
    # The dead URL's share (the 2nd, 5th, 8th) went on to the URL after it, after one pause.
    assert sorted(call_ids(sinks[1])) == sorted(produced[1::3] + produced[2::3])
    for i, delivery in enumerate(fake.webhooks):
        expected = (2, urls[2]) if i % 3 == 1 else (1, urls[i % 3])
        assert (delivery.attempts, delivery.url) == expected
    assert pauses == [0.5, 0.5, 0.5]  # the backoff of one URL, as before


@pytest.mark.asyncio
async def test_an_error_status_or_a_timeout_moves_the_delivery_to_the_next_url() -> None:
    never = asyncio.Event()

    async def stall(request: web.Request) -> web.Response:
        await never.wait()  # never answers; cancelled when the receiver closes
        return web.Response()  # pragma: no cover

    app = web.Application()
    app.router.add_post("/hook", stall)
    stalling = await serve(app, handler_cancellation=True, shutdown_timeout=0.5)
    stall_url = stalling.url + "/hook"
    try:
        async with (
            WebhookSink(503, 503) as failing,
            WebhookSink() as good,
            FakeCallingAPI(
                webhook_urls=[failing.url, stall_url, good.url],
                webhook_retries=1,
                webhook_retry_delay=0,
                webhook_timeout=0.2,
            ) as fake,
        ):
            for i in range(2):
                fake.user_calls(caller(i))
            await fake.drain_webhooks()
    finally:
        await stalling.close()
    first, second = fake.webhooks
    assert (first.attempts, first.url, first.status, first.delivered) == (
        2,
        stall_url,
        None,
        False,
    )
    assert first.error is not None
    assert "Timeout" in first.error
    assert (second.attempts, second.url, second.delivered) == (2, good.url, True)
    assert len(failing.received) == 1  # the 503 of the first attempt of the first one
    assert call_ids(good) == [second.value["calls"][0]["id"]]


# -- fleet decisions from a seed --------------------------------------------------------


@pytest.mark.asyncio
async def test_a_seeded_share_is_duplicated_to_another_url(sinks: list[WebhookSink]) -> None:
    fleet = FleetDelivery(duplicate=0.3, seed=7)
    expected = draws(7, 60, fleet)
    copies = sum(dup for dup, _ in expected)
    assert 0 < copies < 60  # the seed exercises both branches
    urls = [s.url for s in sinks]
    async with FakeCallingAPI(webhook_urls=urls, fleet_delivery=fleet) as fake:
        assert fake.fleet_delivery == fleet
        calls = [fake.user_calls(caller(i)).id for i in range(60)]
        await fake.drain_webhooks()
    assert len(fake.webhooks) == 60 + copies
    assert fake._sender.duplicated == copies
    assert sum(len(s.received) for s in sinks) == 60 + copies
    for i, call_id in enumerate(calls):
        seen_at = [k for k, sink in enumerate(sinks) for cid in call_ids(sink) if cid == call_id]
        if expected[i][0]:
            assert sorted(seen_at) == sorted([i % 3, (i + 1) % 3])  # two URLs, not one
        else:
            assert seen_at == [i % 3]


@pytest.mark.asyncio
async def test_a_seeded_share_is_swapped_with_the_next_one() -> None:
    fleet = FleetDelivery(out_of_order=0.4, seed=3)
    expected_draws = draws(3, 20, fleet)
    # FleetDelivery's rule: the one after a marked webhook goes before it, and is not itself
    # swapped again.
    order: list[int] = []
    swap_with: int | None = None
    for i, (_, marked) in enumerate(expected_draws):
        if swap_with is not None:
            order.insert(order.index(swap_with), i)
            swap_with = None
        else:
            order.append(i)
            swap_with = i if marked else None
    assert order != sorted(order)
    async with (
        WebhookSink() as sink,
        FakeCallingAPI(webhook_urls=[sink.url], fleet_delivery=fleet) as fake,
    ):
        fake.hold_webhooks()
        calls = [fake.user_calls(caller(i)).id for i in range(20)]
        fake.release_webhooks()
        await fake.drain_webhooks()
    assert call_ids(sink) == [calls[i] for i in order]
    assert fake._sender.reordered == sum(1 for a, b in itertools.pairwise(order) if a > b)


@pytest.mark.asyncio
async def test_the_same_seed_makes_the_same_decisions() -> None:
    async def run(seed: int) -> list[list[int]]:
        async with AsyncExitStack() as stack:
            sinks = [await stack.enter_async_context(WebhookSink()) for _ in range(2)]
            fake = await stack.enter_async_context(
                FakeCallingAPI(
                    webhook_urls=[s.url for s in sinks],
                    fleet_delivery=FleetDelivery(duplicate=0.25, out_of_order=0.25, seed=seed),
                )
            )
            fake.hold_webhooks()
            calls = [fake.user_calls(caller(i)).id for i in range(40)]
            fake.release_webhooks()
            await fake.drain_webhooks()
            return [[calls.index(cid) for cid in call_ids(s)] for s in sinks]

    first = await run(11)
    assert await run(11) == first
    assert await run(12) != first


# -- concurrency ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_several_deliveries_are_in_flight_at_once() -> None:
    concurrency = 4
    in_flight = 0
    most = 0
    all_in = asyncio.Event()

    async def gate(request: web.Request) -> web.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        if in_flight >= concurrency:
            all_in.set()
        try:
            # Answered only once four are in at the same time (the bound is a failsafe: with
            # one at a time the first would wait here for nothing).
            await asyncio.wait_for(all_in.wait(), 10)
        finally:
            in_flight -= 1
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", gate)
    served = await serve(app)
    try:
        async with FakeCallingAPI(
            webhook_url=served.url + "/hook", webhook_concurrency=concurrency
        ) as fake:
            for i in range(12):
                fake.user_calls(caller(i))
            await fake.drain_webhooks(timeout=30)
    finally:
        await served.close()
    assert most == concurrency
    assert all(w.delivered for w in fake.webhooks)


@pytest.mark.asyncio
async def test_one_at_a_time_keeps_the_order() -> None:
    in_flight = 0
    most = 0
    arrived: list[str] = []

    async def one(request: web.Request) -> web.Response:
        nonlocal in_flight, most
        arrived.append((await request.json())["entry"][0]["changes"][0]["value"]["calls"][0]["id"])
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0)  # a chance for a second delivery to come in, if one were sent
        in_flight -= 1
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", one)
    served = await serve(app)
    try:
        async with FakeCallingAPI(webhook_url=served.url + "/hook") as fake:
            for i in range(10):
                fake.user_calls(caller(i))
            await fake.drain_webhooks()
    finally:
        await served.close()
    assert most == 1
    assert arrived == produced_ids(fake)


@pytest.mark.asyncio
async def test_a_thousand_calls_to_a_fleet_with_32_in_flight() -> None:
    async with AsyncExitStack() as stack:
        sinks = [await stack.enter_async_context(WebhookSink()) for _ in range(4)]
        fake = await stack.enter_async_context(
            FakeCallingAPI(webhook_urls=[s.url for s in sinks], webhook_concurrency=32)
        )
        calls = [fake.user_calls(caller(i)).id for i in range(1000)]
        await fake.drain_webhooks(timeout=50)
    assert all(w.delivered for w in fake.webhooks)
    received = [cid for s in sinks for cid in call_ids(s)]
    assert sorted(received) == sorted(calls)
    assert [len(s.received) for s in sinks] == [250] * 4


# -- settings ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_webhook_url_and_webhook_urls_are_one_setting(sinks: list[WebhookSink]) -> None:
    async with FakeCallingAPI(webhook_url=sinks[0].url) as fake:
        assert fake.webhook_urls == (sinks[0].url,)
        fake.webhook_urls = [sinks[1].url, sinks[2].url]
        assert fake.webhook_url == sinks[1].url
        fake.user_calls(caller(0))
        fake.user_calls(caller(1))
        await fake.drain_webhooks()
        fake.webhook_url = None
        assert (fake.webhook_url, fake.webhook_urls) == (None, None)
        fake.user_calls(caller(2))  # recorded, not sent
        await fake.drain_webhooks()
    assert [len(s.received) for s in sinks] == [0, 1, 1]
    assert fake.webhooks[2].attempts == 0


@pytest.mark.asyncio
async def test_a_url_with_credentials_is_not_shown_by_repr() -> None:
    async with FakeCallingAPI(
        webhook_urls=["http://user:pw-0123@127.0.0.1:9/hook"], webhook_retries=0
    ) as fake:
        fake.user_calls(caller(0))
        await fake.drain_webhooks()
    (delivery,) = fake.webhooks
    assert delivery.url == "http://user:pw-0123@127.0.0.1:9/hook"
    assert "pw-0123" not in repr(delivery)


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"webhook_urls": []}, "at least one"),
        ({"webhook_urls": "http://127.0.0.1:9/hook"}, "list of URLs"),
        ({"webhook_urls": ["http://127.0.0.1:9/a", "http://127.0.0.1:9/a"]}, "twice"),
        ({"webhook_urls": [""]}, "non-empty str"),
        ({"webhook_urls": [b"http://127.0.0.1:9/a"]}, "non-empty str"),
        ({"webhook_url": 5}, "webhook_url"),
        (
            {"webhook_url": "http://127.0.0.1:9/a", "webhook_urls": ["http://127.0.0.1:9/b"]},
            "not both",
        ),
        ({"webhook_concurrency": 0}, "webhook_concurrency"),
        ({"webhook_concurrency": -1}, "webhook_concurrency"),
        ({"webhook_concurrency": 2.0}, "webhook_concurrency"),
        ({"webhook_concurrency": True}, "webhook_concurrency"),
        ({"webhook_concurrency": MAX_WEBHOOK_CONCURRENCY + 1}, "webhook_concurrency"),
        ({"fleet_delivery": {"duplicate": 0.5}}, "FleetDelivery"),
    ],
)
def test_bad_fleet_settings_are_refused(settings: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        FakeCallingAPI(**settings)


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"duplicate": -0.1}, "duplicate"),
        ({"duplicate": 1.01}, "duplicate"),
        ({"duplicate": float("nan")}, "duplicate"),
        ({"duplicate": True}, "duplicate"),
        ({"out_of_order": -1}, "out_of_order"),
        ({"out_of_order": 2}, "out_of_order"),
        ({"out_of_order": "0.5"}, "out_of_order"),
        ({"seed": 1.5}, "seed"),
        ({"seed": None}, "seed"),
    ],
)
def test_bad_fleet_fractions_are_refused(settings: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        FleetDelivery(**settings)


def test_bad_urls_are_refused_by_the_setters_too() -> None:
    fake = FakeCallingAPI()
    with pytest.raises(InvalidRequestError, match="at least one"):
        fake.webhook_urls = []
    with pytest.raises(InvalidRequestError, match="webhook_url"):
        fake.webhook_url = ["http://127.0.0.1:9/a"]  # type: ignore[assignment]
    with pytest.raises(InvalidRequestError, match="FleetDelivery"):
        fake.fleet_delivery = 0.5  # type: ignore[assignment]
    assert fake.webhook_urls is None
    assert issubclass(InvalidRequestError, ValueError)  # as the other settings' errors
