"""Fake SeedLink servers that answer byte for byte as two servers people run, for the client tests.

* :class:`FakeRingServer`: EarthScope ringserver 4.5.3 (``src/slclient.c``, ``src/ring.c``). One ring of
  packets numbered from 1 for every station; SeedLink 4.0 and 3.1; ``CAT`` answers ``CAT command not
  implemented`` and nothing else; wildcards in ``STATION`` in both protocols; a resume ``DATA seq time`` is
  taken by sequence only when ``time`` equals (to the second) the start of packet ``seq - 1``, else by time;
  the time search steps past a match that is the ring's very first packet; records of any length pass
  through SeedLink 3 unchanged.
* :class:`FakeSeisComP`: SeisComP's seedlink 3.3 (``apps/seedlink/iosystem.cc``, ``monitor.cc``). No
  capabilities in HELLO, whose second line is the default station's description; per-station sequences;
  ``STATION`` exact names only (``ERROR`` otherwise, and the following station commands too); ``CAT`` lines
  ``NET STA  description`` then a bare ``END``; ``DATA n time`` with window extraction, dropping packets
  that end before ``time``; ``CAPABILITIES`` and other unknown commands answer ``ERROR``.

Both keep every command received (``commands``) and can be given new packets while clients stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import struct
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from obspy import Trace

from seispick.miniseed.pack import text_records
from seispick.seedlink import packet_v4 as v4
from seispick.seedlink.protocol import parse_seedlink_time

NS_PER_S = 1_000_000_000
_B1000_OFFSET = 48


@dataclass(frozen=True)
class Record:
    """One miniSEED record and its stream and times."""

    network: str
    station: str
    location: str
    channel: str
    start_ns: int
    end_ns: int
    data: bytes

    @property
    def mseed3(self) -> bool:
        return self.data[:3] == b"MS\x03"


def trace_records(trace: Trace, reclen: int = 512, encoding: str = "STEIM2") -> list[Record]:
    """``trace`` written by ObsPy as ``reclen``-byte records, with the time span of each."""
    buffer = io.BytesIO()
    trace.write(buffer, format="MSEED", reclen=reclen, encoding=encoding, byteorder=">")
    raw = buffer.getvalue()
    stats, rate = trace.stats, float(trace.stats.sampling_rate)
    records, done = [], 0
    for offset in range(0, len(raw), reclen):
        data = raw[offset : offset + reclen]
        count = struct.unpack_from(">H", data, 30)[0]
        start = stats.starttime.ns + round(done * NS_PER_S / rate)
        done += count
        end = stats.starttime.ns + round(done * NS_PER_S / rate)
        records.append(Record(stats.network, stats.station, stats.location, stats.channel, start, end, data))
    return records


def mseed3_records(trace: Trace, reclen: int = 512) -> list[Record]:
    """``trace`` as miniSEED 3 records (pymseed), with the time span of each."""
    import numpy as np
    import pymseed

    stats, rate = trace.stats, float(trace.stats.sampling_rate)
    template = pymseed.MS3Record()
    template.reclen = reclen
    template.formatversion = 3
    template.sourceid = pymseed.nslc2sourceid(stats.network, stats.station, stats.location, stats.channel)
    template.starttime = stats.starttime.ns
    template.samprate = rate
    template.encoding = pymseed.DataEncoding.STEIM2
    records, done = [], 0
    for data in template.generate(np.asarray(trace.data, dtype=np.int32), "i"):
        parsed = pymseed.MS3Record.parse(data)
        start = stats.starttime.ns + round(done * NS_PER_S / rate)
        done += parsed.samplecnt
        end = stats.starttime.ns + round(done * NS_PER_S / rate)
        records.append(
            Record(stats.network, stats.station, stats.location, stats.channel, start, end, bytes(data))
        )
    return records


class FakeServer:
    """TCP plumbing: one session per connection, commands split on CR or LF, streaming polled."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.connections = 0
        self.port = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self.disconnect_clients()
        await self._server.wait_closed()

    async def disconnect_clients(self) -> int:
        writers = list(self._writers)
        for writer in writers:
            writer.transport.abort()
        return len(writers)

    def session(self, writer: asyncio.StreamWriter) -> Session:
        raise NotImplementedError

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        session = self.session(writer)
        streamer: asyncio.Task[None] | None = None
        pending = b""
        try:
            while chunk := await reader.read(4096):
                pending += chunk
                *lines, pending = re.split(rb"[\r\n]", pending)
                for raw in lines:
                    line = raw.decode("ascii", "replace").strip()
                    if not line:
                        continue
                    self.commands.append(line)
                    if session.command(line) == "close":
                        return
                    await writer.drain()
                    if session.streaming and streamer is None:
                        streamer = asyncio.create_task(session.stream())
        except ConnectionError:
            pass
        finally:
            if streamer is not None:
                streamer.cancel()
                await asyncio.gather(streamer, return_exceptions=True)
            self._writers.discard(writer)
            writer.close()


