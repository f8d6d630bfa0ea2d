"""Resume semantics of the replay server: a sequence at or past the newest packet waits for it, a time
only filters older packets, and nothing is sent twice to a client that comes back (SeedLink 3.1 and 4.0).

The wire exchanges are libslink's: ``DATA <seq+1 hex> <time of last packet>`` (3.1, lastpkttime on) and
``DATA <seq+1 decimal>`` (4.0) for each station, then ``END``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from obspy import Stream, UTCDateTime

from seispick.miniseed.constants import NS_PER_S as S
from seispick.miniseed.pack import MseedRecord, load_records
from seispick.replay.server import ThreadedReplayServer
from seispick.seedlink import packet_v4 as v4
from seispick.seedlink.server.requests import StationRequest, Subscription, start_position, subscribe
from seispick.seedlink.server.ring import Replay
from tests.streams import write_station_archive
from tests.test_replay_libslink import Wire, libslink_accepts, v4_handshake

T0 = UTCDateTime(2024, 3, 1, 12, 0, 0)
DURATION_S = 60
STATIONS = {"STA1": "00", "STA2": ""}


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Stream]:
    folder = tmp_path_factory.mktemp("resume")
    return folder, write_station_archive(folder, T0, DURATION_S, STATIONS, seed=11, step=300)


# ------------------------------------------------------------------------------------- start rules
def one_second_replay(count: int) -> Replay:
    """``count`` one-second records of XX.STA1 released one per second of replay clock (speed 1)."""
    records = [MseedRecord("XX", "STA1", "", "HHZ", i * S, (i + 1) * S, bytes(512)) for i in range(count)]
    replay = Replay(records, speed=1.0, restamp=False, loop=False)
    replay.begin(0.0)
    return replay


def sequences(subscription: Subscription) -> list[int]:
    """SeedLink 3 sequences of the packets a subscription yields now."""
    return [packet.seq for packet in subscription.pending()]


def test_a_buffered_sequence_starts_there_and_a_time_only_filters() -> None:
    replay = one_second_replay(20)
    replay.release_due(10.0)  # packets 1..10 (ends 1..10 s)
    buffer = replay.buffers[("XX", "STA1")]
    assert start_position(buffer, StationRequest(seq=4), replay) == (3, 0)
    # packets ending at or before 6 s are older than the time: filtered out
    assert sequences(subscribe(buffer, StationRequest(seq=4, begin_ns=6 * S), [], replay)) == [7, 8, 9, 10]
    # an older time never moves the start back
    assert sequences(subscribe(buffer, StationRequest(seq=8, begin_ns=2 * S), [], replay)) == [8, 9, 10]


@pytest.mark.parametrize("ahead", [0, 3])
def test_a_sequence_not_yet_released_waits_for_that_packet(ahead: int) -> None:
    replay = one_second_replay(20)
    replay.release_due(10.0)
    buffer = replay.buffers[("XX", "STA1")]
    request = StationRequest(seq=11 + ahead, begin_ns=9 * S)  # libslink: last seq + 1, last start time
    sub = subscribe(buffer, request, [], replay)
    assert sequences(sub) == []  # caught up: nothing re-sent by time
    replay.release_due(16.0)
    assert sequences(sub) == list(range(11 + ahead, 17))


def test_a_sequence_that_fell_out_or_was_renumbered_falls_back_to_time() -> None:
    replay = one_second_replay(20)
    replay.release_due(10.0)
    buffer = replay.buffers[("XX", "STA1")]
    behind = (buffer.next_seq + 0x900000) % (1 << 24)  # more than half the 24-bit circle away: behind
    assert start_position(buffer, StationRequest(seq=behind, begin_ns=7 * S), replay) == (7, 0)
    assert start_position(buffer, StationRequest(seq=behind), replay) == (buffer.base, 0)
    assert start_position(buffer, StationRequest(seq=11 + 100), replay) == (buffer.end, 0)  # absurd: next


def test_v4_numbers_wait_resume_and_fall_back() -> None:
    replay = one_second_replay(20)
    replay.release_due(10.0)
    buffer = replay.buffers[("XX", "STA1")]
    assert [p.number for p in buffer.packets] == list(range(1, 11))
    assert start_position(buffer, StationRequest(number=4), replay) == (3, 0)
    assert start_position(buffer, StationRequest(number=13), replay) == (10, 13)  # wait for 13
    assert start_position(buffer, StationRequest(number=10**9), replay) == (10, 0)  # absurd: next
    assert start_position(buffer, StationRequest(all_data=True), replay) == (0, 0)
    assert start_position(buffer, StationRequest(), replay) == (10, 0)
    sub = subscribe(buffer, StationRequest(number=13), [], replay)
    replay.release_due(15.0)
    assert [p.number for p in sub.pending()] == [13, 14, 15]


# ---------------------------------------------------------------------------------- over the wire
def v3_session(port: int, resume: dict[str, tuple[int, str]] | None = None) -> Wire:
    """libslink multi-station 3.1 handshake for STA1 and STA2: DATA, or DATA seq+1 time to resume."""
    wire = Wire(port)
    wire.hello()
    assert libslink_accepts(wire.ask(b"CAPABILITIES EXTREPLY\r\n"))
    for station in STATIONS:
        assert libslink_accepts(wire.ask(f"STATION {station} XX\r\n".encode()))
        if resume and station in resume:
            seq, stamp = resume[station]
            command = f"DATA {seq + 1:X} {stamp}\r\n"
        else:
            command = "DATA\r\n"
        assert libslink_accepts(wire.ask(command.encode()))
    wire.send(b"END\r\n")
    return wire


def complete(got: dict[str, list[tuple[int, bytes]]], expected: dict[str, list[bytes]]) -> bool:
    return all(len(got.get(station, [])) >= len(records) for station, records in expected.items())


def v3_packet(wire: Wire) -> tuple[str, int, bytes]:
    head, record = wire.read(8), wire.read(512)
    assert head.startswith(b"SL")
    return record[8:13].decode().strip(), int(head[2:], 16), record


def v4_packet(wire: Wire) -> tuple[str, int, bytes]:
    header, payload = wire.v4_packet()
    assert header.station_id.startswith("XX_")
    return header.station_id[3:], header.sequence, payload


def read_packets(
    wire: Wire,
    seconds: float,
    got: dict[str, list[tuple[int, bytes]]],
    expected: dict | None = None,
    packet: Callable[[Wire], tuple[str, int, bytes]] = v3_packet,
) -> None:
    """Collect packets for ``seconds`` or until ``expected`` counts are reached (and a little more)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if expected is not None and complete(got, expected):
            deadline, expected = min(deadline, time.monotonic() + 0.2), None  # anything doubled arrives now
        if not wire.buffer and wire.silent_for(0.05):
            continue
        station, seq, record = packet(wire)
        got.setdefault(station, []).append((seq, record))


