"""Without the ``media`` extra, ``import d360calling.media`` says how to install it."""

from __future__ import annotations

import importlib
import sys

import pytest


def test_the_missing_extra_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aiortc", None)  # as if aiortc were not installed
    for name in [n for n in sys.modules if n.startswith("d360calling.media")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ImportError, match=r'pip install "d360calling\[media\]"'):
        importlib.import_module("d360calling.media")


@pytest.mark.asyncio
async def test_the_media_demo_without_the_extra_exits_2_saying_how_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from d360calling._media_demo import run_media_demo

    monkeypatch.setitem(sys.modules, "aiortc", None)
    for name in [n for n in sys.modules if n.startswith("d360calling.media")]:
        monkeypatch.delitem(sys.modules, name)
    for name in [n for n in sys.modules if n.startswith("d360calling.testing._media")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delitem(sys.modules, "d360calling.testing.media", raising=False)
    assert await run_media_demo() == 2
    assert 'pip install "d360calling[media]"' in capsys.readouterr().err
