"""Which webhook events the receiver has already acted on: a :class:`DedupeMemory`. The
in-memory default forgets on restart and after ``max_keys`` newer events; implement the
protocol over Redis (``SET key 1 NX EX <ttl>``) or a database to keep the replay defence across
restarts and between processes."""

from __future__ import annotations

from collections import OrderedDict
from typing import Final, Protocol

from ..errors import InvalidRequestError

__all__ = ("MAX_DEDUPE_KEY_LENGTH", "DedupeMemory", "InMemoryDedupeMemory")

MAX_DEDUPE_KEY_LENGTH: Final = 128
"""The longest key the receiver hands a :class:`DedupeMemory` (its keys are ``kind:digest``,
at most 49 ASCII characters, whatever the event holds)."""


class DedupeMemory(Protocol):
    """Where the receiver records the events it has acted on. Both methods may be called
    concurrently, from many deliveries at once."""

    async def first_time(self, key: str) -> bool:
        """Record ``key`` and say whether it is new, in one atomic step: of two concurrent
        calls with one key, exactly one gets ``True``."""
        ...

    async def forget(self, key: str) -> None:
        """Drop ``key`` (the receiver takes back what it recorded for a delivery it then could
        not accept, so the redelivery is acted on)."""
        ...


def _positive_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InvalidRequestError(f"{name} must be a positive int, got {value!r:.40}")
    return value


class InMemoryDedupeMemory:
    """The newest ``max_keys`` keys in a dict (oldest dropped first). Keys are at most
    :data:`MAX_DEDUPE_KEY_LENGTH` characters, so the memory is bounded in bytes as well: about
    200 bytes a key as the receiver makes them, 20 MB at the default 100,000."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._max = _positive_int("max_keys", max_keys)
        self._keys: OrderedDict[str, None] = OrderedDict()

    async def first_time(self, key: str) -> bool:
        if not isinstance(key, str) or len(key) > MAX_DEDUPE_KEY_LENGTH:
            raise InvalidRequestError(
                f"a dedupe key must be a str of at most {MAX_DEDUPE_KEY_LENGTH} characters"
            )
        if key in self._keys:
            return False
        self._keys[key] = None
        if len(self._keys) > self._max:
            self._keys.popitem(last=False)
        return True

    async def forget(self, key: str) -> None:
        self._keys.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)
