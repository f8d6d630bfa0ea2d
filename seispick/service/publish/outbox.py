"""Outbox: an ordered queue that never blocks its producer and never loses an item, and its delivery task.

``SpillQueue`` keeps up to ``memory_limit`` items in memory; above that (or while older items still wait on
disk, so that order holds) items are appended to ``<spill_dir>/outbox.jsonl`` as JSON lines and read back in
chunks once memory has drained. ``outbox.offset`` records how far the file has been delivered, so a restart
resumes there (a crash between delivery and that record re-sends a chunk: the consumer must be idempotent).
Without a spill directory, items beyond the memory bound are dropped and counted.

``Outbox`` runs the delivery task: it hands the oldest items, in order, to an async ``deliver`` callable and
removes them only once it returned; any exception keeps them queued and retries with exponential backoff.
One process per spill directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SPILL_FILE = "outbox.jsonl"
OFFSET_FILE = "outbox.offset"


@dataclass
class SpillQueue:
    """FIFO of JSON-able dicts: memory first, then an append-only JSON-lines file."""

    memory_limit: int = 100_000
    spill_dir: Path | None = None
    chunk: int = 1000
    dropped: int = 0
    spilled: int = 0
    _memory: deque[tuple[dict, int | None]] = field(default_factory=deque, repr=False)
    _disk_pending: int = 0
    _read_offset: int = 0  # next byte of the file not yet loaded into memory
    _committed: int = 0  # every line before this byte has been delivered
    _end: int = 0
    _writer: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.memory_limit < 1:
            raise ValueError("memory_limit must be at least 1")
        if self.spill_dir is not None:
            self._open(Path(self.spill_dir))

    @property
    def depth(self) -> int:
        """Items waiting, in memory and on disk."""
        return len(self._memory) + self._disk_pending

    @property
    def memory_depth(self) -> int:
        return len(self._memory)

    @property
    def disk_depth(self) -> int:
        return self._disk_pending

    def put(self, item: dict) -> bool:
        """Append ``item``; False when it had to be dropped (memory full and no spill directory)."""
        if self._disk_pending == 0 and len(self._memory) < self.memory_limit:
            self._memory.append((item, None))
            return True
        if self._writer is None:
            self.dropped += 1
            return False
        self._writer.write(_encode(item))
        self._writer.flush()
        self._end = self._writer.tell()
        self._disk_pending += 1
        self.spilled += 1
        return True

    def peek(self, n: int) -> list[dict]:
        """The ``n`` oldest items, left in place."""
        if not self._memory and self._disk_pending:
            self._load_chunk()
        return [item for item, _ in _head(self._memory, n)]

    def pop(self, n: int) -> None:
        """Remove the ``n`` oldest items (after ``peek`` and a successful delivery)."""
        offset = None
        for _ in range(min(n, len(self._memory))):
            _, end = self._memory.popleft()
            if end is not None:
                offset = end
        if offset is not None:
            self._commit(offset)

    def close(self) -> None:
        """Persist what memory still holds ahead of the file's pending lines, then close the file."""
        if self._writer is None:
            return
        path = self._path(SPILL_FILE)
        if self._memory:
            self._writer.close()
            with open(path, "rb") as handle:
                handle.seek(self._read_offset)
                tail = handle.read()
            tmp = path.with_suffix(".tmp")
            with open(tmp, "wb") as handle:
                handle.writelines(_encode(item) for item, _ in self._memory)
                handle.write(tail)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
            self._write_offset(0)
            log.info("outbox: %d undelivered items kept in %s", self.depth, path)
        else:
            self._writer.close()
        self._writer = None

    # -- the file --------------------------------------------------------------------------------------

    def _path(self, name: str) -> Path:
        assert self.spill_dir is not None
        return Path(self.spill_dir) / name

    def _open(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / SPILL_FILE
        self._writer = open(path, "ab")  # noqa: SIM115 - held open for appends until close()
        self._end = self._writer.tell()
        if self._end and _last_byte(path) != b"\n":  # a line torn by a crash: end it, it is skipped on read
            self._writer.write(b"\n")
            self._writer.flush()
            self._end = self._writer.tell()
        try:
            committed = int(self._path(OFFSET_FILE).read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            committed = 0
        self._committed = self._read_offset = min(committed, self._end)
        with open(path, "rb") as handle:
            handle.seek(self._committed)
            self._disk_pending = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
        if self._disk_pending:
            log.info("outbox: %d items waiting in %s from an earlier run", self._disk_pending, path)

    def _load_chunk(self) -> None:
        with open(self._path(SPILL_FILE), "rb") as handle:
            handle.seek(self._read_offset)
            for _ in range(min(self.chunk, self.memory_limit, self._disk_pending)):
                line = handle.readline()
                if not line:
                    break
                self._disk_pending -= 1
                self._read_offset = handle.tell()
                try:
                    self._memory.append((json.loads(line), self._read_offset))
                except ValueError:
                    log.error("outbox: skipping an unreadable line at byte %d", self._read_offset - len(line))
        if not self._memory and self._read_offset >= self._end:  # only unreadable lines were left
            self._disk_pending = 0
            self._commit(self._read_offset)

    def _commit(self, offset: int) -> None:
        self._committed = offset
        if self._committed >= self._end and self._disk_pending == 0 and self._writer is not None:
            self._writer.truncate(0)  # everything delivered: start the file afresh
            self._writer.seek(0)
            self._end = self._read_offset = self._committed = 0
        self._write_offset(self._committed)

    def _write_offset(self, offset: int) -> None:
        path = self._path(OFFSET_FILE)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(str(offset))
        os.replace(tmp, path)


class Outbox:
    """A ``SpillQueue`` and the task that delivers it, in order, at least once."""

    def __init__(
        self,
        deliver: Callable[[list[dict]], Awaitable[None]],
        *,
        memory_limit: int = 100_000,
        spill_dir: Path | None = None,
        batch: int = 100,
        min_backoff: float = 0.05,
        max_backoff: float = 5.0,
    ) -> None:
        self.queue = SpillQueue(memory_limit=memory_limit, spill_dir=spill_dir)
        self._deliver = deliver
        self._batch = batch
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.accepted = self.queue.depth  # items taken in order, those of an earlier run (spill file) first
        self.delivered = 0  # the oldest ``delivered`` of the ``accepted`` items have been delivered
        self.failures = 0
        self.healthy = True
        self.last_error: str | None = None

    @property
    def depth(self) -> int:
        return self.queue.depth

    def put(self, item: dict) -> bool:
        """Queue ``item`` for delivery; never blocks. False when it was dropped (see ``SpillQueue``)."""
        accepted = self.queue.put(item)
        self.accepted += accepted
        if not accepted and _is_power_of_ten(self.queue.dropped):
            log.error("outbox full and no spill directory: %d items dropped so far", self.queue.dropped)
        self._wake.set()
        return accepted

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="seispick-outbox")

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Deliver what waits for up to ``drain_timeout`` seconds; keep the rest on disk (when spilling)."""
        if self._task is not None:
            deadline = time.monotonic() + drain_timeout
            while self.depth and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.depth and self.queue.spill_dir is None:
            log.error("outbox stopped with %d undelivered items and no spill directory", self.depth)
        self.queue.close()

    async def _run(self) -> None:
        backoff = self._min_backoff
        while True:
            batch = self.queue.peek(self._batch)
            if not batch:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                await self._deliver(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down, timeout, anything: keep the items and retry
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                if self.healthy:
                    log.warning("outbox: delivery failed (%s); retrying with backoff", self.last_error)
                self.healthy = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            self.queue.pop(len(batch))
            self.delivered += len(batch)
            if not self.healthy:
                log.info("outbox: delivering again after %d failures; %d waiting", self.failures, self.depth)
            self.healthy = True
            backoff = self._min_backoff


def _encode(item: dict) -> bytes:
    return json.dumps(item, separators=(",", ":")).encode() + b"\n"


def _head(items: deque, n: int) -> list:
    return [items[i] for i in range(min(n, len(items)))]


def _is_power_of_ten(n: int) -> bool:
    while n >= 10 and n % 10 == 0:
        n //= 10
    return n == 1


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1)
