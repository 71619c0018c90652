"""The command line: a test per subcommand and per exit code, against the fake API; the demo
and the console script in their own processes, as a user runs them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

import pytest

from d360calling._cli import (
    EXIT_API_ERROR,
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_NETWORK_ERROR,
    EXIT_NO,
    EXIT_OK,
    main,
)
from d360calling.testing import FakeCallingAPI, MessageKind, sample_answer, sample_offer

from .helpers import API_KEY, USER, closed_port, wait_until

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def env(api: FakeCallingAPI, monkeypatch: pytest.MonkeyPatch) -> FakeCallingAPI:
    monkeypatch.setenv("D360_API_KEY", API_KEY)
    monkeypatch.setenv("D360_BASE_URL", api.url)
    return api


def sdp_file(tmp_path: Path, sdp: str) -> str:
    path = tmp_path / "session.sdp"
    path.write_text(sdp.replace("\r\n", "\n"))  # as an editor saves it: LF line ends
    return str(path)


def test_call_connect(
    env: FakeCallingAPI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    offer = sample_offer()
    code = main(
        ["call", "connect", USER, "--sdp", sdp_file(tmp_path, offer), "--callback-data", "o-1"]
    )
    assert code == EXIT_OK
    (call,) = env.calls.values()
    assert capsys.readouterr().out.strip() == f"{call.id}: ringing {USER}"
    assert call.offer_sdp == offer  # CRLF restored
    assert call.biz_opaque_callback_data == "o-1"


def test_call_pre_accept_accept_and_terminate(
    env: FakeCallingAPI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    call = env.user_calls("4915100000001")
    answer = sdp_file(tmp_path, sample_answer())
    assert main(["call", "pre-accept", call.id, "--sdp", answer]) == EXIT_OK
    assert main(["call", "accept", call.id, "--sdp", answer, "--json"]) == EXIT_OK
    assert main(["call", "terminate", call.id]) == EXIT_OK
    out = capsys.readouterr().out
    assert f"{call.id}: pre-accept ok" in out
    assert json.loads(out[out.index("{") : out.index("}") + 1]) == {
        "messaging_product": "whatsapp",
        "success": True,
    }
    assert f"{call.id}: terminate ok" in out
    assert (call.actions, call.end_reason) == (["pre_accept", "accept", "terminate"], "terminated")


def test_call_reject_reads_the_sdp_from_stdin_for_others(
    env: FakeCallingAPI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    call = env.user_calls("4915100000001")
    assert main(["call", "reject", call.id]) == EXIT_OK
    assert call.end_reason == "rejected"
    other = env.user_calls("4915100000002")
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO(sample_answer()))
    assert main(["call", "accept", other.id, "--sdp", "-"]) == EXIT_OK
    assert other.state == "accepted"


def test_permissions_human_and_json(
    env: FakeCallingAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["permissions", USER]) == EXIT_OK
    human = capsys.readouterr().out
    assert human.startswith("permission: temporary (expires ")
    assert "start_call: allowed [PT24H 0/100]" in human
    assert "send_call_permission_request: allowed [PT24H 0/1, P7D 0/2]" in human
    assert main(["--json", "permissions", "4915100000001"]) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert data["permission"] == {"status": "no_permission"}


def test_settings_get_and_set(
    env: FakeCallingAPI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["settings", "set", "--srtp-key-exchange-protocol", "SDES"]) == EXIT_OK
    assert capsys.readouterr().out.strip() == "settings updated"
    hours = tmp_path / "hours.json"
    hours.write_text(json.dumps({"calling": {"call_hours": {"status": "DISABLED"}}}))
    assert main(["settings", "set", "--file", str(hours)]) == EXIT_OK
    assert main(["settings", "get"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "calling.srtp_key_exchange_protocol: SDES" in out
    assert "calling.call_hours.status: DISABLED" in out
    assert main(["settings", "get", "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["calling"]["status"] == "ENABLED"
    assert [r.json for r in env.requests_to("POST", "/calling/settings")] == [
        {"calling": {"srtp_key_exchange_protocol": "SDES"}},
        {"calling": {"call_hours": {"status": "DISABLED"}}},
    ]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["permissions", "not-a-number"], "phone number"),  # the client's own check
        (["call", "accept", "wacid.X", "--sdp", "/nonexistent.sdp"], "cannot read"),
        (["settings", "set"], "say what to change"),
        (["settings", "set", "--status", "ENABLED", "--call-icon-visibility", "DEFAULT"], "one"),
    ],
)
def test_bad_input_exits_2_and_sends_nothing(
    env: FakeCallingAPI, argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == EXIT_BAD_INPUT
    assert env.requests == []
    err = capsys.readouterr().err
    assert err.startswith("d360calling: bad input: ")
    assert fragment in err


def test_argparse_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as info:
        main(["call", "hold", "wacid.X"])
    assert info.value.code == EXIT_BAD_INPUT


def test_a_missing_api_key_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("D360_API_KEY", raising=False)
    assert main(["settings", "get"]) == EXIT_BAD_INPUT
    assert "no API key" in capsys.readouterr().err


def test_an_api_error_exits_3(env: FakeCallingAPI, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["call", "terminate", "wacid.unknown"]) == EXIT_API_ERROR
    err = capsys.readouterr().err
    assert "Invalid call_id" in err
    assert API_KEY not in err


def test_a_network_error_exits_4(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    argv = ["--api-key", API_KEY, "--base-url", url, "--max-retries", "0", "settings", "get"]
    assert main(argv) == EXIT_NETWORK_ERROR
    assert "network error" in capsys.readouterr().err


# -- in their own processes ---------------------------------------------------------------


def run(
    *argv: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("D360_")}
    return subprocess.run(
        [sys.executable, "-m", "d360calling", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**clean, **(env or {})},
        cwd=ROOT,
    )


def test_demo_runs_on_the_fake_without_a_key() -> None:
    result = run("demo")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "on the built-in fake API" in out
    for step in ("pre_accept → 200", "accept → 200", "status RINGING", "status ACCEPTED"):
        assert step in out
    assert out.count("COMPLETED") == 2
    assert "Done: 2 calls completed, 7 API requests, 7 webhooks, 0 errors." in out
    assert result.stderr == ""


def test_demo_with_a_key_only_reads(
    api: FakeCallingAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    # The command runs this only with a key and a base URL off this machine (a loopback one
    # gets the built-in fake: tests/test_cli_dx.py), so it is called here with the fake's.
    from d360calling._demo import run_demo

    assert asyncio.run(run_demo(api.client_options(), wa_id=USER)) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"d360calling demo against the real API at {api.url} (read-only)")
    assert "calling: ENABLED" in out
    assert f"{USER}: permission temporary, can start a call: True" in out
    assert [r.method for r in api.requests] == ["GET", "GET"]


def test_the_console_script_is_installed() -> None:
    script = Path(sysconfig.get_path("scripts")) / "d360calling"
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert result.stdout.startswith("d360calling ")


def test_ctrl_c_exits_130_and_the_fake_server_stops_cleanly(api: FakeCallingAPI) -> None:
    from d360calling.testing import Fault

    api.inject(Fault(delay=30), path="/calling/settings")
    env = {**os.environ, "D360_API_KEY": API_KEY, "D360_BASE_URL": api.url}
    slow = subprocess.Popen(
        [sys.executable, "-m", "d360calling", "settings", "get"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "d360calling", "fake-server", "--port", str(closed_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert server.stdout is not None
        banner = server.stdout.readline()
        assert banner.startswith("fake 360dialog Calling API on http://127.0.0.1:")
        deadline = time.monotonic() + 10
        while api.in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        for process in (slow, server):
            process.send_signal(signal.SIGINT)
        assert slow.wait(10) == EXIT_INTERRUPTED
        assert server.wait(10) == EXIT_OK
        # One word, not a traceback.
        assert slow.communicate(timeout=10)[1] == "interrupted\n"
        assert "Traceback" not in server.communicate(timeout=10)[1]
    finally:
        for process in (slow, server):
            process.kill()
            process.communicate()


# -- the calling workflow ---------------------------------------------------------------------


def test_permissions_can_call_says_what_to_do_and_exits_5_for_no(
    env: FakeCallingAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["permissions", "can-call", USER]) == EXIT_OK
    assert capsys.readouterr().out.strip() == "may call now"
    assert main(["permissions", "can-call", "4915100000001"]) == EXIT_NO
    out = capsys.readouterr().out.strip()
    assert out == "cannot call now: no permission; next: send permission request"
    assert main(["--json", "permissions", "can-call", "4915100000001"]) == EXIT_NO
    decision = json.loads(capsys.readouterr().out)
    assert (decision["allowed"], decision["reason"]) == (False, "no_permission")


def test_permissions_request_sends_the_message_and_the_reply_grants(
    env: FakeCallingAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    user = "4915100000002"
    env.user_sends_message(user, "hi")  # opens the 24 h window for a free-form request
    code = main(["permissions", "request", user, "--body", "May we call you about order 7?"])
    assert code == EXIT_OK
    message_id = capsys.readouterr().out.split(":")[0]
    (sent,) = [m for m in env.messages.values() if m.kind == MessageKind.CALL_PERMISSION_REQUEST]
    assert sent.id == message_id
    assert env.user_replies_to_permission_request(user, accept=True) == message_id
    assert main(["permissions", "can-call", user]) == EXIT_OK


def test_permissions_request_by_template_and_bad_combinations(
    env: FakeCallingAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    user = "4915100000003"
    argv = ["permissions", "request", user, "--template", "call_ok", "--language", "en_US"]
    assert main([*argv, "--param", "Ada"]) == EXIT_OK
    (sent,) = env.messages.values()
    assert sent.kind == MessageKind.TEMPLATE
    for bad in (
        ["permissions", "request", user, "--template", "call_ok"],  # no language
        ["permissions", "request", user, "--language", "en_US"],  # no template
        ["permissions", user, "--body", "hi"],  # a read takes no body
        ["permissions", "ask", user],
        ["permissions", "request", "not-a-user"],
    ):
        capsys.readouterr()
        assert main(bad) == EXIT_BAD_INPUT, bad
        assert "Traceback" not in capsys.readouterr().err
    assert len(env.messages) == 1  # nothing more was sent


def test_message_call_button_carries_its_payload_to_the_call(
    env: FakeCallingAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    user = "4915100000004"
    env.user_sends_message(user, "hi")
    argv = ["message", "call-button", user, "--body", "Talk to us", "--display-text", "Call"]
    assert main([*argv, "--ttl-minutes", "60", "--payload", "campaign-7"]) == EXIT_OK
    message_id = capsys.readouterr().out.split(":")[0]
    call = env.user_presses_call_button(message_id)
    assert call.cta_payload == "campaign-7"
    assert main([*argv, "--ttl-minutes", "0"]) == EXIT_BAD_INPUT
    with pytest.raises(SystemExit) as info:
        main([*argv, "--ttl-minutes", "soon"])
    assert info.value.code == EXIT_BAD_INPUT


SECRET = "cli-webhook-secret"


def place(argv: list[str], result: list[int]) -> threading.Thread:
    thread = threading.Thread(target=lambda: result.append(main(argv)), daemon=True)
    thread.start()
    return thread


def first_call(fake: FakeCallingAPI, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while not fake.calls:
        assert time.monotonic() < deadline, "call place sent no connect"
        time.sleep(0.01)
    return next(iter(fake.calls))


@pytest.mark.parametrize("answer", [True, False])
def test_call_place_prints_the_real_outcome(
    answer: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = closed_port()
    with FakeCallingAPI(
        api_key=API_KEY,
        webhook_url=f"http://127.0.0.1:{port}/webhook",
        webhook_signing_secret=SECRET,
    ) as fake:
        fake.grant_permission(USER, notify=False)
        monkeypatch.setenv("D360_API_KEY", API_KEY)
        monkeypatch.setenv("D360_BASE_URL", fake.url)
        argv = ["call", "place", USER, "--sdp", sdp_file(tmp_path, sample_offer())]
        argv += ["--listen", f"127.0.0.1:{port}", "--webhook-secret", SECRET, "--hold", "30"]
        result: list[int] = []
        thread = place(argv, result)
        call_id = first_call(fake)
        seen: list[str] = []

        def printed(text: str) -> bool:
            seen.append(capsys.readouterr().out)
            return text in "".join(seen)

        if answer:
            fake.user_answers(call_id)
            assert wait_until(lambda: printed(f"{call_id}: answered"), 10)
            fake.user_hangs_up(call_id)
        else:
            fake.user_declines(call_id)
        thread.join(30)
        assert not thread.is_alive()
    out = "".join(seen) + capsys.readouterr().out
    assert result == [EXIT_OK if answer else EXIT_NO], out
    assert f"{call_id}: ringing {USER}" in out
    assert f"{call_id}: {'ended completed' if answer else 'declined'}" in out
    assert SECRET not in out


def test_call_place_needs_a_way_to_authenticate_its_webhooks(
    env: FakeCallingAPI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["call", "place", USER, "--sdp", sdp_file(tmp_path, sample_offer())]
    assert main(argv) == EXIT_BAD_INPUT
    assert "--webhook-secret or --webhook-header" in capsys.readouterr().err
    assert not env.calls  # nothing was sent
