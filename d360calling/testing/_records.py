"""What the fake received and sent: every request and every webhook, in order, in logs of
bounded size so a fake left running (``d360calling fake-server``, a soak) or fed by a hostile
client does not grow without end. Each log keeps at most ``maxlen`` records and at most
``max_bytes`` bytes of them; once either is reached, the oldest records make room."""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar, overload

import attrs
from multidict import CIMultiDict

from ._jsonbody import parse

__all__ = (
    "DEFAULT_MAX_RECORDED_BYTES",
    "DEFAULT_MAX_RECORDED_REQUESTS",
    "DEFAULT_MAX_RECORDED_WEBHOOKS",
    "RecordLog",
    "RecordedRequest",
    "RequestLog",
    "SECRET_HEADERS",
)

DEFAULT_MAX_RECORDED_REQUESTS = 10_000
DEFAULT_MAX_RECORDED_WEBHOOKS = 10_000
# Per log. A real request is a few kB (an SDP), so 10,000 of them fit well inside; the bound
# is for 10,000 requests of the largest body the fake accepts (1 MiB), which would be 10 GiB.
DEFAULT_MAX_RECORDED_BYTES = 64 * 1024 * 1024

# Kept in the record (tests read them) but never shown by repr().
SECRET_HEADERS = frozenset({"d360-api-key", "authorization", "proxy-authorization", "cookie"})
_SHOWN_BODY = 200  # bytes of a body that repr() shows

T = TypeVar("T")


@attrs.frozen(eq=False, repr=False)
class RecordedRequest:
    """A request as the fake received it. A body larger than the fake accepts (413) is not
    kept: ``body`` is then ``b""``."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: CIMultiDict[str]
    body: bytes
    peer: tuple[str, int]
    at: float

    @property
    def json(self) -> Any:
        """The body as JSON; ``ValueError`` when it is not JSON the fake would accept."""
        return parse(self.body)

    @property
    def size(self) -> int:
        """Roughly the bytes this record holds: what the log's byte bound counts."""
        return (
            len(self.body)
            + len(self.path)
            + sum(len(k) + len(v) for k, v in self.query.items())
            + sum(len(k) + len(v) for k, v in self.headers.items())
        )

    def __repr__(self) -> str:
        headers = [
            (name, "<redacted>" if name.lower() in SECRET_HEADERS else value)
            for name, value in self.headers.items()
        ]
        body = repr(self.body[:_SHOWN_BODY])
        if len(self.body) > _SHOWN_BODY:
            body += f"... ({len(self.body)} bytes)"
        return (
            f"RecordedRequest(method={self.method!r}, path={self.path!r}, "
            f"query={dict(self.query)!r}, headers={headers!r}, body={body}, "
            f"peer={self.peer!r}, at={self.at!r})"
        )


class RecordLog(Sequence[T], Generic[T]):
    """The newest records, oldest first: at most ``maxlen`` of them and ``max_bytes`` of
    their bytes (``None``: no such bound). The newest record is always kept, even when it
    alone is over ``max_bytes``.

    A sequence: index it, slice it (a list), compare it with a list. Once full, each new
    record pushes out the oldest, and ``dropped`` counts those. The server's loop appends
    while tests read from their own thread, hence the lock.
    """

    _bound_name = "the log's maxlen"

    def __init__(self, maxlen: int | None, max_bytes: int | None) -> None:
        if maxlen is not None and maxlen < 1:
            raise ValueError(f"{self._bound_name} must be >= 1 (or None for no limit)")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError("max_recorded_bytes must be >= 1 (or None for no limit)")
        self._items: collections.deque[T] = collections.deque()
        self._sizes: collections.deque[int] = collections.deque()
        self._maxlen = maxlen
        self._max_bytes = max_bytes
        self._bytes = 0
        self._seen = 0
        self._lock = threading.Lock()

    def _size(self, item: T) -> int:
        return 0

    @property
    def maxlen(self) -> int | None:
        return self._maxlen

    @property
    def max_bytes(self) -> int | None:
        return self._max_bytes

    @property
    def bytes(self) -> int:
        """The bytes the kept records hold, as the byte bound counts them."""
        with self._lock:
            return self._bytes

    @property
    def dropped(self) -> int:
        """How many of the oldest records were pushed out of the log."""
        with self._lock:
            return self._seen - len(self._items)

    def append(self, item: T) -> None:
        size = self._size(item)
        with self._lock:
            self._seen += 1
            self._items.append(item)
            self._sizes.append(size)
            self._bytes += size
            while len(self._items) > 1 and (
                (self._maxlen is not None and len(self._items) > self._maxlen)
                or (self._max_bytes is not None and self._bytes > self._max_bytes)
            ):
                self._items.popleft()
                self._bytes -= self._sizes.popleft()

    def clear(self) -> None:
        """Forget every record kept so far (``dropped`` restarts at 0)."""
        with self._lock:
            self._items.clear()
            self._sizes.clear()
            self._bytes = self._seen = 0

    def _snapshot(self) -> list[T]:
        with self._lock:
            return list(self._items)

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> list[T]: ...

    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            return self._snapshot()[index]
        with self._lock:
            return self._items[index]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(self._snapshot())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (RecordLog, list, tuple)):
            return self._snapshot() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like a list

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._snapshot()!r}, maxlen={self.maxlen})"


class RequestLog(RecordLog[RecordedRequest]):
    """The newest requests the fake received: at most ``maxlen`` of them (``None``: no
    limit) holding at most ``max_bytes`` of bodies and headers."""

    _bound_name = "max_recorded_requests"

    def __init__(
        self,
        maxlen: int | None = DEFAULT_MAX_RECORDED_REQUESTS,
        max_bytes: int | None = DEFAULT_MAX_RECORDED_BYTES,
    ) -> None:
        super().__init__(maxlen, max_bytes)

    def _size(self, item: RecordedRequest) -> int:
        return item.size
