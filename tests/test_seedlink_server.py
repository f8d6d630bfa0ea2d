"""SeedLink replay server against independent clients (ObsPy's SeedLink clients, raw sockets) over TCP."""

from __future__ import annotations

import io
import socket
import threading
import time
from pathlib import Path

import numpy as np
import obspy
import pytest
from obspy import Stream, Trace, UTCDateTime
from obspy.clients.seedlink.basic_client import Client
from obspy.clients.seedlink.easyseedlink import EasySeedLinkClient
from obspy.clients.seedlink.slclient import SLClient
from obspy.clients.seedlink.slpacket import SLPacket

from seispick.miniseed import pack as mseed_records
from seispick.replay.server import (
    SeedLinkReplayServer,
    Selector,
    StationBuffer,
    ThreadedReplayServer,
    parse_seedlink_time,
    selection_matches,
)
from tests.streams import write_station_archive

T0 = UTCDateTime(2024, 3, 1, 12, 0, 0)
DURATION_S = 180
RATE = 100.0
STATIONS = {"STA1": "00", "STA2": "00", "STA3": ""}  # station -> location code (STA3: blank)
CHANNELS = ("HHZ", "HHN", "HHE")
TIMEOUT = 5


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Stream]:
    """Three stations x three channels, 100 Hz, 3 minutes, one miniSEED file per station."""
    folder = tmp_path_factory.mktemp("archive")
    original = write_station_archive(folder, T0, DURATION_S, STATIONS, seed=42, step=400)
    (folder / "README.txt").write_text("not waveform data; skipped when reading the folder\n")
    return folder, original


def original_trace(original: Stream, station: str, channel: str) -> Trace:
    return original.select(station=station, channel=channel)[0]


def assert_same_samples(got: Stream, original: Stream) -> None:
    got = got.copy().merge(method=-1)
    assert len(got) == len(original)
    for trace in original:
        (received,) = got.select(id=trace.id)
        assert received.stats.starttime == trace.stats.starttime
        np.testing.assert_array_equal(received.data, trace.data)


def collect(port: int, station: str, selectors: str, *, seq: int = -1, begin: UTCDateTime | None = None,
            end: UTCDateTime | None = None, dialup: bool = False,
            max_packets: int | None = None) -> list[tuple[int, Trace]]:  # fmt: skip
    """Multi-station SLClient session for one station; returns (sequence, trace) per data packet."""
    client = SLClient(timeout=TIMEOUT)
    client.slconn.set_sl_address(f"127.0.0.1:{port}")
    client.slconn.netto = TIMEOUT
    client.slconn.add_stream("XX", station, selectors, seq, None)
    client.slconn.dialup = dialup
    client.slconn.begin_time, client.slconn.end_time = begin, end
    packets: list[tuple[int, Trace]] = []

    def handler(count: int, packet: SLPacket) -> bool:
        if packet is None or packet in (SLPacket.SLNOPACKET, SLPacket.SLERROR):
            return False
        if packet.get_type() in (SLPacket.TYPE_SLINF, SLPacket.TYPE_SLINFT):
            return False
        packets.append((packet.get_sequence_number(), packet.get_trace()))
        return max_packets is not None and len(packets) >= max_packets

    client.run(packet_handler=handler)
    return packets


class RawClient:
    """A bare socket speaking the SeedLink command protocol."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buffer = b""

    def send(self, command: bytes | str) -> None:
        self.sock.sendall((command.encode() if isinstance(command, str) else command) + b"\r\n")

    def _fill(self, size: int) -> None:
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buffer += chunk

    def read(self, size: int) -> bytes:
        self._fill(size)
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill(len(self.buffer) + 1)
        data, _, self.buffer = self.buffer.partition(b"\r\n")
        return data

    def ask(self, command: str) -> bytes:
        self.send(command)
        return self.line()

    def packet(self) -> bytes:
        return self.read(520)

    def packets_until_end(self) -> list[bytes]:
        """Data packets up to the server's END marker."""
        packets = []
        while (head := self.read(3)) != b"END":
            packets.append(head + self.read(517))
        return packets

    def close(self) -> None:
        self.sock.close()


