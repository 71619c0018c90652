"""The command line as a new user meets it (issue 17): the fake server driven by the docs page's
bot (custom header, signing secret, several URLs) and saying what became of failed webhooks,
a banner whose curl lines work, help that lists only what applies, the demo choosing between
the real API and its own fake and printing JSON per step, a closed stdout and signals ending
quietly, sample SDPs, and the 138006 message. Servers and commands run in their own
processes, as a user runs them; all traffic stays on 127.0.0.1."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.server
import importlib
import json
import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from d360calling import sdp
from d360calling._cli import (
    EXIT_API_ERROR,
    EXIT_BAD_INPUT,
    EXIT_BROKEN_PIPE,
    EXIT_OK,
    EXIT_TERMINATED,
    FAKE_ROUTES,
    _demo_target,
    _parser,
    main,
)
from d360calling._demo import run_demo
from d360calling._version import __version__
from d360calling.errors import NoCallPermissionError, error_from_response, error_from_webhook
from d360calling.testing import FakeCallingAPI, WebhookDelivery, sample_offer, serve
from d360calling.testing._runner import DeliveryWatch
from d360calling.webhooks import BackgroundReceiver, WebhookEvent, WebhookReceiver

from .helpers import API_KEY, USER, closed_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
DOCS = (ROOT / "docs" / "cli.md").read_text()
DOCS_BASH: list[str] = re.findall(r"```bash\n(.*?)```", DOCS, re.DOTALL)
WAIT = 20.0  # seconds any one thing may take here before the test fails


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("D360_")}
    return {**env, **extra}


def cli(
    *argv: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "d360calling", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or clean_env(),
        cwd=ROOT,
    )


class Lines:
    """The lines a process writes to one of its pipes, read on a thread, waited for with a
    bound."""

    def __init__(self, stream: Any) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        with stream:  # closed at the end, when the process has gone
            for line in stream:
                self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def join(self) -> None:
        self._thread.join(WAIT)

    def until(self, predicate: Any, timeout: float = WAIT) -> str:
        """The first line (from now on) that ``predicate`` accepts."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no such line within {timeout} s; saw {self.seen}"
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            assert line is not None, f"the stream ended; saw {self.seen}"
            self.seen.append(line)
            if predicate(line):
                return line

    def rest(self, timeout: float = WAIT) -> list[str]:
        """Every line until the stream ends (the process has exited)."""
        self._thread.join(timeout)
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return self.seen
            if line is not None:
                self.seen.append(line)


class Process:
    def __init__(self, argv: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT):
        self.popen = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env or clean_env(),
            cwd=cwd,
        )
        self.out = Lines(self.popen.stdout)
        self.err = Lines(self.popen.stderr)

    def stop(self, sig: int) -> int:
        self.popen.send_signal(sig)
        return self.popen.wait(WAIT)

    def kill(self) -> None:
        """Gone, whatever it was doing, and its pipes closed."""
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(WAIT)
        self.out.join()
        self.err.join()


@contextlib.contextmanager
def fake_server(*options: str, env: dict[str, str] | None = None) -> Iterator[Process]:
    """``d360calling fake-server --port 0 …``, its banner read up to the webhooks line."""
    server = Process(
        [sys.executable, "-m", "d360calling", "fake-server", "--port", "0", *options], env=env
    )
    try:
        server.out.until(lambda line: line.startswith("  webhooks"))
        yield server
    finally:
        server.kill()


def banner_url(server: Process) -> str:
    first = server.out.seen[0]
    match = re.match(r"fake 360dialog Calling API on (http://\S+) \(Ctrl-C to stop\)$", first)
    assert match is not None, first
    return match.group(1)


def curl_lines(server: Process) -> list[str]:
    return [line.strip() for line in server.out.seen if line.strip().startswith("curl ")]


def bash(script: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env=env or clean_env(),
        cwd=ROOT,
    )


