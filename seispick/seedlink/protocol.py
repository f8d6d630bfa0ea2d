"""The SeedLink protocol as both ends speak it: stream selectors, time formats, sequence numbers, the 3.1
packet signatures.

SeedLink 3.1 selectors are ``[!][LL]CCC[.T]`` (:class:`Selector`); SeedLink 4.0 selectors are patterns
over stream IDs ``LOC_B_S_SS`` with an optional format pattern (:class:`StreamPattern`). Both have
``negate`` and ``matches(location, channel)``, so :func:`selection_matches` applies either kind. The 4.0
packet header is :mod:`seispick.seedlink.packet_v4`.

Shared by the SeedLink client (:mod:`seispick.seedlink.client`) and the replay server
(:mod:`seispick.seedlink.server`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from fnmatch import fnmatchcase

from seispick.miniseed.constants import NS_PER_S, TICK_NS

SEQ_MODULUS = 1 << 24  # SeedLink 3 sequence numbers are 6 hex digits
SEQ_MODULUS_V4 = 1 << 64  # SeedLink 4 sequence numbers are unsigned 64-bit
V3_SIGNATURE = b"SL"  # a SeedLink 3 data packet: b"SL" + 6 hex digits of sequence + a miniSEED record
V3_HEADER_LEN = 8  # signature and sequence ahead of the record
V3_INFO_MORE = b"SLINFO *"  # an INFO record that more INFO records follow
V3_INFO_LAST = b"SLINFO  "  # the last INFO record of an answer
_SELECT_CHARS = re.compile(r"^[A-Za-z0-9?*\-]+$")
_TIME = re.compile(
    r"^(\d{4})[,/-](\d{1,2})[,/-](\d{1,2})"
    r"(?:[,T: ](\d{1,2})(?:[,:](\d{1,2})(?:[,:](\d{1,2})(?:\.(\d{1,9}))?)?)?)?Z?$"
)
_V4_PATTERN_CHARS = re.compile(r"^[A-Za-z0-9_?*]+$")
_V4_FORMAT_CHARS = re.compile(r"^[A-Za-z0-9?*]{1,2}$")


def parse_seedlink_time(text: str) -> int:
    """Parse a SeedLink time to epoch ns: 3.1 ``YYYY,MM,DD,hh,mm,ss[.ffff]`` or 4.0 ISO
    ``YYYY-MM-DDThh:mm:ss[.ffffff]Z`` (trailing fields optional)."""
    match = _TIME.match(text.strip())
    if not match:
        raise ValueError(f"bad SeedLink time {text!r}")
    year, month, day, hour, minute, second = (int(g) if g else 0 for g in match.groups()[:6])
    fraction = match.group(7) or ""
    moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
    return int(moment.timestamp()) * NS_PER_S + int(fraction.ljust(9, "0") or 0)


def _utc_second(ns: int) -> datetime:
    """The UTC second that epoch ns fall in."""
    return datetime.fromtimestamp(ns // NS_PER_S, timezone.utc)


def format_iso_time(ns: int) -> str:
    """Format epoch ns as the SeedLink 4 ``YYYY-MM-DDThh:mm:ss.ffffffZ`` (microseconds)."""
    return _utc_second(ns).strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % NS_PER_S // 1000:06d}Z"


def format_v3_time(ns: int) -> str:
    """Format epoch ns as a SeedLink 3 ``YYYY,MM,DD,hh,mm,ss``, floored to whole seconds (what every server
    accepts)."""
    return _utc_second(ns).strftime("%Y,%m,%d,%H,%M,%S")


def format_info_time(ns: int) -> str:
    """Format epoch ns as the ``YYYY/MM/DD hh:mm:ss.ffff`` used in INFO XML (BTIME ticks of 100 us)."""
    return _utc_second(ns).strftime("%Y/%m/%d %H:%M:%S") + f".{ns % NS_PER_S // TICK_NS:04d}"


def format_v3_seq(seq: int) -> str:
    """A SeedLink 3 sequence number as its 6 upper-case hex digits (``00001A``)."""
    return f"{seq:06X}"


def pack_v3_header(seq: int) -> bytes:
    """The 8 bytes ahead of a SeedLink 3 data record: ``SL`` and the sequence in 6 hex digits."""
    return V3_SIGNATURE + format_v3_seq(seq).encode("ascii")


@dataclass(frozen=True)
class Selector:
    """A SeedLink 3 stream selector ``[!][LL]CCC[.T]`` with ``?``/``*`` wildcards (``--`` = blank location)."""

    location: str
    channel: str
    kind: str = "?"
    negate: bool = False

    @classmethod
    def parse(cls, text: str) -> Selector:
        """Parse a selector; raises ``ValueError`` for anything a SeedLink server would refuse."""
        negate = text.startswith("!")
        body, _, kind = text[negate:].partition(".")
        if kind and (len(kind) != 1 or kind.upper() not in "DECOTL?"):
            raise ValueError(f"bad selector type in {text!r}")
        if not body or not _SELECT_CHARS.match(body):
            raise ValueError(f"bad selector {text!r}")
        if len(body) == 5:
            location, channel = body[:2].replace("-", " "), body[2:]
        elif len(body) <= 3 or "*" in body:
            location, channel = "*", body
        else:
            raise ValueError(f"selector {text!r} is neither CCC nor LLCCC")
        return cls(location.upper(), channel.upper(), (kind or "?").upper(), negate)

    def matches(self, location: str, channel: str, kind: str = "D") -> bool:
        """Whether a stream (blank location allowed) matches, ignoring negation."""
        return (
            fnmatchcase(location.ljust(2), self.location)
            and fnmatchcase(channel, self.channel)
            and fnmatchcase(kind, self.kind)
        )


def selection_matches(selectors: Iterable[Selector | StreamPattern], location: str, channel: str) -> bool:
    """Apply a selector list: any positive selector must match (if there are any), no negative may."""
    selectors = list(selectors)
    positive = [s for s in selectors if not s.negate]
    if positive and not any(s.matches(location, channel) for s in positive):
        return False
    return not any(s.matches(location, channel) for s in selectors if s.negate)


def stream_id(location: str, channel: str) -> str:
    """SeedLink 4 stream ID of a SEED location and channel: ``LOC_B_S_SS`` (``00_H_H_Z``, ``_B_H_Z``)."""
    code = "_".join(channel) if len(channel) == 3 else channel
    return f"{location.strip()}_{code}"


@dataclass(frozen=True)
class StreamPattern:
    """A SeedLink 4 selector ``[!]stream_pattern[.format_pattern][:filter]`` with ``*``/``?`` wildcards.

    The stream pattern matches the whole stream ID (``LOC_B_S_SS``); the format pattern matches the
    start of the two-character format and subformat code (``2`` matches ``2D``). A format pattern of one
    subformat letter (``.D``, as libslink writes v3 types it converts) matches the subformat.
    """

    pattern: str
    format: str = "*"
    filter: str = ""
    negate: bool = False

    @classmethod
    def parse(cls, text: str) -> StreamPattern:
        """Parse one pattern; raises ``ValueError`` for anything a SeedLink 4 server refuses."""
        negate = text.startswith("!")
        body, _, filt = text[negate:].partition(":")
        if filt and negate:
            raise ValueError(f"a filter cannot be used with '!' in {text!r}")
        pattern, _, fmt = body.partition(".")
        if not pattern or not _V4_PATTERN_CHARS.match(pattern):
            raise ValueError(f"bad stream pattern {text!r}")
        if fmt and not _V4_FORMAT_CHARS.match(fmt):
            raise ValueError(f"bad format pattern in {text!r}")
        return cls(pattern.upper(), (fmt or "*").upper(), filt.lower(), negate)

    def matches(self, location: str, channel: str, kind: str = "D", fmt: str = "2") -> bool:
        """Whether a stream matches, ignoring negation."""
        if not fnmatchcase(stream_id(location, channel).upper(), self.pattern):
            return False
        if len(self.format) == 1 and self.format.isalpha():
            return self.format == kind
        return fnmatchcase(fmt + kind, self.format + "*")