# -------------------------------------------------------------------------------------- unit level
def test_selector_parsing_and_matching() -> None:
    assert Selector.parse("BH?") == Selector("*", "BH?", "?", False)
    assert Selector.parse("00BHZ.D") == Selector("00", "BHZ", "D", False)
    assert Selector.parse("--HHZ").matches("", "HHZ")
    assert not Selector.parse("--HHZ").matches("00", "HHZ")
    assert Selector.parse("??Z").matches("10", "HHZ")
    assert not Selector.parse("HH?.E").matches("00", "HHZ")
    for bad in ("ABCD", "TOOLONGXX", "BH[Z]", "HHZ.X", "", "!"):
        with pytest.raises(ValueError):
            Selector.parse(bad)
    selectors = [Selector.parse("HH?"), Selector.parse("!HHZ")]
    assert selection_matches(selectors, "00", "HHN")
    assert not selection_matches(selectors, "00", "HHZ")
    assert selection_matches([], "00", "HHZ")


def test_seedlink_time_parsing() -> None:
    assert parse_seedlink_time("2024,3,1,12,0,5") == UTCDateTime(2024, 3, 1, 12, 0, 5).ns
    assert parse_seedlink_time("2024,03,01,12,00,05.25") == UTCDateTime(2024, 3, 1, 12, 0, 5.25).ns
    assert parse_seedlink_time("2024,3,1") == UTCDateTime(2024, 3, 1).ns
    for bad in ("2024,13,1,0,0,0", "yesterday", "2024,1"):
        with pytest.raises(ValueError):
            parse_seedlink_time(bad)


def test_records_are_lossless_and_shift_exactly() -> None:
    trace = Trace(np.linspace(-1, 1, 5000), header=dict(sampling_rate=40.0, starttime=T0 + 0.000123))
    records = mseed_records.pack_trace(trace)
    assert all(len(r.data) == 512 for r in records)
    back = obspy.read(io.BytesIO(b"".join(r.data for r in records))).merge()[0]
    np.testing.assert_array_equal(back.data, trace.data)  # float64 kept as FLOAT64
    shift = 86_400 * 10**9 * 366 + 123_400_000
    moved = obspy.read(io.BytesIO(mseed_records.shift_record(records[1].data, shift)))[0]
    assert moved.stats.starttime.ns == records[1].start_ns + shift


def test_sequence_numbers_wrap_at_24_bits() -> None:
    record = mseed_records.MseedRecord("XX", "STA1", "", "HHZ", 0, 10, bytes(512))
    buffer = StationBuffer("XX", "STA1", capacity=3)
    buffer.next_seq = 0xFFFFFE
    for _ in range(4):
        buffer.append(record, 0)
    assert [p.seq for p in buffer.packets] == [0xFFFFFF, 0x000000, 0x000001]
    assert buffer.packets[1].wire.startswith(b"SL000000")
    assert buffer.index_of_seq(0) == buffer.base + 1
    assert buffer.index_of_seq(0xFFFFFE) is None  # fell out of the ring
    assert buffer.index_for_resume(0xFFFFFE) == buffer.base  # older: resume from the oldest
    assert buffer.index_for_resume(2) == buffer.end  # not issued yet: wait for it


def test_constructor_rejects_impossible_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SeedLinkReplayServer([tmp_path], speed=-1)
    with pytest.raises(ValueError):
        SeedLinkReplayServer([tmp_path], speed=0, loop=True)


# --------------------------------------------------------------------------------- against clients
def test_client_receives_exactly_the_archived_samples(archive: tuple[Path, Stream]) -> None:
    folder, original = archive
    with ThreadedReplayServer([folder], port=0, speed=0) as server:
        client = Client("127.0.0.1", server.port, timeout=TIMEOUT)
        got = client.get_waveforms("XX", "STA1", "", "HH?", T0, T0 + DURATION_S)
        assert_same_samples(got, original.select(station="STA1"))
        got = client.get_waveforms("XX", "STA3", "", "HHZ", T0, T0 + DURATION_S)  # blank location
        assert_same_samples(got, original.select(station="STA3", channel="HHZ"))
        # wildcard stations go through INFO STATIONS; '??Z' keeps only the vertical channels
        got = client.get_waveforms("XX", "*", "", "??Z", T0, T0 + DURATION_S)
        assert_same_samples(got, original.select(channel="HHZ"))
        channels = client.get_info(network="XX", level="channel")
        assert len(channels) == len(STATIONS) * len(CHANNELS)


