"""``/_fake/…``: the user's side over HTTP, for tests in other languages and for
``d360calling fake-server``. Not part of the real API, so not in the contract.

- ``GET /_fake/calls``: every call
- ``POST /_fake/calls`` ``{"from": "<wa_id>", "sdp"?, "name"?}``: the user calls in
- ``POST /_fake/calls/{id}/answer|decline|hangup``
- ``POST /_fake/permissions/{wa_id}`` ``{"permanent"?: bool}``: the user allows calls

A scenario that cannot happen answers 409 ``{"error": "..."}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._calls import FakeCall
from ._enums import PermissionReplyResponse, PermissionReplySource
from ._errors import FakeAPIError, ScenarioError
from ._routes import Incoming, allow, not_found
from ._world import FakeWorld

__all__ = (
    "CONTROL_PREFIX",
    "call_json",
    "control_route",
)

CONTROL_PREFIX = "/_fake/"


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
            data = _data(request)
            wa_id = data.get("from")
            if not isinstance(wa_id, str):
                raise FakeAPIError.invalid('from: POST /_fake/calls takes {"from": "<wa_id>"}')
            return call_json(world.user_calls(wa_id, data.get("sdp"), data.get("name"), None))
        if len(parts) == 3 and parts[0] == "calls" and method == "POST":
            verbs: dict[str, Callable[[str], FakeCall]] = {
                "answer": lambda call_id: world.user_answers(call_id, None),
                "decline": world.user_declines,
                "hangup": world.user_hangs_up,
            }
            if parts[2] in verbs:
                return call_json(verbs[parts[2]](parts[1]))
        if len(parts) == 2 and parts[0] == "permissions" and method == "POST":
            world.set_permission(
                parts[1],
                PermissionReplyResponse.ACCEPT,
                permanent=bool(_data(request).get("permanent", False)),
                source=PermissionReplySource.USER_ACTION,
                context_id=None,
                notify=True,
            )
            return {"success": True}
    except ScenarioError as exc:
        raise FakeAPIError.dialog(409, str(exc)) from None
    raise not_found(method, request.path)


def _data(request: Incoming) -> dict[str, Any]:
    data = request.json() if request.body else {}
    if not isinstance(data, dict):
        raise FakeAPIError.invalid("body: must be a JSON object")
    return data
