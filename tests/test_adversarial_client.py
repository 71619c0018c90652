"""The client against a hostile or broken server, and hostile inputs: the attacks of the
hardening issue kept in the suite. Every server here is on 127.0.0.1; loops are bounded.

What is held: the response cap is on decoded bytes (a gzip bomb is refused having inflated
no more than the cap); the wire log never holds ICE credentials or SRTP keys; no error chain,
repr, pickle or traceback with locals holds the API key or an aiohttp object with headers;
closing under waiting callers gives ClientClosedError; a redirect without a host is a typed
APIError; both JSON back ends refuse the same documents with JSONDecodeError only; a 2xx that
says it failed is mapped by its code; proxies are used only as configured; and no number
option takes NaN, infinity, a bool or an int too large for a float.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import logging
import math
import pickle
import ssl
import traceback
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, NoReturn

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from d360calling import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AsyncClient,
    BadRequestError,
    Client,
    ClientClosedError,
    ClientOptions,
    InvalidRequestError,
    NoCallPermissionError,
    PermissionDeniedError,
    RateLimitError,
    ResponseDecodeError,
    RetryPolicy,
    SettingsUpdate,
    UnsuccessfulResponseError,
    _json,
)
from d360calling._constants import MAX_ERROR_BODY_BYTES, MAX_RESPONSE_BYTES
from d360calling._redact import Secret, redact_sdp
from d360calling.testing import FakeCallingAPI, Fault, sample_answer, sample_offer, serve

from .helpers import USER, closed_port

# Distinctive, so a search for it finds nothing by accident.
KEY = "sk-adversarial-7f3a9c0e5b1d4862"
CALL = "wacid.HBgLMTY0NjcwNDM1OTUVAgARGBQzQUU0NTNGQkE1"
NO_RETRY = RetryPolicy(initial_delay=0.001, max_delay=0.002)

Handler = Callable[[web.Request], Any]


@asynccontextmanager
async def http_server(handler: Handler) -> AsyncIterator[str]:
    """An aiohttp app on loopback answering every path with ``handler``; yields its URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner, port = await serve(app)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


class RawServer:
    """A TCP server on loopback that reads each request's head (and body, by Content-Length),
    records it, writes ``respond(head)`` and closes: for answers aiohttp would not send."""

    def __init__(self, respond: Callable[[bytes], bytes]) -> None:
        self.respond = respond
        self.heads: list[bytes] = []
        self.url = ""
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head)
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    await reader.readexactly(int(line.split(b":", 1)[1]))
            writer.write(self.respond(head))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def http_answer(status_line: bytes, headers: list[bytes], body: bytes = b"") -> bytes:
    return b"\r\n".join([b"HTTP/1.1 " + status_line, *headers, b"Connection: close", b"", body])


def client_for(url: str, **changes: Any) -> AsyncClient:
    changes.setdefault("max_retries", 0)
    changes.setdefault("retry_policy", NO_RETRY)
    return AsyncClient(api_key=KEY, base_url=url, **changes)


# -- 5: the response cap is on the decoded size ---------------------------------------------


def _gzip_of_zeros(size: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    out = [packer.compress(block) for _ in range(size // len(block))]
    return b"".join([*out, packer.flush()])


BOMB = _gzip_of_zeros(10 * 1024 * 1024)  # 10 MiB of zeros in about 10 KB


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.asyncio
async def test_a_gzip_bomb_is_refused_having_inflated_no_more_than_the_cap(chunked: bool) -> None:
    assert len(BOMB) < 64 * 1024
    seen: list[str | None] = []

    async def bomb(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Accept-Encoding"))
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        if not chunked:
            return web.Response(body=BOMB, headers=headers)
        response = web.StreamResponse(headers=headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(BOMB), 4096):
            await response.write(BOMB[start : start + 4096])
        await response.write_eof()
        return response

    async with http_server(bomb) as url, client_for(url) as client:
        with pytest.raises(
            ResponseDecodeError, match=f"larger than {MAX_RESPONSE_BYTES} bytes"
        ) as info:
            await client.get_settings()
    # The client asked for no compression; and kept only the start of what it inflated.
    assert seen == ["identity"]
    assert info.value.status_code == 200
    assert len(info.value.body) <= 1024
    assert len(pickle.dumps(info.value)) < MAX_ERROR_BODY_BYTES


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(gzip.compress, id="gzip"),
        pytest.param(zlib.compress, id="deflate-zlib"),
        pytest.param(lambda b: zlib.compress(b)[2:-4], id="deflate-raw"),
    ],
)
@pytest.mark.asyncio
async def test_a_server_that_compresses_anyway_is_decoded(encode: Callable[[bytes], bytes]) -> None:
    coding = "gzip" if encode is gzip.compress else "deflate"
    body = encode(json.dumps({"calling": {"status": "ENABLED"}}).encode())

    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Encoding": coding})

    async with http_server(answer) as url, client_for(url) as client:
        result = await client.get_settings()
    assert result.calling is not None
    assert result.calling.status == "ENABLED"


@pytest.mark.parametrize(
    ("coding", "body", "match"),
    [
        ("br", b"\x8b\x02\x80{}\x03", "does not decode"),
        ("gzip, gzip", gzip.compress(gzip.compress(b"{}")), "does not decode"),
        ("gzip", gzip.compress(b'{"calling": {}}')[:-6], "truncated"),
        ("gzip", gzip.compress(b"{}") + b"trailing", "after the end"),
        ("gzip", b"not gzip at all", "cannot be decoded"),
    ],
)
@pytest.mark.asyncio
async def test_an_undecodable_encoding_is_a_typed_error(
    coding: str, body: bytes, match: str
) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Encoding": coding})

    async with http_server(answer) as url, client_for(url) as client:
        with pytest.raises(ResponseDecodeError, match=match):
            await client.get_settings()


@pytest.mark.asyncio
async def test_a_huge_content_length_is_refused_before_reading() -> None:
    answer = http_answer(b"200 OK", [b"Content-Length: 99999999999999999"], b"{}")
    async with RawServer(lambda head: answer) as server, client_for(server.url) as client:
        with pytest.raises(APIError) as info:
            await client.get_settings()
    assert isinstance(info.value, (ResponseDecodeError, APIConnectionError))


@pytest.mark.asyncio
async def test_errors_keep_a_bounded_body_and_bounded_texts() -> None:
    message = "m" * 1_000_000
    body = json.dumps({"error": {"message": message, "code": 100, "type": "t" * 5000}}).encode()

    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=400, body=body, content_type="application/json")

    async with http_server(answer) as url, client_for(url) as client:
        with pytest.raises(BadRequestError) as info:
            await client.get_settings()
    error = info.value
    assert error.code == 100
    assert len(error.body) == MAX_ERROR_BODY_BYTES
    assert len(error.message) == 1000
    assert error.error_type is not None
    assert len(error.error_type) == 1000
    assert len(str(error)) < 1200


@pytest.mark.parametrize(
    "body", [b"<" * 3_000_000, b"<title>" * 400_000, b"<title>x" + b"<" * 3_000_000]
)
@pytest.mark.asyncio
async def test_a_hostile_error_page_is_summarised_in_linear_time(body: bytes) -> None:
    # These took quadratic time in the HTML summary (minutes for a few MB): the bound below is
    # loose, the difference is orders of magnitude.
    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=502, body=body, content_type="text/html")

    loop = asyncio.get_running_loop()
    async with http_server(answer) as url, client_for(url) as client:
        started = loop.time()
        with pytest.raises(APIStatusError, match="non-JSON body"):
            await client.get_settings()
        assert loop.time() - started < 10