def test_selectors_filter_streams(archive: tuple[Path, Stream]) -> None:
    folder, original = archive
    with ThreadedReplayServer([folder], port=0, speed=0) as server:

        def channels(station: str, selectors: str) -> set[str]:
            packets = collect(server.port, station, selectors, begin=T0, end=T0 + DURATION_S)
            return {trace.stats.channel for _, trace in packets}

        assert channels("STA1", "00HHZ") == {"HHZ"}
        assert channels("STA1", "HH?.D") == set(CHANNELS)
        assert channels("STA1", "HH? !HHZ") == {"HHN", "HHE"}
        assert channels("STA3", "--HHN") == {"HHN"}
        assert channels("STA1", "10HHZ") == set()  # no such location
        raw = RawClient(server.port)
        for command in ("STATION STA2 XX", "SELECT HH?.E", "TIME 2024,3,1,12,0,0 2024,3,1,12,3,0"):
            assert raw.ask(command) == b"OK"
        raw.send("END")
        assert raw.read(3) == b"END"  # event records only: nothing to send
        raw.close()


def test_resume_from_sequence_without_gap_or_duplicate(archive: tuple[Path, Stream]) -> None:
    folder, original = archive
    expected = original_trace(original, "STA2", "HHE")
    with ThreadedReplayServer([folder], port=0, speed=0) as server:
        first = collect(server.port, "STA2", "HHE", begin=T0, max_packets=7)
        assert len(first) == 7
        rest = collect(server.port, "STA2", "HHE", seq=first[-1][0], dialup=True)  # FETCH last+1
    sequences = [seq for seq, _ in first + rest]
    assert all(b > a for a, b in zip(sequences, sequences[1:]))  # per-station sequence, HHE only
    merged = Stream([trace for _, trace in first + rest]).merge(method=-1)
    assert len(merged) == 1
    np.testing.assert_array_equal(merged[0].data, expected.data)


def test_stop_and_restart_on_the_same_port_keeps_sequences(archive: tuple[Path, Stream]) -> None:
    folder, original = archive
    expected = original_trace(original, "STA1", "HHN")
    with ThreadedReplayServer([folder], port=0, speed=0) as server:
        port = server.port
        first = collect(port, "STA1", "HHN", begin=T0, max_packets=5)
        server.stop()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        server.start()
        assert server.port == port
        done: list[tuple[int, Trace]] = []
        total = expected.stats.npts
        while sum(t.stats.npts for _, t in first + done) < total:  # DATA last+1, real-time mode
            batch = collect(port, "STA1", "HHN", seq=(done or first)[-1][0], max_packets=1)
            assert batch, "resume returned nothing"
            done += batch
    merged = Stream([trace for _, trace in first + done]).merge(method=-1)
    assert len(merged) == 1
    np.testing.assert_array_equal(merged[0].data, expected.data)


def test_speed_paces_the_stream(archive: tuple[Path, Stream]) -> None:
    folder, original = archive
    speed = 180.0  # 180 s of data in about 1 s
    with ThreadedReplayServer([folder], port=0, speed=speed) as server:
        started = time.monotonic()
        released_early = server.server.replay.released
        client = Client("127.0.0.1", server.port, timeout=TIMEOUT)
        got = client.get_waveforms("XX", "STA2", "00", "HHZ", T0, T0 + DURATION_S)
        elapsed = time.monotonic() - started
        total = len(server.server.replay.records)
    assert_same_samples(got, original.select(station="STA2", channel="HHZ"))
    assert 0.6 < elapsed < 4.0, elapsed
    assert released_early < total / 2


