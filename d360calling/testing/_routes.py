"""The API's routes: ``/calling/calls``, ``/calling/permissions/{id}`` (a phone number or a
business-scoped id; ``/calling/permissions?recipient=`` too, as Meta's read takes it),
``/calling/settings`` and ``/messages`` (the messages of the calling workflow). Each body is
checked against the contract before the world sees it, so the world handles only
well-formed requests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ._contract import Contract
from ._errors import FakeAPIError
from ._jsonbody import BadJSON, parse
from ._world import FakeWorld

__all__ = (
    "Incoming",
    "PERMISSIONS_PREFIX",
    "allow",
    "api_route",
    "not_found",
)

PERMISSIONS_PREFIX = "/calling/permissions/"


@attrs.frozen
class Incoming:
    """What a route needs of a request (the handler has already read the body)."""

    method: str
    path: str
    query: Mapping[str, str]
    content_type: str
    body: bytes

    def json(self) -> Any:
        if not self.content_type.startswith("application/json"):
            raise FakeAPIError.invalid("Content-Type must be application/json")
        try:
            return parse(self.body)
        except BadJSON as exc:
            raise FakeAPIError.invalid(str(exc)) from None


def allow(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise FakeAPIError.dialog(405, f"Method {method} not allowed")


def not_found(method: str, path: str) -> FakeAPIError:
    return FakeAPIError.dialog(404, f"Not found: {method} {path}")


def api_route(world: FakeWorld, contract: Contract, request: Incoming) -> Any:
    """The answer to an API request; a refusal is raised as :class:`FakeAPIError`."""
    method, path = request.method, request.path
    if path == "/calling/calls":
        allow(method, "POST")
        return world.call_action(_valid_body(contract, request))
    if path.startswith(PERMISSIONS_PREFIX):
        allow(method, "GET")
        return world.permission_report(path.removeprefix(PERMISSIONS_PREFIX))
    if path == PERMISSIONS_PREFIX.rstrip("/"):
        allow(method, "GET")
        user = request.query.get("recipient", request.query.get("user_wa_id"))
        if user is None:
            raise FakeAPIError.invalid("recipient: is required (or the id in the path)")
        return world.permission_report(user)
    if path == "/calling/settings":
        allow(method, "GET", "POST")
        if method == "GET":
            return world.get_settings(_boolean(request.query, "include_sip_credentials"))
        return world.update_settings(_valid_body(contract, request))
    if path == "/messages":
        allow(method, "POST")
        return world.send_message(_valid_body(contract, request))
    raise not_found(method, path)


def _boolean(query: Mapping[str, str], name: str) -> bool:
    value = query.get(name, "false").lower()
    if value not in ("true", "false"):
        raise FakeAPIError.invalid(f"{name}: must be true or false")
    return value == "true"


def _valid_body(contract: Contract, request: Incoming) -> Any:
    body = request.json()
    contract.check(request.method, request.path, body)
    return body
