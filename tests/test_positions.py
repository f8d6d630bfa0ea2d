"""Kept positions: the stores (an atomic file, a Redis hash), the keeper that writes a position only once the picks
before it are delivered, and positions that never pass data whose picks are not yet final."""

from __future__ import annotations

import asyncio
import io
import json
import os
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import obspy
import pytest
import redis
from prometheus_client import CollectorRegistry

from seispick.miniseed.decode import trace_end_ns
from seispick.picking.results import Pick
from seispick.seedlink.client.connection import Packet
from seispick.seedlink.client.source_config import SeedLinkSourceConfig
from seispick.service.ingest.folder import DirectorySource, DirectorySourceConfig, split_records
from seispick.service.ingest.manager import SourceManager
from seispick.service.settings import Settings, StreamingSettings
from seispick.service.stream import positions as positions_module
from seispick.service.stream.job_metrics import StreamMetrics
from seispick.service.stream.positions import (
    FilePositionStore,
    PositionKeeper,
    RedisPositionStore,
    WarmUp,
    combine,
    make_store,
)
from seispick.service.stream.runtime import StreamingRuntime
from tests.streams import event_hour
from tests.test_streaming_e2e import REDIS_URL, redis_available


# ------------------------------------------------------------------------------------------------ stores
def test_file_store_round_trip_merges_and_replaces_atomically(tmp_path, monkeypatch):
    store = FilePositionStore(tmp_path / "state")
    assert asyncio.run(store.load()) == {}
    asyncio.run(store.save({"a|X_A": {"seq": 1}, "a|X_B": {"seq": 2}}))
    asyncio.run(store.save({"a|X_A": {"seq": 3}}))
    path = tmp_path / "state" / "positions.json"
    assert json.loads(path.read_text()) == {"a|X_A": {"seq": 3}, "a|X_B": {"seq": 2}}
    assert asyncio.run(FilePositionStore(tmp_path / "state").load()) == {
        "a|X_A": {"seq": 3},
        "a|X_B": {"seq": 2},
    }
    assert os.listdir(tmp_path / "state") == ["positions.json"]  # no temporary file left

    def crash(*args):  # the process dies between writing the temporary file and the rename
        raise OSError("killed")

    monkeypatch.setattr(positions_module.os, "replace", crash)
    with pytest.raises(OSError):
        asyncio.run(store.save({"a|X_A": {"seq": 4}}))
    assert json.loads(path.read_text())["a|X_A"] == {"seq": 3}  # the file is the old one, whole


def test_file_store_unreadable_file_starts_empty(tmp_path):
    (tmp_path / "positions.json").write_text('{"a|X_A": {"se')  # torn (not by us: we rename)
    assert asyncio.run(FilePositionStore(tmp_path).load()) == {}


def test_store_choice_needs_redis_or_a_state_dir(tmp_path):
    assert isinstance(make_store(None, "k", tmp_path), FilePositionStore)
    assert isinstance(make_store(REDIS_URL, "k", tmp_path), RedisPositionStore)
    with pytest.raises(ValueError, match="state_dir"):
        make_store(None, "k", None)


@pytest.mark.skipif(not redis_available(), reason="needs the Redis server at 127.0.0.1:6379")
def test_redis_store_round_trip_one_field_per_position():
    key = f"seispick:test:{uuid.uuid4().hex[:8]}:positions"
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)

    async def main() -> dict:
        store = RedisPositionStore(REDIS_URL, key)
        await store.save({"s|X_A": {"seq": 7, "channels": {"X.A..HHZ": 5}}})
        await store.save({"s|X_B": {"seq": 8}})
        await store.save({"s|X_A": {"seq": 9, "channels": {}}})
        await store.close()
        other = RedisPositionStore(REDIS_URL, key)  # another replica, rescheduled
        try:
            return await other.load()
        finally:
            await other.close()

    try:
        assert asyncio.run(main()) == {"s|X_A": {"seq": 9, "channels": {}}, "s|X_B": {"seq": 8}}
        assert set(client.hkeys(key)) == {"s|X_A", "s|X_B"}
    finally:
        client.delete(key)


def test_redis_store_unreachable_at_start_gives_up_with_nothing(monkeypatch):
    monkeypatch.setattr(positions_module, "LOAD_ATTEMPTS", 2)
    store = RedisPositionStore("redis://127.0.0.1:1/0", "k", timeout_s=0.2)

    async def main() -> dict:
        try:
            return await store.load()
        finally:
            await store.close()

    assert asyncio.run(main()) == {}


# ------------------------------------------------------------------------------------------------ keeper
class MemoryStore:
    def __init__(self) -> None:
        self.saved: dict = {}

    async def load(self) -> dict:
        return dict(self.saved)

    async def save(self, positions: dict) -> None:
        self.saved.update(positions)

    async def close(self) -> None:
        pass


