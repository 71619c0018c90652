"""Settings in 2026: SIP credentials on request (and kept secret), a call-hours update that
keeps the holiday schedule, and enabling SIP only with an explicit confirmation."""

from __future__ import annotations

import datetime
import logging
import zoneinfo
from typing import Any

import pytest

from d360calling import (
    AsyncClient,
    CallHoursSettings,
    Client,
    InvalidRequestError,
    ResponseDecodeError,
    SettingsUpdate,
    SipSettings,
)
from d360calling._converter import encode
from d360calling.models import HolidaySchedule, SipServer, WeeklyOperatingHours
from d360calling.testing import FakeCallingAPI

from .capture import Capture

PASSWORD = "s3cr3t-SIP-pa55word"
MONDAY = (WeeklyOperatingHours(day_of_week="MONDAY", open_time="0900", close_time="1700"),)
HOURS = CallHoursSettings(
    status="ENABLED", timezone_id="Europe/Berlin", weekly_operating_hours=MONDAY
)
NOON = datetime.datetime(2026, 12, 20, 12, 0, tzinfo=datetime.timezone.utc)
SUCCESS = {"success": True}


def holiday(date: str) -> dict[str, str]:
    return {"date": date, "start_time": "0000", "end_time": "2359"}


def stored_hours(*dates: str, timezone_id: str = "Europe/Berlin") -> dict[str, Any]:
    return {
        "calling": {
            "status": "ENABLED",
            "call_hours": {
                "status": "ENABLED",
                "timezone_id": timezone_id,
                "weekly_operating_hours": [
                    {"day_of_week": "FRIDAY", "open_time": "1000", "close_time": "1200"}
                ],
                "holiday_schedule": [holiday(date) for date in dates],
            },
        }
    }


def hours_sent(wire: Capture) -> Any:
    post = [r for r in wire.requests if r.method == "POST"]
    assert len(post) == 1
    assert post[0].path == "/calling/settings"
    body = post[0].json
    assert list(body["calling"]) == ["call_hours"]
    return body["calling"]["call_hours"]


# -- SIP credentials --------------------------------------------------------------------------

WITH_PASSWORD = {
    "calling": {
        "status": "ENABLED",
        "sip": {
            "status": "ENABLED",
            "servers": [
                {"hostname": "sip.example.com", "port": 5061, "sip_user_password": PASSWORD}
            ],
        },
    }
}