class Session:
    """One client connection of a fake server."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.streaming = False

    def send(self, data: bytes | str) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)

    def command(self, line: str) -> str | None:
        """Answer one command line; ``"close"`` ends the connection. INFO and BYE are taken in any state;
        other commands only while handshaking (both servers ignore them once streaming)."""
        argv = line.split()
        verb = argv[0].upper()
        if verb == "BYE":
            return "close"
        if verb == "INFO":
            self.info(argv)
        elif not self.streaming:
            self.handshake(verb, argv, line)
        return None

    def handshake(self, verb: str, argv: list[str], line: str) -> None:
        raise NotImplementedError

    def info(self, argv: list[str]) -> None:
        raise NotImplementedError

    def send_info_xml(self, xml: str, channel: str) -> None:
        """INFO XML as SeedLink 3 sends it: 512-byte text records, each ``SLINFO *`` but the last."""
        records = text_records(xml, channel)
        for number, record in enumerate(records, start=1):
            self.send((b"SLINFO  " if number == len(records) else b"SLINFO *") + record)

    async def stream(self) -> None:
        while True:
            sent = self.send_available()
            with contextlib.suppress(ConnectionError):
                await self.writer.drain()
            if not sent:
                await asyncio.sleep(0.01)

    def send_available(self) -> int:
        raise NotImplementedError


# ------------------------------------------------------------------------------------- ringserver
RINGSERVER_ID = "SeedLink v4.0 (RingServer/4.5.3) :: SLPROTO:4.0 SLPROTO:3.1 CAP WS:13"
_STAID_CHARS = re.compile(r"^[A-Za-z0-9?*_]+$")
_SELECT_CHARS = re.compile(r"^[A-Za-z0-9?*_\-!]+$")


@dataclass
class RingPacket:
    pktid: int
    record: Record

    @property
    def streamid(self) -> str:
        r = self.record
        channel = "_".join(r.channel) if len(r.channel) == 3 else r.channel
        suffix = "/MSEED3" if r.mseed3 else "/MSEED"
        return f"FDSN:{r.network}_{r.station}_{r.location}_{channel}{suffix}"


@dataclass
class ReqStation:
    selectors: list[str] = field(default_factory=list)
    packetid: int | None = None
    datastart: int | None = None
    starttime: int | None = None


class FakeRingServer(FakeServer):
    """ringserver 4.5.3 as SeedLink clients see it (see the module docstring)."""

    def __init__(self, records: list[Record], serverid: str = "Ring Server") -> None:
        super().__init__()
        self.serverid = serverid
        self.ring: list[RingPacket] = []
        self.add(records)

    def add(self, records: list[Record]) -> None:
        """Write records into the ring (new packet IDs), as a data feed would while clients stream."""
        for record in records:
            self.ring.append(RingPacket(len(self.ring) + 1, record))

    def session(self, writer: asyncio.StreamWriter) -> RingSession:
        return RingSession(self, writer)


def _glob_regex(text: str) -> str:
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)


class RingSession(Session):
    def __init__(self, server: FakeRingServer, writer: asyncio.StreamWriter) -> None:
        super().__init__(writer)
        self.server = server
        self.proto = 3
        self.extreply = False
        self.in_station = False
        self.reqstaid = ""
        self.stations: dict[str, ReqStation] = {}
        self.global_selectors: list[str] = []
        self.startid: int | None = None
        self.starttime: int | None = None
        self.match: re.Pattern[str] | None = None
        self.reject: re.Pattern[str] | None = None
        self.position = -1  # index of the last packet read from the ring

    # ------------------------------------------------------------------------------- replies
    def reply(self, reply: str, code: str | None = None, text: str | None = None) -> None:
        """ringserver's SendReply: v4 ``ERROR CODE text``; v3 ``ERROR\\rCODE text`` with EXTREPLY."""
        if self.proto == 4:
            self.send(
                f"{reply} {code} {text}\r\n"
                if code and text
                else f"{reply} {code}\r\n"
                if code
                else f"{reply}\r\n"
            )
        elif self.extreply and code and text:
            self.send(f"{reply}\r{code} {text}\r\n")
        else:
            self.send(f"{reply}\r\n")

    def handshake(self, verb: str, argv: list[str], line: str) -> None:
        handler = getattr(self, f"cmd_{verb.lower()}", None)
        if handler is None or (verb == "TIME" and self.proto == 4):
            self.reply("ERROR", "UNSUPPORTED", f"Unrecognized command: {line[:50]}")
        else:
            handler(argv)

    def cmd_hello(self, argv: list[str]) -> None:
        self.send(f"{RINGSERVER_ID}\r\n{self.server.serverid}\r\n")

    def cmd_slproto(self, argv: list[str]) -> None:
        match = re.fullmatch(r"(\d+)\.(\d+)", argv[1]) if len(argv) == 2 else None
        major, minor = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
        if major == 3 or (major == 4 and minor == 0):
            self.send("OK\r\n")
            self.proto = major
        else:
            self.send("ERROR UNSUPPORTED unsupported protocol version\r\n")

    def cmd_useragent(self, argv: list[str]) -> None:
        self.reply("OK")

    def cmd_capabilities(self, argv: list[str]) -> None:
        self.extreply = self.extreply or any(a.upper() == "EXTREPLY" for a in argv[1:])
        self.reply("OK")

    def cmd_cat(self, argv: list[str]) -> None:
        self.send("CAT command not implemented\r\n")

    def cmd_station(self, argv: list[str]) -> None:
        if self.proto == 4:
            if len(argv) != 2:
                self.reply("ERROR", "ARGUMENTS", "STATION requires 1 argument")
                return
            staid = argv[1]
        else:
            if not 2 <= len(argv) <= 3:
                self.reply("ERROR", "ARGUMENTS", "STATION requires 1 or 2 arguments")
                return
            staid = f"{argv[2] if len(argv) == 3 else '*'}_{argv[1]}"
        if not _STAID_CHARS.match(staid):
            self.reply("ERROR", "ARGUMENTS", "Invalid characters in station ID")
            return
        self.stations.setdefault(staid, ReqStation())
        self.reqstaid, self.in_station = staid, True
        self.reply("OK")

    def cmd_select(self, argv: list[str]) -> None:
        if len(argv) < 2 or (self.proto == 3 and len(argv) > 2):
            text = (
                "empty SELECT is not allowed in v4"
                if self.proto == 4 and len(argv) < 2
                else "SELECT requires a single argument"
            )
            self.reply("ERROR", "ARGUMENTS", text)
            return
        patterns = []
        for token in argv[1:]:
            if self.proto == 4 and ":" in token:
                token = token[: token.rindex(":")]
            token = token.split(".")[0] if "." in token else token
            if self.proto == 3:
                negate, body = ("!", token[1:]) if token.startswith("!") else ("", token)
                if len(body) == 5:
                    token = f"{negate}{body[0]}{body[1]}_{body[2]}_{body[3]}_{body[4]}"
                elif len(body) == 3:
                    token = f"{negate}*_{body[0]}_{body[1]}_{body[2]}"
                else:
                    self.reply("ERROR", "ARGUMENTS", "Invalid selector pattern")
                    return
            if not _SELECT_CHARS.match(token):
                self.reply("ERROR", "ARGUMENTS", "Selector contains illegal characters")
                return
            patterns.append(token)
        self.reply("OK")
        target = self.stations[self.reqstaid].selectors if self.in_station else self.global_selectors
        target.extend(patterns)

    def _ring_id(self, text: str) -> int | None:
        if self.proto == 4:
            return int(text) if text.isdigit() else None
        try:
            seq = int(text, 16)
        except ValueError:
            return None
        latest = self.server.ring[-1].pktid if self.server.ring else 0
        return (latest & ~0xFFFFFF) | (seq & 0xFFFFFF) if latest else seq & 0xFFFFFF

    def cmd_data(self, argv: list[str]) -> None:
        if len(argv) > (4 if self.proto == 4 else 3):
            self.reply("ERROR", "ARGUMENTS", "Too many arguments for DATA")
            return
        startpacket: int | str | None = "next"
        if len(argv) >= 2:
            if self.proto == 4 and argv[1] == "ALL":
                startpacket = "earliest"
            else:
                startpacket = self._ring_id(argv[1])
                if startpacket is None:
                    self.reply("ERROR", "ARGUMENTS", "Invalid sequence number")
                    return
        starttime = None
        if len(argv) >= 3:
            try:
                starttime = parse_seedlink_time(argv[2])
            except ValueError:
                self.reply("ERROR", "ARGUMENTS", "Error parsing start time")
                return
        if isinstance(startpacket, int) and startpacket > 0:
            startpacket -= 1  # the ring is positioned at the last packet the client has
        if self.in_station:
            if len(argv) >= 2:
                station = self.stations[self.reqstaid]
                station.packetid = startpacket if isinstance(startpacket, int) else None
                station.datastart = station.starttime = starttime
            self.reply("OK")
            self.in_station = False
            return
        if not self.stations:
            self.startid = startpacket if isinstance(startpacket, int) else None
            self.starttime = starttime
        self.configure()

    def cmd_time(self, argv: list[str]) -> None:
        if not 2 <= len(argv) <= 3:
            self.reply("ERROR", "ARGUMENTS", "TIME command requires 1 or 2 arguments")
            return
        try:
            starttime = parse_seedlink_time(argv[1])
        except ValueError:
            self.reply("ERROR", "ARGUMENTS", "Error parsing start time")
            return
        if self.in_station:
            self.stations[self.reqstaid].starttime = starttime
            self.reply("OK")
            self.in_station = False
            return
        if not self.stations:
            self.starttime = starttime
        self.configure()

    def cmd_end(self, argv: list[str]) -> None:
        self.configure()

    def cmd_batch(self, argv: list[str]) -> None:
        self.reply("OK")

    # --------------------------------------------------------------------------- ring config
    def configure(self) -> None:
        """SLHandleCmd's STATE_RINGCONFIG: regexes, then position by sequence, else by time, else next."""
        match, reject = [], []
        ring = self.server.ring
        if not self.stations and self.global_selectors:
            self._to_regex(None, self.global_selectors, match, reject)
        newest = None
        starttime = None
        for staid, station in self.stations.items():
            self._to_regex(staid, station.selectors, match, reject)
            if station.starttime is not None:
                starttime = station.starttime if starttime is None else min(starttime, station.starttime)
            packet = next((p for p in ring if p.pktid == station.packetid), None)
            if packet is None:
                continue
            same_second = (
                station.datastart is None
                or station.datastart // NS_PER_S == packet.record.start_ns // NS_PER_S
            )
            if same_second and (newest is None or packet.pktid > newest):
                newest = packet.pktid
        if self.stations:
            self.startid = newest
            self.starttime = starttime
        self.match = re.compile("|".join(match)) if match else None
        self.reject = re.compile("|".join(reject)) if reject else None
        self.position = len(ring) - 1  # RINGID_NEXT unless positioned below
        if self.startid is not None:
            self.position = next(i for i, p in enumerate(ring) if p.pktid == self.startid)
        elif self.starttime is not None:
            self.position = self.ring_after(self.starttime)
        self.streaming = True

    def _to_regex(self, staid: str | None, selectors: list[str], match: list[str], reject: list[str]) -> None:
        station = _glob_regex(staid) if staid else ".*"
        matched = False

        def pattern(select: str | None) -> str:
            stream = _glob_regex(select.lstrip("-")) if select else ".*"
            return f"FDSN:{station}_{stream}/MSEED3?$"

        for selector in selectors:
            if selector.startswith("!"):
                if not matched and staid:
                    match.append(pattern(None))
                    matched = True
                reject.append(pattern(selector[1:]))
            else:
                match.append(pattern(selector))
                matched = True
        if not selectors:
            match.append(pattern(None))

    def selected(self, packet: RingPacket) -> bool:
        sid = packet.streamid
        if self.match is not None and not self.match.match(sid):
            return False
        return not (self.reject is not None and self.reject.match(sid))

    def ring_after(self, reftime: int) -> int:
        """RingAfter(whence=0): the position just before the first selected packet ending after ``reftime``;
        when that packet is the ring's first, the position is the packet itself, so it is never read."""
        ring = self.server.ring
        for index, packet in enumerate(ring):
            if packet.record.end_ns > reftime and self.selected(packet):
                return index - 1 if index > 0 else 0
        return len(ring) - 1

    def send_available(self) -> int:
        ring, sent = self.server.ring, 0
        while self.position + 1 < len(ring):
            self.position += 1
            packet = ring[self.position]
            if not self.selected(packet):
                continue
            record = packet.record
            if self.proto == 4:
                fmt = v4.FORMAT_MSEED3 if record.mseed3 else v4.FORMAT_MSEED2
                self.send(
                    v4.pack_packet(packet.pktid, f"{record.network}_{record.station}", record.data, fmt)
                )
            else:
                self.send(b"SL%06X" % (packet.pktid & 0xFFFFFF) + record.data)
            sent += 1
        return sent

    # ---------------------------------------------------------------------------------- INFO
    def _stations(self) -> list[tuple[str, str, int, int]]:
        seen: dict[tuple[str, str], list[int]] = {}
        for packet in self.server.ring:
            ids = seen.setdefault((packet.record.network, packet.record.station), [])
            ids.append(packet.pktid)
        return [(net, sta, ids[0], ids[-1]) for (net, sta), ids in sorted(seen.items())]

    def info(self, argv: list[str]) -> None:
        level = argv[1].upper() if len(argv) > 1 else ""
        software = RINGSERVER_ID
        if self.proto == 4:
            if level == "STATIONS":
                stations = [{"id": f"{n}_{s}", "description": "", "start_seq": a, "end_seq": b}
                            for n, s, a, b in self._stations()]  # fmt: skip
                doc = {"software": software, "organization": self.server.serverid, "station": stations}
                subformat = v4.SUBFORMAT_INFO
            elif level == "ID":
                doc, subformat = (
                    {"software": software, "organization": self.server.serverid},
                    v4.SUBFORMAT_INFO,
                )
            else:
                doc = {"error": {"code": "ARGUMENTS", "message": "Unrecognized INFO item"}}
                subformat = v4.SUBFORMAT_ERROR
            self.send(
                v4.pack_packet(v4.INFO_SEQUENCE, "", json.dumps(doc).encode(), v4.FORMAT_JSON, subformat)
            )
            return
        head = f'<?xml version="1.0"?>\n<seedlink software="{software}" organization="{self.server.serverid}" started="2026-01-01T00:00:00Z"'
        channel = "INF"
        if level == "STATIONS" and not self.streaming:
            body = "".join(f'<station name="{s}" network="{n}" description="" begin_seq="{a}" end_seq="{b}" stream_check="enabled"/>'
                           for n, s, a, b in self._stations())  # fmt: skip
            xml = f"{head}>{body}</seedlink>"
        elif level == "ID":
            xml = f"{head}/>"
        else:
            xml, channel = f"{head}/>", "ERR"
        self.send_info_xml(xml, channel)