# -- 6: the wire log holds no SDP credentials -------------------------------------------------

CRYPTO = "inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:32"
SECRET_SDP = (
    sample_answer("wire")
    + f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 {CRYPTO}\r\n"
    + "a=key-mgmt:mikey AQAFgM0XflABAAAAAAAAAAAAAAYAyO\r\n"
)


def _credentials(sdp: str) -> list[str]:
    values = [line.split(":", 1)[1] for line in sdp.split("\r\n") if line.startswith("a=ice-")]
    return [*values, CRYPTO.removeprefix("inline:"), "AQAFgM0XflABAAAAAAAAAAAAAAYAyO"]


@pytest.mark.parametrize("log_sdp_addresses", [False, True])
@pytest.mark.asyncio
async def test_the_wire_log_redacts_sdp_credentials_in_requests_and_responses(
    caplog: pytest.LogCaptureFixture, log_sdp_addresses: bool
) -> None:
    secrets = _credentials(SECRET_SDP)
    assert len(secrets) == 4

    async def answer(request: web.Request) -> web.Response:
        # An answer carrying an SDP, "/" escaped as Graph does: "\r\n" is escaped in the JSON.
        text = json.dumps({"success": True, "session": {"sdp": SECRET_SDP}})
        return web.Response(text=text.replace("/", "\\/"), content_type="application/json")

    caplog.set_level(logging.DEBUG, logger="d360calling.wire")
    server = http_server(answer)
    async with server as url, client_for(url, log_sdp_addresses=log_sdp_addresses) as client:
        await client.accept_call(CALL, SECRET_SDP)
    lines = [r.getMessage() for r in caplog.records if r.name == "d360calling.wire"]
    assert len(lines) == 2  # the request body and the response body
    for line in lines:
        assert "a=ice-pwd:<redacted>" in line
        assert "a=ice-ufrag:<redacted>" in line
        assert "inline:<redacted>" in line
        assert "a=key-mgmt:<redacted>" in line
        assert "a=setup:active" in line  # the rest stays readable
        for secret in secrets:
            assert secret not in line
        assert ("192.0.2.10" in line) is log_sdp_addresses
        assert KEY not in line


@pytest.mark.parametrize(
    "text",
    [
        "a=ice-pwd:abc/def+ghi\r\na=mid:0",
        '{"sdp":"a=ice-pwd:abc\\/def+ghi\\r\\na=mid:0"}',
        '{"sdp":"a=ice-pwd:abc\\/def+ghi"}',
        "A=ICE-PWD:abc/def+ghi\na=mid:0",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:abc/def+ghi|2^20;inline:abc/def+ghi",
    ],
)
def test_redaction_covers_plain_and_json_escaped_sdp(text: str) -> None:
    redacted = redact_sdp(text)
    assert "abc" not in redacted
    assert "ghi" not in redacted
    assert "<redacted>" in redacted


# -- 7: the API key is reachable through no exception ----------------------------------------


