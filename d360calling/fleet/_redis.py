"""A receiver's state on Redis, shared by the workers of a fleet (see ``docs/fleet.md``).

Round trips on the hot path: one per delivery to claim its events (the claim script also
publishes them and reads their calls' records), and one per call event to update its record
(compare-and-set against the version the claim read; another only when two workers updated
the call at once). Finishing an event is batched: one ``HDEL`` every few milliseconds for all
the events finished meanwhile. Heartbeats and the search for dead workers run every few
seconds, off the hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .._json import dumps
from .._redact import REDACTED, hide_userinfo
from ..errors import InvalidRequestError, StateUnavailableError
from ..models.webhooks import CallConnectEvent, CallStatusEvent, CallTerminateEvent
from ..webhooks import CallRecord
from ..webhooks._state import MAX_TOPIC_LENGTH, EventClaim, StateListener
from ..webhooks._tracker import _fold
from . import _scripts
from ._codec import FORMAT, decode_record, encode_record

__all__ = ("RedisState",)

_log = logging.getLogger("d360calling.fleet")

T = TypeVar("T")
CallEventKind = CallConnectEvent | CallStatusEvent | CallTerminateEvent
Sleep = Callable[[float], Awaitable[None]]

_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
# A password in the query (``unix:///run/redis.sock?password=...``, which redis-py reads).
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)
_DAY: Final = 86_400.0
_RECORD_CACHE: Final = 10_000  # records this worker last saw, to skip a read before updating
_CAS_ATTEMPTS: Final = 16
_MAX_RECORD_BYTES: Final = 64 * 1024  # a larger value under a record key is not ours
_MAX_UNFINISHED: Final = 100_000  # finished events waiting to be reported, while Redis is down
_WATCH_TIMEOUT: Final = 5.0
_RESUBSCRIBE_PAUSES: Final = (0.05, 0.2, 1.0, 2.0)
_REDIS_ERRORS: Final = (redis_errors.RedisError, OSError, asyncio.TimeoutError)


class RedisState:
    """A :class:`~d360calling.webhooks.ReceiverState` on Redis: give the same one (the same
    URL and ``prefix``) to the receiver of every worker, ``WebhookReceiver(state=...)``.

    With it, fleet-wide: a delivery and its duplicates are acted on once (the first worker
    to claim an event runs its callbacks); a connect whose call ended anywhere is stale; a
    call's record is updated atomically; a worker waiting for a permission reply or
    following a placed call hears that user's or call's events wherever they land; the work
    of a worker that dies (no heartbeat for ``worker_timeout`` seconds) is taken over by
    another, so a delivery it claimed and never finished is acted on (at least once: a worker
    that dies while a callback runs leaves it to be run again).

    ``url`` (``redis://``, ``rediss://`` or ``unix://``; its password is never logged) or a
    ``redis.asyncio.Redis`` client of your own (``client=``, decoding off; it is not closed
    here). Keys start with ``prefix`` and the format version (``d360calling:v1:...``), so a
    shared Redis's other keys are never read; give each WhatsApp number its own prefix.

    TTLs, in seconds: ``dedupe_ttl`` (7 days: 360dialog redelivers for days) for claims and
    unfinished work, ``record_ttl`` (6 hours after a call's last event) for call records,
    ``kept_ttl`` (1 hour) for the events kept for waits that start late (at most ``kept_max``
    per call or request). Nothing is kept without a TTL. A worker's heartbeat is renewed every
    ``heartbeat_interval`` seconds and lapses after ``worker_timeout``; pick a timeout longer
    than any pause of a worker's loop, or a paused worker's work is taken over while it runs.
    A worker takes over others only after its own beats have succeeded for ``worker_timeout``
    (after an outage every heartbeat has lapsed). ``worker`` names the worker in logs and
    keys; each run adds a nonce (:attr:`worker`), so two processes given one name, or a
    restart, are separate workers. A claim or takeover whose answer was lost (the script ran,
    the reply did not arrive) is found by an audit of this worker's work every
    ``heartbeat_interval`` and acted on then.

    At most ``max_connections`` connections per worker: past it a command waits for one
    (up to ``socket_timeout``) instead of failing, so a burst of webhooks is not a 503.

    Redis unreachable, or refusing commands (out of memory, an ACL): every method raises
    :class:`~d360calling.StateUnavailableError` (the receiver answers 503), logged once per
    outage at WARNING, with the reason, and once when it is back; the connection is made
    again by itself. :meth:`start` fails at once on a wrong URL or credentials. The URL's
    password (``user:password@`` or ``?password=``) is in no log, error or repr.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: aioredis.Redis | None = None,
        prefix: str = "d360calling",
        dedupe_ttl: float = 7 * _DAY,
        record_ttl: float = 6 * 3600.0,
        kept_ttl: float = 3600.0,
        kept_max: int = 16,
        heartbeat_interval: float = 5.0,
        worker_timeout: float = 15.0,
        finish_delay: float = 0.02,
        socket_timeout: float = 5.0,
        max_connections: int = 64,
        worker: str | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (url is None) == (client is None):
            raise InvalidRequestError("give RedisState a url or a client (one of them)")
        if url is not None and (
            not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://"))
        ):
            shown = _safe_url(str(url))[:80]
            raise InvalidRequestError(
                f"url must be a redis://, rediss:// or unix:// URL, got {shown!r}"
            )
        if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
            raise InvalidRequestError(
                "prefix must be 1-64 letters, digits or any of _ . : - (it starts every key)"
            )
        self._dedupe_ms = _ms("dedupe_ttl", dedupe_ttl)
        self._record_ms = _ms("record_ttl", record_ttl)
        self._kept_ms = _ms("kept_ttl", kept_ttl)
        if isinstance(kept_max, bool) or not isinstance(kept_max, int) or not 1 <= kept_max <= 1000:
            raise InvalidRequestError("kept_max must be an int from 1 to 1000")
        self._kept_max = kept_max
        self._heartbeat = _ms("heartbeat_interval", heartbeat_interval) / 1000
        self._worker_ms = _ms("worker_timeout", worker_timeout)
        if self._worker_ms < 2 * self._heartbeat * 1000:
            raise InvalidRequestError(
                "worker_timeout must be at least twice heartbeat_interval (one missed beat "
                "is not a death)"
            )
        self._finish_delay = _ms("finish_delay", finish_delay) / 1000
        self._socket_timeout = _ms("socket_timeout", socket_timeout) / 1000
        if (
            isinstance(max_connections, bool)
            or not isinstance(max_connections, int)
            or not 2 <= max_connections <= 10_000
        ):
            raise InvalidRequestError("max_connections must be an int from 2 to 10,000")
        self._max_connections = max_connections
        if worker is not None and (
            not isinstance(worker, str)
            or not _PREFIX.fullmatch(worker)
            or ":" in worker
            or len(worker) > 40
        ):
            raise InvalidRequestError("worker must be 1-40 letters, digits or any of _ . -")
        if not callable(clock):
            raise InvalidRequestError("clock must be a callable giving seconds")
        # A name, and a nonce for this run: two processes given one name, or one restarted
        # under it, are still two workers (each one's work is its own, and a dead run's work
        # is taken over like any other's).
        self.worker: str = f"{worker or os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._clock = clock
        self._url = None if url is None else _RedisURL(url)
        self._own_client = client is None
        self._client: aioredis.Redis | None = client
        self._sleep = sleep
        self.prefix = prefix
        self._base = f"{prefix}:v{FORMAT}:"
        self._work_key = f"{self._base}w:{self.worker}"
        self._listener: StateListener | None = None
        self._records: OrderedDict[str, tuple[str, CallRecord | None]] = OrderedDict()
        self._unfinished: OrderedDict[str, None] = OrderedDict()  # finished, not yet reported
        # The work this process knows it holds: claims on their way, and events claimed or
        # taken over and not finished. Work in Redis that is neither (a claim or a takeover
        # whose answer was lost) is found by the audit and acted on here.
        self._claiming: dict[str, int] = {}
        self._held: set[str] = set()
        self._suspects: set[str] = set()
        self._healthy_since: float | None = None  # since when the beats have succeeded
        self._finishing = asyncio.Event()
        self._topics: dict[str, int] = {}
        self._confirmations: dict[bytes, list[asyncio.Future[None]]] = {}
        self._pubsub: Any = None
        self._subscribed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._recalls: set[asyncio.Future[None]] = set()  # after the pub/sub reconnected
        self._down = False
        self._closed = False
        self._started = False
        self.round_trips = 0
        """Commands and scripts sent to Redis so far, as round trips (benchmarks read it)."""

    def __repr__(self) -> str:
        where = repr(_safe_url(self._url)) if self._url is not None else "a client"
        return f"RedisState({where}, prefix={self.prefix!r}, worker={self.worker!r})"

    @property
    def where(self) -> str:
        """The server, as logs and errors name it (no credentials)."""
        if self._url is None:
            return "Redis (the client given)"
        return f"Redis at {_safe_url(self._url)}"

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, listener: StateListener) -> None:
        if self._closed:
            raise StateUnavailableError("this RedisState has been closed")
        if self._started:
            return
        if self._client is None:
            assert self._url is not None
            try:
                # A blocking pool: past max_connections a command waits for a connection
                # (up to socket_timeout), where redis-py's default pool fails it, which a
                # burst of webhooks would turn into 503s.
                pool = aioredis.BlockingConnectionPool.from_url(
                    str(self._url),
                    max_connections=self._max_connections,
                    timeout=self._socket_timeout,
                    decode_responses=False,
                    socket_timeout=self._socket_timeout,
                    socket_connect_timeout=self._socket_timeout,
                    # One retry: a pooled connection that Redis dropped (it restarted) is
                    # made again, without waiting out a backoff while deliveries queue.
                    retry=Retry(NoBackoff(), 1),
                )
                self._client = aioredis.Redis.from_pool(pool)
            except ValueError:
                raise InvalidRequestError(
                    f"{_safe_url(self._url)[:80]!r} is not a Redis URL redis-py can read"
                ) from None
        client = self._client
        try:
            await self._call(client.ping())
            self._claim_script = _Lua(client, _scripts.CLAIM)
            self._cas_script = _Lua(client, _scripts.COMPARE_AND_SET)
            self._read_script = _Lua(client, _scripts.READ)
            self._recall_script = _Lua(client, _scripts.RECALL)
            self._take_over_script = _Lua(client, _scripts.TAKE_OVER)
            self._unclaim_script = _Lua(client, _scripts.UNCLAIM)
            self._work_script = _Lua(client, _scripts.WORK)
            self._beat_script = _Lua(client, _scripts.BEAT)
            await self._beat()
            self._healthy_since = self._clock()
        except StateUnavailableError:
            if self._own_client:
                await self._close_client()
            raise
        self._listener = listener
        self._pubsub = client.pubsub()
        self._started = True
        self._tasks = [
            asyncio.create_task(self._listen(), name="d360calling-fleet-listen"),
            asyncio.create_task(self._heartbeats(), name="d360calling-fleet-heartbeat"),
            asyncio.create_task(self._caretaker(), name="d360calling-fleet-takeover"),
            asyncio.create_task(self._finisher(), name="d360calling-fleet-finish"),
        ]
        for task in self._tasks:
            task.add_done_callback(self._task_ended)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._finishing.set()
        running = [*self._tasks, *self._recalls]
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=2.0)
        if self._started:
            with contextlib.suppress(StateUnavailableError):
                await self._report_finished()
        if self._pubsub is not None:
            self._untrack_reconnects()
            with contextlib.suppress(*_REDIS_ERRORS):
                await self._pubsub.aclose()
        for futures in self._confirmations.values():
            for future in futures:
                if not future.done():
                    future.set_exception(StateUnavailableError("the state closed"))
        if self._own_client:
            await self._close_client()

    async def _close_client(self) -> None:
        if self._client is not None:
            with contextlib.suppress(*_REDIS_ERRORS):
                await self._client.aclose()
            self._client = None

    # -- the receiver's steps -------------------------------------------------------------

    async def claim(self, body: bytes, claims: Sequence[EventClaim]) -> list[bool]:
        token = f"{self.worker}|{secrets.token_hex(6)}"
        spec = {
            "w": self.worker,
            "t": token,
            "wk": self._work_key,
            "dt": self._dedupe_ms,
            "kt": self._kept_ms,
            "km": self._kept_max,
            "e": [
                {
                    "d": "" if claim.key is None else f"{self._base}d:{claim.key}",
                    "f": self._field(claim),
                    "i": str(claim.index),
                    "r": "" if claim.call_id is None else self._record_key(claim.call_id),
                    "p": [self._channel(topic) for topic in claim.topics],
                    "k": [f"{self._base}k:{topic}" for topic in claim.keep],
                }
                for claim in claims
            ],
        }
        script = self._running()._claim_script
        fields = [self._field(claim) for claim in claims]
        for field in fields:
            self._claiming[field] = self._claiming.get(field, 0) + 1
        # Shielded: a claim cancelled in flight may still run in Redis; if it did, what it
        # claimed is taken back, so the redelivery of this delivery is acted on. A claim
        # that fails (Redis unreachable, its answer lost) may have run too: what it won is
        # then work in Redis this process does not know it holds, which the audit finds.
        attempt = asyncio.ensure_future(self._call(script(args=[dumps(spec), body])))
        try:
            reply = await asyncio.shield(attempt)
        except asyncio.CancelledError:
            attempt.add_done_callback(lambda done: self._unclaim_later(done, claims, token))
            raise
        finally:
            for field in fields:
                left = self._claiming.get(field, 1) - 1
                if left:
                    self._claiming[field] = left
                else:
                    self._claiming.pop(field, None)
        if not isinstance(reply, list) or len(reply) != 3 * len(claims):
            raise StateUnavailableError(f"{self.where} answered a claim with something else")
        fresh: list[bool] = []
        for claim, (won, version, data) in zip(claims, _triples(reply), strict=True):
            fresh.append(won == 1)
            if won == 1:
                self._held.add(self._field(claim))
            if claim.call_id is not None:
                self._remember(claim.call_id, _version(version), data)
        return fresh

    def _unclaim_later(
        self, done: asyncio.Future[Any], claims: Sequence[EventClaim], token: str
    ) -> None:
        if done.cancelled() or done.exception() is not None or self._closed:
            return
        reply = done.result()
        if not isinstance(reply, list) or len(reply) != 3 * len(claims):
            return
        # Only what this claim won: a duplicate's key (claimed before, by this worker or
        # another) and its work stay as they are.
        won = [
            claim
            for claim, (fresh, _, _) in zip(claims, _triples(reply), strict=True)
            if fresh == 1
        ]
        if not won:
            return
        args = [token, self._work_key]
        for claim in won:
            args += ["" if claim.key is None else f"{self._base}d:{claim.key}", self._field(claim)]
        task = asyncio.ensure_future(self._call(self._unclaim_script(args=args)))
        task.add_done_callback(_retrieved)

    async def apply(self, event: CallEventKind) -> tuple[CallRecord | None, CallRecord]:
        call_id = event.call_id
        key = self._record_key(call_id)
        script = self._running()._cas_script
        for _ in range(_CAS_ATTEMPTS):
            known = self._records.get(call_id)
            if known is None:
                known = await self._read(call_id)
            version, before = known
            after = _fold(before or CallRecord(call_id=call_id), event)
            new_version = secrets.token_hex(8)
            reply = await self._call(
                script(
                    keys=[key],
                    args=[version, new_version, encode_record(after), self._record_ms],
                )
            )
            if isinstance(reply, list) and reply and reply[0] == 1:
                self._cache(call_id, new_version, after)
                return before, after
            if not isinstance(reply, list) or len(reply) != 3:
                raise StateUnavailableError(f"{self.where} answered an update with something else")
            self._remember(call_id, _version(reply[1]), reply[2], replace=True)
        raise StateUnavailableError(
            f"the record of a call changed {_CAS_ATTEMPTS} times while it was being updated"
        )

    async def record(self, call_id: str) -> CallRecord | None:
        return (await self._read(call_id))[1]

    async def _read(self, call_id: str) -> tuple[str, CallRecord | None]:
        """What Redis holds for the call (a value of another kind: none), now cached."""
        stored = await self._call(
            self._running()._read_script(keys=[self._record_key(call_id)], args=[])
        )
        if not isinstance(stored, list) or len(stored) != 2:
            raise StateUnavailableError(f"{self.where} answered a read with something else")
        return self._remember(call_id, _version(stored[0]), stored[1], replace=True)

    async def finish(self, claim: EventClaim) -> None:
        field = self._field(claim)
        self._held.discard(field)
        self._unfinished[field] = None
        while len(self._unfinished) > _MAX_UNFINISHED:
            self._unfinished.popitem(last=False)  # acted on again (the audit), at worst
        self._finishing.set()

    async def watch(self, topic: str) -> None:
        _check_topic(topic)
        self._running()
        channel = self._channel(topic).encode()
        count = self._topics.get(topic, 0)
        self._topics[topic] = count + 1
        if count and channel not in self._confirmations:
            return  # in effect already
        # The first watch subscribes; one that comes while Redis has not confirmed that yet
        # waits for the confirmation too (until then an event published is not heard).
        confirmed = asyncio.get_running_loop().create_future()
        self._confirmations.setdefault(channel, []).append(confirmed)
        try:
            if not count:
                await self._call(self._pubsub.subscribe(channel))
                self._track_reconnects()
                self._subscribed.set()
            await asyncio.wait_for(confirmed, _WATCH_TIMEOUT)
        except (Exception, asyncio.CancelledError) as exc:
            self._drop_topic(topic)
            if not count and not isinstance(exc, asyncio.CancelledError):
                for other in self._confirmations.get(channel, []):  # waiting on this one
                    if other is not confirmed and not other.done():
                        other.set_exception(StateUnavailableError(f"{self.where}: watch failed"))
            if isinstance(exc, asyncio.TimeoutError):
                raise StateUnavailableError(f"{self.where} did not confirm a watch") from None
            raise
        finally:
            waiting = self._confirmations.get(channel, [])
            if confirmed in waiting:
                waiting.remove(confirmed)
            if not waiting:
                self._confirmations.pop(channel, None)

    async def unwatch(self, topic: str) -> None:
        if self._topics.get(topic, 0) <= 0:
            return
        if self._drop_topic(topic) and not self._closed:
            await self._call(self._pubsub.unsubscribe(self._channel(topic).encode()))

    def _drop_topic(self, topic: str) -> bool:
        count = self._topics.get(topic, 0) - 1
        if count > 0:
            self._topics[topic] = count
            return False
        self._topics.pop(topic, None)
        return True

    async def recall(self, topic: str) -> list[bytes]:
        _check_topic(topic)
        key = f"{self._base}k:{topic}"
        kept = await self._call(self._running()._recall_script(keys=[key], args=[]))
        if not isinstance(kept, list):
            _log.warning("%s holds a value of another kind under %s: ignored", self.where, key)
            return []
        return [item for item in kept if isinstance(item, bytes)]

    async def take_over_dead_workers(self) -> int:
        """Take over the work of every worker whose heartbeat has lapsed (the heartbeat
        task does this every ``heartbeat_interval``); how many events were taken over."""
        client = self._running_client()
        workers_key = f"{self._base}workers"
        members = await self._call(client.smembers(workers_key))
        others = sorted(
            member.decode(errors="replace")
            for member in members
            if isinstance(member, bytes) and member.decode(errors="replace") != self.worker
        )
        if not others:
            return 0
        async with client.pipeline(transaction=False) as pipe:
            for other in others:
                pipe.exists(f"{self._base}hb:{other}")
            alive = await self._call(pipe.execute())
        taken = 0
        for other, beating in zip(others, alive, strict=True):
            if beating:
                continue
            reply = await self._call(
                self._running()._take_over_script(
                    keys=[
                        f"{self._base}hb:{other}",
                        f"{self._base}w:{other}",
                        self._work_key,
                        workers_key,
                    ],
                    args=[other, self._dedupe_ms],
                )
            )
            if not isinstance(reply, list) or not reply:
                continue
            work = [
                (field.decode(errors="replace"), payload)
                for field, payload in _pairs(reply)
                if isinstance(field, bytes) and isinstance(payload, bytes)
            ]
            taken += len(work)
            _log.warning(
                "worker %s stopped beating: %d unfinished events taken over", other, len(work)
            )
            self._hand_over(work)
        return taken

    async def audit(self) -> int:
        """Act on work Redis lists as this worker's that this process does not know it
        holds (a claim, or a takeover, that ran in Redis and whose answer was lost); how many
        events. A field counts only when it was unknown at the previous audit too, so a claim
        whose answer is on its way is never mistaken for one (the caretaker task audits every
        ``heartbeat_interval``)."""
        script = self._running()._work_script
        fields = await self._call(script(keys=[self._work_key], args=[]))
        if not isinstance(fields, list):
            return 0
        known = self._held | set(self._claiming) | set(self._unfinished)
        unknown = {
            field.decode(errors="replace") for field in fields if isinstance(field, bytes)
        } - known
        orphans, self._suspects = sorted(unknown & self._suspects), unknown - self._suspects
        if not orphans:
            return 0
        reply = await self._call(script(keys=[self._work_key], args=orphans))
        if not isinstance(reply, list):
            return 0
        work = [
            (field.decode(errors="replace"), payload)
            for field, payload in _pairs(reply)
            if isinstance(field, bytes) and isinstance(payload, bytes)
        ]
        work = [(field, payload) for field, payload in work if field not in self._held]
        if work:
            _log.warning(
                "%d events this worker claimed without hearing the answer: acted on now",
                len(work),
            )
            self._hand_over(work)
        return len(work)

    def _hand_over(self, work: list[tuple[str, bytes]]) -> None:
        """Work that is now this worker's, to its receiver."""
        if not work:
            return
        self._held.update(field for field, _ in work)
        if self._listener is not None:
            try:
                self._listener.recovered(work)
            except Exception:  # the receiver's failure must not stop the caretaker
                _log.exception("%s: work taken over could not be handed over", self.where)

    # -- background -----------------------------------------------------------------------

    async def _beat(self) -> None:
        # The set of workers lives as long as the work it lists: a fleet that stopped leaves
        # nothing behind.
        await self._call(
            self._beat_script(
                keys=[f"{self._base}hb:{self.worker}", f"{self._base}workers"],
                args=[self.worker, self._worker_ms, self._dedupe_ms],
            )
        )

    async def _heartbeats(self) -> None:
        """Beat every ``heartbeat_interval``, on its own: a slow takeover never delays it."""
        while not self._closed:
            await self._sleep(self._heartbeat)
            try:
                await self._beat()
            except StateUnavailableError:
                self._healthy_since = None  # logged once per outage by _call
            else:
                if self._healthy_since is None:
                    self._healthy_since = self._clock()

    async def _caretaker(self) -> None:
        """Take over dead workers' work and audit this worker's, every
        ``heartbeat_interval`` - but only after ``worker_timeout`` seconds of beats that
        succeeded: after an outage every heartbeat has lapsed, and the others need one beat
        to show they are alive."""
        while not self._closed:
            await self._sleep(self._heartbeat)
            since = self._healthy_since
            if since is None or self._clock() - since < self._worker_ms / 1000:
                continue
            try:
                await self.take_over_dead_workers()
                await self.audit()
            except StateUnavailableError:
                pass  # logged once per outage by _call

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._closed:
            return
        error = task.exception()
        _log.error(
            "%s: the fleet's background task %s stopped: %s",
            self.where,
            task.get_name(),
            None if error is None else f"{type(error).__name__}: {str(error)[:200]}",
        )

    async def _finisher(self) -> None:
        while not self._closed:
            await self._finishing.wait()
            self._finishing.clear()
            await self._sleep(self._finish_delay)  # batch what finishes meanwhile
            try:
                await self._report_finished()
            except StateUnavailableError:
                await self._sleep(max(self._heartbeat, self._finish_delay))
                self._finishing.set()

    async def _report_finished(self) -> None:
        if not self._unfinished or self._client is None:
            return
        fields = list(self._unfinished)
        await self._call(self._client.hdel(self._work_key, *fields))
        for field in fields:
            self._unfinished.pop(field, None)

    async def _listen(self) -> None:
        pauses = iter(_RESUBSCRIBE_PAUSES)
        while not self._closed:
            if not self._topics:
                self._subscribed.clear()
                await self._subscribed.wait()
                continue
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._outage(exc)
                await self._sleep(next(pauses, _RESUBSCRIBE_PAUSES[-1]))
                await self._resubscribe()
                continue
            pauses = iter(_RESUBSCRIBE_PAUSES)
            if message is not None:
                try:
                    self._on_message(message)
                except Exception:  # a listener's failure must not stop the listening
                    _log.exception("%s: a message from Redis could not be handled", self.where)

    async def _resubscribe(self) -> None:
        """A new pub/sub connection with every watched topic (the old one failed)."""
        self._untrack_reconnects()
        with contextlib.suppress(*_REDIS_ERRORS):
            await self._pubsub.aclose()
        self._pubsub = self._running_client().pubsub()
        channels = [self._channel(topic).encode() for topic in self._topics]
        if channels:
            try:
                await self._call(self._pubsub.subscribe(*channels))
            except StateUnavailableError:
                return
            self._track_reconnects()
            self._recall_soon()

    def _track_reconnects(self) -> None:
        connection = getattr(self._pubsub, "connection", None)
        if connection is not None:
            connection.register_connect_callback(self._reconnected)

    def _untrack_reconnects(self) -> None:
        """The pub/sub connection goes back to the pool, for any command: it must not recall
        the watched topics each time it connects again."""
        connection = getattr(self._pubsub, "connection", None)
        if connection is not None:
            connection.deregister_connect_callback(self._reconnected)

    def _reconnected(self, _: object) -> None:
        """redis-py made the pub/sub connection again and subscribed again by itself: what
        was published meanwhile was not heard, so read what was kept."""
        self._recall_soon()

    def _recall_soon(self) -> None:
        if self._closed or self._listener is None:
            return
        task = asyncio.ensure_future(self._recall_watched())
        self._recalls.add(task)
        task.add_done_callback(self._recalls.discard)
        task.add_done_callback(_retrieved)

    async def _recall_watched(self) -> None:
        await self._sleep(self._finish_delay)  # after redis-py's own resubscription
        for topic in list(self._topics):
            try:
                kept = await self.recall(topic)
            except StateUnavailableError:
                return
            for payload in kept:
                if self._listener is None:
                    return
                try:
                    self._listener.heard(payload)
                except Exception:  # as for a message heard: the others are still fed
                    _log.exception("%s: an event recalled could not be handled", self.where)

    def _on_message(self, message: dict[str, Any]) -> None:
        kind, channel, data = message.get("type"), message.get("channel"), message.get("data")
        if kind in (b"subscribe", "subscribe") and isinstance(channel, bytes):
            for future in self._confirmations.pop(channel, []):
                if not future.done():
                    future.set_result(None)
        elif kind in (b"message", "message") and isinstance(data, bytes) and self._listener:
            self._listener.heard(data)

    # -- helpers --------------------------------------------------------------------------

    async def _call(self, pending: Awaitable[T]) -> T:
        """Await a Redis command: a failure is :class:`StateUnavailableError` (logged once
        per outage, without a chain that could hold the connection's settings: it is raised
        outside the ``except``, so neither its ``__cause__`` nor its ``__context__`` is
        redis-py's error, whose traceback holds the connection and its password)."""
        self.round_trips += 1
        try:
            result = await pending
        except _REDIS_ERRORS as exc:
            error = self._failure(exc)
        else:
            if self._down:
                self._down = False
                _log.warning("%s is reachable again", self.where)
            return result
        raise error

    def _failure(self, exc: BaseException) -> StateUnavailableError:
        if isinstance(exc, redis_errors.AuthenticationError):
            self._outage_text("refused the credentials")
            return StateUnavailableError(f"{self.where} refused the credentials")
        if isinstance(exc, redis_errors.ResponseError):
            # Out of memory, an ACL, a read-only replica: every delivery is refused until it
            # is fixed, so it is an outage to log like one.
            text = _safe_url(f"{type(exc).__name__}: {str(exc)[:200]}")
            self._outage_text(f"refused a command ({text})")
            return StateUnavailableError(f"{self.where} refused a command ({text})")
        self._outage(exc)
        return StateUnavailableError(f"{self.where} cannot be reached ({type(exc).__name__})")

    def _outage(self, exc: BaseException) -> None:
        self._outage_text(f"cannot be reached ({type(exc).__name__}: {str(exc)[:200]})")

    def _outage_text(self, text: str) -> None:
        if not self._down:
            self._down = True
            _log.warning(
                "%s %s: webhooks are answered 503 until it is back", self.where, _safe_url(text)
            )

    def _running(self) -> RedisState:
        if not self._started or self._closed:
            raise StateUnavailableError(
                "the RedisState is not running: the receiver starts it (await receiver.start())"
            )
        return self

    def _running_client(self) -> aioredis.Redis:
        self._running()
        assert self._client is not None
        return self._client

    def _record_key(self, call_id: str) -> str:
        return f"{self._base}r:{call_id}"

    def _channel(self, topic: str) -> str:
        return f"{self._base}t:{topic}"

    def _field(self, claim: EventClaim) -> str:
        return claim.work

    def _remember(
        self, call_id: str, version: str, data: object, *, replace: bool = True
    ) -> tuple[str, CallRecord | None]:
        """Cache what Redis just said it holds for a call (versions are tokens, not counters:
        what Redis says is the newest)."""
        record = None
        if isinstance(data, bytes):
            record = decode_record(data, call_id) if len(data) <= _MAX_RECORD_BYTES else None
            if record is None:
                _log.warning(
                    "%s holds a value that is not a call record of ours for a call: ignored",
                    self.where,
                )
        self._cache(call_id, version, record)
        return version, record

    def _cache(self, call_id: str, version: str, record: CallRecord | None) -> None:
        self._records[call_id] = (version, record)
        self._records.move_to_end(call_id)
        while len(self._records) > _RECORD_CACHE:
            self._records.popitem(last=False)


