"""AsyncClient: the API's endpoints over one pooled session, with the one retry loop: the
Calling endpoints, and the messages of the calling workflow on the messaging endpoint."""

from __future__ import annotations

import contextlib
import datetime
import logging
import re
import time
import zoneinfo
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import aiohttp
import attrs
import cattrs

from . import _json
from ._constants import CALLS_PATH, MAX_ERROR_BODY_BYTES, PERMISSIONS_PATH, SETTINGS_PATH
from ._converter import check_types, decode, decode_errors, encode
from ._headers import request_id_from
from ._options import ClientOptions, check_max_retries, check_seconds, hide_secrets
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
from .models._checks import check_user_id, is_business_scoped_id
from .models._enums import TemplateParameterFormat
from .models.calls import (
    CALL_ACTION_REQUESTS,
    AcceptCallRequest,
    CallActionRequest,
    CallActionResponse,
    CallRecording,
    CallTranscription,
    ConnectCallRequest,
    ConnectCallResponse,
    PreAcceptCallRequest,
    RejectCallRequest,
    TerminateCallRequest,
)
from .models.messages import (
    MESSAGE_REQUESTS,
    CallButtonMessage,
    CallPermissionRequestMessage,
    CallPermissionTemplateMessage,
    MessageContact,
    MessageRequest,
    MessageResponse,
    SendMessageAnswer,
)
from .models.permissions import CallDecision, CallPermissions
from .models.settings import (
    CallHoursSettings,
    HolidaySchedule,
    Settings,
    SettingsUpdate,
    UpdateSettingsResponse,
)
from .sdp import _before_sending

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._options import ClientOptionChanges

__all__ = ("AsyncClient", "Deadline", "MESSAGES_PATH", "Moment")

T = TypeVar("T")
Deadline = float | datetime.datetime
"""When an answer-side action stops being worth retrying: Unix seconds or an aware datetime."""
Moment = float | datetime.datetime
"""A point in time: Unix seconds or an aware datetime."""

# 360dialog's messaging endpoint (api-facts §0): the permission request and the call button
# are messages, sent with the same base URL and key as the Calling endpoints.
MESSAGES_PATH = "/messages"

