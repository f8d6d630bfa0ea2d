"""Live association inside the service: the stream's own picks -> located, versioned events, published.

``LiveEvents`` subscribes to the publisher's picks (every pick the service publishes, also those its picking
processes forward with ``--workers N``), feeds them to a :class:`~seispick.events.live.LiveAssociator` (PyOcto
over a sliding window, ``events.delay_s`` behind the newest pick), steps it every ``events.step_s`` off the
event loop and publishes each new event version through the same publisher: the Redis stream
``seispick:events`` and the channel ``seispick:events:live`` through the picks' outbox, and the in-process
subscribers (SSE, WebSocket). The latest version of each event is kept (``EventStore``) for ``GET
/v1/events`` and its QuakeML. Picks of stations without coordinates are published like any other and counted
as unassociated (``seispick_event_picks_unassociated{reason="no_coordinates"}``).

With ``events.preliminary`` (and ``streaming.preliminary_picks``, both on by default) the pick updates are
associated too: a preliminary pick joins the associator as soon as it is published, a confirmed one that moved
replaces the ids it supersedes, a rejected one is withdrawn (``LiveAssociator.update``), so events are
declared seconds after their picks and settle as the picks become final; ``events.min_version_interval_s``
holds an open event's versions that far apart.

Only the picks of one model are associated (``events.model``, default the stream's first picker), so two
pickers on the same stations do not make every arrival twice. With sharded replicas each replica sees only
its stations: association then belongs to one ``seispick associate --follow REDIS_URL`` over the merged
``seispick:picks`` stream, not to the replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from seispick.events.associate import Associator
from seispick.events.association_metrics import EventMetrics
from seispick.events.event import Event
from seispick.events.follow import pick_from_fields
from seispick.events.live import LiveAssociator, LiveConfig
from seispick.events.live_magnitude import LiveMagnitudes, live_magnitudes
from seispick.events.stations import StationTable
from seispick.models.inference import OnnxModel
from seispick.service.publish.publisher import PickPublisher, Record, Subscription
from seispick.service.settings import (
    EventsConfigError,
    EventsSettings,
    Settings,
    check_events,
)
from seispick.service.stream.job import RealtimeJob

log = logging.getLogger(__name__)

SUBSCRIPTION_SIZE = 100_000  # picks waiting for the associator before the oldest are lost (counted)
_METRICS: weakref.WeakKeyDictionary[CollectorRegistry, EventMetrics] = weakref.WeakKeyDictionary()


def associated_model(settings: Settings, models: Mapping[str, OnnxModel]) -> str:
    """The model whose picks are associated: ``events.model``, else the stream's first picker."""
    if settings.events.model:
        return settings.events.model
    names = settings.streaming.live_models(settings.default_model)  # never a shadow model
    pickers = [name for name in names if name in models and models[name].card.task == "picker"]
    if not pickers:
        raise EventsConfigError(
            "model", f"the stream runs no picker ({', '.join(names)}): no picks to associate"
        )
    return pickers[0]


def live_config(events: EventsSettings) -> LiveConfig:
    """The live associator's configuration from the ``events`` settings."""
    return LiveConfig(
        window_s=events.window_s,
        delay_s=events.delay_s,
        min_move_km=events.min_move_km,
        min_shift_s=events.min_time_change_s,
        settle=events.settle,
        merge_km=events.merge_km,
        merge_s=events.merge_s,
        min_version_interval_s=events.min_version_interval_s,
    )


def associates_preliminary(settings: Settings) -> bool:
    """Whether the service associates preliminary picks: ``events.preliminary`` with ``events.settle`` (withdrawn
    picks leave their event only then), and the stream publishes them."""
    events = settings.events
    return events.preliminary and events.settle and settings.streaming.preliminary_picks


# -- the latest version of each event -------------------------------------------------------------------------


@dataclass
class Stored:
    event: Event
    fields: dict[str, str]  # as published (Record fields, with published_at)
    published: float  # epoch seconds


class EventStore:
    """The latest published version of the ``keep`` most recently published events."""

    def __init__(self, keep: int = 10_000) -> None:
        self.keep = keep
        self._events: OrderedDict[str, Stored] = OrderedDict()

    def put(self, event: Event, record: Record) -> None:
        self._events.pop(event.event_id, None)
        if event.superseded_by is not None:  # published once as superseded, then gone from the latest
            return
        self._events[event.event_id] = Stored(event, record.fields, record.time)
        while len(self._events) > self.keep:
            self._events.popitem(last=False)

    def get(self, event_id: str) -> Stored | None:
        return self._events.get(event_id)

    def select(self, since: float | None = None, min_stations: int = 0, limit: int = 100) -> list[Stored]:
        """Events whose latest version was published at or after ``since`` with at least ``min_stations``
        stations: the ``limit`` latest by origin time, in origin time order."""
        chosen = [
            s
            for s in self._events.values()
            if (since is None or s.published >= since) and s.event.n_stations >= min_stations
        ]
        chosen.sort(key=lambda s: s.event.origin.time)
        return chosen[-limit:] if limit else []

    def __len__(self) -> int:
        return len(self._events)


