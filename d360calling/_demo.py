"""``d360calling demo``: a whole inbound call and a whole business-initiated call, with the
real client, against the built-in fake API; each step is printed as it happens.

With an API key (``--api-key`` or ``D360_API_KEY``) it talks to the real API instead, and only
reads: placing calls needs a public webhook URL and a WebRTC stack, which a demo cannot bring.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from datetime import datetime, timezone
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

from ._async_client import AsyncClient
from ._options import ClientOptions
from .models import CallPermissions
from .testing import FakeCallingAPI, sample_answer, sample_offer, serve
from .webhooks import (
    SIGNATURE_HEADER,
    CallConnectEvent,
    CallStatusEvent,
    CallTerminateEvent,
    PermissionReplyEvent,
    WebhookEvent,
    WebhookReceiver,
)

__all__ = ("DemoError", "run_demo")

E = TypeVar("E")

CONVERSATION = 30.0  # seconds each demo call lasts
CALLER = "4915112345678"  # calls the business
CALLEE = "4915187654321"  # the business calls them
WEBHOOK_WAIT = 10.0


class DemoError(Exception):
    pass


class _Printer:
    def __init__(self) -> None:
        self._started = time.monotonic()

    def __call__(self, who: str, text: str) -> None:
        print(f"  {time.monotonic() - self._started:6.3f}s  {who:<8} {text}", flush=True)


class _WebhookInbox:
    """The demo's webhook endpoint: a :class:`WebhookReceiver` that checks the signature,
    answers 200 at once and queues each event for the demo to act on."""

    def __init__(self, secret: str) -> None:
        self._events: asyncio.Queue[WebhookEvent] = asyncio.Queue()

        async def queue(event: WebhookEvent) -> None:
            self._events.put_nowait(event)

        self.receiver = WebhookReceiver(on_event=queue, signing_secret=secret)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> _WebhookInbox:
        self._runner, port = await serve(self.receiver.app("/webhook"))
        self.url = f"http://127.0.0.1:{port}/webhook"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def next(self) -> WebhookEvent:
        try:
            return await asyncio.wait_for(self._events.get(), WEBHOOK_WAIT)
        except asyncio.TimeoutError:
            raise DemoError(f"no webhook arrived within {WEBHOOK_WAIT:.0f} s") from None


def _describe(event: WebhookEvent) -> str:
    if isinstance(event, CallStatusEvent):
        return f"status {event.status} for {event.call_id[:18]}…"
    if isinstance(event, PermissionReplyEvent):
        if event.is_permanent:
            lasting = "permanent"
        else:
            until = datetime.fromtimestamp(event.expiration_timestamp or 0, timezone.utc)
            lasting = f"temporary, until {until:%Y-%m-%d %H:%M} UTC"
        return f"call permission reply from {event.from_}: {event.response} ({lasting})"
    if isinstance(event, CallConnectEvent):
        text = f"connect {event.call_id[:18]}… {event.direction}"
        if event.session is not None:
            text += f", SDP {event.session.sdp_type} ({len(event.session.sdp)} bytes)"
        return text
    if isinstance(event, CallTerminateEvent):
        text = f"terminate {event.call_id[:18]}… {event.direction}, {event.status}"
        return text + (f" after {event.duration} s" if event.duration is not None else "")
    return f"{event.kind} event"


async def _expect(inbox: _WebhookInbox, step: _Printer, cls: type[E], **match: Any) -> E:
    event = await inbox.next()
    step("webhook", _describe(event))
    if not isinstance(event, cls) or any(getattr(event, k) != v for k, v in match.items()):
        raise DemoError(f"expected a {cls.__name__} with {match}, got {event!r}")
    return event


def _permission_line(who: str, p: CallPermissions) -> str:
    return f"{who}: permission {p.permission.status}, can start a call: {p.can_start_call}"


def _talk(fake: FakeCallingAPI, step: _Printer) -> None:
    # The conversation passes on the fake's clock: the demo shows its length without waiting.
    fake.clock.advance(CONVERSATION)
    step("fake", f"{CONVERSATION:g} s of conversation pass on the fake's clock")


async def _inbound(fake: FakeCallingAPI, client: AsyncClient, inbox: _WebhookInbox) -> None:
    step = _Printer()
    print("\nAn inbound call: the user calls, the business answers", flush=True)
    step("user", f"{CALLER} taps the call button")
    fake.user_calls(CALLER, name="Alice")
    connect = await _expect(inbox, step, CallConnectEvent)
    call_id = connect.call_id
    answer = sample_answer(call_id)  # your WebRTC stack's answer to connect.sdp
    await connect.pre_accept(client, answer)
    step("business", "pre_accept → 200 (media can start connecting)")
    await connect.accept(client, answer)
    step("business", "accept → 200 (same SDP answer; the call is live)")
    _talk(fake, step)
    await client.terminate_call(call_id)
    step("business", "terminate → 200")
    await _expect(inbox, step, CallTerminateEvent, call_id=call_id)


async def _outbound(fake: FakeCallingAPI, client: AsyncClient, inbox: _WebhookInbox) -> None:
    step = _Printer()
    print("\nA business-initiated call: permission, connect, the user picks up", flush=True)
    before = await client.get_call_permissions(CALLEE)
    step("business", _permission_line(CALLEE, before))
    step("user", f"{CALLEE} allows calls from the business profile")
    fake.grant_permission(CALLEE)
    await _expect(inbox, step, PermissionReplyEvent)
    after = await client.get_call_permissions(CALLEE)
    step("business", _permission_line(CALLEE, after))
    if not after.can_start_call:
        raise DemoError("the permission did not take effect")
    call = await client.connect_call(
        CALLEE, sample_offer("demo"), biz_opaque_callback_data="demo-order-42"
    )
    step("business", f"connect → {call.call_id[:18]}…")
    await _expect(inbox, step, CallStatusEvent, status="RINGING")
    step("user", f"{CALLEE} picks up")
    fake.user_answers(call.call_id)
    await _expect(inbox, step, CallConnectEvent, call_id=call.call_id)
    await _expect(inbox, step, CallStatusEvent, status="ACCEPTED")
    _talk(fake, step)
    await client.terminate_call(call.call_id)
    step("business", "terminate → 200")
    await _expect(inbox, step, CallTerminateEvent, call_id=call.call_id)


async def _on_fake() -> int:
    secret = secrets.token_hex(16)
    async with (
        _WebhookInbox(secret) as inbox,
        FakeCallingAPI(webhook_url=inbox.url, webhook_signing_secret=secret) as fake,
    ):
        print("d360calling demo on the built-in fake API (no API key given)")
        print(f"  fake API:  {fake.url}")
        print(f"  webhooks:  {inbox.url} (signed with {SIGNATURE_HEADER})")
        async with fake.async_client() as client:
            await _inbound(fake, client, inbox)
            await _outbound(fake, client, inbox)
        ended = sum(not call.active for call in fake.calls.values())
        print(
            f"\nDone: {ended} calls completed, {len(fake.requests)} API requests, "
            f"{len(fake.webhooks)} webhooks, 0 errors.",
            flush=True,
        )
    return 0


async def _on_real_api(options: ClientOptions, wa_id: str | None) -> int:
    async with AsyncClient(options=options) as client:
        print("d360calling demo against the real API (read-only)")
        settings = await client.get_settings()
        calling = settings.calling
        print(f"  calling: {calling.status}, SRTP: {calling.srtp_key_exchange_protocol}")
        if calling.sip is not None:
            print(f"  SIP: {calling.sip.status}")
        if wa_id:
            print("  " + _permission_line(wa_id, await client.get_call_permissions(wa_id)))
        print("Calls are not placed: they need your public webhook URL and a WebRTC stack.")
    return 0


async def run_demo(options: ClientOptions | None, *, wa_id: str | None = None) -> int:
    """The demo on the built-in fake, or read-only against the real API with ``options``."""
    if options is not None:
        return await _on_real_api(options, wa_id)
    try:
        return await _on_fake()
    except DemoError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
