"""Calling settings: ``GET`` and ``POST /calling/settings``.

One set of classes serves both directions. Every field is optional: ``None`` means "absent"
when reading and "do not send" in an update, which is a :class:`SettingsUpdate` of one
feature. The 360dialog schema and Meta's documented shapes differ (``call_hours``, SIP
servers, restrictions); both are modelled, each field under its own wire name.
"""

from __future__ import annotations

from typing import TypeAlias

import attrs

from ..errors import InvalidRequestError
from ._enums import (
    AudioCodec,
    CallIconVisibility,
    DayOfWeek,
    FeatureStatus,
    SrtpKeyExchangeProtocol,
    VoicemailTrigger,
)

__all__ = (
    "AudioSettings",
    "CallHoursSettings",
    "CallIconsSettings",
    "CallingRestrictions",
    "CallingSettings",
    "HolidaySchedule",
    "IPAddresses",
    "PayloadEncryptionSettings",
    "Restriction",
    "Settings",
    "SipServer",
    "SipSettings",
    "StorageConfigurationSettings",
    "SettingsUpdate",
    "SettingsValue",
    "UpdateSettingsResponse",
    "VideoSettings",
    "VoicemailAnnouncement",
    "VoicemailAudio",
    "VoicemailSettings",
    "WeeklyOperatingHours",
)


def _secret_repr(value: str | None) -> str:
    return "None" if value is None else "'***'"


@attrs.frozen(kw_only=True)
class WeeklyOperatingHours:
    """Opening hours for one day, times as ``"HHMM"``; at most two entries per day."""

    day_of_week: DayOfWeek | str
    open_time: str
    close_time: str


@attrs.frozen(kw_only=True)
class HolidaySchedule:
    """A closed period on ``date`` (``"YYYY-MM-DD"``), times as ``"HHMM"``.

    Meta's table calls the times ``open_time``/``close_time``; both spellings are read.
    """

    date: str
    start_time: str
    end_time: str


@attrs.frozen(kw_only=True)
class CallHoursSettings:
    """When users can call. Meta's shape: ``timezone_id``, ``weekly_operating_hours``,
    ``holiday_schedule``; 360dialog's schema: ``timezone``, ``day_of_week_start``.

    The whole object is replaced on every update, and an omitted ``holiday_schedule``
    deletes the existing one: send it again to keep it.
    """

    status: FeatureStatus | str | None = None
    timezone_id: str | None = None
    weekly_operating_hours: tuple[WeeklyOperatingHours, ...] | None = None
    holiday_schedule: tuple[HolidaySchedule, ...] | None = None
    timezone: str | None = None
    day_of_week_start: str | None = None


@attrs.frozen(kw_only=True)
class CallIconsSettings:
    """Show call icons only to users whose number is from these ISO-3166 countries (``()``: all)."""

    restrict_to_user_countries: tuple[str, ...] | None = None


@attrs.frozen(kw_only=True)
class SipServer:
    """A SIP server. ``password`` (360dialog) and ``sip_user_password`` (Meta) are set only
    when the settings were read with ``include_sip_credentials=True``, and are never shown in
    ``repr``."""

    hostname: str | None = None
    port: int | None = None
    app_id: str | None = None
    request_uri_user_params: dict[str, str] | None = None
    password: str | None = attrs.field(default=None, repr=_secret_repr)
    sip_user_password: str | None = attrs.field(default=None, repr=_secret_repr)

    @property
    def digest_password(self) -> str | None:
        """The password for SIP digest authentication, under whichever name the API sent it
        (only in ``get_settings(include_sip_credentials=True)``)."""
        return self.sip_user_password if self.sip_user_password is not None else self.password


@attrs.frozen(kw_only=True)
class SipSettings:
    """SIP signalling. Enabling it turns off the Graph calling endpoints and call webhooks.
    ``servers=()`` deletes the configured server."""

    status: FeatureStatus | str | None = None
    servers: tuple[SipServer, ...] | None = None


