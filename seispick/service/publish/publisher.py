"""Publication of picks and detections: Redis Streams + pub/sub, in-process fan-out, a ring of recent picks.

``PickPublisher.publish(item)`` returns at once. The item becomes a flat record of string fields (documented
in ``pick_schema.json``) carrying the item's own deterministic id (``Pick.id``, ``Detection.id``: the same id
the CLI and the HTTP API give the same pick), is fanned out to in-process subscribers, kept in a bounded
ring for ``recent()`` and, when a Redis URL is set, queued in an ``Outbox`` whose task delivers it in order.

Pick updates (``PickUpdate``: a ``preliminary`` pick from a partial stack, then ``confirmed`` or ``rejected``)
are records of kind ``pick_update`` on a stream of their own (``seispick:picks:preliminary``, live channel
``seispick:picks:preliminary:live``): the pick's fields plus ``status``, ``evaluation_mode`` and
``supersedes``. The pick stream keeps carrying exactly the final picks, as before.

Picks of the ``shadow_models`` (models run beside the live ones, for comparison) are records of kind
``shadow_pick`` on a stream of their own (``seispick:picks:shadow``, live channel
``seispick:picks:shadow:live``), never on the pick stream; their pick updates are not published. The role is
the one at ``publish``: ``set_shadow_models`` changes it at run time (a promotion), first rejecting the open
preliminary picks of a live model that becomes a shadow one.

Redis layout (names configurable): each record goes through one Lua script that, unless the dedupe key
``<stream>:seen:<id>`` exists, XADDs the fields to ``<stream>`` (``MAXLEN ~ maxlen``), sets the dedupe key to
the entry id with a TTL and PUBLISHes the fields as JSON on the live channel. Retries after a lost reply,
publisher restarts and re-processed data therefore add nothing to the stream while the key lives. A pick
update's key is ``<id>#<status>``: the preliminary and the confirmed record of one id go out once each.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Literal

from obspy import UTCDateTime
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from seispick.picking.results import Detection, Pick, PickUpdate, iso
from seispick.service.publish.outbox import Outbox

log = logging.getLogger(__name__)

Kind = Literal["pick", "detection", "event", "pick_update", "shadow_pick"]
STATUSES = ("preliminary", "confirmed", "rejected")  # a pick update's status (QuakeML evaluationStatus)
Since = UTCDateTime | str | float | None

PICK_FIELDS = (
    "id",
    "trace_id",
    "network",
    "station",
    "location",
    "phase",
    "peak_time",
    "probability",
    "start_time",
    "end_time",
    "model",
    "model_sha256",
    "published_at",
)
UPDATE_FIELDS = (*PICK_FIELDS, "status", "evaluation_mode", "supersedes")  # a pick update's, in order

# KEYS: stream, dedupe key. ARGV: maxlen, ttl seconds, channel, JSON message, field, value, field, value...
PUBLISH_ONCE = """
if redis.call('EXISTS', KEYS[2]) == 1 then
  return false
