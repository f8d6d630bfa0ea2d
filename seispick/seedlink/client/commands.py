"""The handshake commands of a SeedLink client, written for protocol 3.1 or 4.0.

* ``STATION STA NET`` (3.1) or ``STATION NET_STA`` (4.0); wildcards only where the server takes them.
* ``SELECT``: the configured selectors are SeedLink 3 ``[!][LL]CCC[.T]``; for 4.0 they become stream-ID
  patterns ``LL_B_S_SS[.?T]`` as libslink converts them (``BH?`` -> ``*_B_H_?``, ``--HHZ`` -> ``_H_H_Z``).
* Start points: 3.1 ``DATA hex-seq [YYYY,MM,DD,hh,mm,ss]`` and ``TIME``; 4.0 ``DATA decimal-seq [ISO time]``
  and ``DATA ALL ISO-time`` (4.0 has no TIME).
"""

from __future__ import annotations

from seispick.seedlink.packet_v4 import station_id
from seispick.seedlink.protocol import (
    SEQ_MODULUS,
    SEQ_MODULUS_V4,
    Selector,
    format_iso_time,
    format_v3_seq,
    format_v3_time,
)

__all__ = [
    "V3",
    "V4",
    "begin_commands",
    "format_seq",
    "resume_commands",
    "seedlink_time",
    "sequence_modulus",
    "station_command",
    "v4_selector",
]

V3, V4 = "3.1", "4.0"


seedlink_time = format_v3_time  # the SeedLink 3 time of the start commands (name kept for callers)


def sequence_modulus(protocol: str) -> int:
    """Sequence numbers wrap at 2**24 in SeedLink 3 (6 hex digits) and 2**64 in SeedLink 4."""
    return SEQ_MODULUS if protocol == V3 else SEQ_MODULUS_V4


def format_seq(seq: int, protocol: str) -> str:
    """A sequence number as the protocol writes it: 6 hex digits (3.1) or decimal (4.0)."""
    return str(seq) if protocol == V4 else format_v3_seq(seq)


def station_command(network: str, station: str, protocol: str) -> str:
    return f"STATION {station_id(network, station)}" if protocol == V4 else f"STATION {station} {network}"


def v4_selector(text: str) -> str:
    """A SeedLink 3 selector as a SeedLink 4 stream-ID pattern (see the module docstring)."""
    selector = Selector.parse(text)
    location = selector.location.strip()  # "*" when absent, "" for a blank one ("--")
    channel = selector.channel
    code = "_".join(channel) if len(channel) == 3 or "*" not in channel else channel
    kind = "" if selector.kind == "?" else f".?{selector.kind}"
    return f"{'!' if selector.negate else ''}{location}_{code}{kind}"


def _time(ns: int, protocol: str) -> str:
    return format_iso_time(ns) if protocol == V4 else format_v3_time(ns)


def begin_commands(protocol: str, begin_ns: int | None) -> list[str]:
    """Start commands of a station not seen before: from ``begin_ns`` if given, else at the live end."""
    if begin_ns is None:
        return ["DATA"]
    if protocol == V4:
        return [f"DATA ALL {format_iso_time(begin_ns)}", "DATA"]
    return [f"TIME {format_v3_time(begin_ns)}", "DATA"]


def resume_commands(protocol: str, next_seq: int, at_ns: int | None, fallback_ns: int | None) -> list[str]:
    """Start commands resuming at packet ``next_seq``, first accepted wins.

    ``at_ns`` goes with the sequence (``DATA seq time``: servers start at ``time`` when the packet is gone);
    ``fallback_ns`` is a time-only start for servers that refuse both forms.
    """
    seq = format_seq(next_seq, protocol)
    commands = [f"DATA {seq} {_time(at_ns, protocol)}"] if at_ns is not None else []
    commands.append(f"DATA {seq}")
    if fallback_ns is not None:
        commands.append(
            f"DATA ALL {format_iso_time(fallback_ns)}"
            if protocol == V4
            else f"TIME {format_v3_time(fallback_ns)}"
        )
    return commands
