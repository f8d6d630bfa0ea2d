"""SeedLink 3 ingest source: a small asyncio client with reconnect and per-station sequence resume.

Why a client of our own rather than ObsPy's in a thread: resume needs the per-station sequence of every
packet and control over the exact ``DATA seq time`` commands on each reconnect, ObsPy's clients block a
thread per connection and (1.5.1) mishandle timeouts, and the protocol subset is small.

Session: ``HELLO`` (capabilities), ``CAPABILITIES EXTREPLY`` when offered, then per station ``STATION sta
net``, one ``SELECT`` per selector and a start command, then ``END`` and packets (``SL`` + 6 hex digits of
sequence + a 512-byte record) until the connection drops. Start commands, first accepted wins:

* a station seen before: ``DATA seq+1 T``, ``DATA seq+1``, ``TIME T``, where T is the oldest per-channel
  last record end (whole seconds). The server starts at packet seq+1 if it still has it, else at time T;
  records a channel already delivered (end <= its last end) are dropped as duplicates right after a
  reconnect, so a time fallback neither loses nor doubles data;
* a station not seen yet: ``TIME begin_time`` if configured, else ``DATA`` (live end).

Station wildcards go to the server as they are when it has the ``NSWILDCARD`` capability (stations seen
before get their own resuming ``STATION`` line ahead of the pattern); otherwise they are expanded with
``CAT``, or ``INFO STATIONS`` when CAT is refused. Silence longer than ``keepalive_s`` sends ``INFO ID``;
longer than ``idle_timeout_s`` reconnects. Reconnects back off exponentially from ``reconnect_min_s`` to
``reconnect_max_s``, reset once a session has delivered packets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from xml.etree import ElementTree

from obspy import Trace, UTCDateTime

from seispick.seedlink.protocol import Selector, selection_matches
from seispick.service.ingest.sources import (
    NS_PER_S,
    RecordError,
    SeedLinkSourceConfig,
    Source,
    StreamSpec,
    TraceCallback,
    decode_record,
    read_mseed_bytes,
    record_source_id,
    trace_end_ns,
)

logger = logging.getLogger(__name__)

__all__ = ["Backoff", "SeedLinkError", "SeedLinkSource", "StationState", "merge_specs"]

SEQ_MODULUS = 1 << 24
RECORD_BYTES = 512
StationKey = tuple[str, str]


class SeedLinkError(Exception):
    """The server refused the session, sent something unexpected or went silent."""


def seedlink_time(ns: int) -> str:
    """Epoch ns as a SeedLink time, floored to whole seconds (what every server accepts)."""
    return datetime.fromtimestamp(ns // NS_PER_S, timezone.utc).strftime("%Y,%m,%d,%H,%M,%S")


def merge_specs(specs: list[StreamSpec]) -> list[StreamSpec]:
    """One spec per ``NET_STA``, selectors united (an empty list, meaning all, wins)."""
    merged: dict[StationKey, StreamSpec] = {}
    for spec in specs:
        key = (spec.network, spec.station)
        if key not in merged:
            merged[key] = spec
            continue
        old = merged[key]
        selectors = () if not old.selectors or not spec.selectors else old.selectors + spec.selectors
        merged[key] = StreamSpec(spec.network, spec.station, tuple(dict.fromkeys(selectors)))
    return list(merged.values())


@dataclass
class Backoff:
    """Exponential reconnect delays from ``minimum`` to ``maximum`` with up to 10 % jitter."""

    minimum: float
    maximum: float
    factor: float = 2.0
    current: float = 0.0

    def next(self) -> float:
        self.current = self.minimum if self.current == 0 else min(self.current * self.factor, self.maximum)
        return min(self.current * random.uniform(1.0, 1.1), self.maximum)

    def reset(self) -> None:
        self.current = 0.0


@dataclass
class StationState:
    """What an operator wants to know about one station, and what resuming it needs."""

    network: str
    station: str
    selectors: tuple[str, ...]
    status: str = "pending"  # pending, subscribed, streaming, refused, disconnected
    last_seq: int | None = None
    last_end_ns: int | None = None  # end of the newest record delivered, any channel
    last_arrival: float | None = None  # wall clock (epoch s) of the last packet
    records: int = 0
    bytes: int = 0
    errors: int = 0  # undecodable or impossible records
    channel_end_ns: dict[str, int] = field(default_factory=dict)  # trace id -> end of its last record
    guard: dict[str, int] = field(default_factory=dict)  # duplicates guard armed at (re)connect

    def resume_time_ns(self) -> int | None:
        """Oldest per-channel end: resuming there by time loses nothing (newer channels drop overlap)."""
        return min(self.channel_end_ns.values()) if self.channel_end_ns else None

    def as_dict(self) -> dict[str, Any]:
        latency = None
        if self.last_arrival is not None and self.last_end_ns is not None:
            latency = round(self.last_arrival - self.last_end_ns / NS_PER_S, 3)
        return {
            "status": self.status,
            "selectors": list(self.selectors),
            "last_seq": None if self.last_seq is None else f"{self.last_seq:06X}",
            "last_end": None if self.last_end_ns is None else str(UTCDateTime(ns=self.last_end_ns)),
            "last_arrival": None if self.last_arrival is None else str(UTCDateTime(self.last_arrival)),
            "latency_s": latency,
            "records": self.records,
            "bytes": self.bytes,
            "errors": self.errors,
        }


# -------------------------------------------------------------------------------------- connection
class SeedLinkConnection:
    """Commands, replies and packets on one SeedLink 3 TCP connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout

    @classmethod
    async def open(cls, host: str, port: int, timeout: float) -> SeedLinkConnection:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        return cls(reader, writer, timeout)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)

    async def _read(self, size: int, timeout: float | None = None) -> bytes:
        return await asyncio.wait_for(self.reader.readexactly(size), timeout or self.timeout)

    async def send(self, command: str) -> None:
        logger.debug("-> %s", command)
        self.writer.write(command.encode("ascii") + b"\r\n")
        await asyncio.wait_for(self.writer.drain(), self.timeout)

    async def line(self) -> str:
        """Next non-empty reply line."""
        while True:
            raw = await asyncio.wait_for(self.reader.readuntil(b"\n"), self.timeout)
            text = raw.decode("ascii", "replace").strip()
            if text:
                return text

    async def command(self, command: str) -> tuple[bool, str]:
        """Send a command that answers ``OK`` or ``ERROR[ code text]``."""
        await self.send(command)
        reply = await self.line()
        logger.debug("<- %s", reply)
        if reply.startswith(("OK", "ERROR")):
            return reply.startswith("OK"), reply
        raise SeedLinkError(f"unexpected reply to {command!r}: {reply[:80]!r}")

    async def hello(self) -> tuple[str, set[str]]:
        """Server identification line and its capability tokens."""
        await self.send("HELLO")
        ident, _organisation = await self.line(), await self.line()
        if "seedlink" not in ident.lower():
            raise SeedLinkError(f"not a SeedLink server: {ident[:80]!r}")
        caps = ident.split("::", 1)[1].split() if "::" in ident else []
        return ident.split("::", 1)[0].strip(), {c.upper() for c in caps}

    async def packet(self, timeout: float | None = None) -> tuple[str, int | None, bytes]:
        """Next packet: ``("data", seq, record)``, ``("info" | "info_last", None, record)``, ``("end", None,
        b"")`` or ``("error", None, reply)`` for an ``ERROR`` line."""
        head = await self._read(3, timeout)
        if head == b"END":
            return "end", None, b""
        if head == b"ERR":
            return "error", None, ("ERR" + await self.line()).encode()
        if head[:2] != b"SL":
            raise SeedLinkError(f"lost packet framing at {head!r}")
        tag = head + await self._read(5)
        record = await self._read(RECORD_BYTES)
        if tag.startswith(b"SLINFO"):
            return ("info" if tag[7:8] == b"*" else "info_last"), None, record
        try:
            return "data", int(tag[2:8], 16), record
        except ValueError:
            raise SeedLinkError(f"bad sequence number in {tag!r}") from None

    async def catalogue(self) -> list[StationKey] | None:
        """Stations listed by ``CAT``; None if the server refuses it."""
        await self.send("CAT")
        buffer = b""
        while True:
            chunk = await asyncio.wait_for(self.reader.read(65536), self.timeout)
            if not chunk:
                raise ConnectionError("server closed the connection during CAT")
            buffer += chunk
            text = buffer.rstrip()
            if buffer.startswith(b"ERROR") and b"\n" in buffer:
                return None
            if text == b"END" or text.endswith((b"\nEND", b"\rEND")):
                break
        lines = text[:-3].decode("ascii", "replace").splitlines()
        return [(p[0].upper(), p[1].upper()) for p in (line.split() for line in lines) if len(p) >= 2]

    async def info_stations(self) -> list[StationKey] | None:
        """Stations listed by ``INFO STATIONS``; None if the server refuses it."""
        await self.send("INFO STATIONS")
        text, channel, kind = b"", "", "info"
        while kind == "info":
            kind, _, record = await self.packet()
            if kind == "error":
                return None
            if not kind.startswith("info"):
                raise SeedLinkError(f"expected INFO packets, got {kind}")
            try:
                trace = read_mseed_bytes(record)[0]
            except Exception as exc:
                raise SeedLinkError(f"undecodable INFO packet: {exc}") from exc
            channel = trace.stats.channel
            text += trace.data.tobytes()
        if channel == "ERR":
            return None
        try:
            root = ElementTree.fromstring(text.decode("utf-8", "replace").strip("\x00 \r\n"))
        except ElementTree.ParseError as exc:
            raise SeedLinkError(f"bad INFO STATIONS XML: {exc}") from exc
        return [(s.get("network", "").upper(), s.get("name", "").upper()) for s in root.iter("station")]


