"""Ingest sources for streaming picking: configuration, record decoding, the source base and a manager.

A source turns an external feed into ``obspy.Trace`` objects, one per miniSEED record, and hands each to
an async callback ``on_trace(trace)``. The concrete sources live in
:mod:`seispick.service.ingest.seedlink` (a SeedLink 3 client with sequence resume) and
:mod:`seispick.service.ingest.folder` (a polled directory of growing files, or a one-off file replay).
Settings embed :class:`IngestSettings` (or the single configs); :func:`make_source` builds a source from
its config and :class:`SourceManager` runs several sources on one callback.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from obspy import Trace
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from seispick.seedlink.protocol import Selector
from seispick.service.ingest.records import (  # noqa: F401 - re-exported for the sources
    MAX_SAMPLING_RATE,
    NS_PER_S,
    RecordError,
    decode_record,
    is_record_header,
    plausible_rate,
    read_mseed_bytes,
    record_length,
    record_source_id,
    trace_end_ns,
)

logger = logging.getLogger(__name__)

__all__ = [
    "DirectorySourceConfig",
    "FileReplayConfig",
    "IngestSettings",
    "RecordError",
    "SeedLinkSourceConfig",
    "Source",
    "SourceConfig",
    "SourceManager",
    "SourceStats",
    "StreamSpec",
    "TraceCallback",
    "decode_record",
    "make_source",
    "parse_stream_spec",
    "read_mseed_bytes",
    "read_station_file",
]

TraceCallback = Callable[[Trace], Awaitable[None]]
_CODE = re.compile(r"^[A-Za-z0-9?*]{1,8}$")


# ------------------------------------------------------------------------------------- stream specs
@dataclass(frozen=True, slots=True)
class StreamSpec:
    """One ``NET_STA[:SELECTORS]`` line: network and station (``?``/``*`` allowed) and SeedLink selectors."""

    network: str
    station: str
    selectors: tuple[str, ...] = ()  # empty: every stream of the station

    @property
    def wildcard(self) -> bool:
        return any(c in self.network + self.station for c in "*?")

    def matches(self, network: str, station: str) -> bool:
        return fnmatchcase(network.upper(), self.network) and fnmatchcase(station.upper(), self.station)

    def __str__(self) -> str:
        return f"{self.network}_{self.station}" + (":" + " ".join(self.selectors) if self.selectors else "")


def parse_stream_spec(text: str) -> StreamSpec:
    """Parse ``NET_STA[:SEL[ SEL...]]`` (selectors separated by spaces or commas), e.g. ``GE_APE:BH?``.

    Raises ``ValueError`` for malformed codes or selectors a SeedLink server would refuse.
    """
    head, colon, tail = text.strip().partition(":")
    network, sep, station = head.strip().partition("_")
    if not sep or not _CODE.match(network) or not _CODE.match(station):
        raise ValueError(f"expected NET_STA[:CHA], got {text!r}")
    selectors = tuple(s for s in re.split(r"[\s,]+", tail.strip()) if s)
    if colon and not selectors:
        raise ValueError(f"empty selector list in {text!r}")
    for selector in selectors:
        Selector.parse(selector)  # validates; raises ValueError
    return StreamSpec(network.upper(), station.upper(), tuple(s.upper() for s in selectors))


def read_station_file(path: str | Path) -> list[StreamSpec]:
    """Read one ``NET_STA[:CHA]`` per line; ``#`` starts a comment, blank lines are skipped."""
    specs = []
    for number, raw in enumerate(Path(path).read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            specs.append(parse_stream_spec(line))
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: {exc}") from exc
    return specs


# ----------------------------------------------------------------------------------- configuration
class _SourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, description="Label in state and logs (default: derived)")


class SeedLinkSourceConfig(_SourceConfig):
    """A SeedLink server (protocol 4.0 or 3.1) and the streams to subscribe to."""

    kind: Literal["seedlink"] = "seedlink"
    host: str = "127.0.0.1"
    port: int = Field(default=18000, ge=1, le=65535)
    selectors: list[str] = Field(default_factory=list, description="NET_STA[:CHA] lines, e.g. GE_APE:BH?")
    station_file: Path | None = Field(default=None, description="A file of NET_STA[:CHA] lines")
    begin_time: datetime | None = Field(
        default=None, description="First connection starts here (TIME); otherwise at the live end"
    )
    reconnect_min_s: float = Field(default=1.0, gt=0)
    reconnect_max_s: float = Field(default=60.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0, description="Connect and command-reply timeout")
    keepalive_s: float = Field(default=30.0, gt=0, description="Send INFO ID after this long without data")
    idle_timeout_s: float = Field(default=120.0, gt=0, description="Reconnect after this long without data")
    protocol: Literal["auto", "4.0", "3.1"] = Field(
        default="auto", description="SeedLink version: auto uses 4.0 when the server offers it"
    )
    relist_s: float = Field(
        default=300.0,
        ge=0,
        description="Re-list the server's stations this often when station wildcards had to be expanded "
        "by the client (no native wildcards), to subscribe new matches; 0: never",
    )

    @field_validator("selectors")
    @classmethod
    def _valid_selectors(cls, value: list[str]) -> list[str]:
        for text in value:
            parse_stream_spec(text)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SeedLinkSourceConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        if not self.selectors and self.station_file is None:
            raise ValueError("give selectors or a station_file")
        return self

    def stream_specs(self) -> list[StreamSpec]:
        """Selectors from the settings, then from the station file (read now)."""
        specs = [parse_stream_spec(text) for text in self.selectors]
        if self.station_file is not None:
            specs += read_station_file(self.station_file)
        return specs