@pytest.mark.asyncio
async def test_sip_credentials_are_asked_for_and_kept_out_of_logs_and_reprs(
    wire: Capture, wire_client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    wire.reply(json=WITH_PASSWORD)
    wire.reply(json={"calling": {"status": "ENABLED"}})
    with caplog.at_level(logging.DEBUG, logger="d360calling"):
        settings = await wire_client.get_settings(include_sip_credentials=True)
        await wire_client.get_settings()
    first, second = wire.requests
    assert (first.path, first.query) == ("/calling/settings", {"include_sip_credentials": "true"})
    assert (second.path, second.query) == ("/calling/settings", {})
    assert settings.calling.sip is not None
    assert settings.calling.sip.servers is not None
    (server,) = settings.calling.sip.servers
    assert server.digest_password == PASSWORD
    assert PASSWORD not in repr(settings)
    assert "sip.example.com" in caplog.text  # the body was logged...
    assert PASSWORD not in caplog.text  # ...without the password


def test_the_digest_password_is_read_under_either_name() -> None:
    assert SipServer(password="a").digest_password == "a"
    assert SipServer(sip_user_password="b", password="a").digest_password == "b"
    assert SipServer().digest_password is None


@pytest.mark.asyncio
async def test_a_bad_answer_with_credentials_does_not_keep_the_password(
    wire: Capture, wire_client: AsyncClient
) -> None:
    bad = {"calling": {"sip": {"servers": [{"port": "not a port", "password": PASSWORD}]}}}
    wire.reply(json=bad)
    with pytest.raises(ResponseDecodeError) as info:
        await wire_client.get_settings(include_sip_credentials=True)
    assert PASSWORD.encode() not in info.value.body
    assert b"<redacted>" in info.value.body
    assert PASSWORD not in str(info.value)


@pytest.mark.asyncio
async def test_include_sip_credentials_must_be_a_bool(
    wire: Capture, wire_client: AsyncClient
) -> None:
    with pytest.raises(InvalidRequestError, match="include_sip_credentials"):
        await wire_client.get_settings(include_sip_credentials="yes")  # type: ignore[arg-type]
    assert wire.requests == []


# -- call hours, keeping the holidays ---------------------------------------------------------


@pytest.mark.asyncio
async def test_call_hours_keep_the_upcoming_holidays(
    wire: Capture, wire_client: AsyncClient
) -> None:
    wire.reply(json=stored_hours("2026-12-19", "2026-12-20", "2026-12-25"))
    wire.reply(json=SUCCESS)
    result = await wire_client.update_call_hours(HOURS, now=NOON)
    assert result.success
    assert [(r.method, r.path) for r in wire.requests] == [
        ("GET", "/calling/settings"),
        ("POST", "/calling/settings"),
    ]
    assert hours_sent(wire) == {
        "status": "ENABLED",
        "timezone_id": "Europe/Berlin",
        "weekly_operating_hours": [
            {"day_of_week": "MONDAY", "open_time": "0900", "close_time": "1700"}
        ],
        # 2026-12-19 has passed, and the API refuses past dates; today's is kept.
        "holiday_schedule": [holiday("2026-12-20"), holiday("2026-12-25")],
    }


@pytest.mark.asyncio
async def test_past_is_judged_in_the_call_hours_time_zone(
    wire: Capture, wire_client: AsyncClient
) -> None:
    try:
        zoneinfo.ZoneInfo("Asia/Tokyo")
    except zoneinfo.ZoneInfoNotFoundError:  # pragma: no cover - no time zone database
        pytest.skip("no time zone database")
    late = datetime.datetime(2026, 12, 20, 20, 0, tzinfo=datetime.timezone.utc)  # 05:00 in Tokyo
    tokyo = CallHoursSettings(
        status="ENABLED", timezone_id="Asia/Tokyo", weekly_operating_hours=MONDAY
    )
    for zone_hours, kept in ((tokyo, ["2026-12-21"]), (HOURS, ["2026-12-20", "2026-12-21"])):
        wire.requests.clear()
        wire.reply(json=stored_hours("2026-12-20", "2026-12-21"))
        wire.reply(json=SUCCESS)
        await wire_client.update_call_hours(zone_hours, now=late.timestamp())
        assert [h["date"] for h in hours_sent(wire)["holiday_schedule"]] == kept


@pytest.mark.parametrize(
    ("stored", "call_hours", "keep", "reads", "holidays"),
    [
        # Told not to keep: no read, and no holiday_schedule (the API deletes it).
        (None, HOURS, False, 0, None),
        # A schedule given is the caller's: sent as it is, without a read.
        (
            None,
            CallHoursSettings(
                status="DISABLED",
                timezone_id="Europe/Berlin",
                holiday_schedule=(
                    HolidaySchedule(date="2027-01-01", start_time="0000", end_time="1200"),
                ),
            ),
            True,
            0,
            [{"date": "2027-01-01", "start_time": "0000", "end_time": "1200"}],
        ),
        (
            None,
            CallHoursSettings(status="DISABLED", timezone_id="Europe/Berlin", holiday_schedule=()),
            True,
            0,
            [],
        ),
        # Nothing stored to keep, or only past days.
        ({"calling": {"status": "ENABLED"}}, HOURS, True, 1, None),
        (stored_hours(), HOURS, True, 1, None),
        (stored_hours("2026-01-01", "2026-12-19"), HOURS, True, 1, None),
    ],
)
@pytest.mark.asyncio
async def test_what_a_call_hours_update_sends(
    wire: Capture,
    wire_client: AsyncClient,
    stored: dict[str, Any] | None,
    call_hours: CallHoursSettings,
    keep: bool,
    reads: int,
    holidays: list[dict[str, str]] | None,
) -> None:
    if stored is not None:
        wire.reply(json=stored)
    wire.reply(json=SUCCESS)
    await wire_client.update_call_hours(call_hours, keep_holiday_schedule=keep, now=NOON)
    assert len([r for r in wire.requests if r.method == "GET"]) == reads
    assert hours_sent(wire).get("holiday_schedule") == holidays


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda c: c.update_call_hours({"status": "ENABLED"}), "CallHoursSettings"),
        (lambda c: c.update_call_hours(HOURS, keep_holiday_schedule=1), "keep_holiday_schedule"),
        (lambda c: c.update_call_hours(HOURS, now=datetime.datetime(2026, 1, 1)), "aware"),
        (
            lambda c: c.update_call_hours(CallHoursSettings(status=1)),  # type: ignore[arg-type]
            "calling.call_hours.status",
        ),
    ],
)
@pytest.mark.asyncio
async def test_bad_call_hours_are_refused_before_the_read(
    wire: Capture, wire_client: AsyncClient, call: Any, fragment: str
) -> None:
    with pytest.raises(InvalidRequestError, match=fragment):
        await call(wire_client)
    assert wire.requests == []


