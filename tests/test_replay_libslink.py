"""The replay server against the exact byte exchanges of libslink clients (slinktool, slarchive, SeisComP).

The command bytes are those libslink 4.2 (EarthScope, network.c: sayhello_int, negotiate_multi_v3,
negotiate_uni_v3, negotiate_v4) writes, and each reply is checked the way libslink checks it, so these
tests fail where slinktool would report "invalid response" or give up. SeedLink 3.1: commands end in
CRLF and are sent one at a time; SeedLink 4.0: SLPROTO and USERAGENT first, then STATION, SELECT and
DATA lines ending in a bare CR, all sent before any reply is read (asynchronous handshaking), then END.
"""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path

import jsonschema
import numpy as np
import obspy
import pymseed
import pytest
from obspy import Stream, UTCDateTime

from seispick.miniseed.pack import load_records
from seispick.replay.server import ThreadedReplayServer
from seispick.seedlink import packet_v4 as v4
from tests.streams import DATA, write_station_archive

T0 = UTCDateTime(2024, 3, 1, 12, 0, 0)
DURATION_S = 60
STATIONS = {"STA1": "00", "STA2": "00", "STA3": ""}
TIMEOUT = 5
SCHEMA = json.loads((DATA / "seedlink" / "seedlink.schema.json").read_text())
V3_WINDOW = b"2024,03,01,12,00,00 2024,03,01,12,01,00"  # sl_commadatetime output
V4_WINDOW = b"2024-03-01T12:00:00Z 2024-03-01T12:01:00Z"  # sl_isodatetime output


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Stream]:
    folder = tmp_path_factory.mktemp("libslink")
    return folder, write_station_archive(folder, T0, DURATION_S, STATIONS, seed=7, step=300)


@pytest.fixture(scope="module")
def server(archive: tuple[Path, Stream]):  # type: ignore[no-untyped-def]
    with ThreadedReplayServer([archive[0]], port=0, speed=0) as running:
        yield running


def expected_records(
    folder: Path, station: str, channels: tuple[str, ...] = ("HHZ", "HHN", "HHE")
) -> set[bytes]:
    return {r.data for r in load_records([folder]) if r.station == station and r.channel in channels}


