"""One SeedLink TCP connection as a client sees it: commands and replies, HELLO, the protocol switch, packet
framing and the station listings (CAT, INFO STATIONS) of servers that refuse, ignore or half-answer them.

Framing: SeedLink 3 sends ``SL`` + 6 hex digits of sequence + one miniSEED record (512 bytes by the book;
ringserver passes longer records through unchanged, so the length is read from the record) and INFO answers
as ``SLINFO *``/``SLINFO  `` + 512-byte text records. SeedLink 4 sends ``SE`` + format + subformat + payload
length (u32 LE) + sequence (u64 LE) + station ID length (u8) + station ID, then the payload; INFO answers are
format ``J`` (subformat ``I``, or ``E`` for an error). ``END`` ends a dial-up transfer.

Listings: SeisComP's seedlink answers ``CAT`` with ``NET STA description`` lines and a bare ``END``;
ringserver 4.5 answers ``CAT command not implemented`` and nothing else; others answer ``ERROR`` or nothing.
A refusal is reported (with the server's words), never fatal; after an unanswered command the connection is
re-synchronised with ``HELLO`` so that a late answer cannot be mistaken for what follows.

Bounds (:class:`Limits`, from the source's settings): a declared record longer than ``max_record_bytes`` is
refused before it is read; a CAT or INFO answer must end within ``listing_timeout_s`` and ``max_listing_bytes``
(read and parsed in linear time, yielding to the event loop), else the listing is refused and the connection
abandoned (its next command fails, so the session reconnects and skips that listing); the handshake, from
connecting to ``END``, must end within ``handshake_timeout_s``. Every refusal names its setting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import struct
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from xml.etree import ElementTree

from seispick.miniseed.constants import RECLEN
from seispick.miniseed.decode import read_mseed_bytes, record_length
from seispick.seedlink import packet_v4 as v4
from seispick.seedlink.protocol import V3_SIGNATURE

logger = logging.getLogger(__name__)
T = TypeVar("T")

__all__ = [
    "Limits",
    "LimitExceeded",
    "Listing",
    "Packet",
    "Reply",
    "SeedLinkConnection",
    "SeedLinkError",
    "ServerHello",
    "StationKey",
]

StationKey = tuple[str, str]
_YIELD_EVERY = 64  # INFO records or blank lines handled between two yields to the event loop
_RECORDS = (v4.FORMAT_MSEED2.encode(), v4.FORMAT_MSEED3.encode())  # payload formats of data packets

if sys.version_info >= (3, 11):

    async def _within(awaitable: Awaitable[T], timeout: float) -> T:
        """``awaitable`` or TimeoutError after ``timeout`` s. ``asyncio.timeout``, not ``wait_for``: no task per
        read (about 30 us less per packet) and a cancel is never lost when the read had just completed (3.11's
        ``wait_for`` swallows it, so a client behind its data could not be stopped)."""
        async with asyncio.timeout(timeout):
            return await awaitable

else:  # pragma: no cover - Python 3.10
    _within = asyncio.wait_for

_CAT_LINE = re.compile(r"^[A-Z0-9]{1,8}\s+[A-Z0-9]{1,8}(\s|$)")
_IDENT = re.compile(rb"^\s*seedlink v", re.IGNORECASE)
_SOFTWARE = re.compile(r"\(([^)]*)\)")


class SeedLinkError(Exception):
    """The server refused the session, sent something unexpected or went silent."""


class LimitExceeded(SeedLinkError):
    """The server went past one of the client's :class:`Limits`; ``setting`` names it."""

    def __init__(self, message: str, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


@dataclass(frozen=True)
class Limits:
    """What a broken or hostile server cannot push a client past (the source's settings of the same names)."""

    max_record_bytes: int = 1 << 20
    max_listing_bytes: int = 8 << 20
    listing_timeout_s: float = 60.0
    handshake_timeout_s: float = 300.0  # 0: none


@dataclass(frozen=True)
class ServerHello:
    """The two lines a server answers to ``HELLO``."""

    ident: str  # first line up to "::", e.g. "SeedLink v4.0 (RingServer/4.5.3)"
    organisation: str
    capabilities: frozenset[str]  # upper-case tokens after "::"

    @property
    def protocols(self) -> tuple[str, ...]:
        """Advertised ``SLPROTO:`` versions, e.g. ``("4.0", "3.1")``."""
        return tuple(c.split(":", 1)[1] for c in sorted(self.capabilities) if c.startswith("SLPROTO:"))

    @property
    def software(self) -> str:
        """The implementation in parentheses, e.g. ``RingServer/4.5.3`` (empty if none)."""
        match = _SOFTWARE.search(self.ident)
        return match.group(1) if match else ""

    def speaks(self, version: str) -> bool:
        """Whether ``SLPROTO:<major>.x`` is advertised for the major version of ``version``."""
        major = version.split(".", 1)[0]
        return any(p.split(".", 1)[0] == major for p in self.protocols)


@dataclass(frozen=True)
class Reply:
    """An ``OK`` or ``ERROR [code [description]]`` answer (SeedLink 3 EXTREPLY separates with ``\\r``)."""

    ok: bool
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Packet:
    """One framed unit of the data phase.

    ``kind``: ``data`` (a record), ``info`` (more INFO follows), ``info_last``, ``info_error`` (a SeedLink 4
    error document), ``end`` (dial-up transfer done) or ``error`` (an ``ERROR`` line, in ``payload``).
    """

    kind: str
    seq: int | None = None
    payload: bytes = b""
    format: str = "2"  # "2" miniSEED 2, "3" miniSEED 3, "J" JSON, ...
    subformat: str = "D"
    station_id: str = ""  # SeedLink 4 header's NET_STA


@dataclass(frozen=True)
class Listing:
    """Stations a server listed, or why it did not (``stations`` is None then)."""

    stations: list[StationKey] | None
    reason: str = ""


def parse_reply(line: str) -> Reply | None:
    """``Reply`` for an ``OK``/``ERROR`` line, None for anything else."""
    text = line.replace("\r", " ").strip()
    if text == "OK" or text.startswith("OK "):
        return Reply(True, text)
    if text.startswith("ERROR"):
        return Reply(False, text)
    return None


def payload_length(head: bytes) -> int:
    """Length of the miniSEED record starting with ``head`` (at least 64 bytes of it), from blockette 1000
    or the miniSEED 3 header; 512 (the SeedLink 3 size) when the header does not say."""
    try:
        length = record_length(head)
    except struct.error:
        length = None
    return length or RECLEN


def parse_cat(text: str) -> Listing:
    """Parse a ``CAT`` answer (without its final ``END``): one ``NET STA [description]`` per line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines and not _CAT_LINE.match(lines[0]):
        return Listing(None, f"CAT answered {lines[0][:80]!r}")
    keys = [(p[0].upper(), p[1].upper()) for p in (line.split() for line in lines) if len(p) >= 2]
    return Listing(keys)


def stations_from_xml(text: str) -> list[StationKey]:
    """``(network, station)`` of every ``<station>`` in an INFO STATIONS document (SeedLink 3)."""
    root = ElementTree.fromstring(text.strip("\x00 \r\n"))
    return [(s.get("network", "").upper(), s.get("name", "").upper()) for s in root.iter("station")]


def stations_from_json(document: dict[str, Any]) -> list[StationKey]:
    """``(network, station)`` of every station in an INFO STATIONS document (SeedLink 4, ``id`` NET_STA)."""
    keys = []
    for station in document.get("station", []) or []:
        network, _, code = str(station.get("id", "")).partition("_")
        if code:
            keys.append((network.upper(), code.upper()))
    return keys


class SeedLinkConnection:
    """Commands, replies and packets on one SeedLink TCP connection (protocol 3 until :meth:`use_v4`)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        timeout: float,
        limits: Limits | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout
        self.limits = limits or Limits()
        self.v4 = False
        self.abandoned: str | None = None  # why the connection can no longer be used (a listing ran over)
        self._deadlines: dict[str, tuple[float, str]] = {}  # setting -> (loop time, refusal)
        if self.limits.handshake_timeout_s > 0:
            self._deadline(
                "handshake_timeout_s",
                self.limits.handshake_timeout_s,
                f"handshake not done within handshake_timeout_s ({self.limits.handshake_timeout_s:g} s)",
            )

    @classmethod
    async def open(
        cls, host: str, port: int, timeout: float, limits: Limits | None = None
    ) -> SeedLinkConnection:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        return cls(reader, writer, timeout, limits)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)

    # ---------------------------------------------------------------------------- deadlines
    def _deadline(self, setting: str, seconds: float, refusal: str) -> None:
        """From now on, reads end with :class:`LimitExceeded` (``refusal``) after ``seconds``."""
        self._deadlines[setting] = (asyncio.get_running_loop().time() + seconds, refusal)

    async def _wait(self, awaitable: Awaitable[T], timeout: float | None = None) -> T:
        """``awaitable`` within ``timeout`` (TimeoutError: the server is silent) and within every deadline
        (:class:`LimitExceeded` naming the first one to run out)."""
        limit = timeout or self.timeout
        if self._deadlines:
            setting, (when, refusal) = min(self._deadlines.items(), key=lambda item: item[1][0])
            left = when - asyncio.get_running_loop().time()
            if left <= 0:  # checked here too: a server that never pauses never lets a read time out
                if hasattr(awaitable, "close"):
                    awaitable.close()  # not started: no "never awaited" warning
                raise LimitExceeded(refusal, setting)
            if left < limit:
                try:
                    return await _within(awaitable, left)
                except asyncio.TimeoutError:
                    raise LimitExceeded(refusal, setting) from None
        return await _within(awaitable, limit)

    # ------------------------------------------------------------------------------- lines
    async def _read(self, size: int, timeout: float | None = None) -> bytes:
        if len(getattr(self.reader, "_buffer", b"")) >= size:  # already received: no timer to arm and cancel
            return await self.reader.readexactly(size)
        return await self._wait(self.reader.readexactly(size), timeout)

    async def send(self, command: str) -> None:
        if self.abandoned is not None:
            raise SeedLinkError(f"connection abandoned: {self.abandoned}")
        logger.debug("-> %s", command)
        self.writer.write(command.encode("ascii") + b"\r\n")
        await asyncio.wait_for(self.writer.drain(), self.timeout)
        if command == "END":  # the data phase: the handshake is done
            self._deadlines.pop("handshake_timeout_s", None)

    async def line(self, timeout: float | None = None) -> str:
        """Next non-empty reply line (``\\r`` inside an EXTREPLY kept)."""
        blank = 0
        while True:
            raw = await self._wait(self.reader.readuntil(b"\n"), timeout)
            text = raw.decode("ascii", "replace").rstrip("\r\n").strip(" ")
            if text.strip():
                return text
            blank += 1
            if blank % _YIELD_EVERY == 0:  # a flood of empty lines must not hold the event loop
                await asyncio.sleep(0)

    async def command(self, command: str) -> Reply:
        """Send a command that answers ``OK`` or ``ERROR...``; anything else is a protocol error."""
        await self.send(command)
        text = await self.line()
        logger.debug("<- %s", text)
        reply = parse_reply(text)
        if reply is None:
            raise SeedLinkError(f"unexpected reply to {command!r}: {text[:80]!r}")
        return reply

    async def hello(self) -> ServerHello:
        """Send ``HELLO``; the identification line and its capability tokens."""
        await self.send("HELLO")
        ident, organisation = await self.line(), await self.line()
        if not _IDENT.match(ident.encode("ascii", "replace")):
            raise SeedLinkError(f"not a SeedLink server: {ident[:80]!r}")
        head, _, caps = ident.partition("::")
        return ServerHello(head.strip(), organisation.strip(), frozenset(c.upper() for c in caps.split()))

    async def resync(self) -> None:
        """Discard whatever a late answer still sends: ``HELLO`` and skip up to its two reply lines (all within
        ``timeout_s``: a server that keeps sending is abandoned)."""
        await self.send("HELLO")
        self._deadline("timeout_s", self.timeout, f"no answer to HELLO within timeout_s ({self.timeout:g} s)")
        try:
            skipped = 0
            while True:
                try:
                    raw = await self._wait(self.reader.readuntil(b"\n"))
                except asyncio.LimitOverrunError as exc:  # binary INFO records without a newline
                    await self._read(exc.consumed)
                    continue
                if _IDENT.match(raw):
                    await self.line()  # the organisation line
                    return
                skipped += 1
                if skipped % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
        finally:
            self._deadlines.pop("timeout_s", None)

    # ----------------------------------------------------------------------------- packets
    async def packet(self, timeout: float | None = None) -> Packet:
        """Next packet; ``timeout`` applies to its first bytes only (a packet is never read half)."""
        if self.v4:
            buffered = getattr(self.reader, "_buffer", b"")
            if len(buffered) >= v4.HEADER_LEN and buffered[:2] == v4.SIGNATURE and buffered[2:3] in _RECORDS:
                # a whole data packet already received (the usual case under load): one read, not four
                length = int.from_bytes(buffered[4:8], "little")
                whole = v4.HEADER_LEN + buffered[v4.HEADER_LEN - 1] + length
                if len(buffered) >= whole and length <= self.limits.max_record_bytes:
                    data = await self.reader.readexactly(whole)
                    header = v4.parse_header(data)
                    return Packet(
                        "data", header.sequence, data[header.length :], header.format, header.subformat,
                        header.station_id,
                    )  # fmt: skip
        head = await self._read(2, timeout)
        if head == v4.SIGNATURE and self.v4:
            return await self._packet_v4(head)
        if head == V3_SIGNATURE:
            return await self._packet_v3()
        if head == b"EN":
            rest = await self._read(1)
            if rest == b"D":
                return Packet("end")
            head += rest
        if head == b"ER":
            text = "ER" + await self.line()
            return Packet("error", payload=text.encode())
        raise SeedLinkError(f"lost packet framing at {head!r}")

    async def _packet_v3(self) -> Packet:
        tag = await self._read(6)
        if tag.startswith(b"INFO"):
            record = await self._read(RECLEN)
            return Packet("info" if tag[5:6] == b"*" else "info_last", payload=record)
        try:
            seq = int(tag, 16)
        except ValueError:
            raise SeedLinkError(f"bad sequence number in {b'SL' + tag!r}") from None
        head = await self._read(64)
        length = max(payload_length(head), 64)
        self._check_record(length, f"SeedLink 3 packet {seq:06X}")
        record = head + (await self._read(length - 64) if length > 64 else b"")
        return Packet("data", seq, record, v4.FORMAT_MSEED3 if head[:3] == b"MS\x03" else v4.FORMAT_MSEED2)

    async def _packet_v4(self, signature: bytes) -> Packet:
        fixed = signature + await self._read(v4.HEADER_LEN - 2)
        header = v4.parse_header(fixed + await self._read(v4.station_id_length(fixed)))
        if header.format == v4.FORMAT_JSON:
            if header.payload_length > self.limits.max_listing_bytes:
                raise LimitExceeded(
                    f"SeedLink 4 INFO packet of {header.payload_length} bytes is over max_listing_bytes "
                    f"({self.limits.max_listing_bytes})",
                    "max_listing_bytes",
                )
        else:
            self._check_record(header.payload_length, f"SeedLink 4 packet {header.sequence}")
        payload = await self._read(header.payload_length) if header.payload_length else b""
        if header.format == v4.FORMAT_JSON:
            kind = "info_error" if header.subformat == v4.SUBFORMAT_ERROR else "info_last"
            return Packet(kind, None, payload, header.format, header.subformat)
        return Packet("data", header.sequence, payload, header.format, header.subformat, header.station_id)

    def _check_record(self, length: int, what: str) -> None:
        if length > self.limits.max_record_bytes:
            raise LimitExceeded(
                f"{what} declares a {length}-byte record, over max_record_bytes ({self.limits.max_record_bytes})",
                "max_record_bytes",
            )

    # ---------------------------------------------------------------------------- listings
    async def _listing(self, command: str, read: Callable[[], Awaitable[Listing]]) -> Listing:
        """Send ``command`` and ``read`` its answer within ``listing_timeout_s``; a listing that runs over a
        limit is refused and the connection abandoned (the rest of the answer may still be coming)."""
        await self.send(command)
        limits = self.limits
        self._deadline(
            "listing_timeout_s",
            limits.listing_timeout_s,
            f"{command} answer not complete within listing_timeout_s ({limits.listing_timeout_s:g} s)",
        )
        try:
            return await read()
        except LimitExceeded as exc:
            if exc.setting not in ("listing_timeout_s", "max_listing_bytes"):
                raise
            self.abandoned = str(exc)
            return Listing(None, str(exc))
        finally:
            self._deadlines.pop("listing_timeout_s", None)

    async def catalogue(self) -> Listing:
        """Stations listed by ``CAT`` (SeedLink 3), or the reason there is no list."""
        return await self._listing("CAT", self._read_catalogue)

    async def _read_catalogue(self) -> Listing:
        buffer = bytearray()
        checked = False  # whether the first line was looked at (once: the answer may be long)
        limit = self.limits.max_listing_bytes
        while True:
            try:
                chunk = await self._wait(self.reader.read(65536))
            except asyncio.TimeoutError:
                if buffer.strip():
                    first = bytes(buffer).decode("ascii", "replace").strip().splitlines()[0]
                    reason = f"CAT answered {first[:80]!r} and no END"
                else:
                    reason = f"CAT unanswered for {self.timeout:g} s"
                await self.resync()
                return Listing(None, reason)
            if not chunk:
                raise ConnectionError("server closed the connection during CAT")
            if len(buffer) + len(chunk) > limit:
                raise LimitExceeded(f"CAT answer over max_listing_bytes ({limit})", "max_listing_bytes")
            buffer += chunk
            tail = bytes(buffer[-8:]).rstrip()
            if tail.endswith(b"END"):
                stripped = bytes(buffer).rstrip()
                if stripped == b"END" or stripped[-4:-3] in (b"\n", b"\r"):
                    return parse_cat(stripped[:-3].decode("ascii", "replace"))
            if not checked and b"\n" in chunk and b"\n" in buffer.lstrip():
                checked = True  # a first complete line that is no listing is a refusal: nothing more follows
                first = bytes(buffer).lstrip().split(b"\n", 1)[0].decode("ascii", "replace").strip()
                if first and not _CAT_LINE.match(first):
                    reply = parse_reply(first)
                    return Listing(None, f"CAT refused: {reply or first[:80]!r}")
            await asyncio.sleep(0)  # a server that floods must not hold the event loop

    async def info_stations(self) -> Listing:
        """Stations listed by ``INFO STATIONS`` (XML in SeedLink 3, JSON in 4), or why there is no list."""

        async def read() -> Listing:
            try:
                if self.v4:
                    return await self._info_json()
                return await self._info_xml()
            except asyncio.TimeoutError:
                await self.resync()
                return Listing(None, f"INFO STATIONS unanswered for {self.timeout:g} s")

        return await self._listing("INFO STATIONS", read)

    async def _info_xml(self) -> Listing:
        text, channels, kind, records = bytearray(), set(), "info", 0
        limit = self.limits.max_listing_bytes
        head = await self._read(2)
        if head == b"ER":
            return Listing(None, f"INFO STATIONS refused: {'ER' + await self.line()!r}")
        if head != V3_SIGNATURE:
            raise SeedLinkError(f"expected INFO packets, got {head!r}")
        while True:
            packet = await self._packet_v3()
            kind = packet.kind
            if not kind.startswith("info"):
                raise SeedLinkError(f"expected INFO packets, got {kind}")
            try:
                trace = read_mseed_bytes(packet.payload)[0]
            except Exception as exc:
                raise SeedLinkError(f"undecodable INFO packet: {exc}") from exc
            channels.add(trace.stats.channel)
            text += trace.data.tobytes()
            if len(text) > limit:
                raise LimitExceeded(
                    f"INFO STATIONS answer over max_listing_bytes ({limit})", "max_listing_bytes"
                )
            if kind == "info_last":
                break
            records += 1
            if records % _YIELD_EVERY == 0:
                await asyncio.sleep(0)  # a long answer must not hold the event loop
            if await self._read(2) != V3_SIGNATURE:
                raise SeedLinkError("lost framing inside INFO packets")
        if "ERR" in channels:
            return Listing(None, "INFO STATIONS refused (an ERR info document)")
        try:
            return Listing(stations_from_xml(bytes(text).decode("utf-8", "replace")))
        except ElementTree.ParseError as exc:
            raise SeedLinkError(f"bad INFO STATIONS XML: {exc}") from exc

    async def _info_json(self) -> Listing:
        packet = await self.packet()
        if packet.format != v4.FORMAT_JSON:
            raise SeedLinkError(f"expected an INFO packet, got format {packet.format!r}")
        try:
            document = json.loads(packet.payload.decode("utf-8", "replace"))
        except ValueError as exc:
            raise SeedLinkError(f"bad INFO STATIONS JSON: {exc}") from exc
        if packet.kind == "info_error":
            error = document.get("error", {}) if isinstance(document, dict) else {}
            return Listing(
                None, f"INFO STATIONS refused: {error.get('code', '')} {error.get('message', '')}".strip()
            )
        return Listing(stations_from_json(document))
