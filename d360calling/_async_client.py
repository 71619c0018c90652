"""AsyncClient: the API's four endpoints over one pooled session, with the one retry loop."""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import ssl
import time
from types import TracebackType
from typing import Any, NoReturn, TypeVar

import aiohttp
import cattrs

from . import _json
from ._constants import (
    API_KEY_ENV,
    BASE_URL_ENV,
    CALLS_PATH,
    DEFAULT_ANSWER_WINDOW,
    DEFAULT_BASE_URL,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_KEEPALIVE_TIMEOUT,
    DEFAULT_MAX_RETRIES,
    DEFAULT_POOL_SIZE,
    DEFAULT_TIMEOUT,
    PERMISSIONS_PATH,
    SETTINGS_PATH,
)
from ._converter import decode, decode_errors, encode
from ._headers import request_id_from
from ._redact import redact_addresses
from ._retry import Resend, RetryPolicy
from ._transport import AsyncTransport, RawResponse
from ._validation import (
    check_base_url,
    check_call_action,
    check_max_retries,
    check_seconds,
    check_settings_update,
    check_whatsapp_id,
)
from .errors import (
    APIConnectionError,
    APIError,
    D360Error,
    InvalidRequestError,
    RateLimitError,
    ResponseDecodeError,
    error_from_response,
)
from .models._enums import CallAction
from .models.calls import CallActionRequest, CallActionResponse, ConnectCallResponse
from .models.permissions import CallPermissions
from .models.settings import (
    CallingSettings,
    Settings,
    UpdateSettingsRequest,
    UpdateSettingsResponse,
)

__all__ = ("AsyncClient", "Deadline")

T = TypeVar("T")
Deadline = float | datetime.datetime
"""When an answer-side action stops being worth retrying: Unix seconds or an aware datetime."""

_log = logging.getLogger("d360calling")
# Request bodies at DEBUG, separately switchable: they hold SDPs (addresses redacted by default).
_wire_log = logging.getLogger("d360calling.wire")
# Answer-side actions and settings updates come back as the same few bytes every time; their
# models are frozen, so one decode of those bytes can be handed out again.
_MEMO_TYPES: frozenset[type] = frozenset({CallActionResponse, UpdateSettingsResponse})
_MEMO_MAX_BODY = 256
_MEMO_MAX_ENTRIES = 64