class Wire:
    """A socket that sends exact bytes and reads replies and packets as libslink does."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _receive(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buffer += chunk

    def read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._receive()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def reply(self) -> bytes:
        """One response up to and including CRLF (sl_recvresp)."""
        while b"\r\n" not in self.buffer:
            self._receive()
        data, _, self.buffer = self.buffer.partition(b"\r\n")
        return data + b"\r\n"

    def ask(self, command: bytes) -> bytes:
        self.send(command)
        return self.reply()

    def hello(self) -> tuple[bytes, bytes]:
        self.send(b"HELLO\r\n")
        return self.reply(), self.reply()

    def v3_packets_until_end(self) -> list[tuple[int, bytes]]:
        packets = []
        while (head := self.read(3)) != b"END":
            rest = self.read(5)
            assert head[:2] == b"SL", head + rest
            packets.append((int((head + rest)[2:8], 16), self.read(512)))
        return packets

    def v4_packet(self) -> tuple[v4.V4Header, bytes]:
        fixed = self.read(v4.HEADER_LEN)
        header = v4.parse_header(fixed + self.read(v4.station_id_length(fixed)))
        return header, self.read(header.payload_length)

    def v4_packets_until_end(self) -> list[tuple[v4.V4Header, bytes]]:
        packets = []
        while (head := self.read(3)) != b"END":
            self.buffer = head + self.buffer
            packets.append(self.v4_packet())
        return packets

    def silent_for(self, seconds: float) -> bool:
        """True when nothing at all arrives within ``seconds``."""
        if self.buffer:
            return False
        self.sock.settimeout(seconds)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(TIMEOUT)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buffer += chunk
        return False

    def close(self) -> None:
        self.sock.close()


def libslink_accepts(reply: bytes) -> bool:
    """libslink 3.x check of an OK reply to a modifier command."""
    return reply.startswith(b"OK\r") and len(reply) >= 4


def libslink_refusal(reply: bytes) -> bool:
    """libslink 3.x check of a refusal it skips (anything else: 'invalid response', negotiation fails)."""
    return reply.startswith(b"ERROR\r") and len(reply) >= 7


# ------------------------------------------------------------------------------------ SeedLink 3.1
def test_hello_advertises_both_protocols_to_libslink(server: ThreadedReplayServer) -> None:
    wire = Wire(server.port)
    ident, organisation = wire.hello()
    assert ident.lower().startswith(b"seedlink v4.0") and ident.endswith(b"\r\n")  # strncasecmp "SEEDLINK"
    flags = ident.split(b"::", 1)[1].split()
    assert b"SLPROTO:3.1" in flags and b"SLPROTO:4.0" in flags and b"CAP" in flags
    assert organisation.strip()
    wire.close()


def test_v3_multi_station_refuses_the_unknown_station_alone(
    server: ThreadedReplayServer, archive: tuple[Path, Stream]
) -> None:
    """slinktool -3 -S "XX_STA1:HHZ,XX_NONE,XX_STA3" -ts ... -te ...: NONE refused, the others stream."""
    folder, original = archive
    wire = Wire(server.port)
    wire.hello()
    assert libslink_accepts(wire.ask(b"CAPABILITIES EXTREPLY\r\n"))
    assert libslink_accepts(wire.ask(b"STATION STA1 XX\r\n"))
    assert libslink_accepts(wire.ask(b"SELECT HHZ\r\n"))
    assert libslink_accepts(wire.ask(b"TIME " + V3_WINDOW + b"\r\n"))
    refusal = wire.ask(b"STATION NONE XX\r\n")
    assert refusal == b"ERROR\rARGUMENTS no station matches NONE XX\r\n"  # ringserver's 3.1 form
    assert libslink_refusal(refusal)
    assert libslink_accepts(wire.ask(b"STATION STA3 XX\r\n"))
    assert libslink_accepts(wire.ask(b"TIME " + V3_WINDOW + b"\r\n"))
    wire.send(b"END\r\n")
    packets = wire.v3_packets_until_end()
    wire.close()
    records = [record for _, record in packets]
    assert len(records) == len(set(records))  # nothing twice
    assert set(records) == expected_records(folder, "STA1", ("HHZ",)) | expected_records(folder, "STA3")
    got = obspy.read(io.BytesIO(b"".join(records)))
    got.merge(method=-1)
    assert sorted(tr.id for tr in got) == ["XX.STA1.00.HHZ", "XX.STA3..HHE", "XX.STA3..HHN", "XX.STA3..HHZ"]
    for trace in got:
        np.testing.assert_array_equal(trace.data, original.select(id=trace.id)[0].data)


def test_v3_refusal_without_extreply_is_bare_error(server: ThreadedReplayServer) -> None:
    """ObsPy and old libslink do not ask for EXTREPLY: the reply is exactly ERROR CR LF."""
    wire = Wire(server.port)
    assert wire.ask(b"STATION NONE XX\r\n") == b"ERROR\r\n"
    assert wire.ask(b"SELECT B_H_Z\r\n") == b"ERROR\r\n"  # a v4 selector is no 3.1 selector
    assert wire.ask(b"STATION STA2 XX\r\n") == b"OK\r\n"
    wire.close()


def test_v3_bad_selector_is_refused_alone_and_the_station_streams(
    server: ThreadedReplayServer, archive: tuple[Path, Stream]
) -> None:
    folder, _ = archive
    wire = Wire(server.port)
    assert libslink_accepts(wire.ask(b"CAPABILITIES EXTREPLY\r\n"))
    assert libslink_accepts(wire.ask(b"STATION STA2 XX\r\n"))
    assert libslink_refusal(wire.ask(b"SELECT B_H_Z\r\n"))
    assert libslink_accepts(wire.ask(b"SELECT HHN\r\n"))
    assert libslink_accepts(wire.ask(b"TIME " + V3_WINDOW + b"\r\n"))
    wire.send(b"END\r\n")
    records = [record for _, record in wire.v3_packets_until_end()]
    wire.close()
    assert sorted(records) == sorted(expected_records(folder, "STA2", ("HHN",)))


def test_v3_batch_mode_gets_no_replies(server: ThreadedReplayServer, archive: tuple[Path, Stream]) -> None:
    """slinktool -b: BATCH answered, then commands are sent without reading replies (batchmode 2)."""
    folder, _ = archive
    wire = Wire(server.port)
    wire.hello()
    assert wire.ask(b"BATCH\r\n") == b"OK\r\n"
    for command in (b"STATION NONE XX", b"SELECT HHZ", b"STATION STA1 XX", b"SELECT HHE",
                    b"TIME " + V3_WINDOW, b"END"):  # fmt: skip
        wire.send(command + b"\r\n")
    records = [record for _, record in wire.v3_packets_until_end()]  # first bytes: packets, not replies
    wire.close()
    assert sorted(records) == sorted(expected_records(folder, "STA1", ("HHE",)))


def test_v3_uni_station_and_dialup_fetch(server: ThreadedReplayServer, archive: tuple[Path, Stream]) -> None:
    """negotiate_uni_v3: SELECT then TIME starts the stream without OK; FETCH seq (hex) in dial-up mode."""
    folder, _ = archive
    wire = Wire(server.port)
    assert libslink_accepts(wire.ask(b"SELECT 00HHZ\r\n"))
    wire.send(b"TIME " + V3_WINDOW + b"\r\n")
    packets = wire.v3_packets_until_end()
    wire.close()
    assert {r for _, r in packets} == expected_records(folder, "STA1", ("HHZ",)) | expected_records(
        folder, "STA2", ("HHZ",)
    )
    sta2 = [seq for seq, record in packets if b"STA2" in record[8:13]]
    fetch = Wire(server.port)
    assert libslink_accepts(fetch.ask(b"STATION STA2 XX\r\n"))
    assert libslink_accepts(fetch.ask(b"SELECT 00HHZ\r\n"))
    assert libslink_accepts(fetch.ask(b"FETCH %X\r\n" % (sta2[-3] + 1)))  # after the third-last
    fetch.send(b"END\r\n")
    assert [seq for seq, _ in fetch.v3_packets_until_end()] == sta2[-2:]
    fetch.close()


# ------------------------------------------------------------------------------------ SeedLink 4.0
def v4_handshake(port: int) -> Wire:
    wire = Wire(port)
    ident, _ = wire.hello()
    assert b"SLPROTO:4.0" in ident
    assert wire.ask(b"SLPROTO 4.0\r\n").startswith(b"OK\r")
    assert wire.ask(b"USERAGENT slinktool/5.0.0 libslink/4.2.0\r\n").startswith(b"OK\r")
    return wire


def test_v4_pipelined_handshake_with_an_unknown_station(
    server: ThreadedReplayServer, archive: tuple[Path, Stream]
) -> None:
    """slinktool -4 -S "XX_STA1:HHZ,XX_NONE,XX_STA3" -ts ... -te ...: every command answered OK (libslink
    abandons the handshake on any ERROR), the unknown station streams nothing, the others everything."""
    folder, original = archive
    wire = v4_handshake(server.port)
    commands = [b"STATION XX_STA1\r", b"SELECT *_H_H_Z\r", b"DATA ALL " + V4_WINDOW + b"\r",
                b"STATION XX_NONE\r", b"DATA ALL " + V4_WINDOW + b"\r",
                b"STATION XX_STA3\r", b"DATA ALL " + V4_WINDOW + b"\r"]  # fmt: skip
    wire.send(b"".join(commands))
    assert [wire.reply() for _ in commands] == [b"OK\r\n"] * len(commands)
    wire.send(b"END\r\n")
    packets = wire.v4_packets_until_end()
    wire.close()
    assert {(h.format, h.subformat, h.payload_length) for h, _ in packets} == {("2", "D", 512)}
    by_station: dict[str, list[int]] = {}
    for header, _ in packets:
        by_station.setdefault(header.station_id, []).append(header.sequence)
    assert set(by_station) == {"XX_STA1", "XX_STA3"}
    assert all(seqs == sorted(set(seqs)) for seqs in by_station.values())  # strictly increasing
    records = [payload for _, payload in packets]
    assert sorted(records) == sorted(
        expected_records(folder, "STA1", ("HHZ",)) | expected_records(folder, "STA3")
    )
    got = obspy.read(io.BytesIO(b"".join(records))).merge(method=-1)
    for trace in got:
        np.testing.assert_array_equal(trace.data, original.select(id=trace.id)[0].data)


def test_v4_refusals_use_the_v4_form(server: ThreadedReplayServer) -> None:
    wire = v4_handshake(server.port)
    assert wire.ask(b"SELECT\r") == b"ERROR ARGUMENTS empty SELECT is not allowed in v4\r\n"
    assert wire.ask(b"FOO BAR\r").startswith(b"ERROR UNSUPPORTED ")
    assert wire.ask(b"TIME 2024,3,1\r").startswith(b"ERROR UNSUPPORTED ")  # removed in v4
    assert wire.ask(b"DATA 12\r").startswith(b"ERROR UNEXPECTED ")  # no STATION yet
    assert wire.ask(b"STATION XX_STA1\r") == b"OK\r\n"
    assert wire.ask(b"DATA 0x1F\r").startswith(b"ERROR ARGUMENTS ")  # decimal in v4
    assert wire.ask(b"DATA ALL 2024-03-01T12:01:00Z 2024-03-01T12:00:00Z\r").startswith(b"ERROR ARGUMENTS ")
    assert wire.ask(b"SELECT 00_H_H_Z:gzip\r").startswith(b"ERROR ARGUMENTS ")  # unknown filter
    assert wire.ask(b"SLPROTO 4.0\r").startswith(b"ERROR UNEXPECTED ")  # only before selection
    wire.close()
    fresh = Wire(server.port)
    assert fresh.ask(b"SLPROTO 5.0\r\n") == b"ERROR\r\n"  # still 3.1: refused in the 3.1 form
    fresh.close()


def test_v4_selectors_wildcards_and_dialup(
    server: ThreadedReplayServer, archive: tuple[Path, Stream]
) -> None:
    folder, _ = archive
    wire = v4_handshake(server.port)
    commands = [
        b"STATION XX_STA?\r",
        b"SELECT *_H_H_? !00_H_H_Z\r",
        b"SELECT _H_H_Z.2D !*.2E\r",
        b"DATA ALL\r",
    ]
    wire.send(b"".join(commands))
    assert [wire.reply() for _ in commands] == [b"OK\r\n"] * len(commands)
    wire.send(b"ENDFETCH\r\n")  # dial-up: queued data, then END
    packets = wire.v4_packets_until_end()
    wire.close()
    expected = set()
    for station in STATIONS:
        expected |= expected_records(folder, station, ("HHN", "HHE"))
    expected |= expected_records(folder, "STA3", ("HHZ",))  # blank location: _H_H_Z is not 00_H_H_Z
    assert sorted(p for _, p in packets) == sorted(expected)


def test_v4_info_is_json_by_the_fdsn_schema(server: ThreadedReplayServer) -> None:
    wire = v4_handshake(server.port)
    docs = {}
    for command in (b"INFO ID", b"INFO CAPABILITIES", b"INFO FORMATS", b"INFO STATIONS",
                    b"INFO STREAMS XX_STA3", b"INFO STREAMS * *_H_H_Z", b"INFO GAPS"):  # fmt: skip
        wire.send(command + b"\r\n")
        header, payload = wire.v4_packet()
        assert (header.format, header.station_id) == ("J", "")
        doc = json.loads(payload)
        jsonschema.validate(doc, SCHEMA)
        docs[command.decode()] = (header.subformat, doc)
    wire.close()
    assert docs["INFO ID"][1]["software"].startswith("SeedLink v4.0")
    assert "SLPROTO:4.0" in docs["INFO CAPABILITIES"][1]["capability"]
    assert docs["INFO FORMATS"][1]["format"]["2"]["mimetype"] == "application/vnd.fdsn.mseed"
    assert [s["id"] for s in docs["INFO STATIONS"][1]["station"]] == ["XX_STA1", "XX_STA2", "XX_STA3"]
    assert [s["id"] for s in docs["INFO STREAMS XX_STA3"][1]["station"][0]["stream"]] == [
        "_H_H_E", "_H_H_N", "_H_H_Z"
    ]  # fmt: skip
    zs = [st["id"] for s in docs["INFO STREAMS * *_H_H_Z"][1]["station"] for st in s["stream"]]
    assert zs == ["00_H_H_Z", "00_H_H_Z", "_H_H_Z"]
    subformat, error = docs["INFO GAPS"]
    assert subformat == "E" and error["error"]["code"] == "ARGUMENTS"


def test_v4_filter_3_sends_mseed3_and_the_first_matching_filter_wins(
    server: ThreadedReplayServer, archive: tuple[Path, Stream]
) -> None:
    """SELECT *_H_H_Z:native *:3 (spec example): HHZ stays miniSEED 2, the rest arrives as miniSEED 3."""
    folder, _ = archive
    native = {(r.channel, r.start_ns): r.data for r in load_records([folder]) if r.station == "STA1"}
    wire = v4_handshake(server.port)
    commands = [b"STATION XX_STA1\r", b"SELECT *_H_H_Z:native *:3\r", b"DATA ALL\r"]
    wire.send(b"".join(commands))
    assert [wire.reply() for _ in commands] == [b"OK\r\n"] * len(commands)
    wire.send(b"ENDFETCH\r\n")
    packets = wire.v4_packets_until_end()
    wire.close()
    assert len(packets) == len(native)
    for header, payload in packets:
        record = pymseed.MS3Record.parse(payload, unpack_data=True)
        channel = record.sourceid.split("_", 3)[3].replace("_", "")
        assert header.format == ("2" if channel == "HHZ" else "3") == str(record.formatversion)
        source = pymseed.MS3Record.parse(native[(channel, record.starttime)], unpack_data=True)
        assert record.sourceid == source.sourceid == f"FDSN:XX_STA1_00_{'_'.join(channel)}"
        np.testing.assert_array_equal(record.np_datasamples, source.np_datasamples)


def test_a_31_only_server_for_clients_that_must_fall_back(archive: tuple[Path, Stream]) -> None:
    """protocols=("3.1",) stands in for a server without SeedLink 4: libslink then stays on 3.1."""
    with pytest.raises(ValueError, match="3.1"):
        ThreadedReplayServer([archive[0]], port=0, protocols=("4.0",))
    with ThreadedReplayServer([archive[0]], port=0, speed=0, protocols=("3.1",)) as old:
        wire = Wire(old.port)
        ident, _ = wire.hello()
        assert ident.startswith(b"SeedLink v3.1 (seispick) :: SLPROTO:3.1 CAP ")
        assert b"SLPROTO:4.0" not in ident
        assert wire.ask(b"SLPROTO 4.0\r\n") == b"ERROR\r\n"
        assert wire.ask(b"SLPROTO 3.1\r\n") == b"OK\r\n"
        wire.close()
