"""Who a user is, to the fake: a phone number (a WhatsApp ID) and a business-scoped user id
(BSUID, api-2026 §5), or a BSUID alone for a user the business knows only by it.

Since April 2026 webhooks carry the BSUID next to the phone number, and a user with a username
may come with no phone number at all. The fake gives each phone user a BSUID of its own,
derived from the number and the business (so it is stable, and business-scoped), and accepts
either id wherever a user is addressed.
"""

from __future__ import annotations

import hashlib
import re

import attrs

__all__ = (
    "BSUID",
    "FakeUser",
    "USER_ID_HINT",
    "WA_ID",
    "derive_bsuid",
    "is_bsuid",
    "is_user_id",
    "is_wa_id",
)

# A WhatsApp ID as the API takes one: the phone number in international format, digits only
# (a leading "+" is tolerated).
WA_ID = re.compile(r"^\+?[0-9]{6,15}$", re.ASCII)
# ``US.13491208655302741918``, or a parent id ``US.ENT.11815799212886844830``; the digits seen
# are 19-20 long, the bound is loose (the client's check takes the same).
BSUID = re.compile(r"^[A-Z]{2}\.(?:ENT\.)?[0-9]{1,40}$", re.ASCII)
USER_ID_HINT = "a phone number (digits) or a business-scoped user id (e.g. 'US.1349…')"

# The ISO country of a few calling codes, for the BSUIDs the fake makes; others get "ZZ".
# Nothing depends on it being right: a BSUID is opaque to the business.
_COUNTRIES = {
    "1": "US",
    "7": "RU",
    "20": "EG",
    "27": "ZA",
    "31": "NL",
    "33": "FR",
    "34": "ES",
    "39": "IT",
    "44": "GB",
    "49": "DE",
    "52": "MX",
    "55": "BR",
    "61": "AU",
    "62": "ID",
    "81": "JP",
    "86": "CN",
    "90": "TR",
    "91": "IN",
    "234": "NG",
    "971": "AE",
}


@attrs.frozen
class FakeUser:
    """A user as the fake knows them: phone number (``None`` for a user known only by their
    business-scoped id), business-scoped id, profile name, and whether their WhatsApp is too
    old for call-permission and call-button messages."""

    wa_id: str | None
    user_id: str
    name: str | None = None
    old_client: bool = False


def is_wa_id(value: str) -> bool:
    return WA_ID.fullmatch(value) is not None


def is_bsuid(value: str) -> bool:
    return BSUID.fullmatch(value) is not None


def is_user_id(value: str) -> bool:
    return is_wa_id(value) or is_bsuid(value)


def derive_bsuid(wa_id: str, business: str) -> str:
    """The BSUID the fake gives the phone user ``wa_id`` of ``business``: 20 digits from a
    hash of both, after the country of the number."""
    number = wa_id.lstrip("+")
    country = next((_COUNTRIES[number[:n]] for n in (3, 2, 1) if number[:n] in _COUNTRIES), "ZZ")
    digest = hashlib.sha256(f"{business}:{number}".encode()).digest()
    return f"{country}.{int.from_bytes(digest[:9], 'big') % 10**20:020d}"
