"""The receiver as a pure ASGI application: uvicorn, Hypercorn, Starlette, FastAPI, with no
dependency on any of them.

The app reads the ``http.request`` messages itself (the raw bytes the signature is over, in
the chunks the server hands over, so the receiver's bounds hold before a body is whole) and
answers with the receiver's :class:`~d360calling.webhooks.WebhookReply`. Run on its own, it
answers the ``lifespan`` protocol too: the receiver's ``start()`` on startup, ``close()`` on
shutdown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from typing import Final, Protocol

from multidict import CIMultiDict

from ..errors import ClientMisuseError, InvalidRequestError
from ._core import BodyChunks, WebhookReply, _Unreadable

__all__ = ("ASGIReceive", "ASGIScope", "ASGISend", "WebhookASGIApp", "receive_asgi")

ASGIScope = Mapping[str, object]
"""An ASGI connection scope (``scope["type"]`` is ``"http"``, ``"lifespan"``...)."""
ASGIReceive = Callable[[], Awaitable[Mapping[str, object]]]
"""The ASGI ``receive`` callable: the next event of the connection."""
ASGISend = Callable[[MutableMapping[str, object]], Awaitable[None]]
"""The ASGI ``send`` callable."""

_NOT_FOUND: Final = WebhookReply(404, "not found", {"Connection": "close"}, close=True)
_NOT_ALLOWED: Final = WebhookReply(
    405, "method not allowed", {"Allow": "POST", "Connection": "close"}, close=True
)


class _Receiver(Protocol):
    """What the app needs of a :class:`~d360calling.webhooks.WebhookReceiver`."""

    async def receive(
        self,
        headers: Mapping[str, str],
        body: bytes | BodyChunks,
        *,
        remote: str | None = None,
    ) -> WebhookReply: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class WebhookASGIApp:
    """``receiver.asgi(path)``: a webhook receiver as an ASGI 3 application.

    It answers ``POST`` at ``path`` (``None``: at every path) with the receiver, any other
    method there with 405, any other path with 404. The path is the one left once the
    ``root_path`` a mount (Starlette's ``Mount``, FastAPI's ``app.mount``) or the server set
    is taken off. It answers the ``lifespan`` protocol when a server runs it on its own
    (``uvicorn module:app``): the receiver's ``start()`` on startup (a state that cannot be
    reached fails the startup, with its reason), its ``close()`` on shutdown. A framework
    that mounts or routes to it does not pass the lifespan on: start and close the receiver
    from the framework's own. A websocket is closed at once.
    """

    def __init__(self, receiver: _Receiver, path: str | None = "/webhook") -> None:
        if path is not None and (not isinstance(path, str) or not path.startswith("/")):
            raise InvalidRequestError("path must start with '/' (or be None: every path)")
        self.receiver = receiver
        self.path = path

    def __repr__(self) -> str:
        return f"<WebhookASGIApp {self.path or '(every path)'}>"

    async def __call__(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        kind = scope.get("type")
        if kind == "http":
            await _send(send, await self._reply(scope, receive))
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1000})
        else:
            raise ClientMisuseError(
                f"the webhook ASGI app serves HTTP and the lifespan, not {kind!r:.40}"
            )

    async def _reply(self, scope: ASGIScope, receive: ASGIReceive) -> WebhookReply:
        if self.path is not None and _route_path(scope) != self.path:
            if scope.get("endpoint") is self:
                # A framework's Route sent it here (it matched the path itself) but this app
                # checks its own: say how to serve where the framework routes it.
                return WebhookReply(
                    404,
                    f"not found: this app serves {self.path} (receiver.asgi(None) serves "
                    "whatever path a framework routes to it)",
                    {"Connection": "close"},
                    close=True,
                )
            return _NOT_FOUND
        if scope.get("method") != "POST":
            return _NOT_ALLOWED
        return await receive_asgi(self.receiver, scope, receive)

    async def _lifespan(self, receive: ASGIReceive, send: ASGISend) -> None:
        # The protocol is two exchanges: startup, then shutdown.
        if (await receive()).get("type") != "lifespan.startup":
            return
        try:
            await self.receiver.start()
        except Exception as exc:
            await send({"type": "lifespan.startup.failed", "message": _text(exc)})
            return
        await send({"type": "lifespan.startup.complete"})
        if (await receive()).get("type") != "lifespan.shutdown":
            return
        try:
            await self.receiver.close()
        except Exception as exc:
            await send({"type": "lifespan.shutdown.failed", "message": _text(exc)})
            return
        await send({"type": "lifespan.shutdown.complete"})


async def receive_asgi(receiver: _Receiver, scope: ASGIScope, receive: ASGIReceive) -> WebhookReply:
    """``receiver.receive`` for one ASGI ``http`` request, its body read from ``receive``."""
    if scope.get("type") != "http":
        raise InvalidRequestError("receive_asgi takes the scope of an ASGI http request")
    return await receiver.receive(_headers(scope), _chunks(receive), remote=_remote(scope))


def _headers(scope: ASGIScope) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    raw = scope.get("headers")
    if isinstance(raw, (list, tuple)):
        for pair in raw:
            if isinstance(pair, (list, tuple)) and len(pair) == 2:
                name, value = pair
                if isinstance(name, (bytes, bytearray)) and isinstance(value, (bytes, bytearray)):
                    # ASGI headers are bytes; latin-1 maps each byte to one character, so a
                    # byte that is not ASCII is a plain mismatch for the secret, never an error.
                    headers.add(name.decode("latin-1"), value.decode("latin-1"))
    return headers


def _remote(scope: ASGIScope) -> str | None:
    client = scope.get("client")
    if isinstance(client, (list, tuple)) and client:
        return str(client[0])
    return None


def _route_path(scope: ASGIScope) -> str:
    """The request's path below its ``root_path`` (where it was mounted), as Starlette
    matches routes: ``/hooks/webhook`` under ``/hooks`` is ``/webhook``."""
    path = scope.get("path")
    path = path if isinstance(path, str) else ""
    root = scope.get("root_path")
    if not isinstance(root, str) or not root or not path.startswith(root):
        return path
    rest = path[len(root) :]
    return rest if not rest or rest.startswith("/") else path


async def _chunks(receive: ASGIReceive) -> AsyncIterator[bytes]:
    """The request's body as the server hands it over, until ``more_body`` is false."""
    while True:  # bounded by the receiver: max_body_bytes and body_timeout
        message = await receive()
        kind = message.get("type")
        if kind == "http.disconnect":
            raise ConnectionError("the client disconnected before its body arrived")
        body = message.get("body", b"")
        if kind != "http.request" or not isinstance(body, (bytes, bytearray)):
            raise _Unreadable(f"the server sent {kind!r:.40} where the body was expected")
        if body:
            yield bytes(body)
        if not message.get("more_body", False):
            return


async def _send(send: ASGISend, reply: WebhookReply) -> None:
    body = reply.body
    headers = [(b"content-length", str(len(body)).encode())]
    if body:
        headers.append((b"content-type", b"text/plain; charset=utf-8"))
    headers += [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in reply.headers.items()
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
