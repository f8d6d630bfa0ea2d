"""Asyncio SeedLink 3.1 server that replays a miniSEED archive as a live stream.

The archive is re-packed into 512-byte records (see :mod:`seispick.seedlink.records`) and released
into per-station ring buffers as the replay clock passes each record's end time: ``speed`` times real
time, or everything at once for ``speed`` 0 or infinity. Each station numbers its packets with a 24-bit
sequence, so clients resume with ``DATA seq`` without gaps or duplicates, also across a server
``stop()``/``start()`` (the replay state survives; the clock keeps running while the port is closed).

Protocol (SeedLink 3.1, the subset real clients use): HELLO, CAT, CAPABILITIES, BATCH, INFO (ID,
CAPABILITIES, STATIONS, STREAMS, ALL), STATION, SELECT, DATA, FETCH, TIME, END, BYE. Commands may end in
CR, LF or CRLF. Like ringserver, ``DATA n`` starts *with* packet n (clients send last + 1) and the
uni-station DATA/FETCH/TIME starts streaming without an OK.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, TypeVar
from xml.etree import ElementTree

from seispick.seedlink.protocol import (
    SEQ_MODULUS,
    Selector,
    format_info_time,
    parse_seedlink_time,
    selection_matches,
)
from seispick.seedlink.records import (
    NS_PER_S,
    MseedRecord,
    load_records,
    round_to_tick,
    shift_record,
    text_records,
)

logger = logging.getLogger(__name__)

__all__ = [
    "SeedLinkReplayServer",
    "ThreadedReplayServer",
    "Selector",
    "parse_seedlink_time",
    "run_replay_server",
]

SERVER_ID = "SeedLink v3.1 (seispick)"
HELLO_CAPABILITIES = "SLPROTO:3.1 CAP EXTREPLY NSWILDCARD BATCH"
ORGANIZATION = "seispick replay server"
INFO_CAPABILITIES = (
    "dialup",
    "multistation",
    "window-extraction",
    "info:id",
    "info:capabilities",
    "info:stations",
    "info:streams",
    "info:all",
)
MAX_COMMAND_BYTES = 1024
_RELEASE_CHUNK = 2000  # records released between yields to the event loop
_DRAIN_EVERY = 64  # packets written between flow-control waits
_EOL = re.compile(rb"[\r\n]")
_CODE_CHARS = re.compile(r"^[A-Za-z0-9?*_]{1,10}$")
_HEX_SEQ = re.compile(r"^(0[xX])?[0-9A-Fa-f]{1,6}$")  # ObsPy sends hex() output: "0x1b"

T = TypeVar("T")


# ----------------------------------------------------------------------------------------------- parsing
# ---------------------------------------------------------------------------------------- replay state
@dataclass(frozen=True, slots=True)
class Packet:
    """A released SeedLink packet: per-station sequence, stream, output-frame times and wire bytes."""

    seq: int
    location: str
    channel: str
    start_ns: int
    end_ns: int
    wire: bytes  # b"SL%06X" + 512-byte record


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

    def packet(self, index: int) -> Packet:
        return self.packets[index - self.base]

    def append(self, record: MseedRecord, shift_ns: int) -> None:
        seq, self.next_seq = self.next_seq, (self.next_seq + 1) % SEQ_MODULUS
        if len(self.packets) == self.packets.maxlen:
            self.base += 1
        wire = b"SL%06X" % seq + shift_record(record.data, shift_ns)
        start, end = record.start_ns + shift_ns, record.end_ns + shift_ns
        self.packets.append(Packet(seq, record.location, record.channel, start, end, wire))

    def index_of_seq(self, seq: int) -> int | None:
        """Absolute index of the packet with sequence ``seq``, if it is still buffered."""
        if not self.packets:
            return None
        offset = (seq - self.packets[0].seq) % SEQ_MODULUS
        return self.base + offset if offset < len(self.packets) else None

    def index_for_resume(self, seq: int) -> int:
        """Where to start for a sequence that is not buffered: oldest if it fell out, next if in the future."""
        ahead = (seq - self.next_seq) % SEQ_MODULUS
        return self.end if ahead < SEQ_MODULUS // 2 else self.base

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
        self.period_ns = max(round_to_tick(max(r.end_ns for r in records) - self.t0_ns), 100_000)
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

    def release_due(self, now: float, limit: int = _RELEASE_CHUNK) -> int:
        """Release up to ``limit`` records due by ``now``; wake waiting clients when anything changed."""
        count = 0
        while not self.exhausted and not self.paused and count < limit:
            record = self.records[self.cursor]
            if self.due(record) > now:
                break
            self.buffers[(record.network, record.station)].append(record, self.shift_ns())
            count += 1
            self._advance()
        self.released += count
        if count or self.exhausted:
            self.notify()
        return count

    def _advance(self) -> None:
        self.cursor += 1
        if self.cursor < len(self.records):
            return
        if self.loop:
            self.cursor, self.pass_no = 0, self.pass_no + 1
            logger.info(
                "replay pass %d starts (archive shifted by %.3f s)", self.pass_no, self.shift_ns() / 1e9
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
            if self.release_due(loop.time()) >= _RELEASE_CHUNK:
                await asyncio.sleep(0)
                continue
            if self.paused or self.exhausted:
                await asyncio.sleep(0.05)
                continue
            await asyncio.sleep(max(self.due(self.records[self.cursor]) - loop.time(), 0.0))


# -------------------------------------------------------------------------------------------- sessions
class CommandError(Exception):
    """A refused command; ``code`` is the SeedLink 3.1 extended-reply error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class StationRequest:
    """What a client negotiated for one STATION (or for the whole connection in uni-station mode)."""

    network: str = "*"
    station: str = "*"
    selectors: list[Selector] = field(default_factory=list)
    seq: int | None = None
    begin_ns: int | None = None
    end_ns: int | None = None
    dialup: bool = False

    def matches(self, network: str, station: str) -> bool:
        return fnmatchcase(network.upper(), self.network) and fnmatchcase(station.upper(), self.station)