class _Lua:
    """A script called by its SHA (``EVALSHA``), loaded again with ``EVAL`` when Redis has
    lost it (a restart). redis-py's own ``Script`` does the same with more work per call: on
    the hot path this is a tenth of a worker's CPU per event."""

    __slots__ = ("_client", "_sha", "_source")

    def __init__(self, client: aioredis.Redis, source: str) -> None:
        self._client = client
        self._source = source
        self._sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(
        self, keys: Sequence[str | bytes] = (), args: Sequence[str | bytes | int] = ()
    ) -> Any:
        run: Callable[..., Awaitable[Any]] = self._client.execute_command
        try:
            return await run("EVALSHA", self._sha, len(keys), *keys, *args)
        except redis_errors.NoScriptError:
            return await run("EVAL", self._source, len(keys), *keys, *args)


class _RedisURL(str):
    """The URL as given, whose ``repr`` (what a traceback's locals show) hides its password."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str.__repr__(_safe_url(self))


def _safe_url(url: str) -> str:
    """``url`` (or a text that may hold one) without its password: userinfo and query."""
    return _QUERY_PASSWORD.sub(lambda match: match.group(1) + REDACTED, hide_userinfo(url))


def _ms(name: str, seconds: object) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise InvalidRequestError(f"{name} must be a number of seconds, got {seconds!r:.40}")
    if not 0 < seconds <= 365 * _DAY:
        raise InvalidRequestError(f"{name} must be more than 0 and at most a year of seconds")
    return max(1, round(seconds * 1000))


def _check_topic(topic: object) -> None:
    if not isinstance(topic, str) or not 0 < len(topic) <= MAX_TOPIC_LENGTH:
        raise InvalidRequestError(f"a topic is a str of 1 to {MAX_TOPIC_LENGTH} characters")


def _version(value: object) -> str:
    """A record's version as Redis holds it; a value that is not ours (anything but 1 to 64
    ASCII letters and digits, as the compare-and-set script reads it too) counts as none,
    ``"0"``."""
    if isinstance(value, bytes) and 0 < len(value) <= 64 and value.isascii() and value.isalnum():
        return value.decode("ascii")
    return "0"


def _triples(reply: list[Any]) -> list[tuple[Any, Any, Any]]:
    return [(reply[i], reply[i + 1], reply[i + 2]) for i in range(0, len(reply), 3)]


def _pairs(reply: list[Any]) -> list[tuple[Any, Any]]:
    return [(reply[i], reply[i + 1]) for i in range(0, len(reply) - 1, 2)]


def _retrieved(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()
