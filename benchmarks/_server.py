"""A canned-response HTTP/1.1 server for the benchmarks, run in its own process.

It answers every request from a table of prepared bytes, so it costs a few microseconds per
request and is never what a benchmark measures. Run as
``python -m benchmarks._server PORT_FILE``: it binds 127.0.0.1 on a free port, writes the
port to PORT_FILE and serves until killed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

CALL_ACTION_BODY = b'{"messaging_product":"whatsapp","success":true}'
PERMISSIONS_BODY = json.dumps(
    {
        "messaging_product": "whatsapp",
        "permission": {"status": "granted", "expiration_time": 1767225600},
        "actions": [
            {
                "action_name": "send_call_permission_request",
                "can_perform_action": True,
                "limits": [{"time_period": "PT24H", "max_allowed": 1, "current_usage": 0}],
            },
            {
                "action_name": "start_call",
                "can_perform_action": True,
                "limits": [{"time_period": "PT24H", "max_allowed": 100, "current_usage": 3}],
            },
        ],
    }
).encode()
SETTINGS_BODY = json.dumps(
    {
        "calling": {
            "status": "ENABLED",
            "call_icon_visibility": "DEFAULT",
            "srtp_key_exchange_protocol": "DTLS",
        }
    }
).encode()


def _response(body: bytes, status: str = "200 OK") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nX-Request-Id: bench\r\n\r\n"
    )
    return head.encode() + body


_CALLS = _response(CALL_ACTION_BODY)
_PERMISSIONS = _response(PERMISSIONS_BODY)
_SETTINGS = _response(SETTINGS_BODY)
_NOT_FOUND = _response(b'{"error":"Not found"}', "404 Not Found")


def _answer(method: bytes, path: bytes) -> bytes:
    if path == b"/calling/calls":
        return _CALLS
    if path.startswith(b"/calling/permissions/"):
        return _PERMISSIONS
    if path == b"/calling/settings":
        return _SETTINGS if method == b"GET" else _CALLS
    return _NOT_FOUND


class _Connection(asyncio.Protocol):
    """Keep-alive HTTP/1.1 with Content-Length bodies: all that the clients under test send."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        out = []
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = bytes(buffer[:end]).lower()
            length = 0
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                line_end = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : line_end if line_end >= 0 else None])
            total = end + 4 + length
            if len(buffer) < total:
                break
            request_line = head[: head.find(b"\r\n")]
            method, path, _ = request_line.split(b" ", 2)
            del buffer[:total]
            out.append(_answer(method.upper(), path))
        if out and self._transport is not None:
            self._transport.write(b"".join(out))


async def _serve(port_file: str) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Connection, "127.0.0.1", 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    # Written in one step (tmp + rename) so the parent never reads half a number.
    Path(port_file + ".tmp").write_text(str(port))  # noqa: ASYNC240 - a few bytes, once
    os.replace(port_file + ".tmp", port_file)
    async with server:
        await server.serve_forever()


def main() -> None:
    cpu = os.environ.get("BENCH_CPU")
    if cpu is not None:
        os.sched_setaffinity(0, {int(cpu)})
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(sys.argv[1]))
    else:
        uvloop.run(_serve(sys.argv[1]))


if __name__ == "__main__":
    main()
