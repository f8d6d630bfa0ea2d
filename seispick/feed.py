"""A feed of traces: the base class every ingest source implements (the SeedLink client, watched folders,
file replay), its counters and the callback it delivers to. Where it sits: ``.importlinter``.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from obspy import Trace
from pydantic import BaseModel, ConfigDict, Field

from seispick.miniseed.decode import RecordError

logger = logging.getLogger(__name__)

TraceCallback = Callable[[Trace], Awaitable[None]]


class SourceConfigBase(BaseModel):
    """What every source's settings share."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, description="Label in state and logs (default: derived)")


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
            if worth_logging(self.stats.callback_errors):
                logger.exception("%s: on_trace failed for %s", self.name, trace.id)

    def reject(self, error: RecordError, where: str) -> None:
        """Count and log a record that could not be used."""
        if error.kind == "rate":
            self.stats.bad_rate += 1
            count = self.stats.bad_rate
        else:
            self.stats.decode_errors += 1
            count = self.stats.decode_errors
        if worth_logging(count):
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


def worth_logging(count: int) -> bool:
    """Log the first ten occurrences, then every thousandth (a broken station must not flood the log)."""
    return count <= 10 or count % 1000 == 0
