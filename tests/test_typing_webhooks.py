"""The webhooks' public types hold for user code: mypy (strict, ``--disallow-any-expr``) is run
once over a snippet that uses the event shortcuts and the receiver's callbacks the way users do.

A line marked ``# R: text`` must reveal exactly the type ``text``; a line marked
``# E: code`` must have an error with that code; no other line may have an error.
"""

from __future__ import annotations

import inspect
import re
import textwrap
import typing
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

import d360calling.webhooks

__all__ = ()

ROOT = Path(__file__).resolve().parent.parent
RESPONSE = "d360calling.models.calls.CallActionResponse"
PENDING = f"typing.Coroutine[object, object, {RESPONSE}]"

SNIPPET = f"""
from __future__ import annotations

import asyncio

from d360calling import AsyncClient, Client
from d360calling.models import CallActionResponse
from d360calling.webhooks import (
    AsyncCallActions,
    CallConnectEvent,
    CallStatusEvent,
    CallTerminateEvent,
    PermissionReplyEvent,
    SyncCallActions,
    UnknownEvent,
    WebhookEvent,
    WebhookReceiver,
)


async def shortcuts(
    event: CallConnectEvent, aclient: AsyncClient, client: Client, either: AsyncClient | Client
) -> None:
    sdp = "v=0"
    reveal_type(event.accept(aclient, sdp)).close()  # R: {PENDING}
    reveal_type(event.accept(client, sdp))  # R: {RESPONSE}
    reveal_type(event.pre_accept(aclient, sdp)).close()  # R: {PENDING}
    reveal_type(event.pre_accept(client, sdp))  # R: {RESPONSE}
    reveal_type(event.reject(aclient)).close()  # R: {PENDING}
    reveal_type(event.reject(client))  # R: {RESPONSE}
    reveal_type(event.terminate(aclient)).close()  # R: {PENDING}
    reveal_type(event.terminate(client))  # R: {RESPONSE}
    answered = await event.accept(
        aclient, sdp, biz_opaque_callback_data="x", deadline=5.0, timeout=1.0, max_retries=0
    )
    reveal_type(answered)  # R: {RESPONSE}
    task = asyncio.create_task(event.pre_accept(aclient, sdp))
    reveal_type(await task)  # R: {RESPONSE}
    reveal_type(event.terminate(either))  # R: {PENDING} | {RESPONSE}
    event.accept(client, sdp, timeout="soon")  # E: call-overload
    event.accept(client, sdp, deadline="tomorrow")  # E: call-overload
    event.reject(client, reason="busy")  # E: call-overload
    event.accept(object(), sdp)  # E: call-overload
    event.accept(aclient, sdp)  # E: unused-coroutine
    await event.accept(client, sdp)  # E: misc


def protocols(aclient: AsyncClient, client: Client) -> None:
    as_async: AsyncCallActions = aclient
    as_sync: SyncCallActions = client
    wrong_async: AsyncCallActions = client  # E: assignment
    wrong_sync: SyncCallActions = aclient  # E: assignment


async def on_connect(event: CallConnectEvent) -> None: ...
async def on_status(event: CallStatusEvent) -> None: ...
async def on_terminate(event: CallTerminateEvent) -> None: ...
async def on_permission_reply(event: PermissionReplyEvent) -> None: ...
async def on_unknown(event: UnknownEvent) -> None: ...
async def on_any(event: WebhookEvent) -> None: ...
async def on_stale(event: WebhookEvent, reason: str) -> None: ...
def blocking(event: CallConnectEvent) -> None: ...


def receivers() -> None:
    WebhookReceiver(
        on_connect=on_connect,
        on_status=on_status,
        on_terminate=on_terminate,
        on_permission_reply=on_permission_reply,
        on_unknown=on_unknown,
        on_event=on_any,
        on_stale=on_stale,
    )
    WebhookReceiver(on_connect=on_any, on_terminate=on_any)  # a wider callback fits
    WebhookReceiver(on_connect=on_terminate)  # E: arg-type
    WebhookReceiver(on_event=on_connect)  # E: arg-type
    WebhookReceiver(on_connect=blocking)  # E: arg-type
    WebhookReceiver(on_status=lambda e: on_terminate(e))  # E: arg-type
"""