def test_two_clients_at_once(archive: tuple[Path, Stream]) -> None:
    folder, original = archive
    results: dict[str, Stream] = {}
    spans: list[tuple[float, float]] = []

    def fetch(port: int, station: str, channels: str) -> None:
        client = Client("127.0.0.1", port, timeout=TIMEOUT)
        began = time.monotonic()
        results[station] = client.get_waveforms("XX", station, "", channels, T0, T0 + DURATION_S)
        spans.append((began, time.monotonic()))

    with ThreadedReplayServer([folder], port=0, speed=240.0) as server:
        threads = [threading.Thread(target=fetch, args=(server.port, "STA1", "HH?")),
                   threading.Thread(target=fetch, args=(server.port, "STA3", "??E"))]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=15)
    assert max(b for b, _ in spans) < min(e for _, e in spans)  # both sessions were open at once
    assert_same_samples(results["STA1"], original.select(station="STA1"))
    assert_same_samples(results["STA3"], original.select(station="STA3", channel="HHE"))


def test_real_time_stream_with_easyseedlink(archive: tuple[Path, Stream]) -> None:
    folder, original = archive
    received: list[Trace] = []

    class Enough(Exception):
        pass

    class Listener(EasySeedLinkClient):
        def on_data(self, trace: Trace) -> None:
            received.append(trace)
            if len(received) >= 6:
                raise Enough  # conn.terminate() is ignored here: collect() resets the flag on entry

    with ThreadedReplayServer([folder], port=0, speed=120.0) as server:
        client = Listener(f"127.0.0.1:{server.port}", autoconnect=False)
        client.conn.timeout = TIMEOUT  # ObsPy 1.5.1 cannot connect with timeout None
        client.connect()
        assert client.has_capability("multistation")
        client.select_stream("XX", "STA2", "HHZ")
        with pytest.raises(Enough):
            client.run()
        client.close()
    merged = Stream(received).merge(method=-1)
    assert len(merged) == 1  # contiguous: nothing skipped or doubled
    trace = merged[0]
    expected = original_trace(original, "STA2", "HHZ").slice(trace.stats.starttime, trace.stats.endtime)
    np.testing.assert_array_equal(trace.data, expected.data)


def test_restamp_and_loop_give_a_continuous_stream_from_now(archive: tuple[Path, Stream]) -> None:
    folder, original = archive
    with ThreadedReplayServer([folder], port=0, speed=360.0, restamp=True, loop=True) as server:
        replay = server.server.replay
        start = UTCDateTime(ns=replay.t0_ns + replay.shift0_ns)
        assert abs(start - UTCDateTime()) < 3  # first sample stamped "now"
        packets = collect(server.port, "STA1", "00HHZ", begin=start, end=start + 2 * DURATION_S + 2)
    got = Stream([trace for _, trace in packets]).merge(method=-1)
    assert len(got) == 1
    got.trim(start, start + 2 * DURATION_S - 1 / RATE)
    twice = np.tile(original_trace(original, "STA1", "HHZ").data, 2)
    assert got[0].stats.starttime == start
    np.testing.assert_array_equal(got[0].data, twice)


def test_hello_cat_and_info(archive: tuple[Path, Stream]) -> None:
    folder, _ = archive
    with ThreadedReplayServer([folder], port=0, speed=0) as server:
        raw = RawClient(server.port)
        raw.send("HELLO")
        # SeedLink 4.0 spec: "SeedLink vX.Y" names the highest version, then one SLPROTO flag per version
        ident, _, flags = raw.line().partition(b" :: ")
        assert ident == b"SeedLink v4.0 (seispick)"
        assert {b"SLPROTO:3.1", b"SLPROTO:4.0", b"CAP", b"EXTREPLY"} <= set(flags.split())
        assert raw.line()  # organisation
        raw.send("CAT")
        catalogue = raw.read(3)
        while not catalogue.endswith(b"END"):
            catalogue += raw.read(1)
        assert catalogue.count(b"XX STA") == len(STATIONS)
        raw.send("INFO ID")
        packet = raw.packet()
        assert packet.startswith(b"SLINFO  ")
        assert b"<seedlink" in SLPacket(packet, 0).get_string_payload()
        raw.send("INFO GAPS")  # unsupported level: an error INFO packet, connection stays usable
        assert raw.packet()[8 + 15 : 8 + 18] == b"ERR"
        assert raw.ask("STATION STA1 XX") == b"OK"
        raw.close()


