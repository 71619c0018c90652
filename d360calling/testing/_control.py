"""``/_fake/…``: the user's side over HTTP, for tests in other languages and for
``d360calling fake-server``. Not part of the real API, so not in the contract.

- ``GET /_fake/calls``: every call
- ``POST /_fake/calls`` ``{"from": "<wa_id>", "sdp"?, "name"?, "deeplink_payload"?}``: the
  user calls in
- ``POST /_fake/calls/{id}/answer`` (``{"sdp"?}``), ``…/decline``, ``…/hangup``
- ``POST /_fake/permissions/{wa_id}`` ``{"permanent"?: bool}``: the user allows calls

A body is optional where no field is required; a malformed one (not a JSON object, an unknown
field, a field of the wrong type, a ``wa_id`` that is not a phone number) answers 400 as the
API does. A scenario that cannot happen answers 409 ``{"error": "..."}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._calls import FakeCall
from ._enums import PermissionReplyResponse, PermissionReplySource
from ._errors import FakeAPIError, ScenarioError
from ._permissions import WA_ID
from ._routes import Incoming, allow, not_found
from ._world import FakeWorld

__all__ = (
    "CONTROL_PREFIX",
    "call_json",
    "control_route",
)

CONTROL_PREFIX = "/_fake/"
_OPTIONAL_TEXT = (str, type(None))
# Each call keeps its texts: an SDP as long as the API takes one, anything else shorter.
_MAX_CHARS = {"sdp": 65536}
_MAX_OTHER_CHARS = 1024


def call_json(call: FakeCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "direction": call.direction,
        "user": call.user,
        "state": call.state,
        "end_reason": call.end_reason,
        "actions": list(call.actions),
    }


def control_route(world: FakeWorld, request: Incoming) -> Any:
    method = request.method
    allow(method, "POST", "GET")
    parts = request.path.removeprefix(CONTROL_PREFIX).split("/")
    try:
        if parts == ["calls"] and method == "GET":
            with world.lock:
                return {"calls": [call_json(c) for c in world.calls.by_id.values()]}
        if parts == ["calls"]:
            data = _data(
                request,
                {
                    "from": (str,),
                    "sdp": _OPTIONAL_TEXT,
                    "name": _OPTIONAL_TEXT,
                    "deeplink_payload": _OPTIONAL_TEXT,
                },
            )
            if "from" not in data:
                raise FakeAPIError.invalid('from: POST /_fake/calls takes {"from": "<wa_id>"}')
            wa_id = _wa_id("from", data["from"])
            call = world.user_calls(
                wa_id, data.get("sdp"), data.get("name"), data.get("deeplink_payload")
            )
            return call_json(call)
        if len(parts) == 3 and parts[0] == "calls" and method == "POST":
            call_id, verb = parts[1], parts[2]
            if verb == "answer":
                sdp = _data(request, {"sdp": _OPTIONAL_TEXT}).get("sdp")
                return call_json(world.user_answers(call_id, sdp))
            if verb == "decline":
                _data(request, {})
                return call_json(world.user_declines(call_id))
            if verb == "hangup":
                _data(request, {})
                return call_json(world.user_hangs_up(call_id))
        if len(parts) == 2 and parts[0] == "permissions" and method == "POST":
            wa_id = _wa_id("wa_id", parts[1])
            permanent = _data(request, {"permanent": (bool,)}).get("permanent", False)
            world.set_permission(
                wa_id,
                PermissionReplyResponse.ACCEPT,
                permanent=permanent,
                source=PermissionReplySource.USER_ACTION,
                context_id=None,
                notify=True,
            )
            return {"success": True}
    except ScenarioError as exc:
        raise FakeAPIError.dialog(409, str(exc)) from None
    raise not_found(method, request.path)


def _wa_id(field: str, value: str) -> str:
    if not WA_ID.fullmatch(value):
        raise FakeAPIError.invalid(f"{field}: must be a WhatsApp ID (a phone number, digits)")
    return value


def _data(request: Incoming, fields: Mapping[str, tuple[type, ...]]) -> dict[str, Any]:
    """The body as a JSON object (``{}`` when there is none) with only ``fields``, each of
    one of its types."""
    data = request.json() if request.body else {}
    if not isinstance(data, dict):
        raise FakeAPIError.invalid("body: must be a JSON object")
    problems = []
    for name, value in data.items():
        types = fields.get(name)
        if types is None:
            problems.append(f"{name}: is not a field here")
        elif not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            kinds = " or ".join(_KINDS[t] for t in types)
            problems.append(f"{name}: must be {kinds}")
        elif isinstance(value, str) and len(value) > _MAX_CHARS.get(name, _MAX_OTHER_CHARS):
            problems.append(f"{name}: is longer than {_MAX_CHARS.get(name, _MAX_OTHER_CHARS)}")
    if problems:
        raise FakeAPIError.invalid("; ".join(problems))
    return data


_KINDS = {str: "a string", bool: "a boolean", type(None): "null"}
