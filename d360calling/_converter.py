"""Every wire rule of the API, in one place.

Decoding is tolerant: unknown keys are ignored, ``null`` means absent, enum values the API
adds later are kept as ``str``, numbers and booleans sent as strings are read, and the
documented alternative spellings (``expiration``, ``open_time``/``close_time``) are accepted.
The strict converter is the same but refuses unknown keys, so tests notice API drift.
Encoding omits fields the user did not set (``None``); call actions get their wire frame
(``messaging_product``, ``action``, the ``session`` around the SDP) around a cattrs-generated
encoding of their own fields, and messages (``POST /messages``) theirs: ``recipient_type``,
``to`` or ``recipient``, and the ``interactive`` or ``template`` object Meta's Cloud API
documents. :func:`check_types` holds an update's values to their declared types exactly,
before anything is sent (attrs does not check types).
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn

from .models.calls import (
    CALL_ACTION_REQUESTS,
    CallActionRequest,
    CallRecording,
    CallTranscription,
)
from .models.messages import (
    CallButtonMessage,
    CallPermissionRequestMessage,
    CallPermissionTemplateMessage,
    TemplateParameter,
)
from .models.permissions import CallPermission
from .models.settings import HolidaySchedule, SettingsUpdate
from .models.webhooks import CallConnectEvent, CallStatusEvent, CallTerminateEvent

__all__ = ("check_types", "decode", "decode_errors", "encode", "make_converter")

T = TypeVar("T")

# Documented alternative key -> the field it fills (when the field's own key is absent).
_ALIASES: dict[type, dict[str, str]] = {
    CallPermission: {"expiration": "expiration_time"},
    HolidaySchedule: {"open_time": "start_time", "close_time": "end_time"},
    CallConnectEvent: {"id": "call_id", "from": "from_"},
    CallStatusEvent: {"id": "call_id"},
    CallTerminateEvent: {"id": "call_id", "from": "from_"},
}
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def make_converter(*, strict: bool = False, exact: bool = False) -> cattrs.Converter:
    """Build a converter with every hook registered (cattrs caches hooks on first use).

    ``exact`` takes scalars only as their own type (no ``"true"`` for a bool, no number for a
    str): for checking what a user built, not for reading what the API sent."""
    conv = cattrs.Converter(forbid_extra_keys=strict)
    if exact:
        conv.register_structure_hook(str, _exact(str))
        conv.register_structure_hook(int, _exact(int))
        conv.register_structure_hook(bool, _exact(bool))
    else:
        conv.register_structure_hook(str, _structure_str)
        conv.register_structure_hook(int, _structure_int)
        conv.register_structure_hook(bool, _structure_bool)
    # ``object``: a field that keeps whatever JSON the API sent (e.g. an error's error_data).
    # (By predicate: a hook registered for the class would match every subclass of object.)
    conv.register_structure_hook_func(lambda tp: tp is object, lambda value, _: value)
    conv.register_structure_hook_factory(_is_open_enum, _open_enum_hook)
    conv.register_structure_hook_factory(_is_scalar_union, _scalar_union_hook)
    conv.register_structure_hook_factory(attrs.has, lambda cls: _object_hook(conv, cls, strict))
    conv.register_unstructure_hook_factory(
        attrs.has, lambda cls: make_dict_unstructure_fn(cls, conv, _cattrs_omit_if_default=True)
    )
    conv.register_unstructure_hook_factory(_is_open_enum, lambda _: _unstructure_open_enum)
    for options_cls in (CallRecording, CallTranscription):
        # Every field that is set, defaults included: status ENABLED is the default and
        # must still be sent. (Before the call actions: their hooks are generated now.)
        conv.register_unstructure_hook(options_cls, _set_fields_hook(conv, options_cls))
    for request_cls in CALL_ACTION_REQUESTS:
        conv.register_unstructure_hook(request_cls, _call_action_hook(conv, request_cls))
    conv.register_unstructure_hook(CallPermissionRequestMessage, _permission_request_wire)
    conv.register_unstructure_hook(CallPermissionTemplateMessage, _permission_template_wire)
    conv.register_unstructure_hook(CallButtonMessage, _call_button_wire)
    conv.register_unstructure_hook(
        SettingsUpdate, lambda update: {"calling": {update.feature: conv.unstructure(update.value)}}
    )
    return conv


def _object_hook(conv: cattrs.Converter, cls: type[T], strict: bool) -> Callable[[Any, Any], T]:
    generated = make_dict_structure_fn(cls, conv, _cattrs_forbid_extra_keys=strict)
    aliases = _ALIASES.get(cls)

    def structure(data: Any, _: Any) -> T:
        if not isinstance(data, Mapping):
            raise TypeError(f"expected a JSON object for {cls.__name__}, got {_kind(data)}")
        if aliases or None in data.values():
            data = {key: value for key, value in data.items() if value is not None}
            for alias, field in (aliases or {}).items():
                if alias in data and field not in data:
                    data[field] = data.pop(alias)
        return generated(data, cls)

    return structure


def _call_action_hook(
    conv: cattrs.Converter, cls: type[CallActionRequest]
) -> Callable[[Any], dict[str, Any]]:
    fields = make_dict_unstructure_fn(cls, conv, _cattrs_omit_if_default=True)
    frame = {"messaging_product": "whatsapp", "action": cls.action.value}
    sdp_type = None if cls.sdp_type is None else cls.sdp_type.value

    def unstructure(request: Any) -> dict[str, Any]:
        wire = {**frame, **fields(request)}
        if sdp_type is not None:
            wire["session"] = {"sdp_type": sdp_type, "sdp": wire.pop("sdp")}
        return wire

    return unstructure


def _set_fields_hook(conv: cattrs.Converter, cls: type) -> Callable[[Any], dict[str, Any]]:
    fields: Callable[[Any], dict[str, Any]] = make_dict_unstructure_fn(cls, conv)

    def unstructure(obj: Any) -> dict[str, Any]:
        return {
            key: value.value if isinstance(value, enum.Enum) else value
            for key, value in fields(obj).items()
            if value is not None
        }

    return unstructure


# -- messages (POST /messages; Meta's Cloud API bodies, api-facts §3.2, api-2026 §1-2) ----------


def _message_frame(
    message: CallPermissionRequestMessage | CallPermissionTemplateMessage | CallButtonMessage,
    kind: str,
) -> dict[str, Any]:
    wire: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual"}
    # A business-scoped id goes out as "recipient" (never both: the API would let "to" win).
    if message.to is not None:
        wire["to"] = message.to
    else:
        wire["recipient"] = message.recipient
    wire["type"] = kind
    return wire


def _permission_request_wire(message: CallPermissionRequestMessage) -> dict[str, Any]:
    interactive: dict[str, Any] = {
        "type": "call_permission_request",
        "action": {"name": "call_permission_request"},
    }
    if message.body is not None:
        interactive["body"] = {"text": message.body}
    return {**_message_frame(message, "interactive"), "interactive": interactive}


def _template_parameters(parameters: tuple[TemplateParameter, ...]) -> list[dict[str, str]]:
    wire = []
    for parameter in parameters:
        item = {"type": "text", "text": parameter.text}
        if parameter.name is not None:
            item["parameter_name"] = parameter.name
        wire.append(item)
    return wire


def _permission_template_wire(message: CallPermissionTemplateMessage) -> dict[str, Any]:
    # A template message names the template and fills its variables; the
    # call_permission_request component belongs to the template as created, so the send
    # carries no component for it (Meta: "send it as a normal template message").
    template: dict[str, Any] = {"name": message.template, "language": {"code": message.language}}
    components = []
    if message.header_parameters:
        components.append(
            {"type": "header", "parameters": _template_parameters(message.header_parameters)}
        )
    if message.body_parameters:
        components.append(
            {"type": "body", "parameters": _template_parameters(message.body_parameters)}
        )
    if components:
        template["components"] = components
    return {**_message_frame(message, "template"), "template": template}


def _call_button_wire(message: CallButtonMessage) -> dict[str, Any]:
    parameters: dict[str, Any] = {"display_text": message.display_text}
    if message.ttl_minutes is not None:
        parameters["ttl_minutes"] = message.ttl_minutes
    if message.payload is not None:
        parameters["payload"] = message.payload
    interactive = {
        "type": "voice_call",
        "body": {"text": message.body},
        "action": {"name": "voice_call", "parameters": parameters},
    }
    return {**_message_frame(message, "interactive"), "interactive": interactive}


def _exact(cls: type) -> Callable[[Any, Any], Any]:
    def structure(value: Any, _: Any) -> Any:
        if isinstance(value, cls) and (cls is bool or not isinstance(value, bool)):
            return value
        raise TypeError(f"expected {cls.__name__}, got {_kind(value)} {value!r:.40}")

    return structure


def _structure_str(value: Any, _: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # ids sometimes arrive as numbers
    raise TypeError(f"expected a string, got {_kind(value)}")


def _structure_int(value: Any, _: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise TypeError(f"expected an integer, got {_kind(value)} {value!r:.40}")


def _structure_bool(value: Any, _: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        folded = value.strip().lower()
        if folded in _TRUE:
            return True
        if folded in _FALSE:
            return False
    raise TypeError(f"expected a boolean, got {_kind(value)} {value!r:.40}")


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    """The members of a union other than ``None``; ``None`` if ``tp`` is not a union."""
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return tuple(arg for arg in typing.get_args(tp) if arg is not type(None))
    return None


def _is_open_enum(tp: Any) -> bool:
    """``SomeEnum | str``: an enum that keeps values it does not know."""
    args = _union_args(tp)
    return (
        args is not None
        and len(args) == 2
        and str in args
        and any(isinstance(a, type) and issubclass(a, enum.Enum) for a in args)
    )


def _open_enum_hook(tp: Any) -> Callable[[Any, Any], Any]:
    (enum_cls,) = (a for a in _union_args(tp) or () if a is not str)
    by_value = {member.value: member for member in enum_cls}
    by_folded = {str(member.value).casefold(): member for member in enum_cls}

    def structure(value: Any, _: Any) -> Any:
        if not isinstance(value, str):
            if value is None:  # reached only through an Optional member: null is absent
                return None
            raise TypeError(f"expected a string, got {_kind(value)}")
        member = by_value.get(value)
        if member is None:
            member = by_folded.get(value.casefold())
        return value if member is None else member

    return structure


def _unstructure_open_enum(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def _is_scalar_union(tp: Any) -> bool:
    args = _union_args(tp)
    return args is not None and set(args) == {int, str}


def _scalar_union_hook(tp: Any) -> Callable[[Any, Any], Any]:
    def structure(value: Any, _: Any) -> Any:
        if (isinstance(value, (int, str)) and not isinstance(value, bool)) or value is None:
            return value
        raise TypeError(f"expected an integer or a string, got {_kind(value)}")

    return structure


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", type(None): "null"}.get(
        type(value), type(value).__name__
    )


_TOLERANT = make_converter()
_STRICT = make_converter(strict=True)
_EXACT = make_converter(strict=True, exact=True)


def decode(cls: type[T], data: Any, *, strict: bool = False) -> T:
    """Structure parsed JSON into ``cls``; raises cattrs' errors (see :func:`decode_errors`)."""
    return (_STRICT if strict else _TOLERANT).structure(data, cls)


def encode(obj: Any) -> Any:
    """Unstructure a model into JSON-ready data, leaving out fields that are ``None``."""
    return _TOLERANT.unstructure(obj)


def check_types(obj: Any, where: str) -> str | None:
    """What in ``obj`` (an attrs model a user built) does not have its declared type, as
    ``where.field.sub: problem``; ``None`` when it all fits. Checked by decoding its own
    encoding with the exact converter, so the wire rules stay in this one module."""
    try:
        _EXACT.structure(_TOLERANT.unstructure(obj), type(obj))
    except (cattrs.BaseValidationError, TypeError, ValueError, KeyError) as exc:
        if isinstance(exc, cattrs.BaseValidationError):
            return "; ".join(cattrs.transform_error(exc, path=where))
        return f"{where}: {exc}"
    return None


def decode_errors(exc: BaseException) -> str:
    """One line naming every problem in a failed :func:`decode`, with the path to each field."""
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc, path="body"))
    return str(exc)
