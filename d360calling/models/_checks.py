"""attrs validators for what users put in requests; each failure is an InvalidRequestError,
raised when the request object is made, so nothing invalid can reach the wire."""

from __future__ import annotations

import re
from typing import Any

from .._constants import BIZ_OPAQUE_CALLBACK_DATA_MAX
from ..errors import InvalidRequestError

__all__ = (
    "call_id",
    "check_business_scoped_id",
    "check_language",
    "check_text",
    "check_user_id",
    "check_whatsapp_id",
    "is_business_scoped_id",
    "opaque_data",
    "optional_business_scoped_id",
    "optional_whatsapp_id",
    "sdp_answer",
    "sdp_offer",
    "whatsapp_id",
)

# A WhatsApp id is the user's number in international form: digits only, no leading zero.
_WHATSAPP_ID = re.compile(r"\+?[1-9][0-9]{5,14}")
# A business-scoped user id (api-2026 §5): an ISO-3166 country code, then digits
# (``US.13491208655302741918``), or a parent id with ``ENT`` between them
# (``US.ENT.11815799212886844830``). The digits seen are 19-20 long; the bounds are loose.
_BUSINESS_SCOPED_ID = re.compile(r"[A-Z]{2}\.(?:ENT\.)?[0-9]{1,40}", re.ASCII)
# Meta's language codes: "en", "fil", "en_US", "pt_BR".
_LANGUAGE = re.compile(r"[a-z]{2,3}(?:_[A-Z]{2})?", re.ASCII)
_WHITESPACE = re.compile(r"\s")


def check_whatsapp_id(value: Any, name: str) -> str:
    if not isinstance(value, str) or not _WHATSAPP_ID.fullmatch(value):
        hint = " (a business-scoped id goes in 'recipient')" if is_business_scoped_id(value) else ""
        raise InvalidRequestError(
            f"{name} must be a phone number in international format, digits only "
            f"(e.g. '4915112345678'){hint}, got {value!r:.40}"
        )
    return value


def is_business_scoped_id(value: Any) -> bool:
    """``value`` is a business-scoped user id (``US.1349…`` or ``US.ENT.1181…``)."""
    return isinstance(value, str) and _BUSINESS_SCOPED_ID.fullmatch(value) is not None


def check_business_scoped_id(value: Any, name: str) -> str:
    if not is_business_scoped_id(value):
        raise InvalidRequestError(
            f"{name} must be a business-scoped user id such as 'US.13491208655302741918' or "
            f"'US.ENT.11815799212886844830', got {value!r:.40}"
        )
    return str(value)


def check_user_id(value: Any, name: str) -> str:
    """A WhatsApp user as the API takes one: a phone number (digits, an optional leading
    ``+``) or a business-scoped user id."""
    if is_business_scoped_id(value) or (isinstance(value, str) and _WHATSAPP_ID.fullmatch(value)):
        return str(value)
    raise InvalidRequestError(
        f"{name} must be a phone number in international format, digits only "
        "(e.g. '4915112345678'), or a business-scoped user id (e.g. "
        f"'US.13491208655302741918'), got {value!r:.40}"
    )


def check_language(value: Any, name: str) -> str:
    if not isinstance(value, str) or not _LANGUAGE.fullmatch(value):
        raise InvalidRequestError(
            f"{name} must be a language code such as 'en' or 'en_US', got {value!r:.40}"
        )
    return value


def check_text(value: Any, name: str, maximum: int) -> str:
    """A text the user sees: a ``str`` with something besides white space, at most
    ``maximum`` characters."""
    if not isinstance(value, str):
        raise InvalidRequestError(f"{name} must be a str, got {type(value).__name__}")
    if not value.strip():
        raise InvalidRequestError(f"{name} must not be empty")
    if len(value) > maximum:
        raise InvalidRequestError(
            f"{name} is {len(value)} characters; the API takes at most {maximum}"
        )
    return value


def whatsapp_id(_: object, attribute: Any, value: Any) -> None:
    check_whatsapp_id(value, attribute.name)


def optional_whatsapp_id(_: object, attribute: Any, value: Any) -> None:
    if value is not None:
        check_whatsapp_id(value, attribute.name)


def optional_business_scoped_id(_: object, attribute: Any, value: Any) -> None:
    if value is not None:
        check_business_scoped_id(value, attribute.name)


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