class Subscription:
    """One station's data flow to one client: selection, read position and optional window end."""

    def __init__(self, buffer: StationBuffer, selectors: list[Selector], cursor: int, end_ns: int | None):
        self.buffer = buffer
        self.selectors = selectors
        self.cursor = cursor
        self.end_ns = end_ns
        self._selected: dict[tuple[str, str], bool] = {}

    def pending(self) -> Iterator[Packet]:
        """Yield the selected packets from the read position on, advancing it."""
        while True:
            buffer = self.buffer
            if self.cursor < buffer.base:
                logger.warning("client fell behind on %s.%s: skipping %d packets",
                               buffer.network, buffer.station, buffer.base - self.cursor)  # fmt: skip
                self.cursor = buffer.base
            if self.cursor >= buffer.end:
                return
            packet = buffer.packet(self.cursor)
            self.cursor += 1
            if self.end_ns is not None and packet.start_ns > self.end_ns:
                continue
            if self._is_selected(packet):
                yield packet

    def caught_up(self) -> bool:
        return self.cursor >= self.buffer.end

    def _is_selected(self, packet: Packet) -> bool:
        key = (packet.location, packet.channel)
        if key not in self._selected:
            self._selected[key] = selection_matches(self.selectors, *key)
        return self._selected[key]


