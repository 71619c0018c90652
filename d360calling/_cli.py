"""The ``d360calling`` command line: every endpoint, the fake API, and the demo.

Exit codes tell outcomes apart for scripts: 0 success, 2 bad input (including a missing API
key), 3 the API answered with an error (or an answer that makes no sense), 4 no answer
(network error or timeout), 5 the answer is no (may not call now; the call was not answered),
130 interrupted, 141 stdout closed before everything was printed (``| head``), 143 ``call
place`` ended by SIGTERM (after hanging up), 1 anything else. ``fake-server`` exits 0 when
Ctrl-C or SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import functools
import ipaddress
import itertools
import json
import math
import os
import re
import signal
import sys
import textwrap
import typing
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from datetime import date, datetime, timezone
from typing import Any, NoReturn

import attrs
import cattrs
import cattrs.cols
import cattrs.v
import yarl

from . import _json
from ._async_client import AsyncClient
from ._constants import API_KEY_ENV, BASE_URL_ENV, DEFAULT_BASE_URL
from ._converter import encode, make_converter
from ._options import ClientOptionChanges, ClientOptions
from ._redact import hide_userinfo
from ._transport import os_error_reason
from ._validation import is_loopback
from ._version import __version__
from .errors import (
    APIConnectionError,
    APIError,
    CallNotAnsweredError,
    D360Error,
    InvalidRequestError,
)
from .models import (
    CallActionResponse,
    CallDecision,
    CallHoursSettings,
    CallingSettings,
    CallPermissions,
    ConnectCallResponse,
    DayOfWeek,
    FeatureStatus,
    MessageResponse,
    Settings,
    SettingsUpdate,
    UpdateSettingsResponse,
)

if typing.TYPE_CHECKING:
    from .testing import WebhookDelivery
    from .testing._runner import DeliveryNote

__all__ = ("main", "options_from_args")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_API_ERROR = 3
EXIT_NETWORK_ERROR = 4
EXIT_NO = 5  # the answer is no: may not call now, or the call placed was not answered
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # SIGTERM (128 + 15), for the commands that are not servers
EXIT_BROKEN_PIPE = 141  # stdout closed (128 + SIGPIPE), as cat or seq end in `| head`

_EPILOG = """\
exit codes: 0 success, 2 bad input or no API key, 3 API error, 4 network error or timeout,
5 the answer is no (permissions can-call: not now; call place: not answered), 130 interrupted,
141 stdout closed (| head), 1 anything else.
The API key comes from --api-key or D360_API_KEY; the base URL from --base-url or D360_BASE_URL.
"""
_DEMO_EPILOG = """\
Without an API key, or with a base URL on this machine (127.0.0.1, localhost: a fake server,
say), the demo runs on a fake API of its own and places two calls. With a key and any other
base URL it talks to that API, and only reads (settings; with --wa-id a call permission).
It says which, first. --timeout and --max-retries apply to the real API only.
exit codes: 0 done, 1 the demo failed, 2 bad input, 3 API error, 4 network error, 130
interrupted, 141 stdout closed (| head).
"""
_SMALL_EPILOG = """\
exit codes: 0 success, 2 bad input, 141 stdout closed (| head), 1 anything else.
"""


class BadInput(Exception):
    """A problem with what the user typed or pointed at (exit code 2)."""


# The API key (from the environment or the command line) and webhook secret of this run, which
# nothing the command prints may show: argparse echoes misplaced arguments, errors bad values.
_secrets: tuple[str, ...] = ()
# Shorter strings are no real key, and hiding them would garble every message.
_MIN_SECRET = 6
# One error line, however long the API's message: a proxy's HTML page is not worth a screen.
_MAX_MESSAGE = 1000
# Never to a terminal from text the API or a file chose: controls (escape sequences), the
# Unicode line separators and the bidirectional overrides that reorder what is shown.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


_SECRET_OPTIONS = ("--api-key", "--webhook-secret", "--webhook-header")


def _secrets_in(argv: Sequence[str]) -> tuple[str, ...]:
    found = [os.environ.get(API_KEY_ENV, "")]
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        # argparse takes any unambiguous prefix of an option (--api, --webhook-s).
        if len(name) >= 3 and any(o.startswith(name) for o in _SECRET_OPTIONS):
            given = value if eq else (argv[i + 1] if i + 1 < len(argv) else "")
            if "--webhook-header".startswith(name) and len(name) > len("--webhook-"):
                given = given.partition(":")[2].strip()  # NAME:VALUE; the name is no secret
            found.append(given)
    return tuple(secret for secret in found if len(secret) >= _MIN_SECRET)


def _clean(text: str) -> str:
    """``text`` safe to print: API keys hidden, unprintable characters escaped."""
    for secret in _secrets:
        text = text.replace(secret, "<secret>")
    return _UNPRINTABLE.sub(lambda m: repr(m.group())[1:-1], text)


def _one_line(text: str) -> str:
    line = _clean(" ".join(text.split("\n")))
    return line if len(line) <= _MAX_MESSAGE else line[: _MAX_MESSAGE - 1] + "…"


def _fail(kind: str, exc: BaseException, code: int) -> int:
    print(f"d360calling: {kind}: {_one_line(str(exc))}", file=sys.stderr)
    return code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {_one_line(message)}\n")


_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def _listen_host(text: str) -> str:
    """An IP address or a well-formed host name (refused here, not after a DNS lookup)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        labels = text.removesuffix(".").split(".")
        if not (
            len(text) <= 253
            and all(_HOST_LABEL.fullmatch(label) for label in labels)
            and not labels[-1].isdigit()  # 256.1.1.1 is a bad address, not a name
        ):
            raise argparse.ArgumentTypeError(
                f"not an IP address or host name: {_clean(repr(text)):.60}"
            ) from None
    return text


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r:.40}")
    return seconds


def _webhook_url(text: str) -> str:
    try:
        url = yarl.URL(text)
    except ValueError:
        url = yarl.URL()
    if url.scheme not in ("http", "https") or not url.host:
        raise argparse.ArgumentTypeError(f"expected an http:// or https:// URL, got {text!r:.80}")
    return text


