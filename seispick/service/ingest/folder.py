"""File ingest sources: a polled directory of new and growing miniSEED files, and a one-off file replay.

Both split files into records themselves (record length from each record's blockette 1000, else the
file's first record length, else the distance to the next header) and deliver one Trace per record
through ``on_trace``, **in time order across the channels of an instrument**, not in file order: ObsPy
(``Stream.write``) and most archivers write every record of one channel, then the next, and delivering
them in file order would put a whole day of HHE before the first HHN record (the picker would count the
later channels late). A growing file is read from the byte offset reached so far and only up to its last
complete record, so a half-written record waits for the next poll.

When records are released (:func:`release`): a file that did not change since the previous poll is
complete and all its records go out, sorted by start time; a file seen for the first time waits one poll
(a copy in progress finishes); a file that grew is written as it is recorded (dataloggers, slarchive),
so each instrument's records go out up to the earliest end among its channels (the later parts wait for
the other channels). Within one poll, the records released from all files go out together in time order,
so day files of one station arrive oldest first whatever their names. A file written channel after
channel *slowly* (a pause longer than the poll between channels) cannot be told from a finished one:
such records are counted as ``out_of_order_records`` and logged with the file; copy large files in under a
name starting with '.' and rename them (those names are never read). Reading and decoding run in a
worker thread; delivery runs on the event loop. Polling only: no inotify dependency.

Across restarts (``track_positions``, ``seed``): each file's records read are remembered until
``positions(final_ns)`` passes them: the byte offset before the first record not yet delivered or whose data
are not final; a restart resumes each file there (from byte 0 when it was replaced or truncated since), and
files without a kept offset are new since the last run: read whole, whatever ``read_existing`` says.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from obspy import Trace
from pydantic import Field

from seispick.feed import Source, SourceConfigBase, TraceCallback
from seispick.feed import worth_logging as _worth_logging
from seispick.miniseed.constants import RECLEN
from seispick.miniseed.decode import (
    RecordError,
    decode_record,
    is_record_header,
    plausible_rate,
    record_length,
    trace_end_ns,
)
from seispick.miniseed.pack import find_files
from seispick.picking.waveforms import read_waveform_file

logger = logging.getLogger(__name__)

__all__ = ["DirectorySource", "FileCursor", "FileReplaySource", "release", "split_records"]

MAX_READ_BYTES = 4 * 1024 * 1024  # one read per file and step; larger backlogs take several steps
MAX_POLL_BYTES = 64 * 1024 * 1024  # read per poll over all files; a larger backlog takes several polls
# Whole traces (SAC, compressed files) go out in pieces of this many samples, in time order across the
# channels like records: a whole vertical first would be picked before its horizontals arrived.
PIECE_SAMPLES = 1024
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
            length = reclen or RECLEN
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
class RecordRead:
    """Where one record of a file lies (bytes ``start`` to ``end``) and what it delivered (a trace id and its
    end in ns; None for a record without usable samples), for the file's kept position."""

    start: int
    end: int
    trace_id: str | None = None
    end_ns: int = 0
    delivered: bool = False


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
    read_whole: bool = False  # an ignored file read (or refused) whole through seispick.picking.waveforms
    skip: bool = False  # move to the end without delivering (existing files, read_existing=False)
    updated: float = 0.0
    observed: int | None = None  # size at the previous poll (None: not seen at a poll yet)
    held: list[Trace] = field(default_factory=list)  # decoded, waiting for time order
    channel_end: dict[str, int] = field(default_factory=dict)  # trace id -> end (ns) of its last record
    reads: deque[RecordRead] | None = None  # with kept positions: the records read, oldest first

    def reset(self) -> None:
        """Start again from byte 0 (records already held still go out); the new content is a new file."""
        self.offset, self.reclen, self.records, self.ignored, self.observed = 0, None, 0, False, None
        self.read_whole = False
        if self.reads is not None:
            self.reads.clear()

    def kept_offset(self, final_ns: Callable[[str], float]) -> int:
        """The byte before which every record was delivered and its data are final (``final_ns(trace
        id)``): where a restart resumes this file."""
        reads = self.reads or deque()
        while reads:
            read = reads[0]
            if read.trace_id is not None and (not read.delivered or read.end_ns > final_ns(read.trace_id)):
                return read.start
            reads.popleft()
        return self.offset

    def hold(self, trace: Trace) -> None:
        """Keep a decoded record until :func:`release` lets it go."""
        self.held.append(trace)
        end = trace_end_ns(trace)
        self.channel_end[trace.id] = max(end, self.channel_end.get(trace.id, end))

    def take(self, mode: str) -> list[Trace]:
        """Remove and return the held records ``mode`` releases (see :func:`release`)."""
        out, self.held = release(self.held, self.channel_end, mode)
        return out

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


