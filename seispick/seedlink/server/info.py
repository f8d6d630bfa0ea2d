"""INFO documents: SeedLink 3.1 XML (sent in miniSEED log records) and SeedLink 4.0 JSON (one packet).

The JSON follows the schema of the SeedLink 4.0 specification (Appendix B): ``software`` and
``organization`` always; ``capability``, ``format``, ``station`` (with ``stream`` for STREAMS) per item;
``error`` with ``code`` and ``message`` for a refused request.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any
from xml.etree import ElementTree

from seispick.seedlink.packet_v4 import station_id
from seispick.seedlink.protocol import (
    StreamPattern,
    format_info_time,
    format_iso_time,
    format_v3_seq,
    stream_id,
)
from seispick.seedlink.server.ring import Replay, StationBuffer

PROTOCOLS = ("3.1", "4.0")  # what the replay server can speak; 3.1 always
V3_FLAGS = "CAP EXTREPLY NSWILDCARD BATCH"
ORGANIZATION = "seispick replay server"
V3_CAPABILITIES = (
    "dialup",
    "multistation",
    "window-extraction",
    "info:id",
    "info:capabilities",
    "info:stations",
    "info:streams",
    "info:all",
)
V4_CAPABILITIES = ("TIME", "SEQWILDCARD")
V4_ITEMS = ("ID", "FORMATS", "CAPABILITIES", "STATIONS", "STREAMS")
V4_FORMATS = {
    "2": {"mimetype": "application/vnd.fdsn.mseed", "subformat": {"D": "data"}},
    "3": {"mimetype": "application/vnd.fdsn.mseed3", "subformat": {"D": "data"}},
    "J": {"mimetype": "application/json", "subformat": {"I": "seedlink-info", "E": "seedlink-error"}},
}

V4_FILTERS = {"native": "data in its native format (miniSEED 2)", "3": "data converted to miniSEED 3"}


def server_id(protocols: tuple[str, ...] = PROTOCOLS) -> str:
    """``SeedLink vX.Y (seispick)``, X.Y the highest protocol version offered (SeedLink 4.0, HELLO)."""
    return f"SeedLink v{max(protocols)} (seispick)"


def hello_line(protocols: tuple[str, ...] = PROTOCOLS) -> str:
    """HELLO's first line: server ID, one ``SLPROTO:X.Y`` flag per version offered, 3.1 capability flags."""
    flags = " ".join(f"SLPROTO:{version}" for version in sorted(protocols, reverse=True))
    return f"{server_id(protocols)} :: {flags} {V3_FLAGS}"


def hello_lines(protocols: tuple[str, ...] = PROTOCOLS) -> bytes:
    """The two-line HELLO answer (server ID with capability flags, organisation)."""
    return f"{hello_line(protocols)}\r\n{ORGANIZATION}\r\n".encode()


# ------------------------------------------------------------------------------------- SeedLink 3.1
def info_xml(
    replay: Replay, started_ns: int, level: str, protocols: tuple[str, ...] = PROTOCOLS
) -> str | None:
    """INFO XML for ``level`` (ID, CAPABILITIES, STATIONS, STREAMS, ALL); None for unsupported levels."""
    root = ElementTree.Element(
        "seedlink",
        software=server_id(protocols),
        organization=ORGANIZATION,
        started=format_info_time(started_ns),
    )
    if level == "CAPABILITIES":
        for name in V3_CAPABILITIES:
            ElementTree.SubElement(root, "capability", name=name)
    elif level in ("STATIONS", "STREAMS", "ALL"):
        for buffer in replay.buffers.values():
            _station_xml(root, buffer, replay, streams=level != "STATIONS")
    elif level != "ID":
        return None
    return '<?xml version="1.0"?>\n' + ElementTree.tostring(root, encoding="unicode")


