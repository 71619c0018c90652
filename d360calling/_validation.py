"""Checks on user input, run before anything is sent. Each failure is an InvalidRequestError."""

from __future__ import annotations

import functools
import math
import re
import types
import typing
from typing import Any

import attrs
import yarl

from ._constants import BIZ_OPAQUE_CALLBACK_DATA_MAX, MAX_RETRIES_LIMIT
from .errors import InvalidRequestError
from .models._enums import CallAction
from .models.calls import SDP_TYPE_FOR_ACTION, CallActionRequest
from .models.settings import CallingSettings

__all__ = (
    "check_base_url",
    "check_call_action",
    "check_max_retries",
    "check_seconds",
    "check_settings_update",
    "check_whatsapp_id",
)

# A WhatsApp id is the user's number in international form: digits only, no leading zero.
_WHATSAPP_ID = re.compile(r"\+?[1-9][0-9]{5,14}")
_WHITESPACE = re.compile(r"\s")
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
# A dict lookup instead of CallAction(value): this runs for every call action.
_CALL_ACTIONS = {action.value: action for action in CallAction}
_BIZ_OPAQUE_ACTIONS = frozenset({CallAction.CONNECT, CallAction.ACCEPT})


def check_whatsapp_id(value: Any, name: str) -> str:
    if not isinstance(value, str) or not _WHATSAPP_ID.fullmatch(value):
        raise InvalidRequestError(
            f"{name} must be a phone number in international format, digits only "
            f"(e.g. '4915112345678'), got {value!r:.40}"
        )
    return value