def pieces(trace: Trace, size: int = PIECE_SAMPLES) -> list[Trace]:
    """A whole trace as consecutive pieces of ``size`` samples (views of its data)."""
    stats = trace.stats
    header = {k: stats[k] for k in ("network", "station", "location", "channel", "sampling_rate")}
    return [
        Trace(trace.data[i : i + size], header={**header, "starttime": stats.starttime + i * stats.delta})
        for i in range(0, stats.npts, size)
    ]


def instrument_of(trace_id: str) -> str:
    """NET.STA.LOC + band and instrument code: the channels the picker combines."""
    return trace_id[:-1]


def start_ns(trace: Trace) -> int:
    return trace.stats.starttime.ns


def release(held: list[Trace], channel_end: dict[str, int], mode: str) -> tuple[list[Trace], list[Trace]]:
    """Split held records into (deliver now, sorted by start time; keep).

    ``mode``: ``"all"`` (the file is complete), ``"none"`` (first look at a file, or not read to its end
    yet) or ``"watermark"`` (the file grows as recorded: per instrument, records ending by the earliest
    last end among its channels in the file).
    """
    if mode == "none" or not held:
        return [], held
    if mode == "all":
        return sorted(held, key=start_ns), []
    watermark: dict[str, int] = {}
    for trace_id, end in channel_end.items():
        inst = instrument_of(trace_id)
        watermark[inst] = min(end, watermark.get(inst, end))
    out, keep = [], []
    for trace in held:
        (out if trace_end_ns(trace) <= watermark[instrument_of(trace.id)] else keep).append(trace)
    return sorted(out, key=start_ns), keep


def _decode(record: bytes) -> Trace | RecordError | None:
    try:
        return decode_record(record)
    except RecordError as exc:
        return exc


class DirectorySourceConfig(SourceConfigBase):
    """A folder polled for new and growing miniSEED files."""

    kind: Literal["directory"] = "directory"
    path: Path
    poll_s: float = Field(default=1.0, gt=0)
    pattern: str = Field(default="*", description="Glob below path; '**/*.mseed' searches sub-folders")
    read_existing: bool = Field(default=True, description="Deliver files already there at start")


class FileReplayConfig(SourceConfigBase):
    """Files (or folders of files) read once, in the given order."""

    kind: Literal["files"] = "files"
    paths: list[Path] = Field(min_length=1)