def last_stamp(record: bytes) -> str:
    """Start time of a record in the comma form libslink sends (whole seconds)."""
    year, day, hour, minute, second = (int.from_bytes(record[20:22], "big"), int.from_bytes(record[22:24], "big"),
                                       record[24], record[25], record[26])  # fmt: skip
    start = UTCDateTime(year=year, julday=day, hour=hour, minute=minute, second=second)
    return start.strftime("%Y,%m,%d,%H,%M,%S")


def test_caught_up_v3_resume_waits_instead_of_resending(archive: tuple[Path, Stream]) -> None:
    folder, _ = archive
    expected = {sta: sorted(r.data for r in load_records([folder]) if r.station == sta) for sta in STATIONS}
    with ThreadedReplayServer([folder], port=0, speed=30.0) as server:
        got: dict[str, list[tuple[int, bytes]]] = {}
        first = v3_session(server.port)
        read_packets(first, 0.6, got)
        server.call(server.server.pause)
        read_packets(first, 0.3, got)  # drain: now caught up with everything released
        first.close()
        resume = {sta: (packets[-1][0], last_stamp(packets[-1][1])) for sta, packets in got.items()}
        assert set(resume) == set(STATIONS)
        second = v3_session(server.port, resume)
        assert second.silent_for(0.5)  # the next packets do not exist yet: wait, do not re-send
        server.call(server.server.resume)
        read_packets(second, 6.0, got, expected)
        second.close()
    for station, packets in got.items():
        seqs = [seq for seq, _ in packets]
        assert seqs == list(range(1, len(seqs) + 1)), f"{station}: sequence gap or repeat"
        assert sorted(record for _, record in packets) == expected[station]