def _secret(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty secret would let anyone sign")
    return text


# RFC 9110 §5.6.2: a header name is a token.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not colon or not name or not value:
        raise argparse.ArgumentTypeError("expected NAME:VALUE, e.g. X-Webhook-Secret:s3cret")
    if not _HEADER_NAME.fullmatch(name):
        raise argparse.ArgumentTypeError(f"not a header name: {_clean(repr(name)):.60}")
    if not all(" " <= c <= "~" or c == "\t" for c in value):
        # The value is a secret: not shown.
        raise argparse.ArgumentTypeError(f"the value of {name} must be printable ASCII")
    return name, value


def _listen(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {_clean(repr(text)):.60}")
    return _listen_host(host.strip("[]")), _port(port)


def _minutes(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of minutes: {text!r:.40}") from None


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r:.40}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is not in 0-65535")
    return port


# The user's side of the fake, over HTTP (d360calling/testing/_control.py): method, path,
# body (a field marked ? is optional), what it does.
FAKE_ROUTES: tuple[tuple[str, str, str, str], ...] = (
    (
        "POST",
        "/_fake/calls",
        '{"from": USER, "sdp"?, "name"?, "deeplink_payload"?, "cta_payload"?}',
        "the user calls the business",
    ),
    ("GET", "/_fake/calls", "", "every call, with its id and state"),
    ("POST", "/_fake/calls/{id}/answer", '{"sdp"?}', "the user picks up a business call"),
    ("POST", "/_fake/calls/{id}/decline", "", "the user declines a business call"),
    ("POST", "/_fake/calls/{id}/hangup", "", "the user hangs up"),
    ("POST", "/_fake/calls/{id}/ring-out", "", "nobody answers: the call times out now"),
    ("POST", "/_fake/calls/{id}/voicemail", "", "the caller leaves a voicemail"),
    ("POST", "/_fake/permissions/{user}", '{"permanent"?: bool}', "the user allows calls"),
    (
        "POST",
        "/_fake/permissions/{user}/grant",
        '{"permanent"?: bool}',
        "the user accepts the newest permission request",
    ),
    (
        "POST",
        "/_fake/permissions/{user}/decline",
        "",
        "the user declines the newest permission request",
    ),
    ("POST", "/_fake/permissions/{user}/revoke", "", "the user withdraws permission"),
    (
        "POST",
        "/_fake/users",
        '{"user": USER, "name"?, "old_client"?: bool}',
        "tell the fake about a user",
    ),
    ("GET", "/_fake/messages", "", "every message the business sent"),
    (
        "POST",
        "/_fake/messages",
        '{"from": USER, "text": TEXT}',
        "the user writes (opens the 24 h window)",
    ),
    ("POST", "/_fake/messages/{id}/press", '{"sdp"?}', "the user taps a call button"),
    (
        "POST",
        "/_fake/templates",
        '{"name", "body_text", "language"?, "category"?, '
        '"header_text"?, "call_permission_request"?: bool}',
        "tell the fake about a template",
    ),
    ("GET", "/_fake/media/{id}", "", "what the fake knows of a media id it sent"),
)
FAKE_ROUTE_RULES = """\
Every /_fake/ request needs the header D360-API-KEY with the fake's key (401 without it), and
one with a body needs Content-Type: application/json (400 without it). The body is optional
where no field is required. USER is a phone number (digits) or a business-scoped id (US.…).
Answers are JSON: 200 with what changed, 400 for a malformed body, 404 for an unknown route,
409 {"error": …} for what cannot happen (no such call, a call that has ended...)."""


def _routes_text() -> str:
    lines = []
    for method, path, body, what in FAKE_ROUTES:
        lines.append(f"  {method:<4} {path}: {what}")
        if body:
            lines += textwrap.wrap(body, 96, initial_indent=" " * 7, subsequent_indent=" " * 8)
    return "\n".join(lines)


def _fake_server_epilog() -> str:
    return f"""\
the user's side over HTTP (the /_fake/ routes; not part of the real API):
{FAKE_ROUTE_RULES}
{_routes_text()}
e.g. a user calls in:
  curl -sS http://127.0.0.1:8360/_fake/calls -H 'D360-API-KEY: fake-d360-api-key' \\
    -H 'Content-Type: application/json' -d '{{"from": "4915112345678"}}'

webhooks: each goes to the --webhook-url URLs in turn; a failed attempt is tried again on the
next URL, 3 attempts in all. Each failed attempt is printed on stderr. A WebhookReceiver
accepts a delivery only if it can authenticate it: give the fake the receiver's
signing_secret as --webhook-secret, and its secret_header as --webhook-header NAME:VALUE.

Ctrl-C or SIGTERM stops it (exit 0). exit codes: 0 stopped, 2 bad arguments or the address
cannot be used, 141 stdout closed, 1 anything else.
"""


def _parser() -> argparse.ArgumentParser:
    # The API commands' connection options are accepted before or after the subcommand;
    # SUPPRESS keeps a subcommand's defaults from overwriting what was given before it.
    client = argparse.ArgumentParser(add_help=False)
    client.add_argument(
        "--api-key",
        default=argparse.SUPPRESS,
        metavar="KEY",
        help=f"the phone number's 360dialog API key (default: ${API_KEY_ENV})",
    )
    client.add_argument(
        "--base-url",
        default=argparse.SUPPRESS,
        metavar="URL",
        help=f"the API's base URL (default: ${BASE_URL_ENV}, else {DEFAULT_BASE_URL})",
    )
    client.add_argument(
        "--timeout",
        type=float,
        default=argparse.SUPPRESS,
        metavar="SECONDS",
        help="seconds for one attempt (default 10)",
    )
    client.add_argument(
        "--max-retries",
        type=int,
        default=argparse.SUPPRESS,
        metavar="N",
        help="retries after the first attempt (default 2)",
    )
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON for scripts"
    )
    api_options = [client, output]

    def sub(
        group: Any,
        name: str,
        help: str,
        parents: Sequence[argparse.ArgumentParser] = api_options,
        epilog: str = _EPILOG,
    ) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = group.add_parser(
            name,
            help=help,
            description=help,
            parents=list(parents),
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        return parser

    root = _Parser(
        prog="d360calling",
        description="360dialog WhatsApp Calling API from the command line. The connection "
        "options go before or after an API command (call, permissions, message, settings).",
        parents=api_options,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    root.add_argument("--version", action="version", version=f"d360calling {__version__}")
    commands = root.add_subparsers(dest="command", required=True, parser_class=_Parser)

    call = sub(commands, "call", "call actions (POST /calling/calls)")
    actions = call.add_subparsers(dest="action", required=True, parser_class=_Parser)
    connect = sub(actions, "connect", "call a WhatsApp user (needs their call permission)")
    connect.add_argument("to", help="the user's WhatsApp number, digits only")
    connect.add_argument(
        "--sdp",
        required=True,
        help="file with the SDP offer ('-': stdin; `d360calling sdp sample --offer` makes one)",
    )
    connect.add_argument("--callback-data", help="biz_opaque_callback_data, echoed in webhooks")
    place = sub(actions, "place", "call a user and wait for the outcome (serves the webhooks)")
    place.add_argument("to", help="the user's WhatsApp number or business-scoped user id")
    place.add_argument("--sdp", required=True, help="file with the SDP offer ('-': stdin)")
    place.add_argument(
        "--ringing-timeout", type=_seconds, default=60.0, help="seconds to ring (default 60)"
    )
    place.add_argument(
        "--hold", type=_seconds, help="hang up this many seconds after the answer (default: wait)"
    )
    place.add_argument(
        "--listen",
        type=_listen,
        default=("127.0.0.1", 8080),
        help="HOST:PORT where this command receives the call's webhooks at /webhook "
        "(default 127.0.0.1:8080)",
    )
    place.add_argument(
        "--webhook-secret", type=_secret, help="the x-360dialog-signature signing secret"
    )
    place.add_argument(
        "--webhook-header", type=_header, help="NAME:VALUE: the custom header set with the URL"
    )
    place.add_argument("--callback-data", help="biz_opaque_callback_data, echoed in webhooks")
    for name, help_text in (
        ("pre-accept", "pre-accept an incoming call with an SDP answer"),
        ("accept", "accept an incoming call with an SDP answer"),
    ):
        answer = sub(actions, name, help_text)
        answer.add_argument("call_id", help="the wacid.… from the connect webhook")
        answer.add_argument("--sdp", required=True, help="file with the SDP answer ('-': stdin)")
        if name == "accept":
            answer.add_argument(
                "--callback-data", help="biz_opaque_callback_data, echoed in webhooks"
            )
    for name, help_text in (
        ("reject", "reject an incoming call"),
        ("terminate", "end a call"),
    ):
        sub(actions, name, help_text).add_argument("call_id", help="the call's wacid.…")

    permissions = sub(
        commands, "permissions", "read a user's call permission, ask for it, or decide to call"
    )
    permissions.add_argument(
        "words",
        nargs="+",
        metavar="[request|can-call] USER",
        help="USER alone reads the permission; 'request USER' sends a permission request; "
        "'can-call USER' says whether to call now (exit 5 if not) and what to do instead",
    )
    permissions.add_argument("--body", help="request: the message text")
    permissions.add_argument(
        "--template", help="request: send this approved template (outside the 24 h window)"
    )
    permissions.add_argument("--language", help="request --template: its language, e.g. en_US")
    permissions.add_argument(
        "--param",
        action="append",
        default=[],
        help="request --template: a body parameter (repeat for each, in order)",
    )

    message = sub(commands, "message", "messages that belong to calling (POST /messages)")
    kinds = message.add_subparsers(dest="message_kind", required=True, parser_class=_Parser)
    button = sub(kinds, "call-button", "send a button the user presses to call the business")
    button.add_argument("to", help="the user's WhatsApp number or business-scoped user id")
    button.add_argument("--body", required=True, help="the message text")
    button.add_argument("--display-text", required=True, help="the button's label")
    button.add_argument("--ttl-minutes", type=_minutes, help="how long the button works")
    button.add_argument("--payload", help="echoed as cta_payload on the call's webhooks")

    settings = sub(commands, "settings", "calling settings")
    settings_commands = settings.add_subparsers(
        dest="settings_command", required=True, parser_class=_Parser
    )
    sub(settings_commands, "get", "show the calling settings")
    update = sub(settings_commands, "set", "change one calling setting (one per request)")
    update.add_argument("--status", choices=("ENABLED", "DISABLED"), help="turn calling on or off")
    update.add_argument(
        "--call-icon-visibility",
        choices=("DEFAULT", "DISABLE_ALL"),
        help="show the call icons (DEFAULT) or hide them everywhere (DISABLE_ALL)",
    )
    update.add_argument(
        "--callback-permission-status",
        choices=("ENABLED", "DISABLED"),
        help="whether users who call are asked to allow calls back",
    )
    update.add_argument(
        "--srtp-key-exchange-protocol",
        choices=("DTLS", "SDES"),
        help="how the call's media keys are exchanged",
    )
    update.add_argument(
        "--file",
        help="JSON file with {\"calling\": {...}} or the calling object ('-': stdin); for "
        "call_hours, sip and the other settings without a flag",
    )
    update.add_argument(
        "--sip-disables-calling-api",
        action="store_true",
        help="confirm that enabling SIP turns off the calling endpoints and their webhooks",
    )

    fake = sub(
        commands,
        "fake-server",
        "run the fake Calling API until Ctrl-C or SIGTERM",
        parents=(),
        epilog=_fake_server_epilog(),
    )
    fake.add_argument(
        "--host",
        type=_listen_host,
        default="127.0.0.1",
        metavar="ADDRESS",
        help="the address to listen on (default 127.0.0.1)",
    )
    fake.add_argument(
        "--port", type=_port, default=8360, help="the port to listen on (default 8360; 0: any)"
    )
    fake.add_argument(
        "--api-key",
        default=argparse.SUPPRESS,
        metavar="KEY",
        help="the key the fake accepts in D360-API-KEY (default: fake-d360-api-key)",
    )
    fake.add_argument(
        "--webhook-url",
        type=_webhook_url,
        action="append",
        metavar="URL",
        help="where the fake POSTs its webhooks; repeat for several receivers (round-robin)",
    )
    fake.add_argument(
        "--webhook-secret",
        type=_secret,
        metavar="SECRET",
        help="sign each webhook with x-360dialog-signature, as with a receiver's signing_secret",
    )
    fake.add_argument(
        "--webhook-header",
        type=_header,
        action="append",
        metavar="NAME:VALUE",
        help="send this header with each webhook, as a receiver's secret_header=(NAME, VALUE) "
        "expects; repeatable",
    )
    fake.add_argument(
        "--answer-window",
        type=_seconds,
        default=60.0,
        metavar="SECONDS",
        help="seconds an inbound call rings before it ends unanswered (default 60)",
    )

    demo = sub(
        commands,
        "demo",
        "walk through an inbound and an outbound call",
        parents=[client],
        epilog=_DEMO_EPILOG,
    )
    demo.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="one JSON object per line and step, for scripts",
    )
    demo.add_argument(
        "--wa-id",
        metavar="USER",
        help="against the real API: the user whose call permission to read",
    )
    demo.add_argument(
        "--media",
        action="store_true",
        help="two real calls with audio over loopback (needs d360calling[media])",
    )

    sdp = sub(commands, "sdp", "SDPs to try the API with", parents=(), epilog=_SMALL_EPILOG)
    sdp_commands = sdp.add_subparsers(dest="sdp_command", required=True, parser_class=_Parser)
    sample = sub(
        sdp_commands,
        "sample",
        "print a WhatsApp-shaped sample SDP (CRLF line ends), e.g. > offer.sdp",
        parents=(),
        epilog=_SMALL_EPILOG,
    )
    kind = sample.add_mutually_exclusive_group(required=True)
    kind.add_argument(
        "--offer",
        dest="sdp_kind",
        action="store_const",
        const="offer",
        help="a business's offer (a full ICE agent), for call connect and call place",
    )
    kind.add_argument(
        "--answer",
        dest="sdp_kind",
        action="store_const",
        const="answer",
        help="a business's answer (a full ICE agent), for call pre-accept and call accept",
    )
    sample.add_argument(
        "--to",
        metavar="FILE",
        help="--answer: the offer to answer, for its payload types and DTLS role ('-': stdin)",
    )
    sample.add_argument(
        "--seed", default="cli", help="another seed gives other ICE credentials and session id"
    )
    return root


# Options each command ignores if given before it (the root parser takes them for the API
# commands): refused rather than silently dropped.
_NOT_FOR = {
    "fake-server": ("base_url", "timeout", "max_retries", "json"),
    "sdp": ("api_key", "base_url", "timeout", "max_retries", "json"),
}


def _check_options(args: argparse.Namespace) -> None:
    given = [name for name in _NOT_FOR.get(args.command, ()) if hasattr(args, name)]
    if given:
        shown = ", ".join("--" + name.replace("_", "-") for name in given)
        raise BadInput(f"{shown} does not apply to {args.command}")
    if args.command == "demo" and args.media and getattr(args, "json", False):
        raise BadInput("demo --media has no --json output")
    if args.command == "sdp" and args.to is not None and args.sdp_kind != "answer":
        raise BadInput("--to goes with --answer")


# -- input --------------------------------------------------------------------------------

# An SDP is a few kB and a settings file less; the cap keeps `--sdp /dev/zero` from eating
# memory.
_MAX_INPUT_BYTES = 1024 * 1024
# SDP lines end in CRLF (RFC 8866); files edited elsewhere end them in LF or a lone CR. Only
# these end a line: str.splitlines() would also split at \x0b, \x0c, \x1c-\x1e, \x85,
# U+2028 and U+2029 and so send a different SDP than the file holds.
_SDP_LINE_END = re.compile(r"\r\n|\r|\n")
# What no SDP line may hold: C0 and C1 controls except tab, DEL, and the Unicode line and
# paragraph separators (they look like line ends but are not).
_SDP_FORBIDDEN = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def _source_name(source: str) -> str:
    return "stdin" if source == "-" else source


def _read_text(source: str) -> str:
    """The UTF-8 text of a file ('-': stdin), without a leading byte order mark."""
    name = _source_name(source)
    try:
        if source == "-":
            if sys.stdin is None:  # started with stdin closed
                raise BadInput("there is no stdin to read from")
            stream: Any = getattr(sys.stdin, "buffer", sys.stdin)  # a StringIO has no buffer
            raw = stream.read(_MAX_INPUT_BYTES + 1)
        else:
            with open(source, "rb") as file:
                raw = file.read(_MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise BadInput(f"cannot read {name}: {exc.strerror or exc}") from None
    if len(raw) > _MAX_INPUT_BYTES:
        raise BadInput(f"{name} is larger than {_MAX_INPUT_BYTES // 1024} KiB")
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadInput(
                f"{name} is not UTF-8 text (byte {exc.start} is {raw[exc.start]:#04x})"
            ) from None
    return str(raw).removeprefix("\ufeff")


def _read_sdp(source: str) -> str:
    name = _source_name(source)
    lines = _SDP_LINE_END.split(_read_text(source))
    if lines[-1] == "":
        lines.pop()  # the last line's end
    if not lines:
        raise BadInput(f"{name} holds no SDP")
    for number, line in enumerate(lines, 1):
        bad = _SDP_FORBIDDEN.search(line)
        if bad is not None:
            # The line itself is not shown: it may be an a=ice-pwd or a=crypto key.
            raise BadInput(
                f"{name}, line {number}: U+{ord(bad.group()):04X} (a control character or line "
                "separator) cannot be in an SDP line"
            )
    return "\r\n".join(lines) + "\r\n"


class _WrongValue(ValueError):
    """A value in a settings file that does not fit; its message says why."""


def _input_converter() -> cattrs.Converter:
    """The settings-file reader: unknown keys refused, scalars only as their own JSON type
    (the response reader turns numbers into strings), arrays only as arrays, objects only as
    objects, and the closed enumerations (on/off, weekdays) only as one of their values."""
    conv = make_converter(strict=True, exact=True)
    # Not CallIconVisibility: Meta's FAQ names a third value the flag's choices leave out.
    closed = (FeatureStatus, DayOfWeek)

    def closed_enum(tp: Any) -> type[enum.Enum] | None:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        for arg in args:
            if arg in closed:
                return typing.cast("type[enum.Enum]", arg)
        return None

    def enum_hook(tp: Any) -> Callable[[Any, Any], Any]:
        enum_cls = closed_enum(tp)
        assert enum_cls is not None
        by_folded = {str(m.value).casefold(): m for m in enum_cls}
        allowed = ", ".join(str(m.value) for m in enum_cls)

        def structure(value: Any, _: Any) -> Any:
            member = by_folded.get(value.casefold()) if isinstance(value, str) else None
            if member is None:
                raise _WrongValue(f"expected one of {allowed}, got {_shown(value)}")
            return member

        return structure

    def is_array(tp: Any) -> bool:
        return typing.get_origin(tp) is tuple

    def array_hook(tp: Any) -> Callable[[Any, Any], Any]:
        # cattrs would iterate any value: "" and {} would read as an empty array.
        items = cattrs.cols.list_structure_factory(tp, conv)

        def structure(value: Any, _: Any) -> Any:
            if not isinstance(value, list):
                raise _WrongValue(f"expected an array, got {_shown(value)}")
            return tuple(items(value, tp))

        return structure

    # Registered last, so they are asked before the converter's own hooks.
    conv.register_structure_hook_factory(lambda tp: closed_enum(tp) is not None, enum_hook)
    conv.register_structure_hook_factory(is_array, array_hook)
    return conv


def _shown(value: Any) -> str:
    kinds = {dict: "an object", list: "an array", type(None): "null", bool: "a boolean"}
    kind = kinds.get(type(value))
    if kind is not None:
        return kind
    return f"{type(value).__name__} {value!r:.40}"


def _explain(exc: BaseException, tp: Any) -> str:
    """cattrs' description of one problem, with our own hooks' messages kept (cattrs would
    replace them with the name of the field's type)."""
    if isinstance(exc, (_WrongValue, TypeError)):
        return str(exc)
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        return f"unknown key{'s' if len(exc.extra_fields) > 1 else ''} " + ", ".join(
            sorted(exc.extra_fields)
        )
    return cattrs.v.format_exception(exc, tp)


_HHMM = re.compile(r"(?:[01][0-9]|2[0-3])[0-5][0-9]")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# Meta's limits (api-facts: at most two entries a day, up to 20 holidays).
_MAX_SPANS_PER_DAY = 2
_MAX_HOLIDAYS = 20


def _span_problems(where: str, start: tuple[str, str], end: tuple[str, str]) -> list[str]:
    bad = [
        f"{where}.{name}: expected HHMM, got {value!r:.20}"
        for name, value in (start, end)
        if not _HHMM.fullmatch(value)
    ]
    if not bad and start[1] >= end[1]:
        bad.append(f"{where}: {start[0]} must be before {end[0]}")
    return bad


def _is_date(text: str) -> bool:
    try:
        return bool(_DATE.fullmatch(text)) and date.fromisoformat(text) is not None
    except ValueError:
        return False


def _call_hours_problems(hours: CallHoursSettings) -> list[str]:
    """What Meta would refuse in ``call_hours`` that can be told without asking it."""
    where = "calling.call_hours"
    problems = [] if hours.status is not None else [f"{where}.status: required field missing"]
    per_day: dict[str, list[tuple[str, str]]] = {}
    for i, entry in enumerate(hours.weekly_operating_hours or ()):
        found = _span_problems(
            f"{where}.weekly_operating_hours[{i}]",
            ("open_time", entry.open_time),
            ("close_time", entry.close_time),
        )
        problems += found
        if not found:
            per_day.setdefault(str(entry.day_of_week), []).append(
                (entry.open_time, entry.close_time)
            )
    for day, spans in per_day.items():
        spans.sort()
        if len(spans) > _MAX_SPANS_PER_DAY:
            problems.append(
                f"{where}.weekly_operating_hours: {len(spans)} entries for {day}, "
                f"at most {_MAX_SPANS_PER_DAY}"
            )
        elif any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans)):
            problems.append(f"{where}.weekly_operating_hours: the hours of {day} overlap")
    holidays = hours.holiday_schedule or ()
    if len(holidays) > _MAX_HOLIDAYS:
        problems.append(
            f"{where}.holiday_schedule: {len(holidays)} entries, at most {_MAX_HOLIDAYS}"
        )
    for i, holiday in enumerate(holidays):
        at = f"{where}.holiday_schedule[{i}]"
        if not _is_date(holiday.date):
            problems.append(f"{at}.date: expected YYYY-MM-DD, got {holiday.date!r:.20}")
        problems += _span_problems(
            at, ("start_time", holiday.start_time), ("end_time", holiday.end_time)
        )
    return problems


_INPUT = _input_converter()


def _settings_from_file(source: str) -> dict[str, Any]:
    name = _source_name(source)
    try:
        # The library's own reader: NaN, 1e400, lone surrogates and deep nesting are refused
        # as "not JSON", whichever back end is installed.
        data = _json.loads(_read_text(source))
    except ValueError as exc:
        raise BadInput(f"{name} is not JSON: {exc}") from None
    if isinstance(data, dict) and "calling" in data:
        others = sorted(set(data) - {"calling"})
        if others:
            raise BadInput(
                f"{name}: only calling settings can be changed; remove {', '.join(others)}"
            )
        data = data["calling"]
    if not isinstance(data, dict):
        raise BadInput(f'{name} must hold a JSON object, {{"calling": {{...}}}} or {{...}}')
    try:
        calling = _INPUT.structure(data, CallingSettings)
    except (cattrs.BaseValidationError, TypeError, ValueError, KeyError) as exc:
        if isinstance(exc, cattrs.BaseValidationError):
            problems = cattrs.transform_error(exc, path="calling", format_exception=_explain)
        else:
            problems = [f"{_explain(exc, None)} @ calling"]
        raise BadInput(f"{name}: {'; '.join(problems)}") from None
    if calling.call_hours is not None:
        problems = _call_hours_problems(calling.call_hours)
        if problems:
            raise BadInput(f"{name}: {'; '.join(problems)}")
    return {
        feature: value
        for feature, value in attrs.asdict(calling, recurse=False).items()
        if value is not None
    }


def _settings_update(args: argparse.Namespace) -> SettingsUpdate:
    flags = {
        name: getattr(args, name)
        for name in (
            "status",
            "call_icon_visibility",
            "callback_permission_status",
            "srtp_key_exchange_protocol",
        )
        if getattr(args, name) is not None
    }
    if args.file is not None:
        if flags:
            raise BadInput("give either --file or one setting flag")
        flags = _settings_from_file(args.file)
    if not flags:
        raise BadInput("say what to change: a setting flag or --file")
    if len(flags) > 1:
        raise BadInput(
            f"the API takes one setting per request; got {', '.join(flags)}: "
            "change them one at a time"
        )
    ((feature, value),) = flags.items()
    if feature != "sip" and args.sip_disables_calling_api:
        raise BadInput("--sip-disables-calling-api goes with a file that enables SIP")
    return SettingsUpdate(
        feature, value, disables_calling_api_and_webhooks=args.sip_disables_calling_api
    )


# -- output -------------------------------------------------------------------------------


def _when(epoch: int | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _human_permissions(p: CallPermissions) -> str:
    status = str(p.permission.status)
    expiry = p.permission.expiration_time
    lines = [f"permission: {status}" + (f" (expires {_when(expiry)})" if expiry else "")]
    for action in p.actions:
        limits = ", ".join(
            f"{limit.time_period} {limit.current_usage}/{limit.max_allowed}"
            + (
                f" until {_when(limit.limit_expiration_time)}"
                if limit.limit_expiration_time
                else ""
            )
            for limit in action.limits
        )
        allowed = "allowed" if action.can_perform_action else "not allowed"
        lines.append(f"{action.action_name}: {allowed}" + (f" [{limits}]" if limits else ""))
    return "\n".join(lines)


def _flatten(value: Any, prefix: str = "") -> list[str]:
    if isinstance(value, dict):
        return [line for k, v in value.items() for line in _flatten(v, f"{prefix}{k}.")]
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [line for i, v in enumerate(value) for line in _flatten(v, f"{prefix}{i}.")]
    shown = ", ".join(map(str, value)) if isinstance(value, list) else value
    return [f"{prefix[:-1]}: {shown}"]


def _human_decision(decision: CallDecision) -> str:
    if decision.allowed:
        return "may call now"
    reason = _outcome_name(decision.reason) if decision.reason is not None else "unknown"
    text = f"cannot call now: {reason.replace('_', ' ')}"
    step = _outcome_name(decision.next_step).replace("_", " ")
    if decision.retry_at is not None:
        return f"{text}; next: {step} {decision.retry_at.isoformat()}"
    return f"{text}; next: {step}"


def _human(result: Any, args: argparse.Namespace) -> str:
    if isinstance(result, MessageResponse):
        return f"{result.message_id}: sent to {result.wa_id or result.input or 'the user'}"
    if isinstance(result, CallDecision):
        return _human_decision(result)
    if isinstance(result, ConnectCallResponse):
        return f"{result.call_id}: ringing {args.to}"
    if isinstance(result, CallActionResponse):
        return f"{args.call_id}: {args.action} ok"
    if isinstance(result, CallPermissions):
        return _human_permissions(result)
    if isinstance(result, Settings):
        return "\n".join(_flatten(encode(result)))
    if isinstance(result, UpdateSettingsResponse):
        return "settings updated"
    return str(result)


# -- running ------------------------------------------------------------------------------


def options_from_args(args: argparse.Namespace) -> ClientOptions:
    """The client settings the command line gave (the rest from the environment)."""
    changes: ClientOptionChanges = {}
    if hasattr(args, "api_key"):
        changes["api_key"] = args.api_key
    if hasattr(args, "base_url"):
        changes["base_url"] = args.base_url
    if hasattr(args, "timeout"):
        changes["timeout"] = args.timeout
    if hasattr(args, "max_retries"):
        changes["max_retries"] = args.max_retries
    return ClientOptions(**changes)


_PERMISSION_VERBS = ("request", "can-call")


def _permissions_call(args: argparse.Namespace) -> Callable[[AsyncClient], Awaitable[Any]]:
    words = args.words
    verb, user = (None, words[0]) if len(words) == 1 else (words[0], words[-1])
    if len(words) > 2 or (verb is not None and verb not in _PERMISSION_VERBS):
        raise BadInput(
            "expected 'permissions USER', 'permissions request USER' or 'permissions can-call USER'"
        )
    template_flags = args.template is not None or args.language is not None or args.param
    if verb != "request" and (args.body is not None or template_flags):
        raise BadInput("--body, --template, --language and --param go with 'permissions request'")
    if verb == "can-call":
        return lambda c: c.can_call(user)
    if verb is None:
        return lambda c: c.get_call_permissions(user)
    if args.template is None:
        if args.language is not None or args.param:
            raise BadInput("--language and --param go with --template")
        return lambda c: c.send_call_permission_request(user, body=args.body)
    if args.language is None or args.body is not None:
        raise BadInput("--template needs --language, and takes --param instead of --body")
    return lambda c: c.send_call_permission_template(
        user, args.template, args.language, body_parameters=tuple(args.param)
    )


def _api_call(args: argparse.Namespace) -> Callable[[AsyncClient], Awaitable[Any]]:
    if args.command == "permissions":
        return _permissions_call(args)
    if args.command == "message":
        return lambda c: c.send_call_button(
            args.to,
            args.body,
            args.display_text,
            ttl_minutes=args.ttl_minutes,
            payload=args.payload,
        )
    if args.command == "settings":
        if args.settings_command == "get":
            return lambda c: c.get_settings()
        update = _settings_update(args)
        return lambda c: c.update_settings(update)
    if args.action == "connect":
        offer = _read_sdp(args.sdp)
        return lambda c: c.connect_call(args.to, offer, biz_opaque_callback_data=args.callback_data)
    if args.action in ("pre-accept", "accept"):
        answer = _read_sdp(args.sdp)
        if args.action == "pre-accept":
            return lambda c: c.pre_accept_call(args.call_id, answer)
        return lambda c: c.accept_call(
            args.call_id, answer, biz_opaque_callback_data=args.callback_data
        )
    if args.action == "reject":
        return lambda c: c.reject_call(args.call_id)
    return lambda c: c.terminate_call(args.call_id)


async def _run_api(args: argparse.Namespace, call: Callable[[AsyncClient], Awaitable[Any]]) -> int:
    async with AsyncClient(options=options_from_args(args)) as client:
        result = await call(client)
    _print(result, args)
    if isinstance(result, CallDecision) and not result.allowed:
        return EXIT_NO
    return EXIT_OK


def _print(result: Any, args: argparse.Namespace) -> None:
    if getattr(args, "json", False):
        print(json.dumps(encode(result), indent=2, sort_keys=True))  # escapes controls itself
    else:
        print("\n".join(_clean(line) for line in _human(result, args).split("\n")))
    sys.stdout.flush()


class _Terminated(Exception):
    """SIGTERM ended a command that is not a server (exit 143)."""


@contextlib.contextmanager
def _on_signals(handler: Callable[[], None], *signals: signal.Signals) -> Iterator[None]:
    """``handler`` runs on the loop when one of ``signals`` arrives, for the block's length;
    where the loop cannot take signal handlers (Windows, a thread other than the main one)
    the signals keep their usual effect."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in signals:
        try:
            loop.add_signal_handler(sig, handler)
        except (NotImplementedError, RuntimeError, ValueError):
            continue
        installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def _until_sigterm(run: Coroutine[Any, Any, int]) -> int:
    """``run``, cancelled by SIGTERM as Ctrl-C cancels it, so that it cleans up (a placed
    call is hung up) and the command exits 143."""
    task = asyncio.current_task()
    assert task is not None
    terminated = False

    def stop() -> None:
        nonlocal terminated
        terminated = True
        task.cancel()

    with _on_signals(stop, signal.SIGTERM):
        try:
            return await run
        except asyncio.CancelledError:
            if terminated:
                raise _Terminated from None
            raise


async def _run_place(args: argparse.Namespace, offer: str) -> int:
    """``call place``: serve the webhooks, send connect, print the outcome as it happens."""
    from aiohttp import web

    from .webhooks import WebhookReceiver

    if args.webhook_secret is None and args.webhook_header is None:
        raise BadInput(
            "call place receives the call's webhooks: give --webhook-secret or --webhook-header "
            "(as set with your webhook URL)"
        )
    receiver = WebhookReceiver(
        signing_secret=args.webhook_secret, secret_header=args.webhook_header
    )
    runner = web.AppRunner(receiver.app("/webhook"), handle_signals=False)
    await runner.setup()
    host, port = args.listen
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except (OSError, OverflowError, ValueError, UnicodeError) as exc:
            raise BadInput(f"cannot listen on {host}:{port}: {_listen_failure(exc)}") from None
        async with AsyncClient(options=options_from_args(args)) as client:
            return await _follow_call(args, receiver, client, offer)
    finally:
        await runner.cleanup()


async def _follow_call(
    args: argparse.Namespace, receiver: Any, client: AsyncClient, offer: str
) -> int:
    call = await receiver.place_call(
        client,
        args.to,
        offer,
        ringing_timeout=args.ringing_timeout,
        biz_opaque_callback_data=args.callback_data,
    )
    say = functools.partial(_say, call.call_id, args)
    try:
        say("ringing", to=args.to)
        try:
            await call.answered()
        except CallNotAnsweredError as exc:
            say(_outcome_name(exc.outcome), detail=str(exc))
            return EXIT_NO
        say("answered")
        try:
            outcome = await asyncio.wait_for(call.ended(), args.hold)
        except asyncio.TimeoutError:
            await call.hangup()
            outcome = await asyncio.wait_for(call.ended(), 30)
        say("ended", outcome=_outcome_name(outcome))
        return EXIT_OK
    except BaseException:
        # Ctrl-C, SIGTERM, a closed stdout: the user's phone must not keep ringing (or the
        # call stay up) without us. Hanging up an ended call sends nothing.
        with contextlib.suppress(Exception):
            await asyncio.shield(call.hangup())
        raise


def _outcome_name(outcome: Any) -> str:
    return str(getattr(outcome, "value", outcome)).lower()


def _say(call_id: str, args: argparse.Namespace, state: str, **fields: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps({"call_id": call_id, "state": state, **fields}, sort_keys=True))
    else:
        extra = "".join(f" {value}" for key, value in fields.items() if key != "detail")
        print(_clean(f"{call_id}: {state}{extra}"))
    sys.stdout.flush()


# -- fake-server ----------------------------------------------------------------------------

_WEBHOOK_RETRIES = 2  # the fake's default: 3 attempts
_WEBHOOK_TIMEOUT = 10.0  # seconds per attempt, the fake's default
_WATCH_INTERVAL = 0.05  # seconds; under the fake's 0.2 s pause between attempts
# Headers the fake sets on each webhook itself.
_FAKE_SETS = {
    "content-type": "the fake sends application/json",
    "content-length": "the fake sets it",
    "host": "the fake sets it",
    "transfer-encoding": "the fake sets it",
    "x-360dialog-signature": "use --webhook-secret to sign",
}


def _webhook_headers(given: Sequence[tuple[str, str]] | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in given or ():
        if name.lower() in _FAKE_SETS:
            raise BadInput(f"--webhook-header {name}: {_FAKE_SETS[name.lower()]}")
        if any(name.lower() == other.lower() for other in headers):
            raise BadInput(f"--webhook-header {name} is given twice")
        headers[name] = value
    return headers


def _shown_url(url: str) -> str:
    return _clean(hide_userinfo(url))


def _listen_failure(exc: BaseException) -> str:
    """Why an address cannot be listened on, once: ``address already in use``, not asyncio's
    "error while attempting to bind on address (...): address already in use"."""
    return os_error_reason(exc) or str(exc)


# Listening on these is listening on every interface; a client on this machine reaches it on
# the loopback address of the same family (a client refuses plain http to 0.0.0.0).
_UNSPECIFIED = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def _reachable_url(url: str, host: str) -> str:
    """``url`` (the fake's) with an unspecified ``host`` shown as the loopback address."""
    loopback = _UNSPECIFIED.get(_canonical_ip(host))
    if loopback is None:
        return url
    return str(yarl.URL(url).with_host(loopback)).rstrip("/")


def _canonical_ip(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def _curl_lines(url: str, key_header: str) -> list[str]:
    return [
        "  a user calls in (every /_fake/ route: d360calling fake-server --help):",
        f"    curl -sS {url}/_fake/calls -H {key_header} -H 'Content-Type: application/json' "
        """-d '{"from": "4915112345678"}'""",
        '  and hangs up (CALL_ID: the "id" that answered):',
        f"    curl -sS -X POST {url}/_fake/calls/CALL_ID/hangup -H {key_header}",
    ]


def _banner(
    url: str, args: argparse.Namespace, public_key: str | None, headers: Sequence[str]
) -> list[str]:
    # The default key is public; one given with --api-key is not repeated on screen.
    shown_key = public_key or "<your --api-key>"
    key_header = f"'D360-API-KEY: {public_key}'" if public_key else '"D360-API-KEY: $D360_API_KEY"'
    shown = _reachable_url(url, args.host)
    lines = [f"fake 360dialog Calling API on {shown} (Ctrl-C to stop)"]
    if shown != url:
        lines.append(f"  listening on all interfaces ({args.host}); on this machine: {shown}")
    lines += [
        f"  export D360_BASE_URL={shown} D360_API_KEY={shown_key}",
        *_curl_lines(shown, key_header),
    ]
    if not args.webhook_url:
        lines.append("  webhooks are recorded, not sent: give --webhook-url to receive them")
        return lines
    auth = []
    if args.webhook_secret is not None:
        auth.append("signed with x-360dialog-signature")
    auth += [f"with the header {name}" for name in headers]
    to = ", ".join(_shown_url(u) for u in args.webhook_url)
    lines.append(f"  webhooks go to {to}" + (f" ({', '.join(auth)})" if auth else ""))
    if not auth:
        lines.append(
            "  they carry no authentication, so a WebhookReceiver answers them 401: give "
            "--webhook-secret and/or --webhook-header NAME:VALUE as the receiver expects"
        )
    return lines


def _delivery_summary(delivery: WebhookDelivery) -> str:
    """What a webhook was about, e.g. ``connect wacid.…`` (its field if nothing better)."""
    try:
        value = delivery.value
    except (KeyError, IndexError, TypeError):
        return delivery.field
    shown = {"calls": ("event", "id"), "statuses": ("status", "id"), "messages": ("type",)}
    for key, fields in shown.items():
        items = value.get(key) if isinstance(value, dict) else None
        if isinstance(items, list) and items and isinstance(items[0], dict):
            words = [str(items[0].get(name)) for name in fields if items[0].get(name)]
            prefix = {"statuses": "status", "messages": "message"}.get(key)
            return " ".join(([prefix] if prefix else []) + words) or delivery.field
    return delivery.field


_AUTH_HINT = (
    "  {status}: the receiver refused the webhook's authentication: start fake-server with the "
    "receiver's signing secret (--webhook-secret) and/or secret header (--webhook-header "
    "NAME:VALUE)"
)


def _tell(note: DeliveryNote, hinted: bool) -> bool:
    """Print ``note`` on stderr; returns whether the authentication hint was printed."""
    what = f"webhook #{note.number} ({_delivery_summary(note.delivery)})"
    url = _shown_url(note.url) if note.url else "its URL"
    of = f"attempt {note.attempt} of {note.attempts}"
    if note.delivered:
        text = f"{what} delivered to {url} on {of}"
    elif note.attempt == 0:
        text = f"{what} not sent: {note.error}"
    else:
        result = f"HTTP {note.status}" if note.status is not None else str(note.error)
        text = (
            f"{what} to {url} failed: {result} ({of}; {'given up' if note.final else 'retrying'})"
        )
    print(_one_line(text), file=sys.stderr, flush=True)
    if note.status in (401, 403) and not hinted:
        print(_AUTH_HINT.format(status=note.status), file=sys.stderr, flush=True)
        return True
    return hinted


async def _run_fake_server(args: argparse.Namespace) -> int:
    from .testing import DEFAULT_API_KEY, FakeCallingAPI
    from .testing._runner import DeliveryWatch

    api_key = getattr(args, "api_key", DEFAULT_API_KEY)
    headers = _webhook_headers(args.webhook_header)
    try:
        fake = FakeCallingAPI(
            api_key=api_key,
            host=args.host,
            port=args.port,
            webhook_urls=args.webhook_url,
            webhook_headers=headers,
            webhook_signing_secret=args.webhook_secret,
            webhook_retries=_WEBHOOK_RETRIES,
            webhook_timeout=_WEBHOOK_TIMEOUT,
            answer_window=args.answer_window,
        )
    except (TypeError, ValueError) as exc:  # the fake's own checks of its settings
        raise BadInput(str(exc)) from None
    try:
        await fake.start_async()
    except (OSError, OverflowError, ValueError, UnicodeError) as exc:
        # Address in use, no such host, a port the OS refuses: what was asked for, not a bug.
        await fake.close_async()
        raise BadInput(
            f"cannot listen on {args.host}:{args.port}: {_listen_failure(exc)}"
        ) from None
    except BaseException:  # Ctrl-C while it starts: nothing left half started
        await fake.close_async()
        raise
    stop = asyncio.Event()
    # Ctrl-C and SIGTERM (kill, a service manager) both stop it the same clean way.
    with _on_signals(stop.set, signal.SIGINT, signal.SIGTERM):
        args.serving = True  # from here Ctrl-C is how it is meant to stop (exit 0)
        try:
            public_key = fake.api_key if api_key == DEFAULT_API_KEY else None
            print("\n".join(_banner(fake.url, args, public_key, list(headers))), flush=True)
            watch = DeliveryWatch(
                fake.webhooks, attempts=1 + _WEBHOOK_RETRIES, attempt_timeout=_WEBHOOK_TIMEOUT
            )
            hinted = False
            while not stop.is_set():
                await asyncio.sleep(_WATCH_INTERVAL)
                for note in watch.poll():
                    hinted = _tell(note, hinted)
        finally:
            await fake.close_async()
    return EXIT_OK


# -- demo, sdp ------------------------------------------------------------------------------


def _demo_target(args: argparse.Namespace) -> tuple[ClientOptions | None, str]:
    """The real API's options and why, or ``None`` (the built-in fake) and why: the real API
    only with a key and a base URL that is not on this machine."""
    key = getattr(args, "api_key", None) or os.environ.get(API_KEY_ENV)
    if not key:
        return None, "no API key given"
    given = getattr(args, "base_url", None)
    url = given or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    try:
        host = yarl.URL(url).host
    except (TypeError, ValueError):
        host = None
    if host is not None and is_loopback(host):
        source = "--base-url" if given else BASE_URL_ENV
        return None, f"{source} {_shown_url(url)} is on this machine, not the real API"
    options = options_from_args(args)  # checks the key and the URL
    return options, f"an API key and {options.base_url}"


async def _run_demo(args: argparse.Namespace) -> int:
    if args.media:
        from ._media_demo import run_media_demo

        return await run_media_demo()
    from ._demo import run_demo  # the demo pulls in the fake: only for this command

    options, reason = _demo_target(args)
    return await run_demo(
        options, wa_id=args.wa_id, reason=reason, as_json=getattr(args, "json", False)
    )


def _run_sdp(args: argparse.Namespace) -> int:
    offer = _read_sdp(args.to) if args.to is not None else None
    try:
        from .testing import sample_answer, sample_offer
    except ImportError as exc:
        raise BadInput(
            f'sample SDPs need the testing extra: pip install "d360calling[testing]" ({exc})'
        ) from None
    if args.sdp_kind == "offer":
        # The fake's sample offer is the user's phone's (ICE-lite); a business offer comes
        # from a full ICE agent, as the answer does.
        text = sample_offer(args.seed).replace("a=ice-lite\r\n", "")
    else:
        text = sample_answer(args.seed, offer=offer)
    stream = getattr(sys.stdout, "buffer", None)
    if stream is not None:  # bytes: the CRLF line ends as they are, on any platform
        stream.write(text.encode())
        stream.flush()
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    return EXIT_OK


_NEEDS_THE_FAKE = ("demo", "fake-server")


def _missing_extra(args: argparse.Namespace, exc: ImportError) -> str | None:
    """What to say when a command that runs the fake lacks the testing extra (jsonschema,
    jsonschema-rs), or ``None`` for any other import failure (a bug: its traceback)."""
    if args.command not in _NEEDS_THE_FAKE or (exc.name or "").startswith("d360calling"):
        return None
    hint = 'pip install "d360calling[testing]"'
    text = str(exc)
    detail = "" if "d360calling[testing]" in text else f" ({_one_line(text)})"
    return f"{args.command} runs the fake API, which needs the testing extra: {hint}{detail}"


def _quiet_stdout() -> None:
    """After a closed stdout: point it at the null device, so that Python's last flush at
    exit does not complain about the pipe again."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's capture)
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            return _main(argv)
        finally:
            if sys.stdout is not None:
                sys.stdout.flush()  # a closed pipe shows here, not in Python's flush at exit
    except BrokenPipeError:
        # `d360calling ... | head`: the reader has gone; no traceback, the shell's exit code.
        _quiet_stdout()
        return EXIT_BROKEN_PIPE


def _main(argv: Sequence[str] | None) -> int:
    global _secrets
    arguments = sys.argv[1:] if argv is None else list(argv)
    _secrets = _secrets_in(arguments)
    args = argparse.Namespace(command=None)  # until parsed: Ctrl-C may come first
    try:
        args = _parser().parse_args(arguments)
        args.serving = False  # fake-server: set once it serves
        _check_options(args)
        run: Coroutine[Any, Any, int]
        if args.command == "fake-server":
            run = _run_fake_server(args)
        elif args.command == "demo":
            run = _run_demo(args)
        elif args.command == "sdp":
            return _run_sdp(args)
        elif args.command == "call" and args.action == "place":
            run = _until_sigterm(_run_place(args, _read_sdp(args.sdp)))
        else:
            # Files are read and flags checked before any connection, and outside the loop:
            # inside it, Ctrl-C only cancels the task, and a read from stdin would go on.
            run = _run_api(args, _api_call(args))
        return asyncio.run(run)
    except KeyboardInterrupt:
        if args.command == "fake-server" and getattr(args, "serving", False):
            return EXIT_OK  # Ctrl-C is how it is meant to stop
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ImportError as exc:
        missing = _missing_extra(args, exc)
        if missing is None:
            raise
        print(f"d360calling: {missing}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except _Terminated:
        print("terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except (BadInput, InvalidRequestError) as exc:
        return _fail("bad input", exc, EXIT_BAD_INPUT)
    except APIConnectionError as exc:
        return _fail("network error", exc, EXIT_NETWORK_ERROR)
    except (APIError, D360Error) as exc:
        return _fail("API error", exc, EXIT_API_ERROR)
    # Anything else is a bug in d360calling: its traceback (exit 1) is what a report needs.
