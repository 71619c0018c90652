"""The ``d360calling`` command line: every endpoint, the fake API, and the demo.

Exit codes tell outcomes apart for scripts: 0 success, 2 bad input (including a missing API
key), 3 the API answered with an error (or an answer that makes no sense), 4 no answer
(network error or timeout), 130 interrupted, 1 anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import attrs
import cattrs

from ._async_client import AsyncClient
from ._constants import API_KEY_ENV
from ._converter import decode, decode_errors, encode
from ._options import ClientOptionChanges, ClientOptions
from ._version import __version__
from .errors import APIConnectionError, APIError, D360Error, InvalidRequestError
from .models import (
    CallActionResponse,
    CallingSettings,
    CallPermissions,
    ConnectCallResponse,
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
EXIT_INTERRUPTED = 130

_EPILOG = """\
exit codes: 0 success, 2 bad input or no API key, 3 API error, 4 network error or timeout,
130 interrupted, 1 anything else.
The API key comes from --api-key or D360_API_KEY; the base URL from --base-url or D360_BASE_URL.
"""


class BadInput(Exception):
    """A problem with what the user typed or pointed at (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


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

    permissions = sub(commands, "permissions", "may the business call this user?")
    permissions.add_argument("wa_id", help="the user's WhatsApp number, digits only")

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

    fake = sub(commands, "fake-server", "run the fake Calling API until Ctrl-C")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=8360)
    fake.add_argument("--webhook-url", help="where the fake POSTs call webhooks")
    fake.add_argument("--webhook-secret", help="sign webhooks with x-360dialog-signature")
    fake.add_argument("--answer-window", type=float, default=60.0)

    demo = sub(commands, "demo", "walk through an inbound and an outbound call")
    demo.add_argument(
        "--wa-id", help="with a real API key: the user whose call permission to check"
    )
    return root


# -- input --------------------------------------------------------------------------------


def _read_text(source: str) -> str:
    try:
        return sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read {source}: {exc}") from None


def _read_sdp(source: str) -> str:
    # SDP lines end in CRLF (RFC 8866); a file edited on Unix has LF, which the API refuses.
    lines = _read_text(source).splitlines()
    if not lines:
        raise BadInput(f"{source} holds no SDP")
    return "\r\n".join(lines) + "\r\n"


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
        try:
            data = json.loads(_read_text(args.file))
        except ValueError as exc:
            raise BadInput(f"{args.file} is not JSON: {exc}") from None
        if isinstance(data, dict) and set(data) == {"calling"}:
            data = data["calling"]
        if not isinstance(data, dict):
            raise BadInput(f"{args.file} must hold a JSON object")
        try:
            calling = decode(CallingSettings, data, strict=True)
        except (cattrs.BaseValidationError, TypeError, ValueError, KeyError) as exc:
            raise BadInput(f"{args.file}: {decode_errors(exc)}") from None
        flags = {
            name: value
            for name, value in attrs.asdict(calling, recurse=False).items()
            if value is not None
        }
    if not flags:
        raise BadInput("say what to change: a setting flag or --file")
    if len(flags) > 1:
        raise BadInput(
            f"the API takes one setting per request; got {', '.join(flags)}: "
            "change them one at a time"
        )
    ((feature, value),) = flags.items()
    return SettingsUpdate(feature, value)


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


def _human(result: Any, args: argparse.Namespace) -> str:
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


def _api_call(args: argparse.Namespace) -> Callable[[AsyncClient], Awaitable[Any]]:
    if args.command == "permissions":
        return lambda c: c.get_call_permissions(args.wa_id)
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


async def _run_api(args: argparse.Namespace) -> int:
    call = _api_call(args)  # reads files and checks flags before any connection is made
    async with AsyncClient(options=options_from_args(args)) as client:
        result = await call(client)
    if getattr(args, "json", False):
        print(json.dumps(encode(result), indent=2, sort_keys=True))
    else:
        print(_human(result, args))
    return EXIT_OK


async def _run_fake_server(args: argparse.Namespace) -> int:
    from .testing import DEFAULT_API_KEY, FakeCallingAPI

    fake = FakeCallingAPI(
        api_key=getattr(args, "api_key", DEFAULT_API_KEY),
        host=args.host,
        port=args.port,
        webhook_url=args.webhook_url,
        webhook_signing_secret=args.webhook_secret,
        answer_window=args.answer_window,
    )
    async with fake:
        print(f"fake 360dialog Calling API on {fake.url} (Ctrl-C to stop)")
        print(f"  export D360_BASE_URL={fake.url} D360_API_KEY={fake.api_key}")
        print(f'  a user calls in: POST {fake.url}/_fake/calls {{"from": "<wa_id>"}}')
        if args.webhook_url:
            print(f"  webhooks go to {args.webhook_url}")
        sys.stdout.flush()
        await asyncio.Event().wait()  # until cancelled by Ctrl-C
    return EXIT_OK


async def _run_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo  # the demo pulls in the fake: only for this command

    real_api = bool(getattr(args, "api_key", None) or os.environ.get(API_KEY_ENV))
    return await run_demo(options_from_args(args) if real_api else None, wa_id=args.wa_id)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    runner: Callable[[argparse.Namespace], Awaitable[int]]
    if args.command == "fake-server":
        runner = _run_fake_server
    elif args.command == "demo":
        runner = _run_demo
    else:
        runner = _run_api
    try:
        return asyncio.run(runner(args))
    except KeyboardInterrupt:
        if args.command == "fake-server":
            return EXIT_OK  # Ctrl-C is how it is meant to stop
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (BadInput, InvalidRequestError) as exc:
        print(f"d360calling: bad input: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except APIConnectionError as exc:
        print(f"d360calling: network error: {exc}", file=sys.stderr)
        return EXIT_NETWORK_ERROR
    except (APIError, D360Error) as exc:
        print(f"d360calling: API error: {exc}", file=sys.stderr)
        return EXIT_API_ERROR