# ------------------------------------------------------------------------------ SeisComP seedlink
SEISCOMP_ID = "SeedLink v3.3 (2024.020)"


class FakeSeisComP(FakeServer):
    """SeisComP's seedlink 3.3 as SeedLink clients see it (see the module docstring)."""

    def __init__(self, records: list[Record], window_extraction: bool = True, info: bool = True) -> None:
        super().__init__()
        self.window_extraction = window_extraction
        self.info = info
        self.buffers: dict[tuple[str, str], list[tuple[int, Record]]] = {}
        self.add(records)

    def add(self, records: list[Record]) -> None:
        for record in records:
            buffer = self.buffers.setdefault((record.network, record.station), [])
            buffer.append((len(buffer), record))  # sequences from 0, one series per station

    def description(self, key: tuple[str, str]) -> str:
        return f"Fake station {key[1]}"

    def session(self, writer: asyncio.StreamWriter) -> SeisComPSession:
        return SeisComPSession(self, writer)


@dataclass
class StationRequest:
    selectors: list[str] = field(default_factory=list)
    seq: int | None = None  # next sequence to send; None: live (the next packet stored)
    begin_ns: int | None = None


class SeisComPSession(Session):
    def __init__(self, server: FakeSeisComP, writer: asyncio.StreamWriter) -> None:
        super().__init__(writer)
        self.server = server
        self.requests: dict[tuple[str, str], StationRequest] = {}
        self.current: tuple[str, str] | None = None
        self.invalid = False
        self.cursors: dict[tuple[str, str], int] = {}

    def error(self) -> None:
        self.send("ERROR\r\n")

    def handshake(self, verb: str, argv: list[str], line: str) -> None:
        if verb == "END" and len(argv) == 1:
            self.start()
        elif verb == "STATION":
            self.station(argv)
        elif verb == "CAT" and len(argv) == 1:
            lines = "".join(
                f"{n:>2} {s:<5} {self.server.description((n, s))}\n" for n, s in sorted(self.server.buffers)
            )
            self.send(lines + "END" if lines else "")
        elif verb == "BATCH" and len(argv) == 1:
            self.send("OK\r\n")
        elif self.invalid:
            self.error()
        elif verb == "HELLO" and len(argv) == 1:
            default = next(iter(self.server.buffers))
            self.send(f"{SEISCOMP_ID}\r\n{self.server.description(default)}\r\n")
        elif verb == "SELECT" and self.current is not None and len(argv) <= 2:
            request = self.requests[self.current]
            if len(argv) == 1:
                request.selectors.clear()
            else:
                request.selectors.append(argv[1])
            self.send("OK\r\n")
        elif verb == "DATA" and self.current is not None:
            self.data(argv)
        elif verb == "TIME" and self.current is not None and self.server.window_extraction and len(argv) == 2:
            request = self.requests[self.current]
            request.begin_ns, request.seq = parse_seedlink_time(argv[1]), 0
            self.send("OK\r\n")
        else:
            self.error()

    def station(self, argv: list[str]) -> None:
        if len(argv) not in (2, 3):
            self.error()
            return
        key = (argv[2] if len(argv) == 3 else next(iter(self.server.buffers))[0], argv[1])
        if key not in self.server.buffers:  # "no such station"
            self.invalid = True
            self.error()
            return
        self.invalid = False
        self.requests.setdefault(key, StationRequest())
        self.current = key
        self.send("OK\r\n")

    def data(self, argv: list[str]) -> None:
        request = self.requests[self.current]  # type: ignore[index]
        buffer = self.server.buffers[self.current]  # type: ignore[index]
        if len(argv) == 1:
            request.seq = None
        elif len(argv) == 2:
            if argv[1].upper() == "ALL":
                request.seq = 0
            else:
                try:
                    wanted = int(argv[1], 16)
                except ValueError:
                    self.error()
                    return
                request.seq = self.resume_seq(buffer, wanted)
        elif len(argv) == 3 and self.server.window_extraction:
            try:
                wanted, begin = int(argv[1], 16), parse_seedlink_time(argv[2])
            except ValueError:
                self.error()
                return
            request.begin_ns = begin
            request.seq = self.resume_seq(buffer, wanted)
        else:
            self.error()
            return
        self.send("OK\r\n")

    @staticmethod
    def resume_seq(buffer: list[tuple[int, Record]], wanted: int) -> int:
        """find_packet: a buffered packet, or the next one to come (the client is up to date); anything
        else is "not found" and starts at the oldest."""
        if wanted == len(buffer) or any(seq == wanted for seq, _ in buffer):
            return wanted
        return 0

    def start(self) -> None:
        for key, request in self.requests.items():
            buffer = self.server.buffers[key]
            if request.seq is None:
                self.cursors[key] = len(buffer)
            else:
                self.cursors[key] = next(
                    (i for i, (seq, _) in enumerate(buffer) if seq >= request.seq), len(buffer)
                )
        self.streaming = True

    def wanted(self, request: StationRequest, record: Record) -> bool:
        if request.begin_ns is not None and record.end_ns < request.begin_ns:
            return False  # window: packets ending before the begin time are filtered out
        positive = [s for s in request.selectors if not s.startswith("!")]
        negative = [s[1:] for s in request.selectors if s.startswith("!")]

        def hit(selector: str) -> bool:
            body = selector.split(".")[0]
            location, channel = (body[:2], body[2:]) if len(body) == 5 else ("??", body)
            return fnmatchcase(record.location.ljust(2), location.replace("-", " ")) and fnmatchcase(
                record.channel, channel
            )

        return (not positive or any(hit(s) for s in positive)) and not any(hit(s) for s in negative)

    def send_available(self) -> int:
        sent = 0
        for key, request in self.requests.items():
            buffer = self.server.buffers[key]
            while self.cursors[key] < len(buffer):
                seq, record = buffer[self.cursors[key]]
                self.cursors[key] += 1
                if self.wanted(request, record):
                    self.send(b"SL%06X" % (seq & 0xFFFFFF) + record.data)
                    sent += 1
        return sent

    def info(self, argv: list[str]) -> None:
        level = argv[1].upper() if len(argv) == 2 else ""
        if not self.server.info:
            self.error()  # info level -1: INFO is an unknown command
            return
        head = f'<?xml version="1.0"?>\n<seedlink software="{SEISCOMP_ID}" organization="Fake" started="2026/01/01 00:00:00.0000"'
        channel = "INF"
        if level == "STATIONS":
            body = "".join(f'<station name="{s}" network="{n}" description="{self.server.description((n, s))}" begin_seq="000000" end_seq="{len(b):06X}"/>'
                           for (n, s), b in sorted(self.server.buffers.items()))  # fmt: skip
            xml = f"{head}>{body}</seedlink>"
        elif level in ("ID", "CAPABILITIES", "STREAMS"):
            xml = f"{head}/>"
        else:
            xml, channel = f"{head}/>", "ERR"
        self.send_info_xml(xml, channel)