# -------------------------------------------------------------------------------------------- source
class SeedLinkSource(Source):
    """Stream traces from a SeedLink 3 server; see the module docstring for resume and wildcards."""

    kind = "seedlink"

    def __init__(
        self, config: SeedLinkSourceConfig, on_trace: TraceCallback, name: str | None = None
    ) -> None:
        super().__init__(on_trace, name or config.name or f"seedlink://{config.host}:{config.port}")
        self.config = config
        self.specs = merge_specs(config.stream_specs())
        self.stations: dict[StationKey, StationState] = {}
        self.connected = False
        self.connected_since: float | None = None
        self.next_attempt_at: float | None = None
        self.server_id: str | None = None
        self.capabilities: set[str] = set()
        self._backoff = Backoff(config.reconnect_min_s, config.reconnect_max_s)
        self._selected: dict[tuple[StationKey, str, str], bool] = {}
        self._session_packets = 0
        for spec in self.specs:
            if not spec.wildcard:
                self._station((spec.network, spec.station))

    # ----------------------------------------------------------------------------- run loop
    async def run(self) -> None:
        first = True
        while True:
            if not first:
                self.stats.reconnects += 1
            first = False
            self._session_packets = 0
            try:
                await self._session()
                self.last_error = "server ended the stream"
            except (OSError, EOFError, asyncio.TimeoutError, asyncio.LimitOverrunError, SeedLinkError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            except Exception as exc:  # a bug or a server we misread: log it, but keep the feed alive
                logger.exception("%s: session failed", self.name)
                self.last_error = f"{type(exc).__name__}: {exc}"
            if self._session_packets:
                self._backoff.reset()
            delay = self._backoff.next()
            self.next_attempt_at = time.time() + delay
            logger.warning("%s: disconnected (%s); reconnecting in %.2f s", self.name, self.last_error, delay)
            await asyncio.sleep(delay)
            self.next_attempt_at = None

    async def _session(self) -> None:
        cfg = self.config
        conn = await SeedLinkConnection.open(cfg.host, cfg.port, cfg.timeout_s)
        try:
            self.server_id, self.capabilities = await conn.hello()
            if "EXTREPLY" in self.capabilities:
                await conn.command("CAPABILITIES EXTREPLY")
            accepted = 0
            for key, selectors, starts in await self._plan(conn):
                accepted += await self._subscribe(conn, key, selectors, starts)
            if not accepted:
                raise SeedLinkError("the server accepted none of the requested stations")
            for state in self.stations.values():
                state.guard = dict(state.channel_end_ns)
            await conn.send("END")
            self.connected, self.connected_since = True, time.time()
            logger.info("%s: streaming %d station request(s) from %s", self.name, accepted, self.server_id)
            await self._stream(conn)
        finally:
            self.connected = False
            for state in self.stations.values():
                if state.status in ("subscribed", "streaming"):
                    state.status = "disconnected"
            await conn.close()

    async def _stream(self, conn: SeedLinkConnection) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.config
        last = loop.time()
        while True:
            wait = max(min(cfg.keepalive_s, cfg.idle_timeout_s - (loop.time() - last)), 0.01)
            try:
                kind, seq, record = await conn.packet(timeout=wait)
            except asyncio.TimeoutError:
                silence = loop.time() - last
                if silence >= cfg.idle_timeout_s:
                    raise SeedLinkError(f"no packets for {silence:.0f} s") from None
                await conn.send("INFO ID")  # keep-alive; the answer counts as traffic
                continue
            if kind == "end":
                return
            if kind == "error":
                raise SeedLinkError(f"server error while streaming: {record[:80].decode('ascii', 'replace')}")
            if kind == "data":
                assert seq is not None
                self._session_packets += 1
                await self._on_packet(seq, record)
            last = loop.time()

    # ------------------------------------------------------------------------ subscriptions
    def _station(self, key: StationKey) -> StationState:
        state = self.stations.get(key)
        if state is None:
            state = StationState(*key, selectors=self.selectors_for(key) or ())
            self.stations[key] = state
        return state

    def selectors_for(self, key: StationKey) -> tuple[str, ...] | None:
        """Selectors of every spec matching a station, united; None if no spec asks for it."""
        matching = [spec for spec in self.specs if spec.matches(*key)]
        if not matching:
            return None
        if any(not spec.selectors for spec in matching):
            return ()
        return tuple(dict.fromkeys(s for spec in matching for s in spec.selectors))

    async def _plan(self, conn: SeedLinkConnection) -> list[tuple[StationKey, tuple[str, ...], list[str]]]:
        """(station, selectors, start commands) to send: concrete stations first, then patterns."""
        patterns = [spec for spec in self.specs if spec.wildcard]
        keys = [(spec.network, spec.station) for spec in self.specs if not spec.wildcard]
        pattern_lines = []
        if patterns and "NSWILDCARD" in self.capabilities:
            keys += [k for k, s in self.stations.items() if s.last_seq is not None and k not in keys]
            begin = self._begin_commands()
            pattern_lines = [((p.network, p.station), p.selectors, begin) for p in patterns]
        elif patterns:
            listed = await conn.catalogue()
            if listed is None:
                listed = await conn.info_stations()
            if listed is None:  # carry on with the stations known so far
                logger.warning(
                    "%s: cannot expand station wildcards: no NSWILDCARD, CAT or INFO STATIONS", self.name
                )
                listed = list(self.stations)
            found = [k for k in listed if any(p.matches(*k) for p in patterns) and k not in keys]
            if not found:
                logger.warning(
                    "%s: no station on the server matches %s", self.name, ", ".join(map(str, patterns))
                )
            keys += found
        plan = []
        for key in keys:
            state = self._station(key)
            plan.append((key, state.selectors, self._start_commands(state)))
        return plan + pattern_lines

    def _begin_commands(self) -> list[str]:
        if self.config.begin_time is None:
            return ["DATA"]
        begin = self.config.begin_time
        if begin.tzinfo is None:
            begin = begin.replace(tzinfo=timezone.utc)
        return [f"TIME {seedlink_time(int(begin.timestamp()) * NS_PER_S)}", "DATA"]

    def _start_commands(self, state: StationState) -> list[str]:
        if state.last_seq is None:
            return self._begin_commands()
        following = f"{(state.last_seq + 1) % SEQ_MODULUS:06X}"
        resume_ns = state.resume_time_ns()
        if resume_ns is None:
            return [f"DATA {following}"]
        at = seedlink_time(resume_ns)
        return [f"DATA {following} {at}", f"DATA {following}", f"TIME {at}"]

    async def _subscribe(self, conn: SeedLinkConnection, key: StationKey, selectors: tuple[str, ...],
                         starts: list[str]) -> bool:  # fmt: skip
        network, station = key
        concrete = key in self.stations
        ok, reply = await conn.command(f"STATION {station} {network}")
        if not ok:
            logger.warning("%s: station %s_%s refused: %s", self.name, network, station, reply)
            if concrete:
                self.stations[key].status = "refused"
            return False
        for selector in selectors:
            ok, reply = await conn.command(f"SELECT {selector}")
            if not ok:
                logger.warning(
                    "%s: %s_%s selector %s refused: %s", self.name, network, station, selector, reply
                )
        for start in starts:
            ok, reply = await conn.command(start)
            if ok:
                logger.info("%s: %s_%s from %s", self.name, network, station, start)
                break
            logger.debug("%s: %s_%s: %s refused (%s)", self.name, network, station, start, reply)
        else:
            logger.warning(
                "%s: %s_%s: no start command accepted; live data only", self.name, network, station
            )
        if concrete:
            self.stations[key].status = "subscribed"
        return True

    # ------------------------------------------------------------------------------ packets
    async def _on_packet(self, seq: int, record: bytes) -> None:
        self.stats.bytes += len(record)
        now = time.time()
        try:
            trace = decode_record(record)
        except RecordError as exc:
            key = record_source_id(record)
            state = self.stations.get(key) if key else None
            if state is not None:
                state.last_seq, state.last_arrival, state.errors = seq, now, state.errors + 1
            self.reject(exc, f"{key[0]}_{key[1]} seq {seq:06X}" if key else f"seq {seq:06X}")
            return
        key = (trace.stats.network, trace.stats.station) if trace else record_source_id(record)
        if key is None or self.selectors_for(key) is None:
            self.stats.skipped += 1
            return
        state = self._station(key)
        state.last_seq, state.last_arrival, state.status = seq, now, "streaming"
        if trace is None or not self._is_selected(key, trace):
            self.stats.skipped += 1
            return
        end = trace_end_ns(trace)
        guard = state.guard.get(trace.id)
        if guard is not None:
            if end <= guard:
                self.stats.duplicates += 1
                return
            del state.guard[trace.id]
        state.channel_end_ns[trace.id] = max(end, state.channel_end_ns.get(trace.id, end))
        state.last_end_ns = max(end, state.last_end_ns or end)
        state.records += 1
        state.bytes += len(record)
        await self.deliver(trace)

    def _is_selected(self, key: StationKey, trace: Trace) -> bool:
        """Client-side check of the selectors (servers that ignore SELECT do not leak other streams)."""
        location, channel = trace.stats.location, trace.stats.channel
        cached = self._selected.get((key, location, channel))
        if cached is None:
            selectors = [Selector.parse(s) for s in self.stations[key].selectors]
            cached = self._selected[(key, location, channel)] = selection_matches(
                selectors, location, channel
            )
        return cached

    # -------------------------------------------------------------------------------- state
    def state(self) -> dict[str, Any]:
        state = super().state()
        state.update(
            address=f"{self.config.host}:{self.config.port}",
            connected=self.connected,
            connected_since=None if self.connected_since is None else str(UTCDateTime(self.connected_since)),
            next_attempt_in_s=(
                None if self.next_attempt_at is None else round(max(self.next_attempt_at - time.time(), 0), 3)
            ),
            server=self.server_id,
            capabilities=sorted(self.capabilities),
            stations={f"{n}_{s}": st.as_dict() for (n, s), st in sorted(self.stations.items())},
        )
        return state
