"""``/_fake/…``: the user's side over HTTP, for tests in other languages and for
``d360calling fake-server``. Not part of the real API, so not in the contract. A ``{user}``
is a phone number (digits) or a business-scoped user id (``US.1349…``).

- ``GET /_fake/calls``: every call
- ``POST /_fake/calls`` ``{"from": "<user>", "sdp"?, "name"?, "deeplink_payload"?,
  "cta_payload"?}``: the user calls in
- ``POST /_fake/calls/{id}/answer`` (``{"sdp"?}``), ``…/decline``, ``…/hangup``,
  ``…/ring-out`` (nobody answers: it times out now), ``…/voicemail`` (the caller leaves one)
- ``POST /_fake/permissions/{user}`` ``{"permanent"?: bool}``: the user allows calls from the
  business profile; ``…/grant`` (``{"permanent"?}``) and ``…/decline``: the user answers the
  newest permission request; ``…/revoke``: the user withdraws permission
- ``POST /_fake/users`` ``{"user": "<user>", "name"?, "old_client"?: bool}``: tell the fake
  about a user; answers the user with their business-scoped id
- ``GET /_fake/messages``: every message the business sent; ``POST /_fake/messages``
  ``{"from": "<user>", "text": "…"}``: the user writes (the 24-hour window opens);
  ``POST /_fake/messages/{id}/press`` (``{"sdp"?}``): the user taps a call button
- ``POST /_fake/templates`` ``{"name", "body_text", "language"?, "category"?,
  "header_text"?, "call_permission_request"?: bool}``: tell the fake about a template
- ``GET /_fake/media/{id}``: what the fake knows of a media id it sent (no bytes)

A body is optional where no field is required; a malformed one (not a JSON object, an unknown
field, a field of the wrong type, a user that is not a phone number or a business-scoped id)
answers 400 as the API does. A scenario that cannot happen answers 409 ``{"error": "..."}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._calls import FakeCall
from ._enums import PermissionReplyResponse, PermissionReplySource
from ._errors import FakeAPIError, ScenarioError
from ._identity import USER_ID_HINT, is_user_id
from ._messages import FakeMessage, FakeTemplate
from ._permissions import UserState
from ._routes import Incoming, allow, not_found
from ._world import MAX_USER_TEXT, FakeWorld

__all__ = (
    "CONTROL_PREFIX",
    "call_json",
    "control_route",
    "message_json",
    "user_json",
)

CONTROL_PREFIX = "/_fake/"
_OPTIONAL_TEXT = (str, type(None))
# What the fake keeps stays short: an SDP as long as the API takes one, a user's text as long
# as the fake lets one be, a template body as Meta bounds it, anything else shorter.
_MAX_CHARS = {"sdp": 65536, "text": MAX_USER_TEXT, "body_text": 1024, "cta_payload": 512}
_MAX_OTHER_CHARS = 1024


def call_json(call: FakeCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "direction": call.direction,
        "user": call.user,
        "state": call.state,
        "end_reason": call.end_reason,
        "actions": list(call.actions),
        "deeplink_payload": call.deeplink_payload,
        "cta_payload": call.cta_payload,
    }


def message_json(message: FakeMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "kind": str(message.kind),
        "user": message.user,
        "status": message.status,
        "error_code": message.error_code,
        "call_permission_request": message.call_permission_request,
        "template": message.template,
        "payload": message.payload,
    }


def user_json(user: UserState) -> dict[str, Any]:
    return {
        "wa_id": user.phone,
        "user_id": user.user_id,
        "name": user.name,
        "old_client": user.old_client,
        "permission": user.permission,
    }


def control_route(world: FakeWorld, request: Incoming) -> Any:
    method = request.method
    allow(method, "POST", "GET")
    parts = request.path.removeprefix(CONTROL_PREFIX).split("/")
    try:
        if method == "GET":
            return _read(world, parts, request)
        if parts == ["calls"]:
            data = _data(
                request,
                {
                    "from": (str,),
                    "sdp": _OPTIONAL_TEXT,
                    "name": _OPTIONAL_TEXT,
                    "deeplink_payload": _OPTIONAL_TEXT,
                    "cta_payload": _OPTIONAL_TEXT,
                },
                required=("from",),
            )
            call = world.user_calls(
                _user("from", data["from"]),
                data.get("sdp"),
                data.get("name"),
                data.get("deeplink_payload"),
                data.get("cta_payload"),
            )
            return call_json(call)
        if len(parts) == 3 and parts[0] == "calls":
            return _call_verb(world, parts[1], parts[2], request)
        if len(parts) in (2, 3) and parts[0] == "permissions":
            return _permission(world, _user("user", parts[1]), parts[2:], request)
        if parts == ["users"]:
            data = _data(
                request,
                {"user": (str,), "name": _OPTIONAL_TEXT, "old_client": (bool,)},
                required=("user",),
            )
            user = world.add_user(
                _user("user", data["user"]), data.get("name"), data.get("old_client")
            )
            return user_json(user)
        if parts == ["messages"]:
            data = _data(request, {"from": (str,), "text": (str,)}, required=("from", "text"))
            return {"id": world.user_sends_message(_user("from", data["from"]), data["text"])}
        if len(parts) == 3 and parts[0] == "messages" and parts[2] == "press":
            sdp = _data(request, {"sdp": _OPTIONAL_TEXT}).get("sdp")
            return call_json(world.user_presses_call_button(parts[1], sdp))
        if parts == ["templates"]:
            return _template(world, request)
    except ScenarioError as exc:
        raise FakeAPIError.dialog(409, str(exc)) from None
    raise not_found(method, request.path)


def _read(world: FakeWorld, parts: list[str], request: Incoming) -> Any:
    if parts == ["calls"]:
        with world.lock:
            return {"calls": [call_json(c) for c in world.calls.by_id.values()]}
    if parts == ["messages"]:
        with world.lock:
            return {"messages": [message_json(m) for m in world.messages.by_id.values()]}
    if len(parts) == 2 and parts[0] == "media":
        media = world.media(parts[1])
        if media is not None:
            return media
    raise not_found(request.method, request.path)


def _call_verb(world: FakeWorld, call_id: str, verb: str, request: Incoming) -> Any:
    if verb == "answer":
        sdp = _data(request, {"sdp": _OPTIONAL_TEXT}).get("sdp")
        return call_json(world.user_answers(call_id, sdp))
    if verb == "voicemail":
        _data(request, {})
        return {"media_id": world.user_leaves_voicemail(call_id)}
    actions = {
        "decline": world.user_declines,
        "hangup": world.user_hangs_up,
        "ring-out": world.user_lets_it_ring_out,
    }
    if verb not in actions:
        raise not_found(request.method, request.path)
    _data(request, {})
    return call_json(actions[verb](call_id))


def _permission(world: FakeWorld, user: str, verb: list[str], request: Incoming) -> Any:
    if verb in ([], ["grant"]):
        permanent = _data(request, {"permanent": (bool,)}).get("permanent", False)
        if verb == ["grant"]:
            request_id = world.reply_to_request(user, accept=True, permanent=permanent)
            return {"success": True, "context_id": request_id}
        world.set_permission(
            user,
            PermissionReplyResponse.ACCEPT,
            permanent=permanent,
            source=PermissionReplySource.USER_ACTION,
            context_id=None,
            notify=True,
        )
        return {"success": True}
    _data(request, {})
    if verb == ["decline"]:
        request_id = world.reply_to_request(user, accept=False, permanent=False)
        return {"success": True, "context_id": request_id}
    if verb == ["revoke"]:
        world.set_permission(
            user,
            PermissionReplyResponse.REJECT,
            permanent=False,
            source=PermissionReplySource.USER_ACTION,
            context_id=None,
            notify=True,
        )
        return {"success": True}
    raise not_found(request.method, request.path)


def _template(world: FakeWorld, request: Incoming) -> Any:
    data = _data(
        request,
        {
            "name": (str,),
            "body_text": (str,),
            "language": (str,),
            "category": (str,),
            "header_text": _OPTIONAL_TEXT,
            "call_permission_request": (bool,),
        },
        required=("name", "body_text"),
    )
    try:
        template = world.add_template(
            FakeTemplate(
                data["name"],
                data.get("language", "en_US"),
                data.get("category", "UTILITY"),
                data["body_text"],
                data.get("header_text"),
                data.get("call_permission_request", True),
            )
        )
    except ValueError as exc:
        raise FakeAPIError.invalid(str(exc)) from None
    return {"name": template.name, "language": template.language, "category": template.category}


def _user(field: str, value: str) -> str:
    if not is_user_id(value):
        raise FakeAPIError.invalid(f"{field}: must be {USER_ID_HINT}")
    return value


def _data(
    request: Incoming, fields: Mapping[str, tuple[type, ...]], required: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The body as a JSON object (``{}`` when there is none) with only ``fields``, each of
    one of its types, and every one of ``required``."""
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
    problems += [f"{name}: is required here" for name in required if name not in data]
    if problems:
        raise FakeAPIError.invalid("; ".join(problems))
    return data


_KINDS = {str: "a string", bool: "a boolean", type(None): "null"}