class AsyncClient:
    """Asyncio client for 360dialog's WhatsApp Calling API.

    Use it as ``async with AsyncClient(api_key=...) as client:`` or call :meth:`aclose`.
    ``api_key`` falls back to the ``D360_API_KEY`` environment variable and ``base_url`` to
    ``D360_BASE_URL``, then to ``https://waba-v2.360dialog.io``.

    ``connect_timeout`` bounds the wait for a free connection in the pool and, separately,
    opening one; ``timeout`` bounds one attempt once it has its connection (connect, send,
    read), so a request queued behind ``pool_size`` others is not timed out as if the server
    were slow. ``max_retries`` and ``timeout`` can be overridden per call. ``answer_window``
    is the default deadline, in seconds from the call, for retrying
    pre_accept/accept/reject/terminate. ``session`` is an aiohttp session to use instead of
    our own; the client never closes it, and a wait for one of its pooled connections counts
    against ``timeout``. ``strict=True`` makes unknown keys in responses an error (for tests
    that watch for API drift).

    TLS certificates are always verified: against the system's CAs, the PEM file
    ``ca_bundle``, or the given ``ssl_context``. Each attempt logs one line on the
    ``d360calling`` logger (DEBUG when it succeeds, INFO when it fails); request bodies go to
    ``d360calling.wire`` at DEBUG, with the IP addresses in SDPs redacted unless
    ``log_sdp_addresses=True``. The API key is never logged.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        pool_size: int = DEFAULT_POOL_SIZE,
        keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT,
        answer_window: float = DEFAULT_ANSWER_WINDOW,
        retry_policy: RetryPolicy | None = None,
        ssl_context: ssl.SSLContext | None = None,
        ca_bundle: str | os.PathLike[str] | None = None,
        session: aiohttp.ClientSession | None = None,
        strict: bool = False,
        log_sdp_addresses: bool = False,
    ):
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        if not key:
            raise InvalidRequestError(f"no API key: pass api_key= or set {API_KEY_ENV}")
        if not isinstance(key, str) or not key.isprintable() or key.strip() != key:
            raise InvalidRequestError("api_key must be a printable str without surrounding spaces")
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise InvalidRequestError("pool_size must be a positive int")
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise InvalidRequestError("session must be an aiohttp.ClientSession")
        self._base_url = check_base_url(
            base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
        )
        self._timeout = check_seconds(timeout, "timeout")
        self._max_retries = check_max_retries(max_retries)
        self._answer_window = check_seconds(answer_window, "answer_window")
        self._retry = retry_policy if retry_policy is not None else RetryPolicy()
        self._strict = strict
        self._log_sdp_addresses = bool(log_sdp_addresses)
        self._decoded: dict[tuple[type, bytes], Any] = {}
        self._transport = AsyncTransport(
            base_url=self._base_url,
            api_key=key,
            connect_timeout=check_seconds(connect_timeout, "connect_timeout"),
            pool_size=pool_size,
            keepalive_timeout=check_seconds(keepalive_timeout, "keepalive_timeout"),
            ssl_context=_tls_context(ssl_context, ca_bundle),
            session=session,
        )

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<AsyncClient base_url={self._base_url!r} {state}>"

    @property
    def base_url(self) -> str:
        return self._base_url

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
        """Close the connection pool (not an injected session). Safe to call twice."""
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
        request = CallActionRequest(
            action=CallAction.CONNECT,
            to=to,
            sdp=sdp,
            biz_opaque_callback_data=biz_opaque_callback_data,
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
        request = CallActionRequest(action=CallAction.PRE_ACCEPT, call_id=call_id, sdp=sdp)
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
        request = CallActionRequest(
            action=CallAction.ACCEPT,
            call_id=call_id,
            sdp=sdp,
            biz_opaque_callback_data=biz_opaque_callback_data,
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
        request = CallActionRequest(action=CallAction.REJECT, call_id=call_id)
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
        request = CallActionRequest(action=CallAction.TERMINATE, call_id=call_id)
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
        """Send any call action; the five methods above are shorthands for it.

        Answer-side actions are retried only until ``deadline`` (default: ``answer_window``
        seconds from now); ``connect`` ignores ``deadline`` and is never re-sent once it may
        have reached the server.
        """
        response, _ = await self._call_action(request, deadline, timeout, max_retries)
        return response

    async def _call_action(
        self,
        request: CallActionRequest,
        deadline: Deadline | None,
        timeout: float | None,
        max_retries: int | None,
    ) -> tuple[CallActionResponse, RawResponse]:
        if not isinstance(request, CallActionRequest):
            raise InvalidRequestError(
                f"request must be a CallActionRequest, got {type(request).__name__}"
            )
        action = check_call_action(request)
        if action is CallAction.CONNECT:
            resend, until = Resend.NEVER_RESENT, None
        else:
            resend, until = Resend.RESENDABLE, self._deadline(deadline)
        raw = await self._send(
            "POST",
            CALLS_PATH,
            encode(request),
            resend=resend,
            timeout=timeout,
            max_retries=max_retries,
            deadline=until,
        )
        response = self._decode(CallActionResponse, raw)
        if response.success is False:
            self._raise_unsuccessful(raw)
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
            "GET",
            PERMISSIONS_PATH + wa_id,
            None,
            resend=Resend.RESENDABLE,
            timeout=timeout,
            max_retries=max_retries,
        )
        return self._decode(CallPermissions, raw)

    async def get_settings(
        self, *, timeout: float | None = None, max_retries: int | None = None
    ) -> Settings:
        """The number's calling settings (plus its encryption and storage settings)."""
        raw = await self._send(
            "GET",
            SETTINGS_PATH,
            None,
            resend=Resend.RESENDABLE,
            timeout=timeout,
            max_retries=max_retries,
        )
        return self._decode(Settings, raw)

    async def update_settings(
        self,
        calling: CallingSettings,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> UpdateSettingsResponse:
        """Change one feature of the calling settings, e.g. ``CallingSettings(status="ENABLED")``.

        The API takes one feature per request. ``call_hours`` is replaced as a whole, and
        leaving out ``holiday_schedule`` deletes the existing one.
        """
        check_settings_update(calling)
        raw = await self._send(
            "POST",
            SETTINGS_PATH,
            encode(UpdateSettingsRequest(calling=calling)),
            resend=Resend.RESENDABLE,
            timeout=timeout,
            max_retries=max_retries,
        )
        response = self._decode(UpdateSettingsResponse, raw)
        if not response.success:
            self._raise_unsuccessful(raw)
        return response

    # -- the one request path ----------------------------------------------------------------

    def _deadline(self, deadline: Deadline | None) -> float:
        """The deadline on the event loop's clock."""
        if deadline is None:
            remaining = self._answer_window
        elif isinstance(deadline, datetime.datetime):
            if deadline.tzinfo is None:
                raise InvalidRequestError("deadline must be a timezone-aware datetime")
            remaining = deadline.timestamp() - time.time()
        elif isinstance(deadline, (int, float)) and not isinstance(deadline, bool):
            remaining = float(deadline) - time.time()
        else:
            raise InvalidRequestError(
                f"deadline must be Unix seconds or an aware datetime, got {deadline!r:.40}"
            )
        return asyncio.get_running_loop().time() + remaining

    async def _send(
        self,
        method: str,
        path: str,
        payload: Any,
        *,
        resend: Resend,
        timeout: float | None,
        max_retries: int | None,
        deadline: float | None = None,
    ) -> RawResponse:
        """Send with retries; return the 2xx response or raise the last error."""
        attempt_timeout = self._timeout if timeout is None else check_seconds(timeout, "timeout")
        retries = self._max_retries if max_retries is None else check_max_retries(max_retries)
        try:
            body = None if payload is None else _json.dumps(payload)
        except (TypeError, ValueError) as exc:
            raise InvalidRequestError(f"the request cannot be encoded as JSON: {exc}") from exc
        loop = asyncio.get_running_loop()
        if body is not None and _wire_log.isEnabledFor(logging.DEBUG):
            _wire_log.debug("%s %s body: %s", method, path, self._loggable(body))
        attempt = 0
        # An answer-side action that may have taken effect on an attempt whose answer was lost:
        # a retry refused as a repeat must not be reported as the action having failed.
        uncertain: APIConnectionError | None = None
        while True:
            this_timeout = pool_timeout = None
            if deadline is not None and attempt:
                # A retry never runs past the deadline; the first attempt always gets its
                # full timeout (the deadline may come from a clock we do not share).
                left = max(deadline - loop.time(), 0.001)
                this_timeout = min(attempt_timeout, left)
                pool_timeout = left  # the transport caps it at connect_timeout
            error: D360Error
            started = loop.time()
            try:
                response = await self._transport.send(
                    method,
                    path,
                    body,
                    timeout=attempt_timeout if this_timeout is None else this_timeout,
                    pool_timeout=pool_timeout,
                )
            except APIConnectionError as exc:
                error = exc
                status: int | str = type(exc).__name__
                request_id = None
                sent = exc.request_may_have_been_sent
            except ResponseDecodeError as exc:  # a body refused for its size; not retried
                error = exc
                status, request_id, sent = exc.status, exc.request_id, True
            else:
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
                status, request_id, sent = response.status, error.request_id, True
                if uncertain is not None and _refusal_of_a_repeat(error):
                    error = _outcome_unknown(uncertain, error)
                    retries = attempt  # settled: another try would be refused the same way
            elapsed = loop.time() - started
            delay = None
            if attempt < retries and self._retry.is_retryable(error, resend):
                delay = self._retry.delay(error, attempt)
                if delay is not None and deadline is not None and loop.time() + delay >= deadline:
                    delay = None
            outcome = (
                "giving up"
                if delay is None
                else f"retry {attempt + 1} of {retries} in {delay:.2f}s"
            )
            _log_attempt(
                logging.INFO,
                method,
                path,
                status,
                attempt,
                elapsed,
                request_id,
                sent,
                f"{type(error).__name__}{'' if sent else ' (not sent)'}; {outcome}",
            )
            if delay is None:
                raise error
            if (
                isinstance(error, APIConnectionError)
                and error.request_may_have_been_sent
                and method == "POST"
                and path == CALLS_PATH
            ):
                uncertain = error
            await asyncio.sleep(delay)
            attempt += 1

    def _loggable(self, body: bytes) -> str:
        text = body.decode("utf-8", "replace")
        return text if self._log_sdp_addresses else redact_addresses(text)

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
        try:
            return decode(cls, data, strict=self._strict)
        except (cattrs.BaseValidationError, TypeError, ValueError, KeyError) as exc:
            raise _bad_body(f"unexpected {cls.__name__}: {decode_errors(exc)}", raw) from exc

    @staticmethod
    def _raise_unsuccessful(raw: RawResponse) -> NoReturn:
        raise APIError(
            status=raw.status,
            message="the API answered success=false",
            body=raw.body,
            headers=raw.headers,
            method=raw.method,
            path=raw.path,
        )


def _refusal_of_a_repeat(error: D360Error) -> bool:
    """What repeating a done call action gets: a plain 400/404/409, not throttling."""
    return (
        isinstance(error, APIError)
        and error.status in (400, 404, 409)
        and not isinstance(error, RateLimitError)
    )


def _outcome_unknown(lost: APIConnectionError, refused: D360Error) -> APIConnectionError:
    lost_text = str(lost).removesuffix(f" ({lost.method} {lost.path})")
    outcome = APIConnectionError(
        f"{lost_text}; the retry was refused ({refused}), which is what repeating an action "
        "that already took effect gets: the action may have succeeded",
        method=lost.method,
        path=lost.path,
        request_may_have_been_sent=True,
    )
    outcome.__cause__ = refused
    return outcome


def _tls_context(
    ssl_context: ssl.SSLContext | None, ca_bundle: str | os.PathLike[str] | None
) -> ssl.SSLContext | None:
    if ca_bundle is None:
        if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
            raise InvalidRequestError("ssl_context must be an ssl.SSLContext")
        return ssl_context
    if ssl_context is not None:
        raise InvalidRequestError("give ssl_context or ca_bundle, not both")
    try:
        return ssl.create_default_context(cafile=os.fspath(ca_bundle))
    except (OSError, ssl.SSLError, TypeError) as exc:
        raise InvalidRequestError(f"ca_bundle {ca_bundle!r:.80} cannot be loaded: {exc}") from exc


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
        status=raw.status,
        body=raw.body,
        headers=raw.headers,
        method=raw.method,
        path=raw.path,
    )
