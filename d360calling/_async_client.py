"""AsyncClient: the API's four endpoints over one pooled session, with the one retry loop."""

from __future__ import annotations

import datetime
import logging
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import aiohttp
import cattrs

from . import _json
from ._constants import CALLS_PATH, MAX_ERROR_BODY_BYTES, PERMISSIONS_PATH, SETTINGS_PATH
from ._converter import check_types, decode, decode_errors, encode
from ._headers import request_id_from
from ._options import ClientOptions, check_max_retries, check_seconds, hide_api_key
from ._redact import redact_sdp
from ._retry import CallKind, GiveUp, budget, decide
from ._transport import AsyncTransport, RawResponse, request_headers
from ._validation import finite_float
from .errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    InvalidRequestError,
    ResponseDecodeError,
    UnsuccessfulResponseError,
    _error_from_answer,
    error_from_response,
)
from .models._checks import check_whatsapp_id
from .models.calls import (
    CALL_ACTION_REQUESTS,
    AcceptCallRequest,
    CallActionRequest,
    CallActionResponse,
    ConnectCallRequest,
    ConnectCallResponse,
    PreAcceptCallRequest,
    RejectCallRequest,
    TerminateCallRequest,
)
from .models.permissions import CallPermissions
from .models.settings import Settings, SettingsUpdate, UpdateSettingsResponse

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._options import ClientOptionChanges

__all__ = ("AsyncClient", "Deadline")

T = TypeVar("T")
Deadline = float | datetime.datetime
"""When an answer-side action stops being worth retrying: Unix seconds or an aware datetime."""

_log = logging.getLogger("d360calling")
# Request and response bodies at DEBUG, separately switchable: they hold SDPs, whose ICE
# credentials and SRTP keys are always redacted, and addresses by default.
_wire_log = logging.getLogger("d360calling.wire")
# Answer-side actions and settings updates come back as the same few bytes every time; their
# models are frozen, so one decode of those bytes can be handed out again.
_MEMO_TYPES: frozenset[type] = frozenset({CallActionResponse, UpdateSettingsResponse})
_MEMO_MAX_BODY = 256
_MEMO_MAX_ENTRIES = 64
# What a client derived with with_options() cannot change: they belong to the shared pool.
_POOL_OPTIONS = frozenset(
    {
        "base_url",
        "connect_timeout",
        "pool_size",
        "keepalive_timeout",
        "ssl_context",
        "ca_bundle",
        "proxy",
        "trust_env",
    }
)


