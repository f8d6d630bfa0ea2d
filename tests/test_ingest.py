"""Ingest sources over real TCP on 127.0.0.1: the SeedLink client against the replay server (selection,
restarts, dropped connections, lost sequences), bad records from a scripted server, and the file sources."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import struct
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from obspy import Stream, Trace, UTCDateTime
from pydantic import TypeAdapter, ValidationError

from seispick.miniseed import pack as mseed_records
from seispick.miniseed.decode import RecordError, decode_record, plausible_rate
from seispick.replay.server import SEQ_MODULUS, SeedLinkReplayServer
from seispick.seedlink.client.source import Backoff, SeedLinkSource, merge_specs
from seispick.seedlink.client.source_config import SeedLinkSourceConfig
from seispick.seedlink.stream_specs import StreamSpec, parse_stream_spec, read_station_file
from seispick.service.ingest.folder import (
    DirectorySource,
    DirectorySourceConfig,
    FileReplayConfig,
    FileReplaySource,
    split_records,
)
from seispick.service.ingest.manager import SourceConfig, SourceManager
from seispick.service.settings import StreamingSettings
from tests.streams import write_station_archive

T0 = UTCDateTime(2024, 3, 1, 12, 0, 0)
DURATION_S = 120
RATE = 100.0
STATIONS = {"STA1": "00", "STA2": "00", "STA3": ""}  # station -> location (STA3: blank)
SPEED = 60.0  # two minutes of data in two seconds
WAIT_S = 15.0


# ---------------------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Stream]:
    """Three stations x three channels, 100 Hz, two minutes, one miniSEED file per station."""
    folder = tmp_path_factory.mktemp("ingest_archive")
    original = write_station_archive(folder, T0, DURATION_S, STATIONS, seed=7, step=500)
    return folder, original


def run(coroutine: Coroutine[Any, Any, None], timeout: float = 30.0) -> None:
    asyncio.run(asyncio.wait_for(coroutine, timeout))


class Collector:
    """The shared on_trace callback: keeps every trace delivered."""

    def __init__(self) -> None:
        self.traces: list[Trace] = []

    async def __call__(self, trace: Trace) -> None:
        self.traces.append(trace)

    def samples(self, trace_id: str) -> int:
        return sum(t.stats.npts for t in self.traces if t.id == trace_id)

    def complete(self, expected: Stream) -> bool:
        return all(self.samples(t.id) >= t.stats.npts for t in expected)


async def until(condition: Callable[[], bool], timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.02)


def assert_exact(traces: list[Trace], expected: Stream, records: int | None = None) -> None:
    """Same ids, samples equal to the archive, each id in time order, and (optionally) no record twice."""
    assert {t.id for t in traces} == {t.id for t in expected}
    for original in expected:
        mine = [t for t in traces if t.id == original.id]
        starts = [t.stats.starttime.ns for t in mine]
        assert starts == sorted(starts) and len(set(starts)) == len(starts), f"{original.id} repeats records"
        merged = Stream(mine).merge(method=-1)
        assert len(merged) == 1, f"{original.id} has gaps"
        assert merged[0].stats.starttime == original.stats.starttime
        np.testing.assert_array_equal(merged[0].data, original.data)
    if records is not None:
        assert len(traces) == records


def server_records(server: SeedLinkReplayServer, expected: Stream) -> int:
    """How many 512-byte records the server holds for the expected streams."""
    ids = {t.id for t in expected}
    return sum(f"{r.network}.{r.station}.{r.location}.{r.channel}" in ids for r in server.replay.records)


def seedlink_config(port: int, selectors: list[str], **extra: Any) -> SeedLinkSourceConfig:
    return SeedLinkSourceConfig(port=port, selectors=selectors, begin_time=T0.datetime, reconnect_min_s=0.05,
                                reconnect_max_s=0.4, timeout_s=2.0, **extra)  # fmt: skip


async def stream_with_fault(folder: Path, expected: Stream, selectors: list[str],
                            fault: Callable[[SeedLinkReplayServer], Awaitable[None]] | None = None,
                            **extra: Any) -> tuple[Collector, SeedLinkSource, SeedLinkReplayServer]:  # fmt: skip
    """Stream ``selectors`` from a paced replay; apply ``fault`` once a third has arrived."""
    server = SeedLinkReplayServer([folder], port=0, speed=SPEED)
    await server.start()
    collector = Collector()
    source = SeedLinkSource(seedlink_config(server.port, selectors, **extra), collector)
    await source.start()
    try:
        if fault is not None:
            total = sum(t.stats.npts for t in expected)
            await until(lambda: sum(t.stats.npts for t in collector.traces) > total / 3)
            await fault(server)
        await until(lambda: collector.complete(expected))
        await asyncio.sleep(0.2)  # anything doubled would arrive now
    finally:
        await source.stop()
        await server.stop()
    return collector, source, server


# ------------------------------------------------------------------------------------ unit level
def test_stream_specs_and_station_file(tmp_path: Path) -> None:
    assert parse_stream_spec("GE_APE:BH?") == StreamSpec("GE", "APE", ("BH?",))
    assert parse_stream_spec(" xx_* : 00HHZ, --HHN ") == StreamSpec("XX", "*", ("00HHZ", "--HHN"))
    assert parse_stream_spec("XX_STA1") == StreamSpec("XX", "STA1", ())
    assert parse_stream_spec("XX_*:HH?").wildcard and not parse_stream_spec("XX_STA1").wildcard
    for bad in ("APE", "GE_APE:", "GE_APE:TOOLONGSEL", "GE_AP E", "GE_APE:BH[Z]"):
        with pytest.raises(ValueError):
            parse_stream_spec(bad)
    stations = tmp_path / "stations.txt"
    stations.write_text("# network_station:channels\nGE_APE:BH?\n\nXX_*:HHZ HHN  # all XX\n")
    assert read_station_file(stations) == [
        StreamSpec("GE", "APE", ("BH?",)),
        StreamSpec("XX", "*", ("HHZ", "HHN")),
    ]
    stations.write_text("GE_APE\nnonsense\n")
    with pytest.raises(ValueError, match=":2:"):
        read_station_file(stations)
    merged = merge_specs([parse_stream_spec("XX_A:HHZ"), parse_stream_spec("XX_A:HHN"), parse_stream_spec("XX_B:HHZ"),
                          parse_stream_spec("XX_B")])  # fmt: skip
    assert merged == [StreamSpec("XX", "A", ("HHZ", "HHN")), StreamSpec("XX", "B", ())]


def test_configs_validate_and_embed(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        SeedLinkSourceConfig(selectors=[])  # nothing to subscribe to
    with pytest.raises(ValidationError):
        SeedLinkSourceConfig(selectors=["XX_STA1"], reconnect_min_s=5, reconnect_max_s=1)
    with pytest.raises(ValidationError):
        SeedLinkSourceConfig(selectors=["not a selector"])
    settings = StreamingSettings.model_validate({"sources": [
        {"kind": "seedlink", "host": "example.org", "selectors": ["GE_APE:BH?"]},
        {"kind": "directory", "path": str(tmp_path), "poll_s": 0.5},
        {"kind": "files", "paths": [str(tmp_path)]},
    ]})  # fmt: skip
    kinds = [type(s) for s in settings.sources]
    assert kinds == [SeedLinkSourceConfig, DirectorySourceConfig, FileReplayConfig]
    assert (
        TypeAdapter(SourceConfig).validate_json('{"kind": "seedlink", "station_file": "s.txt"}').port == 18000
    )


def test_backoff_doubles_up_to_the_cap() -> None:
    backoff = Backoff(0.5, 4.0)
    for base in (0.5, 1.0, 2.0, 4.0, 4.0, 4.0):
        assert base <= backoff.next() <= min(base * 1.1, 4.0)
    backoff.reset()
    assert backoff.next() < 0.56


def test_record_decoding_rejects_garbage_and_impossible_rates() -> None:
    trace = Trace(np.arange(2000, dtype=np.int32), header=dict(station="A", sampling_rate=RATE, starttime=T0))
    record = mseed_records.pack_trace(trace)[0].data
    assert decode_record(record).stats.sampling_rate == RATE
    with pytest.raises(RecordError) as error:
        decode_record(np.random.default_rng(0).bytes(512))
    assert error.value.kind == "decode"
    for factor in (0, 20000, -20000):  # 0 Hz, 20 kHz; a negative factor is a period: 1/20000 Hz is fine
        patched = bytearray(record)
        struct.pack_into(">hh", patched, 32, factor, 1)
        if factor < 0:
            assert decode_record(bytes(patched)).stats.sampling_rate == pytest.approx(1 / 20000)
            continue
        with pytest.raises(RecordError) as error:
            decode_record(bytes(patched))
        assert error.value.kind == "rate"
    assert not plausible_rate(float("nan")) and not plausible_rate(float("inf")) and plausible_rate(1e4)
    assert decode_record(mseed_records.text_records("<x/>")[0]) is None  # text: no samples, not an error


def test_split_records_keeps_partial_records_for_later() -> None:
    trace = Trace(
        np.arange(20000, dtype=np.int32), header=dict(station="A", sampling_rate=RATE, starttime=T0)
    )
    small = b"".join(r.data for r in mseed_records.pack_trace(trace))
    buffer = io.BytesIO()
    trace.write(buffer, format="MSEED", reclen=4096)
    big = buffer.getvalue()
    data = small[:1024] + big + small[1024:1536]
    records, consumed = split_records(data + big[:700])  # a 4096-byte record of which 700 bytes exist
    assert [len(r) for r in records] == [512, 512] + [4096] * (len(big) // 4096) + [512]
    assert consumed == len(data)
    assert split_records(small[:300]) == ([], 0)


# ------------------------------------------------------------------------------- SeedLink client
def test_selected_streams_arrive_complete(archive: tuple[Path, Stream], tmp_path: Path) -> None:
    folder, original = archive
    station_file = tmp_path / "stations.txt"
    station_file.write_text("# from a file\nXX_STA3:--HHN\n")
    expected = original.select(station="STA1") + original.select(station="STA2", channel="HHZ")
    expected += original.select(station="STA3", channel="HHN")

    async def scenario() -> None:
        collector, source, server = await stream_with_fault(
            folder, expected, ["XX_STA1", "XX_STA2:HHZ"], station_file=station_file
        )
        assert_exact(collector.traces, expected, records=server_records(server, expected))
        state = source.state()
        assert state["stats"]["records"] == len(collector.traces)
        assert state["stats"]["decode_errors"] == state["stats"]["duplicates"] == 0
        assert set(state["stations"]) == {"XX_STA1", "XX_STA2", "XX_STA3"}
        sta1 = state["stations"]["XX_STA1"]
        assert sta1["last_end"] == str(T0 + DURATION_S) and sta1["last_seq"] is not None

    run(scenario())


def test_station_wildcard_with_nswildcard(archive: tuple[Path, Stream]) -> None:
    folder, original = archive
    expected = original.select(channel="HHZ")

    async def scenario() -> None:
        collector, source, server = await stream_with_fault(folder, expected, ["XX_ST*:??Z"])
        assert_exact(collector.traces, expected, records=server_records(server, expected))
        assert "NSWILDCARD" in source.capabilities
        assert set(source.state()["stations"]) == {"XX_STA1", "XX_STA2", "XX_STA3"}

    run(scenario())


def test_server_killed_and_restarted_resumes_by_sequence(archive: tuple[Path, Stream]) -> None:
    folder, original = archive
    expected = original.select(station="STA1") + original.select(station="STA3", channel="HHE")

    async def restart(server: SeedLinkReplayServer) -> None:
        await server.stop()
        await asyncio.sleep(0.4)  # the replay clock runs on: data released while the port is closed
        await server.start()

    async def scenario() -> None:
        collector, source, server = await stream_with_fault(
            folder, expected, ["XX_STA1:HH?", "XX_STA3:HHE"], fault=restart
        )
        assert_exact(collector.traces, expected, records=server_records(server, expected))
        assert source.stats.reconnects >= 2  # refused while down, then back
        assert source.stats.duplicates == 0  # the sequence was known: resumed exactly at seq + 1

    run(scenario())


def test_disconnect_clients_fault_resumes_without_gap_or_duplicate(archive: tuple[Path, Stream]) -> None:
    folder, original = archive
    expected = original.select(station="STA2")

    async def drop_twice(server: SeedLinkReplayServer) -> None:
        assert await server.disconnect_clients() == 1
        await asyncio.sleep(0.3)
        assert await server.disconnect_clients() <= 1

    async def scenario() -> None:
        collector, source, server = await stream_with_fault(
            folder, expected, ["XX_STA2:HH?"], fault=drop_twice
        )
        assert_exact(collector.traces, expected, records=server_records(server, expected))
        assert source.stats.reconnects >= 1
        assert source.state()["stations"]["XX_STA2"]["status"] == "disconnected"  # after stop()

    run(scenario())


def test_unknown_sequence_falls_back_to_time(archive: tuple[Path, Stream]) -> None:
    """A server that lost its numbering (renumbered packets) is resumed from the last sample time."""
    folder, original = archive
    expected = original.select(station="STA1") + original.select(station="STA2")
    offset = 0x100000

    async def renumber(server: SeedLinkReplayServer) -> None:
        await server.stop()
        for buffer in server.replay.buffers.values():
            packets = [dataclasses.replace(p, seq=(p.seq + offset) % SEQ_MODULUS,
                                           wire=b"SL%06X" % ((p.seq + offset) % SEQ_MODULUS) + p.wire[8:])
                       for p in buffer.packets]  # fmt: skip
            buffer.packets.clear()
            buffer.packets.extend(packets)
            buffer.next_seq = (buffer.next_seq + offset) % SEQ_MODULUS
        await server.start()

    async def scenario() -> None:
        (
            collector,
            source,
            server,
        ) = await stream_with_fault(  # renumbers the SeedLink 3 (per-station) sequences
            folder, expected, ["XX_STA1", "XX_STA2"], fault=renumber, protocol="3.1"
        )
        assert_exact(collector.traces, expected, records=server_records(server, expected))
        assert all(state.last_seq >= offset for state in source.stations.values())  # new numbering in use
        assert source.stats.duplicates > 0  # whole-second TIME re-sends the overlap; the guard dropped it

    run(scenario())


# --------------------------------------------------------------------------------- scripted server
class ScriptedServer:
    """A bare SeedLink 3 server: no NSWILDCARD, CAT (or only INFO STATIONS), fixed packets after END."""

    def __init__(self, stations: list[str], packets: list[bytes], cat: bool = True, answer_info: bool = True):
        self.stations = stations
        self.packets = packets
        self.cat = cat
        self.answer_info = answer_info
        self.commands: list[str] = []
        self.connections = 0
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while line := await reader.readline():
                command = line.decode().strip()
                self.commands.append(command)
                verb = command.split()[0].upper()
                if verb == "HELLO":
                    writer.write(b"SeedLink v3.1 (scripted) :: SLPROTO:3.1\r\nscripted test server\r\n")
                elif verb == "CAT":
                    listing = "".join(f"XX {s:<5}  test\r\n" for s in self.stations) + "END"
                    writer.write(listing.encode() if self.cat else b"ERROR\r\n")
                elif verb == "INFO" and (self.answer_info or command == "INFO STATIONS"):
                    body = "".join(f'<station name="{s}" network="XX"/>' for s in self.stations)
                    records = mseed_records.text_records(
                        f'<?xml version="1.0"?>\n<seedlink>{body}</seedlink>'
                    )
                    for number, record in enumerate(records, start=1):
                        writer.write((b"SLINFO  " if number == len(records) else b"SLINFO *") + record)
                elif verb == "END":
                    for packet in self.packets:
                        writer.write(packet)
                        await writer.drain()
                elif verb != "INFO":
                    writer.write(b"OK\r\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


def station_records(station: str, seconds: float = 30.0) -> tuple[Trace, list[bytes]]:
    data = np.cumsum(np.random.default_rng(len(station)).integers(-300, 300, int(seconds * RATE))).astype(
        np.int32
    )
    trace = Trace(
        data, header=dict(network="XX", station=station, channel="HHZ", sampling_rate=RATE, starttime=T0)
    )
    return trace, [r.data for r in mseed_records.pack_trace(trace)]


@pytest.mark.parametrize("cat", [True, False], ids=["cat", "info-stations"])
def test_bad_records_are_counted_and_other_stations_keep_flowing(cat: bool) -> None:
    good1, records1 = station_records("STA1")
    good2, records2 = station_records("STA2")

    def patched(record: bytes, offset: int, fmt: str, *values: int) -> bytes:
        out = bytearray(record)
        struct.pack_into(fmt, out, offset, *values)
        return bytes(out)

    bad2 = [
        np.random.default_rng(3).bytes(512),  # noise: no header, no station to blame
        patched(records2[0], 22, ">H", 999),  # day of year 999: libmseed refuses it
        patched(records2[0], 32, ">hh", 20000, 1),  # 20 kHz
        patched(records2[0], 32, ">hh", 0, 0),  # 0 Hz
    ]
    packets, seq = [], {"STA1": 0, "STA2": 0}

    def add(station: str, record: bytes) -> None:
        seq[station] += 1
        packets.append(b"SL%06X" % seq[station] + record)

    for index in range(max(len(records1), len(records2))):
        if index < len(records1):
            add("STA1", records1[index])
        if index == 1:
            for record in bad2:
                add("STA2", record)
        if index < len(records2):
            add("STA2", records2[index])

    async def scenario() -> None:
        server = ScriptedServer(["STA1", "STA2", "OTHER"], packets, cat=cat)
        await server.start()
        collector = Collector()
        source = SeedLinkSource(SeedLinkSourceConfig(port=server.port, selectors=["XX_STA*:HHZ"]), collector)
        await source.start()
        try:
            await until(lambda: collector.complete(Stream([good1, good2])))
            await asyncio.sleep(0.1)
        finally:
            await source.stop()
            await server.stop()
        assert_exact(collector.traces, Stream([good1, good2]), records=len(records1) + len(records2))
        stats = source.stats
        assert (stats.decode_errors, stats.bad_rate, stats.reconnects) == (2, 2, 0)
        assert stats.bytes == 512 * len(packets)
        stations = source.state()["stations"]
        assert (
            stations["XX_STA2"]["errors"] == 3 and stations["XX_STA1"]["errors"] == 0
        )  # noise: unattributed
        assert stations["XX_STA2"]["records"] == len(records2)
        # no NSWILDCARD: the pattern was expanded to concrete stations (via CAT or INFO STATIONS)
        assert "STATION STA1 XX" in server.commands and "STATION STA2 XX" in server.commands
        assert not any(c.startswith("STATION STA*") or "OTHER" in c for c in server.commands)
        assert ("CAT" in server.commands) and (("INFO STATIONS" in server.commands) != cat)

    run(scenario())


def test_keepalive_then_idle_timeout_reconnects() -> None:
    _, records = station_records("STA1", seconds=5)

    async def scenario() -> None:
        server = ScriptedServer(
            ["STA1"], [b"SL%06X" % (i + 1) + r for i, r in enumerate(records)], answer_info=False
        )
        await server.start()
        collector = Collector()
        config = SeedLinkSourceConfig(port=server.port, selectors=["XX_STA1"], keepalive_s=0.1, idle_timeout_s=0.35,
                                      reconnect_min_s=0.05, reconnect_max_s=0.1)  # fmt: skip
        source = SeedLinkSource(config, collector)
        await source.start()
        try:  # the scripted server ignores DATA seq and sends the same records again: all dropped
            await until(lambda: source.stats.duplicates >= len(records), timeout=5)
        finally:
            await source.stop()
            await server.stop()
        assert "INFO ID" in server.commands  # keep-alive sent while silent
        assert f"DATA {len(records) + 1:06X} 2024,03,01,12,00,05" in server.commands  # resume after the last
        assert len(collector.traces) == len(records)
        assert source.stats.reconnects >= 1 and server.connections >= 2

    run(scenario())


# ------------------------------------------------------------------------------------ file sources
def test_directory_source_reads_growing_and_new_files(tmp_path: Path) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    trace_a, records_a = station_records("STA1", seconds=60)  # 512-byte records
    trace_b, _ = station_records("STA2", seconds=60)
    buffer = io.BytesIO()
    trace_b.write(buffer, format="MSEED", reclen=4096)
    bytes_b = buffer.getvalue()
    blob_a = b"".join(records_a)
    cut1, cut2 = 5 * 512, 9 * 512 + 200  # the second piece ends inside a record

    async def scenario() -> None:
        collector = Collector()
        source = DirectorySource(
            DirectorySourceConfig(path=folder, poll_s=0.05, pattern="*.mseed"), collector
        )
        (folder / "a.mseed").write_bytes(blob_a[:cut1])
        (folder / "notes.txt").write_text("not matched by the pattern")
        (folder / "junk.mseed").write_text("not miniSEED either; ignored after one look\n" * 20)
        await source.start()
        try:
            await until(lambda: len(collector.traces) == 5)
            with open(folder / "a.mseed", "ab") as handle:
                handle.write(blob_a[cut1:cut2])
            await until(lambda: len(collector.traces) == 9)
            await asyncio.sleep(0.15)  # the half record stays pending
            assert len(collector.traces) == 9
            with open(folder / "a.mseed", "ab") as handle:
                handle.write(blob_a[cut2:])
            (folder / ".b.mseed.part").write_bytes(bytes_b)  # dot files are not read
            await asyncio.sleep(0.1)
            (folder / ".b.mseed.part").rename(folder / "b.mseed")
            await until(lambda: collector.complete(Stream([trace_a, trace_b])))
            await asyncio.sleep(0.15)
        finally:
            await source.stop()
        assert_exact(
            collector.traces, Stream([trace_a, trace_b]), records=len(records_a) + len(bytes_b) // 4096
        )
        a_ids = [t.stats.starttime for t in collector.traces if t.stats.station == "STA1"]
        assert a_ids == sorted(a_ids)
        state = source.state()
        assert (
            state["files"]["a.mseed"]["offset"] == len(blob_a) and state["files"]["b.mseed"]["reclen"] == 4096
        )
        assert state["files"]["junk.mseed"]["ignored"] and state["stats"]["decode_errors"] == 0

    run(scenario())


def test_directory_source_can_skip_existing_data(tmp_path: Path) -> None:
    trace, records = station_records("STA1", seconds=20)

    async def scenario() -> None:
        (tmp_path / "old.mseed").write_bytes(b"".join(records[:3]))
        collector = Collector()
        config = DirectorySourceConfig(path=tmp_path, poll_s=0.05, read_existing=False)
        source = DirectorySource(config, collector)
        await source.start()
        try:
            await until(lambda: source.polls >= 2)
            with open(tmp_path / "old.mseed", "ab") as handle:
                handle.write(b"".join(records[3:]))
            await until(lambda: len(collector.traces) == len(records) - 3)
        finally:
            await source.stop()
        assert collector.traces[0].stats.starttime == decode_record(records[3]).stats.starttime

    run(scenario())


def test_manager_runs_file_replay_and_directory_on_one_callback(
    archive: tuple[Path, Stream], tmp_path: Path
) -> None:
    folder, original = archive
    trace, records = station_records("STA9", seconds=20)
    (tmp_path / "live.mseed").write_bytes(b"".join(records))
    sac = tmp_path / "other" / "sta.sac"
    sac.parent.mkdir()
    trace.copy().write(str(sac), format="SAC")

    async def scenario() -> None:
        collector = Collector()
        configs = [
            FileReplayConfig(paths=[folder / "STA1.mseed", sac]),
            DirectorySourceConfig(path=tmp_path, poll_s=0.05),
        ]
        manager = SourceManager.from_configs(configs, collector)
        async with manager:
            replay, directory = manager.sources
            assert isinstance(replay, FileReplaySource) and isinstance(directory, DirectorySource)
            await replay.wait()
            await until(lambda: collector.samples(trace.id) >= 2 * trace.stats.npts)  # SAC copy + live file
            state = manager.state()
        assert replay.status == "finished" and state["running"] == 1
        assert state["totals"]["records"] == len(collector.traces)
        assert_exact(
            [t for t in collector.traces if t.stats.station == "STA1"], original.select(station="STA1")
        )
        assert [s["kind"] for s in state["sources"]] == ["files", "directory"]
        assert manager.state()["running"] == 0

    run(scenario())


def test_stop_repeats_a_cancel_the_feed_swallowed() -> None:
    """A feed that loses the first cancel (as Python 3.11's wait_for/timeout can when I/O completes at the same
    moment) still ends on stop(), which cancels again until it lands."""
    from seispick.feed import Source

    class SwallowsFirstCancel(Source):
        swallowed = 0

        async def run(self) -> None:
            while True:
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    if self.swallowed:
                        raise
                    self.swallowed += 1
                    asyncio.current_task().uncancel()  # gone without a trace, as in the races

    async def scenario() -> None:
        source = SwallowsFirstCancel(Collector(), "swallow")
        await source.start()
        await asyncio.sleep(0.05)
        await asyncio.wait_for(source.stop(), 10)
        assert source.swallowed == 1 and source.status == "stopped" and not source.running

    asyncio.run(scenario())
