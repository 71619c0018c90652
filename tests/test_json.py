"""Both JSON back ends behave the same: orjson (the ``speedups`` extra) and the stdlib fallback."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest

import d360calling._json


@pytest.fixture(params=["orjson", "stdlib"])
def backend(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ModuleType]:
    if request.param == "stdlib":
        monkeypatch.setitem(sys.modules, "orjson", None)  # makes "import orjson" fail
    module = importlib.reload(d360calling._json)
    yield module
    monkeypatch.undo()
    importlib.reload(d360calling._json)


def test_round_trip_keeps_sdp_text_exact(backend: ModuleType) -> None:
    data = {"session": {"sdp": 'v=0\r\na=ünï "q" \\\r\n'}, "n": 1, "ok": True, "none": None}
    encoded = backend.dumps(data)
    # Compact, UTF-8, the same bytes from both back ends.
    assert (
        encoded
        == (
            '{"session":{"sdp":"v=0\\r\\na=ünï \\"q\\" \\\\\\r\\n"},"n":1,"ok":true,"none":null}'
        ).encode()
    )
    assert backend.loads(encoded) == data


@pytest.mark.parametrize("bad", [b"{", b"<html>", b"\xff\xfe", b"nan-ish"])
def test_bad_json_raises_the_declared_errors(backend: ModuleType, bad: bytes) -> None:
    with pytest.raises(backend.JSONDecodeError):
        backend.loads(bad)