class Session:
    """One client connection: command negotiation, then streaming while answering INFO and BYE."""

    def __init__(
        self, server: SeedLinkReplayServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ):
        self.server = server
        self.replay = server.replay
        self.reader = reader
        self.writer = writer
        self.peer = writer.get_extra_info("peername")
        self.requests: list[StationRequest] = []
        self.selectors: list[Selector] = []  # given before any STATION: uni-station or defaults
        self.uni: StationRequest | None = None
        self.batch = False
        self.extreply = False
        self._buffer = bytearray()
        self._handlers = self._command_table()

    async def run(self) -> None:
        """Serve the connection until the client leaves, the stream ends or the server stops."""
        logger.info("client %s connected", self.peer)
        try:
            if await self._negotiate():
                await self._stream()
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            logger.info("client %s dropped: %s", self.peer, exc)
        finally:
            logger.info("client %s disconnected", self.peer)

    def abort(self) -> None:
        """Cut the connection at once (server stop or injected fault)."""
        self.writer.transport.abort()

    # ----------------------------------------------------------------------- input and replies
    async def _read_command(self) -> str | None:
        """Next non-empty command line (CR, LF or CRLF terminated), or None at end of input."""
        while True:
            match = _EOL.search(self._buffer)
            if match:
                line = bytes(self._buffer[: match.start()])
                del self._buffer[: match.end()]
                if line.strip():
                    return line.decode("ascii", "replace").strip()
                continue
            if len(self._buffer) > MAX_COMMAND_BYTES:
                raise ConnectionError("command line too long")
            chunk = await self.reader.read(4096)
            if not chunk:
                return None
            self._buffer += chunk

    def _send(self, data: bytes) -> None:
        self.writer.write(data)

    def _ok(self) -> None:
        if not self.batch:
            self._send(b"OK\r\n")

    def _error(self, error: CommandError, always: bool = False) -> None:
        logger.debug("client %s: %s", self.peer, error)
        if self.batch and not always:
            return
        if self.extreply:
            self._send(f"ERROR {error.code} {error}\r\n".encode("ascii", "replace"))
        else:
            self._send(b"ERROR\r\n")

    # ------------------------------------------------------------------------------ negotiation
    async def _negotiate(self) -> bool:
        """Handle commands until streaming starts (True) or the client leaves (False)."""
        while True:
            line = await self._read_command()
            if line is None:
                return False
            logger.debug("client %s: %s", self.peer, line)
            verb, *args = line.split()
            handler = self._handlers.get(verb.upper())
            try:
                if handler is None:
                    raise CommandError("UNSUPPORTED", f"unrecognized command: {line[:50]}")
                action = handler(args)
            except CommandError as exc:
                self._error(exc, always=handler is None)
                action = None
            await self.writer.drain()
            if action is not None:
                return action == "stream"

    def _command_table(self) -> dict[str, Callable[[list[str]], str | None]]:
        return {
            "HELLO": self._hello,
            "CAT": self._cat,
            "CAPABILITIES": self._capabilities,
            "BATCH": self._batch,
            "INFO": self._info,
            "STATION": self._station,
            "SELECT": self._select,
            "DATA": self._data,
            "FETCH": self._fetch,
            "TIME": self._time,
            "END": self._end,
            "BYE": lambda args: "close",
        }

    def _hello(self, args: list[str]) -> None:
        self._send(f"{SERVER_ID} :: {HELLO_CAPABILITIES}\r\n{ORGANIZATION}\r\n".encode())

    def _cat(self, args: list[str]) -> None:
        lines = [f"{net:<2} {sta:<5}  {ORGANIZATION}\r\n" for net, sta in self.replay.buffers]
        self._send("".join(lines).encode("ascii", "replace") + b"END")

    def _capabilities(self, args: list[str]) -> None:
        if "EXTREPLY" in (a.upper() for a in args):
            self.extreply = True
        self._ok()

    def _batch(self, args: list[str]) -> None:
        self._send(b"OK\r\n")
        self.batch = True

    def _info(self, args: list[str]) -> None:
        if len(args) != 1:
            raise CommandError("ARGUMENTS", "INFO requires one level")
        level = args[0].upper()
        xml = info_xml(self.server, level)
        channel = "INF"
        if xml is None:
            logger.debug("client %s: unsupported INFO level %s", self.peer, level)
            xml, channel = info_xml(self.server, "ID"), "ERR"
        assert xml is not None
        records = text_records(xml, channel=channel)
        for number, record in enumerate(records, start=1):
            self._send((b"SLINFO  " if number == len(records) else b"SLINFO *") + record)

    def _station(self, args: list[str]) -> None:
        if not 1 <= len(args) <= 2 or not all(_CODE_CHARS.match(a) for a in args):
            raise CommandError("ARGUMENTS", "STATION requires a station and optionally a network code")
        request = StationRequest(args[1].upper() if len(args) == 2 else "*", args[0].upper())
        if not any(request.matches(net, sta) for net, sta in self.replay.buffers):
            raise CommandError("ARGUMENTS", f"no station matches {' '.join(args)}")
        self.requests.append(request)
        self._ok()

    def _select(self, args: list[str]) -> None:
        target = self.requests[-1].selectors if self.requests else self.selectors
        try:
            parsed = [Selector.parse(a) for a in args]
        except ValueError as exc:
            raise CommandError("ARGUMENTS", str(exc)) from exc
        if parsed:
            target.extend(parsed)
        else:
            target.clear()
        self._ok()

    def _data(self, args: list[str], dialup: bool = False) -> str | None:
        if len(args) > 2 or (args and not _HEX_SEQ.match(args[0])):
            raise CommandError("ARGUMENTS", "usage: DATA|FETCH [seq_hex [begin_time]]")
        seq = int(args[0], 16) if args else None
        begin = self._parse_time(args[1]) if len(args) == 2 else None
        return self._apply(StationRequest(seq=seq, begin_ns=begin, dialup=dialup))

    def _fetch(self, args: list[str]) -> str | None:
        return self._data(args, dialup=True)

    def _time(self, args: list[str]) -> str | None:
        if not 1 <= len(args) <= 2:
            raise CommandError("ARGUMENTS", "usage: TIME begin_time [end_time]")
        begin = self._parse_time(args[0])
        end = self._parse_time(args[1]) if len(args) == 2 else None
        if end is not None and end <= begin:
            raise CommandError("ARGUMENTS", "TIME end must be after begin")
        return self._apply(StationRequest(begin_ns=begin, end_ns=end))

    def _end(self, args: list[str]) -> str:
        if not self.requests:
            self.uni = StationRequest(selectors=self.selectors)
        return "stream"

    def _apply(self, start: StationRequest) -> str | None:
        """Attach a DATA/FETCH/TIME start to the current station, or start uni-station streaming."""
        if not self.requests:
            start.selectors = self.selectors
            self.uni = start
            return "stream"
        current = self.requests[-1]
        current.seq, current.begin_ns, current.end_ns = start.seq, start.begin_ns, start.end_ns
        current.dialup = start.dialup
        self._ok()
        return None

    @staticmethod
    def _parse_time(text: str) -> int:
        try:
            return parse_seedlink_time(text)
        except ValueError as exc:
            raise CommandError("ARGUMENTS", str(exc)) from exc

    # -------------------------------------------------------------------------------- streaming
    def _subscriptions(self) -> list[Subscription]:
        requests = self.requests or [self.uni or StationRequest(selectors=self.selectors)]
        subscriptions: dict[tuple[str, str], Subscription] = {}
        for request in requests:
            selectors = request.selectors or self.selectors
            for key, buffer in self.replay.buffers.items():
                if key not in subscriptions and request.matches(*key):
                    cursor = start_index(buffer, request)
                    subscriptions[key] = Subscription(buffer, selectors, cursor, request.end_ns)
        return list(subscriptions.values())

    async def _stream(self) -> None:
        subscriptions = self._subscriptions()
        dialup = any(r.dialup for r in self.requests) or bool(self.uni and self.uni.dialup)
        logger.info("client %s streams %d station(s)%s", self.peer, len(subscriptions), " (dial-up)" * dialup)
        tasks = {
            asyncio.create_task(self._send_packets(subscriptions, dialup)),
            asyncio.create_task(self._listen()),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _send_packets(self, subscriptions: list[Subscription], dialup: bool) -> None:
        windowed = bool(subscriptions) and all(s.end_ns is not None for s in subscriptions)
        while True:
            changed = self.replay.changed
            sent = 0
            for subscription in subscriptions:
                for packet in subscription.pending():
                    self._send(packet.wire)
                    sent += 1
                    if sent % _DRAIN_EVERY == 0:
                        await self.writer.drain()
            await self.writer.drain()
            caught_up = all(s.caught_up() for s in subscriptions)
            if caught_up and (dialup or (windowed and self._windows_complete(subscriptions))):
                self._send(b"END")
                await self.writer.drain()
                return
            await changed.wait()

    def _windows_complete(self, subscriptions: list[Subscription]) -> bool:
        return all(s.end_ns is not None and self.replay.window_complete(s.end_ns) for s in subscriptions)

    async def _listen(self) -> None:
        """While streaming, answer INFO (keep-alives) and stop on BYE or end of input."""
        while True:
            line = await self._read_command()
            if line is None:
                return
            verb, *args = line.split()
            if verb.upper() == "BYE":
                return
            if verb.upper() == "INFO":
                try:
                    self._info(args)
                except CommandError as exc:
                    logger.debug("client %s: %s", self.peer, exc)
            else:
                logger.debug("client %s: ignoring %r while streaming", self.peer, line)


def start_index(buffer: StationBuffer, request: StationRequest) -> int:
    """Where a client starts in a station buffer: at its sequence, else its begin time, else the next packet."""
    if request.seq is not None:
        index = buffer.index_of_seq(request.seq)
        if index is not None:
            return index
        if request.begin_ns is None:
            return buffer.index_for_resume(request.seq)
    if request.begin_ns is not None:
        return buffer.index_after(request.begin_ns)
    return buffer.end


# ---------------------------------------------------------------------------------------------- INFO
def info_xml(server: SeedLinkReplayServer, level: str) -> str | None:
    """INFO XML for ``level`` (ID, CAPABILITIES, STATIONS, STREAMS, ALL); None for unsupported levels."""
    root = ElementTree.Element(
        "seedlink", software=SERVER_ID, organization=ORGANIZATION, started=format_info_time(server.started_ns)
    )
    if level == "CAPABILITIES":
        for name in INFO_CAPABILITIES:
            ElementTree.SubElement(root, "capability", name=name)
    elif level in ("STATIONS", "STREAMS", "ALL"):
        for buffer in server.replay.buffers.values():
            _station_info(root, buffer, server.replay, streams=level != "STATIONS")
    elif level != "ID":
        return None
    return '<?xml version="1.0"?>\n' + ElementTree.tostring(root, encoding="unicode")


def _station_info(root: ElementTree.Element, buffer: StationBuffer, replay: Replay, streams: bool) -> None:
    first, last = (buffer.packets[0].seq, buffer.packets[-1].seq) if buffer.packets else (0, 0)
    station = ElementTree.SubElement(
        root, "station", name=buffer.station, network=buffer.network, description=ORGANIZATION,
        begin_seq=f"{first:06X}", end_seq=f"{last:06X}", stream_check="enabled",
    )  # fmt: skip
    if not streams:
        return
    spans: dict[tuple[str, str], list[int]] = {}
    for packet in buffer.packets:
        span = spans.setdefault((packet.location, packet.channel), [packet.start_ns, packet.end_ns])
        span[0], span[1] = min(span[0], packet.start_ns), max(span[1], packet.end_ns)
    start = replay.t0_ns + replay.shift_ns()
    for location, channel in sorted(buffer.streams):
        begin, end = spans.get((location, channel), (start, start))
        ElementTree.SubElement(
            station, "stream", location=location, seedname=channel, type="D",
            begin_time=format_info_time(begin), end_time=format_info_time(end),
            begin_recno="0", end_recno="0", gap_check="disabled", gap_treshold="0",
        )  # fmt: skip


# -------------------------------------------------------------------------------------------- server
class SeedLinkReplayServer:
    """Serve archived miniSEED as a live SeedLink 3.1 stream.

    ``speed``: replay rate (1 = real time; 0 or ``inf`` = everything at once). ``restamp``: shift all
    times so the first sample is "now" at the first start. ``loop``: replay again after the end, shifted
    by the archive duration. ``port=0`` binds a free port, kept for later restarts.
    """

    def __init__(
        self,
        paths: Iterable[str | Path],
        host: str = "127.0.0.1",
        port: int = 18000,
        speed: float = 1.0,
        restamp: bool = False,
        loop: bool = False,
    ) -> None:
        if speed < 0 or math.isnan(speed):
            raise ValueError("speed must be >= 0 (0 or inf: as fast as possible)")
        if loop and (speed == 0 or math.isinf(speed)):
            raise ValueError("loop needs a finite speed: an endless replay cannot run as fast as possible")
        self.paths = [Path(p) for p in paths]
        self.host = host
        self.speed = float(speed)
        self.restamp = restamp
        self.loop = loop
        self._port = port
        self._replay: Replay | None = None
        self._server: asyncio.Server | None = None
        self._feed: asyncio.Task[None] | None = None
        self._sessions: dict[asyncio.Task[Any], Session] = {}
        self._stopped: asyncio.Event | None = None
        self.started_ns = 0

    @property
    def port(self) -> int:
        """The TCP port (the bound one once started, so ``port=0`` resolves to the free port picked)."""
        return self._port

    @property
    def replay(self) -> Replay:
        """Replay state (buffers, clock); available after the first ``start()``."""
        if self._replay is None:
            raise RuntimeError("the server has not been started")
        return self._replay

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def client_count(self) -> int:
        return len(self._sessions)

    async def start(self) -> None:
        """Load the archive (first time only), start the replay clock and listen."""
        if self._server is not None:
            return
        if self._replay is None:
            records = await asyncio.to_thread(load_records, self.paths)
            self._replay = Replay(records, self.speed, self.restamp, self.loop)
            self.started_ns = time.time_ns()
            logger.info("loaded %d records of %d station(s) from %d path(s)",
                        len(records), len(self._replay.buffers), len(self.paths))  # fmt: skip
        self._replay.changed = asyncio.Event()  # bind to the running loop
        self._replay.begin(asyncio.get_running_loop().time())
        self._server = await asyncio.start_server(self._handle_client, self.host, self._port)
        self._port = self._server.sockets[0].getsockname()[1]
        self._feed = asyncio.create_task(self._replay.run())
        self._stopped = asyncio.Event()
        logger.info("SeedLink replay server listening on %s:%d (speed %s, restamp %s, loop %s)",
                    self.host, self._port, self.speed, self.restamp, self.loop)  # fmt: skip

    async def stop(self) -> None:
        """Close the port and every client connection; replay state and sequences are kept for a restart."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        await self.disconnect_clients()
        if self._feed is not None:
            self._feed.cancel()
            await asyncio.gather(self._feed, return_exceptions=True)
            self._feed = None
        await server.wait_closed()
        if self._stopped is not None:
            self._stopped.set()
        logger.info("SeedLink replay server on port %d stopped", self._port)

    async def serve_forever(self) -> None:
        """Start if needed and serve until ``stop()`` (or cancellation, which also stops)."""
        await self.start()
        assert self._stopped is not None
        try:
            await self._stopped.wait()
        finally:
            await self.stop()

    # ------------------------------------------------------------------ fault injection for tests
    async def disconnect_clients(self) -> int:
        """Drop every client connection abruptly (as a network failure would); returns how many."""
        sessions = list(self._sessions.items())
        for task, session in sessions:
            session.abort()
            task.cancel()
        await asyncio.gather(*(task for task, _ in sessions), return_exceptions=True)
        return len(sessions)

    async def pause(self) -> None:
        """Stall the feed: nothing is released until ``resume()``, which then catches up in a burst."""
        self.replay.paused = True

    async def resume(self) -> None:
        """Undo ``pause()``."""
        self.replay.paused = False

    async def _handle_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        session = Session(self, reader, writer)
        self._sessions[task] = session
        try:
            await session.run()
        except asyncio.CancelledError:
            pass
        except Exception:
            logger.exception("client %s: session failed", session.peer)
        finally:
            self._sessions.pop(task, None)
            writer.close()


class ThreadedReplayServer:
    """Run a :class:`SeedLinkReplayServer` on its own event loop in a daemon thread.

    For synchronous callers (tests, ObsPy clients): ``with ThreadedReplayServer(paths, port=0) as s:``.
    ``call(coroutine_function)`` runs any server coroutine (``stop``, ``start``, fault hooks) on that loop.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.server = SeedLinkReplayServer(*args, **kwargs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="seedlink-replay", daemon=True)

    @property
    def port(self) -> int:
        return self.server.port

    def call(self, function: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
        """Run ``function()`` (a coroutine function) on the server loop and return its result."""

        async def runner() -> T:
            return await function()

        return asyncio.run_coroutine_threadsafe(runner(), self._loop).result(timeout)

    def start(self) -> None:
        if not self._thread.is_alive():
            self._thread.start()
        self.call(self.server.start)

    def stop(self) -> None:
        self.call(self.server.stop)

    def close(self) -> None:
        """Stop the server and the loop thread."""
        if self._thread.is_alive():
            self.call(self.server.stop)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> ThreadedReplayServer:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_replay_server(
    paths: Iterable[str | Path],
    host: str = "127.0.0.1",
    port: int = 18000,
    speed: float = 1.0,
    restamp: bool = False,
    loop: bool = False,
) -> None:
    """Serve ``paths`` as a SeedLink stream until interrupted (blocking; for ``seispick replay``)."""
    server = SeedLinkReplayServer(paths, host=host, port=port, speed=speed, restamp=restamp, loop=loop)
    try:
        asyncio.run(server.serve_forever())
    except KeyboardInterrupt:
        logger.info("SeedLink replay server interrupted")
