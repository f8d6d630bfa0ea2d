"""The real-time job inside the service: sources -> stream picker -> publisher, with the demo replay.

``StreamingRuntime`` is created by the app's lifespan when streaming is configured (SeedLink servers,
watched folders, or ``--demo``) and shares the app's micro-batcher with HTTP requests.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import obspy

from seispick.models.picks import Detection, Pick
from seispick.replay.server import SeedLinkReplayServer
from seispick.service.ingest.sources import DirectorySourceConfig, SeedLinkSourceConfig, SourceManager
from seispick.service.publish.publisher import PickPublisher
from seispick.service.settings import Settings
from seispick.service.stream.metrics import StreamMetrics, StreamSnapshot
from seispick.service.stream.picker import StreamPicker
from seispick.service.stream.selection import SelectionWatch

log = logging.getLogger(__name__)

DEMO_DIR = Path(__file__).resolve().parent / "demo"


class StreamingRuntime:
    """Sources, the stream picker and the publisher of one app."""

    def __init__(self, settings: Settings, model, predict, metrics: StreamMetrics) -> None:
        self.settings = settings
        self.config = settings.streaming
        self.metrics = metrics
        self.publisher = PickPublisher(
            settings.redis_url,
            stream=self.config.stream_key,
            detections_stream=self.config.detections_key,
            channel=self.config.channel,
            maxlen=self.config.maxlen,
            spill_dir=self.config.spill_dir,
        )
        self.picker = StreamPicker(
            model,
            predict,
            self._emit,
            thresholds=settings.thresholds(),
            silence_timeout_s=self.config.silence_timeout_s,
            lag_tolerance_s=self.config.lag_tolerance_s,
            on_record=self._on_record,
            behind_s=self.config.behind_s,
            behind_timeout_s=self.config.behind_timeout_s,
            max_in_flight=max(settings.batching.max_queue_windows // 2, 1),  # the rest is for HTTP requests
        )
        self.replay: SeedLinkReplayServer | None = None
        self.sources = SourceManager()
        self.outside_shard = 0
        self.selection = SelectionWatch((), self.config.owns, self.config.selector_grace_s)
        metrics.attach(self.snapshot)

    @staticmethod
    def wanted(settings: Settings) -> bool:
        """Whether the settings ask for any real-time source."""
        config = settings.streaming
        return bool(settings.demo or config.seedlink or config.watch_dirs)

    async def start(self) -> None:
        await self.publisher.start()
        await self.picker.start()
        configs: list = []
        if self.settings.demo:
            self.replay = SeedLinkReplayServer([DEMO_DIR], port=0, speed=1.0, restamp=True, loop=True)
            await self.replay.start()
            configs.append(
                SeedLinkSourceConfig(
                    name="demo", host="127.0.0.1", port=self.replay.port, selectors=["SP_*:HH?"]
                )
            )
            log.info("demo: replaying %s on SeedLink port %d", DEMO_DIR, self.replay.port)
        for server in self.config.seedlink:
            host, _, port = server.rpartition(":")
            configs.append(
                SeedLinkSourceConfig(
                    name=server,
                    host=host or "127.0.0.1",
                    port=int(port),
                    selectors=self.config.selectors,
                    station_file=self.config.station_file,
                    reconnect_max_s=self.config.reconnect_max_s,
                    begin_time=self.config.begin_time,
                    protocol=self.config.protocol_version,
                    relist_s=self.config.station_relist_s,
                )
            )
        configs += [DirectorySourceConfig(name=str(d), path=d) for d in self.config.watch_dirs]
        specs = [spec for c in configs if isinstance(c, SeedLinkSourceConfig) for spec in c.stream_specs()]
        self.selection = SelectionWatch(
            specs, self.config.owns, self.config.selector_grace_s, self.selection.warnings
        )
        self.selection.start()
        self.sources = SourceManager.from_configs(configs, self._on_trace)
        await self.sources.start()

    async def stop(self) -> None:
        self.selection.stop()
        await self.sources.stop()
        if self.replay is not None:
            await self.replay.stop()
        await self.picker.stop(flush=True)
        await self.publisher.stop()

    async def _on_trace(self, trace: obspy.Trace) -> None:
        self.selection.observe(trace)
        if not self.config.owns(trace.stats.network, trace.stats.station):
            self.outside_shard += 1
            return
        await self.picker.wait_for_room()  # backpressure: records wait in the source, not in memory
        self.picker.add_trace(trace)

    def _on_record(self, trace: obspy.Trace, latency: float) -> None:
        self.metrics.observe_record(trace, latency)

    def _emit(self, item: Pick | Detection, latency: float) -> None:
        self.publisher.publish(item)
        self.metrics.observe_emit(item, latency)

    def state(self) -> dict:
        """Sources, instruments, backlog and publication, for operators."""
        now = time.time()
        picker = self.picker
        return {
            "sources": self.sources.state(),
            "publisher": self.publisher.stats(),
            "record_problems": dict(picker.problems.counts),
            "outside_shard_records": self.outside_shard,
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

    def snapshot(self) -> StreamSnapshot:
        """Counters and gauges for a metrics scrape."""
        now = time.time()
        picker = self.picker
        return StreamSnapshot(
            stations=picker.station_states(now),
            record_problems=dict(picker.problems.counts),
            sources=self.sources.state(),
            publisher=self.publisher.stats(),
            buffer_bytes=picker.buffer_bytes(),
            windows_in_flight=picker.in_flight,
            oldest_window_s=picker.oldest_window_s(now),
            behind_for_s=picker.monitor.behind_for(now),
            ingest_held_s=picker.held_s,
            dropped_windows=picker.dropped_windows,
        )
