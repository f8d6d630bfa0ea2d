"""SeedLink 3.1 as libslink, ObsPy and SeisComP clients speak it.

Replies: ``OK\\r\\n``; refusals ``ERROR\\r\\n``, or ``ERROR\\r<CODE> <text>\\r\\n`` once the client
asked for ``CAPABILITIES EXTREPLY`` (the form ringserver sends and libslink parses); none in BATCH mode
except for unknown commands. Data packets: ``SL`` + 6 hex digits of the station's sequence + a 512-byte
record; INFO: XML in miniSEED log records behind ``SLINFO *`` / ``SLINFO  ``. A STATION that matches
no station of the archive is refused alone; the client's other stations stream. Like ringserver,
``DATA n`` starts *with* packet n (clients send last + 1) and the uni-station DATA/FETCH/TIME starts
streaming without an OK.
"""

from __future__ import annotations

import logging
import re

from seispick.miniseed.pack import text_records
from seispick.seedlink.packet_v4 import station_id
from seispick.seedlink.protocol import V3_INFO_LAST, V3_INFO_MORE, Selector, parse_seedlink_time
from seispick.seedlink.server.dialect import Action, Dialect, Handler
from seispick.seedlink.server.info import ORGANIZATION, info_xml
from seispick.seedlink.server.requests import CommandError, StationRequest, argument
from seispick.seedlink.server.ring import Packet, StationBuffer

logger = logging.getLogger(__name__)

_CODE_CHARS = re.compile(r"^[A-Za-z0-9?*_]{1,10}$")
_HEX_SEQ = re.compile(r"^(0[xX])?[0-9A-Fa-f]{1,6}$")  # ObsPy sends hex() output: "0x1b"


class V3Dialect(Dialect):
    """SeedLink 3.1 commands, replies, packet framing and XML INFO."""

    version = "3.1"

    def commands(self) -> dict[str, Handler]:
        return {
            "CAT": self._cat,
            "CAPABILITIES": self._capabilities,
            "BATCH": self._batch,
            "STATION": self._station,
            "SELECT": self._select,
            "DATA": self._data,
            "FETCH": lambda args: self._data(args, dialup=True),
            "TIME": self._time,
        }

    # ------------------------------------------------------------------------------------ replies
    def ok(self) -> None:
        if not self.state.batch:
            self.send(b"OK\r\n")

    def refuse(self, error: CommandError, unknown: bool = False) -> None:
        if self.state.batch and not unknown:
            return
        if self.state.extreply:
            self.send(f"ERROR\r{error.code} {error}\r\n".encode("ascii", "replace"))
        else:
            self.send(b"ERROR\r\n")

    def frame(self, buffer: StationBuffer, packet: Packet, filter: str = "") -> bytes:
        return packet.wire

    def info(self, args: list[str]) -> None:
        if len(args) != 1:
            raise CommandError("ARGUMENTS", "INFO requires one level")
        level = args[0].upper()
        started, protocols = self.server.started_ns, self.server.protocols
        xml, channel = info_xml(self.replay, started, level, protocols), "INF"
        if xml is None:
            logger.debug("unsupported INFO level %s", level)
            xml, channel = info_xml(self.replay, started, "ID", protocols), "ERR"
        assert xml is not None
        records = text_records(xml, channel=channel)
        for number, record in enumerate(records, start=1):
            self.send((V3_INFO_LAST if number == len(records) else V3_INFO_MORE) + record)

    # ----------------------------------------------------------------------------------- commands
    def _cat(self, args: list[str]) -> Action:
        lines = [f"{net:<2} {sta:<5}  {ORGANIZATION}\r\n" for net, sta in self.replay.buffers]
        self.send("".join(lines).encode("ascii", "replace") + b"END")
        return None

    def _capabilities(self, args: list[str]) -> Action:
        if "EXTREPLY" in (a.upper() for a in args):
            self.state.extreply = True
        self.ok()
        return None

    def _batch(self, args: list[str]) -> Action:
        self.send(b"OK\r\n")
        self.state.batch = True
        return None

    def _station(self, args: list[str]) -> Action:
        self.state.begun = True
        # a refused STATION stays in the list, matching nothing, so its SELECT/DATA (batch clients send
        # them regardless) do not land on the previous station
        request = StationRequest(refused=True)
        self.state.requests.append(request)
        if not 1 <= len(args) <= 2 or not all(_CODE_CHARS.match(a) for a in args):
            raise CommandError("ARGUMENTS", "STATION requires a station and optionally a network code")
        network = args[1].upper() if len(args) == 2 else "*"
        request.pattern = station_id(network, args[0].upper())
        if not self.replay.stations_matching(request.pattern):
            raise CommandError("ARGUMENTS", f"no station matches {' '.join(args)}")
        request.refused = False
        self.ok()
        return None

    def _select(self, args: list[str]) -> Action:
        self.state.begun = True
        target = self.state.select_target()
        parsed = [argument(Selector.parse, a) for a in args]
        if parsed:
            target.extend(parsed)
        else:
            target.clear()
        self.ok()
        return None

    def _data(self, args: list[str], dialup: bool = False) -> Action:
        if len(args) > 2 or (args and not _HEX_SEQ.match(args[0])):
            raise CommandError("ARGUMENTS", "usage: DATA|FETCH [seq_hex [begin_time]]")
        seq = int(args[0], 16) if args else None
        begin = argument(parse_seedlink_time, args[1]) if len(args) == 2 else None
        return self._apply(StationRequest(seq=seq, begin_ns=begin, dialup=dialup))

    def _time(self, args: list[str]) -> Action:
        if not 1 <= len(args) <= 2:
            raise CommandError("ARGUMENTS", "usage: TIME begin_time [end_time]")
        begin = argument(parse_seedlink_time, args[0])
        end = argument(parse_seedlink_time, args[1]) if len(args) == 2 else None
        if end is not None and end <= begin:
            raise CommandError("ARGUMENTS", "TIME end must be after begin")
        return self._apply(StationRequest(begin_ns=begin, end_ns=end))

    def _apply(self, start: StationRequest) -> Action:
        """Attach a DATA/FETCH/TIME start to the current station, or start uni-station streaming."""
        current = self.state.current()
        if current is None:
            start.selectors = self.state.selectors
            self.state.uni = start
            return "stream"
        current.set_start(start)
        self.ok()
        return None