def _find_key(root: BaseException) -> list[str]:
    """Where the key, or an aiohttp object, is reachable from ``root``: its chain, args and
    attributes, walked through containers (bounded)."""
    found: list[str] = []
    seen: set[int] = set()
    stack: list[tuple[str, Any, int]] = [("error", root, 0)]
    while stack and len(seen) < 20_000:
        where, obj, depth = stack.pop()
        if id(obj) in seen or depth > 12:
            continue
        seen.add(id(obj))
        if isinstance(obj, str):
            if KEY in obj:
                found.append(where)
            continue
        if isinstance(obj, (bytes, bytearray)):
            if KEY.encode() in obj:
                found.append(where)
            continue
        if type(obj).__module__.split(".")[0] == "aiohttp":
            found.append(f"{where}: an aiohttp {type(obj).__name__}")
        children: list[tuple[str, Any]] = []
        if isinstance(obj, BaseException):
            children += [("__cause__", obj.__cause__), ("__context__", obj.__context__)]
            children += [(f"args[{i}]", a) for i, a in enumerate(obj.args)]
        if isinstance(obj, dict) or (hasattr(obj, "items") and callable(obj.items)):
            try:
                children += [(f"[{k!r:.20}]", v) for k, v in obj.items()]
                children += [(f"key {k!r:.20}", k) for k in obj]
            except Exception:
                pass
        elif isinstance(obj, (list, tuple, set, frozenset)):
            children += [(f"[{i}]", v) for i, v in enumerate(obj)]
        for name in getattr(type(obj), "__slots__", ()):
            if hasattr(obj, name):
                children.append((f".{name}", getattr(obj, name)))
        if hasattr(obj, "__dict__") and not isinstance(obj, type):
            children += [(f".{k}", v) for k, v in vars(obj).items()]
        for name, child in children:
            if child is not None:
                stack.append((f"{where}{name}", child, depth + 1))
    return found


def _assert_key_unreachable(error: BaseException) -> None:
    assert _find_key(error) == []
    rendered = "".join(
        traceback.TracebackException(
            type(error), error, error.__traceback__, capture_locals=True
        ).format()
    )
    assert KEY not in rendered
    assert KEY not in f"{error} {error!r}"
    assert KEY.encode() not in pickle.dumps(error)


@asynccontextmanager
async def stalled_server() -> AsyncIterator[tuple[str, list[web.Request]]]:
    """A server that answers nothing until the block ends (so its cleanup need not wait for
    handlers); yields its URL and the requests it is holding."""
    release = asyncio.Event()
    holding: list[web.Request] = []

    async def stall(request: web.Request) -> web.Response:
        holding.append(request)
        await release.wait()
        return web.json_response({})

    async with http_server(stall) as url:
        try:
            yield url, holding
        finally:
            release.set()