def test_keeper_writes_a_position_only_once_the_picks_before_it_are_delivered():
    outbox = SimpleNamespace(accepted=0, delivered=0)
    store = MemoryStore()
    keeper = PositionKeeper(store, SimpleNamespace(outbox=outbox))  # type: ignore[arg-type]
    outbox.accepted = 3  # three picks handed over...
    keeper.offer({"s|X_A": {"seq": 10}})  # ...then the position that covers them
    outbox.accepted = 5
    keeper.offer({"s|X_A": {"seq": 20}})
    outbox.delivered = 2
    assert asyncio.run(keeper.flush()) == 0 and store.saved == {}  # the third pick is not in Redis yet
    outbox.delivered = 3
    assert asyncio.run(keeper.flush()) == 1 and store.saved == {"s|X_A": {"seq": 10}}
    outbox.delivered = 5
    asyncio.run(keeper.flush())
    assert store.saved == {"s|X_A": {"seq": 20}}
    assert asyncio.run(keeper.flush()) == 0  # unchanged: not written again


def test_keeper_takes_the_lowest_file_offset_once_every_worker_offered_one():
    assert combine({0: {"offset": 900}}, slots=2) is None
    assert combine({0: {"offset": 900}, 1: {"offset": 512}}, slots=2) == {"offset": 512}
    assert combine({1: {"seq": 4}}, slots=2) == {"seq": 4}  # a station: its one worker


def test_warm_up_drops_only_published_picks_of_the_first_window_after_a_resume():
    warm = WarmUp({"XX.AAA..HH": 1000.0}, window_s=30.0)
    warm.observe("XX.AAA..HH", 900.0)  # the first record re-read starts at 900: warm until 930
    warm.observe("XX.AAA..HH", 950.0)  # later records change nothing

    def pick(start: float, end: float, trace_id: str = "XX.AAA..HH") -> Pick:
        t = obspy.UTCDateTime
        return Pick(trace_id, "P", t(start + 0.1), 0.9, t(start), t(end), "m")

    assert not warm.keep(pick(910.0, 911.0))  # partial stack, and published before
    assert warm.keep(pick(935.0, 936.0))  # an unbroken run's pick: the dedupe absorbs it
    assert warm.keep(pick(925.0, 1001.0))  # not published before: it goes out
    assert warm.keep(pick(910.0, 911.0, "XX.BBB..HH"))  # another instrument
    assert warm.dropped == 1


# ------------------------------------------------------------------------- never past unpublished data
def records_of(stream: obspy.Stream) -> list[bytes]:
    """512-byte miniSEED records of every channel, in end-time order (as a SeedLink server sends them)."""
    out = []
    for trace in stream:
        trace.data = np.round(trace.data * 100).astype(np.int32)
        buffer = io.BytesIO()
        trace.write(buffer, format="MSEED", reclen=512, encoding="STEIM2")
        out += split_records(buffer.getvalue())[0]
    ends = {record: trace_end_ns(obspy.read(io.BytesIO(record))[0]) for record in out}
    return sorted(out, key=lambda record: ends[record])


def test_seedlink_positions_never_pass_data_whose_picks_are_not_final(shipped_model, tmp_path):
    stream, _ = event_hour(obspy.UTCDateTime(2024, 6, 1), station="AAA", seed=3)
    stream.trim(endtime=stream[0].stats.starttime + 300)
    records = records_of(stream)
    ends = [trace_end_ns(obspy.read(io.BytesIO(r))[0]) for r in records]
    settings = Settings(streaming=StreamingSettings(keep_positions=True, state_dir=tmp_path))
    gate = asyncio.Event()
    emitted: list = []

    async def predict(name: str, windows: np.ndarray) -> np.ndarray:
        await gate.wait()  # inference held: no window comes back until the gate opens
        return await asyncio.to_thread(shipped_model.predict, windows)

    async def main() -> tuple[dict, dict, float | None]:
        runtime = StreamingRuntime(settings, shipped_model, predict, StreamMetrics(CollectorRegistry()))
        runtime._sink = emitted.append  # type: ignore[assignment]
        await runtime.picker.start()
        config = SeedLinkSourceConfig(host="127.0.0.1", port=1, selectors=["XX_AAA"])
        source = runtime._source(config)
        assert source is not None
        runtime.sources = SourceManager([source])
        for seq, record in enumerate(records, start=1):
            await source._on_packet(Packet("data", seq, record))  # type: ignore[attr-defined]
        held = runtime.positions()
        gate.set()
        await runtime.picker.drain()
        released = runtime.positions()
        final = runtime.picker.final_until("XX.AAA..HH")
        await runtime.picker.stop(flush=False)
        return held, released, final

    held, released, final = asyncio.run(main())
    key = "seedlink://127.0.0.1:1|XX_AAA"
    assert key not in held  # every window held: nothing is final, no record may be passed
    assert final is not None
    limit = (final - 30.0 - 10.0) * 1e9  # one PhaseNet window and the margin behind the final point
    seq = released[key]["seq"]
    assert 1 < seq < len(records)  # moved, but not to the end: the last window is not final
    assert all(end <= limit for end in ends[:seq])  # it and every record before it are final
    assert ends[seq] > limit  # the next one is not
    assert released[key]["channels"]["XX.AAA..HHZ"] <= limit
    assert released["final|XX.AAA..HH"]["final"]["XX.AAA..HH"] < final


