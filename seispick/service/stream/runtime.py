"""The real-time job: sources -> stream picker -> publisher, with the demo replay.

``StreamingRuntime`` is created by the app's lifespan when streaming is configured (SeedLink servers,
watched folders, or ``--demo``) and shares the app's micro-batcher with HTTP requests. With
``serve --workers N`` (N > 1) each picking process runs one (:mod:`.worker`) for its ``Slot``: it keeps the
stations of its part of the replica's shard (``StreamingSettings.worker_of``) and hands its picks to a
``sink`` (the API process's publisher) instead of publishing them itself.

SeedLink records of stations this process does not pick are skipped by their header, before decoding, and
counted as ``outside_shard_records``; a concrete station list is subscribed only for the stations it picks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import obspy

from seispick.events.magnitude import HORIZONTAL
from seispick.feed import Source
from seispick.models.inference import OnnxModel
from seispick.picking.results import Detection, Pick, PickUpdate
from seispick.replay.server import SeedLinkReplayServer
from seispick.seedlink.client.source import SeedLinkSource
from seispick.seedlink.client.source_config import SeedLinkSourceConfig
from seispick.seedlink.stream_specs import StreamSpec
from seispick.service.ingest.folder import DirectorySource
from seispick.service.ingest.manager import SourceConfig, SourceManager, make_source
from seispick.service.publish.publisher import PickPublisher
from seispick.service.settings import Settings
from seispick.service.stream.job import PickSink
from seispick.service.stream.job_metrics import StreamMetrics, StreamSnapshot
from seispick.service.stream.picker import Predict, StreamPicker
from seispick.service.stream.positions import (
    PositionKeeper,
    Positions,
    PositionTracker,
    WarmUp,
    final_times,
    make_store,
    position_key,
    split_key,
)
from seispick.service.stream.selector_check import SelectionWatch

log = logging.getLogger(__name__)

DEMO_DIR = Path(__file__).resolve().parent / "demo"
STOP_DRAIN_S = 10.0  # at a stop with kept positions, how long windows in flight may still come back
FINAL = "final"  # the source part of the keys of the instruments' final times


@dataclass(frozen=True)
class Slot:
    """Which of a replica's ``count`` picking processes this is (0-based ``index``)."""

    index: int = 0
    count: int = 1


def make_publisher(settings: Settings) -> PickPublisher:
    """The publisher of the real-time job (Redis streams, live subscribers, recent picks)."""
    config = settings.streaming
    return PickPublisher(
        settings.redis_url,
        stream=config.stream_key,
        detections_stream=config.detections_key,
        channel=config.channel,
        updates_stream=config.preliminary_key,
        updates_channel=config.preliminary_channel,
        shadow_models=config.shadow_models,
        shadow_stream=config.shadow_key,
        shadow_channel=config.shadow_channel,
        maxlen=config.maxlen,
        spill_dir=config.spill_dir,
    )


async def start_demo() -> SeedLinkReplayServer:
    """The bundled demo archive as a live SeedLink server on a free port."""
    replay = SeedLinkReplayServer([DEMO_DIR], port=0, speed=1.0, restamp=True, loop=True)
    await replay.start()
    log.info("demo: replaying %s on SeedLink port %d", DEMO_DIR, replay.port)
    return replay


def source_configs(settings: Settings, demo_port: int | None) -> list[SourceConfig]:
    """``streaming.sources``, after the demo's SeedLink server (on ``demo_port``) with ``--demo``."""
    configs: list[SourceConfig] = []
    if settings.demo and demo_port is not None:
        configs.append(
            SeedLinkSourceConfig(name="demo", host="127.0.0.1", port=demo_port, selectors=["SP_*:HH?"])
        )
    return configs + settings.streaming.sources


def selection_specs(configs: list) -> list[StreamSpec]:
    return [spec for c in configs if isinstance(c, SeedLinkSourceConfig) for spec in c.stream_specs()]