SCENARIOS: dict[str, tuple[type[Exception], bytes | None]] = {
    # name: (the error expected, what a raw server answers; None: no server at all)
    "refused": (APIConnectionError, None),
    "malformed status line": (APIConnectionError, b"HTTP/1.1 2x0 OK\r\n\r\n"),
    "invalid header": (APIConnectionError, b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n"),
    "truncated body": (APIConnectionError, http_answer(b"200 OK", [b"Content-Length: 99"], b"{")),
    "disconnect": (APIConnectionError, b""),
    "not JSON": (ResponseDecodeError, http_answer(b"200 OK", [b"Content-Length: 3"], b"<a>")),
    "error status": (BadRequestError, http_answer(b"400 Bad", [b"Content-Length: 2"], b"{}")),
    "redirect away": (
        APIStatusError,
        http_answer(b"302 Found", [b"Location: http://127.0.0.2:1/x", b"Content-Length: 0"]),
    ),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.asyncio
async def test_no_error_chain_repr_pickle_or_traceback_holds_the_key(scenario: str) -> None:
    expected, answer = SCENARIOS[scenario]
    if answer is None:
        async with client_for(f"http://127.0.0.1:{closed_port()}") as client:
            with pytest.raises(expected) as info:
                await client.get_settings()
    else:
        async with RawServer(lambda head: answer) as server, client_for(server.url) as client:
            with pytest.raises(expected) as info:
                await client.get_settings()
        assert KEY.encode() in server.heads[0]  # it was sent, so it was there to leak
    assert type(info.value) is expected
    _assert_key_unreachable(info.value)


@pytest.mark.asyncio
async def test_a_timeout_and_a_closed_client_hold_no_key_either() -> None:
    async with stalled_server() as (url, holding), client_for(url, timeout=0.2) as client:
        with pytest.raises(APITimeoutError) as timed_out:
            await client.get_settings()
        _assert_key_unreachable(timed_out.value)
        task = asyncio.ensure_future(client.get_settings())
        for _ in range(1000):  # until the request is in flight (bounded)
            if len(holding) == 2:
                break
            await asyncio.sleep(0.005)
        await client.aclose()
        with pytest.raises(ClientClosedError, match="in flight") as closed:
            await task
    _assert_key_unreachable(closed.value)


@pytest.mark.parametrize(
    "changes", [{"base_url": "ftp://x"}, {"timeout": math.nan}, {"proxy": "socks5://x"}]
)
def test_a_configuration_error_shows_no_key_in_its_traceback(changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError) as info:
        AsyncClient(api_key=KEY, **changes)
    _assert_key_unreachable(info.value)
    options = ClientOptions(api_key=KEY)
    with pytest.raises(InvalidRequestError) as evolved:
        options.evolve(api_key=KEY, **changes)
    _assert_key_unreachable(evolved.value)


def test_the_key_sits_in_a_redacting_str() -> None:
    options = ClientOptions(api_key=KEY)
    assert isinstance(options.api_key, Secret)
    assert options.api_key == KEY
    assert f"{options.api_key}" == KEY  # what goes on the wire
    assert KEY not in repr(options.api_key)
    assert KEY not in repr({"D360-API-KEY": options.api_key})
    assert KEY not in repr(options)
    client = AsyncClient(options=options)
    assert KEY not in repr(vars(client))
    evolved = options.evolve(timeout=3)
    assert isinstance(evolved.api_key, Secret)


# -- 12: closing while callers wait for a pool slot --------------------------------------------


@pytest.mark.asyncio
async def test_closing_under_hundreds_of_waiting_callers_gives_each_a_typed_error() -> None:
    async with stalled_server() as (url, holding):
        client = client_for(url, pool_size=4, connect_timeout=30)
        try:
            tasks = [asyncio.ensure_future(client.get_settings()) for _ in range(250)]
            for _ in range(2000):  # until the pool is full (bounded)
                if len(holding) == 4:
                    break
                await asyncio.sleep(0.005)
            assert len(holding) == 4
            await client.aclose()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await client.aclose()
    kinds = {type(result).__name__ for result in results}
    assert kinds == {"ClientClosedError"}, kinds
    waited = [r for r in results if "waited for a connection" in str(r)]
    cut_short = [r for r in results if "in flight" in str(r)]
    assert len(waited) == 246
    assert len(cut_short) == 4
    with pytest.raises(ClientClosedError):
        await client.get_settings()


# -- 13: a redirect without a host -----------------------------------------------------------


@pytest.mark.parametrize(
    "location",
    [
        b"mailto:ops@example.com",
        b"about:blank",
        b"urn:x",
        b"//",
        b"http://",
        b"https://",
        b"http:x",
        b"http://[::1",
        b"http://127.0.0.1:99999/x",
        b"http://ex\xc3\xa4mple..com/",
        b"javascript:alert(1)",
        b"\x7f/x",
        b"\xff\xfe",
    ],
)
@pytest.mark.parametrize("status", [b"302 Found", b"307 Temporary Redirect"])
@pytest.mark.asyncio
async def test_a_redirect_without_a_usable_host_is_a_typed_error(
    location: bytes, status: bytes
) -> None:
    answer = http_answer(status, [b"Location: " + location, b"Content-Length: 0"])
    async with RawServer(lambda head: answer) as server, client_for(server.url) as client:
        with pytest.raises(APIStatusError, match="not followed") as info:
            await client.get_settings()
    assert info.value.status_code == int(status[:3])
    assert len(server.heads) == 1  # not followed anywhere, not even back to itself


# -- 14: JSON, both back ends ----------------------------------------------------------------

BACKENDS = [pytest.param(_json.stdlib_loads, id="stdlib")]
if _json.HAVE_ORJSON:
    BACKENDS.append(pytest.param(_json.orjson_loads, id="orjson"))

INVALID: list[object] = [
    b"[" * 129 + b"]" * 129,
    b'{"a":' * 129 + b"1" + b"}" * 129,
    b"[" * 100_000 + b"]" * 100_000,
    b"[" * 100_000,
    b'"\\ud800"',
    b'"\\udc00\\ud800"',
    '"\ud800"',
    b'"\xed\xa0\x80"',
    '{"a": 1}'.encode("utf-16"),
    '{"a": 1}'.encode("utf-16-le"),
    '{"a": 1}'.encode("utf-32"),
    b"\xef\xbb\xbf{}",
    b"\xff",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b'{"a": NaN}',
    b"1e400",
    b"-1e400",
    b"[1" + b"0" * 5000 + b"]",
    b"",
    b"{",
    b'"\x01"',
    1,
    None,
    [1],
]
VALID: list[tuple[bytes, object]] = [
    (b"[" * 128 + b"]" * 128, None),
    (b'["]]]]]]", ' + b"[" * 127 + b"]" * 127 + b"]", None),
    (b'["\\\\", "\\"[[[["]', ["\\", '"[[[[']),
    (b'"\\ud83d\\ude00"', "\U0001f600"),
    (b"18446744073709551615", 2**64 - 1),
    (b"-9223372036854775808", -(2**63)),
    (b"18446744073709551616", float(2**64)),
    (b"1" + b"0" * 30, 1e30),
    (b"1e-400", 0.0),
    (b'{"a": 1, "a": 2}', {"a": 2}),
]


@pytest.mark.parametrize("loads", BACKENDS)
@pytest.mark.parametrize("data", INVALID, ids=lambda d: repr(d)[:24])
def test_both_json_back_ends_refuse_the_same_documents_with_one_error(
    loads: Callable[[Any], Any], data: object
) -> None:
    with pytest.raises(_json.JSONDecodeError):
        loads(data)
    assert issubclass(_json.JSONDecodeError, ValueError)


@pytest.mark.parametrize("loads", BACKENDS)
@pytest.mark.parametrize(("data", "expected"), VALID, ids=lambda d: repr(d)[:24])
def test_both_json_back_ends_read_the_same_documents_alike(
    loads: Callable[[Any], Any], data: bytes, expected: object
) -> None:
    value = loads(data)
    if expected is not None:
        assert value == expected
        assert type(value) is type(expected)
    assert loads(data.decode("utf-8")) == value


def test_the_stdlib_never_sends_nan() -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        _json.stdlib_dumps({"x": math.nan})


@pytest.mark.skipif(not _json.HAVE_ORJSON, reason="compares with orjson")
@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=80),
        st.text(max_size=80).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.recursive(
            st.one_of(
                st.none(),
                st.booleans(),
                st.integers(),
                st.floats(allow_nan=False, allow_infinity=False),
                st.text(max_size=8),
            ),
            lambda inner: st.one_of(
                st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
            ),
            max_leaves=20,
        ).map(lambda v: json.dumps(v).encode()),
        st.sampled_from(["[", "]", "{", "}", '"', "\\", "u", "d8", "00", "1e", "NaN", ","])
        .map(str.encode)
        .flatmap(lambda b: st.lists(st.just(b), max_size=200).map(b"".join)),
    )
)
def test_the_two_back_ends_agree_on_any_input(data: bytes) -> None:
    outcomes = []
    for loads in (_json.stdlib_loads, _json.orjson_loads):
        try:
            outcomes.append(("ok", loads(data)))
        except _json.JSONDecodeError:
            outcomes.append(("error", None))
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize("loads", BACKENDS)
@pytest.mark.parametrize(
    "body", [b"[" * 5000 + b"]" * 5000, b'{"calling": NaN}', b'"\\ud800"', b"\xff\xfe{\x00}\x00"]
)
@pytest.mark.asyncio
async def test_a_hostile_json_answer_is_a_response_decode_error(
    monkeypatch: pytest.MonkeyPatch, loads: Callable[[Any], Any], body: bytes
) -> None:
    monkeypatch.setattr(_json, "loads", loads)

    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    async with http_server(answer) as url, client_for(url) as client:
        with pytest.raises(ResponseDecodeError, match="not JSON"):
            await client.get_settings()


