"""The fake's request log is bounded, and reads like the list it used to be."""

from __future__ import annotations

import pytest

from d360calling.testing import DEFAULT_MAX_RECORDED_REQUESTS, FakeCallingAPI, RequestLog

from .helpers import USER


def test_the_log_keeps_the_newest_requests_and_counts_the_dropped() -> None:
    with FakeCallingAPI(max_recorded_requests=3) as fake, fake.client(max_retries=0) as client:
        users = [f"49151000000{i:02d}" for i in range(5)]
        for user in users:
            client.get_call_permissions(user)
        log = fake.requests
        assert (len(log), log.maxlen, log.dropped) == (3, 3, 2)
        kept = [f"/calling/permissions/{user}" for user in users[2:]]
        assert [r.path for r in log] == kept  # oldest first
        assert log[-1].path == kept[-1]
        assert [r.path for r in log[1:]] == kept[1:]  # a slice is a list
        assert log == list(log)
        assert len(fake.requests_to("GET", kept[0])) == 1
        log.clear()
        assert log == []
        assert log.dropped == 0
        client.get_call_permissions(USER)
        assert [r.path for r in fake.requests] == [f"/calling/permissions/{USER}"]


def test_the_default_bound_and_no_bound() -> None:
    assert FakeCallingAPI().requests.maxlen == DEFAULT_MAX_RECORDED_REQUESTS == 10_000
    unbounded = RequestLog(None)
    assert unbounded.maxlen is None
    with pytest.raises(ValueError, match="max_recorded_requests"):
        FakeCallingAPI(max_recorded_requests=0)


def test_requests_after_an_index_read_as_a_slice() -> None:
    """``before = len(fake.requests)`` ... ``fake.requests[before:]``, as tests do."""
    with FakeCallingAPI() as fake, fake.client(max_retries=0) as client:
        client.get_settings()
        before = len(fake.requests)
        client.get_call_permissions(USER)
        (sent,) = fake.requests[before:]
        assert (sent.method, sent.path, sent.body) == ("GET", f"/calling/permissions/{USER}", b"")
