"""A fleet of webhook receiver workers sharing one state on Redis, so that they behave like
one process (``pip install 'd360calling[redis]'``; see ``docs/fleet.md``)::

    from d360calling.fleet import RedisState
    from d360calling.webhooks import WebhookReceiver

    receiver = WebhookReceiver(
        on_connect=answer, signing_secret=secret, state=RedisState("redis://127.0.0.1:6379/0")
    )
"""

from __future__ import annotations

try:
    import redis.asyncio  # noqa: F401 - the extra's presence, checked with a clear message
except ImportError as exc:  # pragma: no cover - the plain install has no redis-py
    raise ImportError("d360calling.fleet needs redis-py: pip install 'd360calling[redis]'") from exc

from ._codec import FORMAT
from ._redis import RedisState

__all__ = ("FORMAT", "RedisState")