# -- 20: a 2xx that says it failed -----------------------------------------------------------


def _meta_error(code: int) -> dict[str, Any]:
    return {"message": f"error {code}", "type": "OAuthException", "code": code, "fbtrace_id": "T"}


@pytest.mark.parametrize(
    ("body", "cls", "code"),
    [
        ({"success": False, "error": _meta_error(138006)}, NoCallPermissionError, 138006),
        ({"success": False, "error": _meta_error(138000)}, PermissionDeniedError, 138000),
        ({"success": False, "error": _meta_error(130429)}, RateLimitError, 130429),
        ({"success": False, "error": _meta_error(131000)}, UnsuccessfulResponseError, 131000),
        ({"success": False}, UnsuccessfulResponseError, None),
        ({"error": _meta_error(138006)}, NoCallPermissionError, 138006),
        ({"error": _meta_error(100)}, UnsuccessfulResponseError, 100),
        ({"error": "something failed"}, UnsuccessfulResponseError, None),
    ],
)
@pytest.mark.parametrize("call", ["accept", "settings", "update", "permissions"])
@pytest.mark.asyncio
async def test_a_2xx_that_says_it_failed_is_mapped_by_its_code(
    body: dict[str, Any], cls: type[APIError], code: int | None, call: str
) -> None:
    if call in ("settings", "permissions") and "error" not in body:
        return  # no "success" field in these answers: {"success": false} alone is not theirs

    async def answer(request: web.Request) -> web.Response:
        return web.json_response(body)

    async with http_server(answer) as url, client_for(url) as client:
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "accept": lambda: client.accept_call(CALL, sample_answer()),
            "settings": lambda: client.get_settings(),
            "update": lambda: client.update_settings(SettingsUpdate.status("ENABLED")),
            "permissions": lambda: client.get_call_permissions(USER),
        }
        with pytest.raises(cls) as info:
            await calls[call]()
    error = info.value
    assert type(error) is cls
    assert error.status_code == 200  # type: ignore[attr-defined]
    assert error.code == code  # type: ignore[attr-defined]
    if code is not None:
        assert f"error {code}" in str(error)


# -- 21: proxies, TLS verification, numbers -------------------------------------------------


class Proxy(RawServer):
    """A forward proxy on loopback: absolute-form requests are relayed to their 127.0.0.1
    target; CONNECT is recorded and refused (nothing leaves loopback)."""

    def __init__(self) -> None:
        super().__init__(lambda head: b"")

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head)
            method, target, _ = head.split(b"\r\n", 1)[0].split(b" ", 2)
            if method == b"CONNECT" or not target.startswith(b"http://127.0.0.1:"):
                writer.write(http_answer(b"403 Forbidden", [b"Content-Length: 0"]))
                return
            authority, _, path = target.removeprefix(b"http://").partition(b"/")
            host, port = authority.split(b":")
            length = 0
            lines = []
            for line in head.split(b"\r\n")[1:]:
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
                if line and not line.lower().startswith((b"connection:", b"proxy-")):
                    lines.append(line)
            body = await reader.readexactly(length)
            up_reader, up_writer = await asyncio.open_connection(host.decode(), int(port))
            request_line = method + b" /" + path + b" HTTP/1.1"
            up_writer.write(b"\r\n".join([request_line, *lines, b"Connection: close", b"", body]))
            await up_writer.drain()
            writer.write(await up_reader.read())
            up_writer.close()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            await writer.drain()
            writer.close()


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


@pytest.mark.asyncio
async def test_requests_go_through_the_proxy_given(no_proxy_env: pytest.MonkeyPatch) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"calling": {"status": "ENABLED"}})

    async with http_server(answer) as url, Proxy() as proxy:
        async with client_for(url, proxy=proxy.url) as client:
            result = await client.get_settings()
        assert client.options.proxy == proxy.url
    assert result.calling is not None
    (head,) = proxy.heads
    assert head.startswith(f"GET {url}/calling/settings HTTP/1.1".encode())


