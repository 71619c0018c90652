"""Calling deep links: ``https://wa.me/call/<business number>``, a link that starts a WhatsApp
call to the business when a user opens it on a phone."""

from __future__ import annotations

import urllib.parse

from .errors import InvalidRequestError
from .models._checks import check_whatsapp_id

__all__ = ("DEEPLINK_PAYLOAD_MAX", "call_link")

# Meta documents no bound for a deep link's payload; the call button's payload (which it
# mirrors as cta_payload) takes 512 characters, and so does this one.
DEEPLINK_PAYLOAD_MAX = 512


def call_link(business_number: str, *, payload: str | None = None) -> str:
    """The deep link that calls ``business_number`` (the business's phone number, digits with
    an optional ``+``), e.g. for a website, an e-mail or a QR code.

    ``payload`` (at most 512 characters) is sent as Meta's ``biz_payload`` query parameter
    and comes back as ``deeplink_payload`` on the call's connect and terminate webhooks
    (WhatsApp 2.25.27 and later). Deep links do not work in WhatsApp's desktop clients.
    """
    number = check_whatsapp_id(business_number, "business_number").lstrip("+")
    link = f"https://wa.me/call/{number}"
    if payload is None:
        return link
    if not isinstance(payload, str):
        raise InvalidRequestError(f"payload must be a str, got {type(payload).__name__}")
    if not payload:
        raise InvalidRequestError("payload must not be empty (leave it out instead)")
    if len(payload) > DEEPLINK_PAYLOAD_MAX:
        raise InvalidRequestError(
            f"payload is {len(payload)} characters; at most {DEEPLINK_PAYLOAD_MAX} are taken"
        )
    try:
        encoded = urllib.parse.quote(payload, safe="")
    except UnicodeEncodeError:  # a lone surrogate has no UTF-8 form
        raise InvalidRequestError("payload must be text that UTF-8 can encode") from None
    return f"{link}?biz_payload={encoded}"
