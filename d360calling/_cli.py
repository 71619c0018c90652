"""The ``d360calling`` command line: every endpoint, the fake API, and the demo.

Exit codes tell outcomes apart for scripts: 0 success, 2 bad input (including a missing API
key), 3 the API answered with an error (or an answer that makes no sense), 4 no answer
(network error or timeout), 5 the answer is no (may not call now; the call was not answered),
130 interrupted, 1 anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import functools
import ipaddress
import itertools
import json
import math
import os
import re
import sys
import typing
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import date, datetime, timezone
from typing import Any, NoReturn

import attrs
import cattrs
import cattrs.cols
import cattrs.v
import yarl

from . import _json
from ._async_client import AsyncClient
from ._constants import API_KEY_ENV
from ._converter import encode, make_converter
from ._options import ClientOptionChanges, ClientOptions
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

__all__ = ("main", "options_from_args")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_API_ERROR = 3
EXIT_NETWORK_ERROR = 4
EXIT_NO = 5  # the answer is no: may not call now, or the call placed was not answered
EXIT_INTERRUPTED = 130

_EPILOG = """\
exit codes: 0 success, 2 bad input or no API key, 3 API error, 4 network error or timeout,
5 the answer is no (permissions can-call: not now; call place: not answered), 130 interrupted,
1 anything else.
The API key comes from --api-key or D360_API_KEY; the base URL from --base-url or D360_BASE_URL.
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


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip() or not value.strip():
        raise argparse.ArgumentTypeError("expected NAME:VALUE, e.g. X-Webhook-Secret:s3cret")
    return name.strip(), value.strip()


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