@pytest.mark.asyncio
async def test_environment_proxies_are_used_only_when_trusted(
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    port = closed_port()
    async with Proxy() as proxy:
        no_proxy_env.setenv("HTTPS_PROXY", proxy.url)
        no_proxy_env.setenv("https_proxy", proxy.url)
        # Not trusted (the default): straight to the (closed) port, the proxy sees nothing.
        async with client_for(f"https://127.0.0.1:{port}") as client:
            with pytest.raises(APIConnectionError) as direct:
                await client.get_settings()
        assert direct.value.request_may_have_been_sent is False
        assert proxy.heads == []
        # Trusted: a CONNECT tunnel through the proxy, which sees host and port, not the key.
        async with client_for(f"https://127.0.0.1:{port}", trust_env=True) as client:
            with pytest.raises(APIConnectionError, match="proxy refused") as tunnel:
                await client.get_settings()
        assert tunnel.value.request_may_have_been_sent is False
    (head,) = proxy.heads
    assert head.startswith(f"CONNECT 127.0.0.1:{port} HTTP/1.1".encode())
    assert KEY.encode() not in head
    assert b"d360-api-key" not in head.lower()


@pytest.mark.asyncio
async def test_a_plain_http_api_never_takes_a_proxy_from_the_environment(
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({})

    async with http_server(answer) as url, Proxy() as proxy:
        no_proxy_env.setenv("HTTP_PROXY", proxy.url)
        no_proxy_env.setenv("http_proxy", proxy.url)
        async with client_for(url, trust_env=True) as client:
            await client.get_settings()
    assert proxy.heads == []  # the key would have crossed to it in clear text


@pytest.mark.parametrize(
    ("base_url", "proxy", "match"),
    [
        ("http://127.0.0.1:1", "http://10.0.0.1:3128", "loopback"),
        ("https://api.example", "socks5://127.0.0.1:1080", "http:// or https://"),
        ("https://api.example", "http://127.0.0.1:3128/path", "path"),
        ("https://api.example", "127.0.0.1:3128", "http:// or https://"),
        ("https://api.example", 3128, "str"),
        ("https://api.example", "http://[::1", "not a URL"),
    ],
)
def test_a_bad_proxy_is_refused(base_url: str, proxy: Any, match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        ClientOptions(api_key=KEY, base_url=base_url, proxy=proxy)


@pytest.mark.parametrize(
    "proxy",
    [
        "http://user:hunter2@127.0.0.1:3128",
        "http://hunter2@127.0.0.1:3128",  # a token as the user, no password
        "http://hunter2:@127.0.0.1:3128",
        "http://user:hunter2@127.0.0.1:3128/",
    ],
)
def test_proxy_credentials_are_not_in_the_repr(proxy: str) -> None:
    options = ClientOptions(api_key=KEY, proxy=proxy)
    assert "hunter2" not in repr(options)
    assert "hunter2" not in repr(options.proxy)
    assert "127.0.0.1:3128" in repr(options)
    assert options.proxy == proxy  # the URL itself is as given
    with pytest.raises(InvalidRequestError, match="pool"):
        AsyncClient(options=options).with_options(proxy=None)


PROXY_SECRET = "proxy-pw-3b8e61d2f0"  # distinctive: found only if it leaks


class RefusingProxy(RawServer):
    """A proxy that answers every request 407 (wrong credentials), recording its heads."""

    def __init__(self) -> None:
        super().__init__(
            lambda head: http_answer(
                b"407 Proxy Authentication Required",
                [b"Proxy-Authenticate: Basic realm=x", b"Content-Length: 0"],
            )
        )


def _rendered(error: BaseException, *, below_the_test: bool = False) -> str:
    """The traceback with every frame's locals, as error reporters capture it; without the
    test's own frame if asked (whose locals are the test's, not the library's)."""
    tb = error.__traceback__
    if below_the_test and tb is not None:
        tb = tb.tb_next
    return "".join(
        traceback.TracebackException(type(error), error, tb, capture_locals=True).format()
    )


@pytest.mark.parametrize(
    ("userinfo", "credentials"),
    [
        ("user:{}", "user:{}"),
        ("{}", "{}:"),  # a token as the user
        ("{}:", "{}:"),
        ("us%40er:{}%21", "us@er:{}!"),  # percent-encoded: sent decoded, shown in neither form
    ],
)
@pytest.mark.asyncio
async def test_a_proxy_that_refuses_the_credentials_never_sees_them_in_the_error(
    no_proxy_env: pytest.MonkeyPatch, userinfo: str, credentials: str
) -> None:
    port = closed_port()
    async with RefusingProxy() as proxy:
        # Built in the call: no local of this test holds the password.
        client = client_for(
            f"https://127.0.0.1:{port}",
            proxy=proxy.url.replace("://", f"://{userinfo.format(PROXY_SECRET)}@"),
        )
        with pytest.raises(APIConnectionError, match="proxy refused") as info:
            await client.get_settings()
        await client.aclose()
    (head,) = proxy.heads
    assert head.startswith(f"CONNECT 127.0.0.1:{port} HTTP/1.1".encode())
    token = base64.b64encode(credentials.format(PROXY_SECRET).encode())
    assert b"Proxy-Authorization: Basic " + token in head  # the credentials still went
    error = info.value
    assert error.request_may_have_been_sent is False
    rendered = _rendered(error, below_the_test=True)
    assert "<redacted>" in rendered  # the locals were rendered, the secrets hidden in them
    for shown in (f"{error} {error!r}", rendered, str(_find_key(error))):
        assert PROXY_SECRET not in shown
        assert token.decode() not in shown
    assert PROXY_SECRET.encode() not in pickle.dumps(error)
    _assert_key_unreachable(error)


@pytest.mark.asyncio
async def test_a_plain_http_proxy_gets_its_credentials_with_the_request(
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"calling": {"status": "ENABLED"}})

    async with http_server(answer) as url, Proxy() as proxy:
        credentialed = proxy.url.replace("://", f"://user:{PROXY_SECRET}@")
        async with client_for(url, proxy=credentialed) as client:
            assert (await client.get_settings()).calling is not None
    (head,) = proxy.heads
    assert head.startswith(f"GET {url}/calling/settings HTTP/1.1".encode())
    token = base64.b64encode(f"user:{PROXY_SECRET}".encode())
    assert b"Proxy-Authorization: Basic " + token in head
    assert PROXY_SECRET.encode() not in head.split(b"\r\n", 1)[0]  # not in the URL


class _LoopClosedConnector(aiohttp.TCPConnector):
    """What a request meets when the loop under it is being torn down."""

    async def connect(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise RuntimeError("Event loop is closed")


@pytest.mark.asyncio
async def test_an_unexpected_runtime_error_is_a_typed_error() -> None:
    async with aiohttp.ClientSession(connector=_LoopClosedConnector()) as session:
        client = client_for(f"http://127.0.0.1:{closed_port()}", session=session)
        with pytest.raises(APIConnectionError, match="Event loop is closed") as info:
            await client.get_settings()
        await client.aclose()
    assert type(info.value) is APIConnectionError
    assert info.value.request_may_have_been_sent is True  # nothing says it was not
    _assert_key_unreachable(info.value)


# Each builds with_options' arguments from the key in the call, so no local of the test
# holds it (a traceback with locals would show the test's own frame too).
BAD_CHANGES: list[Callable[[str], dict[str, Any]]] = [
    lambda key: {"api_key": key, "timeout": -1},
    lambda key: {"api_key": key + "\n"},
    lambda key: {"api_key": key, "proxy": "http://127.0.0.1:1"},  # a pool option
    lambda key: {"api_key": key, "no_such_option": 1},
]


@pytest.mark.parametrize("make", BAD_CHANGES)
@pytest.mark.asyncio
async def test_with_options_that_fails_shows_no_key_in_its_traceback(
    make: Callable[[str], dict[str, Any]],
) -> None:
    async with client_for(f"http://127.0.0.1:{closed_port()}") as client:
        with pytest.raises(InvalidRequestError) as info:
            client.with_options(**make(KEY))
    assert "<redacted>" in _rendered(info.value)
    _assert_key_unreachable(info.value)


@pytest.mark.parametrize("bad", ["\n", " ", "\u00e9"])
def test_a_bad_key_from_the_environment_shows_in_no_traceback(
    monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    monkeypatch.setenv("D360_API_KEY", KEY + bad)
    with pytest.raises(InvalidRequestError, match="api_key") as info:
        AsyncClient()
    assert "<redacted>" in _rendered(info.value)
    _assert_key_unreachable(info.value)


def test_a_failing_options_constructor_shows_no_key_or_proxy_password() -> None:
    with pytest.raises(InvalidRequestError) as info:
        ClientOptions(
            api_key=KEY + " ", proxy=f"http://user:{PROXY_SECRET}@127.0.0.1:3128", timeout=1
        )
    assert PROXY_SECRET not in _rendered(info.value)
    _assert_key_unreachable(info.value)
    with pytest.raises(InvalidRequestError) as evolved:
        ClientOptions(api_key=KEY).evolve(proxy=f"http://{PROXY_SECRET}@127.0.0.1:1", timeout=-1)
    assert PROXY_SECRET not in _rendered(evolved.value)


def _unverified(mode: str) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    if mode == "none":
        context.verify_mode = ssl.CERT_NONE
    return context


@pytest.mark.parametrize("mode", ["no hostname check", "none"])
def test_an_ssl_context_that_does_not_verify_is_refused(mode: str) -> None:
    with pytest.raises(InvalidRequestError, match="never off"):
        ClientOptions(api_key=KEY, ssl_context=_unverified(mode))
    with pytest.raises(InvalidRequestError, match="never off"):
        AsyncClient(api_key=KEY, ssl_context=_unverified(mode))


@pytest.mark.asyncio
async def test_an_ssl_context_turned_off_after_the_fact_is_refused_before_connecting() -> None:
    context = ssl.create_default_context()
    client = client_for(f"https://127.0.0.1:{closed_port()}", ssl_context=context)
    context.check_hostname = False
    async with client:
        with pytest.raises(InvalidRequestError, match="never off"):
            await client.get_settings()


NOT_SECONDS = [math.nan, math.inf, -math.inf, -1, 0, True, 10**400, "5", None]


@pytest.mark.parametrize(
    "name", ["timeout", "connect_timeout", "keepalive_timeout", "answer_window"]
)
@pytest.mark.parametrize("value", NOT_SECONDS, ids=repr)
def test_no_seconds_option_takes_nan_infinity_a_bool_or_a_huge_int(name: str, value: Any) -> None:
    with pytest.raises(InvalidRequestError, match=name):
        ClientOptions(api_key=KEY, **{name: value})


@pytest.mark.parametrize("name", ["max_retries", "pool_size"])
@pytest.mark.parametrize("value", [True, 1.0, -1, 10**400, math.nan, "2"], ids=repr)
def test_no_count_option_takes_a_bool_a_float_or_out_of_range(name: str, value: Any) -> None:
    with pytest.raises(InvalidRequestError, match=name):
        ClientOptions(api_key=KEY, **{name: value})


@pytest.mark.parametrize(
    "name", ["initial_delay", "max_delay", "max_retry_after", "jitter"], ids=str
)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -0.5, 10**400, True], ids=repr)
def test_a_retry_policy_takes_only_finite_non_negative_numbers(name: str, value: Any) -> None:
    with pytest.raises(InvalidRequestError, match=name):
        RetryPolicy(**{name: value})


@pytest.mark.parametrize("deadline", [math.nan, math.inf, -math.inf, -1, 10**400, True, "soon"])
@pytest.mark.asyncio
async def test_a_deadline_must_be_finite_non_negative_seconds(deadline: Any) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"success": True})

    async with http_server(answer) as url, client_for(url) as client:
        with pytest.raises(InvalidRequestError, match="deadline"):
            await client.accept_call(CALL, sample_answer(), deadline=deadline)


