"""The SeedLink client against fake servers that answer as ringserver 4.5.3 and SeisComP's seedlink 3.3 do
(tests/seedlink_fakes.py), over real TCP on 127.0.0.1: SeedLink 4 with native wildcards, SeedLink 3 when CAT
is not implemented, refused or unanswered, wildcards sent where the server takes them, re-listing for new
stations, resume by sequence (and by time when the ring was reset) exactly once, miniSEED 3 payloads."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
import pytest
from obspy import Stream, Trace, UTCDateTime

from seispick.miniseed.decode import trace_end_ns
from seispick.seedlink.client.commands import seedlink_time, v4_selector
from seispick.seedlink.client.connection import parse_cat
from seispick.seedlink.client.source import SeedLinkSource
from seispick.seedlink.client.source_config import SeedLinkSourceConfig
from seispick.seedlink.protocol import format_iso_time
from tests.seedlink_fakes import (
    FakeRingServer,
    FakeSeisComP,
    Record,
    SeisComPSession,
    mseed3_records,
    trace_records,
)
from tests.test_ingest import Collector, assert_exact, until

T0 = UTCDateTime(2024, 3, 1, 12, 0, 0)
RATE = 50.0
SECONDS = 60.0


def run(coroutine: Coroutine[Any, Any, None], timeout: float = 30.0) -> None:
    asyncio.run(asyncio.wait_for(coroutine, timeout))


def make_stream(stations: list[str], channels: str = "ZN", network: str = "XX", seed: int = 0) -> Stream:
    rng = np.random.default_rng(seed)
    n = int(SECONDS * RATE)
    traces = []
    for station in stations:
        for component in channels:
            data = np.cumsum(rng.integers(-500, 500, n)).astype(np.int32)
            header = dict(network=network, station=station, location="", channel=f"HH{component}",
                          sampling_rate=RATE, starttime=T0)  # fmt: skip
            traces.append(Trace(data, header=header))
    return Stream(traces)


def feed(stream: Stream, reclen: int = 512, encoding: str = "STEIM2") -> list[Record]:
    """Records of every trace in arrival order of a live feed (by end time, channels interleaved)."""
    records = [r for trace in stream for r in trace_records(trace, reclen, encoding)]
    return sorted(records, key=lambda r: (r.end_ns, r.station, r.channel))


def other_record() -> Record:
    """A record of a station nobody asks for: put first in a ring, it takes ringserver's first-packet quirk."""
    return feed(make_stream(["OTHER"], "Z", network="YY", seed=9))[0]


def config(port: int, selectors: list[str], **extra: Any) -> SeedLinkSourceConfig:
    settings: dict[str, Any] = dict(port=port, selectors=selectors, begin_time=T0.datetime, reconnect_min_s=0.05,
                                    reconnect_max_s=0.2, timeout_s=2.0)  # fmt: skip
    return SeedLinkSourceConfig(**(settings | extra))


async def collect(server: Any, selectors: list[str], expected: Stream, *,
                  during: Callable[[Collector, SeedLinkSource], Coroutine[Any, Any, None]] | None = None,
                  **extra: Any) -> tuple[Collector, SeedLinkSource]:  # fmt: skip
    """Stream from ``server`` until every expected sample arrived (running ``during`` meanwhile)."""
    await server.start()
    collector = Collector()
    source = SeedLinkSource(config(server.port, selectors, **extra), collector)
    await source.start()
    try:
        if during is not None:
            await during(collector, source)
        await until(lambda: collector.complete(expected), timeout=15)
        await asyncio.sleep(0.2)  # anything doubled would arrive now
    finally:
        await source.stop()
        await server.stop()
    return collector, source


# ------------------------------------------------------------------------------------ unit level
def test_v4_selectors_are_libslink_conversions() -> None:
    assert v4_selector("BH?") == "*_B_H_?"
    assert v4_selector("00BHZ") == "00_B_H_Z"
    assert v4_selector("--HHZ") == "_H_H_Z"
    assert v4_selector("!LOG") == "!*_L_O_G"
    assert v4_selector("BHZ.D") == "*_B_H_Z.?D"
    assert v4_selector("*") == "*_*"