def _parser() -> argparse.ArgumentParser:
    # Connection options are accepted before or after the subcommand; SUPPRESS keeps a
    # subcommand's defaults from overwriting what was given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--api-key", default=argparse.SUPPRESS, help="the number's API key")
    common.add_argument("--base-url", default=argparse.SUPPRESS, help="API base URL")
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON for scripts"
    )
    common.add_argument(
        "--timeout", type=float, default=argparse.SUPPRESS, help="seconds per attempt"
    )
    common.add_argument(
        "--max-retries", type=int, default=argparse.SUPPRESS, help="retries after the first try"
    )

    def sub(group: Any, name: str, help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = group.add_parser(
            name, help=help, description=help, parents=[common], epilog=_EPILOG
        )
        return parser

    root = _Parser(
        prog="d360calling",
        description="360dialog WhatsApp Calling API from the command line.",
        parents=[common],
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    root.add_argument("--version", action="version", version=f"d360calling {__version__}")
    commands = root.add_subparsers(dest="command", required=True, parser_class=_Parser)

    call = sub(commands, "call", "call actions (POST /calling/calls)")
    actions = call.add_subparsers(dest="action", required=True, parser_class=_Parser)
    connect = sub(actions, "connect", "call a WhatsApp user (needs their call permission)")
    connect.add_argument("to", help="the user's WhatsApp number, digits only")
    connect.add_argument("--sdp", required=True, help="file with the SDP offer ('-': stdin)")
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
        help="HOST:PORT where this command receives the call's webhooks at /webhook",
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
            answer.add_argument("--callback-data", help="biz_opaque_callback_data")
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
        "--param", action="append", default=[], help="request --template: a body parameter"
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
    settings_commands = settings.add_subparsers(dest="settings_command", required=True)
    sub(settings_commands, "get", "show the calling settings")
    update = sub(settings_commands, "set", "change one calling setting (one per request)")
    update.add_argument("--status", choices=("ENABLED", "DISABLED"))
    update.add_argument("--call-icon-visibility", choices=("DEFAULT", "DISABLE_ALL"))
    update.add_argument("--callback-permission-status", choices=("ENABLED", "DISABLED"))
    update.add_argument("--srtp-key-exchange-protocol", choices=("DTLS", "SDES"))
    update.add_argument(
        "--file", help="JSON file with {\"calling\": {...}} or the calling object ('-': stdin)"
    )
    update.add_argument(
        "--sip-disables-calling-api",
        action="store_true",
        help="confirm that enabling SIP turns off the calling endpoints and their webhooks",
    )

    fake = sub(commands, "fake-server", "run the fake Calling API until Ctrl-C")
    fake.add_argument("--host", type=_listen_host, default="127.0.0.1")
    fake.add_argument("--port", type=_port, default=8360, help="0: any free port")
    fake.add_argument("--webhook-url", type=_webhook_url, help="where the fake POSTs call webhooks")
    fake.add_argument(
        "--webhook-secret", type=_secret, help="sign webhooks with x-360dialog-signature"
    )
    fake.add_argument("--answer-window", type=_seconds, default=60.0)

    demo = sub(commands, "demo", "walk through an inbound and an outbound call")
    demo.add_argument(
        "--wa-id", help="with a real API key: the user whose call permission to check"
    )
    demo.add_argument(
        "--media",
        action="store_true",
        help="two real calls with audio over loopback (needs d360calling[media])",
    )
    return root


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
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise BadInput(f"cannot listen on {host}:{port}: {reason}") from None
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
    say("ringing", to=args.to)
    try:
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
    except asyncio.CancelledError:
        # Ctrl-C: the user's phone must not keep ringing (or the call stay up) without us.
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


async def _run_fake_server(args: argparse.Namespace) -> int:
    from .testing import DEFAULT_API_KEY, FakeCallingAPI

    api_key = getattr(args, "api_key", DEFAULT_API_KEY)
    try:
        fake = FakeCallingAPI(
            api_key=api_key,
            host=args.host,
            port=args.port,
            webhook_url=args.webhook_url,
            webhook_signing_secret=args.webhook_secret,
            answer_window=args.answer_window,
        )
    except (TypeError, ValueError) as exc:  # the fake's own checks of its settings
        raise BadInput(str(exc)) from None
    try:
        await fake.start_async()
    except (OSError, OverflowError, ValueError, UnicodeError) as exc:
        # Address in use, no such host, a port the OS refuses: what was asked for, not a bug.
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise BadInput(f"cannot listen on {args.host}:{args.port}: {reason}") from None
    try:
        # The default key is public; one given with --api-key is not repeated on screen.
        shown_key = fake.api_key if api_key == DEFAULT_API_KEY else "<your --api-key>"
        print(f"fake 360dialog Calling API on {fake.url} (Ctrl-C to stop)")
        print(f"  export D360_BASE_URL={fake.url} D360_API_KEY={shown_key}")
        print(f'  a user calls in: POST {fake.url}/_fake/calls {{"from": "<wa_id>"}}')
        if args.webhook_url:
            print(f"  webhooks go to {_clean(args.webhook_url)}")
        sys.stdout.flush()
        await asyncio.Event().wait()  # until cancelled by Ctrl-C
    finally:
        await fake.close_async()
    return EXIT_OK


async def _run_demo(args: argparse.Namespace) -> int:
    if getattr(args, "media", False):
        from ._media_demo import run_media_demo

        return await run_media_demo()
    from ._demo import run_demo  # the demo pulls in the fake: only for this command

    real_api = bool(getattr(args, "api_key", None) or os.environ.get(API_KEY_ENV))
    return await run_demo(options_from_args(args) if real_api else None, wa_id=args.wa_id)


def main(argv: Sequence[str] | None = None) -> int:
    global _secrets
    arguments = sys.argv[1:] if argv is None else list(argv)
    _secrets = _secrets_in(arguments)
    args = _parser().parse_args(arguments)
    try:
        run: Coroutine[Any, Any, int]
        if args.command == "fake-server":
            run = _run_fake_server(args)
        elif args.command == "demo":
            run = _run_demo(args)
        elif args.command == "call" and args.action == "place":
            run = _run_place(args, _read_sdp(args.sdp))
        else:
            # Files are read and flags checked before any connection, and outside the loop:
            # inside it, Ctrl-C only cancels the task, and a read from stdin would go on.
            run = _run_api(args, _api_call(args))
        return asyncio.run(run)
    except KeyboardInterrupt:
        if args.command == "fake-server":
            return EXIT_OK  # Ctrl-C is how it is meant to stop
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (BadInput, InvalidRequestError) as exc:
        return _fail("bad input", exc, EXIT_BAD_INPUT)
    except APIConnectionError as exc:
        return _fail("network error", exc, EXIT_NETWORK_ERROR)
    except (APIError, D360Error) as exc:
        return _fail("API error", exc, EXIT_API_ERROR)
    # Anything else is a bug in d360calling: its traceback (exit 1) is what a report needs.
