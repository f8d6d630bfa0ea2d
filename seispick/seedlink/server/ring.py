"""Replay state: the clock that releases archive records and the per-station packet buffers.

Records are released in end-time order as the replay clock passes each record's end time. Every
released packet carries two sequence numbers: ``seq``, the station's own 24-bit SeedLink 3 number
(consecutive per station, wrapping at FFFFFF), and ``number``, a server-wide release counter that
SeedLink 4 uses as its 64-bit sequence (increasing per station, shared by all stations, so a resume
with a station wildcard is meaningful). Both survive a server ``stop()``/``start()``.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import time
from collections import deque
from dataclasses import dataclass
from fnmatch import fnmatchcase

from seispick.miniseed.constants import NS_PER_S, TICK_NS
from seispick.miniseed.pack import MseedRecord, round_to_tick, shift_record
from seispick.seedlink.packet_v4 import station_id
from seispick.seedlink.protocol import SEQ_MODULUS, V3_HEADER_LEN, pack_v3_header

logger = logging.getLogger(__name__)

RELEASE_CHUNK = 2000  # records released between yields to the event loop
TOUCHED_KEEP = 1_000_000  # release-log entries kept for clients that fell behind (then they scan all)


@dataclass(frozen=True, slots=True)
class Packet:
    """A released packet: sequences, stream, output-frame times and the SeedLink 3 wire bytes."""

    seq: int  # SeedLink 3: per-station, 24 bits
    location: str
    channel: str
    start_ns: int
    end_ns: int
    wire: bytes  # pack_v3_header(seq) + 512-byte record
    number: int = 0  # SeedLink 4: server-wide release number, from 1

    @property
    def record(self) -> bytes:
        return self.wire[V3_HEADER_LEN:]


class StationBuffer:
    """Ring buffer of one station's released packets, addressed by absolute (never reused) indices."""

    def __init__(self, network: str, station: str, capacity: int) -> None:
        self.network = network
        self.station = station
        self.packets: deque[Packet] = deque(maxlen=max(capacity, 1))
        self.base = 0  # absolute index of packets[0]
        self.next_seq = 1
        self.streams: set[tuple[str, str]] = set()

    @property
    def end(self) -> int:
        """Absolute index the next released packet will get."""
        return self.base + len(self.packets)

    @property
    def capacity(self) -> int:
        return self.packets.maxlen or 1

    def packet(self, index: int) -> Packet:
        return self.packets[index - self.base]

    def append(self, record: MseedRecord, shift_ns: int, number: int = 0) -> None:
        seq, self.next_seq = self.next_seq, (self.next_seq + 1) % SEQ_MODULUS
        if len(self.packets) == self.packets.maxlen:
            self.base += 1
        wire = pack_v3_header(seq) + shift_record(record.data, shift_ns)
        start, end = record.start_ns + shift_ns, record.end_ns + shift_ns
        self.packets.append(Packet(seq, record.location, record.channel, start, end, wire, number))

    # ----------------------------------------------------------------------- SeedLink 3 sequences
    def index_of_seq(self, seq: int) -> int | None:
        """Absolute index of the packet with sequence ``seq``, if it is still buffered."""
        if not self.packets:
            return None
        offset = (seq - self.packets[0].seq) % SEQ_MODULUS
        return self.base + offset if offset < len(self.packets) else None

    def seq_ahead(self, seq: int) -> int | None:
        """How many packets ahead of the next release ``seq`` lies (0: the next one), None if behind.

        Sequences are compared on the 24-bit circle: up to half of it ahead counts as not yet released.
        """
        ahead = (seq - self.next_seq) % SEQ_MODULUS
        return ahead if ahead < SEQ_MODULUS // 2 else None

    def index_for_resume(self, seq: int) -> int:
        """Where to start for a sequence that is not buffered: oldest if it fell out, else the index
        the packet will have once released (the client waits for it)."""
        ahead = self.seq_ahead(seq)
        return self.base if ahead is None else self.end + ahead

    # ----------------------------------------------------------------------- SeedLink 4 sequences
    def index_of_number(self, number: int) -> int:
        """Absolute index of the first buffered packet numbered ``number`` or later (``end`` if none)."""
        return self.base + bisect.bisect_left(self.packets, number, key=lambda p: p.number)

    def first_number(self) -> int:
        return self.packets[0].number if self.packets else 0

    # --------------------------------------------------------------------------------------- time
    def index_after(self, time_ns: int) -> int:
        """Absolute index of the first packet ending after ``time_ns`` (packets are in end-time order)."""
        return self.base + bisect.bisect_right(self.packets, time_ns, key=lambda p: p.end_ns)


