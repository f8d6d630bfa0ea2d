"""The publication layer against a real redis-server that each test starts (and stops) on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest
import redis
from obspy import UTCDateTime
from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from seispick.picking.results import Detection, Pick
from seispick.service.publish.outbox import SPILL_FILE, SpillQueue
from seispick.service.publish.publisher import PICK_FIELDS, PickPublisher

SCHEMA = json.loads(
    (Path(__file__).parents[1] / "seispick" / "service" / "publish" / "pick_schema.json").read_text()
)
T0 = UTCDateTime("2024-05-01T12:00:00")
SHA = "ab" * 32

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


class RedisServer:
    """A redis-server subprocess without persistence; ``stop`` saves a snapshot so ``start`` brings data back.

    ``durable`` turns on an fsync-always AOF instead, so that even ``kill`` (SIGKILL) loses nothing Redis
    acknowledged: what is missing after a restart is then the publisher's fault.
    """

    def __init__(self, directory: Path, durable: bool = False) -> None:
        self.dir = directory
        self.durable = durable
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"] if self.durable else ["--appendonly", "no"]
        )
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *persistence]
            + ["--daemonize", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        """Take the server down (SHUTDOWN SAVE: what it held comes back with ``start``, as after an outage)."""
        assert self.process is not None
        with contextlib.suppress(redis.ConnectionError):
            redis.Redis(port=self.port, retry=Retry(NoBackoff(), 0)).shutdown(save=True)
        self.process.wait(10)
        self.process = None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """Not started: tests call ``start()`` (some publish while it is still down)."""
    directory = tmp_path / "redis"
    directory.mkdir()
    srv = RedisServer(directory)
    yield srv
    srv.kill()


def make_pick(i: int, network: str = "XX", station: str = "STA", phase: str = "P") -> Pick:
    peak = T0 + i
    return Pick(
        f"{network}.{station}..HH", phase, peak, 0.5 + (i % 50) / 100, peak - 0.5, peak + 0.4, "phasenet", SHA
    )


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def stream_ids(url: str, stream: str = "seispick:picks") -> list[str]:
    async with Redis.from_url(url, decode_responses=True) as client:
        return [fields["id"] for _, fields in await client.xrange(stream)]


def test_ids_are_deterministic():
    pick = make_pick(1)
    assert pick.id == make_pick(1).id != make_pick(2).id
    assert pick.id.startswith("pick-") and len(pick.id) == 5 + 16
    jitter = Pick(
        pick.trace_id, "P", pick.peak_time + 0.001, 0.9, pick.start_time, pick.end_time, "other", SHA
    )
    assert jitter.id == pick.id  # same 10 ms bucket, same weights
    assert replace(pick, model_sha256="cd" * 32).id != pick.id
    assert replace(pick, peak_time=pick.peak_time + 0.01).id != pick.id
    det = Detection("XX.STA..HH", T0, T0 + 3, 0.8, "cnq", SHA)
    assert det.id.startswith("det-") and det.id == det.id


def test_stream_pubsub_exactly_once(server: RedisServer):
    server.start()

    async def main() -> None:
        async with Redis.from_url(server.url, decode_responses=True) as client:
            pubsub = client.pubsub()
            await pubsub.subscribe("seispick:picks:live")
            await pubsub.get_message(timeout=1)  # the subscribe confirmation

            publisher = PickPublisher(server.url)
            await publisher.start()
            picks = [make_pick(i, station=f"S{i % 3}", phase="PS"[i % 2]) for i in range(20)]
            ids = publisher.publish_many(picks)
            detection = Detection("XX.S1.00.HH", T0, T0 + 4, 0.75, "cnq", SHA, cell=3, cell_probability=0.5)
            det_id = publisher.publish(detection)
            assert publisher.publish(picks[0]) == ids[0]  # a retry by the caller
            await wait_for(lambda: publisher.depth == 0)

            entries = await client.xrange("seispick:picks")
            assert [fields["id"] for _, fields in entries] == ids
            for (_, fields), pick in zip(entries, picks):
                assert list(fields) == list(PICK_FIELDS)
                jsonschema.validate(fields, SCHEMA)
                assert fields["trace_id"] == pick.trace_id and fields["phase"] == pick.phase
                assert (fields["network"], fields["station"], fields["location"]) == (
                    "XX",
                    pick.trace_id.split(".")[1],
                    "",
                )
                assert UTCDateTime(fields["peak_time"]) == pick.peak_time
                assert float(fields["probability"]) == pytest.approx(pick.probability, abs=1e-6)
            (_, det_fields), *_ = await client.xrange("seispick:detections")
            jsonschema.validate(det_fields, SCHEMA)
            assert (det_fields["id"], det_fields["cell"], det_fields["location"]) == (det_id, "3", "00")
            assert await client.ttl(f"seispick:picks:seen:{ids[0]}") > 0

            messages = []
            while len(messages) < len(ids):
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
                assert message is not None, "pub/sub message missing"
                messages.append(json.loads(message["data"]))
            assert [m["id"] for m in messages] == ids and messages[0] == dict(entries[0][1])
            await pubsub.aclose()

            s1 = [p.id for p in picks if p.trace_id == "XX.S1..HH"]
            newest = await publisher.recent_from_redis(station="S1", limit=3, page=2)
            assert [r.id for r in newest] == s1[-3:] and newest[0].fields == dict(
                entries[ids.index(s1[-3])][1]
            )
            oldest = await publisher.recent_from_redis(
                station="S1", phase="S", since=T0 - 86400, limit=2, page=3
            )
            assert [r.id for r in oldest] == [
                p.id for p in picks if p.trace_id == "XX.S1..HH" and p.phase == "S"
            ][:2]
            assert await publisher.recent_from_redis(since=UTCDateTime() + 60) == []
            assert [r.id for r in await publisher.recent_from_redis(kind="detection")] == [det_id]
            await publisher.stop()

            # A restarted publisher (no memory of what it sent) publishing the same picks adds nothing.
            again = PickPublisher(server.url)
            await again.start()
            again.publish_many(picks[:5])
            again.publish(make_pick(100))
            await wait_for(lambda: again.depth == 0)
            await again.stop()
            assert again.duplicates == 5
            assert await stream_ids(server.url) == [*ids, make_pick(100).id]

    asyncio.run(main())


def test_redis_outage_of_20_s(tmp_path: Path):
    """Picks published every 50 ms; redis-server killed (SIGKILL) for 20 s mid-stream: all arrive, in order, once."""
    server = RedisServer(tmp_path, durable=True)
    server.start()
    try:
        asyncio.run(_outage(server))
    finally:
        server.kill()


async def _outage(server: RedisServer) -> None:
    publisher = PickPublisher(server.url, max_backoff_s=0.5, socket_timeout_s=1.0)
    await publisher.start()
    ids: list[str] = []
    running = True

    async def produce() -> None:
        i = 0
        while running:
            ids.append(publisher.publish(make_pick(i, station=f"S{i % 7}")))
            i += 1
            await asyncio.sleep(0.05)

    producer = asyncio.create_task(produce())
    await asyncio.sleep(1.0)
    await asyncio.to_thread(server.kill)
    down_at = len(ids)
    await asyncio.sleep(20.0)
    assert publisher.depth > 300 and publisher.failures > 0 and not publisher.outbox.healthy
    await asyncio.to_thread(server.start)
    await asyncio.sleep(1.0)
    running = False
    await producer
    await wait_for(lambda: publisher.depth == 0)
    assert len(ids) - down_at > 300
    assert await stream_ids(server.url) == ids  # every pick, in order, once
    assert publisher.delivered >= len(ids)
    await publisher.stop()


def test_spill_to_disk_and_restart(server: RedisServer, tmp_path: Path):
    """With room for 5 in memory, an outage spills to disk; a publisher restart keeps what waits."""
    spill = tmp_path / "spill"

    async def main() -> None:
        publisher = PickPublisher(server.url, memory_limit=5, spill_dir=spill, max_backoff_s=0.1)
        await publisher.start()
        first = publisher.publish_many(make_pick(i) for i in range(50))
        stats = publisher.stats()
        assert (stats["memory_depth"], stats["disk_depth"], stats["depth"]) == (5, 45, 50)
        assert len((spill / SPILL_FILE).read_bytes().splitlines()) == 45
        await asyncio.to_thread(server.start)
        await wait_for(lambda: publisher.depth == 0)
        assert await stream_ids(server.url) == first
        assert (spill / SPILL_FILE).stat().st_size == 0  # all delivered: the file starts afresh

        await asyncio.to_thread(server.stop)
        second = publisher.publish_many(make_pick(i) for i in range(50, 70))
        await publisher.stop(drain_timeout=0.2)  # Redis is down: the 20 stay on disk, memory's 5 first
        assert len((spill / SPILL_FILE).read_bytes().splitlines()) == 20

        restarted = PickPublisher(server.url, memory_limit=5, spill_dir=spill, max_backoff_s=0.1)
        assert restarted.depth == 20
        await restarted.start()
        third = restarted.publish_many(make_pick(i) for i in range(70, 80))
        assert restarted.stats()["disk_depth"] == 30  # behind the older items on disk, to keep the order
        await asyncio.to_thread(server.start)
        await wait_for(lambda: restarted.depth == 0)
        await restarted.stop()
        assert await stream_ids(server.url) == first + second + third

    asyncio.run(main())


def test_spill_queue_bounds_and_torn_lines(tmp_path: Path):
    no_disk = SpillQueue(memory_limit=2)
    assert [no_disk.put({"n": i}) for i in range(3)] == [True, True, False] and no_disk.dropped == 1

    queue = SpillQueue(memory_limit=1, spill_dir=tmp_path, chunk=2)
    for i in range(4):
        queue.put({"n": i})
    queue.close()
    with open(tmp_path / SPILL_FILE, "ab") as handle:
        handle.write(b'{"n": 9')  # a crash in the middle of a write
    queue = SpillQueue(memory_limit=1, spill_dir=tmp_path)
    queue.put({"n": 4})
    seen = []
    while queue.depth:
        seen += queue.peek(1)
        queue.pop(1)
    assert seen == [{"n": i} for i in range(5)]


def test_fan_out_and_recent_without_redis():
    async def main() -> None:
        publisher = PickPublisher(None, subscriber_queue=500)
        await publisher.start()
        p_of_xx = publisher.subscribe(network="XX", phase="P")
        b_stations = publisher.subscribe(station="B1,B2")
        slow = publisher.subscribe(maxsize=10)
        received: list[str] = []

        async def consume() -> None:
            async for record in p_of_xx:
                received.append(record.id)

        consumer = asyncio.create_task(consume())
        picks = [
            make_pick(
                i, network=("XX", "YY")[i % 2], station=("A1", "B1", "B2")[i % 3], phase="PS"[i // 2 % 2]
            )
            for i in range(300)
        ]
        started = time.perf_counter()
        for pick in picks:
            publisher.publish(pick)
            await asyncio.sleep(0)
        assert time.perf_counter() - started < 2.0  # nobody reads ``slow``: the publisher never waited on it
        await publisher.stop()
        await consumer

        def expected(pred) -> list[str]:
            return [p.id for p in picks if pred(p)]

        assert received == expected(lambda p: p.trace_id.startswith("XX.") and p.phase == "P")
        assert [r.id for r in _drain(b_stations)] == expected(
            lambda p: p.trace_id.split(".")[1] in ("B1", "B2")
        )
        assert slow.lagged and slow.dropped == 290
        assert [r.id for r in _drain(slow)] == [p.id for p in picks[-10:]]
        assert publisher.stats()["subscriber_dropped"] == 290

        recent = publisher.recent(network="YY", station="B1", phase="S", limit=5)
        ok = [p for p in picks if p.trace_id == "YY.B1..HH" and p.phase == "S"]
        assert len(ok) > 5 and [r.id for r in recent] == [p.id for p in ok[-5:]]
        everything = publisher.recent(limit=1000)
        assert [r.id for r in everything] == [p.id for p in picks]
        since = everything[100].fields["published_at"]
        later = [r for r in everything if r.time >= UTCDateTime(since).timestamp]
        assert publisher.recent(since=since, limit=3) == later[:3] and 1 <= len(later) <= 200
        assert publisher.recent(since=since, station="A1", limit=1000) == [
            r for r in later if r.fields["station"] == "A1"
        ]
        assert publisher.recent(since=UTCDateTime() + 60) == []
        assert publisher.recent(kind="detection") == []

    asyncio.run(main())


def _drain(subscription) -> list:
    out = []
    while not subscription.queue.empty():
        item = subscription.queue.get_nowait()
        if hasattr(item, "fields"):
            out.append(item)
    return out