def test_cat_listing_and_refusals_are_told_apart() -> None:
    assert parse_cat("GE APE   GEOFON Station\n X AB12  x\n").stations == [("GE", "APE"), ("X", "AB12")]
    assert parse_cat("").stations == []
    refused = parse_cat("CAT command not implemented\r\n")
    assert refused.stations is None and "CAT command not implemented" in refused.reason


# -------------------------------------------------------------------------------- ringserver 4.5
def test_ringserver_speaks_v4_with_native_wildcards() -> None:
    original = make_stream(["STA1", "STA2", "STA3"])
    expected = original.select(channel="HHZ")
    server = FakeRingServer([other_record(), *feed(original)])

    async def scenario() -> None:
        collector, source = await collect(server, ["XX_STA*:HHZ"], expected)
        assert_exact(collector.traces, expected, records=len(feed(expected)))
        assert source.protocol == "4.0" and source.wildcards == "native"
        assert {"SLPROTO 4.0", "STATION XX_STA*", "SELECT *_H_H_Z"} <= set(server.commands)
        assert f"DATA ALL {T0.strftime('%Y-%m-%dT%H:%M:%S')}.000000Z" in server.commands
        assert "CAT" not in server.commands and source.stats.reconnects == 0
        assert set(source.state()["stations"]) == {"XX_STA1", "XX_STA2", "XX_STA3"}

    run(scenario())


def test_ringserver_never_sends_the_rings_first_packet_to_a_time_request() -> None:
    """ringserver 4.5.3 positions a time request before its first match, except when the match is the ring's
    first packet: then that packet is skipped. Everything after it arrives; the client does not stall."""
    original = make_stream(["STA1"], "Z")
    records = feed(original)
    server = FakeRingServer(records)
    first = records[0]
    rest = Stream([original[0].copy().trim(starttime=UTCDateTime(ns=first.end_ns))])

    async def scenario() -> None:
        collector, _ = await collect(server, ["XX_STA1"], rest)
        assert_exact(collector.traces, rest, records=len(records) - 1)

    run(scenario())