@pytest.mark.parametrize(
    ("timeout", "max_retries"), [(math.nan, None), (10**400, None), (None, True), (None, 10**400)]
)
@pytest.mark.asyncio
async def test_per_call_numbers_are_checked_too(timeout: Any, max_retries: Any) -> None:
    async with client_for(f"http://127.0.0.1:{closed_port()}") as client:
        with pytest.raises(InvalidRequestError):
            await client.get_settings(timeout=timeout, max_retries=max_retries)


@pytest.mark.parametrize("ca_bundle", ["", b"", "ca\x00.pem", b"ca\x00.pem"], ids=repr)
def test_a_ca_bundle_that_is_no_path_is_refused(ca_bundle: Any) -> None:
    # "" would have meant the system's CAs; a NUL byte was a bare ValueError.
    with pytest.raises(InvalidRequestError, match="ca_bundle"):
        AsyncClient(api_key=KEY, ca_bundle=ca_bundle)


def test_an_api_key_that_is_not_ascii_is_refused_before_sending() -> None:
    with pytest.raises(InvalidRequestError, match="ASCII"):
        ClientOptions(api_key="schlüssel")


# -- anything else a hostile server can send -------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        [b"X-Request-Id: \xff\xfe\x1b[31m", b"Content-Length: 2"],
        [b"Retry-After: 1_0", b"Content-Length: 2"],
        [b"Content-Type: \xff", b"Content-Length: 2"],
    ],
)
@pytest.mark.asyncio
async def test_odd_header_bytes_give_a_typed_error(headers: list[bytes]) -> None:
    answer = http_answer(b"503 Unavailable", headers, b"{}")
    async with RawServer(lambda head: answer) as server, client_for(server.url) as client:
        with pytest.raises(APIError) as info:
            await client.get_settings()
    request_id = getattr(info.value, "request_id", None)
    assert request_id is None or request_id.isprintable()


