"""The fake's notion of now."""

from __future__ import annotations

import time

__all__ = ("FakeClock",)


class FakeClock:
    """Wall-clock time that tests can move forward: answer windows, permission expiry and
    24-hour limits all read it."""

    def __init__(self) -> None:
        self._offset = 0.0

    def time(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._offset += seconds