class Statuses(http.server.ThreadingHTTPServer):
    """A webhook receiver on 127.0.0.1 that answers each POST with the next of ``statuses``
    (then the last one again) and records the headers it got."""

    daemon_threads = True

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.headers_seen: list[dict[str, str]] = []
        super().__init__(("127.0.0.1", 0), _StatusHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/webhook"

    def __enter__(self) -> Statuses:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class _StatusHandler(http.server.BaseHTTPRequestHandler):
    server: Statuses

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.headers_seen.append(dict(self.headers))
        status = self.server.statuses.pop(0) if len(self.server.statuses) > 1 else 0
        self.send_response(status or self.server.statuses[0])
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


# -- help and options ---------------------------------------------------------------------


def subparsers(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield parser.prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from subparsers(child)


def test_every_option_of_every_command_has_help() -> None:
    missing = [
        f"{prog} {action.option_strings or action.dest}"
        for prog, parser in subparsers(_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction)
        and (not action.help or action.help == argparse.SUPPRESS)
    ]
    assert missing == []


def help_of(command: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == EXIT_OK
    return capsys.readouterr().out


def test_fake_server_help_lists_only_server_options_and_the_fake_routes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = help_of(["fake-server"], capsys)
    for client_only in ("--base-url", "--timeout", "--max-retries", "--json"):
        assert client_only not in out
    for option in ("--host", "--port", "--api-key", "--webhook-url", "--webhook-secret"):
        assert option in out
    assert "--webhook-header NAME:VALUE" in out
    for _, path, _, what in FAKE_ROUTES:
        assert f"{path}: {what}" in out
    assert "D360-API-KEY" in out
    assert "Content-Type: application/json" in out


@pytest.mark.parametrize(
    ("command", "absent"),
    [
        (["sdp", "sample"], ("--api-key", "--base-url", "--json", "--timeout")),
        (["demo"], ("--webhook-url",)),
        (["settings", "get"], ("--webhook-url", "--wa-id")),
    ],
)
def test_each_help_lists_what_applies(
    command: list[str], absent: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    out = help_of(command, capsys)
    for option in absent:
        assert option not in out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--base-url", "http://127.0.0.1:1", "fake-server"], "--base-url does not apply"),
        (["--json", "fake-server"], "--json does not apply to fake-server"),
        (["--api-key", API_KEY, "sdp", "sample", "--offer"], "--api-key does not apply to sdp"),
        (["demo", "--media", "--json"], "demo --media has no --json"),
        (["sdp", "sample", "--offer", "--to", "x.sdp"], "--to goes with --answer"),
        (["fake-server", "--webhook-header", "X-A:1", "--webhook-header", "x-a:2"], "twice"),
        (["fake-server", "--webhook-header", "Content-Type:text/plain"], "application/json"),
        (["fake-server", "--webhook-header", "x-360dialog-signature:x"], "--webhook-secret"),
    ],
)
def test_options_that_do_nothing_are_refused(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert fragment in err
    assert API_KEY not in err


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("Bad Name:secret-value-1", "not a header name"),
        ("X-Secret:secret\x01value-1", "must be printable ASCII"),
        ("X-Secret:", "expected NAME:VALUE"),
    ],
)
def test_a_bad_webhook_header_exits_2_without_showing_its_value(
    value: str, fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["fake-server", "--webhook-header", value])
    assert exited.value.code == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert fragment in err
    assert "value-1" not in err


# -- the 138006 message -------------------------------------------------------------------


def test_no_call_permission_says_each_thing_once_and_no_http_status(
    api: FakeCallingAPI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    user = "4915100000077"  # no permission
    monkeypatch.setenv("D360_API_KEY", API_KEY)
    monkeypatch.setenv("D360_BASE_URL", api.url)
    offer = tmp_path / "offer.sdp"
    offer.write_text(sample_offer())
    assert main(["call", "connect", user, "--sdp", str(offer)]) == EXIT_API_ERROR
    err = capsys.readouterr().err
    assert err == (
        f"d360calling: API error: No approved call permission from {user} "
        "(code 138006, POST /calling/calls); ask the user for call permission first\n"
    )


def test_the_138006_text_keeps_what_differs_and_drops_what_repeats() -> None:
    def text(body: dict[str, Any], status: int = 401) -> str:
        error = error_from_response(
            status, {}, json.dumps(body).encode(), method="POST", path="/calling/calls"
        )
        assert isinstance(error, NoCallPermissionError)
        assert error.status_code == status  # kept on the error, left out of the text
        return str(error)

    meta = {"code": 138006, "message": "(#138006) No approved call permission from the recipient"}
    assert text({"error": meta}) == (
        "No approved call permission from the recipient (code 138006, POST /calling/calls); "
        "ask the user for call permission first"
    )
    assert text({"error": {**meta, "error_subcode": 7}}).count("138006") == 1
    assert "subcode 7" in text({"error": {**meta, "error_subcode": 7}})
    other = {"code": 138006, "message": "Not allowed", "error_data": {"details": "user opted out"}}
    assert text({"error": other}).startswith("Not allowed: user opted out (code 138006")
    assert text({"success": False, "error": {"code": 138006}}, status=200).startswith(
        "No approved call permission from the user (code 138006"
    )
    webhook = str(error_from_webhook(138006, "No permission", "d", field="calls"))
    assert webhook.startswith("No permission: d (code 138006, in a calls webhook)")
    assert "HTTP" not in webhook


# -- the fake server: webhooks --------------------------------------------------------------

SECRET = "dx-signing-secret-1"
HEADER = ("X-Webhook-Secret", "dx-header-value-1")


def test_the_fake_server_authenticates_webhooks_every_way_a_receiver_checks() -> None:
    """Signing secret, custom header and a second header, to two receivers in turn: each
    receiver accepts each delivery, and the banner names the header, never its value."""
    received: list[list[WebhookEvent]] = [[], []]
    receivers = []
    for events in received:

        async def record(event: WebhookEvent, events: list[WebhookEvent] = events) -> None:
            events.append(event)

        receivers.append(
            WebhookReceiver(on_event=record, signing_secret=SECRET, secret_header=HEADER)
        )
    with BackgroundReceiver(receivers[0]) as one, BackgroundReceiver(receivers[1]) as two:
        options = ["--webhook-url", one.url, "--webhook-url", two.url]
        options += ["--webhook-secret", SECRET, "--webhook-header", ":".join(HEADER)]
        options += ["--webhook-header", "X-Tenant:acme"]
        with fake_server(*options) as server:
            webhooks_line = server.out.seen[-1]
            assert webhooks_line == (
                f"  webhooks go to {one.url}, {two.url} (signed with x-360dialog-signature, "
                "with the header X-Webhook-Secret, with the header X-Tenant)"
            )
            calls = [bash(curl_lines(server)[0]) for _ in range(2)]
            assert all(json.loads(c.stdout)["state"] == "ringing" for c in calls)
            assert wait_until(lambda: all(received), WAIT)
            assert server.stop(signal.SIGTERM) == EXIT_OK
            assert server.err.rest() == []  # no failed delivery to tell of
    ids = {json.loads(c.stdout)["id"] for c in calls}
    assert {getattr(events[0], "call_id", None) for events in received} == ids
    assert HEADER[1] not in "\n".join(server.out.seen)
    assert SECRET not in "\n".join(server.out.seen)


def test_the_fake_server_prints_each_failed_delivery_attempt() -> None:
    with Statuses(401) as receiver, fake_server("--webhook-url", receiver.url) as server:
        warning = server.out.until(lambda line: True)  # the line after "webhooks go to"
        assert warning.startswith("  they carry no authentication, so a WebhookReceiver")
        (call,) = [json.loads(bash(curl_lines(server)[0]).stdout)]
        what = f"webhook #1 (connect {call['id']}) to {receiver.url} failed: HTTP 401"
        assert server.err.until(lambda line: "attempt 1" in line) == (
            f"{what} (attempt 1 of 3; retrying)"
        )
        hint = server.err.until(lambda line: True)
        assert hint.startswith("  401: the receiver refused the webhook's authentication")
        assert "--webhook-header NAME:VALUE" in hint
        assert server.err.until(lambda line: "attempt 2" in line) == (
            f"{what} (attempt 2 of 3; retrying)"
        )
        assert server.err.until(lambda line: "attempt 3" in line) == (
            f"{what} (attempt 3 of 3; given up)"
        )
        assert server.stop(signal.SIGINT) == EXIT_OK
        assert len(receiver.headers_seen) == 3
        assert len(server.err.rest()) == 4  # three attempts and the hint, once


def test_the_fake_server_tells_a_delivery_that_got_through_after_failing() -> None:
    """The first receiver is down: the retry goes to the second, which takes it."""
    down = f"http://127.0.0.1:{closed_port()}/webhook"  # nothing listens: refused
    with Statuses(200) as receiver:
        with fake_server("--webhook-url", down, "--webhook-url", receiver.url) as server:
            (call,) = [json.loads(bash(curl_lines(server)[0]).stdout)]
            what = f"webhook #1 (connect {call['id']})"
            first = server.err.until(lambda line: "attempt 1" in line)
            # The address once, and why once: not aiohttp's text, which repeats it twice more.
            assert (
                first == f"{what} to {down} failed: connection refused (attempt 1 of 3; retrying)"
            )
            assert server.err.until(lambda line: "delivered" in line) == (
                f"{what} delivered to {receiver.url} on attempt 2 of 3"
            )
            assert server.stop(signal.SIGTERM) == EXIT_OK
            assert len(server.err.rest()) == 2
        assert len(receiver.headers_seen) == 1


def test_the_banner_curl_lines_work_as_printed() -> None:
    with fake_server() as server:
        call_in, hang_up = curl_lines(server)
        assert "-H 'D360-API-KEY: fake-d360-api-key'" in call_in
        assert "-H 'Content-Type: application/json'" in call_in
        called = bash(call_in)
        assert called.returncode == 0, called.stderr
        call = json.loads(called.stdout)
        assert (call["direction"], call["user"], call["state"]) == (
            "USER_INITIATED",
            "4915112345678",
            "ringing",
        )
        ended = bash(hang_up.replace("CALL_ID", call["id"]))
        assert json.loads(ended.stdout)["state"] == "ended"
        assert server.stop(signal.SIGINT) == EXIT_OK


def test_with_a_key_of_its_own_the_banner_curl_lines_read_it_from_the_environment() -> None:
    with fake_server("--api-key", API_KEY) as server:
        call_in, _ = curl_lines(server)
        assert API_KEY not in "\n".join(server.out.seen)
        assert '-H "D360-API-KEY: $D360_API_KEY"' in call_in
        called = bash(call_in, env=clean_env(D360_API_KEY=API_KEY))
        assert json.loads(called.stdout)["state"] == "ringing"
        refused = bash(call_in)  # without the key exported
        assert json.loads(refused.stdout) == {"error": "Invalid API key"}
        server.stop(signal.SIGTERM)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_fake_server_cleanly(sig: signal.Signals) -> None:
    with fake_server() as server:
        assert server.stop(sig) == EXIT_OK
        assert server.err.rest() == []  # no traceback, nothing at all


# -- the routes the docs and the help list ------------------------------------------------


def _request(fake: FakeCallingAPI, method: str, path: str, body: Any = None) -> Any:
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    headers = {"D360-API-KEY": fake.api_key}
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(fake.url + path, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=WAIT) as reply:
        assert reply.status == 200
        return json.loads(reply.read())


def test_every_documented_fake_route_answers_200_as_documented() -> None:
    """Each route of the help and the docs, called as they say (the key, a JSON body), in a
    story that gives each one something to act on."""
    done: list[tuple[str, str]] = []
    caller, callee, other = "4915100000081", "4915100000082", "4915100000083"

    def do(method: str, template: str, body: Any = None, **ids: str) -> Any:
        done.append((method, template))
        return _request(fake, method, template.format(**ids), body)

    with FakeCallingAPI() as fake, fake.client() as client:
        do("POST", "/_fake/users", {"user": caller, "name": "Ada"})
        do("POST", "/_fake/messages", {"from": caller, "text": "hi"})
        do("POST", "/_fake/templates", {"name": "call_ok", "body_text": "May we call you?"})
        inbound = do("POST", "/_fake/calls", {"from": caller})["id"]
        do("GET", "/_fake/calls")
        do("POST", "/_fake/calls/{id}/hangup", id=inbound)
        _request(fake, "POST", "/calling/settings", {"calling": {"voicemail": {
            "status": "ENABLED", "triggers": ["TIMEOUT"]}}})  # fmt: skip
        missed = do("POST", "/_fake/calls", {"from": caller})["id"]
        do("POST", "/_fake/calls/{id}/ring-out", id=missed)
        media = do("POST", "/_fake/calls/{id}/voicemail", id=missed)["media_id"]
        do("GET", "/_fake/media/{id}", id=media)
        do("POST", "/_fake/permissions/{user}", {"permanent": False}, user=callee)
        answered = client.connect_call(callee, sample_offer("a")).call_id
        do("POST", "/_fake/calls/{id}/answer", {}, id=answered)
        client.terminate_call(answered)  # one call with a user at a time
        declined = client.connect_call(callee, sample_offer("d")).call_id
        do("POST", "/_fake/calls/{id}/decline", id=declined)
        client.send_call_permission_request(caller, body="May we call you?")
        do("POST", "/_fake/permissions/{user}/grant", user=caller)
        do("POST", "/_fake/messages", {"from": other, "text": "hi"})
        client.send_call_permission_request(other, body="May we call you?")
        do("POST", "/_fake/permissions/{user}/decline", user=other)
        do("POST", "/_fake/permissions/{user}/revoke", user=caller)
        button = client.send_call_button(caller, "Talk to us", "Call").message_id
        do("POST", "/_fake/messages/{id}/press", {}, id=button)
        do("GET", "/_fake/messages")
    assert sorted(set(done)) == sorted((method, path) for method, path, _, _ in FAKE_ROUTES)


def test_the_docs_list_the_same_routes_as_the_help() -> None:
    rows = re.findall(r"^\| (GET|POST) \| `([^`]+)` \| ([^|]*)\| ([^|]+) \|$", DOCS, re.M)
    documented = [(m, p, b.strip().strip("`"), w.strip()) for m, p, b, w in rows]
    assert documented == list(FAKE_ROUTES)


def test_the_docs_pages_one_python_block_is_the_bot_run_here() -> None:
    # tests/test_docs.py leaves this page to this module: its one Python block is the bot
    # that the fake-server session below drives.
    assert DOCS.count("```python") == 1
    assert "def make_app(" in docs_bot(8080)


# -- the docs' sessions -------------------------------------------------------------------


def test_the_docs_command_line_session_runs(tmp_path: Path) -> None:
    (session,) = [b for b in DOCS_BASH if "sdp sample --offer > offer.sdp" in b]
    script = session.replace("8360", str(closed_port()))
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=clean_env(PATH=f"{sysconfig.get_path('scripts')}{os.pathsep}{os.environ['PATH']}"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "settings updated" in out
    assert '"callback_permission_status": "ENABLED"' in out
    assert "permission: no_permission" in out
    assert out.rstrip().endswith("exit code 3")
    assert (
        "d360calling: API error: No approved call permission from 4915112345678 (code 138006, "
        "POST /calling/calls); ask the user for call permission first"
    ) in result.stderr
    assert "Traceback" not in result.stderr
    assert sdp.check((tmp_path / "offer.sdp").read_bytes().decode(), role="offer") == []


def docs_bot(port: int) -> str:
    """The page's bot, as a user saves it as bot.py, on ``port`` (on loopback only here)."""
    blocks: list[str] = re.findall(r"```python\n(.*?)```", DOCS, re.DOTALL)
    (bot,) = blocks
    assert '"0.0.0.0", 8080' in bot
    return bot.replace('"0.0.0.0", 8080', f'"127.0.0.1", {port}')


def docs_block(marker: str) -> str:
    (block,) = [b for b in DOCS_BASH if marker in b]
    return block.strip()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_the_readme_bot_answers_the_fake_servers_call_and_stops_cleanly(
    sig: signal.Signals, tmp_path: Path
) -> None:
    """The docs' three terminals: the fake server with the bot's header, the bot, the user's
    curl lines; then the signal ends the bot with no traceback."""
    port = closed_port()
    (tmp_path / "bot.py").write_text(docs_bot(port))
    serve_line = docs_block("fake-server --port 8360 --webhook-url")
    argv = shlex.split(serve_line.replace("8360", "0").replace("8080", str(port)))
    assert argv[:2] == ["d360calling", "fake-server"]
    server = Process([sys.executable, "-m", "d360calling", *argv[1:]])
    bot = None
    try:
        server.out.until(lambda line: line.startswith("  webhooks"))
        url = banner_url(server)
        assert "with the header X-Webhook-Secret" in server.out.seen[-1]
        env_line, _, command = docs_block("python bot.py").rpartition(" python ")
        env = dict(pair.split("=", 1) for pair in shlex.split(env_line))
        assert env == {
            "D360_BASE_URL": "http://127.0.0.1:8360",
            "D360_API_KEY": "fake-d360-api-key",
        }
        env["D360_BASE_URL"] = url
        env["PYTHONUNBUFFERED"] = "1"  # its lines as they are printed, not at its exit
        bot = Process([sys.executable, *shlex.split(command)], clean_env(**env), cwd=tmp_path)
        assert wait_until(lambda: _listening(port), WAIT), bot.err.rest()
        call_in, hang_up = (
            docs_block('"from": "4915112345678"').replace("http://127.0.0.1:8360", url).splitlines()
        )
        call = json.loads(bash(call_in).stdout)
        answered = bot.out.until(lambda line: line.startswith("answered"), WAIT)
        assert answered == f"answered {call['id']} from 4915112345678"
        ended = json.loads(bash(hang_up.replace("CALL_ID", call["id"])).stdout)
        assert ended["state"] == "ended"
        assert bot.out.until(lambda line: line.startswith("ended")).startswith(
            f"ended {call['id']} COMPLETED"
        )
        assert bot.stop(sig) == 0
        assert bot.err.rest() == []  # no traceback
        assert server.stop(sig) == EXIT_OK
        assert server.err.rest() == []  # every webhook got through
    finally:
        server.kill()
        if bot is not None:
            bot.kill()


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


# -- the delivery watch, step by step -------------------------------------------------------


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


class Log(list[WebhookDelivery]):
    dropped = 0


def delivery() -> WebhookDelivery:
    payload = {
        "entry": [{"changes": [{"value": {"calls": [{"id": "wacid.1", "event": "connect"}]}}]}]
    }
    return WebhookDelivery("calls", payload, b"{}")


def failed(d: WebhookDelivery, status: int | None = None, error: str | None = None) -> None:
    """An attempt ends: a new result object, as the fake stores one."""
    d.status = None if status is None else int(str(status))  # a fresh int object
    d.error = None if error is None else "".join(error)  # a fresh str object


def started(d: WebhookDelivery, url: str) -> None:
    d.attempts += 1
    d.url = url


def notes_of(watch: DeliveryWatch) -> list[tuple[int, str | None, int | None, str | None, bool]]:
    return [(n.attempt, n.url, n.status, n.error, n.final) for n in watch.poll()]


def test_the_watch_tells_each_attempt_once_by_its_own_url() -> None:
    log, clock = Log(), Clock()
    watch = DeliveryWatch(log, attempts=3, attempt_timeout=10, clock=clock)
    d = delivery()
    log.append(d)
    assert notes_of(watch) == []  # waiting
    started(d, "http://a/")
    assert notes_of(watch) == []  # in flight
    failed(d, error="ClientConnectorError: refused")
    assert notes_of(watch) == [(1, "http://a/", None, "ClientConnectorError: refused", False)]
    assert notes_of(watch) == []  # the pause: nothing new
    started(d, "http://b/")
    assert notes_of(watch) == []  # attempt 2 in flight: the result shown is still attempt 1's
    failed(d, error="ClientConnectorError: refused")  # equal, but a new result
    assert notes_of(watch) == [(2, "http://b/", None, "ClientConnectorError: refused", False)]
    started(d, "http://a/")
    d.status, d.error, d.delivered = 200, None, True
    (note,) = watch.poll()
    assert (note.attempt, note.url, note.delivered, note.final) == (3, "http://a/", True, True)
    assert note.number == 1
    assert watch.poll() == []  # no longer watched


def test_a_result_object_shared_with_the_attempt_before_waits_for_proof() -> None:
    log, clock = Log(), Clock()
    watch = DeliveryWatch(log, attempts=3, attempt_timeout=10, clock=clock)
    d = delivery()
    log.append(d)
    started(d, "http://a/")
    same = 401
    d.status = same
    assert [n.attempt for n in watch.poll()] == [1]
    started(d, "http://a/")
    d.status = same  # the very object again: cannot be told from attempt 1's
    assert watch.poll() == []
    clock.now = 10.5  # not yet past the attempt's bound
    assert watch.poll() == []
    started(d, "http://a/")  # attempt 3 began: attempt 2 had ended, with that result
    assert [(n.attempt, n.status) for n in watch.poll()] == [(2, 401)]
    clock.now += 11.5  # past the bound: attempt 3 has ended, with the same result
    assert [(n.attempt, n.final) for n in watch.poll()] == [(3, True)]
    assert watch.poll() == []


def test_the_watch_tells_a_webhook_given_up_unsent_and_skips_the_delivered_ones() -> None:
    log, clock = Log(), Clock()
    watch = DeliveryWatch(log, attempts=3, attempt_timeout=10, clock=clock)
    ok, dropped = delivery(), delivery()
    log += [ok, dropped]
    started(ok, "http://a/")
    ok.status, ok.delivered = 200, True
    dropped.error = "not sent: more than max_recorded_webhooks were waiting"
    (note,) = watch.poll()
    assert (note.number, note.attempt, note.final, note.url) == (2, 0, True, None)
    assert note.error == dropped.error


def test_the_watch_numbers_webhooks_past_those_the_log_dropped() -> None:
    log, clock = Log(), Clock()
    watch = DeliveryWatch(log, attempts=1, attempt_timeout=10, clock=clock)
    d = delivery()
    log.append(d)
    log.dropped = 4  # four older ones were pushed out before the watch saw them
    started(d, "http://a/")
    failed(d, status=500)
    (note,) = watch.poll()
    assert (note.number, note.attempt, note.final) == (5, 1, True)


# -- the demo -----------------------------------------------------------------------------


def namespace(**given: str) -> argparse.Namespace:
    return argparse.Namespace(**given)


@pytest.mark.parametrize(
    ("given", "environment", "real", "reason"),
    [
        ({}, {}, False, "no API key given"),
        ({}, {"D360_BASE_URL": "https://waba-v2.360dialog.io"}, False, "no API key given"),
        (
            {},
            {"D360_API_KEY": API_KEY, "D360_BASE_URL": "http://127.0.0.1:8360"},
            False,
            "D360_BASE_URL http://127.0.0.1:8360 is on this machine, not the real API",
        ),
        (
            {"api_key": API_KEY, "base_url": "http://localhost:8360"},
            {},
            False,
            "--base-url http://localhost:8360 is on this machine, not the real API",
        ),
        ({"api_key": API_KEY, "base_url": "http://[::1]:1"}, {}, False, "on this machine"),
        ({"api_key": API_KEY}, {}, True, "an API key and https://waba-v2.360dialog.io"),
        (
            {},
            {"D360_API_KEY": API_KEY, "D360_BASE_URL": "https://api.example.test"},
            True,
            "an API key and https://api.example.test",
        ),
    ],
)
def test_the_demo_uses_the_real_api_only_with_a_key_and_a_url_off_this_machine(
    given: dict[str, str],
    environment: dict[str, str],
    real: bool,
    reason: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("D360_API_KEY", "D360_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    options, why = _demo_target(namespace(**given))
    assert (options is not None, reason in why) == (real, True), why


def test_the_demo_after_the_fake_server_exports_runs_its_own_fake_and_says_why() -> None:
    gone = f"http://127.0.0.1:{closed_port()}"  # what the session exported; the fake is gone
    result = cli("demo", env=clean_env(D360_API_KEY="fake-d360-api-key", D360_BASE_URL=gone))
    assert result.returncode == EXIT_OK, result.stderr
    first = result.stdout.splitlines()[0]
    assert first == (
        f"d360calling demo on the built-in fake API (D360_BASE_URL {gone} is on this machine, "
        "not the real API)"
    )
    assert "Done: 2 calls completed" in result.stdout


def test_demo_json_prints_one_object_per_step() -> None:
    result = cli("demo", "--json")
    assert result.returncode == EXIT_OK, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records[0]["type"] == "start"
    assert (records[0]["api"], records[0]["reason"]) == ("fake", "no API key given")
    assert [r["call"] for r in records if r["type"] == "call"] == ["inbound", "outbound"]
    steps = [r for r in records if r["type"] == "step"]
    assert {r["who"] for r in steps} == {"user", "business", "webhook", "fake"}
    assert all(isinstance(r["elapsed"], float) and r["call"] for r in steps)
    assert any(r["text"].startswith("pre_accept → 200") for r in steps)
    assert [r for r in steps if r["who"] == "webhook" and "call_id" in r]
    assert records[-1] == {
        "type": "done",
        "text": "Done: 2 calls completed, 7 API requests, 7 webhooks, 0 errors.",
        "calls": 2,
        "api_requests": 7,
        "webhooks": 7,
        "errors": 0,
    }


def test_demo_json_against_an_api_only_reads(
    api: FakeCallingAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    options = api.client_options()
    assert asyncio.run(run_demo(options, wa_id=USER, reason="test", as_json=True)) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["type"] for r in records] == ["start", "settings", "settings", "permission", "done"]
    assert (records[0]["api"], records[0]["base_url"]) == ("real", api.url)
    assert records[1]["status"] == "ENABLED"
    assert (records[3]["wa_id"], records[3]["can_start_call"]) == (USER, True)
    assert [r.method for r in api.requests] == ["GET", "GET"]


# -- a closed stdout ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["demo"], ["demo", "--json"], ["sdp", "sample", "--offer"], ["fake-server", "--port", "0"]],
    ids=" ".join,
)
def test_a_closed_stdout_ends_quietly_with_141(argv: list[str]) -> None:
    """The reading end of the pipe is closed before the command writes, as `| head` leaves
    it: the first write fails, and the command ends without a word."""
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "d360calling", *argv],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            env=clean_env(),
            cwd=ROOT,
        )
    finally:
        os.close(write)
    assert (result.returncode, result.stderr) == (EXIT_BROKEN_PIPE, "")


def test_demo_into_head_ends_quietly() -> None:
    result = bash(f"set -o pipefail; {shlex.quote(sys.executable)} -m d360calling demo | head -2")
    assert len(result.stdout.splitlines()) == 2
    assert result.stderr == ""
    assert result.returncode in (EXIT_OK, EXIT_BROKEN_PIPE)  # 0 if it all fit in the pipe


# -- call place and SIGTERM -----------------------------------------------------------------


def test_sigterm_hangs_up_a_placed_call_and_exits_143(tmp_path: Path) -> None:
    port = closed_port()
    offer = tmp_path / "offer.sdp"
    offer.write_text(sample_offer())
    with FakeCallingAPI(
        api_key=API_KEY,
        webhook_url=f"http://127.0.0.1:{port}/webhook",
        webhook_signing_secret=SECRET,
    ) as fake:
        fake.grant_permission(USER, notify=False)
        argv = ["call", "place", USER, "--sdp", str(offer), "--listen", f"127.0.0.1:{port}"]
        placing = Process(
            [sys.executable, "-m", "d360calling", *argv, "--webhook-secret", SECRET],
            clean_env(D360_API_KEY=API_KEY, D360_BASE_URL=fake.url),
        )
        try:
            line = placing.out.until(lambda line: line.endswith(f"ringing {USER}"))
            call_id = line.split(":")[0]
            assert placing.stop(signal.SIGTERM) == EXIT_TERMINATED
            assert placing.err.rest() == ["terminated"]
        finally:
            placing.kill()
        assert fake.calls[call_id].actions == ["connect", "terminate"]


# -- sample SDPs, --version ---------------------------------------------------------------


def test_sdp_sample_makes_an_offer_and_an_answer_the_api_takes(
    api: FakeCallingAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = subprocess.run(
        [sys.executable, "-m", "d360calling", "sdp", "sample", "--offer"],
        capture_output=True,
        timeout=60,
        env=clean_env(),
        cwd=ROOT,
        check=True,
    )
    offer = made.stdout.decode()
    assert offer.startswith("v=0\r\n")
    assert offer.count("\r\n") == offer.count("\n")  # CRLF line ends, as the API takes them
    assert sdp.check(offer, role="offer") == []
    (tmp_path / "offer.sdp").write_bytes(made.stdout)
    answered = subprocess.run(
        [sys.executable, "-m", "d360calling", "sdp", "sample", "--answer", "--to", "-"],
        input=made.stdout,
        capture_output=True,
        timeout=60,
        env=clean_env(),
        cwd=ROOT,
        check=True,
    )
    answer = answered.stdout.decode()
    assert sdp.check(answer, role="answer", offer=offer) == []
    monkeypatch.setenv("D360_API_KEY", API_KEY)
    monkeypatch.setenv("D360_BASE_URL", api.url)
    assert main(["call", "connect", USER, "--sdp", str(tmp_path / "offer.sdp")]) == EXIT_OK
    (call,) = api.calls.values()
    assert call.offer_sdp == offer


def test_python_m_d360calling_version() -> None:
    result = cli("--version")
    assert (result.returncode, result.stdout) == (EXIT_OK, f"d360calling {__version__}\n")


def test_importing_the_main_module_runs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "d360calling.__main__", raising=False)
    module = importlib.import_module("d360calling.__main__")  # no SystemExit
    assert module.main is main


@pytest.mark.asyncio
async def test_the_docs_bot_answers_an_inbound_call_and_refuses_forged_webhooks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    namespace: dict[str, Any] = {"__name__": "docs"}
    exec(compile(docs_bot(8080), "docs/cli.md bot", "exec"), namespace)
    headers = {"X-Webhook-Secret": "change-me"}
    async with FakeCallingAPI(webhook_headers=headers) as fake, fake.async_client() as client:
        app = namespace["make_app"](client)
        runner, port = await serve(app)
        try:
            fake.webhook_url = f"http://127.0.0.1:{port}/webhook"
            call = fake.user_calls("4915100000001")
            assert await _eventually(lambda: call.state == "accepted")
            fake.user_hangs_up(call.id)
            await fake.drain_webhooks()
            forged = FakeCallingAPI(webhook_url=fake.webhook_url)  # no secret header
            async with forged:
                intruder = forged.user_calls("4915100000002", name="Mallory")
                await forged.drain_webhooks()
            assert forged.webhooks[0].status == 401
            assert intruder.actions == []
        finally:
            await runner.cleanup()
    out = capsys.readouterr().out
    assert f"answered {call.id} from 4915100000001" in out
    assert f"ended {call.id} COMPLETED" in out


async def _eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    for _ in range(int(timeout / 0.01)):  # polled: the state lives in the fake, not in an event
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()