def _check_call_id(value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequestError(f"call_id must be a non-empty string, got {value!r:.40}")
    if _WHITESPACE.search(value):
        raise InvalidRequestError(f"call_id must not contain whitespace, got {value!r:.40}")


def _check_sdp(value: Any, action: CallAction) -> None:
    kind = SDP_TYPE_FOR_ACTION[action].value
    if value is None:
        raise InvalidRequestError(f"{action.value} needs sdp (the SDP {kind})")
    if not isinstance(value, str):
        raise InvalidRequestError(f"sdp must be a str, got {type(value).__name__}")
    # RFC 8866: a session description starts with the protocol version line.
    if not value.startswith("v=0"):
        raise InvalidRequestError(
            f"sdp does not look like an SDP {kind}: it must start with 'v=0', got {value!r:.20}"
        )


def check_call_action(request: CallActionRequest) -> CallAction:
    """Validate ``request`` for its action; returns the action as a :class:`CallAction`."""
    given = request.action
    action = _CALL_ACTIONS.get(given) if isinstance(given, str) else None
    if action is None:
        known = ", ".join(a.value for a in CallAction)
        raise InvalidRequestError(f"unknown call action {given!r:.40}; expected one of: {known}")
    if action is CallAction.CONNECT:
        check_whatsapp_id(request.to, "to")
        if request.call_id is not None:
            raise InvalidRequestError("connect creates a call: it takes 'to', not call_id")
    else:
        _check_call_id(request.call_id)
        if request.to is not None:
            raise InvalidRequestError(f"{action.value} acts on call_id; 'to' is for connect only")
    if action in SDP_TYPE_FOR_ACTION:
        _check_sdp(request.sdp, action)
    elif request.sdp is not None:
        raise InvalidRequestError(f"{action.value} takes no sdp")
    data = request.biz_opaque_callback_data
    if data is not None:
        if action not in _BIZ_OPAQUE_ACTIONS:
            raise InvalidRequestError(
                "biz_opaque_callback_data is accepted on connect and accept only"
            )
        if not isinstance(data, str):
            raise InvalidRequestError("biz_opaque_callback_data must be a str")
        if len(data) > BIZ_OPAQUE_CALLBACK_DATA_MAX:
            raise InvalidRequestError(
                f"biz_opaque_callback_data is {len(data)} characters; "
                f"the API takes at most {BIZ_OPAQUE_CALLBACK_DATA_MAX}"
            )
    return action


def check_settings_update(calling: Any) -> None:
    """The API takes exactly one feature of ``calling`` per update request."""
    if not isinstance(calling, CallingSettings):
        raise InvalidRequestError(
            f"calling must be a CallingSettings, got {type(calling).__name__}"
        )
    features = [
        f.name for f in attrs.fields(CallingSettings) if getattr(calling, f.name) is not None
    ]
    for read_only in ("restrictions", "ip_addresses"):
        if read_only in features:
            raise InvalidRequestError(f"calling.{read_only} is read-only and cannot be updated")
    if not features:
        raise InvalidRequestError("update_settings needs one feature of calling to change")
    if len(features) > 1:
        raise InvalidRequestError(
            "the API takes one feature per settings update; got "
            f"{', '.join(features)}: send them in separate update_settings calls"
        )
    problem = _type_problem(calling, CallingSettings, "calling")
    if problem is not None:
        raise InvalidRequestError(problem)


def _type_problem(value: Any, annotation: Any, where: str) -> str | None:
    """What in ``value`` does not fit ``annotation`` (``None``: it all fits). attrs does not
    check types, so ``CallingSettings(status=False)`` would otherwise be sent as it is."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        if value is None:
            return None
        arms = [arm for arm in typing.get_args(annotation) if arm is not type(None)]
        problems = [_type_problem(value, arm, where) for arm in arms]
        if None in problems:
            return None
        for arm, problem in zip(arms, problems, strict=True):
            kind = typing.get_origin(arm) or arm
            kinds = (tuple, list) if kind is tuple else kind  # a list does for a tuple
            if isinstance(kind, type) and isinstance(value, kinds):
                return problem  # the right kind of thing, wrong inside: say where
        return f"{where} must be {' or '.join(map(_name, arms))}, got {value!r:.40}"
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            return f"{where} must be a tuple, got {value!r:.40}"
        item = typing.get_args(annotation)[0]
        found = (_type_problem(v, item, f"{where}[{i}]") for i, v in enumerate(value))
        return next((p for p in found if p is not None), None)
    if origin is dict:
        if not isinstance(value, dict):
            return f"{where} must be a dict, got {value!r:.40}"
        key_type, value_type = typing.get_args(annotation)
        for key, item in value.items():
            problem = _type_problem(key, key_type, f"{where} key") or _type_problem(
                item, value_type, f"{where}[{key!r}]"
            )
            if problem is not None:
                return problem
        return None
    if attrs.has(annotation):
        if not isinstance(value, annotation):
            return f"{where} must be a {annotation.__name__}, got {value!r:.40}"
        for name, field_type in _field_types(annotation).items():
            problem = _type_problem(getattr(value, name), field_type, f"{where}.{name}")
            if problem is not None:
                return problem
        return None
    if annotation is int and isinstance(value, bool):
        return f"{where} must be int, got {value!r}"
    if isinstance(annotation, type) and not isinstance(value, annotation):
        return f"{where} must be {annotation.__name__}, got {value!r:.40}"
    return None


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    # The models use postponed annotations: resolve them once per class.
    return typing.get_type_hints(cls)


def _name(annotation: Any) -> str:
    return getattr(annotation, "__name__", str(annotation))


def check_seconds(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequestError(f"{name} must be a number of seconds, got {value!r:.40}")
    if not math.isfinite(value) or value <= 0:
        raise InvalidRequestError(f"{name} must be a positive, finite number of seconds")
    return float(value)


def check_max_retries(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestError(f"max_retries must be an int, got {value!r:.40}")
    if not 0 <= value <= MAX_RETRIES_LIMIT:
        raise InvalidRequestError(f"max_retries must be between 0 and {MAX_RETRIES_LIMIT}")
    return value


def check_base_url(value: Any) -> str:
    """HTTPS, or plain HTTP to a loopback host only: the API key must not cross a network
    in clear text."""
    if not isinstance(value, str):
        raise InvalidRequestError(f"base_url must be a str, got {type(value).__name__}")
    try:
        url = yarl.URL(value)
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(f"base_url is not a URL: {value!r:.80}") from exc
    if not url.absolute or not url.host:
        raise InvalidRequestError(f"base_url must be an absolute URL, got {value!r:.80}")
    if url.query_string or url.fragment or url.user or url.password:
        raise InvalidRequestError("base_url must not carry a query, fragment or credentials")
    if url.scheme == "http":
        if url.host not in _LOOPBACK_HOSTS and not url.host.startswith("127."):
            raise InvalidRequestError(
                "base_url uses plain http:// to a non-loopback host; the API key would be "
                "sent unencrypted. Use https://"
            )
    elif url.scheme != "https":
        raise InvalidRequestError(f"base_url must be https://, got scheme {url.scheme!r}")
    return str(url).rstrip("/")
