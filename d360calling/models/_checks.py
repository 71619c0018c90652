"""attrs validators for what users put in requests; each failure is an InvalidRequestError,
raised when the request object is made, so nothing invalid can reach the wire."""

from __future__ import annotations

import re
from typing import Any

from .._constants import BIZ_OPAQUE_CALLBACK_DATA_MAX
from ..errors import InvalidRequestError

__all__ = (
    "check_whatsapp_id",
    "call_id",
    "opaque_data",
    "sdp_answer",
    "sdp_offer",
    "whatsapp_id",
)

# A WhatsApp id is the user's number in international form: digits only, no leading zero.
_WHATSAPP_ID = re.compile(r"\+?[1-9][0-9]{5,14}")
_WHITESPACE = re.compile(r"\s")


def check_whatsapp_id(value: Any, name: str) -> str:
    if not isinstance(value, str) or not _WHATSAPP_ID.fullmatch(value):
        raise InvalidRequestError(
            f"{name} must be a phone number in international format, digits only "
            f"(e.g. '4915112345678'), got {value!r:.40}"
        )
    return value


def whatsapp_id(_: object, attribute: Any, value: Any) -> None:
    check_whatsapp_id(value, attribute.name)


def call_id(_: object, __: Any, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequestError(f"call_id must be a non-empty string, got {value!r:.40}")
    if _WHITESPACE.search(value):
        raise InvalidRequestError(f"call_id must not contain whitespace, got {value!r:.40}")


def _sdp(value: Any, kind: str) -> None:
    if not isinstance(value, str):
        raise InvalidRequestError(f"sdp (the SDP {kind}) must be a str, got {type(value).__name__}")
    # RFC 8866: a session description starts with the protocol version line.
    if not value.startswith("v=0"):
        raise InvalidRequestError(
            f"sdp does not look like an SDP {kind}: it must start with 'v=0', got {value!r:.20}"
        )


def sdp_offer(_: object, __: Any, value: Any) -> None:
    _sdp(value, "offer")


def sdp_answer(_: object, __: Any, value: Any) -> None:
    _sdp(value, "answer")


def opaque_data(_: object, __: Any, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise InvalidRequestError(
            f"biz_opaque_callback_data must be a str, got {type(value).__name__}"
        )
    if len(value) > BIZ_OPAQUE_CALLBACK_DATA_MAX:
        raise InvalidRequestError(
            f"biz_opaque_callback_data is {len(value)} characters; "
            f"the API takes at most {BIZ_OPAQUE_CALLBACK_DATA_MAX}"
        )
