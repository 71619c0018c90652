"""The converter: recorded payload variants through the strict decoder, tolerant decoding of
what the API may vary, and encoding exactly what the user set."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cattrs
import pytest

from d360calling import InvalidRequestError
from d360calling._converter import decode, decode_errors, encode
from d360calling.models import (
    AcceptCallRequest,
    AudioCodec,
    CallActionResponse,
    CallHoursSettings,
    CallingSettings,
    CallPermissions,
    ConnectCallRequest,
    DayOfWeek,
    FeatureStatus,
    HolidaySchedule,
    PermissionAction,
    PermissionStatus,
    PreAcceptCallRequest,
    RejectCallRequest,
    Settings,
    SettingsUpdate,
    SipServer,
    SipSettings,
    SrtpKeyExchangeProtocol,
    TerminateCallRequest,
    UpdateSettingsResponse,
    WeeklyOperatingHours,
)

PAYLOADS = Path(__file__).parent / "payloads"


def payload(name: str) -> Any:
    return json.loads((PAYLOADS / name).read_text())


def test_permissions_sample_decodes_strictly() -> None:
    p = decode(CallPermissions, payload("permissions_temporary.json"), strict=True)
    assert p.permission.status is PermissionStatus.TEMPORARY
    assert p.permission.expiration_time == 1745343479
    request = p.action(PermissionAction.SEND_CALL_PERMISSION_REQUEST)
    assert request is not None
    assert [(lim.time_period, lim.max_allowed, lim.current_usage) for lim in request.limits] == [
        ("PT24H", 1, 0),
        ("P7D", 2, 1),
    ]
    start = p.action("start_call")
    assert start is not None
    assert start.limits[0].limit_expiration_time == 1745622600
    assert start.limits[0].exhausted
    assert not p.can_start_call
    assert p.can_request_permission


def test_permanent_permission_has_no_expiry() -> None:
    p = decode(CallPermissions, payload("permissions_permanent.json"), strict=True)
    assert p.permission.status is PermissionStatus.PERMANENT
    assert p.permission.expiration_time is None
    assert p.can_start_call
    assert not p.can_request_permission


def test_permission_expiration_alias_is_read() -> None:
    p = decode(CallPermissions, payload("permissions_expiration_alias.json"), strict=True)
    assert p.permission.expiration_time == 1768550400


def test_no_permission_status() -> None:
    p = decode(CallPermissions, payload("permissions_no_permission.json"), strict=True)
    assert p.permission.status == "no_permission"
    assert not p.can_start_call


def test_meta_shaped_settings_decode_strictly() -> None:
    s = decode(Settings, payload("settings_meta.json"), strict=True)
    calling = s.calling
    assert calling.status is FeatureStatus.ENABLED
    assert calling.call_icons is not None
    assert calling.call_icons.restrict_to_user_countries == ("DE", "AT")
    hours = calling.call_hours
    assert hours is not None
    assert hours.timezone_id == "America/Manaus"
    assert hours.weekly_operating_hours == (
        WeeklyOperatingHours(day_of_week=DayOfWeek.MONDAY, open_time="0400", close_time="1020"),
        WeeklyOperatingHours(day_of_week=DayOfWeek.TUESDAY, open_time="0108", close_time="1020"),
    )
    assert hours.holiday_schedule == (
        HolidaySchedule(date="2026-01-01", start_time="0000", end_time="2359"),
    )
    assert calling.sip is not None
    assert calling.sip.servers is not None
    server = calling.sip.servers[0]
    assert server.request_uri_user_params == {"KEY1": "VALUE1"}
    assert server.sip_user_password == "s3cret-sip"
    assert calling.srtp_key_exchange_protocol is SrtpKeyExchangeProtocol.SDES
    assert calling.audio is not None
    assert calling.audio.additional_codecs == (AudioCodec.PCMA, AudioCodec.PCMU)
    assert calling.voicemail is not None
    assert calling.voicemail.audio is not None
    assert calling.voicemail.audio.default is not None
    assert calling.voicemail.audio.default.announcement_media_id == 1234567890
    assert calling.restrictions is not None
    assert [r.type for r in calling.restrictions.all] == ["RESTRICTED_BUSINESS_INITIATED_CALLING"]


def test_seed_shaped_settings_decode_strictly() -> None:
    s = decode(Settings, payload("settings_seed.json"), strict=True)
    calling = s.calling
    assert calling.call_hours == CallHoursSettings(
        status=FeatureStatus.DISABLED, timezone="Europe/Berlin", day_of_week_start="MONDAY"
    )
    assert calling.sip is not None
    assert calling.sip.servers is not None
    assert calling.sip.servers[0].app_id == "123456"
    assert calling.sip.servers[0].password == "seed-pass"
    assert calling.video is not None
    assert calling.video.status is FeatureStatus.DISABLED
    assert calling.ip_addresses is not None
    assert calling.ip_addresses.default == ("157.240.0.0/16", "2a03:2880::/32")
    assert calling.restrictions is not None
    assert calling.restrictions.all[0].type == "RESTRICTED_USER_INITIATED_CALLING"
    assert calling.call_icons is not None
    assert calling.call_icons.restrict_to_user_countries == ()
    assert s.payload_encryption is not None
    assert s.payload_encryption.status == "DISABLED"
    assert s.storage_configuration is not None
    assert s.storage_configuration.data_localization_region == "DE"


@pytest.mark.parametrize(
    ("name", "success", "call_id"),
    [
        ("call_connect.json", None, "wacid.ABGGFjFVU2AfAgo6V"),
        ("call_success.json", True, None),
        ("call_success_bare.json", True, None),
    ],
)
def test_call_action_responses(name: str, success: bool | None, call_id: str | None) -> None:
    r = decode(CallActionResponse, payload(name), strict=True)
    assert r.success is success
    assert r.call_id == call_id


def test_settings_update_response() -> None:
    assert decode(UpdateSettingsResponse, payload("settings_update.json"), strict=True).success


def test_sip_passwords_never_appear_in_repr() -> None:
    for name in ("settings_meta.json", "settings_seed.json"):
        text = repr(decode(Settings, payload(name)))
        assert "s3cret-sip" not in text
        assert "seed-pass" not in text
        assert "'***'" in text


# -- tolerant decoding -------------------------------------------------------------------


def test_unknown_keys_are_ignored_by_default_and_refused_in_strict_mode() -> None:
    data = payload("permissions_temporary.json")
    data["new_top_level"] = {"x": 1}
    data["permission"]["new_field"] = True
    p = decode(CallPermissions, data)
    assert p.permission.status is PermissionStatus.TEMPORARY
    with pytest.raises(cattrs.BaseValidationError) as info:
        decode(CallPermissions, data, strict=True)
    message = decode_errors(info.value)
    assert "new_top_level" in message
    assert "new_field" in message


def test_unknown_enum_values_are_kept_as_strings() -> None:
    s = decode(
        Settings,
        {"calling": {"status": "PAUSED", "call_icon_visibility": "HIDE_IN_CHAT"}},
        strict=True,
    )
    assert s.calling.status == "PAUSED"
    assert not isinstance(s.calling.status, FeatureStatus)
    assert s.calling.call_icon_visibility == "HIDE_IN_CHAT"


def test_enum_values_match_case_insensitively() -> None:
    s = decode(Settings, {"calling": {"status": "Enabled", "srtp_key_exchange_protocol": "dtls"}})
    assert s.calling.status is FeatureStatus.ENABLED
    assert s.calling.srtp_key_exchange_protocol is SrtpKeyExchangeProtocol.DTLS


def test_numbers_and_booleans_sent_as_strings_are_read() -> None:
    p = decode(
        CallPermissions,
        {
            "permission": {"status": "temporary", "expiration_time": "1745343479"},
            "actions": [
                {
                    "action_name": "start_call",
                    "can_perform_action": "true",
                    "limits": [{"time_period": "PT24H", "max_allowed": "5", "current_usage": 2}],
                }
            ],
        },
    )
    assert p.permission.expiration_time == 1745343479
    assert p.can_start_call
    assert p.actions[0].limits[0].max_allowed == 5


def test_null_means_absent() -> None:
    s = decode(Settings, {"calling": {"status": "ENABLED", "sip": None, "call_hours": None}})
    assert s.calling.sip is None
    r = decode(CallActionResponse, {"success": True, "calls": None})
    assert r.calls == ()


def test_holiday_open_close_spelling_is_read() -> None:
    hours = decode(
        CallHoursSettings,
        {"holiday_schedule": [{"date": "2026-12-24", "open_time": "1200", "close_time": "2359"}]},
        strict=True,
    )
    assert hours.holiday_schedule == (
        HolidaySchedule(date="2026-12-24", start_time="1200", end_time="2359"),
    )


def test_missing_settings_calling_object_gives_empty_settings() -> None:
    s = decode(Settings, {})
    assert s.calling == CallingSettings()


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ([1, 2], "got an array"),
        ({"actions": []}, "permission"),
        ({"permission": {"status": 7}}, "permission.status"),
        ({"permission": {"status": "temporary", "expiration_time": "soon"}}, "expiration_time"),
        ({"permission": {"status": "temporary"}, "actions": [{"action_name": "x"}]}, "actions[0]"),
        (
            {
                "permission": {"status": "temporary"},
                "actions": [{"action_name": "x", "can_perform_action": "perhaps"}],
            },
            "can_perform_action",
        ),
    ],
)
def test_bad_shapes_name_the_field(data: Any, fragment: str) -> None:
    with pytest.raises((cattrs.BaseValidationError, TypeError)) as info:
        decode(CallPermissions, data)
    assert fragment in decode_errors(info.value)


# -- encoding ------------------------------------------------------------------------------

SDP = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


@pytest.mark.parametrize(
    ("request_", "wire"),
    [
        (
            ConnectCallRequest(to="4915112345678", sdp=SDP, biz_opaque_callback_data="x"),
            {
                "messaging_product": "whatsapp",
                "action": "connect",
                "to": "4915112345678",
                "session": {"sdp_type": "offer", "sdp": SDP},
                "biz_opaque_callback_data": "x",
            },
        ),
        (
            PreAcceptCallRequest(call_id="wacid.1", sdp=SDP),
            {
                "messaging_product": "whatsapp",
                "action": "pre_accept",
                "call_id": "wacid.1",
                "session": {"sdp_type": "answer", "sdp": SDP},
            },
        ),
        (
            AcceptCallRequest(call_id="wacid.1", sdp=SDP),
            {
                "messaging_product": "whatsapp",
                "action": "accept",
                "call_id": "wacid.1",
                "session": {"sdp_type": "answer", "sdp": SDP},
            },
        ),
        (
            RejectCallRequest(call_id="wacid.1"),
            {"messaging_product": "whatsapp", "action": "reject", "call_id": "wacid.1"},
        ),
        (
            TerminateCallRequest(call_id="wacid.1"),
            {"messaging_product": "whatsapp", "action": "terminate", "call_id": "wacid.1"},
        ),
    ],
    ids=lambda v: getattr(v, "action", "wire"),
)
def test_each_call_action_has_its_wire_form(request_: object, wire: dict[str, object]) -> None:
    """The action and the session's sdp_type follow from the class; unset fields are left out."""
    assert encode(request_) == wire
    assert json.dumps(encode(request_))  # plain JSON types only


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: ConnectCallRequest(to="012345", sdp=SDP), "international format"),
        (lambda: ConnectCallRequest(to="4915112345678", sdp="hello"), "v=0"),
        (lambda: ConnectCallRequest(to="4915112345678", sdp=b"v=0"), "must be a str"),  # type: ignore[arg-type]
        (
            lambda: AcceptCallRequest(
                call_id="wacid.1", sdp=SDP, biz_opaque_callback_data="x" * 513
            ),
            "at most 512",
        ),
        (
            lambda: AcceptCallRequest(call_id="wacid.1", sdp=SDP, biz_opaque_callback_data=5),  # type: ignore[arg-type]
            "must be a str",
        ),
        (lambda: PreAcceptCallRequest(call_id="", sdp=SDP), "non-empty"),
        (lambda: RejectCallRequest(call_id="wacid 1"), "whitespace"),
        (lambda: TerminateCallRequest(call_id=None), "non-empty"),  # type: ignore[arg-type]
    ],
)
def test_invalid_call_actions_cannot_be_made(make: Callable[[], object], match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        make()


def test_call_actions_carry_only_their_own_fields() -> None:
    with pytest.raises(TypeError):
        TerminateCallRequest(call_id="wacid.1", sdp=SDP)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        RejectCallRequest(call_id="wacid.1", biz_opaque_callback_data="x")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        ConnectCallRequest(to="4915112345678", call_id="wacid.1", sdp=SDP)  # type: ignore[call-arg]
    assert "ice-pwd" not in repr(AcceptCallRequest(call_id="wacid.1", sdp=SDP + "a=ice-pwd:x\r\n"))


def test_a_settings_update_is_one_feature() -> None:
    assert encode(SettingsUpdate.status("ENABLED")) == {"calling": {"status": "ENABLED"}}
    assert encode(SettingsUpdate.srtp_key_exchange_protocol(SrtpKeyExchangeProtocol.SDES)) == {
        "calling": {"srtp_key_exchange_protocol": "SDES"}
    }
    with pytest.raises(InvalidRequestError, match="cannot be updated"):
        SettingsUpdate("restrictions", "x")
    with pytest.raises(InvalidRequestError, match="must be CallHoursSettings"):
        SettingsUpdate.call_hours("ENABLED")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="must be FeatureStatus or str"):
        SettingsUpdate.status(False)  # type: ignore[arg-type]


def test_settings_encode_enums_as_values_and_keep_empty_lists() -> None:
    wire = encode(
        SettingsUpdate.sip(
            SipSettings(status=FeatureStatus.ENABLED, servers=()),
            disables_calling_api_and_webhooks=True,
        )
    )
    assert wire == {"calling": {"sip": {"status": "ENABLED", "servers": []}}}
    assert json.dumps(wire)  # plain JSON types only


def test_settings_round_trip() -> None:
    original = CallingSettings(
        call_hours=CallHoursSettings(
            status=FeatureStatus.ENABLED,
            timezone_id="Europe/Berlin",
            weekly_operating_hours=(
                WeeklyOperatingHours(day_of_week="MONDAY", open_time="0900", close_time="1700"),
            ),
            holiday_schedule=(
                HolidaySchedule(date="2026-12-25", start_time="0000", end_time="2359"),
            ),
        ),
        sip=SipSettings(servers=(SipServer(hostname="h", port=5061, sip_user_password="p"),)),
    )
    assert decode(CallingSettings, encode(original), strict=True) == original