@attrs.frozen(kw_only=True)
class AudioSettings:
    status: FeatureStatus | str | None = None
    additional_codecs: tuple[AudioCodec | str, ...] | None = None


@attrs.frozen(kw_only=True)
class VideoSettings:
    status: FeatureStatus | str | None = None


@attrs.frozen(kw_only=True)
class VoicemailAnnouncement:
    announcement_media_id: int | str | None = None
    timeout_seconds: int | None = None


@attrs.frozen(kw_only=True)
class VoicemailAudio:
    default: VoicemailAnnouncement | None = None


@attrs.frozen(kw_only=True)
class VoicemailSettings:
    status: FeatureStatus | str | None = None
    triggers: tuple[VoicemailTrigger | str, ...] | None = None
    audio: VoicemailAudio | None = None


@attrs.frozen(kw_only=True)
class Restriction:
    """A calling restriction Meta placed on the number; ``expiration`` is Unix seconds."""

    type: str | None = None
    reason: str | None = None
    expiration: int | None = None


@attrs.frozen(kw_only=True)
class CallingRestrictions:
    """Read-only. 360dialog's schema lists them under ``restrictions``, Meta under
    ``restrictions_list``; :attr:`all` gives both."""

    restrictions: tuple[Restriction, ...] | None = None
    restrictions_list: tuple[Restriction, ...] | None = None

    @property
    def all(self) -> tuple[Restriction, ...]:
        return (self.restrictions or ()) + (self.restrictions_list or ())


@attrs.frozen(kw_only=True)
class IPAddresses:
    """Read-only: Meta's media IP ranges."""

    default: tuple[str, ...] | None = None


@attrs.frozen(kw_only=True)
class CallingSettings:
    """The ``calling`` object. To update, set the one feature to change; leave the rest ``None``."""

    status: FeatureStatus | str | None = None
    call_icon_visibility: CallIconVisibility | str | None = None
    call_icons: CallIconsSettings | None = None
    callback_permission_status: FeatureStatus | str | None = None
    call_hours: CallHoursSettings | None = None
    sip: SipSettings | None = None
    srtp_key_exchange_protocol: SrtpKeyExchangeProtocol | str | None = None
    audio: AudioSettings | None = None
    video: VideoSettings | None = None
    voicemail: VoicemailSettings | None = None
    restrictions: CallingRestrictions | None = None
    ip_addresses: IPAddresses | None = None


@attrs.frozen(kw_only=True)
class PayloadEncryptionSettings:
    client_encryption_key_fingerprint: str | None = None
    cloud_encryption_key: str | None = None
    status: str | None = None


@attrs.frozen(kw_only=True)
class StorageConfigurationSettings:
    data_localization_region: str | None = None
    status: str | None = None


@attrs.frozen(kw_only=True)
class Settings:
    """The answer of ``GET /calling/settings``."""

    calling: CallingSettings = attrs.Factory(CallingSettings)
    payload_encryption: PayloadEncryptionSettings | None = None
    storage_configuration: StorageConfigurationSettings | None = None


@attrs.frozen(kw_only=True)
class UpdateSettingsResponse:
    success: bool


def _enables(status: FeatureStatus | str | None) -> bool:
    return isinstance(status, str) and status.casefold() == FeatureStatus.ENABLED.casefold()


# The features an update may carry, and what each takes (``str``: a value the API adds later).
SettingsValue: TypeAlias = (
    FeatureStatus
    | CallIconVisibility
    | SrtpKeyExchangeProtocol
    | str
    | CallIconsSettings
    | CallHoursSettings
    | SipSettings
    | AudioSettings
    | VideoSettings
    | VoicemailSettings
)
_UPDATABLE: dict[str, tuple[type, ...]] = {
    "status": (FeatureStatus, str),
    "call_icon_visibility": (CallIconVisibility, str),
    "call_icons": (CallIconsSettings,),
    "callback_permission_status": (FeatureStatus, str),
    "call_hours": (CallHoursSettings,),
    "sip": (SipSettings,),
    "srtp_key_exchange_protocol": (SrtpKeyExchangeProtocol, str),
    "audio": (AudioSettings,),
    "video": (VideoSettings,),
    "voicemail": (VoicemailSettings,),
}