def _station_xml(root: ElementTree.Element, buffer: StationBuffer, replay: Replay, streams: bool) -> None:
    first, last = (buffer.packets[0].seq, buffer.packets[-1].seq) if buffer.packets else (0, 0)
    station = ElementTree.SubElement(
        root, "station", name=buffer.station, network=buffer.network, description=ORGANIZATION,
        begin_seq=format_v3_seq(first), end_seq=format_v3_seq(last), stream_check="enabled",
    )  # fmt: skip
    if not streams:
        return
    for location, channel, begin, end in stream_spans(buffer, replay):
        ElementTree.SubElement(
            station, "stream", location=location, seedname=channel, type="D",
            begin_time=format_info_time(begin), end_time=format_info_time(end),
            begin_recno="0", end_recno="0", gap_check="disabled", gap_treshold="0",
        )  # fmt: skip


def stream_spans(buffer: StationBuffer, replay: Replay) -> list[tuple[str, str, int, int]]:
    """``(location, channel, begin_ns, end_ns)`` of the buffered data of each stream of a station."""
    spans: dict[tuple[str, str], list[int]] = {}
    for packet in buffer.packets:
        span = spans.setdefault((packet.location, packet.channel), [packet.start_ns, packet.end_ns])
        span[0], span[1] = min(span[0], packet.start_ns), max(span[1], packet.end_ns)
    start = replay.t0_ns + replay.shift_ns()
    return [(loc, cha, *spans.get((loc, cha), (start, start))) for loc, cha in sorted(buffer.streams)]


# ------------------------------------------------------------------------------------- SeedLink 4.0
def info_json(replay: Replay, started_ns: int, args: list[str]) -> tuple[dict[str, Any], bool]:
    """The INFO document for ``INFO item [station_pattern [stream_pattern[.format]]]`` and whether it
    is an error document."""
    doc: dict[str, Any] = {"software": hello_line(), "organization": ORGANIZATION}
    item = args[0].upper() if args else ""
    if not args or len(args) > 3 or item not in V4_ITEMS:
        message = (
            f"INFO item must be one of {', '.join(V4_ITEMS)}" if len(args) <= 3 else "too many arguments"
        )
        doc["error"] = {"code": "ARGUMENTS", "message": message}
        return doc, True
    if item == "ID":
        doc["server_start"] = format_iso_time(started_ns)
    elif item == "CAPABILITIES":
        doc["capability"] = [f"SLPROTO:{version}" for version in PROTOCOLS] + list(V4_CAPABILITIES)
    elif item == "FORMATS":
        doc["format"] = V4_FORMATS
        doc["filter"] = V4_FILTERS
    else:
        try:
            streams = StreamPattern.parse(args[2]) if len(args) == 3 else None
        except ValueError as exc:
            doc["error"] = {"code": "ARGUMENTS", "message": str(exc)}
            return doc, True
        pattern = args[1].upper() if len(args) >= 2 else "*"
        doc["format"] = V4_FORMATS
        doc["station"] = [
            _station_json(buffer, replay, item == "STREAMS", streams)
            for buffer in replay.buffers.values()
            if fnmatchcase(station_id(buffer.network, buffer.station).upper(), pattern)
        ]
    return doc, False


def _station_json(
    buffer: StationBuffer, replay: Replay, streams: bool, pattern: StreamPattern | None
) -> dict[str, Any]:
    if buffer.packets:
        first, end = buffer.packets[0].number, buffer.packets[-1].number + 1
    else:
        first = end = replay.released + 1
    station: dict[str, Any] = {
        "id": station_id(buffer.network, buffer.station),
        "description": ORGANIZATION,
        "start_seq": first,
        "end_seq": end,
        "backfill": 0,
    }
    if streams:
        station["stream"] = [
            {
                "id": stream_id(loc, cha),
                "format": "2",
                "subformat": "D",
                "origin": "native",
                "start_time": format_iso_time(begin),
                "end_time": format_iso_time(finish),
            }  # fmt: skip
            for loc, cha, begin, finish in stream_spans(buffer, replay)
            if pattern is None or pattern.matches(loc, cha)
        ]
    return station