class _FileSource(Source):
    """Shared reading of files through cursors, and delivery in time order."""

    def __init__(self, on_trace: TraceCallback, name: str) -> None:
        super().__init__(on_trace, name)
        self.out_of_order = 0  # records delivered after a later record of their instrument had started
        self._latest_start: dict[str, int] = {}  # instrument -> latest record start delivered (ns)
        self._reads: dict[int, RecordRead] = {}  # id of a held trace -> its record (kept positions only)

    async def _read(self, cursor: FileCursor, budget: int | None = None) -> tuple[int, bool]:
        """Read and hold the complete records of ``cursor``'s file not read yet (up to about ``budget``
        bytes); returns the bytes read and whether every complete record has been read."""
        read = 0
        while budget is None or read < budget:
            results = await asyncio.to_thread(cursor.read_step)
            if results is None:
                cursor.skip = False
                return read, True
            at = cursor.offset - sum(size for size, _ in results)  # where this step's records begin
            for size, result in results:
                read += size
                self.stats.bytes += size
                record = RecordRead(at, at + size) if cursor.reads is not None else None
                at += size
                if isinstance(result, RecordError):
                    self.reject(result, str(cursor.path))
                elif result is None:
                    self.stats.skipped += 1
                else:
                    cursor.hold(result)
                    if record is not None:
                        record.trace_id, record.end_ns = result.id, trace_end_ns(result)
                        self._reads[id(result)] = record
                if cursor.reads is not None and record is not None:
                    cursor.reads.append(record)
        return read, False

    async def _deliver_in_order(self, traces: list[tuple[Trace, Path]]) -> None:
        """Deliver records sorted by start time; count and log any that start behind their instrument."""
        traces.sort(key=lambda item: start_ns(item[0]))
        for trace, path in traces:
            inst = instrument_of(trace.id)
            latest = self._latest_start.get(inst)
            if latest is not None and trace_end_ns(trace) <= latest:
                self.out_of_order += 1
                if _worth_logging(self.out_of_order):
                    logger.warning(
                        "%s: %s in %s arrived after later data of %s (%d such records): a file written "
                        "channel after channel was read before it was complete, or an older file came "
                        "after a newer one; the picker counts these records late. Copy files in under a "
                        "name starting with '.' and rename them.",
                        self.name, trace.id, path, inst, self.out_of_order,
                    )  # fmt: skip
            else:
                self._latest_start[inst] = max(start_ns(trace), latest or start_ns(trace))
            await self.deliver(trace)
            record = self._reads.pop(id(trace), None)
            if record is not None:
                record.delivered = True  # after delivery: the picker has it

    def _usable(self, trace: Trace, where: str) -> bool:
        """Whether a whole trace read from a file can go to the picker (counted when not)."""
        if not plausible_rate(float(trace.stats.sampling_rate)):
            self.reject(RecordError(f"impossible sampling rate {trace.stats.sampling_rate}", "rate"), where)
            return False
        if not trace.stats.npts or trace.data.dtype.kind not in "iuf":
            self.stats.skipped += 1
            return False
        return True

    def state(self) -> dict[str, Any]:
        state = super().state()
        state["out_of_order_records"] = self.out_of_order
        return state


