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
from seispick.service.stream.metrics import StreamMetrics
from seispick.service.stream.picker import StreamPicker

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
        )
        self.replay: SeedLinkReplayServer | None = None
        self.sources = SourceManager()
        self.outside_shard = 0
        metrics.attach(self)

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
                )
            )
        configs += [DirectorySourceConfig(name=str(d), path=d) for d in self.config.watch_dirs]
        self.sources = SourceManager.from_configs(configs, self._on_trace)
        await self.sources.start()

    async def stop(self) -> None:
        await self.sources.stop()
        if self.replay is not None:
            await self.replay.stop()
        await self.picker.stop(flush=True)
        await self.publisher.stop()

    async def _on_trace(self, trace: obspy.Trace) -> None:
        if not self.config.owns(trace.stats.network, trace.stats.station):
            self.outside_shard += 1
            return
        self.picker.add_trace(trace)

    def _on_record(self, trace: obspy.Trace, latency: float) -> None:
        self.metrics.observe_record(trace, latency)

    def _emit(self, item: Pick | Detection, latency: float) -> None:
        self.publisher.publish(item)
        self.metrics.observe_emit(item, latency)

    def state(self) -> dict:
        """Sources, instruments and publication, for operators."""
        return {
            "sources": self.sources.state(),
            "publisher": self.publisher.stats(),
            "record_problems": dict(self.picker.problems.counts),
            "outside_shard_records": self.outside_shard,
            "checked_at": time.time(),
        }
