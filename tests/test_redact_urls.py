"""A URL's credentials never show, however they are written."""

from __future__ import annotations

import pytest

from d360calling._redact import SecretURL, hide_userinfo


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:pw@proxy:3128", "http://<redacted>@proxy:3128"),
        ("https://token@host/path", "https://<redacted>@host/path"),
        # A base64 password with an unescaped "/" (or "?", "#") must not show a piece of it.
        ("redis://:Ab3/xYz+Q@127.0.0.1:6379/0", "redis://<redacted>@127.0.0.1:6379/0"),
        ("redis://u:a?b#c@127.0.0.1:6379/0", "redis://<redacted>@127.0.0.1:6379/0"),
        ("http://127.0.0.1:8360/calling", "http://127.0.0.1:8360/calling"),
    ],
)
def test_the_userinfo_is_hidden(url: str, shown: str) -> None:
    assert hide_userinfo(url) == shown
    assert repr(SecretURL(url)) == repr(shown)


def test_a_text_that_is_not_a_url_is_left_as_it_is() -> None:
    text = "cannot be reached (ConnectionError: mail me at ops@example.org)"
    assert hide_userinfo(text) == text