class DirectorySource(_FileSource):
    """Poll a folder for new and growing miniSEED files (names starting with '.' are left alone).

    Files that are not plain miniSEED (SAC, gzip/bzip2/xz-compressed miniSEED, other formats ObsPy reads)
    are read whole through the CLI's input path (``seispick.picking.waveforms``) once their size stayed the same
    for a poll and go out in pieces, in time order with the records; files that are no waveforms are
    logged and left alone.
    """

    kind = "directory"

    def __init__(
        self, config: DirectorySourceConfig, on_trace: TraceCallback, name: str | None = None
    ) -> None:
        super().__init__(on_trace, name or config.name or f"dir:{config.path}")
        self.config = config
        self.files: dict[Path, FileCursor] = {}
        self.polls = 0
        self.track_positions = False  # keep each file's records for positions()
        self.resume: dict[str, dict[str, Any]] = {}  # path -> kept position, taken when the file is seen
        self.resumed = False  # kept positions were found: a file without one is new since, read whole

    def seed(self, path: str, position: dict[str, Any]) -> None:
        """Resume a file from a kept position (call before ``start``): its byte offset, unless the file was
        replaced (another inode) or truncated since, then from its start."""
        self.resume[path] = position
        self.resumed = True

    def positions(self, final_ns: Callable[[str], float]) -> dict[str, dict[str, Any]]:
        """Per miniSEED file (by path), the offset a restart resumes from: every record before it was
        delivered and its data end by ``final_ns(trace id)``. Needs ``track_positions``."""
        return {
            str(path): {
                "offset": cursor.kept_offset(final_ns),
                "inode": cursor.inode,
                "reclen": cursor.reclen,
            }
            for path, cursor in self.files.items()
            if cursor.reads is not None and cursor.inode is not None and not cursor.ignored
        }

    def _cursor(self, path: Path, first: bool) -> FileCursor:
        kept = self.resume.pop(str(path), None)
        reads = deque() if self.track_positions else None
        if kept is None:
            skip = first and not self.config.read_existing and not self.resumed
            return FileCursor(path, skip=skip, reads=reads)
        return FileCursor(path, offset=int(kept["offset"]), inode=kept.get("inode"), reclen=kept.get("reclen"),
                          reads=reads)  # fmt: skip

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
        """One scan: pick up new files, read what grew, release what is in order, forget files gone."""
        paths = await asyncio.to_thread(self._list)
        first = self.polls == 0
        self.polls += 1
        released: list[tuple[Trace, Path]] = []
        budget = MAX_POLL_BYTES
        for path in paths:
            cursor = self.files.get(path)
            if cursor is None:
                cursor = self.files[path] = self._cursor(path, first)
            skipping = cursor.skip
            try:
                if budget > 0:
                    read, caught_up = await self._read(cursor, budget)
                    budget -= read
                else:
                    caught_up = False  # read at a later poll
                if cursor.ignored and not cursor.read_whole:
                    cursor.read_whole = skipping  # an existing file left alone (read_existing=False)
                    if caught_up and cursor.size == cursor.observed:  # unchanged since the last poll
                        await self._read_whole(cursor)
            except FileNotFoundError:
                continue  # removed between listing and reading
            except OSError as exc:
                self.last_error = f"{path}: {exc}"
                logger.warning("%s: cannot read %s: %s", self.name, path, exc)
                continue
            released += [(trace, path) for trace in cursor.take(self._mode(cursor, caught_up))]
            if caught_up:
                cursor.observed = cursor.size
        for gone in set(self.files) - set(paths):
            released += [(trace, gone) for trace in self.files.pop(gone).take("all")]
        await self._deliver_in_order(released)

    async def _read_whole(self, cursor: FileCursor) -> None:
        """A complete file that is not plain miniSEED (SAC, gzip'ed miniSEED...): its traces, held in pieces."""
        cursor.read_whole = True
        try:
            stream = await asyncio.to_thread(read_waveform_file, cursor.path)  # the CLI's input path
        except ValueError as exc:
            logger.info("%s: %s; ignored", self.name, exc)
            return
        for trace in stream:
            if self._usable(trace, str(cursor.path)):
                for piece in pieces(trace):
                    cursor.hold(piece)

    @staticmethod
    def _mode(cursor: FileCursor, caught_up: bool) -> str:
        """How much of a file's held records may go out now (see :func:`release`)."""
        if not caught_up or cursor.observed is None:
            return "none"  # more to read, or first look (a copy may be in progress)
        return "all" if cursor.size == cursor.observed else "watermark"

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

    miniSEED is split into records like the directory source; other files (SAC, compressed miniSEED, the
    other formats ObsPy reads) go through the CLI's input path (``seispick.picking.waveforms``) and are delivered
    in pieces, in time order across their channels.
    """

    kind = "files"

    def __init__(self, paths: Iterable[str | Path], on_trace: TraceCallback, name: str | None = None) -> None:
        self.paths = [Path(p) for p in paths]
        super().__init__(on_trace, name or f"files:{','.join(p.name for p in self.paths[:3])}")
        self.done_files = 0

    async def run(self) -> None:
        for path, _explicit in await asyncio.to_thread(find_files, self.paths):
            cursor = FileCursor(path)
            await self._read(cursor)
            await self._deliver_in_order([(trace, path) for trace in cursor.take("all")])
            if cursor.ignored:
                await self._read_other(path)
            elif cursor.offset < cursor.size:
                logger.warning("%s: %d trailing bytes of %s are no complete record",
                               self.name, cursor.size - cursor.offset, path)  # fmt: skip
            self.done_files += 1

    async def _read_other(self, path: Path) -> None:
        try:
            stream = await asyncio.to_thread(read_waveform_file, path)  # the CLI's input path
        except Exception as exc:
            self.reject(RecordError(f"unreadable file: {exc}"), str(path))
            return
        usable = [trace for trace in stream if self._usable(trace, trace.id)]
        await self._deliver_in_order([(piece, path) for trace in usable for piece in pieces(trace)])

    def state(self) -> dict[str, Any]:
        state = super().state()
        state.update(paths=[str(p) for p in self.paths], files_done=self.done_files)
        return state