# -- enabling SIP -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["ENABLED", "enabled"])
def test_enabling_sip_needs_a_confirmation(status: str) -> None:
    with pytest.raises(InvalidRequestError, match="disables_calling_api_and_webhooks=True"):
        SettingsUpdate.sip(SipSettings(status=status))
    with pytest.raises(InvalidRequestError, match="131055"):
        SettingsUpdate("sip", SipSettings(status=status))
    confirmed = SettingsUpdate.sip(
        SipSettings(status=status), disables_calling_api_and_webhooks=True
    )
    assert encode(confirmed) == {"calling": {"sip": {"status": status}}}


def test_other_sip_updates_need_no_confirmation() -> None:
    for sip in (SipSettings(status="DISABLED"), SipSettings(servers=()), SipSettings()):
        assert encode(SettingsUpdate.sip(sip))["calling"]["sip"] == encode(sip)
    with pytest.raises(InvalidRequestError, match="must be True or False"):
        SettingsUpdate.sip(SipSettings(), disables_calling_api_and_webhooks="yes")  # type: ignore[arg-type]


# -- against the fake, async and sync -----------------------------------------------------------


@pytest.mark.asyncio
async def test_sip_and_its_password_against_the_fake(
    api: FakeCallingAPI, client: AsyncClient
) -> None:
    sip = SipSettings(status="ENABLED", servers=(SipServer(hostname="sip.example.com"),))
    await client.update_settings(SettingsUpdate.sip(sip, disables_calling_api_and_webhooks=True))
    hidden = (await client.get_settings()).calling.sip
    shown = (await client.get_settings(include_sip_credentials=True)).calling.sip
    assert hidden is not None
    assert shown is not None
    assert hidden.servers is not None
    assert shown.servers is not None
    assert hidden.servers[0].digest_password is None
    assert shown.servers[0].digest_password


def test_call_hours_keep_the_holidays_against_the_fake(
    api: FakeCallingAPI, sync_client: Client
) -> None:
    today = datetime.datetime.fromtimestamp(api.clock.time(), datetime.timezone.utc).date()
    soon, later = (str(today + datetime.timedelta(days=n)) for n in (1, 30))
    schedule = tuple(
        HolidaySchedule(date=date, start_time="0000", end_time="2359") for date in (soon, later)
    )
    sync_client.update_settings(
        SettingsUpdate.call_hours(
            CallHoursSettings(
                status="ENABLED",
                timezone_id="UTC",
                weekly_operating_hours=MONDAY,
                holiday_schedule=schedule,
            )
        )
    )
    api.clock.advance(3 * 24 * 3600)  # the first holiday is now past: sending it is refused
    sync_client.update_call_hours(
        CallHoursSettings(status="DISABLED", timezone_id="UTC", weekly_operating_hours=MONDAY),
        now=api.clock.time(),
    )
    stored = api.settings["calling"]["call_hours"]
    assert stored["status"] == "DISABLED"
    assert [h["date"] for h in stored["holiday_schedule"]] == [later]
