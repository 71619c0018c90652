"""The fake 360dialog Calling API: a real aiohttp.web server on loopback.

``async with FakeCallingAPI() as fake`` runs it on the current event loop; ``with
FakeCallingAPI() as fake`` runs it on a loop in a background thread, so blocking code (and
sync clients called from inside another loop) can talk to it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

import attrs
from aiohttp import web
from multidict import CIMultiDict

from ._delivery import WebhookDelivery, WebhookSender
from ._faults import Fault, FaultPlan, InjectedFault, RandomFaults
from ._state import FakeAPIError, FakeCall, FakeClock, FakeWorld, ScenarioError

if TYPE_CHECKING:
    from .._async_client import AsyncClient
    from .._sync_client import Client

DEFAULT_API_KEY = "fake-d360-api-key"
_TICK = 0.05  # how often unanswered calls are checked against their answer window


@attrs.frozen(eq=False)
class RecordedRequest:
    """A request as the fake received it."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: CIMultiDict[str]
    body: bytes
    peer: tuple[str, int]
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)


async def serve(
    app: web.Application, host: str = "127.0.0.1", port: int = 0, **options: Any
) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on ``host:port`` (0: any free port); returns the runner and the port."""
    runner = web.AppRunner(app, access_log=None, **options)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    server = site._server
    assert server is not None
    return runner, server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]


class FakeCallingAPI:
    """A stateful stand-in for ``https://waba-v2.360dialog.io``'s Calling endpoints.

    Drive the user's side with :meth:`user_calls`, :meth:`user_answers`,
    :meth:`user_declines`, :meth:`user_hangs_up`, :meth:`grant_permission`; drive the
    business side with a real client (:meth:`async_client`, :meth:`client`). Webhooks go to
    ``webhook_url``; every request and webhook is recorded.
    """

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        host: str = "127.0.0.1",
        port: int = 0,
        webhook_url: str | None = None,
        webhook_headers: Mapping[str, str] | None = None,
        webhook_signing_secret: str | None = None,
        webhook_retries: int = 2,
        webhook_retry_delay: float = 0.2,
        business_number: str = "15550001111",
        phone_number_id: str = "100000000000001",
        waba_id: str = "200000000000001",
        answer_window: float = 60.0,
        connected_call_limit: int = 100,
        max_concurrent_calls: int = 1000,
        permission_reads_per_second: int = 100,
        clock: FakeClock | None = None,
        keepalive_timeout: float = 75.0,
    ) -> None:
        self.api_key = api_key
        self.keepalive_timeout = keepalive_timeout
        self.host = host
        self.port = port
        self.phone_number_id = phone_number_id
        self.waba_id = waba_id
        self.clock = clock or FakeClock()
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.cancelled = 0  # handlers cancelled because the client went away
        self._faults = FaultPlan()
        self._sender = WebhookSender(
            url=webhook_url,
            headers=webhook_headers,
            signing_secret=webhook_signing_secret,
            retries=webhook_retries,
            retry_delay=webhook_retry_delay,
            timeout=10.0,
        )
        self._world = FakeWorld(
            emit=self._emit,
            clock=self.clock,
            business_number=business_number,
            answer_window=answer_window,
            connected_call_limit=connected_call_limit,
            max_concurrent_calls=max_concurrent_calls,
            permission_reads_per_second=permission_reads_per_second,
        )
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL to give a client, e.g. ``http://127.0.0.1:54321``."""
        if self._runner is None:
            raise RuntimeError("the fake server is not running")
        return f"http://{self.host}:{self.port}"

    async def start_async(self) -> FakeCallingAPI:
        """Start serving on the running event loop."""
        if self._runner is not None:
            raise RuntimeError("the fake server is already running")
        self._loop = asyncio.get_running_loop()
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner, self.port = await serve(
            app,
            self.host,
            self.port,
            handler_cancellation=True,
            keepalive_timeout=self.keepalive_timeout,
        )
        await self._sender.start()
        self._ticker = asyncio.create_task(self._tick(), name="d360calling-fake-ticker")
        return self

    async def close_async(self) -> None:
        """Stop serving and close every connection; idempotent."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        await self._sender.close()
        await runner.cleanup()

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

    # -- clients --------------------------------------------------------------------------

    def async_client(self, **options: Any) -> AsyncClient:
        """An :class:`~d360calling.AsyncClient` for this fake (options as for the client)."""
        from .._async_client import AsyncClient

        return AsyncClient(api_key=self.api_key, base_url=self.url, **options)

    def client(self, **options: Any) -> Client:
        """A blocking :class:`~d360calling.Client` for this fake."""
        from .._sync_client import Client

        return Client(api_key=self.api_key, base_url=self.url, **options)

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
        """Every call so far, by id."""
        with self._world.lock:
            return dict(self._world.calls)

    @property
    def settings(self) -> dict[str, Any]:
        """The stored settings, as ``GET /calling/settings?include_sip_credentials=true``."""
        return self._world.get_settings(include_sip_credentials=True)

    def user_calls(
        self,
        wa_id: str,
        *,
        sdp: str | None = None,
        name: str | None = None,
        deeplink_payload: str | None = None,
    ) -> FakeCall:
        """A WhatsApp user calls the business: a ringing call and its connect webhook (with
        ``sdp``, or a generated offer). The call ends unanswered after ``answer_window``."""
        return self._world.user_calls(wa_id, sdp, name, deeplink_payload)

    def user_answers(self, call_id: str, *, sdp: str | None = None) -> FakeCall:
        """The user picks up a business-initiated call: connect webhook with the SDP answer,
        then status ``ACCEPTED``."""
        return self._world.user_answers(call_id, sdp)

    def user_declines(self, call_id: str) -> FakeCall:
        """The user declines a business-initiated call: status ``REJECTED``, then terminate."""
        return self._world.user_declines(call_id)

    def user_hangs_up(self, call_id: str) -> FakeCall:
        """The user ends a call: terminate webhook (with duration if it was connected)."""
        return self._world.user_hangs_up(call_id)

    def fail_call(
        self, call_id: str, *, code: int = 138021, details: str | None = None
    ) -> FakeCall:
        """The call fails (media timeout by default): terminate ``FAILED`` with ``errors[]``."""
        return self._world.fail_call(call_id, code, details)

    def grant_permission(self, wa_id: str, *, permanent: bool = False, notify: bool = True) -> None:
        """The user allows calls from the business profile (no ``context`` in the webhook).
        With ``notify=False`` no webhook is sent: use it to set up a test's starting state."""
        self._world.set_permission(
            wa_id,
            "accept",
            permanent=permanent,
            source="user_action",
            context_id=None,
            notify=notify,
        )

    def revoke_permission(self, wa_id: str, *, notify: bool = True) -> None:
        """The user withdraws permission."""
        self._world.set_permission(
            wa_id, "reject", permanent=False, source="user_action", context_id=None, notify=notify
        )

    def user_replies_to_permission_request(
        self, wa_id: str, *, accept: bool = True, permanent: bool = False
    ) -> None:
        """The user answers the last permission request sent to them (``POST /messages``)."""
        with self._world.lock:
            request_id = self._world.user(wa_id).last_request_id
            if request_id is None:
                raise ScenarioError(f"no call-permission request was sent to {wa_id}")
            self._world.set_permission(
                wa_id,
                "accept" if accept else "reject",
                permanent=permanent,
                source="user_action",
                context_id=request_id,
                notify=True,
            )

    # -- webhooks -------------------------------------------------------------------------

    @property
    def webhooks(self) -> list[WebhookDelivery]:
        """Every webhook produced, in order (including held and redelivered ones)."""
        return list(self._sender.log)

    @property
    def webhook_url(self) -> str | None:
        return self._sender.url

    @webhook_url.setter
    def webhook_url(self, url: str | None) -> None:
        self._sender.url = url

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
        full = {
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": self._world.business_number,
                "phone_number_id": self.phone_number_id,
            },
            **value,
        }
        payload = {
            "object": "whatsapp_business_account",
            "entry": [{"id": self.waba_id, "changes": [{"field": field, "value": full}]}],
        }
        self._sender.enqueue(field, payload)

    # -- serving --------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.requests.append(
            RecordedRequest(
                request.method,
                request.path,
                dict(request.query),
                CIMultiDict(request.headers),
                body,
                tuple(peer[:2]) if peer else ("", 0),
                time.time(),
            )
        )
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            fault = None
            if self._faults:  # the body is parsed for its action only when a fault may need it
                action = _action_of(request, body)
                fault = self._faults.take(request.method, request.path, action)
            if fault is not None and fault.delay:
                await asyncio.sleep(fault.delay)
            if fault is not None and fault.drop == "before":
                return _drop(request)
            if fault is not None and fault.replaces_answer:
                status, payload = (
                    fault.status or 200,
                    fault.body
                    if fault.body is not None
                    else (json.dumps(fault.json).encode() if fault.json is not None else b""),
                )
            else:
                status, answer = self._answer(request, body)
                payload = json.dumps(answer).encode()
            if fault is not None and fault.drop == "after":
                return _drop(request)
            return await _respond(request, status, payload, fault)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        except ConnectionResetError:
            # The client went away while a slow answer was being written; aiohttp would log
            # it as a server error.
            self.cancelled += 1
            raise web.HTTPInternalServerError() from None  # never reaches the client
        finally:
            self.in_flight -= 1

    def _answer(self, request: web.Request, body: bytes) -> tuple[int, Any]:
        if request.headers.get("D360-API-KEY") != self.api_key:
            return 401, {"error": "Invalid API key"}
        try:
            return 200, self._route(request, body)
        except FakeAPIError as exc:
            return exc.status, exc.body

    def _route(self, request: web.Request, body: bytes) -> Any:
        method, path = request.method, request.path
        world = self._world
        if path == "/calling/calls":
            _allow(method, "POST")
            return world.call_action(_json_body(request, body))
        if path.startswith("/calling/permissions/"):
            _allow(method, "GET")
            return world.permissions(path.removeprefix("/calling/permissions/"))
        if path == "/calling/settings":
            _allow(method, "GET", "POST")
            if method == "GET":
                flag = request.query.get("include_sip_credentials", "false").lower() == "true"
                return world.get_settings(flag)
            return world.update_settings(_json_body(request, body))
        if path == "/messages":
            _allow(method, "POST")
            return self._message(_json_body(request, body))
        if path.startswith("/_fake/"):
            return self._control(method, path.removeprefix("/_fake/").split("/"), request, body)
        raise FakeAPIError(404, {"error": f"Not found: {method} {path}"})

    def _control(self, method: str, parts: list[str], request: web.Request, body: bytes) -> Any:
        """``/_fake/…``: the user's side over HTTP, for tests in other languages and for
        ``d360calling fake-server``. Not part of the real API."""
        _allow(method, "POST", "GET")
        try:
            if parts == ["calls"] and method == "GET":
                return {"calls": [_call_json(c) for c in self.calls.values()]}
            if parts == ["calls"]:
                data = _json_body(request, body) if body else {}
                wa_id = data.get("from") if isinstance(data, dict) else None
                if not isinstance(wa_id, str):
                    raise FakeAPIError.invalid('POST /_fake/calls takes {"from": "<wa_id>"}')
                return _call_json(
                    self.user_calls(wa_id, sdp=data.get("sdp"), name=data.get("name"))
                )
            if len(parts) == 3 and parts[0] == "calls" and method == "POST":
                verbs = {
                    "answer": self.user_answers,
                    "decline": self.user_declines,
                    "hangup": self.user_hangs_up,
                }
                if parts[2] in verbs:
                    return _call_json(verbs[parts[2]](parts[1]))
            if len(parts) == 2 and parts[0] == "permissions" and method == "POST":
                data = _json_body(request, body) if body else {}
                self.grant_permission(parts[1], permanent=bool(data.get("permanent", False)))
                return {"success": True}
        except ScenarioError as exc:
            raise FakeAPIError(409, {"error": str(exc)}) from None
        raise FakeAPIError(404, {"error": f"Not found: {method} /_fake/{'/'.join(parts)}"})

    def _message(self, body: Any) -> Any:
        # Only the call-permission request is modelled; it is what counts against the
        # send_call_permission_request limits.
        interactive = body.get("interactive") if isinstance(body, dict) else None
        if not (
            isinstance(interactive, dict)
            and body.get("type") == "interactive"
            and interactive.get("type") == "call_permission_request"
            and isinstance(body.get("to"), str)
        ):
            raise FakeAPIError.invalid(
                "the fake models only interactive call_permission_request messages"
            )
        message_id = self._world.request_permission(body["to"])
        wa_id = body["to"].lstrip("+")
        return {
            "messaging_product": "whatsapp",
            "contacts": [{"input": body["to"], "wa_id": wa_id}],
            "messages": [{"id": message_id}],
        }


