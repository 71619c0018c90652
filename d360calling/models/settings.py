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
    """Opening hours for one day; at most two entries per day.

    Attributes:
        day_of_week: ``MONDAY`` ... ``SUNDAY``.
        open_time: ``"HHMM"``.
        close_time: ``"HHMM"``.
    """

    day_of_week: DayOfWeek | str
    open_time: str
    close_time: str


@attrs.frozen(kw_only=True)
class HolidaySchedule:
    """A closed period on one date. Meta's table calls the times ``open_time``/``close_time``;
    both spellings are read.

    Attributes:
        date: ``"YYYY-MM-DD"`` (the API refuses dates in the past).
        start_time: ``"HHMM"``.
        end_time: ``"HHMM"``.
    """

    date: str
    start_time: str
    end_time: str


@attrs.frozen(kw_only=True)
class CallHoursSettings:
    """When users can call. Meta's shape: ``timezone_id``, ``weekly_operating_hours``,
    ``holiday_schedule``; 360dialog's schema: ``timezone``, ``day_of_week_start``.

    The whole object is replaced on every update, and an omitted ``holiday_schedule``
    deletes the existing one: send it again to keep it
    (:meth:`~d360calling.AsyncClient.update_call_hours` does).

    Attributes:
        status: ``ENABLED`` or ``DISABLED``.
        timezone_id: The time zone the hours are in, e.g. ``"Europe/Berlin"`` (Meta).
        weekly_operating_hours: The opening hours, at most two entries per day.
        holiday_schedule: Closed periods.
        timezone: The time zone (360dialog's schema).
        day_of_week_start: The first day of the week (360dialog's schema).
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
    """A SIP server.

    Attributes:
        hostname: The server's host name.
        port: Its port.
        app_id: The app it belongs to.
        request_uri_user_params: Parameters added to the request URI's user part.
        password: The digest password (360dialog's name), set only when the settings were
            read with ``include_sip_credentials=True``; never shown in ``repr``.
        sip_user_password: The same, under Meta's name.
    """

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

    Attributes:
        status: ``ENABLED`` or ``DISABLED``.
        servers: The SIP servers; ``()`` deletes the configured one.
    """

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
        """The restrictions under both names."""
        return (self.restrictions or ()) + (self.restrictions_list or ())


@attrs.frozen(kw_only=True)
class IPAddresses:
    """Read-only: Meta's media IP ranges."""

    default: tuple[str, ...] | None = None


@attrs.frozen(kw_only=True)
class CallingSettings:
    """The ``calling`` object of the settings. Every field is ``None`` when the API left it
    out.

    Attributes:
        status: Whether calling is ``ENABLED`` for the number.
        call_icon_visibility: ``DEFAULT`` or ``DISABLE_ALL``.
        call_icons: Which users see the call icons.
        callback_permission_status: Whether users who call are asked to allow calls back.
        call_hours: When users can call.
        sip: SIP signalling.
        srtp_key_exchange_protocol: ``DTLS`` or ``SDES``.
        audio: Audio codecs.
        video: Video calling.
        voicemail: Voicemail.
        restrictions: The calling restrictions Meta placed on the number (read-only).
        ip_addresses: Meta's media IP ranges (read-only).
    """

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
    """The answer of ``GET /calling/settings``.

    Attributes:
        calling: The calling settings.
        payload_encryption: The number's payload encryption settings.
        storage_configuration: The number's storage settings.
    """

    calling: CallingSettings = attrs.Factory(CallingSettings)
    payload_encryption: PayloadEncryptionSettings | None = None
    storage_configuration: StorageConfigurationSettings | None = None


@attrs.frozen(kw_only=True)
class UpdateSettingsResponse:
    """The answer of ``POST /calling/settings``.

    Attributes:
        success: Whether the update was applied.
    """

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

    Attributes:
        feature: The ``calling`` field to change, e.g. ``"status"``.
        value: Its new value.
        disables_calling_api_and_webhooks: The confirmation enabling SIP needs.

    Raises:
        InvalidRequestError: The feature cannot be updated, the value is not of its type, or
            SIP is enabled without ``disables_calling_api_and_webhooks=True``.
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
        """Turn calling on or off for the number.

        Args:
            value: The new ``status``.

        Returns:
            The update, for :meth:`~d360calling.AsyncClient.update_settings`.

        Raises:
            InvalidRequestError: ``value`` is not ``ENABLED`` or ``DISABLED``.
        """
        return cls("status", value)

    @classmethod
    def call_icon_visibility(cls, value: CallIconVisibility | str) -> SettingsUpdate:
        """Show or hide the call icons in the chat and the business profile.

        Args:
            value: The new ``call_icon_visibility``.

        Returns:
            The update, for :meth:`~d360calling.AsyncClient.update_settings`.

        Raises:
            InvalidRequestError: ``value`` is not a text (``DEFAULT``, ``DISABLE_ALL``).
        """
        return cls("call_icon_visibility", value)

    @classmethod
    def call_icons(cls, value: CallIconsSettings) -> SettingsUpdate:
        """Show the call icons only to users from some countries.

        Args:
            value: The new ``call_icons``.

        Returns:
            The update, for :meth:`~d360calling.AsyncClient.update_settings`.

        Raises:
            InvalidRequestError: ``value`` is not a ``CallIconsSettings``.
        """
        return cls("call_icons", value)

    @classmethod
    def callback_permission_status(cls, value: FeatureStatus | str) -> SettingsUpdate:
        """Ask users who call the business to allow calls back.

        Args:
            value: The new ``callback_permission_status``.

        Returns:
            The update, for :meth:`~d360calling.AsyncClient.update_settings`.

        Raises:
            InvalidRequestError: ``value`` is not ``ENABLED`` or ``DISABLED``.
        """
        return cls("callback_permission_status", value)

    @classmethod
    def call_hours(cls, value: CallHoursSettings) -> SettingsUpdate:
        """Replace the call hours as a whole (a ``holiday_schedule`` left out is deleted).

        Args:
            value: The new ``call_hours``.

        Returns:
            The update, for :meth:`~d360calling.AsyncClient.update_settings`.

        Raises:
            InvalidRequestError: ``value`` is not a ``CallHoursSettings``.
        """
        return cls("call_hours", value)

    @classmethod
    def sip(
        cls, value: SipSettings, *, disables_calling_api_and_webhooks: bool = False
    ) -> SettingsUpdate:
        """SIP signalling. Enabling it turns off the calling endpoints and the calling
        webhooks, so it needs ``disables_calling_api_and_webhooks=True``.

        Args:
            value: The new ``sip``.
            disables_calling_api_and_webhooks: The confirmation that enabling SIP needs.

        Returns:
            The update, for :meth:`~d360calling.AsyncClient.update_settings`.

        Raises:
            InvalidRequestError: ``value`` is not a ``SipSettings``, or enables SIP without
                the confirmation.
        """
        return cls(
            "sip", value, disables_calling_api_and_webhooks=disables_calling_api_and_webhooks
        )

    @classmethod
    def srtp_key_exchange_protocol(cls, value: SrtpKeyExchangeProtocol | str) -> SettingsUpdate:
        """How SRTP keys are exchanged: DTLS (fingerprints) or SDES (``a=crypto``).

        Args:
            value: The new ``srtp_key_exchange_protocol``.

        Returns:
            The update, for :meth:`~d360calling.AsyncClient.update_settings`.

        Raises:
            InvalidRequestError: ``value`` is not a text (``DTLS``, ``SDES``).
        """
        return cls("srtp_key_exchange_protocol", value)

    @classmethod
    def audio(cls, value: AudioSettings) -> SettingsUpdate:
        """Audio codecs beyond Opus.

        Args:
            value: The new ``audio``.

        Returns:
            The update, for :meth:`~d360calling.AsyncClient.update_settings`.

        Raises:
            InvalidRequestError: ``value`` is not an ``AudioSettings``.
        """
        return cls("audio", value)

    @classmethod
    def video(cls, value: VideoSettings) -> SettingsUpdate:
        """Video calling.

        Args:
            value: The new ``video``.

        Returns:
            The update, for :meth:`~d360calling.AsyncClient.update_settings`.

        Raises:
            InvalidRequestError: ``value`` is not a ``VideoSettings``.
        """
        return cls("video", value)

    @classmethod
    def voicemail(cls, value: VoicemailSettings) -> SettingsUpdate:
        """Voicemail for calls the business rejects or does not answer in time.

        Args:
            value: The new ``voicemail``.

        Returns:
            The update, for :meth:`~d360calling.AsyncClient.update_settings`.

        Raises:
            InvalidRequestError: ``value`` is not a ``VoicemailSettings``.
        """
        return cls("voicemail", value)
