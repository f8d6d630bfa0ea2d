"""Watched folders with files as ObsPy writes them: every record used whatever the channel order.

``Stream.write(path, format="MSEED")`` with its defaults writes all records of one channel, then the next
(E, N, Z after ``Stream.sort()``). Such files, for several stations and several days apart plus a
vertical-only station, are copied into the folder a running service watches; the stream must give the
picks ``seispick pick`` finds in the same files, with no record counted late, duplicate or missing.
"""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
import time
from pathlib import Path

import obspy
from click.testing import CliRunner

from seispick.cli.main import cli
from seispick.miniseed import pack as mseed_records
from seispick.service.ingest.folder import DirectorySource, DirectorySourceConfig, FileReplaySource
from seispick.service.settings import Settings, StreamingSettings
from seispick.service.stream.runtime import DEMO_DIR
from tests.service_harness import ServiceHarness

DAY = 86400.0


def channel_order_files(folder: Path) -> list[Path]:
    """Demo stations on two days (3 days apart), one vertical-only station; ObsPy's default writer."""
    paths = []
    for path in sorted(DEMO_DIR.glob("*.mseed")):
        original = obspy.read(str(path))
        for day in (0, 3):
            stream = original.copy()
            for trace in stream:
                trace.stats.starttime += day * DAY
            stream.sort()  # E, N, Z: one channel after another in the file
            out = folder / f"{path.stem}.day{day}.mseed"
            stream.write(str(out), format="MSEED")
            paths.append(out)
    vertical = obspy.read(str(DEMO_DIR / "SP.DEMO2.mseed")).select(component="Z")
    for trace in vertical:
        trace.stats.station = "VERT"
        trace.stats.starttime += 1 * DAY
    out = folder / "SP.VERT.day1.mseed"
    vertical.write(str(out), format="MSEED")
    return paths + [out]


def file_channel_runs(path: Path) -> list[str]:
    """Channels in the order their records appear in the file (runs collapsed)."""
    runs: list[str] = []
    data = path.read_bytes()
    for pos in range(0, len(data), 4096):
        channel = data[pos + 15 : pos + 18].decode()
        if not runs or runs[-1] != channel:
            runs.append(channel)
    return runs


def offline_picks(paths: list[Path], model: str) -> set[tuple[str, str, int]]:
    """``seispick pick`` on the files, as :func:`pick_key`."""
    result = CliRunner().invoke(cli, ["pick", *map(str, paths), "--model", model, "--quiet"])
    assert result.exit_code == 0, result.output
    rows = csv.DictReader(io.StringIO(result.stdout))
    return {pick_key(r) for r in rows}


def pick_key(row: dict) -> tuple[str, str, int]:
    """(trace_id, phase, peak time in centiseconds), the parts of a pick's id."""
    return row["trace_id"], row["phase"], round(obspy.UTCDateTime(row["peak_time"]).timestamp * 100)


def test_obspy_files_copied_into_a_watched_folder_give_the_offline_picks(tmp_path: Path) -> None:
    source = tmp_path / "written"
    source.mkdir()
    watched = tmp_path / "incoming"
    watched.mkdir()
    paths = channel_order_files(source)
    assert file_channel_runs(paths[0]) == ["HHE", "HHN", "HHZ"]  # the layout that lost data
    model = "phasenet-ta109c"
    expected = offline_picks(paths, model)
    assert len(expected) >= 10

    settings = Settings(
        models=[model],
        streaming=StreamingSettings(model=model, watch_dirs=[watched], silence_timeout_s=2.0),
    )
    with ServiceHarness(settings, timeout=120) as service:
        time.sleep(1.5)  # the service runs and has polled the empty folder
        for path in paths:  # copied in while it runs, oldest day first
            shutil.copy(path, watched / path.name)
        deadline = time.time() + 90
        while time.time() < deadline:
            stations = service.get("/v1/stations").json()
            rows = stations["stations"]
            done = len(rows) == 4 and all(
                r["state"] == "silent" and r["windows_in_flight"] == 0 for r in rows
            )
            if done and sum(r["picks"] for r in rows) > 0:
                time.sleep(1.0)
                break
            time.sleep(0.5)
        got = service.get("/v1/picks", params={"limit": 10_000}).json()["picks"]
        stations = service.get("/v1/stations").json()

    rows = {r["trace_id"]: r for r in stations["stations"]}
    assert set(rows) == {"SP.DEMO1..HH", "SP.DEMO2..HH", "SP.DEMO3..HH", "SP.VERT..HH"}
    for name, row in rows.items():
        assert row["late_records"] == 0 and row["duplicate_records"] == 0, (name, row)
    written = sum(obspy.read(str(p))[0].stats.npts * len(obspy.read(str(p))) for p in paths)
    assert sum(r["samples"] for r in rows.values()) == written, "samples were lost"
    assert rows["SP.DEMO1..HH"]["gaps"] == 1  # day 0 and day 3 are two segments
    picks = [p for p in got if p["id"].startswith("pick-")]
    ids = [p["id"] for p in picks]
    assert len(ids) == len(set(ids)), "a pick was published twice"
    got_set = {pick_key(p) for p in picks}
    assert got_set == expected, f"missing {sorted(expected - got_set)}, extra {sorted(got_set - expected)}"
    assert any(trace_id == "SP.VERT..HH" for trace_id, _, _ in expected)