def test_bad_commands_get_error_and_the_server_stays_up(archive: tuple[Path, Stream]) -> None:
    folder, original = archive
    with ThreadedReplayServer([folder], port=0, speed=0) as server:
        raw = RawClient(server.port)
        for command in ("FOO BAR", "SELECT TOOLONGXX", "STATION NOPE XX", "STATION", "INFO", "DATA XYZ",
                        "TIME 2024,13,45,0,0,0", "TIME 2024,3,1,12,3,0 2024,3,1,12,0,0"):  # fmt: skip
            assert raw.ask(command) == b"ERROR", command
        assert raw.ask("\x00\xff garbage \x01") == b"ERROR"
        assert raw.ask("CAPABILITIES EXTREPLY") == b"OK"
        assert raw.ask("NOPE").startswith(b"ERROR\rUNSUPPORTED ")  # 3.1 extended reply, as ringserver
        # a streaming client that vanishes mid-stream does not disturb others
        streamer = RawClient(server.port)
        for command in ("STATION STA1 XX", "TIME 2024,3,1,12,0,0"):
            assert streamer.ask(command) == b"OK"
        streamer.send("END")
        assert streamer.packet().startswith(b"SL")
        streamer.sock.shutdown(socket.SHUT_RDWR)
        streamer.close()
        assert raw.ask("HELLO").startswith(b"SeedLink v4.0")
        raw.line()
        client = Client("127.0.0.1", server.port, timeout=TIMEOUT)
        got = client.get_waveforms("XX", "STA2", "", "HHN", T0, T0 + DURATION_S)
        assert_same_samples(got, original.select(station="STA2", channel="HHN"))
        assert server.server.running
        raw.close()


def test_disconnect_clients_fault_hook(archive: tuple[Path, Stream]) -> None:
    folder, _ = archive
    with ThreadedReplayServer([folder], port=0, speed=1.0) as server:
        raw = RawClient(server.port)
        assert raw.ask("STATION STA1 XX") == b"OK"
        raw.send("END")
        deadline = time.monotonic() + TIMEOUT
        while server.server.client_count < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.call(server.server.disconnect_clients) == 1
        with pytest.raises((ConnectionError, OSError)):
            raw.read(1)
        fresh = RawClient(server.port)
        assert fresh.ask("HELLO").startswith(b"SeedLink")
        fresh.close()


def test_uni_station_batch_mode_and_info_while_streaming(archive: tuple[Path, Stream]) -> None:
    folder, original = archive
    with ThreadedReplayServer([folder], port=0, speed=0) as server:
        raw = RawClient(server.port)  # uni-station: TIME starts the stream at once, no OK
        assert raw.ask("SELECT 00HHZ") == b"OK"
        raw.send("TIME 2024,3,1,12,0,0 2024,3,1,12,0,30")
        data = obspy.read(io.BytesIO(b"".join(p[8:] for p in raw.packets_until_end())))
        raw.close()
        assert {tr.id for tr in data} == {"XX.STA1.00.HHZ", "XX.STA2.00.HHZ"}
        assert min(tr.stats.starttime for tr in data) == T0
        assert max(tr.stats.starttime for tr in data) <= T0 + 30

        open_ended = RawClient(server.port)  # no end time: the stream stays open after the archive
        open_ended.send("TIME 2024,3,1,12,2,50")
        assert open_ended.packet().startswith(b"SL")
        open_ended.send("INFO ID")  # keep-alive while streaming
        while not (packet := open_ended.packet()).startswith(b"SLINFO"):
            assert packet.startswith(b"SL")
        assert b"<seedlink" in SLPacket(packet, 0).get_string_payload()
        open_ended.send("BYE")
        rest = open_ended.buffer
        while chunk := open_ended.sock.recv(65536):  # the server closes; only whole packets before that
            rest += chunk
        assert len(rest) % 520 == 0
        open_ended.close()

        batch = RawClient(server.port)
        assert batch.ask("BATCH") == b"OK"
        for command in ("STATION STA2 XX", "SELECT HHN", "FETCH", "END"):  # no replies in batch mode
            batch.send(command)
        assert batch.read(3) == b"END"  # FETCH of "next data" on a finished replay: nothing, then END
        batch.close()