_log = logging.getLogger("d360calling")
# Request and response bodies at DEBUG, separately switchable: they hold SDPs, whose ICE
# credentials and SRTP keys are always redacted, and addresses by default.
_wire_log = logging.getLogger("d360calling.wire")
# Answer-side actions and settings updates come back as the same few bytes every time; their
# models are frozen, so one decode of those bytes can be handed out again.
_MEMO_TYPES: frozenset[type] = frozenset({CallActionResponse, UpdateSettingsResponse})
_MEMO_MAX_BODY = 256
_MEMO_MAX_ENTRIES = 64
# SIP digest passwords, as settings read with include_sip_credentials=True carry them: kept
# out of the wire log and of the body an error keeps.
_SECRET_FIELD = re.compile(r'("(?:sip_user_password|password)"\s*:\s*)"(?:[^"\\]|\\.)*"')
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
    A client belongs to the event loop it is first used on.

    Each attempt logs one line on the ``d360calling`` logger (DEBUG when it succeeds, INFO
    when it fails); request bodies and response bodies (the first 64 KiB) go to
    ``d360calling.wire`` at DEBUG, with ``a=ice-pwd``, ``a=ice-ufrag``, ``a=key-mgmt`` and
    ``a=crypto`` ``inline:`` keys always redacted and IP addresses redacted unless
    ``log_sdp_addresses=True``; SIP passwords in settings bodies are redacted too. The API
    key is never logged, and sits in a string whose repr is ``<redacted>``.

    Args:
        options: All the settings at once; keywords given too change those.
        session: An aiohttp session to use instead of our own; the client never closes it,
            and a wait for one of its pooled connections counts against ``timeout``.
        **changes: Settings by name (``api_key=``, ``timeout=``...): the fields of
            :class:`ClientOptions`.

    Raises:
        InvalidRequestError: A setting is not valid (e.g. ``timeout="soon"``), or no API
            key was given and ``D360_API_KEY`` is not set.
    """

    def __init__(
        self,
        *,
        options: ClientOptions | None = None,
        session: aiohttp.ClientSession | None = None,
        **changes: Unpack[ClientOptionChanges],
    ):
        hide_secrets(changes)  # first: a check below may fail with the key in this frame
        if options is not None and not isinstance(options, ClientOptions):
            raise InvalidRequestError(f"options must be a ClientOptions, got {options!r:.40}")
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise InvalidRequestError("session must be an aiohttp.ClientSession")
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

        It never closes the pool (closing it does nothing); this client still owns it. E.g.
        ``client.with_options(max_retries=0).get_settings()`` or
        ``client.with_options(api_key=other_number_key)``.

        Args:
            **changes: Settings by name, as for the constructor.

        Returns:
            The new client, sharing this one's connections.

        Raises:
            InvalidRequestError: A setting is not valid, or belongs to the pool and cannot
                change here: ``base_url``, ``pool_size``, ``connect_timeout``,
                ``keepalive_timeout``, ``ssl_context``, ``ca_bundle``, ``proxy``,
                ``trust_env``.
        """
        hide_secrets(changes)  # first: a check below may fail with the key in this frame
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
        """The API's base URL (``options.base_url``)."""
        return self._options.base_url

    @property
    def closed(self) -> bool:
        """Whether the connection pool is closed."""
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
        one was derived from with :meth:`with_options`). Safe to call twice; the client
        cannot be used afterwards (``ClientClosedError``)."""
        if self._owns_transport:
            await self._transport.aclose()

    # -- call actions ------------------------------------------------------------------------

    async def connect_call(
        self,
        to: str | None = None,
        sdp: str | None = None,
        *,
        recipient: str | None = None,
        biz_opaque_callback_data: str | None = None,
        recording: CallRecording | None = None,
        transcription: CallTranscription | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> ConnectCallResponse:
        """Call a user (business-initiated) with an SDP offer.

        The business needs the user's permission first (see :meth:`can_call`). Never re-sent
        once the request may have reached the server, since a second request would be a
        second call: only a connection that could not be established is retried.

        Args:
            to: The user's phone number (a business-scoped id given here is sent as
                ``recipient``).
            sdp: Your WebRTC stack's SDP offer (checked first, as ``sdp_check`` says).
            recipient: The user's business-scoped id (``US.…``), instead of ``to``.
            biz_opaque_callback_data: Your text (at most 512 characters), which the call's
                webhooks carry back.
            recording: Record the call, e.g. ``CallRecording(announcement_language="en_US")``;
                sent only when given.
            transcription: Transcribe the call (``CallTranscription()``); sent only when given.
            timeout: Seconds for each attempt once it has a connection (default: the
                client's ``timeout``).
            max_retries: Retries after the first attempt, 0 to 10 (default: the client's
                ``max_retries``).

        Returns:
            The new call's id (``call_id``), which its status and terminate webhooks carry.

        Raises:
            InvalidRequestError: Bad input (nothing was sent): no user or both of ``to`` and
                ``recipient``, an SDP that is not an offer, or one that WhatsApp would refuse
                when ``sdp_check="refuse"``.
            NoCallPermissionError: Code 138006: the user has not allowed this business to
                call.
            CallLimitReachedError: Code 138012: the connected-call limit is used up.
            APIStatusError: The API refused the request; the subclass says why (see
                :mod:`d360calling.errors`).
            APIConnectionError: No answer: the connection failed or an attempt timed out
                (``APITimeoutError``); ``request_may_have_been_sent`` tells whether the API
                could have acted.
            ResponseDecodeError: A 2xx answer that is not what the API promises.
            ClientClosedError: The client is closed.
        """
        if recipient is None and is_business_scoped_id(to):
            to, recipient = None, to
        request = ConnectCallRequest(
            to=to,
            recipient=recipient,
            sdp=sdp,  # type: ignore[arg-type]  # None is refused by the model, by name
            biz_opaque_callback_data=biz_opaque_callback_data,
            recording=recording,
            transcription=transcription,
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
        """Pre-accept an inbound call with the SDP answer, so media can start connecting.

        Optional, before :meth:`accept_call`, which must then send the same SDP. Retried
        (connection errors, timeouts, throttling, 5xx) until ``deadline``.

        Args:
            call_id: The call's id, from its connect webhook.
            sdp: Your WebRTC stack's SDP answer to the call's offer.
            deadline: When retrying stops being worth it: Unix seconds or an aware
                ``datetime`` (default: ``answer_window`` seconds from now). No retry starts
                after it, and a retry's timeout is cut to the time left.
            timeout: Seconds for each attempt once it has a connection (default: the
                client's ``timeout``).
            max_retries: Retries after the first attempt, 0 to 10 (default: the client's
                ``max_retries``).

        Returns:
            The API's answer (``success``).

        Raises:
            InvalidRequestError: Bad input (nothing was sent): an empty ``call_id``, an SDP
                that is not an answer, or one WhatsApp would refuse with
                ``sdp_check="refuse"``.
            APIStatusError: The API refused the request; the subclass says why (see
                :mod:`d360calling.errors`).
            APIConnectionError: No answer: the connection failed or an attempt timed out
                (``APITimeoutError``); ``request_may_have_been_sent`` tells whether the API
                could have acted.
            ResponseDecodeError: A 2xx answer that is not what the API promises.
            ClientClosedError: The client is closed.
        """
        request = PreAcceptCallRequest(call_id=call_id, sdp=sdp)
        response, _ = await self._call_action(request, deadline, timeout, max_retries)
        return response

    async def accept_call(
        self,
        call_id: str,
        sdp: str,
        *,
        biz_opaque_callback_data: str | None = None,
        recording: CallRecording | None = None,
        transcription: CallTranscription | None = None,
        deadline: Deadline | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> CallActionResponse:
        """Accept an inbound call with the SDP answer (the same one given to pre-accept).

        Retried (connection errors, timeouts, throttling, 5xx) until ``deadline``. If an
        answer is lost after the API may have acted and the retry is refused as a repeat,
        that is reported as an ``APIConnectionError`` saying the call may have been
        accepted, with the refusal as its ``__cause__``.

        Args:
            call_id: The call's id, from its connect webhook.
            sdp: Your WebRTC stack's SDP answer to the call's offer.
            biz_opaque_callback_data: Your text (at most 512 characters), which the call's
                later webhooks carry back.
            recording: Record the call (``CallRecording(...)``); sent only when given.
            transcription: Transcribe the call (``CallTranscription(...)``); sent only when
                given.
            deadline: When retrying stops being worth it: Unix seconds or an aware
                ``datetime`` (default: ``answer_window`` seconds from now). No retry starts
                after it, and a retry's timeout is cut to the time left.
            timeout: Seconds for each attempt once it has a connection (default: the
                client's ``timeout``).
            max_retries: Retries after the first attempt, 0 to 10 (default: the client's
                ``max_retries``).

        Returns:
            The API's answer (``success``).

        Raises:
            InvalidRequestError: Bad input (nothing was sent): an empty ``call_id``, an SDP
                that is not an answer, or one WhatsApp would refuse with
                ``sdp_check="refuse"``.
            APIStatusError: The API refused the request; the subclass says why (see
                :mod:`d360calling.errors`).
            APIConnectionError: No answer: the connection failed or an attempt timed out
                (``APITimeoutError``); ``request_may_have_been_sent`` tells whether the API
                could have acted.
            ResponseDecodeError: A 2xx answer that is not what the API promises.
            ClientClosedError: The client is closed.
        """
        request = AcceptCallRequest(
            call_id=call_id,
            sdp=sdp,
            biz_opaque_callback_data=biz_opaque_callback_data,
            recording=recording,
            transcription=transcription,
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
        """Reject an inbound call; the caller hears that it was declined.

        Retried (connection errors, timeouts, throttling, 5xx) until ``deadline``.

        Args:
            call_id: The call's id, from its webhooks or :meth:`connect_call`.
            deadline: When retrying stops being worth it: Unix seconds or an aware
                ``datetime`` (default: ``answer_window`` seconds from now). No retry starts
                after it, and a retry's timeout is cut to the time left.
            timeout: Seconds for each attempt once it has a connection (default: the
                client's ``timeout``).
            max_retries: Retries after the first attempt, 0 to 10 (default: the client's
                ``max_retries``).

        Returns:
            The API's answer (``success``).

        Raises:
            InvalidRequestError: An empty or malformed ``call_id`` (nothing was sent).
            APIStatusError: The API refused the request; the subclass says why (see
                :mod:`d360calling.errors`).
            APIConnectionError: No answer: the connection failed or an attempt timed out
                (``APITimeoutError``); ``request_may_have_been_sent`` tells whether the API
                could have acted.
            ResponseDecodeError: A 2xx answer that is not what the API promises.
            ClientClosedError: The client is closed.
        """
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
        """End a call in progress, inbound or business-initiated.

        Retried (connection errors, timeouts, throttling, 5xx) until ``deadline``.

        Args:
            call_id: The call's id, from its webhooks or :meth:`connect_call`.
            deadline: When retrying stops being worth it: Unix seconds or an aware
                ``datetime`` (default: ``answer_window`` seconds from now). No retry starts
                after it, and a retry's timeout is cut to the time left.
            timeout: Seconds for each attempt once it has a connection (default: the
                client's ``timeout``).
            max_retries: Retries after the first attempt, 0 to 10 (default: the client's
                ``max_retries``).

        Returns:
            The API's answer (``success``).

        Raises:
            InvalidRequestError: An empty or malformed ``call_id`` (nothing was sent).
            APIStatusError: The API refused the request; the subclass says why (see
                :mod:`d360calling.errors`).
            APIConnectionError: No answer: the connection failed or an attempt timed out
                (``APITimeoutError``); ``request_may_have_been_sent`` tells whether the API
                could have acted.
            ResponseDecodeError: A 2xx answer that is not what the API promises.
            ClientClosedError: The client is closed.
        """
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

        Answer-side actions are retried only until ``deadline``; ``connect`` ignores
        ``deadline`` and is never re-sent once it may have reached the server.

        Args:
            request: The action: a ``ConnectCallRequest``, ``PreAcceptCallRequest``,
                ``AcceptCallRequest``, ``RejectCallRequest`` or ``TerminateCallRequest``.
            deadline: When retrying stops being worth it: Unix seconds or an aware
                ``datetime`` (default: ``answer_window`` seconds from now). No retry starts
                after it, and a retry's timeout is cut to the time left.
            timeout: Seconds for each attempt once it has a connection (default: the
                client's ``timeout``).
            max_retries: Retries after the first attempt, 0 to 10 (default: the client's
                ``max_retries``).

        Returns:
            The API's answer (``success`` for answer-side actions, ``calls`` for connect).

        Raises:
            InvalidRequestError: ``request`` is not a call action, or its SDP is refused
                with ``sdp_check="refuse"`` (nothing was sent).
            APIStatusError: The API refused the request; the subclass says why (see
                :mod:`d360calling.errors`).
            APIConnectionError: No answer: the connection failed or an attempt timed out
                (``APITimeoutError``); ``request_may_have_been_sent`` tells whether the API
                could have acted.
            ResponseDecodeError: A 2xx answer that is not what the API promises.
            ClientClosedError: The client is closed.
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
            _before_sending(
                request.sdp, role="offer", mode=self._options.sdp_check, action="connect"
            )
        else:
            kind, until = CallKind.ANSWER_SIDE, self._deadline(deadline)
            if isinstance(request, (PreAcceptCallRequest, AcceptCallRequest)):
                action = "pre_accept" if isinstance(request, PreAcceptCallRequest) else "accept"
                _before_sending(
                    request.sdp, role="answer", mode=self._options.sdp_check, action=action
                )
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
        """May the business call this user now, and how much of each limit is used.

        360dialog's path takes a WhatsApp id; how it serves a user known only by a
        business-scoped id is not documented, so such an id goes into the path as it is.
        Retried on connection errors, timeouts, throttling and 5xx.

        Args:
            consumer_whatsapp_id: The user: a phone number or a business-scoped id.
            timeout: Seconds for each attempt once it has a connection (default: the
                client's ``timeout``).
            max_retries: Retries after the first attempt, 0 to 10 (default: the client's
                ``max_retries``).

        Returns:
            The user's permission (``permission.status``, ``expiration_time``), the actions
            the business may take (``can_start_call``, ``can_send_permission_request``) and
            their limits.

        Raises:
            InvalidRequestError: Bad input (nothing was sent).
            APIStatusError: The API refused the request; the subclass says why (see
                :mod:`d360calling.errors`).
            APIConnectionError: No answer: the connection failed or an attempt timed out
                (``APITimeoutError``); ``request_may_have_been_sent`` tells whether the API
                could have acted.
            ResponseDecodeError: A 2xx answer that is not what the API promises.
            ClientClosedError: The client is closed.
        """
        return await self._read_permissions(
            consumer_whatsapp_id, "consumer_whatsapp_id", timeout, max_retries
        )

    async def can_call(
        self,
        user: str,
        *,
        now: Moment | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> CallDecision:
        """May the business call ``user`` now; if not, why, and what to do next.

        One permissions read (:meth:`get_call_permissions`), decided with the limits the API
        reports.

        Args:
            user: A phone number or a business-scoped id.
            now: When to decide for: a temporary permission counts as expired once its
                ``expiration_time`` is past at ``now`` (Unix seconds or an aware datetime;
                default: when the read returns).
            timeout: Seconds for each attempt once it has a connection (default: the
                client's ``timeout``).
            max_retries: Retries after the first attempt, 0 to 10 (default: the client's
                ``max_retries``).

        Returns:
            CallDecision: whether you may call now (``allowed``); if not, why (``reason``, one
            of no permission, expired, call limit used up, request limit reached); what to
            do next (``next_step``, one of call, send a permission request, wait until
            ``retry_at``); and the read itself (``permissions``).

        Raises:
            InvalidRequestError: Bad input: ``user`` is not a phone number nor a
                business-scoped id, or ``now`` is not a time (nothing was sent).
            APIStatusError: The API refused the request; the subclass says why (see
                :mod:`d360calling.errors`).
            APIConnectionError: No answer: the connection failed or an attempt timed out
                (``APITimeoutError``); ``request_may_have_been_sent`` tells whether the API
                could have acted.
            ResponseDecodeError: A 2xx answer that is not what the API promises.
            ClientClosedError: The client is closed.
        """
        moment = _moment(now, "now")
        permissions = await self._read_permissions(user, "user", timeout, max_retries)
        return CallDecision.from_permissions(
            permissions, now=time.time() if moment is None else moment
        )

    async def _read_permissions(
        self, user: str, name: str, timeout: float | None, max_retries: int | None
    ) -> CallPermissions:
        user_id = check_user_id(user, name)
        segment = user_id if is_business_scoped_id(user_id) else user_id.lstrip("+")
        raw = await self._send(
            "GET", PERMISSIONS_PATH + segment, None, CallKind.IDEMPOTENT, timeout, max_retries
        )
        return self._decode(CallPermissions, raw)

    async def get_settings(
        self,
        *,
        include_sip_credentials: bool = False,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> Settings:
        """The number's calling settings (plus its encryption and storage settings).

        Retried on connection errors, timeouts, throttling and 5xx.

        Args:
            include_sip_credentials: Also ask for the SIP digest password of each server
                (``SipServer.digest_password``); it is never logged nor shown in a ``repr``.
            timeout: Seconds for each attempt once it has a connection (default: the
                client's ``timeout``).
            max_retries: Retries after the first attempt, 0 to 10 (default: the client's
                ``max_retries``).

        Returns:
            The settings; ``calling`` holds the calling ones (``status``, ``call_hours``,
            ``sip``...).

        Raises:
            InvalidRequestError: ``include_sip_credentials`` is not a bool (nothing was
                sent).
            APIStatusError: The API refused the request; the subclass says why (see
                :mod:`d360calling.errors`).
            APIConnectionError: No answer: the connection failed or an attempt timed out
                (``APITimeoutError``); ``request_may_have_been_sent`` tells whether the API
                could have acted.
            ResponseDecodeError: A 2xx answer that is not what the API promises.
            ClientClosedError: The client is closed.
        """
        if not isinstance(include_sip_credentials, bool):
            raise InvalidRequestError(
                "include_sip_credentials must be True or False, "
                f"got {include_sip_credentials!r:.40}"
            )
        query = "?include_sip_credentials=true" if include_sip_credentials else ""
        path = SETTINGS_PATH + query
        raw = await self._send("GET", path, None, CallKind.IDEMPOTENT, timeout, max_retries)
        if not include_sip_credentials:
            return self._decode(Settings, raw)
        try:
            return self._decode(Settings, raw)
        except (ResponseDecodeError, UnsuccessfulResponseError, APIStatusError) as exc:
            exc.body = _hide_secret_fields(exc.body)
            raise

    async def update_call_hours(
        self,
        call_hours: CallHoursSettings,
        *,
        keep_holiday_schedule: bool = True,
        now: Moment | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> UpdateSettingsResponse:
        """Write ``call_hours``, keeping the holiday schedule the number has.

        The API replaces ``call_hours`` as a whole and deletes the holiday schedule when an
        update leaves it out. So when ``call_hours.holiday_schedule`` is ``None`` and
        ``keep_holiday_schedule`` is true, the settings are read first and their holidays
        sent along, except those already past (the API refuses past dates). The read and
        the write are two requests: a change made by someone else in between is
        overwritten.

        Args:
            call_hours: The new call hours. A ``holiday_schedule`` given here is sent as it
                is.
            keep_holiday_schedule: Whether to send the current holidays along (when
                ``call_hours`` has none); ``False`` sends ``call_hours`` as given.
            now: When "past" is decided: before today in the call hours' time zone at
                ``now`` (Unix seconds or an aware datetime; default: the current time).
            timeout: Seconds for each attempt once it has a connection (default: the
                client's ``timeout``).
            max_retries: Retries after the first attempt, 0 to 10 (default: the client's
                ``max_retries``).

        Returns:
            The API's answer (``success``).

        Raises:
            InvalidRequestError: ``call_hours`` is not a ``CallHoursSettings`` or holds a
                value of the wrong type (checked before the read; nothing was sent).
            APIStatusError: The API refused the request; the subclass says why (see
                :mod:`d360calling.errors`).
            APIConnectionError: No answer: the connection failed or an attempt timed out
                (``APITimeoutError``); ``request_may_have_been_sent`` tells whether the API
                could have acted.
            ResponseDecodeError: A 2xx answer that is not what the API promises.
            ClientClosedError: The client is closed.
        """
        if not isinstance(call_hours, CallHoursSettings):
            raise InvalidRequestError(
                f"call_hours must be a CallHoursSettings, got {type(call_hours).__name__}"
            )
        if not isinstance(keep_holiday_schedule, bool):
            raise InvalidRequestError(
                f"keep_holiday_schedule must be True or False, got {keep_holiday_schedule!r:.40}"
            )
        moment = _moment(now, "now")
        update = SettingsUpdate.call_hours(call_hours)
        problem = check_types(call_hours, "calling.call_hours")
        if problem is not None:
            raise InvalidRequestError(problem)  # before the read, not after it
        if keep_holiday_schedule and call_hours.holiday_schedule is None:
            current = (
                await self.get_settings(timeout=timeout, max_retries=max_retries)
            ).calling.call_hours
            existing = None if current is None else current.holiday_schedule
            if existing:
                zone = call_hours.timezone_id or (current.timezone_id if current else None)
                today = _today(zone, time.time() if moment is None else moment)
                upcoming = tuple(holiday for holiday in existing if not _is_past(holiday, today))
                if upcoming:
                    update = SettingsUpdate.call_hours(
                        attrs.evolve(call_hours, holiday_schedule=upcoming)
                    )
        return await self.update_settings(update, timeout=timeout, max_retries=max_retries)

    async def update_settings(
        self,
        update: SettingsUpdate,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> UpdateSettingsResponse:
        """Change one feature of the calling settings, e.g. ``SettingsUpdate.status("ENABLED")``.

        The API takes one feature per request. ``call_hours`` is replaced as a whole, and
        leaving out ``holiday_schedule`` deletes the existing one (:meth:`update_call_hours`
        keeps it). Enabling ``sip`` turns off the Graph calling endpoints. Retried on
        connection errors, timeouts, throttling and 5xx.

        Args:
            update: The feature and its value, made with one of ``SettingsUpdate``'s
                constructors (``SettingsUpdate.call_icon_visibility("DEFAULT")``...).
            timeout: Seconds for each attempt once it has a connection (default: the
                client's ``timeout``).
            max_retries: Retries after the first attempt, 0 to 10 (default: the client's
                ``max_retries``).

        Returns:
            The API's answer (``success``).

        Raises:
            InvalidRequestError: ``update`` is not a ``SettingsUpdate`` or holds a value of
                the wrong type (nothing was sent).
            UnsuccessfulResponseError: The API answered 2xx with ``"success": false``.
            APIStatusError: The API refused the request; the subclass says why (see
                :mod:`d360calling.errors`).
            APIConnectionError: No answer: the connection failed or an attempt timed out
                (``APITimeoutError``); ``request_may_have_been_sent`` tells whether the API
                could have acted.
            ResponseDecodeError: A 2xx answer that is not what the API promises.
            ClientClosedError: The client is closed.
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

    # -- messages (POST /messages) -------------------------------------------------------------

    async def send_call_permission_request(
        self,
        to: str,
        *,
        body: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> MessageResponse:
        """Ask ``to`` for permission to call, with the interactive ``call_permission_request``
        message.

        Free-form: only inside the 24-hour customer-service window; outside it the message
        fails with 131047 (:class:`~d360calling.ReEngagementRequiredError`), usually
        reported by the message's status webhook (see
        :func:`~d360calling.errors.error_from_webhook`), and
        :meth:`send_call_permission_template` is the way. A user whose WhatsApp is too old
        gets 131026 (:class:`~d360calling.MessageUndeliverableError`), the same way.

        A message is never re-sent once it may have reached the server (a second one would
        be a second, billed message): only a connection that could not be established is
        retried.

        Args:
            to: The user: a phone number or a business-scoped id.
            body: The message's text (optional, at most 1024 characters).
            timeout: Seconds for each attempt once it has a connection (default: the
                client's ``timeout``).
            max_retries: Retries after the first attempt, 0 to 10 (default: the client's
                ``max_retries``).

        Returns:
            The sent message; its ``message_id`` is what the user's reply carries as
            ``context.id`` (``wait_for_permission(..., message_id=...)`` matches on it).

        Raises:
            InvalidRequestError: Bad input (nothing was sent).
            PermissionRequestLimitError: Code 138009: too many requests to this user.
            PermissionAlreadyPermanentError: Code 138017: the user already granted a
                permanent permission.
            APIStatusError: The API refused the request; the subclass says why (see
                :mod:`d360calling.errors`).
            APIConnectionError: No answer: the connection failed or an attempt timed out
                (``APITimeoutError``); ``request_may_have_been_sent`` tells whether the API
                could have acted.
            ResponseDecodeError: A 2xx answer that is not what the API promises.
            ClientClosedError: The client is closed.
        """
        message = CallPermissionRequestMessage(**_addressee(to), body=body)
        return await self._send_message(message, timeout, max_retries)

    async def send_call_permission_template(
        self,
        to: str,
        template: str,
        language: str,
        *,
        body_parameters: Sequence[str] | Mapping[str, str] = (),
        header_parameters: Sequence[str] | Mapping[str, str] = (),
        parameter_format: TemplateParameterFormat | str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> MessageResponse:
        """Ask ``to`` for permission to call with an approved template that has a
        ``call_permission_request`` component; this works outside the 24-hour window.

        Errors and retries as :meth:`send_call_permission_request`.

        Args:
            to: The user: a phone number or a business-scoped id.
            template: The approved template's name.
            language: Its language, e.g. ``"en_US"``.
            body_parameters: The body's variables: texts in order for ``{{1}}``-style
                templates, a mapping of name to text for named ones
                (``{"first_name": "Pablo"}``).
            header_parameters: The header's variables, the same way.
            parameter_format: ``"positional"`` or ``"named"``; follows from the parameters
                when not given.
            timeout: Seconds for each attempt once it has a connection (default: the
                client's ``timeout``).
            max_retries: Retries after the first attempt, 0 to 10 (default: the client's
                ``max_retries``).

        Returns:
            The sent message; its ``message_id`` is what the user's reply carries as
            ``context.id``.

        Raises:
            InvalidRequestError: Bad input, e.g. parameters of both kinds (nothing was
                sent).
            PermissionRequestLimitError: Code 138009: too many requests to this user.
            PermissionAlreadyPermanentError: Code 138017: the user already granted a
                permanent permission.
            APIStatusError: The API refused the request; the subclass says why (see
                :mod:`d360calling.errors`).
            APIConnectionError: No answer: the connection failed or an attempt timed out
                (``APITimeoutError``); ``request_may_have_been_sent`` tells whether the API
                could have acted.
            ResponseDecodeError: A 2xx answer that is not what the API promises.
            ClientClosedError: The client is closed.
        """
        message = CallPermissionTemplateMessage(
            **_addressee(to),
            template=template,
            language=language,
            body_parameters=body_parameters,
            header_parameters=header_parameters,
            parameter_format=parameter_format,
        )
        return await self._send_message(message, timeout, max_retries)

    async def send_call_button(
        self,
        to: str,
        body: str,
        display_text: str,
        *,
        ttl_minutes: int | None = None,
        payload: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> MessageResponse:
        """Send ``to`` a message with a button that calls the business (the interactive
        ``voice_call``).

        Free-form, so only inside the 24-hour window. Errors and retries as
        :meth:`send_call_permission_request`.

        Args:
            to: The user: a phone number or a business-scoped id.
            body: The message's text (at most 1024 characters).
            display_text: The button's label (at most 20 characters).
            ttl_minutes: How long the button works, 1 to 43,200 minutes (the API's default
                when not given: 7 days).
            payload: Your text (at most 512 characters), which comes back as
                ``cta_payload`` on the connect and terminate webhooks of the call the button
                starts.
            timeout: Seconds for each attempt once it has a connection (default: the
                client's ``timeout``).
            max_retries: Retries after the first attempt, 0 to 10 (default: the client's
                ``max_retries``).

        Returns:
            The sent message (``message_id``).

        Raises:
            InvalidRequestError: Bad input (nothing was sent).
            APIStatusError: The API refused the request; the subclass says why (see
                :mod:`d360calling.errors`).
            APIConnectionError: No answer: the connection failed or an attempt timed out
                (``APITimeoutError``); ``request_may_have_been_sent`` tells whether the API
                could have acted.
            ResponseDecodeError: A 2xx answer that is not what the API promises.
            ClientClosedError: The client is closed.
        """
        message = CallButtonMessage(
            **_addressee(to),
            body=body,
            display_text=display_text,
            ttl_minutes=ttl_minutes,
            payload=payload,
        )
        return await self._send_message(message, timeout, max_retries)

    async def send_message(
        self,
        message: MessageRequest,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> MessageResponse:
        """Send any message of the calling workflow (e.g.
        ``CallButtonMessage(to=..., body=..., display_text=...)``); the three methods above
        are shorthands for it. Never re-sent once it may have reached the server.

        Args:
            message: A ``CallPermissionRequestMessage``, ``CallPermissionTemplateMessage`` or
                ``CallButtonMessage``.
            timeout: Seconds for each attempt once it has a connection (default: the
                client's ``timeout``).
            max_retries: Retries after the first attempt, 0 to 10 (default: the client's
                ``max_retries``).

        Returns:
            The sent message (``message_id``).

        Raises:
            InvalidRequestError: ``message`` is not one of those (nothing was sent).
            APIStatusError: The API refused the request; the subclass says why (see
                :mod:`d360calling.errors`).
            APIConnectionError: No answer: the connection failed or an attempt timed out
                (``APITimeoutError``); ``request_may_have_been_sent`` tells whether the API
                could have acted.
            ResponseDecodeError: A 2xx answer that is not what the API promises.
            ClientClosedError: The client is closed.
        """
        if not isinstance(message, MESSAGE_REQUESTS):
            raise InvalidRequestError(
                "message must be a CallPermissionRequestMessage, CallPermissionTemplateMessage "
                f"or CallButtonMessage, got {type(message).__name__}"
            )
        return await self._send_message(message, timeout, max_retries)

    async def _send_message(
        self, message: MessageRequest, timeout: float | None, max_retries: int | None
    ) -> MessageResponse:
        # CONNECT's rules: a resent message is a second (billed) message, so only a request
        # that certainly never left is repeated.
        raw = await self._send(
            "POST", MESSAGES_PATH, encode(message), CallKind.CONNECT, timeout, max_retries
        )
        answer = self._decode(SendMessageAnswer, raw)
        sent = answer.messages[0] if answer.messages else None
        if sent is None or not sent.id:
            raise _bad_body(
                "the message was answered without a message id (it may have been sent)", raw
            )
        contact = answer.contacts[0] if answer.contacts else MessageContact()
        return MessageResponse(
            message_id=sent.id,
            wa_id=contact.wa_id,
            input=contact.input,
            message_status=sent.message_status,
            user_id=contact.user_id,
            messaging_product=answer.messaging_product,
        )

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
        text = _SECRET_FIELD.sub(r'\1"<redacted>"', body.decode("utf-8", "replace"))
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
    """A 2xx body that is Graph's error envelope (``{"error": {...}}`` or an error text), or
    that says ``"success": false``, rather than the answer asked for."""
    if not isinstance(data, dict) or data.get("success") is True:
        return False
    if data.get("success") is False:
        return True
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


def _addressee(user: str) -> dict[str, str]:
    """The user of a message as its wire field: a business-scoped id is ``recipient``, a
    phone number ``to``."""
    user_id = check_user_id(user, "to")
    return {"recipient": user_id} if is_business_scoped_id(user_id) else {"to": user_id}


def _moment(value: Moment | None, name: str) -> float | None:
    """``value`` as Unix seconds (``None`` stays ``None``)."""
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            raise InvalidRequestError(f"{name} must be a timezone-aware datetime")
        return value.timestamp()
    seconds = finite_float(value)
    if seconds is None or seconds < 0:
        raise InvalidRequestError(
            f"{name} must be finite, non-negative Unix seconds or an aware datetime, "
            f"got {value!r:.40}"
        )
    return seconds


def _today(zone: str | None, now: float) -> datetime.date:
    """The date at ``now`` in the time zone ``zone`` (UTC when it is unknown here)."""
    tz: datetime.tzinfo = datetime.timezone.utc
    if zone:
        with contextlib.suppress(zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            tz = zoneinfo.ZoneInfo(zone)
    return datetime.datetime.fromtimestamp(now, tz).date()


def _is_past(holiday: HolidaySchedule, today: datetime.date) -> bool:
    try:
        return datetime.date.fromisoformat(holiday.date) < today
    except (TypeError, ValueError):
        return False  # not a date we can read: the API's own value, sent back as it came


def _hide_secret_fields(body: bytes) -> bytes:
    text = _SECRET_FIELD.sub(r'\1"<redacted>"', body.decode("utf-8", "replace"))
    return text.encode("utf-8")
