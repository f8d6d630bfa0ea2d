"""Kept read positions: where each source resumes after a restart, never past a pick not yet published.

A position is a JSON dict under a key ``<source name>|<item>``: for a SeedLink station (item ``NET_STA``) the
sequence number of the newest record whose data, and every record's before it, are final (``seq``, the
``protocol`` that numbered it, its ``start_ns``, per channel the ``channels`` end in ns: the time fallback and
the duplicates guard of :class:`~seispick.seedlink.client.source.SeedLinkSource`); for a file of a watched
folder (item: its path) the byte ``offset`` before the first record not final, its ``inode`` and ``reclen``.
Both carry ``final``: per instrument, the time (epoch s) before which every pick and detection was emitted.

Who does what:

* :class:`PositionTracker` (each picking process) asks its sources, every ``positions_every_s``, for the
  positions of the records whose picks are final: a record is final once it ends ``window + resume_margin_s``
  before its instrument's final time (the picker's ``final_until``), so that a restart re-reads a whole model
  window (plus the longest trigger) before the first pick not yet emitted, and picks it like an unbroken run.
* :class:`PositionKeeper` (the process with the publisher) takes those offers in order with the picks, and
  writes one only once the publisher's outbox has delivered every pick accepted before it (a pick is safe
  once in Redis); with ``serve --workers N`` the workers' offers come over their channels after their picks,
  and a watched file's offset is the lowest every worker offered.
* :class:`FilePositionStore` (``<state_dir>/positions.json``, written to a temporary file and renamed) or
  :class:`RedisPositionStore` (one hash, ``positions_key``, a field per position; any replica finds it)
  keeps them.

After a restart, what was re-read overlaps what was published: picks identical to those published are
absorbed by the publisher's id dedupe; the ones of the first window after the resume point (the picker's
segment starts there, with a partial stack) are dropped by :class:`WarmUp` when they end before the time
the position says was final.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from redis.asyncio import Redis

from seispick.picking.results import Detection, Pick
from seispick.service.publish.publisher import PickPublisher

log = logging.getLogger(__name__)

Positions = dict[str, dict[str, Any]]  # key -> position
POSITIONS_FILE = "positions.json"
LOAD_ATTEMPTS = 5  # reads of the Redis hash at start before giving up (logged; the sources start fresh)


def position_key(source: str, item: str) -> str:
    """The key of one station's or file's position in one source."""
    return f"{source}|{item}"


def split_key(key: str) -> tuple[str, str]:
    source, _, item = key.rpartition("|")
    return source, item


class PositionStore(Protocol):
    """Where positions are kept."""

    async def load(self) -> Positions: ...

    async def save(self, positions: Positions) -> None: ...

    async def close(self) -> None: ...


class FilePositionStore:
    """Every position in one JSON file, replaced atomically (temporary file, fsync, rename) on each save."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / POSITIONS_FILE
        self._all: Positions | None = None

    async def load(self) -> Positions:
        return dict(await asyncio.to_thread(self._read))

    def _read(self) -> Positions:
        if self._all is None:
            try:
                self._all = json.loads(self.path.read_text())
            except FileNotFoundError:
                self._all = {}
            except ValueError:
                log.error("%s is unreadable: starting without kept positions", self.path)
                self._all = {}
        return self._all

    async def save(self, positions: Positions) -> None:
        await asyncio.to_thread(self._write, positions)

    def _write(self, positions: Positions) -> None:
        merged = {**self._read(), **positions}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "w") as handle:
            json.dump(merged, handle, separators=(",", ":"), sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        self._all = merged

    async def close(self) -> None:
        """Nothing held open."""


class RedisPositionStore:
    """Every position as a field of one Redis hash (``HSET`` per save: each field replaced atomically)."""

    def __init__(self, url: str, key: str, timeout_s: float = 2.0) -> None:
        self.key = key
        self.redis = Redis.from_url(
            url, decode_responses=True, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )

    async def load(self) -> Positions:
        for attempt in range(LOAD_ATTEMPTS):
            try:
                raw = await self.redis.hgetall(self.key)
                return {field: json.loads(value) for field, value in raw.items()}
            except Exception as exc:  # noqa: BLE001 - Redis down or failing: retry, then start without
                log.warning("kept positions: reading %s failed (%s); attempt %d", self.key, exc, attempt + 1)
            await asyncio.sleep(min(2**attempt * 0.5, 5.0))
        log.error("kept positions: %s could not be read: the sources start without them", self.key)
        return {}

    async def save(self, positions: Positions) -> None:
        if positions:
            await self.redis.hset(self.key, mapping={k: json.dumps(v) for k, v in positions.items()})

    async def close(self) -> None:
        await self.redis.aclose()


def make_store(redis_url: str | None, key: str, state_dir: Path | None) -> PositionStore:
    """Redis when ``redis_url`` is set, else the file in ``state_dir``."""
    if redis_url:
        return RedisPositionStore(redis_url, key)
    if state_dir is None:
        raise ValueError("keep_positions needs redis_url or streaming.state_dir to keep them in")
    return FilePositionStore(state_dir)


# ----------------------------------------------------------------------------------------------- keeper
class PositionKeeper:
    """Writes offered positions once every pick accepted before them has been delivered; see the module
    docstring. ``slots`` is the number of picking processes offering (a file offset needs all of them)."""

    def __init__(self, store: PositionStore, publisher: PickPublisher | None, slots: int = 1) -> None:
        self.store = store
        self.publisher = publisher
        self.slots = slots
        self._offers: list[tuple[int, int, Positions]] = []  # (outbox barrier, slot, positions), in order
        self._ready: dict[str, dict[int, dict[str, Any]]] = {}  # key -> slot -> its newest safe offer
        self._written: Positions = {}
        self.saves = 0
        self.save_errors = 0

    def _barrier(self) -> int:
        outbox = self.publisher.outbox if self.publisher is not None else None
        return 0 if outbox is None else outbox.accepted

    def _delivered(self) -> int:
        outbox = self.publisher.outbox if self.publisher is not None else None
        return 0 if outbox is None else outbox.delivered

    def offer(self, positions: Positions, slot: int = 0) -> None:
        """Positions up to which picks were handed to the publisher (called after handing them over)."""
        if positions:
            self._offers.append((self._barrier(), slot, positions))

    async def flush(self) -> int:
        """Write the positions whose picks are all delivered; how many changed."""
        delivered = self._delivered()
        while self._offers and self._offers[0][0] <= delivered:
            _, slot, positions = self._offers.pop(0)
            for key, position in positions.items():
                self._ready.setdefault(key, {})[slot] = position
        changed = {}
        for key, by_slot in self._ready.items():
            position = combine(by_slot, self.slots)
            if position is not None and self._written.get(key) != position:
                changed[key] = position
        if not changed:
            return 0
        try:
            await self.store.save(changed)
        except Exception as exc:  # noqa: BLE001 - kept for the next flush
            self.save_errors += 1
            log.warning("kept positions: saving %d failed (%s); retrying later", len(changed), exc)
            return 0
        self._written.update(changed)
        self.saves += 1
        return len(changed)

    def state(self) -> dict[str, Any]:
        return {"kept": len(self._written), "waiting": len(self._offers), "saves": self.saves,
                "save_errors": self.save_errors}  # fmt: skip


def combine(by_slot: dict[int, dict[str, Any]], slots: int) -> dict[str, Any] | None:
    """One position from the slots' offers: a station's comes from its one worker; a file's offset is the
    lowest, once every worker offered one (each reads every file, and picks only its stations)."""
    offers = list(by_slot.values())
    if "offset" not in offers[0]:
        return offers[-1]
    return min(offers, key=lambda p: p["offset"]) if len(offers) >= slots else None


# ------------------------------------------------------------------------------------------------ warm up
class WarmUp:
    """Drops, after a resume, the picks of each instrument's first model window that were already published.

    ``final`` (instrument -> epoch s) comes from the kept positions: every pick of the instrument ending
    before it was published. The restarted picker's segment starts at the first record re-read (``start``):
    its first window has a partial stack, so a pick that begins there may differ from the one published.
    Such a pick (beginning before ``start + window_s``) that ends before ``final`` was published: dropped.
    Later ones are picked as by an unbroken run: identical ids, absorbed by the dedupe.
    """

    def __init__(self, final: dict[str, float], window_s: float) -> None:
        self.final = final
        self.window_s = window_s
        self.warm_until: dict[str, float] = {}  # instrument -> end of the first window after the resume
        self.dropped = 0

    def observe(self, instrument: str, start: float) -> None:
        """A record of ``instrument`` from ``start`` (epoch s) reaches the picker."""
        if instrument in self.final and instrument not in self.warm_until:
            self.warm_until[instrument] = start + self.window_s

    def keep(self, item: Pick | Detection) -> bool:
        """Whether ``item`` goes out (False: picked from a partial stack and published before)."""
        warm = self.warm_until.get(item.trace_id)
        if warm is None:
            return True
        if item.start_time.timestamp < warm and item.end_time.timestamp < self.final[item.trace_id]:
            self.dropped += 1
            return False
        return True


def final_times(positions: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Per instrument, the latest time before which the kept positions say every pick was published."""
    out: dict[str, float] = {}
    for position in positions:
        for instrument, final in position.get("final", {}).items():
            out[instrument] = max(final, out.get(instrument, -math.inf))
    return out


class PositionTracker:
    """Every ``every_s``, the positions of one picking process's sources handed to ``offer`` (the keeper, or
    the channel to it). ``collect`` builds them (the runtime's view of sources and picker)."""

    def __init__(self, collect: Callable[[], Positions], offer: Callable[[Positions], None], every_s: float,
                 flush: Callable[[], Any] | None = None) -> None:  # fmt: skip
        self.collect = collect
        self.offer = offer
        self.every_s = every_s
        self.flush = flush
        self._task: asyncio.Task[None] | None = None
        self.last_offer = 0.0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="positions")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            await self.step()

    async def step(self) -> None:
        """Offer the current positions (and, in the publisher's process, write those that are safe)."""
        try:
            self.offer(self.collect())
            self.last_offer = time.time()
            if self.flush is not None:
                await self.flush()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - positions must never stop the stream
            log.exception("kept positions: collecting or writing failed")

    async def stop(self) -> None:
        """Stop the loop (the last positions are offered by the caller, after the picker stopped)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
