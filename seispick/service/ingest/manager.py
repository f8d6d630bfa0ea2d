"""Several ingest sources on one callback: the configured source union, building a source from its settings,
and a manager that starts, stops and summarises them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import asdict
from typing import Annotated, Any

from pydantic import Field

from seispick.feed import Source, SourceStats, TraceCallback
from seispick.seedlink.client.source import SeedLinkSource
from seispick.seedlink.client.source_config import SeedLinkSourceConfig
from seispick.service.ingest.folder import (
    DirectorySource,
    DirectorySourceConfig,
    FileReplayConfig,
    FileReplaySource,
)

# One source's settings, told apart by ``kind``: the service's ``streaming.sources`` lists these.
SourceConfig = Annotated[
    SeedLinkSourceConfig | DirectorySourceConfig | FileReplayConfig, Field(discriminator="kind")
]


def make_source(config: SeedLinkSourceConfig | DirectorySourceConfig | FileReplayConfig,
                on_trace: TraceCallback) -> Source:  # fmt: skip
    """Build the source a config describes."""
    if isinstance(config, SeedLinkSourceConfig):
        return SeedLinkSource(config, on_trace)
    if isinstance(config, DirectorySourceConfig):
        return DirectorySource(config, on_trace)
    return FileReplaySource(config.paths, on_trace, name=config.name)


class SourceManager:
    """Start, stop and summarise several sources that share one ``on_trace`` callback."""

    def __init__(self, sources: Iterable[Source] = ()) -> None:
        self.sources: list[Source] = list(sources)
        self.started_at: float | None = None

    @classmethod
    def from_configs(cls, configs: Iterable[Any], on_trace: TraceCallback) -> SourceManager:
        return cls(make_source(config, on_trace) for config in configs)

    def add(self, source: Source) -> None:
        self.sources.append(source)

    async def start(self) -> None:
        self.started_at = time.time()
        for source in self.sources:
            await source.start()

    async def stop(self) -> None:
        await asyncio.gather(*(source.stop() for source in self.sources))

    async def wait(self) -> None:
        """Wait until every source has ended by itself (use with finite sources)."""
        await asyncio.gather(*(source.wait() for source in self.sources))

    async def __aenter__(self) -> SourceManager:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def state(self) -> dict[str, Any]:
        totals = SourceStats()
        for source in self.sources:
            totals.add(source.stats)
        return {
            "running": sum(source.running for source in self.sources),
            "totals": asdict(totals),
            "sources": [source.state() for source in self.sources],
        }
