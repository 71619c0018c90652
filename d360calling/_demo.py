"""``d360calling demo``: a whole inbound call and a whole business-initiated call, with the
real client, against the built-in fake API; each step is printed as it happens (as text, or
with ``--json`` as one JSON object per line).

With an API key and a base URL that is not on this machine it talks to that API instead, and
only reads: placing calls needs a public webhook URL and a WebRTC stack, which a demo cannot
bring. The command line decides which (``_cli._demo_target``) and the demo says it first.
"""

from __future__ import annotations

import asyncio
import json
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


class _Out:
    """Where the demo's lines go: text for people, or one JSON object per line (``--json``):
    ``{"type": ..., "text": ..., ...}``, the type one of ``start``, ``info``, ``call``,
    ``step``, ``done`` (and against an API ``settings``, ``permission``), the text the line's
    words without the indent. A step's ``elapsed`` counts seconds from the start of its
    call."""

    def __init__(self, as_json: bool = False) -> None:
        self.as_json = as_json
        self._call: str | None = None
        self._started = time.monotonic()

    def line(self, kind: str, text: str, **fields: Any) -> None:
        if self.as_json:
            print(json.dumps({"type": kind, "text": text.strip(), **fields}), flush=True)
        else:
            print(text, flush=True)

    def call(self, name: str, title: str) -> None:
        """A new call: its title, and the step clock starts again."""
        self._call = name
        self._started = time.monotonic()
        if self.as_json:
            self.line("call", title, call=name)
        else:
            print(f"\n{title}", flush=True)

    def __call__(self, who: str, text: str, **fields: Any) -> None:
        elapsed = time.monotonic() - self._started
        if self.as_json:
            record = {"call": self._call, "elapsed": round(elapsed, 3), "who": who, **fields}
            self.line("step", text, **record)
        else:
            print(f"  {elapsed:6.3f}s  {who:<8} {text}", flush=True)


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


async def _expect(inbox: _WebhookInbox, step: _Out, cls: type[E], **match: Any) -> E:
    event = await inbox.next()
    call_id = getattr(event, "call_id", None)
    step("webhook", _describe(event), **({"call_id": call_id} if call_id else {}))
    if not isinstance(event, cls) or any(getattr(event, k) != v for k, v in match.items()):
        raise DemoError(f"expected a {cls.__name__} with {match}, got {event!r}")
    return event


def _permission_line(who: str, p: CallPermissions) -> str:
    return f"{who}: permission {p.permission.status}, can start a call: {p.can_start_call}"


def _talk(fake: FakeCallingAPI, step: _Out) -> None:
    # The conversation passes on the fake's clock: the demo shows its length without waiting.
    fake.clock.advance(CONVERSATION)
    step("fake", f"{CONVERSATION:g} s of conversation pass on the fake's clock")


async def _inbound(
    fake: FakeCallingAPI, client: AsyncClient, inbox: _WebhookInbox, step: _Out
) -> None:
    step.call("inbound", "An inbound call: the user calls, the business answers")
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


async def _outbound(
    fake: FakeCallingAPI, client: AsyncClient, inbox: _WebhookInbox, step: _Out
) -> None:
    step.call("outbound", "A business-initiated call: permission, connect, the user picks up")
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
    step("business", f"connect → {call.call_id[:18]}…", call_id=call.call_id)
    await _expect(inbox, step, CallStatusEvent, status="RINGING")
    step("user", f"{CALLEE} picks up")
    fake.user_answers(call.call_id)
    await _expect(inbox, step, CallConnectEvent, call_id=call.call_id)
    await _expect(inbox, step, CallStatusEvent, status="ACCEPTED")
    _talk(fake, step)
    await client.terminate_call(call.call_id)
    step("business", "terminate → 200")
    await _expect(inbox, step, CallTerminateEvent, call_id=call.call_id)


async def _on_fake(out: _Out, reason: str) -> int:
    secret = secrets.token_hex(16)
    async with (
        _WebhookInbox(secret) as inbox,
        FakeCallingAPI(webhook_url=inbox.url, webhook_signing_secret=secret) as fake,
    ):
        out.line(
            "start",
            f"d360calling demo on the built-in fake API ({reason})",
            api="fake",
            reason=reason,
        )
        out.line("info", f"  fake API:  {fake.url}", fake_api=fake.url)
        out.line(
            "info", f"  webhooks:  {inbox.url} (signed with {SIGNATURE_HEADER})", webhooks=inbox.url
        )
        async with fake.async_client() as client:
            await _inbound(fake, client, inbox, out)
            await _outbound(fake, client, inbox, out)
        ended = sum(not call.active for call in fake.calls.values())
        requests, webhooks = len(fake.requests), len(fake.webhooks)
        if not out.as_json:
            print()
        out.line(
            "done",
            f"Done: {ended} calls completed, {requests} API requests, {webhooks} webhooks, "
            "0 errors.",
            calls=ended,
            api_requests=requests,
            webhooks=webhooks,
            errors=0,
        )
    return 0


async def _on_real_api(options: ClientOptions, wa_id: str | None, out: _Out, reason: str) -> int:
    async with AsyncClient(options=options) as client:
        out.line(
            "start",
            f"d360calling demo against the real API at {options.base_url} (read-only)",
            api="real",
            base_url=options.base_url,
            reason=reason,
        )
        settings = await client.get_settings()
        calling = settings.calling
        srtp = calling.srtp_key_exchange_protocol
        out.line(
            "settings",
            f"  calling: {calling.status}, SRTP: {srtp}",
            status=_text(calling.status),
            srtp_key_exchange_protocol=_text(srtp),
        )
        if calling.sip is not None:
            out.line("settings", f"  SIP: {calling.sip.status}", sip=_text(calling.sip.status))
        if wa_id:
            permissions = await client.get_call_permissions(wa_id)
            out.line(
                "permission",
                "  " + _permission_line(wa_id, permissions),
                wa_id=wa_id,
                status=_text(permissions.permission.status),
                can_start_call=permissions.can_start_call,
            )
        out.line(
            "done", "Calls are not placed: they need your public webhook URL and a WebRTC stack."
        )
    return 0


def _text(value: object) -> str | None:
    return None if value is None else str(getattr(value, "value", value))


async def run_demo(
    options: ClientOptions | None,
    *,
    wa_id: str | None = None,
    reason: str = "no API key given",
    as_json: bool = False,
) -> int:
    """The demo on the built-in fake (``options`` is ``None``; ``reason`` says why), or
    read-only against the API ``options`` name. ``as_json``: one JSON object per line."""
    out = _Out(as_json)
    if options is not None:
        return await _on_real_api(options, wa_id, out, reason)
    if wa_id:
        reason += "; --wa-id is for the real API"
    try:
        return await _on_fake(out, reason)
    except DemoError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
