"""File ingest sources: a polled directory of new and growing miniSEED files, and a one-off file replay.

Both split files into records themselves (record length from each record's blockette 1000, else the
file's first record length, else the distance to the next header) and deliver one Trace per record, in
file order, through ``on_trace``. A growing file is read from the byte offset reached so far and only up
to its last complete record, so a half-written record waits for the next poll. Reading and decoding run
in a worker thread; delivery runs on the event loop. Polling only: no inotify dependency.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import obspy
from obspy import Trace

from seispick.seedlink.records import find_files
from seispick.service.ingest.sources import (
    DirectorySourceConfig,
    RecordError,
    Source,
    TraceCallback,
    decode_record,
    is_record_header,
    plausible_rate,
    record_length,
)

logger = logging.getLogger(__name__)

__all__ = ["DirectorySource", "FileCursor", "FileReplaySource", "split_records"]

MAX_READ_BYTES = 4 * 1024 * 1024  # one read per file and step; larger backlogs take several steps
_MIN_HEADER = 48
_SCAN_LENGTHS = (256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
Decoded = tuple[int, Trace | RecordError | None]  # record size and its trace, error or nothing (no samples)


def split_records(data: bytes, reclen: int | None = None) -> tuple[list[bytes], int]:
    """Complete records at the start of ``data`` and the bytes they span.

    ``reclen`` is the length to assume for records without blockette 1000. Bytes that are not a record
    header come back as one chunk of ``reclen`` (or 512) bytes, which then fails to decode and is counted.
    """
    records: list[bytes] = []
    pos = 0
    while len(data) - pos >= _MIN_HEADER:
        if is_record_header(data, pos):
            length = record_length(data, pos) or reclen or _scan_length(data, pos)
        else:
            length = reclen or 512
        if length is None or pos + length > len(data):
            break
        records.append(data[pos : pos + length])
        pos += length
    return records, pos


def _scan_length(data: bytes, pos: int) -> int | None:
    """Record length as the distance to the next header (records without blockette 1000)."""
    for length in _SCAN_LENGTHS:
        if pos + length + _MIN_HEADER > len(data):
            return None
        if is_record_header(data, pos + length):
            return length
    return None


@dataclass
class FileCursor:
    """How far one file has been read."""

    path: Path
    offset: int = 0
    size: int = 0
    inode: int | None = None
    reclen: int | None = None  # length of the first record
    records: int = 0
    ignored: bool = False  # does not start like miniSEED
    skip: bool = False  # move to the end without delivering (existing files, read_existing=False)
    updated: float = 0.0

    def reset(self) -> None:
        self.offset, self.reclen, self.records, self.ignored = 0, None, 0, False

    def read_step(self) -> list[Decoded] | None:
        """Read and decode the next complete records (blocking; run in a thread). None: nothing new."""
        stat = self.path.stat()
        if stat.st_ino != self.inode or stat.st_size < self.offset:
            if self.inode is not None:
                logger.info("%s was replaced or truncated: reading it again from the start", self.path)
            self.inode = stat.st_ino
            self.reset()
        self.size = stat.st_size
        if self.ignored or self.size - self.offset < _MIN_HEADER:
            return None
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            data = handle.read(min(self.size - self.offset, MAX_READ_BYTES))
        if self.offset == 0 and not is_record_header(data):
            logger.info("%s is not miniSEED: ignored", self.path)
            self.ignored = True
            return None
        records, consumed = split_records(data, self.reclen)
        if not consumed:
            return None
        if self.reclen is None:
            self.reclen = len(records[0])
        self.offset += consumed
        self.records += len(records)
        self.updated = time.time()
        if self.skip:
            return []
        return [(len(record), _decode(record)) for record in records]

    def as_dict(self) -> dict[str, Any]:
        return {"offset": self.offset, "size": self.size, "records": self.records, "reclen": self.reclen,
                "ignored": self.ignored}  # fmt: skip


def _decode(record: bytes) -> Trace | RecordError | None:
    try:
        return decode_record(record)
    except RecordError as exc:
        return exc


class _FileSource(Source):
    """Shared reading of files through cursors."""

    async def _drain(self, cursor: FileCursor) -> None:
        """Deliver every complete record of ``cursor``'s file not delivered yet."""
        while (results := await asyncio.to_thread(cursor.read_step)) is not None:
            for size, result in results:
                self.stats.bytes += size
                if isinstance(result, RecordError):
                    self.reject(result, str(cursor.path))
                elif result is None:
                    self.stats.skipped += 1
                else:
                    await self.deliver(result)
            cursor.skip = False