class Replay:
    """The replay clock: releases archive records into station buffers as (scaled) wall time passes."""

    def __init__(self, records: list[MseedRecord], speed: float, restamp: bool, loop: bool) -> None:
        self.records = sorted(records, key=lambda r: r.end_ns)
        self.speed = speed
        self.restamp = restamp
        self.loop = loop
        self.t0_ns = min(r.start_ns for r in records)
        self.period_ns = max(round_to_tick(max(r.end_ns for r in records) - self.t0_ns), TICK_NS)
        self.max_span_ns = max(r.end_ns - r.start_ns for r in records)
        self.buffers = self._make_buffers(self.records)
        self.shift0_ns = 0
        self.wall0: float | None = None
        self.cursor = 0
        self.pass_no = 0
        self.exhausted = False
        self.paused = False
        self.released = 0
        self.changed = asyncio.Event()
        # the stations appended to, in release order, so that a woken client looks at those only (not at every
        # station it streams: with thousands of stations that scan was most of the server's time)
        self.touched: list[tuple[str, str]] = []
        self.touched_base = 0  # release-log position of touched[0]
        self._by_id = {station_id(*key).upper(): key for key in self.buffers}  # NET_STA -> buffer key

    @staticmethod
    def _make_buffers(records: list[MseedRecord]) -> dict[tuple[str, str], StationBuffer]:
        counts: dict[tuple[str, str], int] = {}
        for r in records:
            counts[(r.network, r.station)] = counts.get((r.network, r.station), 0) + 1
        buffers = {key: StationBuffer(*key, capacity=n) for key, n in sorted(counts.items())}
        for r in records:
            buffers[(r.network, r.station)].streams.add((r.location, r.channel))
        return buffers

    @property
    def as_fast_as_possible(self) -> bool:
        return self.speed == 0 or math.isinf(self.speed)

    def begin(self, now: float) -> None:
        """Start the replay clock (first server start only)."""
        if self.wall0 is not None:
            return
        self.wall0 = now
        if self.restamp:
            self.shift0_ns = round_to_tick(time.time_ns() - self.t0_ns)

    def shift_ns(self) -> int:
        """Offset from archive time to output time in the current replay pass."""
        return self.shift0_ns + self.pass_no * self.period_ns

    def due(self, record: MseedRecord) -> float:
        """Monotonic wall time at which ``record`` of the current pass is released."""
        if self.as_fast_as_possible:
            return -math.inf
        assert self.wall0 is not None
        return (
            self.wall0 + (record.end_ns + self.pass_no * self.period_ns - self.t0_ns) / NS_PER_S / self.speed
        )

    def next_end_ns(self) -> float:
        """Output-frame end time of the next record to be released (infinite once exhausted)."""
        if self.exhausted:
            return math.inf
        return self.records[self.cursor].end_ns + self.shift_ns()

    def window_complete(self, end_ns: int) -> bool:
        """True once every record that can overlap a window ending at ``end_ns`` has been released."""
        return self.next_end_ns() > end_ns + self.max_span_ns

    def release_due(self, now: float, limit: int = RELEASE_CHUNK) -> int:
        """Release up to ``limit`` records due by ``now``; wake waiting clients when anything changed."""
        count = 0
        while not self.exhausted and not self.paused and count < limit:
            record = self.records[self.cursor]
            if self.due(record) > now:
                break
            self.released += 1
            key = (record.network, record.station)
            self.buffers[key].append(record, self.shift_ns(), self.released)
            self.touched.append(key)
            count += 1
            self._advance()
        if len(self.touched) > TOUCHED_KEEP:
            drop = len(self.touched) // 2
            del self.touched[:drop]
            self.touched_base += drop
        if count or self.exhausted:
            self.notify()
        return count

    def stations_matching(self, pattern: str) -> list[tuple[str, str]]:
        """The stations (buffer keys) whose ``NET_STA`` matches ``pattern`` (upper case, * and ? wildcards): a
        lookup for a plain ID, so that a client listing thousands of stations costs N, not N squared."""
        if "*" not in pattern and "?" not in pattern and "[" not in pattern:
            key = self._by_id.get(pattern)
            return [key] if key is not None else []
        return [key for sid, key in self._by_id.items() if fnmatchcase(sid, pattern)]

    @property
    def touched_end(self) -> int:
        """The release log's position after its last entry."""
        return self.touched_base + len(self.touched)

    def touched_since(self, position: int) -> tuple[list[tuple[str, str]] | None, int]:
        """The stations appended to since release-log ``position`` (each once, in release order; None when the
        log no longer reaches back that far: look at every station) and the log's end."""
        if position < self.touched_base:
            return None, self.touched_end
        return list(dict.fromkeys(self.touched[position - self.touched_base :])), self.touched_end

    def _advance(self) -> None:
        self.cursor += 1
        if self.cursor < len(self.records):
            return
        if self.loop:
            self.cursor, self.pass_no = 0, self.pass_no + 1
            logger.info(
                "replay pass %d starts (archive shifted by %.3f s)", self.pass_no, self.shift_ns() / NS_PER_S
            )
        else:
            self.exhausted = True
            logger.info("replay finished: all %d records released", len(self.records))

    def notify(self) -> None:
        """Wake every coroutine waiting on the current ``changed`` event."""
        event, self.changed = self.changed, asyncio.Event()
        event.set()

    async def run(self) -> None:
        """Release records on schedule until the archive is exhausted (forever when looping)."""
        loop = asyncio.get_running_loop()
        while not self.exhausted:
            if self.release_due(loop.time()) >= RELEASE_CHUNK:
                await asyncio.sleep(0)
                continue
            if self.paused or self.exhausted:
                await asyncio.sleep(0.05)
                continue
            await asyncio.sleep(max(self.due(self.records[self.cursor]) - loop.time(), 0.0))