class Polled:
    """A DirectorySource driven poll by poll (no timing), keeping what each poll delivered."""

    def __init__(self, folder: Path) -> None:
        self.batches: list[list[obspy.Trace]] = []
        self.source = DirectorySource(DirectorySourceConfig(path=folder), self._on_trace)

    async def _on_trace(self, trace: obspy.Trace) -> None:
        self.batches[-1].append(trace)

    def poll(self) -> list[obspy.Trace]:
        self.batches.append([])
        asyncio.run(self.source.poll())
        return self.batches[-1]

    @property
    def traces(self) -> list[obspy.Trace]:
        return [t for batch in self.batches for t in batch]


def assert_time_order(traces: list[obspy.Trace]) -> None:
    """Per instrument, no record ends before a record delivered earlier started."""
    latest: dict[str, int] = {}
    for trace in traces:
        inst = trace.id[:-1]
        end = trace.stats.endtime.ns
        assert end > latest.get(inst, -(2**62)), f"{trace.id} {trace.stats.starttime} came after later data"
        latest[inst] = max(latest.get(inst, trace.stats.starttime.ns), trace.stats.starttime.ns)


def samples(paths: list[Path]) -> int:
    return sum(tr.stats.npts for p in paths for tr in obspy.read(str(p)))


def test_a_copy_caught_half_way_waits_and_day_files_come_oldest_first(tmp_path: Path) -> None:
    written = tmp_path / "written"
    written.mkdir()
    day0, day3 = channel_order_files(written)[:2]
    folder = tmp_path / "in"
    folder.mkdir()
    polled = Polled(folder)
    assert polled.poll() == []
    blob = day3.read_bytes()
    (folder / "a-newer.mseed").write_bytes(blob[: len(blob) // 3])  # HHE and a little HHN so far
    shutil.copy(day0, folder / "b-older.mseed")
    assert polled.poll() == []  # first look at both: a copy may be in progress
    with open(folder / "a-newer.mseed", "ab") as handle:
        handle.write(blob[len(blob) // 3 :])
    out = polled.poll()  # both read to the end: the newer file grew, the older one did not change
    assert sum(t.stats.npts for t in out) == samples([day0, day3])
    assert [t.stats.starttime < day3_start(day3) for t in out] == sorted(
        (t.stats.starttime < day3_start(day3) for t in out), reverse=True
    ), "the older day must come first whatever the file names"
    assert_time_order(out)
    assert polled.poll() == [] and polled.source.out_of_order == 0


def day3_start(path: Path) -> obspy.UTCDateTime:
    return min(tr.stats.starttime for tr in obspy.read(str(path)))


def test_an_interleaved_file_is_delivered_while_it_grows(tmp_path: Path) -> None:
    """A file appended as recorded (records of E, N and Z alternate) flows before it is complete."""
    stream = obspy.read(str(DEMO_DIR / "SP.DEMO1.mseed"))
    records = sorted(
        (r for tr in stream for r in mseed_records.pack_trace(tr)),
        key=lambda r: (r.start_ns, r.channel),
    )
    blob = b"".join(r.data for r in records)
    polled = Polled(tmp_path)
    target = tmp_path / "live.mseed"
    pieces = 6
    size = len(blob) // pieces // 512 * 512
    for k in range(pieces):
        with open(target, "ab") as handle:
            handle.write(blob[k * size : (k + 1) * size] if k < pieces - 1 else blob[k * size :])
        polled.poll()
        if k == pieces - 2:
            before_the_end = len(polled.traces)
    polled.poll()  # unchanged: complete
    assert len(records) / 2 < before_the_end < len(records)
    assert len(polled.traces) == len(records)
    assert sum(t.stats.npts for t in polled.traces) == 3 * 60000
    assert_time_order(polled.traces)
    assert polled.source.out_of_order == 0


def test_a_slow_channel_after_channel_copy_is_counted_and_logged(tmp_path: Path, caplog) -> None:
    """A pause longer than a poll between channels looks like a finished file: not silent, counted."""
    written = tmp_path / "written"
    written.mkdir()
    blob = channel_order_files(written)[0].read_bytes()
    folder = tmp_path / "in"
    folder.mkdir()
    polled = Polled(folder)
    (folder / "slow.mseed").write_bytes(blob[: len(blob) // 4])  # only HHE so far
    polled.poll()
    polled.poll()  # unchanged for a poll: taken as complete, HHE goes out
    with open(folder / "slow.mseed", "ab") as handle:
        handle.write(blob[len(blob) // 4 :])
    with caplog.at_level("WARNING"):
        polled.poll()
        polled.poll()
    assert sum(t.stats.npts for t in polled.traces) == 3 * 60000  # nothing is dropped here
    assert polled.source.out_of_order > 0
    assert polled.source.state()["out_of_order_records"] == polled.source.out_of_order
    assert any("channel after channel" in r.getMessage() and "slow.mseed" in r.getMessage()
               for r in caplog.records)  # fmt: skip


def test_file_replay_delivers_channel_after_channel_files_in_time_order(tmp_path: Path) -> None:
    paths = channel_order_files(tmp_path)[:2]
    traces: list[obspy.Trace] = []

    async def on_trace(trace: obspy.Trace) -> None:
        traces.append(trace)

    async def scenario() -> None:
        source = FileReplaySource(paths, on_trace)
        await source.start()
        await source.wait()

    asyncio.run(asyncio.wait_for(scenario(), 30))
    assert sum(t.stats.npts for t in traces) == samples(paths)
    assert_time_order(traces)
