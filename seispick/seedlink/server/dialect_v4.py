"""SeedLink 4.0 (FDSN specification; as libslink 4 and ringserver 4 speak it).

Replies: ``OK\\r\\n``; refusals ``ERROR <CODE> <text>\\r\\n``. ``STATION NET_STA`` takes a station-ID
pattern and is accepted even when nothing matches yet (the specification lets a pattern cover stations
added later, and libslink abandons the whole handshake on any refused command), so a client listing a
station the archive lacks still gets all the others. ``SELECT`` takes one or more stream-ID patterns
(``00_H_H_Z``, ``*_H_H_?``, ``!*_L_*``, ``.2D`` format patterns, ``:native`` or ``:3`` filter: miniSEED 3
payloads converted by libmseed). ``DATA [seq|ALL
[start [end]]]`` with decimal sequences and ISO times; ``END`` streams in real time, ``ENDFETCH`` in
dial-up mode. Packets: the ``SE`` header of :mod:`seispick.seedlink.packet_v4` with the server-wide release
number as sequence (so ``STATION *`` + ``DATA seq`` resumes too: SEQWILDCARD) and the station ID
``NET_STA``; INFO: one JSON packet (format ``J``, subformat ``I`` or ``E``).
"""

from __future__ import annotations

import json
import logging
import re

from seispick.miniseed.mseed3 import to_mseed3
from seispick.seedlink import packet_v4 as v4
from seispick.seedlink.protocol import SEQ_MODULUS_V4, StreamPattern, parse_seedlink_time
from seispick.seedlink.server.dialect import Action, Dialect, Handler
from seispick.seedlink.server.info import info_json
from seispick.seedlink.server.requests import CommandError, StationRequest, argument
from seispick.seedlink.server.ring import Packet, StationBuffer

logger = logging.getLogger(__name__)

_STATION_PATTERN = re.compile(r"^[A-Za-z0-9_?*\-]{1,64}$")
_FILTERS = ("", "native", "3")
_REMOVED = ("CAT", "BATCH", "CAPABILITIES", "FETCH", "TIME")


class V4Dialect(Dialect):
    """SeedLink 4.0 commands, replies, packet framing and JSON INFO."""

    version = "4.0"

    def commands(self) -> dict[str, Handler]:
        removed = {verb: self._removed for verb in _REMOVED}
        return {
            **removed,
            "STATION": self._station,
            "SELECT": self._select,
            "DATA": self._data,
            "AUTH": self._auth,
        }

    # ------------------------------------------------------------------------------------ replies
    def refuse(self, error: CommandError, unknown: bool = False) -> None:
        self.send(f"ERROR {error.code} {error}\r\n".encode("utf-8", "replace"))

    def frame(self, buffer: StationBuffer, packet: Packet, filter: str = "") -> bytes:
        station = v4.station_id(buffer.network, buffer.station)
        if filter == "3":
            payload = to_mseed3(packet.record)
            return v4.pack_header(packet.number, station, len(payload), v4.FORMAT_MSEED3) + payload
        return v4.pack_header(packet.number, station, len(packet.record)) + packet.record

    def info(self, args: list[str]) -> None:
        doc, error = info_json(self.replay, self.server.started_ns, args)
        payload = json.dumps(doc, separators=(",", ":")).encode()
        subformat = v4.SUBFORMAT_ERROR if error else v4.SUBFORMAT_INFO
        self.send(v4.pack_packet(v4.INFO_SEQUENCE, "", payload, v4.FORMAT_JSON, subformat))

    # ----------------------------------------------------------------------------------- commands
    def _removed(self, args: list[str]) -> Action:
        raise CommandError(
            "UNSUPPORTED", "command removed in SeedLink 4 (CAT, BATCH, CAPABILITIES, FETCH, TIME)"
        )

    def _auth(self, args: list[str]) -> Action:
        raise CommandError("UNSUPPORTED", "authentication is not supported (no restricted data)")

    def _station(self, args: list[str]) -> Action:
        self.state.begun = True
        request = StationRequest(refused=True)  # until accepted: its SELECT/DATA are ignored
        self.state.requests.append(request)
        if len(args) != 1 or not _STATION_PATTERN.match(args[0]):
            raise CommandError("ARGUMENTS", "STATION requires one station ID pattern (NET_STA)")
        request.pattern, request.refused = args[0].upper(), False
        if not request.stations(self.replay):
            logger.info("STATION %s matches no station of the archive (accepted, streams nothing)", args[0])
        self.ok()
        return None

    def _select(self, args: list[str]) -> Action:
        self.state.begun = True
        if not args:
            raise CommandError("ARGUMENTS", "empty SELECT is not allowed in v4")
        parsed = [argument(StreamPattern.parse, a) for a in args]
        for pattern in parsed:
            if pattern.filter not in _FILTERS:
                raise CommandError("ARGUMENTS", f"filter {pattern.filter!r} not supported (native or 3)")
        self.state.select_target().extend(parsed)
        self.ok()
        return None

    def _data(self, args: list[str]) -> Action:
        self.state.begun = True
        current = self.state.current()
        if current is None:
            raise CommandError("UNEXPECTED", "DATA applies to the stations of a previous STATION")
        if len(args) > 3:
            raise CommandError("ARGUMENTS", "usage: DATA [seq|ALL [start_time [end_time]]]")
        start = StationRequest()
        if args and args[0].upper() == "ALL":
            start.all_data = True
        elif args:
            if not args[0].isdigit() or int(args[0]) >= SEQ_MODULUS_V4:
                raise CommandError("ARGUMENTS", f"invalid sequence number {args[0][:30]!r}")
            start.number = int(args[0])
        start.begin_ns = argument(parse_seedlink_time, args[1]) if len(args) >= 2 else None
        start.end_ns = argument(parse_seedlink_time, args[2]) if len(args) == 3 else None
        if start.begin_ns is not None and start.end_ns is not None and start.end_ns <= start.begin_ns:
            raise CommandError("ARGUMENTS", "end time must be after start time")
        current.set_start(start)
        self.ok()
        return None