class AsyncClient:
    """Asyncio client for 360dialog's WhatsApp Calling API.

    Use it as ``async with AsyncClient(api_key=...) as client:`` or call :meth:`aclose`.
    Settings are given as keywords or as one :class:`ClientOptions` (``options=``); see it for
    what each does. ``timeout`` and ``max_retries`` can also be overridden per call, and
    :meth:`with_options` gives a client with other settings on the same connection pool.

    ``session`` is an aiohttp session to use instead of our own; the client never closes it,
    and a wait for one of its pooled connections counts against ``timeout``.

    Each attempt logs one line on the ``d360calling`` logger (DEBUG when it succeeds, INFO
    when it fails); request bodies and response bodies (the first 64 KiB) go to
    ``d360calling.wire`` at DEBUG, with ``a=ice-pwd``, ``a=ice-ufrag``, ``a=key-mgmt`` and
    ``a=crypto`` ``inline:`` keys always redacted and IP addresses redacted unless
    ``log_sdp_addresses=True``. The API key is never logged, and sits in a string whose repr
    is ``<redacted>``.
    """

    def __init__(
        self,
        *,
        options: ClientOptions | None = None,
        session: aiohttp.ClientSession | None = None,
        **changes: Unpack[ClientOptionChanges],
    ):
        if options is not None and not isinstance(options, ClientOptions):
            raise InvalidRequestError(f"options must be a ClientOptions, got {options!r:.40}")
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise InvalidRequestError("session must be an aiohttp.ClientSession")
        hide_api_key(changes)
        if options is None:
            options = ClientOptions(**changes)
        elif changes:
            options = options.evolve(**changes)
        self._set_options(options)
        self._owns_transport = True
        self._transport = AsyncTransport(
            base_url=options.base_url,
            connect_timeout=options.connect_timeout,
            pool_size=options.pool_size,
            keepalive_timeout=options.keepalive_timeout,
            ssl_context=options.tls_context(),
            session=session,
            proxy=options.proxy,
            trust_env=options.trust_env,
        )

    def _set_options(self, options: ClientOptions) -> None:
        self._options = options
        self._policy = options.retry_policy
        self._headers, self._json_headers = request_headers(options.api_key)
        self._decoded: dict[tuple[type, bytes], Any] = {}

    def with_options(self, **changes: Unpack[ClientOptionChanges]) -> AsyncClient:
        """A client with ``changes`` to this one's settings, on this client's connection pool.

        It never closes the pool (closing it does nothing); this client still owns it. What
        belongs to the pool (``base_url``, ``pool_size``, timeouts of connecting and keeping
        alive, TLS) cannot change. E.g. ``client.with_options(max_retries=0).get_settings()``
        or ``client.with_options(api_key=other_number_key)``.
        """
        fixed = _POOL_OPTIONS.intersection(changes)
        if fixed:
            raise InvalidRequestError(
                f"{', '.join(sorted(fixed))} belong to the connection pool and cannot change in "
                "with_options(); create a new client for them"
            )
        return self._sharing_pool(self._options.evolve(**changes))

    def _sharing_pool(self, options: ClientOptions) -> AsyncClient:
        """A client with ``options`` on this client's transport, which it does not own."""
        derived = object.__new__(AsyncClient)
        derived._set_options(options)
        derived._owns_transport = False
        derived._transport = self._transport
        return derived

    @property
    def options(self) -> ClientOptions:
        """This client's settings."""
        return self._options

    def __repr__(self) -> str:
        # Also for a client whose __init__ failed: a traceback captured with its locals
        # (what error reporters record) calls repr() on it.
        options, transport = getattr(self, "_options", None), getattr(self, "_transport", None)
        if options is None or transport is None:
            return "<AsyncClient (not constructed)>"
        state = "closed" if transport.closed else "open"
        return f"<AsyncClient base_url={options.base_url!r} {state}>"

    @property
    def base_url(self) -> str:
        return self._options.base_url

    @property
    def closed(self) -> bool:
        return self._transport.closed

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __enter__(self) -> NoReturn:
        raise TypeError(
            "AsyncClient is async-only: did you mean 'async with'? "
            "For blocking code use d360calling.Client."
        )

    def __exit__(self, *args: object) -> None:  # pragma: no cover - __enter__ always raises
        pass

    async def aclose(self) -> None:
        """Close the connection pool (not an injected session, nor the pool of the client this
        one was derived from with :meth:`with_options`). Safe to call twice."""
        if self._owns_transport:
            await self._transport.aclose()

    # -- call actions ------------------------------------------------------------------------

    async def connect_call(
        self,
        to: str,
        sdp: str,
        *,
        biz_opaque_callback_data: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> ConnectCallResponse:
        """Call a user (business-initiated) with an SDP offer; returns the new call's id.

        Never re-sent once the request may have reached the server: only a connection that
        could not be established is retried.
        """
        request = ConnectCallRequest(
            to=to, sdp=sdp, biz_opaque_callback_data=biz_opaque_callback_data
        )
        response, raw = await self._call_action(request, None, timeout, max_retries)
        call_id = response.call_id
        if not call_id:
            raise _bad_body("connect was answered without a call id (the call may exist)", raw)
        return ConnectCallResponse(
            call_id=call_id, calls=response.calls, messaging_product=response.messaging_product
        )

    async def pre_accept_call(
        self,
        call_id: str,
        sdp: str,
        *,
        deadline: Deadline | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> CallActionResponse:
        """Pre-accept an inbound call with the SDP answer, so media can start connecting."""
        request = PreAcceptCallRequest(call_id=call_id, sdp=sdp)
        response, _ = await self._call_action(request, deadline, timeout, max_retries)
        return response

    async def accept_call(
        self,
        call_id: str,
        sdp: str,
        *,
        biz_opaque_callback_data: str | None = None,
        deadline: Deadline | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> CallActionResponse:
        """Accept an inbound call with the SDP answer (the same one given to pre-accept)."""
        request = AcceptCallRequest(
            call_id=call_id, sdp=sdp, biz_opaque_callback_data=biz_opaque_callback_data
        )
        response, _ = await self._call_action(request, deadline, timeout, max_retries)
        return response

    async def reject_call(
        self,
        call_id: str,
        *,
        deadline: Deadline | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> CallActionResponse:
        """Reject an inbound call."""
        request = RejectCallRequest(call_id=call_id)
        response, _ = await self._call_action(request, deadline, timeout, max_retries)
        return response

    async def terminate_call(
        self,
        call_id: str,
        *,
        deadline: Deadline | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> CallActionResponse:
        """End a call in progress (either direction)."""
        request = TerminateCallRequest(call_id=call_id)
        response, _ = await self._call_action(request, deadline, timeout, max_retries)
        return response

    async def perform_call_action(
        self,
        request: CallActionRequest,
        *,
        deadline: Deadline | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> CallActionResponse:
        """Send any call action (e.g. ``AcceptCallRequest(call_id=..., sdp=...)``); the five
        methods above are shorthands for it.

        Answer-side actions are retried only until ``deadline`` (default: ``answer_window``
        seconds from now); ``connect`` ignores ``deadline`` and is never re-sent once it may
        have reached the server.
        """
        if not isinstance(request, CALL_ACTION_REQUESTS):
            raise InvalidRequestError(
                "request must be a ConnectCallRequest, PreAcceptCallRequest, AcceptCallRequest, "
                f"RejectCallRequest or TerminateCallRequest, got {type(request).__name__}"
            )
        response, _ = await self._call_action(request, deadline, timeout, max_retries)
        return response

    async def _call_action(
        self,
        request: CallActionRequest,
        deadline: Deadline | None,
        timeout: float | None,
        max_retries: int | None,
    ) -> tuple[CallActionResponse, RawResponse]:
        if isinstance(request, ConnectCallRequest):
            kind, until = CallKind.CONNECT, None
        else:
            kind, until = CallKind.ANSWER_SIDE, self._deadline(deadline)
        raw = await self._send(
            "POST", CALLS_PATH, encode(request), kind, timeout, max_retries, until
        )
        response = self._decode(CallActionResponse, raw)
        if response.success is False:
            raise _unsuccessful(raw)
        return response, raw

    # -- permissions and settings ------------------------------------------------------------

    async def get_call_permissions(
        self,
        consumer_whatsapp_id: str,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> CallPermissions:
        """May the business call this user now, and how much of each limit is used."""
        wa_id = check_whatsapp_id(consumer_whatsapp_id, "consumer_whatsapp_id").lstrip("+")
        raw = await self._send(
            "GET", PERMISSIONS_PATH + wa_id, None, CallKind.IDEMPOTENT, timeout, max_retries
        )
        return self._decode(CallPermissions, raw)

    async def get_settings(
        self, *, timeout: float | None = None, max_retries: int | None = None
    ) -> Settings:
        """The number's calling settings (plus its encryption and storage settings)."""
        raw = await self._send(
            "GET", SETTINGS_PATH, None, CallKind.IDEMPOTENT, timeout, max_retries
        )
        return self._decode(Settings, raw)

    async def update_settings(
        self,
        update: SettingsUpdate,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> UpdateSettingsResponse:
        """Change one feature of the calling settings, e.g. ``SettingsUpdate.status("ENABLED")``.

        The API takes one feature per request. ``call_hours`` is replaced as a whole, and
        leaving out ``holiday_schedule`` deletes the existing one.
        """
        if not isinstance(update, SettingsUpdate):
            raise InvalidRequestError(
                f"update must be a SettingsUpdate (e.g. SettingsUpdate.status('ENABLED')), "
                f"got {type(update).__name__}"
            )
        problem = check_types(update.value, f"calling.{update.feature}")
        if problem is not None:
            raise InvalidRequestError(problem)
        raw = await self._send(
            "POST", SETTINGS_PATH, encode(update), CallKind.IDEMPOTENT, timeout, max_retries
        )
        response = self._decode(UpdateSettingsResponse, raw)
        if not response.success:
            raise _unsuccessful(raw)
        return response

    # -- the one request path ----------------------------------------------------------------

    def _deadline(self, deadline: Deadline | None) -> float:
        """The deadline on the retry policy's clock."""
        if deadline is None:
            remaining = self._options.answer_window
        elif isinstance(deadline, datetime.datetime):
            if deadline.tzinfo is None:
                raise InvalidRequestError("deadline must be a timezone-aware datetime")
            remaining = deadline.timestamp() - time.time()
        elif isinstance(deadline, (int, float)) and not isinstance(deadline, bool):
            seconds = finite_float(deadline)
            if seconds is None or seconds < 0:
                raise InvalidRequestError(
                    f"deadline must be finite, non-negative Unix seconds, got {deadline!r:.40}"
                )
            remaining = seconds - time.time()
        else:
            raise InvalidRequestError(
                f"deadline must be Unix seconds or an aware datetime, got {deadline!r:.40}"
            )
        return self._policy.clock() + remaining

    async def _send(
        self,
        method: str,
        path: str,
        payload: Any,
        kind: CallKind,
        timeout: float | None,
        max_retries: int | None,
        deadline: float | None = None,
    ) -> RawResponse:
        """Send with retries; return the 2xx response or raise what :func:`decide` settles on.

        One pass per attempt, at most ``max_retries + 1``: every decision (retry or not, how
        long to wait, the deadline, a refusal after a lost answer) is :func:`decide`'s.
        """
        options = self._options
        attempt_timeout = options.timeout if timeout is None else check_seconds(timeout, "timeout")
        retries = options.max_retries if max_retries is None else check_max_retries(max_retries)
        try:
            body = None if payload is None else _json.dumps(payload)
        except (TypeError, ValueError) as exc:
            raise InvalidRequestError(f"the request cannot be encoded as JSON: {exc}") from None
        wire = _wire_log.isEnabledFor(logging.DEBUG)
        if body is not None and wire:
            _wire_log.debug("%s %s body: %s", method, path, self._loggable(body))
        headers = self._headers if body is None else self._json_headers
        policy = self._policy
        lost_answer: APIConnectionError | None = None
        error: APIError
        status: int | str
        for attempt in range(retries + 1):
            started = policy.clock()
            limits = budget(attempt, timeout=attempt_timeout, deadline=deadline, now=started)
            try:
                response = await self._transport.send(
                    method,
                    path,
                    body,
                    headers=headers,
                    timeout=limits.timeout,
                    pool_timeout=limits.pool_timeout,
                )
            except APIConnectionError as exc:
                error, status, sent = exc, type(exc).__name__, exc.request_may_have_been_sent
            except ResponseDecodeError as exc:  # a body refused for its size
                error, status, sent = exc, exc.status_code, True
            else:
                if wire:
                    _wire_log.debug(
                        "%s %s -> %s body: %s",
                        method,
                        path,
                        response.status,
                        self._loggable(response.body[:MAX_ERROR_BODY_BYTES]),
                    )
                if 200 <= response.status < 300:
                    if _log.isEnabledFor(logging.DEBUG):
                        _log_attempt(
                            logging.DEBUG,
                            method,
                            path,
                            response.status,
                            attempt,
                            response.elapsed,
                            request_id_from(response.headers),
                            True,
                            "ok",
                        )
                    return response
                error = error_from_response(
                    response.status, response.headers, response.body, method=method, path=path
                )
                status, sent = response.status, True
            now = policy.clock()
            decision = decide(
                error,
                kind,
                attempt,
                max_retries=retries,
                deadline=deadline,
                now=now,
                policy=policy,
                lost_answer=lost_answer,
            )
            outcome = (
                "giving up"
                if isinstance(decision, GiveUp)
                else f"retry {attempt + 1} of {retries} in {decision.after:.2f}s"
            )
            _log_attempt(
                logging.INFO,
                method,
                path,
                status,
                attempt,
                now - started,
                error.request_id,
                sent,
                f"{type(error).__name__}{'' if sent else ' (not sent)'}; {outcome}",
            )
            if isinstance(decision, GiveUp):
                raise decision.error
            lost_answer = decision.lost_answer
            await policy.sleep(decision.after)
        raise AssertionError(
            "unreachable: decide() gives up on the last attempt"
        )  # pragma: no cover

    def _loggable(self, body: bytes) -> str:
        text = body.decode("utf-8", "replace")
        return redact_sdp(text, addresses=not self._options.log_sdp_addresses)

    def _decode(self, cls: type[T], raw: RawResponse) -> T:
        body = raw.body
        memo = cls in _MEMO_TYPES and len(body) <= _MEMO_MAX_BODY
        if memo:
            hit = self._decoded.get((cls, body))
            if hit is not None:
                return hit  # type: ignore[no-any-return]
        decoded = self._decode_body(cls, raw)
        if memo:
            if len(self._decoded) >= _MEMO_MAX_ENTRIES:
                self._decoded.clear()
            self._decoded[(cls, body)] = decoded
        return decoded

    def _decode_body(self, cls: type[T], raw: RawResponse) -> T:
        try:
            data = _json.loads(raw.body)
        except _json.JSONDecodeError:
            raise _bad_body(
                f"expected a JSON {cls.__name__}, got {len(raw.body)} bytes that are not JSON", raw
            ) from None
        if _is_error_answer(data):
            raise _unsuccessful(raw)
        try:
            return decode(cls, data, strict=self._options.strict)
        except (cattrs.BaseValidationError, TypeError, ValueError, KeyError) as exc:
            raise _bad_body(f"unexpected {cls.__name__}: {decode_errors(exc)}", raw) from exc


def _is_error_answer(data: Any) -> bool:
    """A 2xx body that is Graph's error envelope (``{"error": {...}}`` or an error text)
    rather than the answer asked for."""
    if not isinstance(data, dict) or data.get("success") is True:
        return False
    error = data.get("error")
    return isinstance(error, dict) or (isinstance(error, str) and bool(error))


def _unsuccessful(raw: RawResponse) -> APIStatusError | UnsuccessfulResponseError:
    """A 2xx answer that says it failed: the class its error code maps to (e.g.
    NoCallPermissionError for 138006), else UnsuccessfulResponseError."""
    return _error_from_answer(raw.status, raw.headers, raw.body, method=raw.method, path=raw.path)


def _log_attempt(
    level: int,
    method: str,
    path: str,
    status: int | str,
    attempt: int,
    elapsed: float,
    request_id: str | None,
    sent: bool,
    outcome: str,
) -> None:
    """The one log line of an attempt; the fields are also on the record for structured logs."""
    _log.log(
        level,
        "%s %s -> %s attempt=%d elapsed=%.3fs request_id=%s: %s",
        method,
        path,
        status,
        attempt + 1,
        elapsed,
        request_id or "-",
        outcome,
        extra={
            "d360_method": method,
            "d360_path": path,
            "d360_status": status,
            "d360_attempt": attempt + 1,
            "d360_elapsed": elapsed,
            "d360_request_id": request_id,
            "d360_sent": sent,
        },
    )


def _bad_body(message: str, raw: RawResponse) -> ResponseDecodeError:
    return ResponseDecodeError(
        message,
        status_code=raw.status,
        body=raw.body,
        headers=raw.headers,
        method=raw.method,
        path=raw.path,
    )