def test_folder_positions_stop_before_the_first_record_not_final_and_resume_there(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    stream, _ = event_hour(obspy.UTCDateTime(2024, 6, 1), station="AAA", seed=4)
    stream.trim(endtime=stream[0].stats.starttime + 120)
    records = records_of(stream)
    path = folder / "XX.AAA.mseed"
    path.write_bytes(b"".join(records))
    delivered: list[obspy.Trace] = []

    async def on_trace(trace: obspy.Trace) -> None:
        delivered.append(trace)

    config = DirectorySourceConfig(path=folder, poll_s=0.1)

    async def read(source: DirectorySource) -> None:
        for _ in range(3):  # first look, then unchanged: released
            await source.poll()

    source = DirectorySource(config, on_trace)
    source.track_positions = True
    asyncio.run(read(source))
    assert len(delivered) == len(records)
    cut = sorted(trace_end_ns(t) for t in delivered)[len(records) // 2]  # final up to the middle
    kept = source.positions(lambda trace_id: cut)[str(path)]
    offsets = np.cumsum([0] + [len(r) for r in records])
    ends = [trace_end_ns(obspy.read(io.BytesIO(r))[0]) for r in records]
    index = int(np.searchsorted(offsets, kept["offset"]))
    assert offsets[index] == kept["offset"]  # on a record boundary
    assert all(end <= cut for end in ends[:index]) and ends[index] > cut  # the first record not final
    assert source.positions(lambda trace_id: float("inf"))[str(path)]["offset"] == len(path.read_bytes())

    delivered.clear()  # a restart from the kept position reads from there, the file having grown meanwhile
    with open(path, "ab") as out:
        out.write(records[0])
    again = DirectorySource(config, on_trace)
    again.track_positions = True
    again.seed(str(path), kept)
    asyncio.run(read(again))
    assert len(delivered) == len(records) - index + 1


def test_positions_setting_is_documented_and_checked():
    fields = StreamingSettings.model_fields
    for name in ("keep_positions", "state_dir", "positions_key", "positions_every_s", "resume_margin_s"):
        assert fields[name].description, name
    with pytest.raises(ValueError):
        StreamingSettings(positions_every_s=0)
    assert Path(str(StreamingSettings(state_dir="/tmp/x").state_dir)) == Path("/tmp/x")


def test_seeded_stations_on_ringserver_all_resume_from_the_oldest_kept_position():
    """ringserver positions a connection at the newest packet its stations ask for: the others would lose the
    packets in between (seen against ringserver 4.5.3: one record per channel of the station behind)."""
    from seispick.seedlink.client.source import SeedLinkSource

    async def ignore(trace: obspy.Trace) -> None:
        pass

    config = SeedLinkSourceConfig(host="127.0.0.1", port=1, selectors=["XX_AAA", "XX_BBB"])
    source = SeedLinkSource(config, ignore)
    older = {
        "seq": 100,
        "protocol": "4.0",
        "start_ns": 1_000_000_000_000,
        "channels": {"XX.AAA..HHZ": 1_003 * 10**9},
    }
    newer = {
        "seq": 140,
        "protocol": "4.0",
        "start_ns": 1_010_000_000_000,
        "channels": {"XX.BBB..HHZ": 1_013 * 10**9},
    }
    assert source.seed(("XX", "AAA"), older) and source.seed(("XX", "BBB"), newer)
    source.protocol = "4.0"
    source._hello = SimpleNamespace(software="RingServer/4.5.3")  # type: ignore[assignment]
    for key in (("XX", "AAA"), ("XX", "BBB")):
        assert source._start_commands(source.stations[key])[0].startswith("DATA 101 ")
    source._hello = SimpleNamespace(software="SeisComP seedlink")  # type: ignore[assignment]
    assert source._start_commands(source.stations[("XX", "BBB")])[0].startswith("DATA 141 ")  # its own