MARK = re.compile(r"#\s*(?P<kind>[RE]):\s*(?P<text>.+?)\s*$")
OUTPUT = re.compile(r"^snippet\.py:(?P<line>\d+): (?P<level>error|note): (?P<message>.*)$")


def test_the_shortcuts_and_callbacks_type_check_as_documented(tmp_path: Path) -> None:
    # mypy comes with the dev install; the plain-install run of the suite has only ".[test]".
    api = pytest.importorskip("mypy.api", reason="mypy is part of the dev extra")
    source = textwrap.dedent(SNIPPET).lstrip()
    (tmp_path / "snippet.py").write_text(source)
    (tmp_path / "mypy.ini").write_text(
        textwrap.dedent(
            f"""\
            [mypy]
            strict = True
            disallow_any_expr = True
            mypy_path = {ROOT}
            [mypy-d360calling.*]
            ignore_errors = True
            disallow_any_expr = False
            """
        )
    )
    stdout, stderr, _ = api.run(
        [
            "--config-file",
            str(tmp_path / "mypy.ini"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--show-error-codes",
            "--no-pretty",
            "--no-error-summary",
            str(tmp_path / "snippet.py"),
        ]
    )
    assert not stderr, stderr
    reveals: dict[int, str] = {}
    errors: dict[int, list[str]] = {}
    for line in stdout.splitlines():
        found = OUTPUT.match(line.replace(str(tmp_path) + "/", ""))
        if found is None:
            continue  # other files (ignored) and continuation lines
        number, message = int(found["line"]), found["message"]
        if found["level"] == "error":
            errors.setdefault(number, []).append(message)
        elif message.startswith("Revealed type is "):
            reveals[number] = message.removeprefix("Revealed type is ").strip('"')
    unexpected = dict(errors)
    for number, text in enumerate(source.splitlines(), start=1):
        mark = MARK.search(text)
        if mark is None:
            continue
        if mark["kind"] == "R":
            assert reveals.get(number) == mark["text"], (number, text, reveals.get(number))
        else:
            got = unexpected.pop(number, [])
            assert any(f"[{mark['text']}]" in message for message in got), (number, text, got)
    assert not unexpected, f"errors on unmarked lines: {unexpected}\n{stdout}"


def _mentions_any(hint: object) -> bool:
    if isinstance(hint, list):  # a Callable's parameters
        return any(_mentions_any(arg) for arg in hint)
    return hint is typing.Any or any(_mentions_any(arg) for arg in typing.get_args(hint))


def _signatures(obj: object) -> list[tuple[str, object]]:
    """``(where, hint)`` for every annotation of a public function, method or attribute."""
    found: list[tuple[str, object]] = []
    functions: list[tuple[str, object]] = []
    if typing.get_origin(obj) is not None:  # an alias such as CallActions[CallActionResponse]
        found.extend((repr(obj), arg) for arg in typing.get_args(obj))
        obj = typing.get_origin(obj)
    if inspect.isclass(obj):
        for name, hint in typing.get_type_hints(obj).items():
            found.append((f"{obj.__name__}.{name}", hint))
        for name, member in vars(obj).items():
            if name == "__init__" or not name.startswith("_"):
                target = member.fget if isinstance(member, property) else member
                if callable(target):
                    functions.append((f"{obj.__name__}.{name}", target))
    elif callable(obj):
        functions.append((getattr(obj, "__name__", repr(obj)), obj))
    for where, function in functions:
        variants = [function, *getattr(typing, "get_overloads", lambda _: [])(function)]
        for variant in variants:
            for name, hint in typing.get_type_hints(variant).items():
                found.append((f"{where}:{name}", hint))
    return found


def test_no_public_signature_of_the_webhooks_package_falls_to_any() -> None:
    allowed: set[str] = set()
    assert _mentions_any(Callable[[typing.Any], Awaitable[None]])  # what on_connect= used to be
    offenders = [
        where
        for name in d360calling.webhooks.__all__
        for where, hint in _signatures(getattr(d360calling.webhooks, name))
        if _mentions_any(hint) and where not in allowed
    ]
    assert offenders == []
