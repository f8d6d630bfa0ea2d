"""What a client negotiated, and where its stream starts in each station buffer.

Start rules (SeedLink 3.1 as SeisComP documents it, SeedLink 4.0 specification ``DATA``):

* a sequence number that is still buffered starts at that packet;
* a sequence number at or past the next packet to be released *waits for that packet* (a caught-up
  client resuming with ``DATA last+1`` gets nothing twice); far-future numbers mean "next packet";
* a sequence number that fell out of the buffer (or a renumbered server) falls back to the begin time,
  else to the oldest packet;
* a begin time only filters out older packets (those ending at or before it); it never moves the
  start back before a given sequence.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TypeVar

from seispick.seedlink.packet_v4 import station_id
from seispick.seedlink.protocol import Selector, StreamPattern, selection_matches
from seispick.seedlink.server.ring import Packet, Replay, StationBuffer

logger = logging.getLogger(__name__)

AnySelector = Selector | StreamPattern
T = TypeVar("T")


class CommandError(Exception):
    """A refused command; ``code`` is the SeedLink error code (ARGUMENTS, UNSUPPORTED, UNEXPECTED...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def argument(parse: Callable[[str], T], text: str) -> T:
    """``parse(text)`` for a command argument (selector, time); its ValueError becomes an ARGUMENTS refusal
    in the same words."""
    try:
        return parse(text)
    except ValueError as exc:
        raise CommandError("ARGUMENTS", str(exc)) from exc


@dataclass
class StationRequest:
    """One STATION request (or the whole connection in uni-station / all-station mode)."""

    pattern: str = "*"  # station-ID pattern over "NET_STA", upper case, * and ? wildcards
    selectors: list[AnySelector] = field(default_factory=list)
    seq: int | None = None  # SeedLink 3 sequence (24 bits) to start at
    number: int | None = None  # SeedLink 4 sequence to start at
    all_data: bool = False  # SeedLink 4 "DATA ALL"
    begin_ns: int | None = None
    end_ns: int | None = None
    dialup: bool = False
    refused: bool = False  # a refused STATION: its SELECT and DATA are ignored, it matches nothing

    def matches(self, network: str, station: str) -> bool:
        return not self.refused and fnmatchcase(station_id(network, station).upper(), self.pattern)

    def stations(self, replay: Replay) -> list[tuple[str, str]]:
        """The replay's stations this request matches (none when refused)."""
        return [] if self.refused else replay.stations_matching(self.pattern)

    def set_start(self, start: StationRequest) -> None:
        """Take the start (sequence, times, mode) of a DATA/FETCH/TIME command."""
        self.seq, self.number, self.all_data = start.seq, start.number, start.all_data
        self.begin_ns, self.end_ns, self.dialup = start.begin_ns, start.end_ns, start.dialup


class Subscription:
    """One station's data flow to one client: selection, read position, time filter and window end."""

    def __init__(
        self,
        buffer: StationBuffer,
        selectors: Sequence[AnySelector],
        cursor: int,
        end_ns: int | None,
        begin_ns: int | None = None,
        min_number: int = 0,
    ) -> None:
        self.buffer = buffer
        self.selectors = list(selectors)
        self.cursor = cursor
        self.end_ns = end_ns
        self.begin_ns = begin_ns
        self.min_number = min_number
        self._selected: dict[tuple[str, str], tuple[bool, str]] = {}

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
            if packet.number < self.min_number:
                continue
            if self.begin_ns is not None and packet.end_ns <= self.begin_ns:
                continue
            if self.end_ns is not None and packet.start_ns > self.end_ns:
                continue
            if self._is_selected(packet):
                yield packet

    def caught_up(self) -> bool:
        return self.cursor >= self.buffer.end

    def filter_of(self, packet: Packet) -> str:
        """The SeedLink 4 filter for a selected packet's stream: the first matching one given, else ""."""
        return self._selection(packet)[1]

    def _is_selected(self, packet: Packet) -> bool:
        return self._selection(packet)[0]

    def _selection(self, packet: Packet) -> tuple[bool, str]:
        key = (packet.location, packet.channel)
        if key not in self._selected:
            chosen = next((s.filter for s in self.selectors if getattr(s, "filter", "") and not s.negate
                           and s.matches(*key)), "")  # fmt: skip
            self._selected[key] = (selection_matches(self.selectors, *key), chosen)
        return self._selected[key]


def start_position(buffer: StationBuffer, request: StationRequest, replay: Replay) -> tuple[int, int]:
    """``(cursor, min_number)`` for a client starting on ``buffer`` as ``request`` asks (module rules)."""
    if request.seq is not None:
        index = buffer.index_of_seq(request.seq)
        if index is not None:
            return index, 0
        ahead = buffer.seq_ahead(request.seq)
        if ahead is not None and ahead <= buffer.capacity:
            return buffer.end + ahead, 0  # not released yet: wait for it
        if ahead is not None:
            return buffer.end, 0  # too far ahead to be ours: next packet
        return _by_time(buffer, request.begin_ns, buffer.base), 0
    if request.number is not None:
        newest = replay.released
        if request.number > newest:  # not released yet: wait for it, unless absurdly far ahead
            return (
                (buffer.end, request.number)
                if request.number - newest <= len(replay.records)
                else (buffer.end, 0)
            )
        if buffer.packets and request.number >= buffer.first_number():
            return buffer.index_of_number(request.number), 0
        return _by_time(buffer, request.begin_ns, buffer.base), 0
    if request.all_data:
        return buffer.base, 0
    return _by_time(buffer, request.begin_ns, buffer.end), 0


def subscribe(
    buffer: StationBuffer, request: StationRequest, selectors: Sequence[AnySelector], replay: Replay
) -> Subscription:
    """The subscription of a client starting on ``buffer`` as ``request`` asks."""
    cursor, min_number = start_position(buffer, request, replay)
    return Subscription(buffer, selectors, cursor, request.end_ns, request.begin_ns, min_number)


def _by_time(buffer: StationBuffer, begin_ns: int | None, default: int) -> int:
    return default if begin_ns is None else buffer.index_after(begin_ns)
