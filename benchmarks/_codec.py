"""Converter micro-benchmark: µs to encode each request and decode each response type."""

from __future__ import annotations

import functools
import json
import timeit
from collections.abc import Callable
from typing import Any

from d360calling import _json
from d360calling._converter import decode, encode
from d360calling.models.calls import (
    AcceptCallRequest,
    CallActionResponse,
    ConnectCallRequest,
    PreAcceptCallRequest,
    RejectCallRequest,
    TerminateCallRequest,
)
from d360calling.models.permissions import CallPermissions
from d360calling.models.settings import Settings, SettingsUpdate
from d360calling.webhooks import parse_webhook

from ._server import PERMISSIONS_BODY, SETTINGS_BODY
from ._workload import CALL_ID, answer_sdp

_CONNECT_BODY = b'{"messaging_product":"whatsapp","calls":[{"id":"' + CALL_ID.encode() + b'"}]}'
_CONNECT_WEBHOOK = json.dumps(
    {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "1",
                "changes": [
                    {
                        "field": "calls",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550001111",
                                "phone_number_id": "1",
                            },
                            "contacts": [{"profile": {"name": "Ada"}, "wa_id": "4915112345678"}],
                            "calls": [
                                {
                                    "id": CALL_ID,
                                    "from": "4915112345678",
                                    "to": "15550001111",
                                    "event": "connect",
                                    "timestamp": "1700000000",
                                    "direction": "USER_INITIATED",
                                    "session": {"sdp_type": "offer", "sdp": answer_sdp()},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
).encode()


def _encode(request: object) -> bytes:
    return _json.dumps(encode(request))


def _decode(cls: type, body: bytes) -> object:
    return decode(cls, _json.loads(body))


def cases() -> list[tuple[str, Callable[[], Any]]]:
    sdp = answer_sdp()
    offer = sdp.replace("a=setup:active", "a=setup:actpass")  # the same size, as an offer
    requests = {
        "connect": ConnectCallRequest(to="4915112345678", sdp=offer),
        "pre_accept": PreAcceptCallRequest(call_id=CALL_ID, sdp=sdp),
        "accept": AcceptCallRequest(call_id=CALL_ID, sdp=sdp),
        "reject": RejectCallRequest(call_id=CALL_ID),
        "terminate": TerminateCallRequest(call_id=CALL_ID),
        "settings update": SettingsUpdate.status("ENABLED"),
    }
    out: list[tuple[str, Callable[[], Any]]] = [
        (f"encode {name}", functools.partial(_encode, req)) for name, req in requests.items()
    ]
    responses: list[tuple[str, type, bytes]] = [
        (
            "call action answer",
            CallActionResponse,
            b'{"messaging_product":"whatsapp","success":true}',
        ),
        ("connect answer", CallActionResponse, _CONNECT_BODY),
        ("permissions", CallPermissions, PERMISSIONS_BODY),
        ("settings", Settings, SETTINGS_BODY),
    ]
    out += [
        (f"decode {name}", functools.partial(_decode, cls, body)) for name, cls, body in responses
    ]
    out.append(("parse connect webhook", lambda: parse_webhook(_CONNECT_WEBHOOK)))
    return out


def run(quick: bool) -> list[dict[str, Any]]:
    number = 2_000 if quick else 20_000
    rows = []
    for name, fn in cases():
        fn()  # a failing case fails here, not inside timeit
        best = min(timeit.repeat(fn, number=number, repeat=3 if quick else 7))
        rows.append({"case": name, "us": best / number * 1e6})
    return rows