def test_twelve_client_restarts_while_streaming_live(archive: tuple[Path, Stream]) -> None:
    """Stop and restart a resuming 3.1 client 12 times at random points of a paced replay."""
    folder, _ = archive
    expected = {sta: sorted(r.data for r in load_records([folder]) if r.station == sta) for sta in STATIONS}
    rng = random.Random(5)
    got: dict[str, list[tuple[int, bytes]]] = {}
    with ThreadedReplayServer([folder], port=0, speed=25.0) as server:
        for _ in range(13):
            resume = {s: (p[-1][0], last_stamp(p[-1][1])) for s, p in got.items() if p}
            wire = v3_session(server.port, resume)
            read_packets(wire, rng.uniform(0.05, 0.3), got)
            wire.close()
        wire = v3_session(server.port, {s: (p[-1][0], last_stamp(p[-1][1])) for s, p in got.items()})
        read_packets(wire, 6.0, got, expected)
        wire.close()
    for station, packets in got.items():
        assert [seq for seq, _ in packets] == list(range(1, len(packets) + 1)), station
        assert sorted(record for _, record in packets) == expected[station]


def v4_session(port: int, resume: dict[str, int], wildcard: int | None = None) -> Wire:
    wire = v4_handshake(port)
    if wildcard is not None:
        commands = [b"STATION *\r", b"DATA %d\r" % wildcard]
    else:
        commands = []
        for station in STATIONS:
            commands.append(f"STATION XX_{station}\r".encode())
            commands.append(b"DATA %d\r" % (resume[station] + 1) if station in resume else b"DATA\r")
    wire.send(b"".join(commands))
    assert [wire.reply() for _ in commands] == [b"OK\r\n"] * len(commands)
    wire.send(b"END\r\n")
    return wire


@pytest.mark.parametrize("wildcard", [False, True], ids=["per-station", "seqwildcard"])
def test_caught_up_v4_resume_waits_instead_of_resending(archive: tuple[Path, Stream], wildcard: bool) -> None:
    folder, _ = archive
    expected = {sta: sorted(r.data for r in load_records([folder]) if r.station == sta) for sta in STATIONS}
    with ThreadedReplayServer([folder], port=0, speed=30.0) as server:
        got: dict[str, list[tuple[int, bytes]]] = {}
        first = v4_session(server.port, {})
        read_packets(first, 0.6, got, packet=v4_packet)
        server.call(server.server.pause)
        read_packets(first, 0.3, got, packet=v4_packet)
        first.close()
        last = {sta: packets[-1][0] for sta, packets in got.items()}
        newest = max(last.values())
        second = v4_session(server.port, last, wildcard=newest + 1 if wildcard else None)
        assert second.silent_for(0.5)
        second.send(b"INFO ID\r\n")  # keep-alive while waiting: one JSON packet, sequence 0
        header, _ = second.v4_packet()
        assert (header.format, header.subformat, header.sequence) == ("J", "I", v4.INFO_SEQUENCE)
        server.call(server.server.resume)
        read_packets(second, 6.0, got, expected, v4_packet)
        second.close()
    for station, packets in got.items():
        seqs = [seq for seq, _ in packets]
        assert seqs == sorted(set(seqs)), f"{station}: repeated or unordered sequence"
        assert sorted(record for _, record in packets) == expected[station]
