"""A receiver for call webhooks that survives real delivery, and the internet.

It authenticates, parses, answers 200 at once (so the sender does not time out and deliver
again), then runs the user's callbacks in the background: events of one call in order, calls
in parallel. Duplicates are dropped; a connect that arrives after its call's terminate is not
answered; events older than ``max_age`` are reported as stale instead of acted on.

Its core, :meth:`WebhookReceiver.receive`, belongs to no web framework: it takes a request's
headers and the chunks of its body and gives the reply to send. :meth:`~WebhookReceiver.handle`
and :meth:`~WebhookReceiver.app` adapt it to aiohttp, :meth:`~WebhookReceiver.asgi` to any
ASGI server or framework (uvicorn, Starlette, FastAPI).

Every request is bounded before anything of it is kept: its body in bytes and in read time,
the bodies being read at once in bytes, its events in number, and the work all deliveries
may have pending; a wrong shared-secret header or a compressed body is refused before the
body is read. What cannot be accepted now is answered 503 with ``Retry-After`` and nothing of
it is remembered, so the sender's redelivery is acted on. What the receiver cannot bound on
its own (the time a client may take to send its headers, the number of connections and what
the server buffers for each, TLS, malformed HTTP that the server answers itself) is the job
of a reverse proxy in front.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import math
import time
import uuid
import weakref
from collections import OrderedDict, deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Mapping,
    Sequence,
)
from typing import Any, Final, TypeVar

import attrs
from aiohttp import web
from aiohttp.streams import StreamReader

from .._async_client import AsyncClient
from .._redact import Secret, SecretBytes
from ..errors import (
    ClientClosedError,
    ClientMisuseError,
    InvalidRequestError,
    StateUnavailableError,
    WebhookParseError,
)
from ..models.calls import CallRecording, CallTranscription
from ..models.webhooks import (
    AccountSettingsUpdateEvent,
    CallConnectEvent,
    CallRecordingAvailableEvent,
    CallStatusEvent,
    CallTerminateEvent,
    CallTranscriptionAvailableEvent,
    MessageStatusEvent,
    PermissionReplyEvent,
    SipCallCreatedEvent,
    UnknownEvent,
    VoicemailEvent,
    WebhookEvent,
)
from ._asgi import ASGIReceive, ASGIScope, WebhookASGIApp, receive_asgi
from ._auth import WebhookAuth
from ._core import (
    BodyChunks,
    WebhookReply,
    _Refusal,
    _Throttled,
    _Unreadable,
    case_insensitive,
    content_encoding,
    declared_length,
    read_up_to,
)
from ._dedupe import DedupeMemory
from ._outbound import AsyncClientActions, OutboundActions, OutboundCall
from ._parse import _TooManyEvents, parse_webhook
from ._state import EventClaim, InMemoryState, ReceiverState, decode_payload
from ._tracker import CallRecord, CallTracker
from ._waiters import (
    PermissionWaiters,
    PermissionWaitResult,
    check_message_id,
    check_timeout,
    check_user,
    user_key,
)

__all__ = (
    "CLOSE_TIMEOUT",
    "MAX_EARLY_EVENTS",
    "RETRY_AFTER",
    "Callback",
    "Sleep",
    "StaleCallback",
    "WebhookReceiver",
)

_log = logging.getLogger("d360calling.webhooks")

E = TypeVar("E")

Callback = Callable[[E], Awaitable[None]]
"""An async callback for one kind of event: ``Callback[CallConnectEvent]``."""
StaleCallback = Callable[[WebhookEvent, str], Awaitable[None]]
Sleep = Callable[[float], Awaitable[None]]
"""How the receiver waits out a timeout (``asyncio.sleep``; tests pass their own)."""

RETRY_AFTER: Final = 5
"""Seconds the ``Retry-After`` of a 503 asks the sender to wait: short, since a call rings for
about a minute."""
CLOSE_TIMEOUT: Final = 30.0
"""How long :meth:`WebhookReceiver.close` (and the app's cleanup) lets callbacks finish before
it cancels them."""
_CANCEL_GRACE: Final = 1.0  # how long close() waits for cancelled callbacks to unwind
_READ_CHUNK: Final = 64 * 1024
_MiB: Final = 1024 * 1024
MAX_EARLY_EVENTS: Final = 1_000
"""Events of calls not known yet that the receiver keeps while a :meth:`place_call` waits
for its connect answer (webhooks can arrive before it), to replay to the call once its id is
known; the oldest call's events go first. Nothing is kept while no connect is in flight."""
_OUTBOUND_KINDS: Final = (CallConnectEvent, CallStatusEvent, CallTerminateEvent)
_KEEP_UP_TO: Final = 64 * 1024  # bodies larger than this are published but not kept a while
_HEARD: Final = 4_096  # events heard from other workers remembered, so none is fed twice
_APPLY_RETRIES: Final = (0.1, 0.5, 2.0)  # pauses before applying to a state that failed
_RECOVER_BUDGETS: Final = 4  # taken-over work that may wait for room, in callback budgets
_ACCEPTED: Final = WebhookReply(200)


class _Delivery:
    """The callbacks of one accepted delivery still pending, and the body bytes they hold."""

    __slots__ = ("remaining", "size")

    def __init__(self, remaining: int, size: int) -> None:
        self.remaining = remaining
        self.size = size


class WebhookReceiver:
    """Route webhook deliveries to async callbacks.

    ``on_event`` gets every event; the specific callbacks get theirs (``on_recording``,
    ``on_transcription``, ``on_sip_call_created``, ``on_voicemail``, ``on_message_status``
    and ``on_settings_update`` for the 2026 events; events that carry only business-scoped
    user ids included). ``on_stale(event, reason)`` gets events that are not acted on:
    older than ``max_age`` seconds, without the
    timestamp their kind always carries (unless ``allow_missing_timestamp``), stamped more
    than ``max_age`` seconds in the future (no clock is that far off), or a connect whose
    call already ended (or whose record a shared state could not give). With aiohttp, use
    :meth:`app` for a ready application, or :meth:`handle` as the handler of your own route;
    with an ASGI server or framework (uvicorn, Starlette, FastAPI), :meth:`asgi`; with
    anything else, :meth:`receive`, the core the others adapt. Call :meth:`close` when done
    (the apps do it on shutdown).

    **Authentication is required**: ``signing_secret`` (the ``x-360dialog-signature`` HMAC)
    and/or ``secret_header=(name, value)``; empty secrets are refused. Without either the
    constructor raises :class:`~d360calling.InvalidRequestError`, unless you pass
    ``insecure_no_auth=True``, which logs one WARNING when the receiver first serves.

    The shared-secret header, when configured, is checked from the headers before the body
    is read (401 without reading it); the signature, over the body's raw bytes, once it is.
    A request with a ``Content-Encoding`` other than ``identity`` gets 415 unread: decoding
    before authenticating would be work (and memory: a small body may inflate to gigabytes)
    anyone could make the receiver do. (aiohttp itself answers 400, before the handler, to
    an encoding it has no decoder for, such as ``br`` without Brotli installed.) A refusal
    decided before the body was read closes the connection (``Connection: close``), so the
    rest of the body is not read either.

    **Bounds**, each answered before anything of the request is kept:

    ==========================  ================  ============================================
    Argument                    Default           When exceeded
    ==========================  ================  ============================================
    ``max_body_bytes``          1 MiB             413
    ``body_timeout``            10 s              408 (a body that trickles in)
    ``max_reading_bytes``       64 MiB            503 + ``Retry-After``, unread: bodies being
                                                  read at once (each counts its declared
                                                  length, or ``max_body_bytes`` if chunked)
    ``max_events_per_delivery`` 100               503 + ``Retry-After`` (counted unparsed)
    ``max_pending_callbacks``   10,000            503 + ``Retry-After``: callbacks not finished
                                                  (cancelled ones that have not unwound too)
    ``max_pending_bytes``       64 MiB            503 + ``Retry-After``: bodies of deliveries
                                                  whose callbacks are not finished
    ``callback_timeout``        None (no limit)   the callback is cancelled and logged
    ==========================  ================  ============================================

    A body that is not a webhook, or carries an id longer than 256 characters or a time
    outside 1970…9999, or that cannot be read (a broken chunked encoding), gets 400; a failed
    authentication 401. A client that disconnects before its body has arrived is counted
    (``disconnected``). Refusals are counted in :attr:`stats` and logged at most once a
    minute per kind; none is an ERROR or a traceback.

    **State**: everything the receiver remembers (which events it acted on, the call
    records, its unfinished work) lives in ``state``, a :class:`ReceiverState`: by default an
    :class:`InMemoryState` built from ``tracker`` and ``dedupe`` (one process's memory); a
    ``d360calling.fleet.RedisState`` shares it between the workers of a fleet, so that a
    duplicate landing on another worker is dropped, a connect whose call ended on another
    worker is stale, and :meth:`wait_for_permission` and :meth:`place_call` hear events that
    land on other workers (see ``docs/fleet.md``). While the state cannot be reached, every
    delivery is answered 503 with ``Retry-After`` (``stats["unavailable"]``). :meth:`start`
    connects it (the app does it on startup).

    **Replays and duplicates**: each event's key (call id + event + status; a digest of the
    item for unmodelled ones) goes to ``dedupe``, a :class:`DedupeMemory`; the default keeps
    the newest ``remember`` keys in memory. A validly signed delivery replayed after a restart,
    or after ``remember`` newer events, is acted on again if it is younger than ``max_age``:
    give a persistent ``dedupe`` (Redis, a database) to close that window. A key is recorded
    only once the delivery has passed every check, so a refused delivery's redelivery counts.
    An unmodelled event is age-checked when it has a readable ``timestamp``, and acted on
    when it has none. Which calls have ended is read from the call store (``tracker``), the
    seam to make persistent with it.

    **Memory retained at the defaults**, whatever the deliveries hold: the dedupe memory at
    most 100,000 keys of at most 49 characters (about 20 MB), the call store at most
    ``max_bytes`` (128 MiB, :class:`InMemoryCallStore`; a typical call takes about 900 bytes,
    so 100,000 of them about 87 MiB); nothing else outlives a delivery's callbacks. While
    bodies are read, at most 64 MiB of them (``max_reading_bytes``). While
    callbacks run, at most 10,000 pending tasks (about 4 KB each with their events, 40 MB) and
    64 MiB of delivery bodies (their parsed events take a small multiple of it). Per-call
    locks live only while their call has callbacks pending. The workflow below keeps at most
    1,024 answers to permission requests (a few hundred bytes each, without their contacts)
    and, only while a ``place_call`` waits for its connect answer, at most
    :data:`MAX_EARLY_EVENTS` events of calls not known yet. Work taken over from a dead
    worker of a fleet runs within the same budget; what waits for room is at most four
    times ``max_pending_callbacks`` events and ``max_pending_bytes`` of their bodies.

    **The calling workflow**: :meth:`wait_for_permission` waits for a user's answer to a
    permission request, :meth:`place_call` places a business-initiated call and follows it
    to its true outcome. At most ``max_waiters`` permission waits and ``max_outbound_calls``
    followed calls at a time (beyond: :class:`~d360calling.ClientMisuseError`); a wait that
    ends (answered, timed out, cancelled) and a call that is over leave nothing behind but
    the newest :data:`~d360calling.webhooks.MAX_REMEMBERED_ANSWERS` answers to
    requests. ``sleep`` is how their timeouts are waited out. :meth:`close` ends every wait
    with :class:`~d360calling.ClientClosedError`.
    """

    def __init__(
        self,
        *,
        on_connect: Callback[CallConnectEvent] | None = None,
        on_status: Callback[CallStatusEvent] | None = None,
        on_terminate: Callback[CallTerminateEvent] | None = None,
        on_permission_reply: Callback[PermissionReplyEvent] | None = None,
        on_recording: Callback[CallRecordingAvailableEvent] | None = None,
        on_transcription: Callback[CallTranscriptionAvailableEvent] | None = None,
        on_sip_call_created: Callback[SipCallCreatedEvent] | None = None,
        on_voicemail: Callback[VoicemailEvent] | None = None,
        on_message_status: Callback[MessageStatusEvent] | None = None,
        on_settings_update: Callback[AccountSettingsUpdateEvent] | None = None,
        on_unknown: Callback[UnknownEvent] | None = None,
        on_event: Callback[WebhookEvent] | None = None,
        on_stale: StaleCallback | None = None,
        signing_secret: str | bytes | None = None,
        secret_header: tuple[str, str] | None = None,
        insecure_no_auth: bool = False,
        max_age: float | None = 300.0,
        allow_missing_timestamp: bool = False,
        state: ReceiverState | None = None,
        tracker: CallTracker | None = None,
        dedupe: DedupeMemory | None = None,
        remember: int = 100_000,
        max_body_bytes: int = _MiB,
        body_timeout: float = 10.0,
        max_events_per_delivery: int = 100,
        max_pending_callbacks: int = 10_000,
        max_pending_bytes: int = 64 * _MiB,
        max_reading_bytes: int = 64 * _MiB,
        callback_timeout: float | None = None,
        max_waiters: int = 10_000,
        max_outbound_calls: int = 10_000,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        # The secrets are hidden first: a traceback captured with its locals shows this
        # frame's arguments when any check below fails.
        signing_secret = _hidden(signing_secret)
        if isinstance(secret_header, tuple):
            secret_header = tuple(  # type: ignore[assignment]
                _hidden(part) if i else part for i, part in enumerate(secret_header)
            )
        if secret_header is not None and (
            not isinstance(secret_header, tuple) or len(secret_header) != 2
        ):
            raise InvalidRequestError("secret_header must be a (name, value) tuple")
        self.auth = WebhookAuth(
            signing_secret=signing_secret,
            header_name=secret_header[0] if secret_header else None,
            header_value=secret_header[1] if secret_header else None,
        )
        if not isinstance(insecure_no_auth, bool):
            raise InvalidRequestError("insecure_no_auth must be True or False")
        if insecure_no_auth and self.auth.enabled:
            raise InvalidRequestError("insecure_no_auth=True with a secret: give one or the other")
        if not insecure_no_auth and not self.auth.enabled:
            raise InvalidRequestError(
                "a webhook receiver without authentication acts on anyone's requests: pass "
                "signing_secret= and/or secret_header=(name, value), or insecure_no_auth=True "
                "to run without (tests, or a network where only the sender can reach it)"
            )
        self.insecure_no_auth = insecure_no_auth
        self._on_connect = on_connect
        self._on_status = on_status
        self._on_terminate = on_terminate
        self._on_permission_reply = on_permission_reply
        self._callbacks: dict[type, Callable[[Any], Awaitable[None]] | None] = {
            CallRecordingAvailableEvent: on_recording,
            CallTranscriptionAvailableEvent: on_transcription,
            SipCallCreatedEvent: on_sip_call_created,
            VoicemailEvent: on_voicemail,
            MessageStatusEvent: on_message_status,
            AccountSettingsUpdateEvent: on_settings_update,
        }
        self._on_unknown = on_unknown
        self._on_event = on_event
        self._on_stale = on_stale
        self.max_age = None if max_age is None else _seconds("max_age", max_age)
        self.allow_missing_timestamp = bool(allow_missing_timestamp)
        _count("remember", remember)
        if state is not None and (tracker is not None or dedupe is not None):
            raise InvalidRequestError(
                "state= holds the call records and the dedupe memory: give it, or tracker= "
                "and dedupe=, not both"
            )
        self.state: ReceiverState = (
            state
            if state is not None
            else InMemoryState(tracker=tracker, dedupe=dedupe, remember=remember)
        )
        self._started = False
        self._starting: asyncio.Lock | None = None
        self._heard: OrderedDict[str, None] = OrderedDict()
        self._preparing = 0  # permission waits registered, still starting to watch
        # Work taken over from dead workers that waits for room in the budget: (work,
        # payload, body size), oldest first; it stays in the state until finished.
        self._recovering: deque[tuple[str, bytes, int]] = deque()
        self._recovering_bytes = 0
        self._unwatching: set[asyncio.Task[None]] = set()
        self.max_body_bytes = _count("max_body_bytes", max_body_bytes)
        self.body_timeout = _seconds("body_timeout", body_timeout)
        self.max_events_per_delivery = _count("max_events_per_delivery", max_events_per_delivery)
        self.max_pending_callbacks = _count("max_pending_callbacks", max_pending_callbacks)
        self.max_pending_bytes = _count("max_pending_bytes", max_pending_bytes)
        self.max_reading_bytes = _count("max_reading_bytes", max_reading_bytes)
        if self.max_events_per_delivery > self.max_pending_callbacks:
            raise InvalidRequestError(
                "max_events_per_delivery cannot exceed max_pending_callbacks (such a delivery "
                "could never be accepted)"
            )
        if self.max_body_bytes > self.max_pending_bytes:
            raise InvalidRequestError("max_body_bytes cannot exceed max_pending_bytes")
        if self.max_body_bytes > self.max_reading_bytes:
            raise InvalidRequestError("max_body_bytes cannot exceed max_reading_bytes")
        self.callback_timeout = (
            None if callback_timeout is None else _seconds("callback_timeout", callback_timeout)
        )
        if not callable(clock):
            raise InvalidRequestError("clock must be a callable giving Unix seconds")
        if not callable(sleep):
            raise InvalidRequestError("sleep must be an async callable taking seconds")
        self._clock = clock
        self._sleep = sleep
        self.max_waiters = _count("max_waiters", max_waiters)
        self.max_outbound_calls = _count("max_outbound_calls", max_outbound_calls)
        self._waiters = PermissionWaiters(self.max_waiters, sleep)
        # Calls placed here and not over, by id: weakly, so a handle nobody holds any more
        # (and no timer holds) goes; removed anyway when its call is over.
        self._outbound: weakref.WeakValueDictionary[str, OutboundCall] = (
            weakref.WeakValueDictionary()
        )
        self._connecting = 0  # place_call()s waiting for their connect answer
        self._early: OrderedDict[str, list[WebhookEvent]] = OrderedDict()
        self._early_count = 0
        self._throttled = _Throttled(clock)
        self._warned_insecure = False
        self._closing = False
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._tasks: set[asyncio.Task[None]] = set()
        self._abandoned: set[asyncio.Future[None]] = set()  # timed out, cancelled, not yet gone
        self._reserved = 0  # callbacks of deliveries being accepted right now
        self._pending_bytes = 0
        self._reading_bytes = 0  # what the bodies being read now may take, reserved
        self.stats: dict[str, int] = dict.fromkeys(
            (
                "received",  # requests handled
                "events",  # events in accepted deliveries, duplicates included
                "duplicates",
                "stale",
                "refused",  # every request not answered 200, the kinds below together
                "unauthenticated",  # 401
                "invalid",  # 400
                "too_large",  # 413
                "body_timeouts",  # 408
                "unsupported_encoding",  # 415: a Content-Encoding other than identity
                "disconnected",  # the client went away before its body arrived
                "too_many_events",  # 503
                "overloaded",  # 503: pending callbacks, pending or reading bytes at their cap,
                # or closing
                "unavailable",  # 503: the state (Redis) could not be reached
                "callback_timeouts",
                "cancelled",  # callbacks cancelled by close()
                "heard",  # events of watched calls and users heard from other workers
                "recovered",  # events a dead worker claimed, or whose claim's answer was
                # lost, acted on here
                "state_errors",  # record updates or finishes the state failed
            ),
            0,
        )

    # -- HTTP: the framework-neutral core ---------------------------------------------------

    async def start(self) -> None:
        """Connect the state (a :class:`~d360calling.fleet.RedisState`: a wrong URL or
        credentials raise :class:`~d360calling.StateUnavailableError` here, not on the first
        webhook) and start its background work; idempotent. The apps (:meth:`app`,
        :meth:`asgi`) do it on startup; :meth:`receive` does it on the first delivery when
        nobody did."""
        if self._started:
            return
        if self._closing:
            raise _closed_error()
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if not self._started:
                _claim_state(self.state, self)
                try:
                    await self.state.start(self)
                except BaseException:
                    _release_state(self.state, self)
                    raise
                self._started = True

    async def receive(
        self,
        headers: Mapping[str, str],
        body: bytes | BodyChunks,
        *,
        remote: str | None = None,
    ) -> WebhookReply:
        """Answer one webhook request, whatever serves it: the core that :meth:`handle`
        (aiohttp) and :meth:`asgi` (any ASGI server or framework) adapt.

        ``headers`` are the request's (names are matched whatever their case); ``body`` is
        its body, best as the chunks it arrives in (an async iterable of bytes that raises
        :class:`ConnectionError` if the client goes away), or as bytes read already. What
        the headers decide is answered before a chunk is read: the shared-secret header
        (401), a ``Content-Encoding`` (415), a declared ``Content-Length`` over
        ``max_body_bytes`` (413), ``max_reading_bytes`` (503); the chunks are then read
        within ``max_body_bytes`` (413 once they pass it) and ``body_timeout`` (408).
        ``remote``, the client's address, goes into the log line of a refusal.

        Returns the :class:`WebhookReply` to send: 200 once the delivery is accepted (its
        callbacks run after), else 400, 401, 408, 413, 415 or 503 as the class describes.
        Nothing the request holds makes it raise; a ``headers`` that is no mapping, or a
        ``body`` that is neither bytes nor an async iterable, raises
        :class:`~d360calling.InvalidRequestError`.
        """
        if not isinstance(headers, Mapping):
            raise InvalidRequestError("headers must be a mapping of header names to values")
        if not isinstance(body, (bytes, bytearray, memoryview, AsyncIterable)):
            raise InvalidRequestError("body must be bytes or an async iterable of bytes")
        if self.insecure_no_auth and not self._warned_insecure:
            self._warned_insecure = True
            _log.warning(
                "webhook receiver serving without authentication (insecure_no_auth=True): "
                "anyone who can reach it can post events"
            )
        self.stats["received"] += 1
        try:
            await self._receive(case_insensitive(headers), body)
        except _Refusal as refusal:
            return self._refuse(refusal, remote)
        return _ACCEPTED

    async def _receive(self, headers: Mapping[str, str], body: bytes | BodyChunks) -> None:
        if self._closing:
            raise _Refusal("overloaded", 503, "the receiver is shutting down", unread=True)
        if not self._started:
            try:
                await self.start()
            except StateUnavailableError:
                raise _Refusal(
                    "unavailable", 503, "the receiver's state is unavailable", unread=True
                ) from None
        # What the headers alone decide comes before the body is read: a request without the
        # shared secret costs no memory and no read time.
        if not self.auth.check_header(headers):
            raise _Refusal(
                "unauthenticated", 401, "unauthenticated", "authentication failed", unread=True
            )
        encoding = content_encoding(headers)
        if encoding is not None:
            # The signature is over the bytes as sent, and decoding before authenticating is
            # work (and memory: a small body may inflate to gigabytes) for anyone.
            raise _Refusal(
                "unsupported_encoding",
                415,
                "the body must not be compressed (Content-Encoding: identity)",
                f"Content-Encoding {encoding!r:.40}",
                unread=True,
            )
        data = await self._read_body(headers, body)
        if self._closing:  # closed while the body arrived: close() has returned, or will
            raise _Refusal("overloaded", 503, "the receiver is shutting down")
        if self.auth.enabled and not self.auth.check(headers, data):
            raise _Refusal("unauthenticated", 401, "unauthenticated", "authentication failed")
        try:
            events = parse_webhook(data, max_events=self.max_events_per_delivery)
        except _TooManyEvents as exc:
            raise _Refusal("too_many_events", 503, str(exc)) from None
        except WebhookParseError as exc:
            raise _Refusal("invalid", 400, str(exc)) from None
        need, size = len(events), len(data)
        if need and (
            len(self._tasks) + len(self._abandoned) + self._reserved + need
            > self.max_pending_callbacks
            or self._pending_bytes + size > self.max_pending_bytes
        ):
            raise _Refusal("overloaded", 503, "too many webhook callbacks pending")
        if need:
            # From here the delivery is accepted or refused as a whole, even if the request
            # is cancelled meanwhile (its keys must not stay recorded without their callbacks).
            self._reserved += need
            self._pending_bytes += size
            accepting = asyncio.ensure_future(self._accept(events, data))
            accepting.add_done_callback(_retrieved)  # its refusal is not "never retrieved"
            try:
                await asyncio.shield(accepting)
            except asyncio.CancelledError:
                if not accepting.cancelled():
                    raise  # this request was cancelled; its delivery is accepted regardless
                # The acceptance itself was cancelled (the dedupe memory's call was): it took
                # back what it had recorded, so the redelivery is acted on.
                raise _Refusal("overloaded", 503, "accepting the delivery was cancelled") from None

    async def _read_body(self, headers: Mapping[str, str], body: bytes | BodyChunks) -> bytes:
        declared = declared_length(headers)
        if declared is not None and declared > self.max_body_bytes:
            raise _Refusal(
                "too_large",
                413,
                f"the body is larger than {self.max_body_bytes} bytes",
                unread=True,
            )
        if isinstance(body, (bytes, bytearray, memoryview)):  # read already (a middleware)
            data = bytes(body)
        else:
            # Bodies being read at once hold at most max_reading_bytes between them: each
            # reserves what it may take (its declared length, else the cap) before reading.
            reserve = self.max_body_bytes if declared is None else declared
            if self._reading_bytes + reserve > self.max_reading_bytes:
                raise _Refusal(
                    "overloaded", 503, "too many webhook bodies being read at once", unread=True
                )
            self._reading_bytes += reserve
            try:
                # Never more than it reserved: a body longer than its declared length is
                # refused as the one too large it is.
                data = await asyncio.wait_for(read_up_to(body, reserve), self.body_timeout)
            except asyncio.TimeoutError:
                raise _Refusal(
                    "body_timeouts",
                    408,
                    f"the body did not arrive within {self.body_timeout:g} s",
                    unread=True,
                ) from None
            except ConnectionError:
                raise _Refusal(
                    "disconnected", 400, "the client disconnected before its body arrived"
                ) from None
            except _Unreadable as exc:
                # A broken chunked encoding, a body shorter than declared: the server's text.
                raise _Refusal(
                    "invalid", 400, f"the body cannot be read: {exc}", unread=True
                ) from None
            finally:
                self._reading_bytes -= reserve
        if len(data) > self.max_body_bytes:  # read whole by a middleware
            raise _Refusal("too_large", 413, f"the body is larger than {self.max_body_bytes} bytes")
        return data

    def _refuse(self, refusal: _Refusal, remote: str | None) -> WebhookReply:
        self.stats["refused"] += 1
        self.stats[refusal.kind] += 1
        if refusal.kind == "disconnected":  # no one to answer: the status is never sent
            self._throttled.warn(
                refusal.kind, "webhook request dropped: %s (from %s)", refusal.text, remote
            )
        else:
            self._throttled.warn(
                refusal.kind,
                "webhook refused with %d: %s (from %s)",
                refusal.status,
                refusal.detail or refusal.text,
                remote,
            )
        headers: dict[str, str] = {}
        if refusal.status == 503:
            headers["Retry-After"] = str(RETRY_AFTER)
        if refusal.unread:
            headers["Connection"] = "close"  # the rest of the body is not wanted
        return WebhookReply(refusal.status, refusal.text, headers, close=refusal.unread)

    # -- HTTP: aiohttp ----------------------------------------------------------------------

    def app(self, path: str = "/webhook") -> web.Application:
        """An aiohttp application serving :meth:`handle` at ``path``; its startup calls
        :meth:`start`, its cleanup :meth:`close` (so callbacks get :data:`CLOSE_TIMEOUT`
        seconds to finish)."""
        app = web.Application(client_max_size=self.max_body_bytes)
        app.router.add_post(path, self.handle)

        async def startup(_: web.Application) -> None:
            await self.start()

        async def cleanup(_: web.Application) -> None:
            await self.close()

        app.on_startup.append(startup)
        app.on_cleanup.append(cleanup)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        """The aiohttp handler (an adapter of :meth:`receive`): 200 once the delivery is
        accepted (its callbacks run after), else 400, 401, 408, 413, 415 or 503 as the class
        describes; never an exception."""
        if request.can_read_body:
            body: bytes | BodyChunks = _aiohttp_chunks(request.content)
        else:  # read already (by a middleware), or no body at all
            body = await request.read()
        reply = await self.receive(request.headers, body, remote=request.remote)
        if reply.status == 200:
            return web.Response(status=200)
        response = web.Response(status=reply.status, text=reply.text)
        for name, value in reply.headers.items():
            if name.lower() != "connection":  # aiohttp's own, set by force_close()
                response.headers[name] = value
        if reply.close:
            response.force_close()
            if content_encoding(request.headers) is not None:
                # After the response aiohttp reads what is left of an unread body to discard
                # it ("lingering"), decoding a compressed one as it goes (work for anyone),
                # and logs a body that does not decode at ERROR with a traceback, unthrottled.
                # A timeout is how its lingering ends quietly: it then closes the connection.
                request.content.set_exception(asyncio.TimeoutError())
        return response

    # -- HTTP: ASGI -------------------------------------------------------------------------

    def asgi(self, path: str | None = "/webhook") -> WebhookASGIApp:
        """A pure ASGI application serving :meth:`receive` at ``path`` (``None``: at any
        path), with no dependency: run it under uvicorn (or any ASGI server), mount it in
        Starlette or FastAPI (``app.mount("/hooks", receiver.asgi())`` serves
        ``/hooks/webhook``), or make it the endpoint of a Starlette route
        (``Route("/hooks/360", receiver.asgi(None), methods=["POST"])``: ``None``, as the
        route has matched the path already). Run on its own, it calls
        :meth:`start` on the server's startup and :meth:`close` on its shutdown (the ASGI
        lifespan); mounted or routed, it is not passed the lifespan: call them from the
        app's own (see ``docs/webhooks.md``). For a route handler of your own, see
        :meth:`receive_asgi`."""
        return WebhookASGIApp(self, path)

    async def receive_asgi(self, scope: ASGIScope, receive: ASGIReceive) -> WebhookReply:
        """:meth:`receive` for one ASGI ``http`` request, reading its body from ``receive``
        (raw bytes, as the signature needs them): what a route handler of a framework calls,
        e.g. in FastAPI ``reply = await receiver.receive_asgi(request.scope,
        request.receive)``, then answers ``Response(reply.body, reply.status,
        reply.headers)``. Nothing may have read the body before."""
        return await receive_asgi(self, scope, receive)

    # -- dispatch -----------------------------------------------------------------------

    async def _accept(self, events: list[WebhookEvent], body: bytes) -> None:
        """Claim the delivery's events in the state and start the callbacks of those this
        worker acts on; on a state that fails, refuse the delivery (503), so it is delivered
        again (the state takes back what it claimed)."""
        size = len(body)
        claims = [_claim(event, index, size) for index, event in enumerate(events)]
        try:
            fresh = await self.state.claim(body, claims)
        except (Exception, asyncio.CancelledError) as exc:
            self._pending_bytes -= size
            if isinstance(exc, asyncio.CancelledError):
                raise
            if isinstance(exc, StateUnavailableError):
                # The state logs an outage once; each refusal is throttled like the others.
                raise _Refusal("unavailable", 503, "the receiver's state is unavailable") from None
            _log.exception("webhook dedupe memory failed; the delivery is refused")
            raise _Refusal("overloaded", 503, "the dedupe memory failed") from None
        finally:
            self._reserved -= len(events)
        if len(fresh) != len(claims):  # a state of the user's own that breaks its contract
            self._pending_bytes -= size
            _log.error("webhook state answered %d claims for %d", len(fresh), len(claims))
            raise _Refusal("overloaded", 503, "the dedupe memory failed")
        self.stats["events"] += len(events)
        self.stats["duplicates"] += fresh.count(False)
        started = [
            (event, claim) for event, claim, new in zip(events, claims, fresh, strict=True) if new
        ]
        if not started:
            self._pending_bytes -= size
            return
        self._start_runs(started, size)

    def _start_runs(self, runs: list[tuple[WebhookEvent, EventClaim]], size: int) -> None:
        delivery = _Delivery(len(runs), size)
        for event, claim in runs:
            task = asyncio.create_task(self._run(event, self._stale_reason(event), claim))
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._finished, delivery))

    def _finished(self, delivery: _Delivery, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        delivery.remaining -= 1
        if delivery.remaining == 0:
            self._pending_bytes -= delivery.size
        if self._recovering:
            self._start_recovered()

    def _stale_reason(self, event: WebhookEvent) -> str | None:
        if self.max_age is None:
            return None
        timestamp = event.timestamp
        if timestamp is None:
            # Every modelled kind carries one (api-facts §2); unmodelled kinds may not.
            if self.allow_missing_timestamp or isinstance(event, UnknownEvent):
                return None
            return "no timestamp, so its age cannot be checked"
        age = self._clock() - timestamp  # parse_webhook keeps timestamps within 0…9999
        if age > self.max_age:
            return f"{age:.0f} s old (max_age {self.max_age:.0f} s)"
        if -age > self.max_age:
            # Clock skew is seconds; an event stamped further ahead than max_age would
            # otherwise never be too old, whenever it is replayed.
            return f"{-age:.0f} s in the future (more than max_age {self.max_age:.0f} s ahead)"
        return None

    async def _run(self, event: WebhookEvent, stale: str | None, claim: EventClaim) -> None:
        # A run cancelled (by close()) is not finished: it stays this worker's work, which a
        # shared state hands to another worker once this one has stopped.
        await self._run_locked(event, stale)
        try:
            await self.state.finish(claim)
        except Exception as exc:
            self.stats["state_errors"] += 1
            self._throttled.warn(
                "state_finish", "webhook state could not finish an event: %s", _text(exc)
            )

    async def _run_locked(self, event: WebhookEvent, stale: str | None) -> None:
        call_id = getattr(event, "call_id", None)
        lock = None
        if call_id is not None:
            lock = self._locks.get(call_id)
            if lock is None:
                lock = self._locks[call_id] = asyncio.Lock()
        try:
            if lock is None:
                await self._dispatch(event, stale)
            else:
                async with lock:  # one call's events in the order they arrived
                    await self._dispatch(event, stale)
        except Exception:
            _log.exception("webhook callback failed for %s", type(event).__name__)

    async def _dispatch(self, event: WebhookEvent, stale: str | None) -> None:
        if isinstance(event, _OUTBOUND_KINDS):
            # The call records are the memory of ended calls: a connect whose call ended
            # (anywhere in the fleet: the state applies atomically) is not acted on.
            reached, before = await self._apply(event)
            if stale is None and isinstance(event, CallConnectEvent):
                if not reached:  # answering a call that may have ended is worse than not
                    stale = "the call's record could not be read (state unavailable)"
                elif before is not None and before.ended:
                    stale = "the call already ended (its terminate arrived first)"
        try:
            self._feed_workflows(event, stale)
        except Exception:  # a waiter's failure must not cost the user's callbacks
            _log.exception("webhook workflow failed for %s", type(event).__name__)
        if stale is not None:
            self.stats["stale"] += 1
            _log.info("webhook event not acted on: %s: %s", type(event).__name__, stale)
            if self._on_stale is not None:
                await self._guarded("on_stale", self._on_stale(event, stale))
            return
        pending = self._specific_callback(event)
        if pending is not None:
            await self._guarded(f"on_{event.kind}", pending)
        if self._on_event is not None:
            await self._guarded("on_event", self._on_event(event))

    async def _apply(
        self, event: CallConnectEvent | CallStatusEvent | CallTerminateEvent
    ) -> tuple[bool, CallRecord | None]:
        """Apply ``event`` to its call's record: whether the state was reached, and the
        record before. A state that cannot be reached (:class:`StateUnavailableError`) is tried
        again a few times; then, for a connect, it is asked once for the record as it
        stands, and if that fails too, it was not reached (the event was accepted already:
        the sender will not deliver it again). Any other failure (a call store of the
        user's own that raises) is logged and the event acted on without its record, at
        once."""
        for pause in (*_APPLY_RETRIES, None):
            try:
                before, _ = await self.state.apply(event)
                return True, before
            except StateUnavailableError as exc:
                self.stats["state_errors"] += 1
                self._throttled.warn(
                    "state_apply", "webhook state could not apply an event: %s", _text(exc)
                )
                if pause is None or self._closing:
                    break
                await self._sleep(pause)
            except Exception as exc:
                self.stats["state_errors"] += 1
                self._throttled.warn(
                    "state_apply_failed",
                    "webhook state failed to apply an event (acted on without its record): %s",
                    _text(exc),
                )
                return True, None
        if not isinstance(event, CallConnectEvent):
            return False, None  # acted on: only a connect depends on its record
        try:
            return True, await self.state.record(event.call_id)
        except Exception as exc:
            self.stats["state_errors"] += 1
            self._throttled.warn(
                "state_record", "webhook state could not read a call's record: %s", _text(exc)
            )
            return False, None

    async def _guarded(self, name: str, callback: Awaitable[None]) -> None:
        """Await a callback, cancelling it after ``callback_timeout`` seconds."""
        if self.callback_timeout is None:
            await callback
            return
        future = asyncio.ensure_future(callback)
        try:
            done, _ = await asyncio.wait({future}, timeout=self.callback_timeout)
        except asyncio.CancelledError:
            self._abandon(future)
            raise
        if done:
            future.result()  # the callback's own outcome, its exception included
            return
        self._abandon(future)
        self.stats["callback_timeouts"] += 1
        _log.warning(
            "webhook callback %s timed out after %g s and was cancelled",
            name,
            self.callback_timeout,
        )

    def _abandon(self, future: asyncio.Future[None]) -> None:
        """Cancel a callback no longer awaited. Until it has unwound (one that swallows its
        cancellation may run on) it counts against ``max_pending_callbacks``, and close()
        waits for it too."""
        future.cancel()
        if not future.done():
            self._abandoned.add(future)
            future.add_done_callback(self._unwound)

    def _unwound(self, future: asyncio.Future[None]) -> None:
        self._abandoned.discard(future)
        if self._recovering:
            self._start_recovered()

    def _specific_callback(self, event: WebhookEvent) -> Awaitable[None] | None:
        """The run of the callback for this kind of event, if one was given (exact types, as
        parse_webhook makes them)."""
        if type(event) is CallConnectEvent:
            return None if self._on_connect is None else self._on_connect(event)
        if type(event) is CallStatusEvent:
            return None if self._on_status is None else self._on_status(event)
        if type(event) is CallTerminateEvent:
            return None if self._on_terminate is None else self._on_terminate(event)
        if type(event) is PermissionReplyEvent:
            callback = self._on_permission_reply
            return None if callback is None else callback(event)
        if type(event) is UnknownEvent:
            return None if self._on_unknown is None else self._on_unknown(event)
        callback = self._callbacks.get(type(event))
        return None if callback is None else callback(event)

    # -- the calling workflow -----------------------------------------------------------

    def _feed_workflows(self, event: WebhookEvent, stale: str | None) -> None:
        """Hand ``event`` to the waits it may end (before the user's callbacks, which may be
        slow). A stale permission answer ends no wait (it may be a replay); a placed call
        takes its events stale or not, since it is the only one with its fresh id and its
        own rules ignore what comes after its end."""
        if isinstance(event, PermissionReplyEvent):
            if stale is None:
                self._waiters.reply(event)
        elif isinstance(event, MessageStatusEvent):
            if stale is None:
                self._waiters.status(event)
        elif isinstance(event, _OUTBOUND_KINDS):
            call = self._outbound.get(event.call_id)
            if call is not None:
                call.feed(event)
            elif self._connecting and not (
                isinstance(event, (CallConnectEvent, CallTerminateEvent)) and event.is_inbound
            ):
                self._keep_early(event)

    # -- from other workers (the state calls these) ----------------------------------------

    def heard(self, payload: bytes) -> None:
        """An event another worker received, published to a topic this worker watches: fed
        to the waits and placed calls here (its callbacks run where it was claimed)."""
        event = self._event_of(payload, skip_own=True)
        if event is None:
            return
        key = _memory_key(event)
        if key is not None:
            if key in self._heard:
                return  # heard already (published and recalled both)
            self._heard[key] = None
            if len(self._heard) > _HEARD:
                self._heard.popitem(last=False)
        self.stats["heard"] += 1
        try:
            self._feed_workflows(event, self._stale_reason(event))
        except Exception:
            _log.exception("webhook workflow failed for %s", type(event).__name__)

    def recovered(self, payloads: Sequence[tuple[str, bytes]]) -> None:
        """Events a dead worker claimed and did not finish: acted on here, as if this
        worker had claimed them (it has: they are its work now), within the same budget as
        deliveries (``max_pending_callbacks``, ``max_pending_bytes``): what does not fit now
        waits here, in order, and starts as runs finish. At most four budgets' worth waits
        (the work of four workers with this budget that die at once, while this one is
        busy); beyond that, the rest stays this worker's unfinished work in the state (a
        WARNING says how much), which another worker takes over once this one stops."""
        if self._closing:
            return
        taken = 0
        left = 0
        for work, payload in payloads:
            decoded = decode_payload(payload)
            if decoded is None:
                self._throttled.warn("state_payload", "webhook state sent a payload not of ours")
                continue
            size = len(decoded[2])
            if self._recovering and (
                len(self._recovering) >= _RECOVER_BUDGETS * self.max_pending_callbacks
                or self._recovering_bytes + size > _RECOVER_BUDGETS * self.max_pending_bytes
            ):
                left += 1
                continue
            self._recovering.append((work, payload, size))
            self._recovering_bytes += size
            taken += 1
            self._start_recovered()  # what fits starts now; the rest waits, in order
        if taken:
            self.stats["recovered"] += taken
            _log.warning(
                "webhook receiver acting on %d events it claimed without running them (a "
                "dead worker's, or a claim whose answer was lost; %d wait for room in the "
                "callback budget)",
                taken,
                len(self._recovering),
            )
        if left:
            _log.warning(
                "webhook receiver has too many taken-over events waiting: %d stay its "
                "unfinished work in the state, taken over by another worker once it stops",
                left,
            )

    def _start_recovered(self) -> None:
        """Start the taken-over events that wait, as far as the budget allows (one at least
        when nothing is pending, so that one larger than the budget still runs)."""
        while self._recovering and not self._closing:
            work, payload, size = self._recovering[0]
            busy = len(self._tasks) + len(self._abandoned) + self._reserved
            if (busy or self._pending_bytes) and (
                busy + 1 > self.max_pending_callbacks
                or self._pending_bytes + size > self.max_pending_bytes
            ):
                return
            self._recovering.popleft()
            self._recovering_bytes -= size
            event = self._event_of(payload, skip_own=False)
            decoded = decode_payload(payload)
            if event is None or decoded is None:
                continue
            claim = attrs.evolve(_claim(event, decoded[1], size), work=work)
            self._pending_bytes += size
            self._start_runs([(event, claim)], size)

    def _event_of(self, payload: bytes, *, skip_own: bool) -> WebhookEvent | None:
        decoded = decode_payload(payload)
        if decoded is None:
            self._throttled.warn("state_payload", "webhook state sent a payload not of ours")
            return None
        worker, index, body = decoded
        if skip_own and worker == self.state.worker:
            return None
        try:
            events = parse_webhook(body, max_events=self.max_events_per_delivery)
        except WebhookParseError:
            self._throttled.warn("state_payload", "webhook state sent a payload not of ours")
            return None
        return events[index] if index < len(events) else None

    async def _watch(self, topics: Sequence[str]) -> list[str]:
        """Watch ``topics``; those now watched (all, or none if the state failed)."""
        watched: list[str] = []
        try:
            for topic in topics:
                await self.state.watch(topic)
                watched.append(topic)
        except BaseException:
            self._unwatch_later(watched)
            raise
        return watched

    def _unwatch_later(self, topics: Sequence[str]) -> None:
        if not topics:
            return

        async def unwatch() -> None:
            for topic in topics:
                try:
                    await self.state.unwatch(topic)
                except Exception as exc:
                    self._throttled.warn(
                        "state_watch", "webhook state could not stop a watch: %s", _text(exc)
                    )

        task = asyncio.ensure_future(unwatch())
        self._unwatching.add(task)
        task.add_done_callback(self._unwatching.discard)

    async def _recall(self, topic: str) -> None:
        """Feed what other workers kept under ``topic`` (an answer or a call's events that
        arrived before this worker watched it)."""
        for payload in await self.state.recall(topic):
            self.heard(payload)

    def _keep_early(self, event: CallConnectEvent | CallStatusEvent | CallTerminateEvent) -> None:
        self._early.setdefault(event.call_id, []).append(event)
        self._early_count += 1
        while self._early_count > MAX_EARLY_EVENTS:
            _, dropped = self._early.popitem(last=False)
            self._early_count -= len(dropped)

    async def wait_for_permission(
        self, user: str, *, timeout: float | None, message_id: str | None = None
    ) -> PermissionWaitResult:
        """Wait for ``user``'s answer to a call-permission request: the next permission
        reply webhook for them (matched by phone number or BSUID, whichever it carries).

        With ``message_id`` (the request's, from ``send_call_permission_request``): a reply
        whose ``context.id`` names another request does not end the wait; a reply that
        answers no request (granted from the business profile, or automatically after the
        user called; revoked automatically; these have no ``context``, or a call's wacid)
        does, since it is the user's permission as it now stands. A ``failed`` status of
        that message ends it as ``FAILED`` with the typed ``error``; and an answer to that
        message that arrived before the wait started ends it at once (the receiver remembers
        the newest answers to requests). Without ``message_id`` only replies that arrive
        after the call count.

        Returns a :class:`PermissionWaitResult`: ``GRANTED_TEMPORARY`` (with ``expires_at``),
        ``GRANTED_PERMANENT``, ``DECLINED``, ``FAILED``, or ``TIMED_OUT`` after ``timeout``
        seconds (``None``: no limit). A duplicate reply is dropped before it gets here, and a
        wait is resolved once. The waiter is registered before the user's topics are watched
        in the shared state, so a reply heard from another worker meanwhile ends it.

        Raises:
            InvalidRequestError: a bad argument.
            ClientMisuseError: past ``max_waiters``.
            ClientClosedError: the receiver closes meanwhile.
            StateUnavailableError: the shared state (a ``RedisState``) cannot be reached to
                start it or watch the user's topics.
        """
        checked = check_user(user)
        seconds = check_timeout("timeout", timeout)
        request = check_message_id(message_id)
        if self._closing:
            raise _closed_error()
        await self.start()
        topics = [f"user:{user_key(checked)}"]
        if request is not None:
            topics.append(f"msg:{request}")
        watched: list[str] = []

        async def prepare() -> None:
            # Run with the waiter registered: what other workers publish from now on, and
            # what they kept before, resolves it. Until it is done the wait is not counted
            # in `waiting`: it may not hear other workers yet.
            self._preparing += 1
            try:
                watched.extend(await self._watch(topics))
                if request is not None:
                    await self._recall(f"msg:{request}")
            finally:
                self._preparing -= 1

        try:
            return await self._waiters.wait(checked, seconds, request, prepare=prepare)
        finally:
            self._unwatch_later(watched)

    async def place_call(
        self,
        client: AsyncClient,
        to: str | None = None,
        sdp: str | None = None,
        *,
        recipient: str | None = None,
        ringing_timeout: float | None = 60.0,
        biz_opaque_callback_data: str | None = None,
        recording: CallRecording | None = None,
        transcription: CallTranscription | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> OutboundCall:
        """Call a user (``client.connect_call(to, sdp, recipient=...)`` with the connect
        options after ``ringing_timeout``, passed on as given; ``timeout`` and
        ``max_retries`` are the connect request's) and follow the call through this
        receiver's webhooks: the returned
        :class:`OutboundCall` knows when the user really accepted (``await
        call.answered()``, with their SDP answer), declined, let it ring out, or the call
        failed (see its module for which webhook decides what).

        The call is followed from before ``connect`` is sent: webhooks that arrive before
        its answer are replayed to it. If it is not answered within ``ringing_timeout``
        seconds (counted from connect's answer; ``None``: no limit), it is terminated
        through ``client`` and ``answered()`` raises ``CallUnansweredError``. The receiver
        must be the one ``client``'s webhooks reach, served on the running loop.
        """
        options = _connect_options(
            biz_opaque_callback_data=biz_opaque_callback_data,
            recording=recording,
            transcription=transcription,
            timeout=timeout,
            max_retries=max_retries,
        )
        return await self._place_call(
            AsyncClientActions(client), to, sdp, recipient, ringing_timeout, options
        )

    async def _place_call(
        self,
        actions: OutboundActions,
        to: str | None,
        sdp: str | None,
        recipient: str | None,
        ringing_timeout: float | None,
        options: Mapping[str, Any],
    ) -> OutboundCall:
        if sdp is None:
            raise InvalidRequestError("sdp (the SDP offer) is required")
        if to is None and recipient is None:
            raise InvalidRequestError("to (a phone number) or recipient (a BSUID) is required")
        user = check_user(to, "to") if to is not None else check_user(recipient, "recipient")
        if ringing_timeout is not None and not check_timeout("ringing_timeout", ringing_timeout):
            raise InvalidRequestError("ringing_timeout must be positive (or None)")
        if self._closing:
            raise _closed_error()
        if len(self._outbound) + self._connecting >= self.max_outbound_calls:
            raise ClientMisuseError(
                f"{self.max_outbound_calls} placed calls are being followed already "
                "(max_outbound_calls)"
            )
        self._connecting += 1
        try:
            call_id = await actions.connect(to, sdp, recipient, options)
            call = OutboundCall(
                call_id=call_id,
                user=user,
                actions=actions,
                ringing_timeout=ringing_timeout,
                sleep=self._sleep,
                on_over=self._call_over,
            )
            early = self._early.pop(call_id, [])
            self._early_count -= len(early)
            if self._is_closing():  # closed while connect was out
                call.close(_closed_error)
                return call
            self._outbound[call_id] = call
            for event in early:  # what arrived before connect's answer, in order
                call.feed(event)
            topic = f"call:{call_id}"
            try:
                # Its webhooks may land on other workers: hear them, and what came before.
                call.watched = await self._watch([topic])
                await self._recall(topic)
            except StateUnavailableError as exc:
                self._throttled.warn(
                    "state_watch",
                    "a placed call is followed by this worker's webhooks only: %s",
                    _text(exc),
                )
            except BaseException:  # cancelled (or a state that broke): nobody follows it
                self._forget_call(call)
                raise
            if self._is_closing():  # closed while the watch was out: no timer, nothing sent
                self._forget_call(call)
                call.close(_closed_error)
                return call
            if call.outcome is not None:  # over already: _call_over has run
                self._forget_call(call)
            call.start()
            return call
        finally:
            self._connecting -= 1
            if not self._connecting:
                self._early.clear()
                self._early_count = 0

    def _is_closing(self) -> bool:
        return self._closing

    def _call_over(self, call: OutboundCall) -> None:
        self._forget_call(call)

    def _forget_call(self, call: OutboundCall) -> None:
        """Stop following ``call``: out of the placed calls, its topics unwatched."""
        if self._outbound.get(call.call_id) is call:
            del self._outbound[call.call_id]
        watched, call.watched = call.watched, []
        self._unwatch_later(watched)

    @property
    def tracker(self) -> CallTracker:
        """The call tracker of the default :class:`InMemoryState` (the ``tracker`` given, or
        the one it made). Raises :class:`~d360calling.ClientMisuseError` when the receiver
        was given a ``state`` of another kind: its records are read through
        :meth:`call` and ``receiver.state``."""
        return _in_memory(self.state).tracker

    @property
    def dedupe(self) -> DedupeMemory:
        """The dedupe memory of the default :class:`InMemoryState` (the ``dedupe`` given,
        or the one it made). Raises :class:`~d360calling.ClientMisuseError` when the
        receiver was given a ``state`` of another kind (use ``receiver.state``)."""
        return _in_memory(self.state).dedupe

    @property
    def waiting(self) -> int:
        """Permission waits going on and in effect (watching their topics of a shared
        state, when there is one)."""
        return len(self._waiters) - self._preparing

    @property
    def followed_calls(self) -> int:
        """Placed calls being followed (not over)."""
        return len(self._outbound)

    async def call(self, call_id: str) -> CallRecord | None:
        """The tracked state of a call (from the state: fleet-wide with a shared one)."""
        return await self.state.record(call_id)

    @property
    def pending(self) -> int:
        """Callbacks started and not finished."""
        return len(self._tasks)

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until every callback started so far has finished, or ``timeout`` seconds have
        passed; whether they all finished. Nothing is cancelled (:meth:`close` does that)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self._tasks or self._abandoned:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return False
            await asyncio.wait({*self._tasks, *self._abandoned}, timeout=left)
        return True

    async def close(self, timeout: float | None = CLOSE_TIMEOUT) -> None:
        """Stop accepting deliveries (503 from now on), end every permission wait and every
        wait on a placed call with :class:`~d360calling.ClientClosedError` (nothing is sent:
        a placed call still ringing is no longer ended by its ``ringing_timeout``; end it
        with ``client.terminate_call``), let running callbacks finish for up to ``timeout``
        seconds (``None``: as long as they take), then cancel the rest; idempotent. A
        callback that ignores its cancellation is left behind after a second."""
        self._closing = True
        self._recovering.clear()  # still this worker's work in the state, for another
        self._recovering_bytes = 0
        # Waits end first: a callback that awaits one would otherwise hold up the drain.
        self._waiters.close(_closed_error)
        for call in list(self._outbound.values()):
            call.close(_closed_error)
        self._outbound.clear()
        try:
            await self._close_callbacks(timeout)
        finally:
            if self._unwatching:
                await asyncio.wait(set(self._unwatching), timeout=_CANCEL_GRACE)
            try:
                await self.state.close()
            finally:
                _release_state(self.state, self)

    async def _close_callbacks(self, timeout: float | None) -> None:
        if await self.drain(timeout):
            return
        running = {*self._tasks, *self._abandoned}
        for task in running:
            task.cancel()
        self.stats["cancelled"] += len(running)
        _log.warning(
            "webhook receiver closed with %d callbacks still running after %g s: cancelled",
            len(running),
            timeout,
        )
        await asyncio.wait(running, timeout=_CANCEL_GRACE)


async def _aiohttp_chunks(stream: StreamReader) -> AsyncIterator[bytes]:
    """An aiohttp request's body as it arrives, for :meth:`WebhookReceiver.receive`."""
    while True:
        try:
            chunk = await stream.read(_READ_CHUNK)
        except web.RequestPayloadError as exc:
            raise _Unreadable(str(exc)) from None
        if not chunk:
            return
        yield chunk


def _connect_options(**options: object) -> dict[str, object]:
    """The connect options that were given: one left out stays out of the call, so a client
    that predates it keeps working."""
    return {name: value for name, value in options.items() if value is not None}


# Which receiver started each state (by identity): a state calls back one listener, so a
# second receiver on it would never hear what other workers publish. Weak both ways: an
# entry keeps neither alive, and goes with its state.
_StateRef = weakref.ref[object]
_STARTED_BY: dict[int, tuple[_StateRef, weakref.ref[WebhookReceiver]]] = {}


def _claim_state(state: ReceiverState, receiver: WebhookReceiver) -> None:
    """Record that ``receiver`` starts ``state``; :class:`ClientMisuseError` if another
    receiver (not closed) started it already. A state that cannot be weakly referenced is
    not checked."""
    key = id(state)
    entry = _STARTED_BY.get(key)
    if entry is not None and entry[0]() is state:
        owner = entry[1]()
        if owner is receiver:
            return
        if owner is not None:
            raise ClientMisuseError(
                f"this {type(state).__name__} is started by another WebhookReceiver already: "
                "a state calls back one receiver, so give each receiver its own state (one "
                "per worker, on the same URL and prefix for a fleet)"
            )

    def gone(ref: _StateRef) -> None:
        found = _STARTED_BY.get(key)
        if found is not None and found[0] is ref:
            del _STARTED_BY[key]

    try:
        state_ref: _StateRef = weakref.ref(state, gone)
    except TypeError:
        return
    _STARTED_BY[key] = (state_ref, weakref.ref(receiver))


def _release_state(state: ReceiverState, receiver: WebhookReceiver) -> None:
    entry = _STARTED_BY.get(id(state))
    if entry is not None and entry[0]() is state and entry[1]() in (receiver, None):
        del _STARTED_BY[id(state)]


def _in_memory(state: ReceiverState) -> InMemoryState:
    if isinstance(state, InMemoryState):
        return state
    raise ClientMisuseError(
        f"this receiver's state is {type(state).__name__}: use receiver.state (and "
        "receiver.call(call_id) for a call's record)"
    )


def _closed_error() -> ClientClosedError:
    return ClientClosedError("the webhook receiver is closed")


def _retrieved(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()


def _claim(event: WebhookEvent, index: int, size: int) -> EventClaim:
    """How the state is asked to claim ``event``: its key, and the topics of the call or user
    it concerns (where the worker holding a wait or a placed call hears it)."""
    key = _memory_key(event)
    work = key if key is not None else f"nokey:{uuid.uuid4().hex}"
    topics: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    call_id: str | None = None
    if isinstance(event, _OUTBOUND_KINDS):
        call_id = event.call_id
        topics = (f"call:{call_id}",)
        inbound = getattr(event, "is_inbound", False)
        if not inbound and size <= _KEEP_UP_TO:
            keep = topics  # a placed call's events, for its handle to replay
    elif isinstance(event, PermissionReplyEvent):
        topics = tuple(sorted({f"user:{user_key(user)}" for user in event.user_ids}))
        context = event.context_id
        if context is not None and not context.startswith("wacid.") and size <= _KEEP_UP_TO:
            topics = (*topics, f"msg:{context}")
            keep = (f"msg:{context}",)
    elif isinstance(event, MessageStatusEvent) and event.failed:
        topics = (f"msg:{event.message_id}",)
        if size <= _KEEP_UP_TO:
            keep = topics
    return EventClaim(key=key, work=work, index=index, call_id=call_id, topics=topics, keep=keep)


def _text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def _memory_key(event: WebhookEvent) -> str | None:
    """What the dedupe memory keeps of an event: its kind and a digest of its dedupe key,
    about 50 characters however long the key's parts are."""
    parts = event.dedupe_key
    if parts is None:
        return None
    digest = hashlib.blake2b(json.dumps(list(parts)).encode(), digest_size=16).hexdigest()
    return f"{event.kind}:{digest}"


def _hidden(value: object) -> Any:
    """A secret as a :class:`Secret` or :class:`SecretBytes` (whose repr is ``<redacted>``);
    anything else as it is, for the checks to refuse."""
    if isinstance(value, str) and not isinstance(value, Secret):
        return Secret(value)
    if isinstance(value, bytes) and not isinstance(value, SecretBytes):
        return SecretBytes(value)
    return value


def _count(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InvalidRequestError(f"{name} must be a positive int, got {value!r:.40}")
    return value


def _seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequestError(f"{name} must be a number of seconds, got {value!r:.40}")
    if not math.isfinite(value) or value <= 0:
        raise InvalidRequestError(f"{name} must be a positive, finite number of seconds")
    return float(value)