end
local entry = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 5))
redis.call('SET', KEYS[2], entry, 'EX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return entry
"""


# -- records ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One published pick or detection: its flat string fields and its publication time (epoch s)."""

    kind: Kind
    fields: dict[str, str]
    time: float

    @property
    def id(self) -> str:
        return self.fields["id"]

    @property
    def key(self) -> str:
        """What is published once: the id, and for versioned records (events) the id at that version."""
        return dedupe_key(self.fields)

    def json(self) -> str:
        return json.dumps(self.fields, separators=(",", ":"))

    @classmethod
    def of(cls, item: Pick | Detection | PickUpdate, published_at: UTCDateTime | None = None) -> Record:
        published_at = published_at or UTCDateTime()
        if isinstance(item, PickUpdate):  # the pick's fields, then its status and the ids it supersedes
            pick = cls.of(item.pick, published_at)
            fields = {
                **pick.fields,
                "status": item.status,
                "evaluation_mode": "automatic",
                "supersedes": ",".join(item.supersedes),
            }
            return cls("pick_update", fields, pick.time)
        if hasattr(item, "record_fields"):  # events (seispick.events.Event): flat fields of their own
            fields = {**item.record_fields(), "published_at": iso(published_at)}
            return cls("event", fields, published_at.timestamp)
        if isinstance(item, Pick):
            kind: Kind = "pick"
        elif isinstance(item, Detection):
            kind = "detection"
        else:
            raise TypeError(f"cannot publish a {type(item).__name__}")
        values = item.as_dict()  # carries the item's own id (Pick.id / Detection.id)
        network, station, location = _split_station(item.trace_id)
        values.update(
            network=network,
            station=station,
            location=location,
            probability=f"{item.probability:.6f}",
            published_at=iso(published_at),
        )
        if "cell_probability" in values:
            values["cell_probability"] = f"{values['cell_probability']:.6f}"
        order = [name for name in PICK_FIELDS if name in values] + [k for k in values if k not in PICK_FIELDS]
        return cls(kind, {name: str(values[name]) for name in order}, published_at.timestamp)

    @classmethod
    def from_fields(cls, kind: Kind, fields: dict[str, str]) -> Record:
        return cls(kind, dict(fields), UTCDateTime(fields["published_at"]).timestamp)


def dedupe_key(fields: dict[str, str]) -> str:
    """``id``, ``id@version`` for versioned records (each event version is published once) or ``id#status``
    for pick updates (each status of a pick once)."""
    if "version" in fields:
        return f"{fields['id']}@{fields['version']}"
    return f"{fields['id']}#{fields['status']}" if "status" in fields else fields["id"]


def _split_station(trace_id: str) -> tuple[str, str, str]:
    parts = trace_id.split(".")
    parts += [""] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


# -- in-process fan-out --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """Which records a subscriber or a query wants; None lets everything through."""

    network: frozenset[str] | None = None
    station: frozenset[str] | None = None
    phase: frozenset[str] | None = None
    kind: frozenset[str] | None = None
    status: frozenset[str] | None = None  # a pick update's status

    @classmethod
    def of(
        cls,
        network: str | Iterable[str] | None = None,
        station: str | Iterable[str] | None = None,
        phase: str | Iterable[str] | None = None,
        kind: str | Iterable[str] | None = None,
        status: str | Iterable[str] | None = None,
    ) -> Filters:
        return cls(_set(network), _set(station), _set(phase), _set(kind), _set(status))

    def matches(self, record: Record) -> bool:
        f = record.fields
        return (
            (self.kind is None or record.kind in self.kind)
            and (self.network is None or f.get("network") in self.network)
            and (self.station is None or f.get("station") in self.station)
            and (self.phase is None or f.get("phase") in self.phase)
            and (self.status is None or f.get("status") in self.status)
        )


def _set(value: str | Iterable[str] | None) -> frozenset[str] | None:
    """A comma-separated string or an iterable as a set; None and empty as None (no filter)."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    out = frozenset(item.strip() for item in items if item and item.strip())
    return out or None


_CLOSED = object()


@dataclass(eq=False)
class Subscription:
    """A bounded queue of records for one live subscriber; a full queue loses its oldest records.

    Iterate it (``async for record in subscription``) or ``await get()``; both end once it is closed.
    ``dropped`` counts records lost because the subscriber was slow (``lagged`` says whether any were).
    """

    filters: Filters
    maxsize: int = 1000
    dropped: int = 0
    closed: bool = False
    queue: asyncio.Queue = field(init=False, repr=False)
    _owner: Broadcaster | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.maxsize)

    @property
    def lagged(self) -> bool:
        return self.dropped > 0

    def offer(self, record: Record) -> None:
        """Queue without blocking, evicting the oldest record when full."""
        if self.closed:
            return
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(record)

    async def get(self) -> Record:
        """The next record; ``StopAsyncIteration`` once closed."""
        if self.closed and self.queue.empty():
            raise StopAsyncIteration
        record = await self.queue.get()
        if record is _CLOSED:
            raise StopAsyncIteration
        return record

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Record:
        return await self.get()

    def close(self, drop: bool = False) -> None:
        """Unsubscribe; the reader ends once the queue is drained, or at once with ``drop`` (the queued records
        are discarded: the subscriber went away, or the server stops)."""
        if drop:  # not counted in ``dropped``: nobody is left to miss them
            while not self.queue.empty():
                self.queue.get_nowait()
        if self.closed:
            if drop:
                self.queue.put_nowait(_CLOSED)
            return
        self.closed = True
        if self._owner is not None:
            self._owner.discard(self)
        if not self.queue.full():  # wakes a waiting reader; a full queue has none, and ends when drained
            self.queue.put_nowait(_CLOSED)


class Broadcaster:
    """Fans records out to subscriptions; never blocks the sender."""

    def __init__(self, maxsize: int = 1000) -> None:
        self.maxsize = maxsize
        self._subscriptions: set[Subscription] = set()
        self.dropped_closed = 0  # records lost by subscriptions that have since closed

    def subscribe(self, filters: Filters | None = None, maxsize: int | None = None) -> Subscription:
        sub = Subscription(filters or Filters(), maxsize or self.maxsize, _owner=self)
        self._subscriptions.add(sub)
        return sub

    def discard(self, sub: Subscription) -> None:
        if sub in self._subscriptions:
            self._subscriptions.discard(sub)
            self.dropped_closed += sub.dropped

    def send(self, record: Record) -> None:
        for sub in self._subscriptions:
            if sub.filters.matches(record):
                sub.offer(record)

    def close(self) -> None:
        for sub in list(self._subscriptions):
            sub.close()

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    @property
    def dropped(self) -> int:
        return self.dropped_closed + sum(sub.dropped for sub in self._subscriptions)


# -- the publisher -------------------------------------------------------------------------------------


class PickPublisher:
    """Publishes picks and detections to in-process subscribers, a ring of recent ones and (optionally) Redis.

    Call ``publish`` from the event loop's thread. Without ``redis_url`` only the fan-out and the ring run.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        stream: str = "seispick:picks",
        detections_stream: str = "seispick:detections",
        channel: str = "seispick:picks:live",
        detections_channel: str = "seispick:detections:live",
        events_stream: str = "seispick:events",
        events_channel: str = "seispick:events:live",
        updates_stream: str = "seispick:picks:preliminary",
        updates_channel: str = "seispick:picks:preliminary:live",
        shadow_models: Iterable[str] = (),
        shadow_stream: str = "seispick:picks:shadow",
        shadow_channel: str = "seispick:picks:shadow:live",
        maxlen: int = 100_000,
        memory_limit: int = 100_000,
        spill_dir: Path | None = None,
        dedupe_ttl_s: int = 86_400,
        ring_size: int = 10_000,
        subscriber_queue: int = 1000,
        batch: int = 100,
        socket_timeout_s: float = 2.0,
        max_backoff_s: float = 5.0,
    ) -> None:
        self.redis_url = redis_url
        self.streams: dict[Kind, str] = {
            "pick": stream,
            "detection": detections_stream,
            "event": events_stream,
            "pick_update": updates_stream,
            "shadow_pick": shadow_stream,
        }
        self.channels: dict[Kind, str] = {
            "pick": channel,
            "detection": detections_channel,
            "event": events_channel,
            "pick_update": updates_channel,
            "shadow_pick": shadow_channel,
        }
        self.shadow_models = frozenset(shadow_models)  # their picks are shadow_pick records
        # with shadow models (a promotion may demote a live model): per model, its preliminary picks published
        # and not yet confirmed or rejected (id -> the update's fields), bounded
        self._open: dict[str, dict[str, dict[str, str]]] = {}
        self._open_limit = max(ring_size, 100_000)
        self.maxlen = maxlen
        self.dedupe_ttl_s = dedupe_ttl_s
        self._socket_timeout_s = socket_timeout_s
        self.broadcaster = Broadcaster(subscriber_queue)
        self._rings: dict[Kind, deque[Record]] = {
            k: deque(maxlen=ring_size) for k in ("pick", "detection", "event", "pick_update", "shadow_pick")
        }
        self._seen: dict[str, None] = {}  # ids published by this process, oldest first
        self._seen_limit = max(ring_size, 100_000)
        self.published = 0
        self.updates_published = 0  # pick updates (preliminary, confirmed, rejected), not in ``published``
        self.repeats = 0  # publish() calls for an id this process had already published
        self.published_by: dict[str, dict[str, int]] = {}  # kind -> status -> records, for metrics
        self.duplicates = 0  # records Redis already held (dedupe key present)
        self.on_delivered: Callable[[str, float], None] | None = None  # kind, seconds since the hand-over
        self._redis: Redis | None = None
        self._script: Any = None
        self._stopped = False
        self.outbox: Outbox | None = None
        if redis_url:
            self.outbox = Outbox(
                self._deliver,
                memory_limit=memory_limit,
                spill_dir=spill_dir,
                batch=batch,
                max_backoff=max_backoff_s,
            )

    # -- life cycle

    async def start(self) -> None:
        """Connect lazily and start delivering (Redis need not be up yet)."""
        if self.outbox is None:
            return
        timeout = self._socket_timeout_s
        self._redis = Redis.from_url(
            self.redis_url,
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),  # the outbox retries, with its own backoff
        )
        self._script = self._redis.register_script(PUBLISH_ONCE)
        await self.outbox.start()

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Deliver what waits (up to ``drain_timeout`` s; the rest stays in the spill file), end subscriptions."""
        self._stopped = True
        if self.outbox is not None:
            await self.outbox.stop(drain_timeout)
        self.broadcaster.close()
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def __aenter__(self) -> PickPublisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- publishing

    def publish(self, item: Pick | Detection | PickUpdate) -> str:
        """Fan ``item`` out, remember it and queue it for Redis; returns its id at once."""
        if self._stopped:
            raise RuntimeError("publisher is stopped")
        record = Record.of(item)
        if self.shadow_models and record.fields.get("model") in self.shadow_models:
            if record.kind != "pick":  # a shadow model's pick updates are not published
                return record.id
            record = Record("shadow_pick", record.fields, record.time)
        return self._publish(record)

    def set_shadow_models(self, shadow_models: Iterable[str]) -> int:
        """Change which models are shadow models, from the next ``publish`` on (a promotion at run time): their
        picks become ``shadow_pick`` records and their pick updates are dropped; the other models' picks go to
        the pick stream. A live model that becomes a shadow one first has its open preliminary picks (published,
        not yet confirmed or rejected) published as ``rejected``: their final picks go to the shadow stream,
        so no consumer of the update stream is left holding them. Returns how many were rejected."""
        new = frozenset(shadow_models)
        rejected = 0
        for model in sorted(new - self.shadow_models):
            for fields in list(self._open.pop(model, {}).values()):
                now = UTCDateTime()
                fields = {**fields, "status": "rejected", "supersedes": "", "published_at": iso(now)}
                self._publish(Record("pick_update", fields, now.timestamp))
                rejected += 1
        self.shadow_models = new
        return rejected

    def _track_open(self, fields: dict[str, str]) -> None:
        """Keep a live model's open preliminary picks (only while there are shadow models to promote)."""
        model = self._open.setdefault(fields.get("model", ""), {})
        status, pick_id = fields.get("status"), fields["id"]
        if status == "preliminary":
            model[pick_id] = fields
            if len(model) > self._open_limit:
                del model[next(iter(model))]
            return
        model.pop(pick_id, None)
        for old in fields.get("supersedes", "").split(","):
            model.pop(old, None)

    def _publish(self, record: Record) -> str:
        if record.key in self._seen:
            self.repeats += 1
            return record.id
        self._seen[record.key] = None
        if len(self._seen) > self._seen_limit:
            del self._seen[next(iter(self._seen))]
        if record.kind == "pick_update":
            self.updates_published += 1
            if self.shadow_models:
                self._track_open(record.fields)
        else:
            self.published += 1
        by_status = self.published_by.setdefault(record.kind, {})
        by_status[_status(record)] = by_status.get(_status(record), 0) + 1
        self._rings[record.kind].append(record)
        self.broadcaster.send(record)
        if self.outbox is not None and not self.outbox.put({"kind": record.kind, "fields": record.fields}):
            del self._seen[record.key]  # dropped (memory full, no spill directory): a retry may try again
        return record.id

    def publish_many(self, items: Iterable[Pick | Detection]) -> list[str]:
        return [self.publish(item) for item in items]

    async def _deliver(self, batch: list[dict]) -> None:
        """One pipeline of PUBLISH_ONCE calls, in order; raises when Redis does not answer."""
        if self._redis is None:
            raise ConnectionError("publisher not started")
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.scripts.add(self._script)  # loaded (again, after a Redis restart) before the pipeline runs
            for entry in batch:
                kind, fields = entry["kind"], entry["fields"]
                stream = self.streams[kind]
                message = json.dumps(fields, separators=(",", ":"))
                args = [self.maxlen, self.dedupe_ttl_s, self.channels[kind], message]
                for name, value in fields.items():
                    args += [name, value]
                pipe.evalsha(self._script.sha, 2, stream, f"{stream}:seen:{dedupe_key(fields)}", *args)
            results = await pipe.execute()
        self.duplicates += sum(result is None for result in results)
        if self.on_delivered is not None:
            now = time.time()
            for entry in batch:  # from the hand-over (published_at) to Redis's acknowledgement
                fields = entry["fields"]
                self.on_delivered(entry["kind"], now - UTCDateTime(fields["published_at"]).timestamp)

    # -- subscribing and querying

    def subscribe(
        self,
        network: str | Iterable[str] | None = None,
        station: str | Iterable[str] | None = None,
        phase: str | Iterable[str] | None = None,
        kind: str | Iterable[str] | None = None,
        maxsize: int | None = None,
        status: str | Iterable[str] | None = None,
    ) -> Subscription:
        """A live subscription to records published from now on (comma-separated or iterable filters)."""
        return self.broadcaster.subscribe(Filters.of(network, station, phase, kind, status), maxsize)

    def recent(
        self,
        network: str | Iterable[str] | None = None,
        station: str | Iterable[str] | None = None,
        phase: str | Iterable[str] | None = None,
        since: Since = None,
        limit: int = 100,
        kind: Kind = "pick",
        status: str | Iterable[str] | None = None,
    ) -> list[Record]:
        """Matching records of the in-memory ring, oldest first.

        Without ``since`` the newest ``limit``; with it, the first ``limit`` published at or after ``since``
        (an ISO string, epoch seconds or UTCDateTime; inclusive). ``status`` filters pick updates.
        """
        filters = Filters.of(network, station, phase, status=status)
        ring = self._rings[kind]
        limit = max(limit, 0)
        if since is None:
            return list(islice(filter(filters.matches, reversed(ring)), limit))[::-1]
        start = _epoch(since)
        return list(islice((r for r in ring if r.time >= start and filters.matches(r)), limit))

    async def recent_from_redis(
        self,
        network: str | Iterable[str] | None = None,
        station: str | Iterable[str] | None = None,
        phase: str | Iterable[str] | None = None,
        since: Since = None,
        limit: int = 100,
        kind: Kind = "pick",
        scan_limit: int = 100_000,
        page: int = 1000,
        status: str | Iterable[str] | None = None,
    ) -> list[Record]:
        """As ``recent`` over the Redis stream (``since`` compares with the entry ids' time: when stored).

        Reads pages with XREVRANGE (newest ``limit``) or XRANGE (from ``since``), filtering here; looks at
        no more than ``scan_limit`` entries.
        """
        if self._redis is None:
            raise RuntimeError("no Redis configured or publisher not started")
        filters = Filters.of(network, station, phase, status=status)
        stream = self.streams[kind]
        out: list[Record] = []
        scanned = 0
        forward = since is not None
        bound = f"{int(_epoch(since) * 1000)}-0" if forward else "+"
        while len(out) < limit and scanned < scan_limit:
            count = min(page, scan_limit - scanned)
            if forward:
                entries = await self._redis.xrange(stream, min=bound, max="+", count=count)
            else:
                entries = await self._redis.xrevrange(stream, max=bound, min="-", count=count)
            for _, fields in entries:
                record = Record.from_fields(kind, fields)
                if filters.matches(record):
                    out.append(record)
                    if len(out) >= limit:
                        break
            scanned += len(entries)
            if len(entries) < count:
                break
            bound = "(" + entries[-1][0]
        return out if forward else out[::-1]

    def stats(self) -> dict[str, Any]:
        """Counters for metrics: ``depth`` items waiting for Redis, ``delivered``, ``failures``, ..."""
        out: dict[str, Any] = {
            "published": self.published,
            "repeats": self.repeats,
            "updates_published": self.updates_published,
            "published_by": {kind: dict(counts) for kind, counts in self.published_by.items()},
            "subscribers": self.broadcaster.subscribers,
            "subscriber_dropped": self.broadcaster.dropped,
            "recent": len(self._rings["pick"]),
            "redis": self.outbox is not None,
        }
        if self.outbox is not None:
            queue = self.outbox.queue
            out.update(
                depth=queue.depth,
                memory_depth=queue.memory_depth,
                disk_depth=queue.disk_depth,
                spilled=queue.spilled,
                dropped=queue.dropped,
                delivered=self.outbox.delivered,
                failures=self.outbox.failures,
                duplicates=self.duplicates,
                healthy=self.outbox.healthy,
                last_error=self.outbox.last_error,
            )
        return out

    @property
    def depth(self) -> int:
        return self.outbox.depth if self.outbox is not None else 0

    @property
    def delivered(self) -> int:
        return self.outbox.delivered if self.outbox is not None else 0

    @property
    def failures(self) -> int:
        return self.outbox.failures if self.outbox is not None else 0


def _status(record: Record) -> str:
    """A published record's status label: a pick update's (preliminary, confirmed, rejected), an event version's
    evaluation_status (preliminary, final, rejected), ``final`` for the picks and detections of the final feed."""
    if record.kind == "pick_update":
        return record.fields.get("status", "")
    if record.kind == "event":
        return record.fields.get("evaluation_status") or "preliminary"
    return "final"


def _epoch(since: UTCDateTime | str | float) -> float:
    return UTCDateTime(since).timestamp
