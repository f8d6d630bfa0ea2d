"""SeedLink ingest source: an asyncio client for SeedLink 4.0 and 3.1 with reconnect and sequence resume.

Why a client of our own rather than ObsPy's in a thread: resume needs the per-station sequence of every
packet and control over the exact start commands on each reconnect, ObsPy's clients block a thread per
connection, speak SeedLink 3 only and read miniSEED 2 only.

Session: ``HELLO``; then ``SLPROTO 4.0`` (and ``USERAGENT``) when the server advertises ``SLPROTO:4.0`` and
``protocol`` allows it, else SeedLink 3.1 (``CAPABILITIES EXTREPLY`` when offered); per station ``STATION``,
one ``SELECT`` per selector and a start command (first accepted wins); ``END``; packets until the connection
drops. Commands, framing and listings: :mod:`.connection` and :mod:`.commands`.

Resume, exactly once: every packet's per-station sequence number is kept. A station seen before asks for
``DATA seq+1 time``; ``time`` is the oldest per-channel end of what was delivered (SeisComP's seedlink drops
packets ending before it, so an older channel loses nothing), except on ringserver, which instead checks
``time`` against the start of the last packet received (libslink's convention) and starts by time when it
does not match. Fallbacks are ``DATA seq+1`` and a time-only start. Right after a (re)connect, records a
channel already delivered (end <= its last end) are dropped as duplicates, so a time start neither loses
nor doubles data. A station not seen yet starts at ``begin_time`` if configured, else at the live end.

Across restarts: ``seed`` makes a station resume from a kept position as if seen before (a channel whose data
then start later than kept is a gap: ``resume_gaps``, one warning); with ``track_positions`` every record
delivered is remembered until ``positions(final_ns)`` passes it: per station, the newest record such that it
and every record before it end by the time its instrument's picks are final (the service keeps these).

Station wildcards (``GZ_*``) go to the server as they are when it takes them: SeedLink 4 always, SeedLink 3
with the ``NSWILDCARD`` capability, or when it could not list its stations but answered the wildcard
``STATION`` with OK (ringserver does). Stations seen before get their own resuming ``STATION`` line ahead of
the pattern. Otherwise the client expands the pattern from ``CAT``, or ``INFO STATIONS`` when CAT is refused,
not implemented or unanswered (one log line names each refusal; the session goes on), and re-lists the
stations every ``relist_s`` on a side connection: new matches end the session so that the next one
subscribes them (resuming everything else by sequence).

Silence longer than ``keepalive_s`` sends ``INFO ID``; longer than ``idle_timeout_s`` reconnects. Reconnects
back off exponentially from ``reconnect_min_s`` to ``reconnect_max_s``, reset once a session has delivered.

Known server behaviour: ringserver 4.5.3 never delivers the ring's very first packet to a time-positioned
request (its search steps past a match that has no predecessor); anything after it arrives.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from importlib import metadata
from typing import Any

from obspy import Trace, UTCDateTime

from seispick.feed import Source, TraceCallback
from seispick.miniseed.constants import NS_PER_S
from seispick.miniseed.decode import RecordError, decode_record, record_source_id, trace_end_ns
from seispick.seedlink.client.commands import (
    V3,
    V4,
    begin_commands,
    format_seq,
    resume_commands,
    sequence_modulus,
    station_command,
    v4_selector,
)
from seispick.seedlink.client.connection import (
    Packet,
    SeedLinkConnection,
    SeedLinkError,
    ServerHello,
    StationKey,
)
from seispick.seedlink.client.source_config import SeedLinkSourceConfig
from seispick.seedlink.protocol import Selector, selection_matches
from seispick.seedlink.stream_specs import StreamSpec

logger = logging.getLogger(__name__)

__all__ = ["Backoff", "SeedLinkError", "SeedLinkSource", "StationState", "merge_specs"]

_SESSION_ERRORS = (OSError, EOFError, asyncio.TimeoutError, asyncio.LimitOverrunError, SeedLinkError)
_EPOCH = datetime(1970, 1, 1)
_POLL_S = 1.0  # longest wait for a packet before looking at keep-alive, idle and re-subscription
# One record since a station's kept position: seq, its protocol, start and end (ns) and trace id of what was
# delivered (start, end and id None: nothing delivered, e.g. a duplicate or an undecodable record).
Trail = tuple[int, str, int | None, int | None, str | None]


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


def user_agent() -> str:
    try:
        return f"seispick/{metadata.version('seispick')}"
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "seispick/dev"


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
    seq_protocol: str | None = None  # the protocol that numbered last_seq (3.1 and 4.0 numbers differ)
    last_start_ns: int | None = None  # start of the packet last_seq (ringserver checks resumes against it)
    last_end_ns: int | None = None  # end of the newest record delivered, any channel
    last_arrival: float | None = None  # wall clock (epoch s) of the last packet
    records: int = 0
    bytes: int = 0
    errors: int = 0  # undecodable or impossible records
    channel_end_ns: dict[str, int] = field(default_factory=dict)  # trace id -> end of its last record
    guard: dict[str, int] = field(default_factory=dict)  # duplicates guard armed at (re)connect
    resume_check: dict[str, int] = field(default_factory=dict)  # seeded channel ends, checked for a gap
    resume_gaps: int = 0  # channels whose data resumed later than their kept position (left the ring)
    trail: deque[Trail] = field(default_factory=deque)  # records since the kept position, oldest first
    kept: dict[str, Any] | None = None  # the position up to which every record's data is final
    seeded: bool = False  # resuming from a kept position, nothing received yet in this process

    def resume_time_ns(self) -> int | None:
        """Oldest per-channel end: resuming there by time loses nothing (newer channels drop overlap)."""
        return min(self.channel_end_ns.values()) if self.channel_end_ns else None

    def as_dict(self) -> dict[str, Any]:
        latency = None
        if self.last_arrival is not None and self.last_end_ns is not None:
            latency = round(self.last_arrival - self.last_end_ns / NS_PER_S, 3)
        seq = None
        if self.last_seq is not None:
            seq = format_seq(self.last_seq, self.seq_protocol or V3)
        return {
            "status": self.status,
            "selectors": list(self.selectors),
            "last_seq": seq,
            "last_end": None if self.last_end_ns is None else _iso(self.last_end_ns),
            "last_arrival": None if self.last_arrival is None else _iso(round(self.last_arrival * NS_PER_S)),
            "latency_s": latency,
            "records": self.records,
            "bytes": self.bytes,
            "errors": self.errors,
            "resume_gaps": self.resume_gaps,
        }


@dataclass(frozen=True)
class Subscription:
    """One ``STATION`` block of a handshake: a station or a pattern, its selectors and start commands."""

    network: str
    station: str
    selectors: tuple[str, ...]
    starts: list[str]
    pattern: bool = False

    @property
    def label(self) -> str:
        return f"{self.network}_{self.station}"


# -------------------------------------------------------------------------------------------- source
class SeedLinkSource(Source):
    """Stream traces from a SeedLink 4.0 or 3.1 server; see the module docstring."""

    kind = "seedlink"

    def __init__(
        self,
        config: SeedLinkSourceConfig,
        on_trace: TraceCallback,
        name: str | None = None,
        accept: Callable[[str, str], bool] | None = None,
    ) -> None:
        super().__init__(on_trace, name or config.name or f"seedlink://{config.host}:{config.port}")
        self.config = config
        self.accept = accept  # (network, station) of each packet, from its header: False skips it undecoded
        self.specs = merge_specs(config.stream_specs())
        self.patterns = [spec for spec in self.specs if spec.wildcard]
        self.stations: dict[StationKey, StationState] = {}
        self.connected = False
        self.connected_since: float | None = None
        self.next_attempt_at: float | None = None
        self.server_id: str | None = None
        self.capabilities: set[str] = set()
        self.protocol: str | None = None  # negotiated in the current (or last) session
        self.wildcards: str | None = None  # how patterns were served: native, CAT, INFO STATIONS, none
        self.refusals: dict[str, str] = {}  # command -> the server's answer, for state() and one log line
        self.resubscriptions = 0
        self._hello: ServerHello | None = None
        self._wildcards_accepted = False  # a SeedLink 3 server without NSWILDCARD took a wildcard STATION
        self._listing_method: str | None = None  # CAT or INFO STATIONS, whichever answered
        self._subscribed: set[StationKey] = set()
        self._resubscribe = asyncio.Event()
        self._backoff = Backoff(config.reconnect_min_s, config.reconnect_max_s)
        self._selected: dict[tuple[StationKey, str, str], bool] = {}
        self._selectors: dict[StationKey, tuple[str, ...] | None] = {}
        self._session_packets = 0
        self.track_positions = False  # keep each station's trail of records for positions()
        self.resume_gaps = 0  # channels whose kept position the server no longer held
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
                if await self._session() == "resubscribe":
                    self.resubscriptions += 1
                    continue
                self.last_error = "server ended the stream"
            except _SESSION_ERRORS as exc:
                _raise_if_cancelling()
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

    async def _session(self) -> str:
        """One connection from HELLO to its end: ``"ended"`` or ``"resubscribe"`` (new stations listed)."""
        cfg = self.config
        conn = await SeedLinkConnection.open(cfg.host, cfg.port, cfg.timeout_s, cfg.limits())
        watcher: asyncio.Task[None] | None = None
        try:
            hello = self._hello = await conn.hello()
            self.server_id, self.capabilities = hello.ident, set(hello.capabilities)
            self.protocol = await self._negotiate(conn, hello)
            plan, expanded = await self._plan(conn)
            self._subscribed = set()
            accepted = 0
            for subscription in plan:
                accepted += await self._subscribe(conn, subscription)
            if not accepted:
                raise SeedLinkError("the server accepted none of the requested stations")
            for state in self.stations.values():
                state.guard = dict(state.channel_end_ns)
            await conn.send("END")
            self.connected, self.connected_since = True, time.time()
            logger.info(
                "%s: streaming %d station request(s) from %s over SeedLink %s",
                self.name, accepted, self.server_id, self.protocol,
            )  # fmt: skip
            self._resubscribe.clear()
            if expanded and cfg.relist_s > 0:
                watcher = asyncio.create_task(self._watch_stations(), name=f"relist-{self.name}")
            return await self._stream(conn)
        finally:
            if watcher is not None:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
            self.connected = False
            for state in self.stations.values():
                if state.status in ("subscribed", "streaming"):
                    state.status = "disconnected"
            await conn.close()

    async def _negotiate(self, conn: SeedLinkConnection, hello: ServerHello) -> str:
        """Switch to SeedLink 4.0 when offered and allowed; the protocol in use."""
        wanted = self.config.protocol
        if wanted == V4 or (wanted == "auto" and hello.speaks(V4)):
            reply = await conn.command("SLPROTO 4.0")
            if reply.ok:
                conn.v4 = True
                await conn.command(f"USERAGENT {user_agent()}")  # informative; a refusal changes nothing
                return V4
            if wanted == V4:
                raise SeedLinkError(f"the server refused SeedLink 4.0: {reply}")
            self._refused("SLPROTO 4.0", f"{reply}; using SeedLink 3.1")
        if "EXTREPLY" in hello.capabilities:
            await conn.command("CAPABILITIES EXTREPLY")
        return V3

    async def _stream(self, conn: SeedLinkConnection) -> str:
        loop = asyncio.get_running_loop()
        cfg = self.config
        last = keepalive = loop.time()
        while not self._resubscribe.is_set():
            now = loop.time()
            if now - last >= cfg.idle_timeout_s:
                raise SeedLinkError(f"no packets for {now - last:.0f} s")
            quiet = now - max(last, keepalive)
            if quiet >= cfg.keepalive_s:
                await conn.send("INFO ID")  # keep-alive; the answer counts as traffic
                keepalive = now
                continue
            wait = max(min(cfg.keepalive_s - quiet, cfg.idle_timeout_s - (now - last), _POLL_S), 0.01)
            try:
                packet = await conn.packet(timeout=wait)
            except asyncio.TimeoutError:
                _raise_if_cancelling()  # a stop that came as the wait ran out must not be polled past
                continue
            if packet.kind == "end":
                return "ended"
            if packet.kind == "error":
                raise SeedLinkError(
                    f"server error while streaming: {packet.payload[:80].decode('ascii', 'replace')}"
                )
            if packet.kind == "data":
                self._session_packets += 1
                await self._on_packet(packet)
            last = loop.time()
        logger.info("%s: re-subscribing to take in newly listed stations", self.name)
        return "resubscribe"

    # ------------------------------------------------------------------------ subscriptions
    def _station(self, key: StationKey) -> StationState:
        state = self.stations.get(key)
        if state is None:
            state = StationState(*key, selectors=self.selectors_for(key) or ())
            self.stations[key] = state
        return state

    def selectors_for(self, key: StationKey) -> tuple[str, ...] | None:
        """Selectors of every spec matching a station, united; None if no spec asks for it (remembered per
        station: every packet asks, and a station list may hold thousands of specs)."""
        if key in self._selectors:
            return self._selectors[key]
        matching = [spec for spec in self.specs if spec.matches(*key)]
        if not matching:
            united = None
        elif any(not spec.selectors for spec in matching):
            united = ()
        else:
            united = tuple(dict.fromkeys(s for spec in matching for s in spec.selectors))
        self._selectors[key] = united
        return united

    def _refused(self, command: str, reason: str) -> None:
        """Remember a refusal; the first time, say so in one line."""
        if self.refusals.get(command) != reason:
            logger.warning("%s: %s: %s", self.name, command, reason)
        self.refusals[command] = reason

    def _resumable(self, state: StationState) -> bool:
        return state.last_seq is not None and state.seq_protocol == self.protocol

    async def _plan(self, conn: SeedLinkConnection) -> tuple[list[Subscription], bool]:
        """The STATION blocks to send (concrete stations first, then patterns), and whether the patterns
        were expanded by the client (so that the station list must be watched for newcomers)."""
        concrete = [(spec.network, spec.station) for spec in self.specs if not spec.wildcard]
        seen = [key for key, state in self.stations.items() if self._resumable(state) and key not in concrete]
        if not self.patterns:
            return self._subscriptions(concrete), False
        native = self.protocol == V4 or "NSWILDCARD" in self.capabilities or self._wildcards_accepted
        listed = None if native else await self._list_stations(conn)
        if listed is None:
            self.wildcards = "native" if native else "wildcard"
            begin = self._begin_commands()
            patterns = [
                Subscription(p.network, p.station, p.selectors, begin, pattern=True) for p in self.patterns
            ]
            return self._subscriptions(concrete + seen) + patterns, False
        self.wildcards = self._listing_method
        found = [key for key in dict.fromkeys(listed) if self._wanted(key) and key not in concrete]
        if not found:
            logger.warning(
                "%s: no station on the server matches %s", self.name, ", ".join(map(str, self.patterns))
            )
        return self._subscriptions(concrete + found), True

    def _wanted(self, key: StationKey) -> bool:
        return any(pattern.matches(*key) for pattern in self.patterns)

    def _subscriptions(self, keys: list[StationKey]) -> list[Subscription]:
        plan = []
        for key in keys:
            state = self._station(key)
            plan.append(Subscription(*key, state.selectors, self._start_commands(state)))
        return plan

    async def _list_stations(self, conn: SeedLinkConnection) -> list[StationKey] | None:
        """Stations from CAT, else INFO STATIONS; None when the server lists neither (both logged)."""
        for method in ("CAT", "INFO STATIONS"):
            if method in self.refusals:
                continue  # refused before: do not wait for it again on every reconnect
            listing = await (conn.catalogue() if method == "CAT" else conn.info_stations())
            if listing.stations is not None:
                self._listing_method = method
                return listing.stations
            self._refused(method, listing.reason)
        self._listing_method = None
        return None

    async def _watch_stations(self) -> None:
        """Every ``relist_s``, list the server's stations on a side connection; on a new match, ask the
        stream to end so that the next session subscribes it."""
        while True:
            await asyncio.sleep(self.config.relist_s)
            try:
                listed = await self._side_listing()
            except _SESSION_ERRORS as exc:
                _raise_if_cancelling()
                logger.debug("%s: re-listing stations failed: %s", self.name, exc)
                continue
            new = sorted(key for key in listed or () if self._wanted(key) and key not in self._subscribed)
            if new:
                logger.info(
                    "%s: %d new station(s) match %s: %s", self.name, len(new),
                    ", ".join(map(str, self.patterns)), ", ".join(f"{n}_{s}" for n, s in new[:10]),
                )  # fmt: skip
                self._resubscribe.set()
                return

    async def _side_listing(self) -> list[StationKey] | None:
        cfg = self.config
        conn = await SeedLinkConnection.open(cfg.host, cfg.port, cfg.timeout_s, cfg.limits())
        try:
            await conn.hello()
            if self._listing_method == "INFO STATIONS":
                return (await conn.info_stations()).stations
            return (await conn.catalogue()).stations
        finally:
            await conn.close()

    def _begin_commands(self) -> list[str]:
        begin = self.config.begin_time
        if begin is None:
            return begin_commands(self.protocol or V3, None)
        if begin.tzinfo is None:
            begin = begin.replace(tzinfo=timezone.utc)
        return begin_commands(self.protocol or V3, round(begin.timestamp() * NS_PER_S))

    def _start_commands(self, state: StationState) -> list[str]:
        protocol = self.protocol or V3
        oldest_end = state.resume_time_ns()
        if not self._resumable(state):
            if oldest_end is None:
                return self._begin_commands()
            return begin_commands(protocol, oldest_end)  # seen, but numbered by the other protocol
        assert state.last_seq is not None
        following = (state.last_seq + 1) % sequence_modulus(protocol)
        ringserver = self._hello is not None and "ringserver" in self._hello.software.lower()
        floor = self._ringserver_floor() if ringserver and state.seeded else None
        if floor is not None and floor.last_seq is not None and floor.last_start_ns is not None:
            following = (floor.last_seq + 1) % sequence_modulus(protocol)
            return resume_commands(protocol, following, floor.last_start_ns, floor.resume_time_ns())
        if ringserver and state.last_start_ns is not None:
            return resume_commands(protocol, following, state.last_start_ns, oldest_end)
        return resume_commands(protocol, following, oldest_end, oldest_end)

    async def _subscribe(self, conn: SeedLinkConnection, sub: Subscription) -> bool:
        protocol = self.protocol or V3
        reply = await conn.command(station_command(sub.network, sub.station, protocol))
        if not reply.ok:
            if sub.pattern:
                self._refused(f"STATION {sub.label}", f"{reply}; stations matching it cannot be subscribed")
            else:
                logger.warning("%s: station %s refused: %s", self.name, sub.label, reply)
                self.stations[(sub.network, sub.station)].status = "refused"
            return False
        if sub.pattern and protocol == V3 and "NSWILDCARD" not in self.capabilities:
            self._wildcards_accepted = True
        for selector in sub.selectors:
            reply = await conn.command(f"SELECT {v4_selector(selector) if protocol == V4 else selector}")
            if not reply.ok:
                logger.warning("%s: %s selector %s refused: %s", self.name, sub.label, selector, reply)
        for start in sub.starts:
            reply = await conn.command(start)
            if reply.ok:
                logger.info("%s: %s from %s", self.name, sub.label, start)
                break
            logger.debug("%s: %s: %s refused (%s)", self.name, sub.label, start, reply)
        else:
            logger.warning("%s: %s: no start command accepted; live data only", self.name, sub.label)
        if not sub.pattern:
            key = (sub.network, sub.station)
            self.stations[key].status = "subscribed"
            self._subscribed.add(key)
        return True

    # ------------------------------------------------------------------------------ packets
    async def _on_packet(self, packet: Packet) -> None:
        record, seq = packet.payload, packet.seq
        assert seq is not None
        self.stats.bytes += len(record)
        if self.accept is not None:
            key = _packet_station(packet)
            if key is not None and not self.accept(*key):
                self.stats.other_shard += 1
                return
        now = time.time()
        try:
            trace = decode_record(record)
        except RecordError as exc:
            key = _packet_station(packet)
            state = self.stations.get(key) if key else None
            if state is not None:
                state.last_seq, state.seq_protocol, state.last_start_ns = seq, self.protocol, None
                state.last_arrival, state.errors = now, state.errors + 1
                self._trail(state, seq)
            self.reject(exc, f"{key[0]}_{key[1]} seq {seq}" if key else f"seq {seq}")
            return
        key = (trace.stats.network, trace.stats.station) if trace else _packet_station(packet)
        if key is None or self.selectors_for(key) is None:
            self.stats.skipped += 1
            return
        state = self._station(key)
        state.last_seq, state.seq_protocol, state.last_arrival, state.status = (
            seq,
            self.protocol,
            now,
            "streaming",
        )
        start_ns = state.last_start_ns = trace.stats.starttime.ns if trace is not None else None
        state.seeded = False
        if trace is None or not self._is_selected(key, trace):
            self.stats.skipped += 1
            self._trail(state, seq, start_ns)
            return
        end = trace_end_ns(trace)
        trace_id = trace.id
        guard = state.guard.get(trace_id)
        if guard is not None:
            if end <= guard:
                self.stats.duplicates += 1
                self._trail(state, seq, start_ns)
                return
            del state.guard[trace_id]
        if state.resume_check:
            self._check_resumed(key, state, trace)
        ends = state.channel_end_ns
        ends[trace_id] = max(end, ends.get(trace_id, end))
        state.last_end_ns = max(end, state.last_end_ns or end)
        state.records += 1
        state.bytes += len(record)
        await self.deliver(trace)
        self._trail(state, seq, start_ns, end, trace_id)  # after: the picker has it

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

    # ---------------------------------------------------------------------------- positions
    def seed(self, key: StationKey, position: dict[str, Any]) -> bool:
        """Resume a station from a kept position (call before ``start``): by ``DATA seq+1``, by its
        channels' time when the server no longer holds the sequence (see the module docstring); a record
        already delivered is dropped by the duplicates guard. False when no selector asks for the station."""
        if self.selectors_for(key) is None or position.get("seq") is None:
            return False
        state = self._station(key)
        channels = {trace_id: int(end) for trace_id, end in position.get("channels", {}).items()}
        state.last_seq, state.seq_protocol = int(position["seq"]), str(position.get("protocol") or V3)
        state.last_start_ns = position.get("start_ns")
        state.channel_end_ns, state.resume_check = dict(channels), dict(channels)
        state.last_end_ns = max(channels.values(), default=None)
        state.kept = {"seq": state.last_seq, "protocol": state.seq_protocol, "start_ns": state.last_start_ns,
                      "channels": channels}  # fmt: skip
        state.seeded = True
        return True

    def _ringserver_floor(self) -> StationState | None:
        """ringserver positions a connection once, at the newest packet its stations ask for: stations
        resuming from older kept positions would lose the packets in between. They all ask for the oldest
        kept position instead (what others already had is dropped by the duplicates guard)."""
        seeded = [s for s in self.stations.values() if s.seeded and self._resumable(s)]
        return min(seeded, key=lambda s: s.last_seq or 0) if len(seeded) > 1 else None

    def positions(self, final_ns: Callable[[str], float]) -> dict[StationKey, dict[str, Any]]:
        """Per station, the position up to which every record's data are final: the newest record such
        that it and every record before it end by ``final_ns(trace id)`` (or delivered nothing). A station
        with no such record yet keeps its seeded position, if any. Needs ``track_positions``."""
        out = {}
        for key, state in self.stations.items():
            trail, newest = state.trail, None
            channels = dict(state.kept["channels"]) if state.kept is not None else {}
            while trail:
                seq, protocol, start, end, trace_id = trail[0]
                if trace_id is not None and end is not None and end > final_ns(trace_id):
                    break
                newest = trail.popleft()
                if trace_id is not None and end is not None:
                    channels[trace_id] = max(end, channels.get(trace_id, end))
            if newest is not None:
                seq, protocol, start = newest[:3]
                state.kept = {"seq": seq, "protocol": protocol, "start_ns": start, "channels": channels}
            if state.kept is not None:
                out[key] = state.kept
        return out

    def _trail(self, state: StationState, seq: int, start: int | None = None, end: int | None = None,
               trace_id: str | None = None) -> None:  # fmt: skip
        if self.track_positions:
            state.trail.append((seq, self.protocol or V3, start, end, trace_id))

    def _check_resumed(self, key: StationKey, state: StationState, trace: Trace) -> None:
        """The first record of a seeded channel: data missing since the kept position is a gap (the
        position fell out of the server's ring), counted and logged."""
        kept_end = state.resume_check.pop(trace.id, None)
        if kept_end is None:
            return
        start = trace.stats.starttime.ns
        if start - kept_end > 1.5 * NS_PER_S / max(float(trace.stats.sampling_rate), 1e-9):
            state.resume_gaps += 1
            self.resume_gaps += 1
            logger.warning(
                "%s: %s_%s: %s resumed at %s, not at its kept position %s: the server no longer held "
                "%.1f s of it (a gap)", self.name, *key, trace.id, UTCDateTime(ns=start),
                UTCDateTime(ns=kept_end), (start - kept_end) / NS_PER_S,
            )  # fmt: skip

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
            protocol=self.protocol,
            capabilities=sorted(self.capabilities),
            wildcards=self.wildcards,
            refusals=dict(self.refusals),
            resubscriptions=self.resubscriptions,
            resume_gaps=self.resume_gaps,
            stations={f"{n}_{s}": st.as_dict() for (n, s), st in sorted(self.stations.items())},
        )
        return state


def _iso(ns: int) -> str:
    """``str(UTCDateTime(ns=ns))`` (to the microsecond, ``Z``) without building one: every station's state
    has two."""
    rounded = round(ns, -3)
    dt = _EPOCH + timedelta(seconds=rounded // NS_PER_S, microseconds=rounded % NS_PER_S // 1000)
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}."
        f"{dt.microsecond:06d}Z"
    )


def _packet_station(packet: Packet) -> StationKey | None:
    """``(network, station)`` of a packet from its SeedLink 4 header, else from the raw record."""
    network, sep, station = packet.station_id.partition("_")
    if sep and station:
        return network.upper(), station.upper()
    return record_source_id(packet.payload)


def _raise_if_cancelling() -> None:
    """Re-raise a stop that arrived as a read timed out: Python 3.11's ``asyncio.timeout`` can turn the
    cancellation into the TimeoutError a session error handler catches, and the loop would go on forever."""
    task = asyncio.current_task()
    if task is not None and hasattr(task, "cancelling") and task.cancelling():
        raise asyncio.CancelledError