class DirectorySourceConfig(_SourceConfig):
    """A folder polled for new and growing miniSEED files."""

    kind: Literal["directory"] = "directory"
    path: Path
    poll_s: float = Field(default=1.0, gt=0)
    pattern: str = Field(default="*", description="Glob below path; '**/*.mseed' searches sub-folders")
    read_existing: bool = Field(default=True, description="Deliver files already there at start")


class FileReplayConfig(_SourceConfig):
    """Files (or folders of files) read once, in the given order."""

    kind: Literal["files"] = "files"
    paths: list[Path] = Field(min_length=1)


SourceConfig = Annotated[
    SeedLinkSourceConfig | DirectorySourceConfig | FileReplayConfig, Field(discriminator="kind")
]


class IngestSettings(BaseModel):
    """The ingest group of the service settings: every source to run."""

    sources: list[SourceConfig] = Field(default_factory=list)


# ---------------------------------------------------------------------------------------- decoding
# ---------------------------------------------------------------------------------------- sources
@dataclass
class SourceStats:
    """Counters of one source (cumulative over reconnects)."""

    records: int = 0  # delivered to on_trace
    bytes: int = 0  # raw record bytes received or read
    decode_errors: int = 0  # not a record, or libmseed refused it
    bad_rate: int = 0  # decoded, but the sampling rate is <= 0, NaN or > 10 kHz
    skipped: int = 0  # records without samples (text/log, empty) or outside the selection
    other_shard: int = 0  # records of stations another shard or worker picks, skipped before decoding
    duplicates: int = 0  # already delivered (overlap after a resume)
    callback_errors: int = 0  # on_trace raised
    reconnects: int = 0  # connection attempts after the first

    def add(self, other: SourceStats) -> None:
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))


STOP_RETRY_S = 1.0  # how long stop() waits for a cancel to land before it cancels again


class Source(ABC):
    """A feed of traces: ``start()`` runs it as a task, ``stop()`` cancels it, ``state()`` reports it."""

    kind: ClassVar[str] = "source"

    def __init__(self, on_trace: TraceCallback, name: str) -> None:
        self.on_trace = on_trace
        self.name = name
        self.stats = SourceStats()
        self.status = "idle"  # idle, running, finished, failed, stopped
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None

    @abstractmethod
    async def run(self) -> None:
        """Produce traces until done (file replay) or cancelled (live feeds)."""

    async def start(self) -> None:
        if self._task is None or self._task.done():
            self.status = "running"
            self._task = asyncio.create_task(self._guarded(), name=f"ingest-{self.name}")

    async def stop(self) -> None:
        """Cancel the feed and wait for it to end. Python 3.11's ``wait_for`` and ``asyncio.timeout`` can swallow
        a cancel that coincides with an I/O completing or timing out, so the cancel is repeated until it lands."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=STOP_RETRY_S)
            await asyncio.gather(task, return_exceptions=True)
            self.status = "stopped"

    async def wait(self) -> None:
        """Wait for the source to end by itself (only finite sources do)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _guarded(self) -> None:
        try:
            await self.run()
            self.status = "finished"
        except asyncio.CancelledError:
            self.status = "stopped"
            raise
        except Exception as exc:
            self.status, self.last_error = "failed", f"{type(exc).__name__}: {exc}"
            logger.exception("ingest source %s failed", self.name)

    async def deliver(self, trace: Trace) -> None:
        """Hand a trace to the callback; a failing callback is logged and counted, the feed goes on."""
        self.stats.records += 1
        try:
            await self.on_trace(trace)
        except Exception:
            self.stats.callback_errors += 1
            if _worth_logging(self.stats.callback_errors):
                logger.exception("%s: on_trace failed for %s", self.name, trace.id)

    def reject(self, error: RecordError, where: str) -> None:
        """Count and log a record that could not be used."""
        if error.kind == "rate":
            self.stats.bad_rate += 1
            count = self.stats.bad_rate
        else:
            self.stats.decode_errors += 1
            count = self.stats.decode_errors
        if _worth_logging(count):
            logger.warning("%s: dropped a record from %s (%s; %d so far)", self.name, where, error, count)

    def state(self) -> dict[str, Any]:
        """JSON-ready summary for an operator endpoint."""
        return {
            "kind": self.kind,
            "name": self.name,
            "status": self.status,
            "last_error": self.last_error,
            "stats": asdict(self.stats),
        }


def _worth_logging(count: int) -> bool:
    """Log the first ten occurrences, then every thousandth (a broken station must not flood the log)."""
    return count <= 10 or count % 1000 == 0


def make_source(config: SeedLinkSourceConfig | DirectorySourceConfig | FileReplayConfig,
                on_trace: TraceCallback) -> Source:  # fmt: skip
    """Build the source a config describes."""
    # imported here: the source modules import this one for the shared pieces
    from seispick.service.ingest.folder import DirectorySource, FileReplaySource
    from seispick.service.ingest.seedlink import SeedLinkSource

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
