"""The command line's review fixes: the fake's commands without the testing extra, banner URLs
a client can use whatever --host is, error texts that say each thing once, and Ctrl-C while
fake-server is still starting. Commands run in their own processes; all traffic stays on
loopback."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import ssl
import subprocess
import sys
import textwrap

import aiohttp
import pytest
from aioresponses import aioresponses

from d360calling import AsyncClient
from d360calling._cli import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, main
from d360calling.errors import APIConnectionError
from d360calling.testing import FakeCallingAPI, sample_offer

from .helpers import API_KEY, closed_port
from .test_cli_dx import ROOT, WAIT, Process, bash, clean_env, curl_lines, fake_server


def python(code: str, *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(),
        cwd=ROOT,
    )


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback here")


# -- 1. without the testing extra -----------------------------------------------------------


@pytest.mark.parametrize("argv", [["demo"], ["fake-server", "--port", "0"]])
def test_the_fakes_commands_without_the_testing_extra_exit_2_and_name_it(
    argv: list[str],
) -> None:
    result = python(f"""
        import sys
        sys.modules["jsonschema"] = None  # as after a plain `pip install .`: import fails
        sys.modules["jsonschema_rs"] = None
        from d360calling._cli import main
        sys.exit(main({argv!r}))
    """)
    assert "Traceback" not in result.stderr
    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    assert result.stderr == (
        f"d360calling: {argv[0]} runs the fake API, which needs the testing extra: "
        'pip install "d360calling[testing]"\n'
    )
    assert result.stdout == ""


def test_an_import_error_of_d360calling_itself_is_a_bug_with_its_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from d360calling import _cli

    async def broken(args: object) -> int:
        raise ImportError("cannot import name 'x'", name="d360calling.testing")

    monkeypatch.setattr(_cli, "_run_fake_server", broken)
    with pytest.raises(ImportError, match="cannot import name"):
        main(["fake-server", "--port", "0"])


# -- 2. banner URLs whatever --host is -----------------------------------------------------


@pytest.mark.parametrize(
    ("host", "shown", "everywhere"),
    [
        ("0.0.0.0", "127.0.0.1", True),
        pytest.param("::", "[::1]", True, marks=needs_ipv6),
        pytest.param("::1", "[::1]", False, marks=needs_ipv6),
    ],
)
def test_the_banner_urls_work_for_any_host(host: str, shown: str, everywhere: bool) -> None:
    with fake_server("--host", host) as server:
        first, *rest = server.out.seen
        match = re.fullmatch(r"fake 360dialog Calling API on (\S+) \(Ctrl-C to stop\)", first)
        assert match is not None, first
        url = match.group(1)
        assert re.fullmatch(rf"http://{re.escape(shown)}:\d+", url), url
        notes = [line for line in server.out.seen if "all interfaces" in line]
        assert notes == (
            [f"  listening on all interfaces ({host}); on this machine: {url}"] * everywhere
        )
        (export,) = [line for line in rest if line.strip().startswith("export ")]
        assert f"D360_BASE_URL={url} " in export
        # The curl line as printed reaches it,
        call_in, _ = curl_lines(server)
        called = bash(call_in)
        assert called.returncode == 0, called.stderr
        assert json.loads(called.stdout)["state"] == "ringing"

        # and a client takes the exported URL (it refuses plain http to 0.0.0.0).
        async def settings() -> object:
            async with AsyncClient(api_key="fake-d360-api-key", base_url=url) as client:
                return await client.get_settings()

        assert asyncio.run(settings()) is not None
        assert server.stop(signal.SIGINT) == EXIT_OK


@needs_ipv6
@pytest.mark.asyncio
async def test_the_fakes_url_brackets_an_ipv6_host() -> None:
    fake = FakeCallingAPI(api_key=API_KEY, host="::1")
    await fake.start_async()
    try:
        assert fake.url == f"http://[::1]:{fake.port}"
        async with AsyncClient(api_key=API_KEY, base_url=fake.url) as client:
            assert await client.get_settings() is not None
    finally:
        await fake.close_async()


# -- 3. error texts that say each thing once ------------------------------------------------


@pytest.mark.asyncio
async def test_a_refused_connection_says_so_once() -> None:
    port = closed_port()
    async with AsyncClient(
        api_key=API_KEY, base_url=f"http://127.0.0.1:{port}", max_retries=0
    ) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.get_settings()
    assert type(info.value) is APIConnectionError
    assert info.value.request_may_have_been_sent is False
    assert str(info.value).startswith(
        f"could not connect to http://127.0.0.1:{port}: connection refused"
    )
    assert str(info.value).count(str(port)) == 1
    assert "Connect call failed" not in str(info.value)
    # The cause keeps aiohttp's words, for a report.
    assert info.value.cause is not None
    assert info.value.cause.startswith("ClientConnectorError: ")


def _key(host: str = "127.0.0.1") -> aiohttp.client_reqrep.ConnectionKey:
    return aiohttp.client_reqrep.ConnectionKey(host, 9, True, True, None, None, None)


@pytest.mark.parametrize(
    ("exception", "reason"),
    [
        (
            aiohttp.ClientConnectorError(_key(), ConnectionRefusedError(111, "Connect call f")),
            "connection refused",
        ),
        (
            aiohttp.ClientConnectorError(_key(), socket.gaierror(-2, "Name or service not known")),
            "Name or service not known",
        ),
        # An SSL failure's errno is no OS error: aiohttp's text, which says what failed.
        (
            aiohttp.ClientConnectorSSLError(_key(), ssl.SSLError(1, "wrong version number")),
            "Cannot connect to host 127.0.0.1:9 ssl:",
        ),
        (
            aiohttp.ClientProxyConnectionError(_key("proxy"), ConnectionRefusedError(111, "x")),
            "Cannot connect to host proxy:9",
        ),
    ],
    ids=["refused", "dns", "ssl", "proxy"],
)
@pytest.mark.asyncio
async def test_connection_failures_keep_what_says_more(exception: Exception, reason: str) -> None:
    async with AsyncClient(api_key=API_KEY, base_url="http://127.0.0.1:9", max_retries=0) as c:
        with aioresponses() as mocked:
            mocked.post("http://127.0.0.1:9/calling/calls", exception=exception)
            with pytest.raises(APIConnectionError) as info:
                await c.connect_call("4915112345678", sample_offer())
    assert str(info.value).startswith(f"could not connect to http://127.0.0.1:9: {reason}")
    assert "operation not permitted" not in str(info.value)


@pytest.mark.asyncio
async def test_a_refused_webhook_delivery_says_so_once() -> None:
    port = closed_port()
    fake = FakeCallingAPI(
        api_key=API_KEY,
        webhook_urls=[f"http://127.0.0.1:{port}/hook"],
        webhook_retries=1,
        webhook_retry_delay=0,
    )
    await fake.start_async()
    try:
        fake.user_calls("4915112345678")
        await fake.drain_webhooks(timeout=WAIT)
    finally:
        await fake.close_async()
    (delivery,) = fake.webhooks
    assert (delivery.attempts, delivery.delivered) == (2, False)
    assert delivery.error == "connection refused"


def test_fake_server_on_a_port_in_use_says_in_use_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = int(sock.getsockname()[1])
        assert main(["fake-server", "--port", str(port)]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err == (
        f"d360calling: bad input: cannot listen on 127.0.0.1:{port}: address already in use\n"
    )


# -- 4. Ctrl-C while fake-server starts -----------------------------------------------------

# Sends this process SIGINT at a chosen point of `main`, as a Ctrl-C that lands there.
_INTERRUPTED_AT = """
    import importlib.abc, os, signal, sys
    from d360calling import _cli

    def interrupt():
        os.kill(os.getpid(), signal.SIGINT)

    if {where!r} == "parsing":
        parser = _cli._parser
        def _parser():
            interrupt()
            return parser()
        _cli._parser = _parser
    else:  # while the fake's modules are imported
        class Finder(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "d360calling.testing":
                    sys.meta_path.remove(self)
                    interrupt()
                return None
        sys.meta_path.insert(0, Finder())
    sys.exit(_cli.main(["fake-server", "--port", "0"]))
"""


@pytest.mark.parametrize("where", ["parsing", "importing"])
def test_ctrl_c_before_the_fake_server_serves_exits_130_quietly(where: str) -> None:
    result = python(_INTERRUPTED_AT.format(where=where))
    assert "Traceback" not in result.stderr
    assert (result.returncode, result.stderr) == (EXIT_INTERRUPTED, "interrupted\n")
    assert result.stdout == ""  # no banner: it never served


def test_ctrl_c_as_soon_as_main_runs_ends_quietly() -> None:
    """SIGINT sent the moment `main` is called (the package already imported: an interrupt
    before that is Python's, not the command's): whatever it lands on, no traceback."""
    server = Process(
        [
            sys.executable,
            "-c",
            "import sys; from d360calling._cli import main; print('main', flush=True); "
            "sys.exit(main(['fake-server', '--port', '0']))",
        ]
    )
    try:
        server.out.until(lambda line: line == "main")
        code = server.stop(signal.SIGINT)
        stderr = "\n".join(server.err.rest())
    finally:
        server.kill()
    assert "Traceback" not in stderr
    assert code in (EXIT_OK, EXIT_INTERRUPTED), stderr