@pytest.mark.asyncio
async def test_retry_after_with_an_underscore_gets_the_default_backoff() -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    policy = RetryPolicy(initial_delay=0.25, jitter=0, sleep=sleep)
    answer = http_answer(b"429 Slow", [b"Retry-After: 1_0", b"Content-Length: 2"], b"{}")
    server = RawServer(lambda head: answer)
    async with server, client_for(server.url, max_retries=1, retry_policy=policy) as client:
        with pytest.raises(RateLimitError):
            await client.get_settings()
    assert waits == [0.25]  # not the 10 s that float("1_0") reads


# Hostile JSON values as whole answers, and planted in the shapes the models read.
hostile_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**64, max_value=10**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(["", " ", "wacid.X", "ENABLED", "true", "9" * 400, "\u0661", "²"]),
)
hostile_json = st.recursive(
    hostile_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
shapes = st.one_of(
    hostile_json,
    st.builds(lambda v: {"calls": v}, hostile_json),
    st.builds(lambda v: {"calls": [{"id": v}]}, hostile_json),
    st.builds(lambda v: {"success": v}, hostile_json),
    st.builds(lambda v: {"calling": v}, hostile_json),
    st.builds(lambda v: {"calling": {"call_hours": v}}, hostile_json),
    st.builds(lambda v: {"permission": v, "actions": v}, hostile_json),
    st.builds(lambda v: {"error": v}, hostile_json),
    st.builds(lambda v: {"success": False, "error": {"code": v}}, hostile_json),
)
hostile_bodies = st.one_of(
    shapes.map(lambda v: json.dumps(v).encode()),
    st.sampled_from(
        [
            b"[" * 200 + b"]" * 200,
            b"[" * 5000 + b"]" * 5000,
            b'{"calls": ' + b"[" * 3000 + b"]" * 3000 + b"}",
            b"NaN",
            b"1e400",
            b'"\\ud800"',
            b"\xef\xbb\xbf{}",
            b"",
        ]
    ),
)


def _says_it_failed(body: bytes) -> bool:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return False
    if not isinstance(data, dict) or data.get("success") is True:
        return False
    error = data.get("error")
    return isinstance(error, dict) or (isinstance(error, str) and bool(error))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeCallingAPI]:
    with FakeCallingAPI() as api:
        yield api


@pytest.fixture(scope="module")
def sync_client(fake: FakeCallingAPI) -> Iterator[Client]:
    with Client(
        api_key=fake.api_key, base_url=fake.url, timeout=5, max_retries=0, retry_policy=NO_RETRY
    ) as c:
        yield c


@pytest.mark.parametrize("loads", BACKENDS)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    status=st.sampled_from([200, 201, 202, 204, 400, 401, 404, 429, 500]),
    body=hostile_bodies,
    call=st.sampled_from(["connect", "accept", "terminate", "permissions", "settings", "update"]),
)
def test_any_json_answer_gives_a_model_or_an_api_error(
    fake: FakeCallingAPI,
    sync_client: Client,
    monkeypatch: pytest.MonkeyPatch,
    loads: Callable[[Any], Any],
    status: int,
    body: bytes,
    call: str,
) -> None:
    monkeypatch.setattr(_json, "loads", loads)  # both back ends, whichever is installed
    fake.clear_faults()
    fake.inject(Fault(status=status, body=body, content_type="application/json"), times=None)
    calls: dict[str, Callable[[], Any]] = {
        "connect": lambda: sync_client.connect_call(USER, sample_offer()),
        "accept": lambda: sync_client.accept_call("wacid.X", sample_answer()),
        "terminate": lambda: sync_client.terminate_call("wacid.X"),
        "permissions": lambda: sync_client.get_call_permissions(USER),
        "settings": lambda: sync_client.get_settings(),
        "update": lambda: sync_client.update_settings(SettingsUpdate.status("ENABLED")),
    }
    error: APIError | None = None
    try:
        result = calls[call]()
    except APIError as exc:
        error = exc
    finally:
        fake.clear_faults()
    if error is None:
        assert 200 <= status < 300, f"HTTP {status} was taken as success"
        assert result is not None
        assert not _says_it_failed(body), "an error envelope was taken as success"
    else:
        assert f"{error} {error!r}"  # renders
        assert len(getattr(error, "body", b"")) <= MAX_ERROR_BODY_BYTES