class DirectorySource(_FileSource):
    """Poll a folder for new and growing miniSEED files (names starting with '.' are left alone)."""

    kind = "directory"

    def __init__(
        self, config: DirectorySourceConfig, on_trace: TraceCallback, name: str | None = None
    ) -> None:
        super().__init__(on_trace, name or config.name or f"dir:{config.path}")
        self.config = config
        self.files: dict[Path, FileCursor] = {}
        self.polls = 0

    async def run(self) -> None:
        while True:
            try:
                await self.poll()
            except FileNotFoundError as exc:  # not mounted yet, or removed: keep looking
                if self.last_error != str(exc):
                    logger.warning("%s: %s", self.name, exc)
                self.last_error = str(exc)
            await asyncio.sleep(self.config.poll_s)

    async def poll(self) -> None:
        """One scan: pick up new files, read what grew, forget files that went away."""
        paths = await asyncio.to_thread(self._list)
        first = self.polls == 0
        self.polls += 1
        for path in paths:
            cursor = self.files.get(path)
            if cursor is None:
                cursor = self.files[path] = FileCursor(path, skip=first and not self.config.read_existing)
            try:
                await self._drain(cursor)
            except FileNotFoundError:
                continue  # removed between listing and reading
            except OSError as exc:
                self.last_error = f"{path}: {exc}"
                logger.warning("%s: cannot read %s: %s", self.name, path, exc)
        for gone in set(self.files) - set(paths):
            del self.files[gone]

    def _list(self) -> list[Path]:
        root = self.config.path
        if not root.is_dir():
            raise FileNotFoundError(f"ingest folder {root} does not exist")
        return sorted(p for p in root.glob(self.config.pattern) if not p.name.startswith(".") and p.is_file())

    def state(self) -> dict[str, Any]:
        state = super().state()
        recent = sorted(self.files.values(), key=lambda c: c.updated, reverse=True)[:50]
        root = self.config.path
        state.update(
            path=str(root),
            polls=self.polls,
            files_tracked=len(self.files),
            files={str(c.path.relative_to(root)): c.as_dict() for c in recent},
        )
        return state


class FileReplaySource(_FileSource):
    """Read files (folders: every file below them) once, in order, then finish.

    miniSEED is split into records like the directory source; other formats ObsPy reads are delivered
    as whole traces.
    """

    kind = "files"

    def __init__(self, paths: Iterable[str | Path], on_trace: TraceCallback, name: str | None = None) -> None:
        self.paths = [Path(p) for p in paths]
        super().__init__(on_trace, name or f"files:{','.join(p.name for p in self.paths[:3])}")
        self.done_files = 0

    async def run(self) -> None:
        for path, _explicit in await asyncio.to_thread(find_files, self.paths):
            cursor = FileCursor(path)
            await self._drain(cursor)
            if cursor.ignored:
                await self._read_other(path)
            elif cursor.offset < cursor.size:
                logger.warning("%s: %d trailing bytes of %s are no complete record",
                               self.name, cursor.size - cursor.offset, path)  # fmt: skip
            self.done_files += 1

    async def _read_other(self, path: Path) -> None:
        try:
            stream = await asyncio.to_thread(obspy.read, str(path))
        except Exception as exc:
            self.reject(RecordError(f"unreadable file: {exc}"), str(path))
            return
        for trace in stream:
            if not plausible_rate(float(trace.stats.sampling_rate)):
                self.reject(
                    RecordError(f"impossible sampling rate {trace.stats.sampling_rate}", "rate"), trace.id
                )
            elif trace.stats.npts and trace.data.dtype.kind in "iuf":
                await self.deliver(trace)
            else:
                self.stats.skipped += 1

    def state(self) -> dict[str, Any]:
        state = super().state()
        state.update(paths=[str(p) for p in self.paths], files_done=self.done_files)
        return state