class StreamingRuntime:
    """Sources, the stream picker and the publisher (or the ``sink``) of one picking process.

    With its own publisher (no ``sink``) it is the API process's :class:`~.job.RealtimeJob`.
    """

    def __init__(
        self,
        settings: Settings,
        model: OnnxModel | Sequence[OnnxModel],
        predict: Predict,
        metrics: StreamMetrics,
        slot: Slot = Slot(),
        sink: PickSink | None = None,
        demo_port: int | None = None,
        offer_positions: Callable[[Positions], None] | None = None,
    ) -> None:
        self.settings = settings
        self.config = settings.streaming
        self.metrics = metrics
        self.slot = slot
        self.demo_port = demo_port
        self._publisher = make_publisher(settings) if sink is None else None
        self._sink: PickSink = sink or self.publisher.publish
        if self._publisher is not None:
            self._publisher.on_delivered = self._observe_delivery
        self.tee: Callable[[obspy.Trace], None] | None = None  # also gets the horizontal records taken
        self._stages: dict[str, dict[str, float]] = {}  # instrument -> its latest pick's stages, seconds
        self.picker = StreamPicker(
            model,
            predict,
            self._emit,
            thresholds=settings.thresholds(),
            silence_timeout_s=self.config.silence_timeout_s,
            lag_tolerance_s=self.config.lag_tolerance_s,
            late_component_max_bytes=self.config.late_component_max_bytes,
            on_record=self._on_record,
            behind_s=self.config.behind_s,
            behind_timeout_s=self.config.behind_timeout_s,
            max_in_flight=max(settings.batching.max_queue_windows // 2, 1),  # the rest is for HTTP requests
            on_update=self._emit_update if self.config.preliminary_picks else None,
            quiet=self.config.shadow_models,  # no pick updates (nor first-look windows) for shadow models
            first_look_stride_s=self.config.first_look_stride_s if self.config.preliminary_picks else None,
        )
        self.replay: SeedLinkReplayServer | None = None
        self.sources = SourceManager()
        self.outside_shard = 0
        self.selection = SelectionWatch((), self.config.owns, self.config.selector_grace_s)
        self._owned: dict[tuple[str, str], bool] = {}
        # kept positions (keep_positions): the keeper writes them where the publisher is; a worker offers
        # its positions to the API process's keeper through ``offer_positions``
        self.keeps_positions = self.config.keep_positions
        self._offer_positions = offer_positions
        self.keeper: PositionKeeper | None = None
        self.tracker: PositionTracker | None = None
        self._saved: Positions = {}
        self.window_s = max(m.card.window_samples / m.card.sampling_rate for m in self.picker.models)
        self.warm = WarmUp({}, self.window_s)
        metrics.attach(self.snapshot)

    @property
    def publisher(self) -> PickPublisher:
        """This process's publisher; a picking process of ``serve --workers N`` has none (it has a sink)."""
        if self._publisher is None:
            raise AttributeError("this picking process hands its picks to a sink: it has no publisher")
        return self._publisher

    @staticmethod
    def wanted(settings: Settings) -> bool:
        """Whether the settings ask for any real-time source."""
        config = settings.streaming
        return bool(settings.demo or config.sources)

    async def start(self) -> None:
        if self._publisher is not None:
            await self._publisher.start()
        await self.picker.start()
        if self.keeps_positions:
            await self._load_positions()
        port = self.demo_port
        if self.settings.demo and port is None:
            self.replay = await start_demo()
            port = self.replay.port
        configs = source_configs(self.settings, port)
        self.selection = SelectionWatch(
            selection_specs(configs), self.config.owns, self.config.selector_grace_s, self.selection.warnings
        )
        if self.slot.count == 1:
            self.selection.start()  # with workers, the API process judges the selection from their counts
        self.sources = SourceManager(s for s in map(self._source, configs) if s is not None)
        await self.sources.start()
        if self.keeps_positions:
            offer = self._offer_positions or (self.keeper.offer if self.keeper else None)
            if offer is not None:
                flush = self.keeper.flush if self.keeper is not None else None
                self.tracker = PositionTracker(self.positions, offer, self.config.positions_every_s, flush)
                await self.tracker.start()

    async def stop(self, flush: bool = True) -> None:
        """Stop the sources and the picker; with ``flush`` the picks at the end of every instrument's data
        come out first. With kept positions, instruments are not closed (a restart resumes them where their
        picks are final, as an unbroken run would pick them): windows in flight come back, the positions go
        out once their picks are delivered."""
        self.selection.stop()
        if self.tracker is not None:
            await self.tracker.stop()
        await self.sources.stop()
        if self.replay is not None:
            await self.replay.stop()
        if self.keeps_positions:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.picker.drain(), STOP_DRAIN_S)
            await self.picker.stop(flush=False)
            if self.tracker is not None:
                self.tracker.offer(self.positions())
        else:
            await self.picker.stop(flush=flush)
        if self._publisher is not None:
            await self._publisher.stop()
        if self.keeper is not None:
            await self.keeper.flush()
            await self.keeper.store.close()

    def set_roles(self, shadow_models: list[str]) -> None:
        """A promotion: the shadow models publish no pick updates (nor first-look windows), the others do,
        from their pickers' next output on (``StreamPicker.set_quiet``)."""
        self.picker.set_quiet(shadow_models)

    async def refresh(self) -> None:
        """Nothing to fetch: this process holds its state (a worker pool fetches its workers' here)."""

    # -- which stations this process picks ----------------------------------------------------------------------
    def owns(self, network: str, station: str) -> bool:
        """Whether NET.STA is picked here: in the replica's shard and, with workers, in this worker's part."""
        key = (network, station)
        owned = self._owned.get(key)
        if owned is None:
            config, slot = self.config, self.slot
            owned = config.owns(network, station) and (
                slot.count == 1 or config.worker_of(network, station, slot.count) == slot.index
            )
            self._owned[key] = owned
        return owned

    def _observes_other_shard(self, network: str, station: str) -> bool:
        """Records of other replicas' stations count for the selection in one process only (the first)."""
        return self.slot.index == 0 and not self.config.owns(network, station)

    def _source(self, config) -> Source | None:
        if not isinstance(config, SeedLinkSourceConfig):
            source = make_source(config, self._on_trace)
            if self.keeps_positions and isinstance(source, DirectorySource):
                source.track_positions = True
                for item, position in self._kept(source.name):
                    source.seed(item, position)
            return source
        specs = [s for s in config.stream_specs() if s.wildcard or self.owns(s.network, s.station)]
        if not specs:
            log.info("%s: none of the listed stations is picked by this process", config.name)
            return None
        mine = config.model_copy(update={"selectors": [str(s) for s in specs], "station_file": None})
        seedlink = SeedLinkSource(mine, self._on_trace, accept=self._accept)
        if self.keeps_positions and not (self.settings.demo and config.name == "demo"):
            seedlink.track_positions = True
            seeded = 0
            for item, position in self._kept(seedlink.name):
                network, _, station = item.partition("_")
                if self.owns(network, station):
                    seeded += seedlink.seed((network, station), position)
            if seeded:
                log.info("%s: %d station(s) resume from their kept positions", seedlink.name, seeded)
        return seedlink

    # -- kept positions -----------------------------------------------------------------------------------------
    async def _load_positions(self) -> None:
        """Read the kept positions; the process with the publisher also keeps the new ones."""
        store = make_store(self.settings.redis_url, self.config.positions_key, self.config.state_dir)
        self._saved = await store.load()
        if self._publisher is not None and self._offer_positions is None:
            self.keeper = PositionKeeper(store, self._publisher)
        else:
            await store.close()  # a worker only reads: the API process keeps
        finals = final_times(p for k, p in self._saved.items() if split_key(k)[0] == FINAL)
        self.warm = WarmUp({i: t for i, t in finals.items() if self._owns_instrument(i)}, self.window_s)

    def _kept(self, source: str) -> list[tuple[str, dict]]:
        return [(item, p) for key, p in self._saved.items() for s, item in [split_key(key)] if s == source]

    def _owns_instrument(self, instrument: str) -> bool:
        network, station = instrument.split(".")[:2]
        return self.owns(network, station)

    def final_ns(self, trace_id: str) -> float:
        """Records of ``trace_id`` ending by this time (ns) need not be read again: their instrument's picks
        are final a model window plus ``resume_margin_s`` later (so a restart re-reads a whole window, and
        the longest trigger, ahead of the first pick not yet emitted)."""
        final = self.picker.final_until(trace_id[:-1])
        if final is None:
            return math.inf
        return (final - self.window_s - self.config.resume_margin_s) * 1e9

    def positions(self) -> Positions:
        """The positions of this process's sources up to which every pick was handed over, and per
        instrument the time before which every pick was."""
        out: Positions = {}
        for source in self.sources.sources:
            if isinstance(source, SeedLinkSource) and source.track_positions:
                for (network, station), position in source.positions(self.final_ns).items():
                    out[position_key(source.name, f"{network}_{station}")] = position
            elif isinstance(source, DirectorySource) and source.track_positions:
                for path, position in source.positions(self.final_ns).items():
                    out[position_key(source.name, path)] = position
        for name, state in self.picker.instruments.items():
            final = self.picker.final_until(name)
            if final is None:  # nothing open: every pick up to the last sample is out
                final = state.last_end + 1.0 / state.rate
            final = max(final - 2.0 / state.rate, self.warm.final.get(name, -math.inf))  # never back
            out[position_key(FINAL, name)] = {"final": {name: round(final, 6)}}
        return out

    def _accept(self, network: str, station: str) -> bool:
        if self.owns(network, station):
            return True
        if self._observes_other_shard(network, station):
            self.selection.observe_station(network, station)
        return False

    async def _on_trace(self, trace: obspy.Trace) -> None:
        network, station = trace.stats.network, trace.stats.station
        if not self.owns(network, station):
            self.outside_shard += 1
            if self._observes_other_shard(network, station):
                self.selection.observe(trace)
            return
        self.selection.observe(trace)
        await self.picker.wait_for_room()  # backpressure: records wait in the source, not in memory
        if self.warm.final:
            self.warm.observe(trace.id[:-1], trace.stats.starttime.timestamp)
        self.picker.add_trace(trace)
        if self.tee is not None and trace.stats.channel[-1:] in HORIZONTAL:
            self.tee(trace)

    def _on_record(self, trace: obspy.Trace, latency: float) -> None:
        self.metrics.observe_record(trace, latency)

    def _emit(self, item: Pick | Detection, latency: float) -> None:
        if not self.warm.keep(item):
            return  # re-read after a resume and already published
        self._sink(item)
        self.metrics.observe_emit(item, latency)
        if isinstance(item, Pick):
            self._budget(item, latency, "window")

    def _emit_update(self, update: PickUpdate, latency: float) -> None:
        """A pick update (preliminary, confirmed, rejected) goes to the sink beside the final picks."""
        if self.warm.keep(update.pick):
            self._sink(update)  # type: ignore[arg-type]  # publish, or a worker channel: both take updates
            if update.status == "preliminary":
                self._budget(update.pick, latency, "first_look")

    def _budget(self, pick: Pick, latency: float, stage: str) -> None:
        """Observe a pick's window (or first-look) and inference stages; keep them for its instrument's row."""
        instruments = self.picker.instruments
        name = pick.trace_id if pick.trace_id in instruments else pick.trace_id[:-1]
        state = instruments.get(name)
        record = state.last_latency if state is not None else 0.0
        window = time.time() - latency - pick.peak_time.timestamp - record
        self.metrics.observe_stage(stage, window)
        self.metrics.observe_stage("inference", latency)
        if state is not None:
            self._stages.setdefault(name, {}).update({f"{stage}_s": round(max(window, 0.0), 3)})
            self._stages[name]["inference_s"] = round(latency, 3)

    def _observe_delivery(self, kind: str, seconds: float) -> None:
        if kind in ("pick", "pick_update"):
            self.metrics.observe_stage("publication", seconds)

    # -- what operators see -------------------------------------------------------------------------------------
    def station_states(self) -> list[dict]:
        """Per instrument: last sample, data latency, lag, gaps, counters and state."""
        return self._with_stages(self.picker.station_states())

    def _with_stages(self, rows: list[dict]) -> list[dict]:
        for row in rows:  # the latest pick's budget: record (data latency), window / first look, inference
            stages = self._stages.get(row["trace_id"])
            row["latency_stages"] = {"record_s": row.get("data_latency_s"), **(stages or {})}
        return rows

    def state(self, sources: dict | None = None) -> dict:
        """Sources, instruments, backlog and publication, for operators (``sources``: the sources' state when
        the caller has it already)."""
        now = time.time()
        picker = self.picker
        sources = self.sources.state() if sources is None else sources
        return {
            "sources": sources,
            "publisher": self._publisher.stats() if self._publisher is not None else {},
            "record_problems": dict(picker.problems.counts),
            "outside_shard_records": self.outside_shard + sources["totals"]["other_shard"],
            "selection": self.selection.state(now),
            "overload": {
                "behind": picker.monitor.behind,
                "behind_for_s": round(picker.monitor.behind_for(now), 3),
                "summary": picker.monitor.summary,
                "episodes": picker.monitor.episodes,
                "windows_in_flight": picker.in_flight,
                "oldest_window_s": round(picker.oldest_window_s(now), 3),
                "ingest_held_s": round(picker.held_s, 3),
                "dropped_windows": picker.dropped_windows,
            },
            "checked_at": now,
        }

    def unready_reason(self) -> str | None:
        """Why /readyz should fail: the stream has been behind for longer than ``behind_timeout_s``."""
        return self.picker.monitor.unready_reason(time.time())

    def snapshot(self, sources: dict | None = None) -> StreamSnapshot:
        """Counters and gauges for a metrics scrape (``sources``: as for :meth:`state`)."""
        now = time.time()
        picker = self.picker
        return StreamSnapshot(
            stations=self._with_stages(picker.station_states(now)),
            record_problems=dict(picker.problems.counts),
            sources=self.sources.state() if sources is None else sources,
            publisher=self._publisher.stats() if self._publisher is not None else {},
            buffer_bytes=picker.buffer_bytes(),
            windows_in_flight=picker.in_flight,
            oldest_window_s=picker.oldest_window_s(now),
            behind_for_s=picker.monitor.behind_for(now),
            ingest_held_s=picker.held_s,
            dropped_windows=picker.dropped_windows,
        )