@attrs.frozen
class SettingsUpdate:
    """One feature of the calling settings to change: the API takes exactly one per request,
    so an update is made for one feature, e.g. ``SettingsUpdate.status("ENABLED")`` or
    ``SettingsUpdate.call_hours(CallHoursSettings(...))``.

    ``call_hours`` is replaced as a whole, and leaving out ``holiday_schedule`` deletes the
    existing one. ``restrictions`` and ``ip_addresses`` are read-only.
    """

    feature: str
    value: SettingsValue
    disables_calling_api_and_webhooks: bool = attrs.field(default=False, kw_only=True)

    def __attrs_post_init__(self) -> None:
        accepted = _UPDATABLE.get(self.feature)
        if accepted is None:
            known = ", ".join(_UPDATABLE)
            raise InvalidRequestError(
                f"calling.{self.feature!s:.40} cannot be updated; updatable: {known}"
            )
        value: object = self.value  # what was passed, whatever the annotation says
        if not isinstance(value, accepted) or isinstance(value, bool):
            names = " or ".join(t.__name__ for t in accepted)
            raise InvalidRequestError(f"calling.{self.feature} must be {names}, got {value!r:.40}")
        confirmed: object = self.disables_calling_api_and_webhooks
        if not isinstance(confirmed, bool):
            raise InvalidRequestError(
                f"disables_calling_api_and_webhooks must be True or False, got {confirmed!r:.40}"
            )
        if isinstance(value, SipSettings) and _enables(value.status) and not confirmed:
            # api-2026 §6: with SIP on, /calling/calls answers 131055 and the calling
            # webhooks stop, which silently breaks a webhook-driven bot.
            raise InvalidRequestError(
                "enabling SIP turns off the calling endpoints (they answer 131055) and the "
                "calling webhooks: calls then reach only your SIP server. Pass "
                "disables_calling_api_and_webhooks=True to confirm"
            )

    @classmethod
    def status(cls, value: FeatureStatus | str) -> SettingsUpdate:
        """Turn calling on or off for the number."""
        return cls("status", value)

    @classmethod
    def call_icon_visibility(cls, value: CallIconVisibility | str) -> SettingsUpdate:
        return cls("call_icon_visibility", value)

    @classmethod
    def call_icons(cls, value: CallIconsSettings) -> SettingsUpdate:
        return cls("call_icons", value)

    @classmethod
    def callback_permission_status(cls, value: FeatureStatus | str) -> SettingsUpdate:
        return cls("callback_permission_status", value)

    @classmethod
    def call_hours(cls, value: CallHoursSettings) -> SettingsUpdate:
        return cls("call_hours", value)

    @classmethod
    def sip(
        cls, value: SipSettings, *, disables_calling_api_and_webhooks: bool = False
    ) -> SettingsUpdate:
        """SIP signalling. Enabling it turns off the calling endpoints and the calling
        webhooks, so it needs ``disables_calling_api_and_webhooks=True``."""
        return cls(
            "sip", value, disables_calling_api_and_webhooks=disables_calling_api_and_webhooks
        )

    @classmethod
    def srtp_key_exchange_protocol(cls, value: SrtpKeyExchangeProtocol | str) -> SettingsUpdate:
        return cls("srtp_key_exchange_protocol", value)

    @classmethod
    def audio(cls, value: AudioSettings) -> SettingsUpdate:
        return cls("audio", value)

    @classmethod
    def video(cls, value: VideoSettings) -> SettingsUpdate:
        return cls("video", value)

    @classmethod
    def voicemail(cls, value: VoicemailSettings) -> SettingsUpdate:
        return cls("voicemail", value)