# -- the live job ---------------------------------------------------------------------------------------------


class LiveEvents:
    """Association of the publisher's picks into events, published through the same publisher."""

    def __init__(
        self,
        settings: Settings,
        publisher: PickPublisher,
        registry: CollectorRegistry,
        model: str,
    ) -> None:
        self.settings = settings
        self.config = settings.events
        self.publisher = publisher
        self.model = model
        self.metrics = _METRICS.get(registry) or _METRICS.setdefault(registry, EventMetrics(registry))
        self.store = EventStore(self.config.keep)
        self.stations: StationTable | None = None
        self.live: LiveAssociator | None = None
        self.other_models = 0  # picks of models that are not associated
        self.published = 0
        self.overflow = 0
        self._subscription: Subscription | None = None
        self.preliminary = False  # preliminary picks associated (set by start)
        self.magnitudes: LiveMagnitudes | None = None  # live ML: its ring takes the job's records (tee)
        self._lock = asyncio.Lock()
        self._stepping: asyncio.Future[list[Event]] | None = None  # the step running in its thread
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        """Read the station and velocity files, build PyOcto (off the loop) and start following the picks."""
        self.stations, config = check_events(self.settings)
        for note in self.stations.notes:
            log.warning("events: %s", note)
        associator = await asyncio.to_thread(Associator, self.stations, config)
        if self.config.magnitudes:
            self.magnitudes = live_magnitudes(
                self.stations,
                config.velocity.surface,
                self.config.magnitude_ring_s,
                self.config.magnitude_ring_max_bytes,
            )
        self.live = LiveAssociator(
            associator,
            live_config(self.config),
            metrics=self.metrics,
            magnitude=self.magnitudes,
        )
        self.preliminary = associates_preliminary(self.settings)
        kinds = ("pick", "pick_update") if self.preliminary else "pick"
        self._subscription = self.publisher.subscribe(kind=kinds, maxsize=SUBSCRIPTION_SIZE)
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._step_loop())]
        log.info(
            "events: associating %s %s picks on %d stations (%s), delay %.0f s, window %.0f s",
            "preliminary and final" if self.preliminary else "final",
            self.model,
            len(self.stations),
            associator.model_name,
            self.config.delay_s,
            self.config.window_s,
        )

    async def stop(self) -> None:
        """Stop following; associate what is buffered and publish it (before the publisher stops)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._stepping is not None:  # a step still running in its thread: the associator is not shared
            with contextlib.suppress(Exception):
                self._publish(await self._stepping)
            self._stepping = None
        if self._subscription is not None:
            self._drain()
            self._subscription.close()
        if self.live is not None:
            with contextlib.suppress(RuntimeError):  # the publisher already stopped: nothing to publish to
                self._publish(await asyncio.to_thread(self.live.flush))

    # -- picks in

    @property
    def lock(self) -> asyncio.Lock:
        """Held while picks are added or a step runs (a promotion switches the model under it)."""
        return self._lock

    def drain(self) -> None:
        """Associate what waits in the subscription now, without awaiting (hold ``lock``)."""
        if self._subscription is not None:
            self._drain()

    def follow(self, model: str) -> None:
        """Associate ``model``'s picks from now on (a promotion; hold ``lock``, ``drain`` first). The picks
        already taken stay with their events."""
        if model != self.model:
            log.warning("events: associating %s's picks from now on (was %s)", model, self.model)
            self.model = model

    async def _read(self) -> None:
        assert self._subscription is not None
        async for record in self._subscription:
            async with self._lock:  # not while a step runs in its thread
                self._add(record)
                self._drain()

    def _drain(self) -> None:
        """Add what else waits in the subscription without awaiting (the step holds the lock meanwhile)."""
        sub = self._subscription
        assert sub is not None
        while not sub.queue.empty():
            record = sub.queue.get_nowait()
            if isinstance(record, Record):
                self._add(record)
            else:  # the subscription's end marker: put back for the reader
                sub.queue.put_nowait(record)
                return

    def _add(self, record: Record) -> None:
        assert self.live is not None
        fields = record.fields
        if fields.get("model") != self.model:
            self.other_models += 1
            return
        try:
            pick = pick_from_fields(fields)
        except (KeyError, ValueError, TypeError) as exc:
            log.warning("events: pick %s skipped: malformed (%s)", fields.get("id"), exc)
            return
        if record.kind == "pick_update":
            supersedes = tuple(s for s in fields.get("supersedes", "").split(",") if s)
            self.live.update(fields["status"], pick, fields["id"], supersedes)
        elif self.preliminary:  # a final pick: already here when its preliminary pick had the same id
            self.live.update("confirmed", pick, fields["id"])
        else:
            self.live.add(pick, fields["id"])

    # -- association

    async def _step_loop(self) -> None:
        assert self.live is not None and self._subscription is not None
        while True:
            await asyncio.sleep(self.config.step_s)
            try:
                async with self._lock:
                    self._count_overflow()
                    self._stepping = asyncio.ensure_future(asyncio.to_thread(self.live.step))
                    events = await asyncio.shield(self._stepping)  # a cancelled loop leaves it to stop()
                    self._stepping = None
            except Exception:  # noqa: BLE001 - association must not stop the service
                log.exception("events: association step failed; the picks stay buffered")
                continue
            self._publish(events)

    def _count_overflow(self) -> None:
        assert self._subscription is not None
        lost = self._subscription.dropped - self.overflow
        if lost > 0:
            self.overflow += lost
            self.metrics.picks_unassociated.labels("overflow").inc(lost)
            log.warning("events: %d pick(s) lost: the associator fell behind the picks", lost)

    def _publish(self, events: list[Event]) -> None:
        for event in events:
            record = Record.of(event)  # type: ignore[arg-type]
            self.store.put(event, record)
            self.publisher.publish(event)  # type: ignore[arg-type]
            self.published += 1

    # -- what operators see

    def _magnitude_state(self) -> dict | None:
        """The live-ML ring's size and the measurement counters (None when magnitudes are off)."""
        if self.magnitudes is None:
            return None
        ring = self.magnitudes.ring
        return {"ring_bytes": ring.nbytes, "ring_max_bytes": ring.max_bytes, **dict(self.magnitudes.counts)}

    def state(self) -> dict:
        """Association counters for ``GET /v1/events``."""
        live = self.live
        stats = live.stats if live is not None else None
        return {
            "model": self.model,
            "stations": len(self.stations) if self.stations is not None else 0,
            "velocity_model": live.associator.model_name if live is not None else None,
            "delay_s": self.config.delay_s,
            "window_s": self.config.window_s,
            "picks_received": stats.received if stats else 0,
            "picks_associated": stats.joined if stats else 0,  # once in a published version
            "picks_in_final_events": stats.associated if stats else 0,
            "picks_unassociated": {
                "no_coordinates": stats.no_coordinates if stats else 0,
                "no_event": stats.no_event if stats else 0,
                "late": stats.late if stats else 0,
                "phase": stats.phase if stats else 0,
                "duplicate": stats.duplicates if stats else 0,
                "overflow": self.overflow,
            },
            "picks_of_other_models": self.other_models,
            "events_declared": stats.declared if stats else 0,
            "events_updated": stats.updated if stats else 0,
            "events_superseded": stats.superseded if stats else 0,
            "events_rejected": stats.rejected if stats else 0,
            "preliminary_picks": self.preliminary,
            "picks_withdrawn": stats.withdrawn if stats else 0,
            "versions_published": self.published,
            "open_events": len(live.open_events) if live is not None else 0,
            "magnitudes": self._magnitude_state(),
        }


def tee_records(job: RealtimeJob, events: LiveEvents | None) -> None:
    """Hand the job's horizontal records to the live magnitudes' waveform ring (when they are on)."""
    if events is not None and events.magnitudes is not None:
        job.tee = events.magnitudes.ring.add


async def start_events(
    settings: Settings, publisher: PickPublisher, registry: CollectorRegistry, models: Mapping[str, OnnxModel]
) -> LiveEvents | None:
    """The service's live association when ``events`` asks for it (stations set, or ``--demo``), started.

    The publisher's events stream and channel are set from ``events`` either way: without association here,
    ``GET /v1/events`` reads the stream another process (``seispick associate --follow``) fills.
    """
    # where event versions go (through the picks' outbox), or are read from without association here
    publisher.streams["event"] = settings.events.stream_key
    publisher.channels["event"] = settings.events.channel
    if not settings.events.active(settings.demo):
        return None
    events = LiveEvents(settings, publisher, registry, associated_model(settings, models))
    await events.start()
    return events
