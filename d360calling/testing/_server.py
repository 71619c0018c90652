"""The fake 360dialog Calling API: a real aiohttp.web server on loopback.

``async with FakeCallingAPI() as fake`` runs it on the current event loop; ``with
FakeCallingAPI() as fake`` runs it on a loop in a background thread, so blocking code (and
sync clients called from inside another loop) can talk to it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .._async_client import AsyncClient
from .._options import ClientOptions
from .._sync_client import Client
from ..errors import InvalidRequestError
from . import _payloads as payloads
from ._calls import DEFAULT_MAX_RECORDED_CALLS, FakeCall
from ._clock import FakeClock
from ._contract import contract
from ._control import CONTROL_PREFIX, control_route
from ._delivery import FleetDelivery, WebhookDelivery, WebhookLog, WebhookSender, check_webhook_urls
from ._enums import PermissionReplyResponse, PermissionReplySource
from ._faults import Fault, FaultPlan, InjectedFault, RandomFaults
from ._http import MAX_REQUEST_BYTES, Handler
from ._identity import FakeUser
from ._messages import DEFAULT_MAX_RECORDED_MESSAGES, FakeMessage, FakeTemplate
from ._records import (
    DEFAULT_MAX_RECORDED_BYTES,
    DEFAULT_MAX_RECORDED_REQUESTS,
    DEFAULT_MAX_RECORDED_WEBHOOKS,
    RecordedRequest,
    RequestLog,
)
from ._routes import Incoming, api_route
from ._runner import ServedApp, serve
from ._world import FakeWorld

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .._options import ClientOptionChanges

__all__ = ("DEFAULT_API_KEY", "FakeCallingAPI")

DEFAULT_API_KEY = "fake-d360-api-key"
_TICK = 0.05  # how often unanswered calls are checked against their answer window


class FakeCallingAPI:
    """A stateful stand-in for ``https://waba-v2.360dialog.io``'s Calling endpoints.

    Drive the user's side with the ``user_*`` methods (:meth:`user_calls`,
    :meth:`user_answers`, :meth:`user_declines`, :meth:`user_lets_it_ring_out`,
    :meth:`user_hangs_up`, :meth:`user_sends_message`,
    :meth:`user_replies_to_permission_request`, :meth:`user_presses_call_button`,
    :meth:`user_leaves_voicemail`) and :meth:`grant_permission`; drive the business side with
    a real client (:meth:`async_client`, :meth:`client`). Webhooks go to ``webhook_url``;
    every request and every webhook is recorded.

    For a fleet of receiver workers, give ``webhook_urls`` instead (a list; ``webhook_url``
    is the same with one URL, and giving both is an error): the i-th webhook produced goes to
    ``webhook_urls[i % n]``, and a failed attempt (no connection, a timeout, a non-2xx status)
    is retried on the next URL, so a dead worker's webhooks reach the others
    (:attr:`WebhookDelivery.url` tells where the last attempt went). ``webhook_concurrency``
    deliveries are in flight at once (1, the default: one at a time, in order);
    ``fleet_delivery`` (a :class:`FleetDelivery`) duplicates a seeded share of them to
    another URL and swaps another share with the next one.

    Users are phone numbers or business-scoped ids (``US.1349…``, api-2026 §5): a phone user
    gets a business-scoped id of their own (:meth:`add_user` tells it), carried in every
    webhook next to the number; a user known only by such an id comes with no phone number
    in any webhook. ``POST /messages`` takes the call-permission request, the call button
    and templates (see :meth:`add_template`): a free-form one outside the user's 24-hour
    window is accepted and then fails in a status webhook with 131047 (as the Cloud API
    reports it), one to a user with an old WhatsApp (:meth:`add_user`) with 131026; one that
    gets through is reported ``sent`` and ``delivered``. The window opens when the user
    writes, answers a request, leaves a voicemail, or calls (or answers a call).

    What it keeps is bounded, so a fake left running (or fed by a hostile client) does not
    grow; in each, the oldest makes room (``None``: no bound):

    - ``max_recorded_requests`` (10,000) and ``max_recorded_webhooks`` (10,000) bound
      :attr:`requests` and :attr:`webhooks`, and ``max_recorded_bytes`` (64 MiB) the bytes
      each of the two logs holds; ``max_recorded_webhooks`` also bounds the webhooks waiting
      to be sent (the oldest waiting one is given up, with an ``error``).
    - ``max_recorded_calls`` (10,000) bounds the *ended* calls kept in :attr:`calls`, and
      ``max_recorded_bytes`` their bytes (SDPs, mostly); calls still going are always kept
      (at most ``max_concurrent_calls``, each SDP at most 65,536 characters).
    - The permission state of at most 100,000 users is kept (the least recently seen is
      forgotten); a permission read, a refused call or a refused message stores none.
    - ``max_recorded_messages`` (10,000) bounds the messages kept in :attr:`messages`, and
      ``max_recorded_bytes`` their bytes; at most 1,000 templates are kept.
    - A request body over 1 MiB is refused with 413 before it is read. A webhook is tried
      ``1 + webhook_retries`` times, each attempt ending after ``webhook_timeout`` seconds,
      with pauses from ``webhook_retry_delay`` doubling up to 30 s; redirects are not
      followed and the receiver's answer body is not kept. At most 256 are in flight at once
      (``webhook_concurrency``).

    Each API request body is checked against the OpenAPI contract and the documented rules
    (see ``d360calling/testing/documented-requests.json``); a refused body gets Meta's error
    100 whose ``details`` name the failing fields. A body that is not JSON the fake accepts
    (not UTF-8, ``NaN``, nested deeper than 64 levels...) gets the same 400.
    """

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        host: str = "127.0.0.1",
        port: int = 0,
        webhook_url: str | None = None,
        webhook_urls: Sequence[str] | None = None,
        webhook_concurrency: int = 1,
        fleet_delivery: FleetDelivery | None = None,
        webhook_headers: Mapping[str, str] | None = None,
        webhook_signing_secret: str | None = None,
        webhook_retries: int = 2,
        webhook_retry_delay: float = 0.2,
        webhook_timeout: float = 10.0,
        business_number: str = "15550001111",
        phone_number_id: str = "100000000000001",
        waba_id: str = "200000000000001",
        answer_window: float = 60.0,
        connected_call_limit: int = 100,
        max_concurrent_calls: int = 1000,
        permission_reads_per_second: int = 100,
        clock: FakeClock | None = None,
        keepalive_timeout: float = 75.0,
        max_recorded_requests: int | None = DEFAULT_MAX_RECORDED_REQUESTS,
        max_recorded_webhooks: int | None = DEFAULT_MAX_RECORDED_WEBHOOKS,
        max_recorded_bytes: int | None = DEFAULT_MAX_RECORDED_BYTES,
        max_recorded_calls: int | None = DEFAULT_MAX_RECORDED_CALLS,
        max_recorded_messages: int | None = DEFAULT_MAX_RECORDED_MESSAGES,
        media_timeout: float | None = None,
    ) -> None:
        self.keepalive_timeout = keepalive_timeout
        self.host = host
        self.port = port
        self.phone_number_id = phone_number_id
        self.waba_id = waba_id
        self.clock = clock or FakeClock()
        self._contract = contract()  # fails here, not on the first request, without jsonschema
        self._faults = FaultPlan()
        if webhook_url is not None and webhook_urls is not None:
            raise InvalidRequestError("give webhook_url or webhook_urls, not both")
        self._sender = WebhookSender(
            urls=_one_url(webhook_url) if webhook_urls is None else webhook_urls,
            headers=webhook_headers,
            signing_secret=webhook_signing_secret,
            retries=webhook_retries,
            retry_delay=webhook_retry_delay,
            timeout=webhook_timeout,
            log=WebhookLog(max_recorded_webhooks, max_recorded_bytes),
            max_pending=max_recorded_webhooks,
            concurrency=webhook_concurrency,
            fleet=fleet_delivery,
        )
        self._world = FakeWorld(
            emit=self._emit,
            clock=self.clock,
            business_number=business_number,
            phone_number_id=phone_number_id,
            answer_window=answer_window,
            connected_call_limit=connected_call_limit,
            max_concurrent_calls=max_concurrent_calls,
            permission_reads_per_second=permission_reads_per_second,
            max_ended_calls=max_recorded_calls,
            max_ended_bytes=max_recorded_bytes,
            max_messages=max_recorded_messages,
        )
        self.media_timeout = media_timeout  # checked by the setter
        self._handler = Handler(
            api_key=api_key,
            log=RequestLog(max_recorded_requests, max_recorded_bytes),
            faults=self._faults,
            dispatch=self._dispatch,
        )
        self._served: ServedApp | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def api_key(self) -> str:
        return self._handler.api_key

    @property
    def url(self) -> str:
        """The base URL to give a client, e.g. ``http://127.0.0.1:54321``."""
        if self._served is None:
            raise RuntimeError("the fake server is not running")
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address
        return f"http://{host}:{self.port}"

    async def start_async(self) -> FakeCallingAPI:
        """Start serving on the running event loop."""
        if self._served is not None:
            raise RuntimeError("the fake server is already running")
        self._loop = asyncio.get_running_loop()
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        # Every path, a newline in it too (".*" would leave it to aiohttp's plain-text 404).
        app.router.add_route("*", r"/{tail:[\s\S]*}", self._handler.handle)
        self._served = await serve(
            app,
            self.host,
            self.port,
            handler_cancellation=True,
            keepalive_timeout=self.keepalive_timeout,
        )
        self.port = self._served.port
        self._world.media_base = f"{self.url}{CONTROL_PREFIX}media/"
        await self._sender.start()
        self._ticker = asyncio.create_task(self._tick(), name="d360calling-fake-ticker")
        return self

    async def close_async(self) -> None:
        """Stop serving and close every connection; idempotent."""
        served, self._served = self._served, None
        if served is None:
            return
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        await self._sender.close()
        await served.close()

    async def __aenter__(self) -> FakeCallingAPI:
        return await self.start_async()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close_async()

    def start(self) -> FakeCallingAPI:
        """Start serving on an event loop in a background thread."""
        if self._thread is not None:
            raise RuntimeError("the fake server is already running")
        loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=loop.run_forever, name="d360calling-fake-api", daemon=True
        )
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.start_async(), loop).result(30)
        except BaseException:
            self._stop_thread(loop)
            raise
        return self

    def stop(self) -> None:
        """Stop the background-thread server started by :meth:`start`; idempotent."""
        if self._thread is None or self._loop is None:
            return
        loop = self._loop
        try:
            asyncio.run_coroutine_threadsafe(self.close_async(), loop).result(30)
        finally:
            self._stop_thread(loop)

    def _stop_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(30)
        loop.close()
        self._thread = None

    def __enter__(self) -> FakeCallingAPI:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(_TICK)
            self._world.expire_unanswered()
            self._world.expire_media()

    # -- clients --------------------------------------------------------------------------

    def client_options(self, **changes: Unpack[ClientOptionChanges]) -> ClientOptions:
        """Client settings for this fake: its URL and key, with ``changes``."""
        return ClientOptions(api_key=self.api_key, base_url=self.url).evolve(**changes)

    def async_client(self, **changes: Unpack[ClientOptionChanges]) -> AsyncClient:
        """An :class:`~d360calling.AsyncClient` for this fake (settings as for the client)."""
        return AsyncClient(options=self.client_options(**changes))

    def client(self, **changes: Unpack[ClientOptionChanges]) -> Client:
        """A blocking :class:`~d360calling.Client` for this fake."""
        return Client(options=self.client_options(**changes))

    # -- faults and records ---------------------------------------------------------------

    def inject(
        self,
        *faults: Fault,
        method: str | None = None,
        path: str | None = None,
        action: str | None = None,
        times: int | None = 1,
    ) -> list[InjectedFault]:
        """Apply ``faults`` to the next matching requests, in order, each ``times`` times
        (``None``: to every matching request until :meth:`clear_faults`). ``path`` may end
        in ``*`` to match a prefix; ``action`` matches the call action of ``/calling/calls``."""
        if not faults:
            raise ValueError("inject() needs at least one Fault")
        return self._faults.add(faults, method, path, action, times)

    def inject_random(
        self,
        *faults: Fault,
        rate: float,
        seed: int | None = None,
        method: str | None = None,
        path: str | None = None,
        action: str | None = None,
    ) -> RandomFaults:
        """Chaos: from now until :meth:`clear_faults`, each matching request gets, with
        probability ``rate``, one of ``faults`` picked at random (``seed`` makes the draws
        repeatable). Faults injected before it that match are used first."""
        if not faults:
            raise ValueError("inject_random() needs at least one Fault")
        return self._faults.add_random(faults, rate, seed, method, path, action)

    def clear_faults(self) -> None:
        self._faults.clear()

    @property
    def requests(self) -> RequestLog:
        """Every request received, oldest first: the newest ``max_recorded_requests`` of
        them once that many arrived (``requests.dropped`` counts the older ones)."""
        return self._handler.log

    @property
    def in_flight(self) -> int:
        """Requests being handled right now."""
        return self._handler.in_flight

    @property
    def max_in_flight(self) -> int:
        return self._handler.max_in_flight

    @property
    def cancelled(self) -> int:
        """Handlers cancelled because the client went away."""
        return self._handler.cancelled

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method.upper() and r.path == path]

    def call_actions(self, action: str | None = None) -> list[dict[str, Any]]:
        """The bodies of ``POST /calling/calls`` requests, optionally of one action."""
        bodies = []
        for request in self.requests_to("POST", "/calling/calls"):
            try:
                body = request.json
            except ValueError:
                continue
            if isinstance(body, dict) and (action is None or body.get("action") == action):
                bodies.append(body)
        return bodies

    # -- the world ------------------------------------------------------------------------

    @property
    def calls(self) -> dict[str, FakeCall]:
        """Every call still going and the newest ``max_recorded_calls`` ended ones, by id."""
        with self._world.lock:
            return dict(self._world.calls.by_id)

    @property
    def settings(self) -> dict[str, Any]:
        """The stored settings, as ``GET /calling/settings?include_sip_credentials=true``."""
        return self._world.get_settings(include_sip_credentials=True)

    @property
    def messages(self) -> dict[str, FakeMessage]:
        """The messages the business sent (``POST /messages``), the newest
        ``max_recorded_messages`` of them, by wamid."""
        with self._world.lock:
            return dict(self._world.messages.by_id)

    def add_user(
        self, user: str, *, name: str | None = None, old_client: bool | None = None
    ) -> FakeUser:
        """Tell the fake about a user (a phone number, or a business-scoped id for a user
        known only by it): their profile ``name`` in webhooks, and whether their WhatsApp is
        too ``old`` for call-permission and call-button messages (those then fail with
        131026). Returns who they are, with the business-scoped id the fake gave a phone
        user. Calling it again changes what is given and keeps the rest."""
        state = self._world.add_user(user, name, old_client)
        return FakeUser(state.phone, state.user_id, state.name, state.old_client)

    def add_template(
        self,
        name: str,
        language: str = "en_US",
        *,
        body_text: str,
        category: str = "UTILITY",
        header_text: str | None = None,
        call_permission_request: bool = True,
    ) -> FakeTemplate:
        """Tell the fake about an approved template: sends of it are then checked as the
        API checks them (the language, 132001; the parameters against the ``{{1}}`` or
        ``{{name}}`` placeholders of ``body_text`` and ``header_text``, 132000 and 132012),
        and it counts as a call-permission request only with ``call_permission_request``.
        A template the fake was not told about is taken as an approved call-permission
        template. ``ValueError`` for a template the API would not approve (a category other
        than MARKETING or UTILITY, an empty body...)."""
        return self._world.add_template(
            FakeTemplate(name, language, category, body_text, header_text, call_permission_request)
        )

    def user_calls(
        self,
        user: str,
        *,
        sdp: str | None = None,
        name: str | None = None,
        deeplink_payload: str | None = None,
        cta_payload: str | None = None,
    ) -> FakeCall:
        """A WhatsApp user (phone number or business-scoped id) calls the business: a
        ringing call and its connect webhook (with ``sdp``, or a generated offer), carrying
        ``deeplink_payload`` (the call came from a deep link) or ``cta_payload`` (from a call
        button; see :meth:`user_presses_call_button`) on connect and terminate. The call ends
        unanswered after ``answer_window``. With SIP on (and its webhooks), the call is
        signalled over SIP: a ``call_created`` webhook, and the Graph endpoints answer
        131055."""
        return self._world.user_calls(user, sdp, name, deeplink_payload, cta_payload)

    def user_presses_call_button(self, message_id: str, *, sdp: str | None = None) -> FakeCall:
        """The user taps the call button of the ``voice_call`` message ``message_id``: a call
        to the business (as :meth:`user_calls`) whose connect and terminate carry the
        button's payload as ``cta_payload``. :class:`ScenarioError` if there is no such
        delivered message, or its ``ttl_minutes`` (default 10,080) have passed."""
        return self._world.user_presses_call_button(message_id, sdp)

    def user_sends_message(self, user: str, text: str = "Hi") -> str:
        """The user writes to the business: a text message webhook; the 24-hour
        customer-service window opens (free-form messages work inside it). Returns the
        message's wamid."""
        return self._world.user_sends_message(user, text)

    def user_answers(self, call_id: str, *, sdp: str | None = None) -> FakeCall:
        """The user picks up a business-initiated call: connect webhook with the SDP answer,
        then status ``ACCEPTED``."""
        return self._world.user_answers(call_id, sdp)

    def user_declines(self, call_id: str) -> FakeCall:
        """The user declines a business-initiated call: status ``REJECTED``, then terminate."""
        return self._world.user_declines(call_id)

    def user_lets_it_ring_out(self, call_id: str) -> FakeCall:
        """Nobody answers a ringing call: it times out now, without waiting for the answer
        window. A business-initiated call ends with a terminate that has no duration (and
        counts towards the unanswered calls that revoke a permission); an inbound call the
        business did not accept ends the same way (and may be followed by a voicemail)."""
        return self._world.user_lets_it_ring_out(call_id)

    def user_leaves_voicemail(self, call_id: str) -> str:
        """The caller of an inbound call the business rejected (trigger ``REJECT``) or let
        ring out (``TIMEOUT``) leaves a voicemail: with the ``voicemail`` setting on for that
        trigger, an audio message webhook whose id is the call's wacid. Returns the audio's
        media id."""
        return self._world.user_leaves_voicemail(call_id)

    def user_hangs_up(self, call_id: str) -> FakeCall:
        """The user ends a call: terminate webhook (with duration if it was connected), then
        the recording and transcript webhooks if connect or accept asked for them."""
        return self._world.user_hangs_up(call_id)

    @property
    def media_timeout(self) -> float | None:
        """Seconds a connected call may go without media before it fails with 138021, as the
        real one does after 20 s (``MEDIA_TIMEOUT``); ``None`` (the default) turns it off,
        because without its media mode the fake cannot see media. Settable."""
        return self._world.media_timeout

    @media_timeout.setter
    def media_timeout(self, seconds: float | None) -> None:
        if seconds is not None and (
            isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0
        ):
            raise ValueError("media_timeout must be a positive number of seconds or None")
        with self._world.lock:
            self._world.media_timeout = None if seconds is None else float(seconds)

    def media_seen(self, call_id: str) -> FakeCall:
        """Media from the business reached the user on ``call_id`` (the media mode reports
        it): the call no longer ends for want of media. :class:`ScenarioError` if the call is
        not going on."""
        return self._world.media_seen(call_id)

    def fail_call(
        self, call_id: str, *, code: int = 138021, details: str | None = None
    ) -> FakeCall:
        """The call fails (media timeout by default): terminate ``FAILED`` with ``errors[]``."""
        return self._world.fail_call(call_id, code, details)

    def grant_permission(self, user: str, *, permanent: bool = False, notify: bool = True) -> None:
        """The user allows calls from the business profile (no ``context`` in the webhook).
        With ``notify=False`` no webhook is sent: use it to set up a test's starting state."""
        self._world.set_permission(
            user,
            PermissionReplyResponse.ACCEPT,
            permanent=permanent,
            source=PermissionReplySource.USER_ACTION,
            context_id=None,
            notify=notify,
        )

    def revoke_permission(self, user: str, *, notify: bool = True) -> None:
        """The user withdraws permission."""
        self._world.set_permission(
            user,
            PermissionReplyResponse.REJECT,
            permanent=False,
            source=PermissionReplySource.USER_ACTION,
            context_id=None,
            notify=notify,
        )

    def user_replies_to_permission_request(
        self, user: str, *, accept: bool = True, permanent: bool = False
    ) -> str:
        """The user answers the newest call-permission request they received (interactive or
        template): the ``call_permission_reply`` webhook with ``context.id`` set to the
        request's wamid, which is returned. The reply opens the 24-hour window.
        :class:`ScenarioError` if no request reached the user, it was already answered, or
        it expired (7 days after delivery)."""
        return self._world.reply_to_request(user, accept=accept, permanent=permanent)

    # -- webhooks -------------------------------------------------------------------------

    @property
    def webhooks(self) -> WebhookLog:
        """Every webhook produced, in order (including held and redelivered ones): the newest
        ``max_recorded_webhooks`` of them once that many were made (``webhooks.dropped``
        counts the older ones). Reads like a list, as :attr:`requests` does."""
        return self._sender.log

    @property
    def webhook_url(self) -> str | None:
        """Where webhooks go (``None``: nowhere, they are only recorded); with several
        :attr:`webhook_urls`, the first of them. Setting it sets :attr:`webhook_urls` to
        ``[url]``."""
        urls = self._sender.urls
        return urls[0] if urls else None

    @webhook_url.setter
    def webhook_url(self, url: str | None) -> None:
        self._sender.urls = check_webhook_urls(_one_url(url)) or ()

    @property
    def webhook_urls(self) -> tuple[str, ...] | None:
        """The URLs webhooks go to, round-robin (``None``: nowhere). Settable (a non-empty
        list of distinct URLs, or ``None``); webhooks already waiting go to the new URLs."""
        return self._sender.urls or None

    @webhook_urls.setter
    def webhook_urls(self, urls: Sequence[str] | None) -> None:
        self._sender.urls = check_webhook_urls(urls) or ()

    @property
    def fleet_delivery(self) -> FleetDelivery | None:
        """The seeded duplicates and swaps (:class:`FleetDelivery`), or ``None``. Settable:
        the draws start again from the new one's seed."""
        return self._sender.fleet

    @fleet_delivery.setter
    def fleet_delivery(self, fleet: FleetDelivery | None) -> None:
        self._sender.fleet = fleet

    def hold_webhooks(self) -> None:
        """Keep new webhooks back until :meth:`release_webhooks`."""
        self._sender.hold()

    def release_webhooks(
        self, *, reverse: bool = False, duplicate: bool = False
    ) -> list[WebhookDelivery]:
        """Send the held webhooks — reversed (a terminate before its connect) and/or each
        twice (a redelivery) — and return them in the order sent."""
        return self._sender.release(reverse=reverse, duplicate=duplicate)

    def redeliver(self, delivery: WebhookDelivery) -> WebhookDelivery:
        """Deliver an earlier webhook again."""
        return self._sender.redeliver(delivery)

    async def drain_webhooks(self, timeout: float = 10.0) -> None:
        """Wait until every webhook sent so far reached the receiver (or gave up)."""
        await self._sender.drain(timeout)

    def wait_for_webhooks(self, timeout: float = 10.0) -> None:
        """Blocking :meth:`drain_webhooks`, for tests that run the fake in a thread."""
        if self._thread is None or threading.current_thread() is self._thread:
            raise RuntimeError(
                "wait_for_webhooks() blocks: use 'await fake.drain_webhooks()' when the fake "
                "runs on your event loop"
            )
        self._sender.drain_blocking(timeout)

    def _emit(self, field: str, value: dict[str, Any]) -> None:
        business = payloads.Business(
            self._world.business_number, self.phone_number_id, self.waba_id
        )
        self._sender.enqueue(field, payloads.envelope(business, field, value))

    # -- serving --------------------------------------------------------------------------

    def _dispatch(self, request: Incoming) -> Any:
        if request.path.startswith(CONTROL_PREFIX):
            return control_route(self._world, request)
        return api_route(self._world, self._contract, request)


def _one_url(url: str | None) -> list[str] | None:
    if url is None:
        return None
    if not isinstance(url, str):
        raise InvalidRequestError(f"webhook_url must be a str or None, got {url!r:.40}")
    return [url]
