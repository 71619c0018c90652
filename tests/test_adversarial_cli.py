"""The command line against hostile input: files that are not what they claim, settings that
do not fit, answers built to break the output, bind errors, and secrets that must not be
printed. Every path ends in its documented exit code and one clean line on stderr; all traffic
goes to the fake API on 127.0.0.1."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from d360calling import _json
from d360calling._cli import (
    EXIT_API_ERROR,
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_NETWORK_ERROR,
    EXIT_OK,
    main,
)
from d360calling.testing import FakeCallingAPI, Fault, sample_offer

from .helpers import API_KEY, USER

ROOT = Path(__file__).resolve().parent.parent
OFFER = sample_offer()
# The offer's a=ice-pwd line (1-based), and the password it holds: never to be echoed.
PWD_LINE, PWD = next(
    (number, line.partition(":")[2])
    for number, line in enumerate(OFFER.split("\r\n"), start=1)
    if line.startswith("a=ice-pwd:")
)


@pytest.fixture
def env(api: FakeCallingAPI, monkeypatch: pytest.MonkeyPatch) -> FakeCallingAPI:
    monkeypatch.setenv("D360_API_KEY", API_KEY)
    monkeypatch.setenv("D360_BASE_URL", api.url)
    return api


def one_clean_line(err: str) -> str:
    """The single line a failing command printed, checked to be one printable line."""
    assert err.endswith("\n")
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in err[:-1]), repr(err)
    return err[:-1]


def connect(tmp_path: Path, data: bytes) -> int:
    path = tmp_path / "offer.sdp"
    path.write_bytes(data)
    return main(["call", "connect", USER, "--sdp", str(path)])


# -- SDP files ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "separator", ["\u2028", "\u2029", "\x0c", "\x0b", "\x1c", "\x1d", "\x1e", "\x85", "\x00"]
)
def test_a_separator_inside_an_sdp_line_is_refused_naming_the_line(
    env: FakeCallingAPI, tmp_path: Path, separator: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # str.splitlines() would have cut the ice-pwd line in two and sent that.
    sdp = OFFER.replace(PWD, PWD[:4] + separator + PWD[4:])
    assert connect(tmp_path, sdp.encode()) == EXIT_BAD_INPUT
    line = one_clean_line(capsys.readouterr().err)
    assert f"line {PWD_LINE}:" in line
    assert f"U+{ord(separator):04X}" in line
    assert PWD[4:] not in line  # the line's content (a credential) is not shown
    assert env.requests == []


@pytest.mark.parametrize("line_end", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
def test_any_line_end_is_sent_as_crlf(env: FakeCallingAPI, tmp_path: Path, line_end: str) -> None:
    assert connect(tmp_path, OFFER.replace("\r\n", line_end).encode()) == EXIT_OK
    (call,) = env.calls.values()
    assert call.offer_sdp == OFFER


def test_a_byte_order_mark_is_dropped(env: FakeCallingAPI, tmp_path: Path) -> None:
    # Notepad's UTF-8: the mark made the offer "not start with v=0".
    assert connect(tmp_path, b"\xef\xbb\xbf" + OFFER.replace("\r\n", "\n").encode()) == EXIT_OK
    (call,) = env.calls.values()
    assert call.offer_sdp == OFFER


def test_a_byte_order_mark_on_stdin_is_dropped(
    env: FakeCallingAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(b"\xef\xbb\xbf" + OFFER.encode()), encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", stdin)
    assert main(["call", "connect", USER, "--sdp", "-"]) == EXIT_OK
    (call,) = env.calls.values()
    assert call.offer_sdp == OFFER


class _CtrlCWhileReading(io.StringIO):
    """stdin as a terminal where the user presses Ctrl-C instead of pasting the SDP."""

    def __init__(self) -> None:
        super().__init__()
        self.waited = 0

    def read(self, size: int | None = -1) -> str:
        signal.raise_signal(signal.SIGINT)
        for _ in range(1000):  # a read that blocks (bounded), unless Ctrl-C ends it
            self.waited += 1
            time.sleep(0.001)
        return ""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_while_reading_stdin_exits_130(
    env: FakeCallingAPI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin = _CtrlCWhileReading()
    monkeypatch.setattr(sys, "stdin", stdin)
    # Read inside the event loop, Ctrl-C only cancelled the task and the read went on.
    assert main(["call", "connect", USER, "--sdp", "-"]) == EXIT_INTERRUPTED
    assert stdin.waited < 1000
    assert capsys.readouterr().err == "interrupted\n"
    assert env.requests == []


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (OFFER.encode("utf-16"), "is not UTF-8 text (byte 0 is 0xff)"),
        (OFFER.encode().replace(b"s=-", b"s=\xe9"), "is not UTF-8 text"),
        (b"", "holds no SDP"),
        (b"\xef\xbb\xbf", "holds no SDP"),
        (b"v=0\n" * 300_000, "is larger than 1024 KiB"),
    ],
    ids=["utf-16", "latin-1", "empty", "only-a-bom", "huge"],
)
def test_an_sdp_file_that_is_not_utf8_text_exits_2(
    env: FakeCallingAPI,
    tmp_path: Path,
    data: bytes,
    fragment: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert connect(tmp_path, data) == EXIT_BAD_INPUT
    line = one_clean_line(capsys.readouterr().err)
    assert line.startswith("d360calling: bad input: ")
    assert fragment in line
    assert env.requests == []


def test_a_directory_as_sdp_exits_2(
    env: FakeCallingAPI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["call", "connect", USER, "--sdp", str(tmp_path)]) == EXIT_BAD_INPUT
    assert "cannot read" in one_clean_line(capsys.readouterr().err)


# -- settings files -----------------------------------------------------------------------

BACKENDS: list[Any] = [
    pytest.param(_json.stdlib_loads, id="stdlib"),
    pytest.param(
        _json.orjson_loads,
        id="orjson",
        marks=pytest.mark.skipif(not _json.HAVE_ORJSON, reason="orjson is not installed"),
    ),
]


@pytest.fixture(params=BACKENDS)
def json_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI reads through d360calling._json; without orjson, the stdlib does the parsing.
    loads: Callable[[Any], Any] = request.param
    monkeypatch.setattr(_json, "loads", loads)


def set_from(tmp_path: Path, data: bytes) -> int:
    path = tmp_path / "settings.json"
    path.write_bytes(data)
    return main(["settings", "set", "--file", str(path)])


@pytest.mark.usefixtures("json_backend")
@pytest.mark.parametrize(
    "data",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"calling":' * 5_000 + b"{}" + b"}" * 5_000,
        b'{"calling": {"status": "ENABLED"',
        b"NaN",
        b'{"calling": {"status": NaN}}',
        b'{"calling": {"status": 1e400}}',
        b'{"calling": {"status": "\\ud800"}}',
        '{"calling": {"status": "ENABLED"}}'.encode("utf-16"),
        b'{"calling": {"status": "\xe9"}}',
        b"",
    ],
    ids=[
        "deep-array",
        "deep-object",
        "truncated",
        "nan",
        "nan-value",
        "overflow",
        "lone-surrogate",
        "utf-16",
        "latin-1",
        "empty",
    ],
)
def test_a_settings_file_that_is_not_json_exits_2(
    env: FakeCallingAPI, tmp_path: Path, data: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    assert set_from(tmp_path, data) == EXIT_BAD_INPUT
    line = one_clean_line(capsys.readouterr().err)
    assert line.startswith("d360calling: bad input: ")
    assert "is not JSON" in line or "is not UTF-8 text" in line
    assert env.requests == []


def hours(*weekly: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {
        "calling": {
            "call_hours": {
                "status": "ENABLED",
                "timezone_id": "Europe/Berlin",
                "weekly_operating_hours": list(weekly),
                **more,
            }
        }
    }


def day(name: str = "MONDAY", open_time: str = "0900", close_time: str = "1700") -> dict[str, str]:
    return {"day_of_week": name, "open_time": open_time, "close_time": close_time}


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ([{"calling": {}}], "must hold a JSON object"),
        ("ENABLED", "must hold a JSON object"),
        ({"calling": []}, "must hold a JSON object"),
        ({"calling": {"status": "ENABLED"}, "payload_encryption": {}}, "remove payload_encryption"),
        ({"calling": {"bogus": 1, "status": "ENABLED"}}, "unknown key bogus @ calling"),
        (
            {"calling": {"status": 5}},
            "expected one of ENABLED, DISABLED, got int 5 @ calling.status",
        ),
        ({"calling": {"status": True}}, "got a boolean @ calling.status"),
        ({"calling": {"status": "MAYBE"}}, "expected one of ENABLED, DISABLED"),
        ({"calling": {"call_hours": 5}}, "@ calling.call_hours"),
        (
            {"calling": {"call_hours": {"status": "ENABLED", "timezone_id": 5}}},
            "expected str, got int 5 @ calling.call_hours.timezone_id",
        ),
        (
            {"calling": {"call_hours": {"status": "ENABLED", "weekly_operating_hours": ""}}},
            "expected an array, got str '' @ calling.call_hours.weekly_operating_hours",
        ),
        (
            {"calling": {"call_hours": {"status": "ENABLED", "weekly_operating_hours": {}}}},
            "expected an array, got an object",
        ),
        ({"calling": {"call_hours": {"timezone_id": "Europe/Berlin"}}}, "status: required"),
        (hours(day("FUNDAY")), "weekly_operating_hours[0].day_of_week"),
        (hours(day(open_time="25:00")), "weekly_operating_hours[0].open_time: expected HHMM"),
        (hours(day(close_time="2400")), "close_time: expected HHMM, got '2400'"),
        (hours(day(open_time="1700", close_time="0900")), "open_time must be before close_time"),
        (hours(day(), day(open_time="1600", close_time="1800")), "the hours of MONDAY overlap"),
        (
            hours(
                day(close_time="1000"),
                day(open_time="1100", close_time="1200"),
                day("MONDAY", "1300", "1400"),
            ),
            "3 entries for MONDAY, at most 2",
        ),
        (hours(day(), extra=1), "unknown key extra @ calling.call_hours"),
        (
            hours(
                day(),
                holiday_schedule=[{"date": "2026-02-30", "start_time": "0000", "end_time": "2359"}],
            ),
            "holiday_schedule[0].date: expected YYYY-MM-DD",
        ),
        (
            hours(day(), holiday_schedule=[{"date": "2026-12-25", "start_time": "0000"}]),
            "required field missing @ calling.call_hours.holiday_schedule[0].end_time",
        ),
        (
            hours(
                day(),
                holiday_schedule=[{"date": "2026-12-25", "start_time": "1200", "end_time": "0800"}],
            ),
            "start_time must be before end_time",
        ),
        (
            {
                "calling": {
                    "sip": {
                        "status": "ENABLED",
                        "servers": [{"hostname": "sip.example", "port": "5061"}],
                    }
                }
            },
            "expected int, got str '5061' @ calling.sip.servers[0].port",
        ),
        (
            {
                "calling": {
                    "sip": {"status": "ENABLED", "servers": [{"request_uri_user_params": []}]}
                }
            },
            "expected a mapping @ calling.sip.servers[0].request_uri_user_params",
        ),
        ({"calling": {"restrictions": {}}}, "calling.restrictions cannot be updated"),
        (
            {"calling": {"status": "ENABLED", "video": {"status": "ENABLED"}}},
            "one setting per request",
        ),
    ],
)
def test_a_settings_file_that_does_not_fit_exits_2_naming_the_problem(
    env: FakeCallingAPI,
    tmp_path: Path,
    document: Any,
    fragment: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert set_from(tmp_path, json.dumps(document).encode()) == EXIT_BAD_INPUT
    line = one_clean_line(capsys.readouterr().err)
    assert line.startswith("d360calling: bad input: ")
    assert fragment in line
    assert env.requests == []


def test_good_call_hours_and_a_byte_order_mark_are_sent(
    env: FakeCallingAPI, tmp_path: Path
) -> None:
    document = hours(
        day(close_time="1200"),
        day(open_time="1300"),
        day("tuesday"),  # the closed values are read case-insensitively
        holiday_schedule=[{"date": "2026-12-25", "open_time": "0000", "close_time": "2359"}],
    )
    assert set_from(tmp_path, b"\xef\xbb\xbf" + json.dumps(document).encode()) == EXIT_OK
    (sent,) = [r.json for r in env.requests_to("POST", "/calling/settings")]
    call_hours = sent["calling"]["call_hours"]
    assert call_hours["weekly_operating_hours"][2]["day_of_week"] == "TUESDAY"
    assert call_hours["holiday_schedule"] == [
        {"date": "2026-12-25", "start_time": "0000", "end_time": "2359"}
    ]


# -- what the API answers -----------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        *(
            Fault(status=302, headers={"Location": location})
            for location in (
                "mailto:x@example.com",
                "about:blank",
                "urn:x",
                "http://",
                "//",
                "http://[::1",
            )
        ),
        Fault(status=200, body=b"[" * 100_000 + b"]" * 100_000, content_type="application/json"),
        Fault(
            status=200,
            body=b'{"calling":' * 5_000 + b"{}" + b"}" * 5_000,
            content_type="application/json",
        ),
        Fault(status=400, body=b"[" * 100_000, content_type="application/json"),
        Fault(status=200, json={"calling": {"status": 5}}),
        Fault(status=500, body=b"\x1b[2J" + b"x" * 100_000, content_type="text/plain"),
        Fault(drop="before"),
    ],
    ids=[
        "redirect-mailto",
        "redirect-about",
        "redirect-urn",
        "redirect-no-host",
        "redirect-slashes",
        "redirect-bad-url",
        "deep-array",
        "deep-object",
        "deep-error",
        "wrong-type",
        "long-text",
        "dropped",
    ],
)
def test_any_bad_answer_exits_3_or_4_with_one_clean_line(
    env: FakeCallingAPI, fault: Fault, capsys: pytest.CaptureFixture[str]
) -> None:
    env.inject(fault, path="/calling/settings", times=None)
    code = main(["settings", "get", "--max-retries", "0"])
    line = one_clean_line(capsys.readouterr().err)
    if fault.drop is not None:
        assert (code, line.split(":")[1]) == (EXIT_NETWORK_ERROR, " network error")
    else:
        assert (code, line.split(":")[1]) == (EXIT_API_ERROR, " API error")
    assert len(line) <= 1100


def test_an_error_message_cannot_drive_the_terminal_or_show_the_key(
    env: FakeCallingAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    message = f"\x1b]0;owned\x07bad\nkey {API_KEY} \u202eevil"
    env.inject(Fault(status=400, json={"error": {"message": message, "code": 100}}))
    assert main(["settings", "get"]) == EXIT_API_ERROR
    line = one_clean_line(capsys.readouterr().err)
    assert "\\x1b]0;owned\\x07bad key <secret> \\u202eevil" in line
    assert API_KEY not in line


def test_human_output_escapes_what_the_api_sent(
    env: FakeCallingAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    env.inject(
        Fault(status=200, json={"calling": {"status": "ENABLED", "sip": {"status": "\x1b[2J"}}})
    )
    assert main(["settings", "get"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "calling.sip.status: \\x1b[2J" in out


# -- fake-server --------------------------------------------------------------------------


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_fake_server_on_a_port_in_use_exits_2(
    busy_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fake-server", "--port", str(busy_port)]) == EXIT_BAD_INPUT
    line = one_clean_line(capsys.readouterr().err)
    assert line.startswith(f"d360calling: bad input: cannot listen on 127.0.0.1:{busy_port}: ")
    assert "in use" in line


def test_fake_server_on_a_host_that_does_not_resolve_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    asked: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "nowhere.invalid":  # answered here: no lookup leaves the machine
            asked.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    assert main(["fake-server", "--host", "nowhere.invalid", "--port", "0"]) == EXIT_BAD_INPUT
    assert asked == ["nowhere.invalid"]
    line = one_clean_line(capsys.readouterr().err)
    assert line == (
        "d360calling: bad input: cannot listen on nowhere.invalid:0: Name or service not known"
    )


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--port", "99999"], "port 99999 is not in 0-65535"),
        (["--port", "-1"], "port -1 is not in 0-65535"),
        (["--port", "http"], "not a port number: 'http'"),
        (["--host", "bad host!"], "not an IP address or host name"),
        (["--host", "256.1.1.1"], "not an IP address or host name"),
        (["--host", ""], "not an IP address or host name"),
        (["--host", "a" * 64 + ".example"], "not an IP address or host name"),
        (["--answer-window", "nan"], "expected seconds > 0"),
        (["--answer-window", "-5"], "expected seconds > 0"),
        (["--webhook-url", "127.0.0.1:9000/hook"], "expected an http:// or https:// URL"),
        (["--webhook-url", "http://"], "expected an http:// or https:// URL"),
        (["--webhook-secret", ""], "an empty secret"),
    ],
)
def test_fake_server_bad_arguments_exit_2(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["fake-server", *argv])
    assert exited.value.code == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert fragment in err.splitlines()[-1]


# -- secrets ------------------------------------------------------------------------------

COMMANDS = [
    [],
    ["call"],
    ["call", "connect"],
    ["call", "accept"],
    ["permissions"],
    ["settings"],
    ["settings", "set"],
    ["fake-server"],
    ["demo"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_help_never_shows_the_key_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("D360_API_KEY", API_KEY)
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == EXIT_OK
    out = capsys.readouterr().out
    assert "usage: d360calling" in out
    assert API_KEY not in out


@pytest.mark.parametrize(
    "argv",
    [
        ["settings", "get", API_KEY],  # pasted where no argument goes
        [API_KEY, "settings", "get"],  # pasted as the command
        ["--api-key=", API_KEY, "settings", "get"],
    ],
    ids=["extra-argument", "as-command", "after-empty-option"],
)
def test_argparse_errors_never_echo_the_key(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("D360_API_KEY", API_KEY)
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert API_KEY not in captured.err + captured.out


def test_a_key_given_where_a_number_goes_is_not_echoed(
    env: FakeCallingAPI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("D360_API_KEY")
    other = "another-key-9876543210"
    assert main(["--api-key", other, "permissions", other]) == EXIT_BAD_INPUT
    line = one_clean_line(capsys.readouterr().err)
    assert other not in line
    assert "<secret>" in line


def test_fake_server_does_not_repeat_a_given_key() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("D360_")}
    server = subprocess.Popen(
        [sys.executable, "-m", "d360calling", "fake-server", "--port", "0", "--api-key", API_KEY],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert server.stdout is not None
        banner = [server.stdout.readline() for _ in range(2)]
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=10)
    finally:
        server.kill()
        server.communicate()
    assert server.returncode == EXIT_OK, err
    assert banner[0].startswith("fake 360dialog Calling API on http://127.0.0.1:")
    assert banner[1].endswith(" D360_API_KEY=<your --api-key>\n")
    assert API_KEY not in "".join(banner) + out + err
