"""Fault injection for the fake API (the documented error bodies are in ``_errors``).

A :class:`Fault` replaces or disturbs the fake's answer to matching requests. Faults are
matched in the order they were injected and each is spent after ``times`` uses;
:class:`RandomFaults` strike a share of the matching requests at random until cleared.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from ._errors import DIALOG_RATE_LIMIT_MESSAGE, meta_error_body, status_for

__all__ = (
    "Fault",
    "FaultPlan",
    "InjectedFault",
    "RandomFaults",
)


@attrs.frozen(kw_only=True)
class Fault:
    """What to do instead of (or on top of) the fake's normal answer.

    - ``delay``: seconds to wait before answering (latency, slow headers).
    - ``status``/``json``/``body``/``headers``/``content_type``: the answer to give; with no
      ``status`` the fake's own answer is given (after the delay, with the extra headers).
    - ``drop="before"``: close the connection without handling the request (nothing changes);
      ``drop="after"``: handle it (a call really is placed) and close without answering.
    - ``truncate``: promise the whole body in ``Content-Length`` but send half, then close.
    - ``slow_body``: send the body in pieces spread over this many seconds.
    - ``chunked``: send the body with chunked transfer encoding.
    """

    delay: float = 0.0
    status: int | None = None
    json: Any = None
    body: bytes | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict)
    content_type: str | None = None
    drop: Literal["before", "after"] | None = None
    truncate: bool = False
    slow_body: float = 0.0
    chunked: bool = False

    def __attrs_post_init__(self) -> None:
        if self.json is not None and self.body is not None:
            raise ValueError("give a Fault either json= or body=, not both")
        if self.drop not in (None, "before", "after"):
            raise ValueError("drop must be 'before', 'after' or None")
        if self.delay < 0 or self.slow_body < 0:
            raise ValueError("delay and slow_body must be >= 0")

    @property
    def replaces_answer(self) -> bool:
        return self.status is not None or self.json is not None or self.body is not None

    @classmethod
    def error(
        cls,
        code: int,
        *,
        status: int | None = None,
        details: str | None = None,
        retry_after: str | float | None = None,
        delay: float = 0.0,
    ) -> Fault:
        """A documented Meta error (``ERROR_CATALOGUE``) with its usual HTTP status."""
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        return cls(
            status=status or status_for(code),
            json=meta_error_body(code, details),
            headers=headers,
            delay=delay,
        )

    @classmethod
    def dialog_error(
        cls, status: int, message: str, *, retry_after: str | float | None = None
    ) -> Fault:
        """A 360dialog-level error, ``{"error": "<message>"}``, e.g. its rate-limit 400."""
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        return cls(status=status, json={"error": message}, headers=headers)

    @classmethod
    def rate_limited(cls, *, retry_after: str | float | None = None) -> Fault:
        """360dialog's throttling answer: HTTP 400 with its rate-limit text (not a 429)."""
        return cls.dialog_error(400, DIALOG_RATE_LIMIT_MESSAGE, retry_after=retry_after)


@attrs.define(eq=False)
class InjectedFault:
    """A fault waiting for requests: where it applies and how often it is still used."""

    fault: Fault
    method: str | None
    path: str | None
    action: str | None
    remaining: int | None  # None: forever
    hits: int = 0

    def matches(self, method: str, path: str, action: str | None) -> bool:
        return _matches(self.method, self.path, self.action, method, path, action)


@attrs.define(eq=False)
class RandomFaults:
    """Faults that strike at random: each matching request, with probability ``rate``, gets
    one of ``faults``, each as likely as the others. ``hits`` counts how often each struck."""

    faults: tuple[Fault, ...]
    rate: float
    method: str | None
    path: str | None
    action: str | None
    random: random.Random = attrs.field(repr=False)
    seen: int = 0  # matching requests, struck or not
    hits: list[int] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.hits = [0] * len(self.faults)

    def matches(self, method: str, path: str, action: str | None) -> bool:
        return _matches(self.method, self.path, self.action, method, path, action)

    def roll(self) -> Fault | None:
        self.seen += 1
        if self.random.random() >= self.rate:
            return None
        index = self.random.randrange(len(self.faults))
        self.hits[index] += 1
        return self.faults[index]


def _matches(
    want_method: str | None,
    want_path: str | None,
    want_action: str | None,
    method: str,
    path: str,
    action: str | None,
) -> bool:
    if want_method is not None and want_method != method:
        return False
    if want_path is not None:
        if want_path.endswith("*"):
            if not path.startswith(want_path[:-1]):
                return False
        elif want_path != path:
            return False
    return want_action is None or want_action == action


class FaultPlan:
    """The injected faults of one fake server; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[InjectedFault | RandomFaults] = []

    def add(
        self,
        faults: tuple[Fault, ...],
        method: str | None,
        path: str | None,
        action: str | None,
        times: int | None,
    ) -> list[InjectedFault]:
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 (or None for every request)")
        added = [
            InjectedFault(fault, method.upper() if method else None, path, action, times)
            for fault in faults
        ]
        with self._lock:
            self._faults.extend(added)
        return added

    def add_random(
        self,
        faults: tuple[Fault, ...],
        rate: float,
        seed: int | None,
        method: str | None,
        path: str | None,
        action: str | None,
    ) -> RandomFaults:
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        added = RandomFaults(
            faults, rate, method.upper() if method else None, path, action, random.Random(seed)
        )
        with self._lock:
            self._faults.append(added)
        return added

    def take(self, method: str, path: str, action: str | None) -> Fault | None:
        with self._lock:
            for injected in self._faults:
                if not injected.matches(method, path, action):
                    continue
                if isinstance(injected, RandomFaults):
                    struck = injected.roll()
                    if struck is not None:
                        return struck
                    continue  # spared: a later fault may still apply
                injected.hits += 1
                if injected.remaining is not None:
                    injected.remaining -= 1
                    if injected.remaining == 0:
                        self._faults.remove(injected)
                return injected.fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def __bool__(self) -> bool:
        with self._lock:
            return bool(self._faults)