def test_ringserver_v3_without_cat_lists_stations_by_info_and_keeps_the_session(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SeedLink 3.1 on ringserver: CAT answers 'CAT command not implemented' (no ERROR, no END); the client
    names the refusal once, lists the stations with INFO STATIONS and streams 4096-byte records."""
    expected = make_stream(["STA1", "STA2"])
    for trace in expected:
        trace.data = trace.data.astype(np.float32)  # 4096-byte FLOAT32 records, as in tests/data/real
    records = feed(expected, reclen=4096, encoding="FLOAT32")
    server = FakeRingServer([other_record(), *records])

    async def scenario() -> None:
        with caplog.at_level(logging.WARNING):
            collector, source = await collect(server, ["XX_ST*:HH?"], expected, protocol="3.1")
        assert_exact(collector.traces, expected, records=len(records))
        assert source.protocol == "3.1" and source.wildcards == "INFO STATIONS"
        assert source.stats.reconnects == 0
        assert server.commands[:4] == ["HELLO", "CAT", "INFO STATIONS", "STATION STA1 XX"]
        refusals = [r.getMessage() for r in caplog.records if "CAT command not implemented" in r.getMessage()]
        assert len(refusals) == 1 and "CAT" in source.state()["refusals"]

    run(scenario())


class RingServerWithoutInfo(FakeRingServer):
    """A ringserver whose INFO STATIONS answers an ERR document (as it does once streaming)."""

    def session(self, writer: asyncio.StreamWriter) -> Any:
        session = super().session(writer)
        info = session.info
        session.info = lambda argv: info(["INFO", "NOSUCHLEVEL"] if argv[1:2] == ["STATIONS"] else argv)
        return session


def test_v3_wildcard_goes_to_the_server_when_it_lists_nothing(caplog: pytest.LogCaptureFixture) -> None:
    original = make_stream(["STA1", "STA2"], "Z")
    server = RingServerWithoutInfo([other_record(), *feed(original)])

    async def scenario() -> None:
        with caplog.at_level(logging.WARNING):
            collector, source = await collect(server, ["XX_ST*"], original, protocol="3.1")
        assert_exact(collector.traces, original, records=len(feed(original)))
        assert "STATION ST* XX" in server.commands and source.wildcards == "wildcard"
        assert set(source.refusals) == {"CAT", "INFO STATIONS"} and source.stats.reconnects == 0

    run(scenario())


@pytest.mark.parametrize("protocol", ["4.0", "3.1"])
def test_ringserver_resume_by_sequence_is_exact(protocol: str) -> None:
    """Clients dropped twice mid-feed: each reconnect asks DATA seq+1 with the start of the last packet
    (ringserver's check) and goes on exactly after it: no gap, no record twice, not even a duplicate."""
    original = make_stream(["STA1", "STA2", "STA3"])
    records = feed(original)
    thirds = [records[: len(records) // 3], records[len(records) // 3 : 2 * len(records) // 3],
              records[2 * len(records) // 3 :]]  # fmt: skip
    server = FakeRingServer([other_record(), *thirds[0]])
    expected: list[str] = []

    def resume_times(collector: Collector) -> None:
        """ringserver's check: the time sent is the start of the station's last packet (whole seconds)."""
        last = {t.stats.station: t for t in collector.traces}
        for trace in last.values():
            at = trace.stats.starttime.ns
            expected.append(format_iso_time(at) if protocol == "4.0" else seedlink_time(at))

    async def drop_and_feed(collector: Collector, source: SeedLinkSource) -> None:
        for part, more in enumerate(thirds[1:], start=1):
            await until(lambda part=part: len(collector.traces) == sum(map(len, thirds[:part])))
            resume_times(collector)
            assert await server.disconnect_clients() == 1
            server.add(more)

    async def scenario() -> None:
        collector, source = await collect(server, ["XX_STA1", "XX_STA*"], original, during=drop_and_feed,
                                          protocol=protocol)  # fmt: skip
        assert_exact(collector.traces, original, records=len(records))
        assert source.stats.reconnects >= 2 and source.stats.duplicates == 0
        sent = [
            c.split()[2]
            for c in server.commands
            if c.startswith("DATA ") and c.split()[1:2] != ["ALL"] and len(c.split()) == 3
        ]
        assert sorted(sent) == sorted(expected) and len(sent) == 6  # 3 stations resumed, twice

    run(scenario())


def test_ringserver_with_a_new_ring_resumes_by_time_without_loss_or_doubles() -> None:
    """A restarted ringserver numbered its ring afresh: packet seq+1 exists but starts at another time, so the
    server starts by time; records already delivered come again and are dropped as duplicates."""
    original = make_stream(["STA1", "STA2"])
    records = feed(original)
    half = len(records) // 2
    server = FakeRingServer([other_record(), *records[:half]])

    async def restart_with_new_ring(collector: Collector, source: SeedLinkSource) -> None:
        await until(lambda: len(collector.traces) == half)
        port = server.port
        await server.stop()
        server.ring.clear()
        server.add([other_record(), *feed(make_stream(["STA9"], "Z")), *records])  # renumbered
        server.port = port
        await server.start()

    async def scenario() -> None:
        collector, source = await collect(
            server, ["XX_STA1", "XX_STA2"], original, during=restart_with_new_ring
        )
        assert_exact(collector.traces, original, records=len(records))
        assert source.stats.duplicates > 0

    run(scenario())


@pytest.mark.parametrize("protocol", ["4.0", "3.1"])
def test_mseed3_payloads_are_decoded(protocol: str) -> None:
    original = make_stream(["STA1"])
    records = sorted((r for trace in original for r in mseed3_records(trace)), key=lambda r: r.end_ns)
    server = FakeRingServer([other_record(), *records])

    async def scenario() -> None:
        collector, source = await collect(server, ["XX_STA1"], original, protocol=protocol)
        assert_exact(collector.traces, original, records=len(records))
        assert source.stats.decode_errors == 0

    run(scenario())


def test_v4_keepalive_info_is_answered_and_the_session_stays() -> None:
    original = make_stream(["STA1"], "Z")
    server = FakeRingServer([other_record(), *feed(original)])

    async def silence(collector: Collector, source: SeedLinkSource) -> None:
        await until(lambda: collector.complete(original))
        await asyncio.sleep(1.0)  # ten keep-alive periods of silence

    async def scenario() -> None:
        _, source = await collect(
            server, ["XX_STA1"], original, during=silence, keepalive_s=0.1, idle_timeout_s=0.6
        )
        assert server.commands.count("INFO ID") >= 5 and source.stats.reconnects == 0

    run(scenario())


# ---------------------------------------------------------------------------- SeisComP seedlink
def test_seiscomp_wildcards_expanded_by_cat_and_resumed_exactly() -> None:
    original = make_stream(["STA1", "STA2"])
    records = feed(original)
    half = len(records) // 2
    server = FakeSeisComP([*feed(make_stream(["OTHER"], "Z")), *records[:half]])

    expected: list[str] = []

    async def drop_and_feed(collector: Collector, source: SeedLinkSource) -> None:
        await until(lambda: len(collector.traces) == half)
        for station in (
            "STA1",
            "STA2",
        ):  # seedlink drops packets ending before the time: the oldest channel end
            mine = [t for t in collector.traces if t.stats.station == station]
            oldest = min(trace_end_ns(t) for t in {t.id: t for t in mine}.values())
            expected.append(f"DATA {len(mine):06X} {seedlink_time(oldest)}")  # sequences count from 0
        assert await server.disconnect_clients() == 1
        server.add(records[half:])

    async def scenario() -> None:
        collector, source = await collect(server, ["XX_STA*:HH?"], original, during=drop_and_feed)
        assert_exact(collector.traces, original, records=len(records))
        assert source.protocol == "3.1" and source.wildcards == "CAT" and source.stats.duplicates == 0
        assert not any(c.startswith(("SLPROTO", "CAPABILITIES", "STATION ST*")) for c in server.commands)
        assert "STATION OTHER XX" not in server.commands
        resumes = [c for c in server.commands if c.startswith("DATA ") and len(c.split()) == 3]
        assert resumes == expected  # DATA seq+1 (per-station sequences from 0) and the oldest channel end

    run(scenario())


class SilentCatSeisComP(FakeSeisComP):
    """A seedlink that never answers CAT (no ERROR, no END)."""

    def session(self, writer: asyncio.StreamWriter) -> SeisComPSession:
        session = super().session(writer)
        command = session.command
        session.command = lambda line: None if line.upper() == "CAT" else command(line)  # type: ignore[method-assign]
        return session


def test_unanswered_cat_falls_back_to_info_stations_on_the_same_connection() -> None:
    original = make_stream(["STA1", "STA2"], "Z")
    server = SilentCatSeisComP(feed(original))

    async def scenario() -> None:
        collector, source = await collect(server, ["XX_*:HHZ"], original, timeout_s=0.5)
        assert_exact(collector.traces, original, records=len(feed(original)))
        assert server.connections == 1 and source.stats.reconnects == 0
        assert server.commands[:4] == ["HELLO", "CAT", "HELLO", "INFO STATIONS"]
        assert "unanswered" in source.refusals["CAT"] and source.wildcards == "INFO STATIONS"

    run(scenario())


def test_new_stations_are_subscribed_by_relisting() -> None:
    """A station that appears after the session began is found by the periodic re-listing and subscribed;
    the others resume by sequence without a record twice."""
    first = make_stream(["STA1", "STA2"], "Z")
    later = make_stream(["STA3"], "Z", seed=3)
    server = FakeSeisComP(feed(first))

    async def add_station(collector: Collector, source: SeedLinkSource) -> None:
        await until(lambda: collector.complete(first))
        server.add(feed(later))

    async def scenario() -> None:
        collector, source = await collect(
            server, ["XX_STA*"], first + later, during=add_station, relist_s=0.2
        )
        assert_exact(collector.traces, first + later, records=len(feed(first + later)))
        assert source.resubscriptions >= 1 and source.stats.duplicates == 0
        assert "STATION STA3 XX" in server.commands

    run(scenario())


def test_seiscomp_refused_station_does_not_stop_the_others() -> None:
    original = make_stream(["STA1"], "Z")
    server = FakeSeisComP(feed(original))

    async def scenario() -> None:
        collector, source = await collect(server, ["XX_STA1", "XX_GONE"], original)
        assert_exact(collector.traces, original, records=len(feed(original)))
        assert source.state()["stations"]["XX_GONE"]["status"] == "refused"

    run(scenario())


class RingServerRefusingV4(FakeRingServer):
    """A server that advertises SLPROTO:4.0 but refuses the switch (as ringserver answers a bad version)."""

    def session(self, writer: asyncio.StreamWriter) -> Any:
        session = super().session(writer)
        session.cmd_slproto = lambda argv: session.send("ERROR UNSUPPORTED unsupported protocol version\r\n")
        return session


def test_refused_slproto_falls_back_to_v3_on_the_same_connection(caplog: pytest.LogCaptureFixture) -> None:
    original = make_stream(["STA1"], "Z")
    server = RingServerRefusingV4([other_record(), *feed(original)])

    async def scenario() -> None:
        with caplog.at_level(logging.WARNING):
            collector, source = await collect(server, ["XX_STA1"], original)
        assert_exact(collector.traces, original, records=len(feed(original)))
        assert source.protocol == "3.1" and server.connections == 1
        assert server.commands[:3] == ["HELLO", "SLPROTO 4.0", "STATION STA1 XX"]
        assert any("unsupported protocol version" in r.getMessage() for r in caplog.records)

    run(scenario())


def test_a_stop_that_arrives_as_a_packet_wait_times_out_ends_the_stream() -> None:
    """Python 3.11's ``asyncio.timeout`` can turn a cancel that coincides with its expiry into TimeoutError; the
    streaming loop, which polls on timeouts, must take it as the stop it is rather than poll on forever."""

    class CancelledAsTimeout:
        calls = 0

        async def packet(self, timeout: float) -> None:
            self.calls += 1
            asyncio.current_task().cancel()  # the stop...
            try:
                await asyncio.sleep(1.0)
            except asyncio.CancelledError:
                raise asyncio.TimeoutError from None  # ...swallowed into the read's timeout, as 3.11 can

        async def send(self, command: str) -> None:
            pass

    async def scenario() -> None:
        source = SeedLinkSource(config(1, ["XX_STA1"]), Collector())
        conn = CancelledAsTimeout()
        task = asyncio.create_task(source._stream(conn))
        done, _ = await asyncio.wait({task}, timeout=3.0)
        if not done:
            task.cancel()
        assert done and task.cancelled(), "the stream went on polling after the stop"
        assert conn.calls == 1

    run(scenario())


def test_station_state_times_are_obspy_strings() -> None:
    """A station's state words its last end and arrival as ``str(UTCDateTime)`` does, without building one."""
    from seispick.seedlink.client.source import StationState

    rng = np.random.default_rng(5)
    for ns, arrival in zip(rng.integers(0, 4 * 10**18, 2000), rng.uniform(1.5e9, 1.9e9, 2000)):
        state = StationState("XX", "STA", (), last_end_ns=int(ns), last_arrival=float(arrival))
        row = state.as_dict()
        assert row["last_end"] == str(UTCDateTime(ns=int(ns)))
        assert row["last_arrival"] == str(UTCDateTime(float(arrival)))
