"""What the fake received: every request, in order, in a log of bounded size so a fake left
running (``d360calling fake-server``, a soak) does not grow without end."""

from __future__ import annotations

import collections
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, overload

import attrs
from multidict import CIMultiDict

__all__ = (
    "DEFAULT_MAX_RECORDED_REQUESTS",
    "RecordedRequest",
    "RequestLog",
)

DEFAULT_MAX_RECORDED_REQUESTS = 10_000


@attrs.frozen(eq=False)
class RecordedRequest:
    """A request as the fake received it."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: CIMultiDict[str]
    body: bytes
    peer: tuple[str, int]
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class RequestLog(Sequence[RecordedRequest]):
    """The newest ``maxlen`` requests (all of them with ``maxlen=None``), oldest first.

    A sequence: index it, slice it (a list), compare it with a list. Once full, each new
    request pushes out the oldest, and ``dropped`` counts those. The server's loop appends
    while tests read from their own thread, hence the lock.
    """

    def __init__(self, maxlen: int | None = DEFAULT_MAX_RECORDED_REQUESTS) -> None:
        if maxlen is not None and maxlen < 1:
            raise ValueError("max_recorded_requests must be >= 1 (or None for no limit)")
        self._items: collections.deque[RecordedRequest] = collections.deque(maxlen=maxlen)
        self._seen = 0
        self._lock = threading.Lock()

    @property
    def maxlen(self) -> int | None:
        return self._items.maxlen

    @property
    def dropped(self) -> int:
        """How many of the oldest requests were pushed out of the log."""
        with self._lock:
            return self._seen - len(self._items)

    def append(self, request: RecordedRequest) -> None:
        with self._lock:
            self._seen += 1
            self._items.append(request)

    def clear(self) -> None:
        """Forget every request recorded so far (``dropped`` restarts at 0)."""
        with self._lock:
            self._items.clear()
            self._seen = 0

    def _snapshot(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._items)

    @overload
    def __getitem__(self, index: int) -> RecordedRequest: ...

    @overload
    def __getitem__(self, index: slice) -> list[RecordedRequest]: ...

    def __getitem__(self, index: int | slice) -> RecordedRequest | list[RecordedRequest]:
        if isinstance(index, slice):
            return self._snapshot()[index]
        with self._lock:
            return self._items[index]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[RecordedRequest]:
        return iter(self._snapshot())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (RequestLog, list, tuple)):
            return self._snapshot() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like a list

    def __repr__(self) -> str:
        return f"RequestLog({self._snapshot()!r}, maxlen={self.maxlen})"
