"""The number's calling settings (api-facts §4): what ``GET /calling/settings`` answers, how a
``POST`` changes it, and the rules of an update the contract cannot state (they compare
values with each other or with today). The contract has already checked shapes and values.
Not thread-safe on its own: the world calls it under its lock."""

from __future__ import annotations

import copy
import secrets
from datetime import datetime, timezone
from typing import Any

from ._errors import FakeAPIError

__all__ = (
    "DEFAULT_SIP_PORT",
    "Settings",
    "default_settings",
)

DEFAULT_SIP_PORT = 5061


def default_settings() -> dict[str, Any]:
    return {
        "calling": {
            "status": "ENABLED",
            "call_icon_visibility": "DEFAULT",
            "call_icons": {"restrict_to_user_countries": []},
            "callback_permission_status": "DISABLED",
            "call_hours": {"status": "DISABLED"},
            "sip": {"status": "DISABLED", "servers": []},
            "srtp_key_exchange_protocol": "DTLS",
            "audio": {"additional_codecs": []},
            "restrictions": {"restrictions_list": []},
        },
        "payload_encryption": {"status": "DISABLED"},
        "storage_configuration": {"status": "DEFAULT"},
    }


class Settings:
    def __init__(self) -> None:
        self.stored = default_settings()

    @property
    def _calling(self) -> dict[str, Any]:
        calling: dict[str, Any] = self.stored["calling"]
        return calling

    # -- what other ideas ask of the settings -------------------------------------------

    @property
    def sip_enabled(self) -> bool:
        return bool(self._calling.get("sip", {}).get("status") == "ENABLED")

    @property
    def calling_enabled(self) -> bool:
        return bool(self._calling.get("status") == "ENABLED")

    @property
    def needs_fingerprint(self) -> bool:
        """DTLS numbers need a fingerprint in every SDP; SDES numbers do not."""
        return bool(self._calling.get("srtp_key_exchange_protocol", "DTLS") == "DTLS")

    @property
    def callback_permission(self) -> bool:
        return bool(self._calling.get("callback_permission_status") == "ENABLED")

    @property
    def sip_webhooks(self) -> bool:
        """SIP's own webhooks (``call_created``, ``terminate``) are on (api-facts §2.6)."""
        return self.sip_enabled and self._calling["sip"].get("webhook_delivery") == "ENABLED"

    def voicemail_on(self, trigger: str) -> bool:
        """Voicemail is on for ``trigger`` (``REJECT``: the business rejected the call;
        ``TIMEOUT``: nobody answered). Without ``triggers``, both count."""
        voicemail = self._calling.get("voicemail", {})
        triggers = voicemail.get("triggers", ("REJECT", "TIMEOUT"))
        return bool(voicemail.get("status") == "ENABLED" and trigger in triggers)

    def watched(self) -> tuple[Any, ...]:
        """What ``account_settings_update`` reports a change of (api-facts §2.6)."""
        calling = self._calling
        return (
            calling.get("status"),
            calling.get("call_icon_visibility"),
            calling.get("callback_permission_status"),
            calling.get("sip", {}).get("status"),
            calling.get("srtp_key_exchange_protocol"),
        )

    def check_graph_calling(self) -> None:
        """The Graph call endpoints work only with calling on and SIP off."""
        if self.sip_enabled:
            raise FakeAPIError.meta(131055, "SIP is enabled: calls are signalled over SIP")
        if not self.calling_enabled:
            raise FakeAPIError.meta(138000, "Calling is disabled for this phone number")

    # -- the API's side -----------------------------------------------------------------

    def get(self, include_sip_credentials: bool) -> dict[str, Any]:
        out = copy.deepcopy(self.stored)
        if not include_sip_credentials:
            for server in out["calling"].get("sip", {}).get("servers", []):
                server.pop("sip_user_password", None)
        return out

    def update(self, body: dict[str, Any], now: float) -> dict[str, Any]:
        """Apply a contract-valid ``POST /calling/settings`` body (one feature)."""
        ((feature, value),) = copy.deepcopy(body["calling"]).items()
        if feature == "call_hours":
            _check_call_hours(value, now)
        if feature == "sip":
            value = self._with_sip_credentials(value)
        # Every feature object is replaced whole: a call_hours without holiday_schedule
        # deletes the stored schedule, as the real API does.
        self._calling[feature] = value
        return {"success": True}

    def _with_sip_credentials(self, sip: dict[str, Any]) -> dict[str, Any]:
        current = self._calling.get("sip", {}).get("servers", [])
        old = {server["hostname"]: server for server in current}
        for server in sip.get("servers", []):
            server.setdefault("port", DEFAULT_SIP_PORT)
            # A server that stays keeps its password; a new one gets one.
            previous = old.get(server["hostname"], {})
            server["sip_user_password"] = previous.get(
                "sip_user_password", secrets.token_urlsafe(18)
            )
        if "servers" not in sip:
            sip["servers"] = current
        return sip


def _check_call_hours(hours: dict[str, Any], now: float) -> None:
    """Call-hour rules that compare values: open before close, at most two non-overlapping
    entries a day, no holiday in the past (api-facts §4)."""
    where = "calling.call_hours"
    per_day: dict[str, list[tuple[str, str]]] = {}
    for slot in hours.get("weekly_operating_hours", []):
        opens, closes = slot["open_time"], slot["close_time"]
        if opens >= closes:  # "HHMM" strings order as times do
            raise FakeAPIError.invalid(
                f"{where}.weekly_operating_hours: open_time {opens} must be before "
                f"close_time {closes}"
            )
        per_day.setdefault(slot["day_of_week"], []).append((opens, closes))
    for day, slots in per_day.items():
        if len(slots) > 2:
            raise FakeAPIError.invalid(
                f"{where}.weekly_operating_hours: at most 2 operating-hour entries per day ({day})"
            )
        slots.sort()
        if len(slots) == 2 and slots[1][0] < slots[0][1]:
            raise FakeAPIError.invalid(
                f"{where}.weekly_operating_hours: operating hours overlap on {day}"
            )
    today = datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%d")
    for holiday in hours.get("holiday_schedule", []):
        if holiday["date"] < today:
            raise FakeAPIError.invalid(
                f"{where}.holiday_schedule: holiday date {holiday['date']} is in the past"
            )