def _call_json(call: FakeCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "direction": call.direction,
        "user": call.user,
        "state": call.state,
        "end_reason": call.end_reason,
        "actions": list(call.actions),
    }


def _allow(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise FakeAPIError(405, {"error": f"Method {method} not allowed"})


def _json_body(request: web.Request, body: bytes) -> Any:
    if not request.content_type.startswith("application/json"):
        raise FakeAPIError.invalid("Content-Type must be application/json")
    try:
        return json.loads(body)
    except ValueError:
        raise FakeAPIError.invalid("The request body is not valid JSON") from None


def _action_of(request: web.Request, body: bytes) -> str | None:
    if request.path != "/calling/calls" or not body:
        return None
    try:
        action = json.loads(body).get("action")
    except (ValueError, AttributeError):
        return None
    return action if isinstance(action, str) else None


def _drop(request: web.Request) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.abort()
    raise web.HTTPInternalServerError()  # never reaches the client: the socket is gone


async def _respond(
    request: web.Request, status: int, payload: bytes, fault: Fault | None
) -> web.StreamResponse:
    headers = CIMultiDict(fault.headers if fault is not None else {})
    if fault is not None and fault.content_type is not None:
        headers["Content-Type"] = fault.content_type
    headers.setdefault("Content-Type", "application/json")
    if fault is None or not (fault.truncate or fault.slow_body or fault.chunked):
        return web.Response(status=status, body=payload, headers=headers)
    response = web.StreamResponse(status=status, headers=headers)
    if fault.chunked:
        response.enable_chunked_encoding()
    else:
        response.content_length = len(payload)
    await response.prepare(request)
    if fault.truncate:
        await response.write(payload[: len(payload) // 2])
        assert request.transport is not None
        request.transport.close()  # flushes what was written, then closes: a cut body
        return response
    pieces = 5 if fault.slow_body else 1
    step = max(1, -(-len(payload) // pieces))
    for start in range(0, max(len(payload), 1), step):
        if fault.slow_body:
            await asyncio.sleep(fault.slow_body / pieces)
        await response.write(payload[start : start + step])
    await response.write_eof()
    return response
