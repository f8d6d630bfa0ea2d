"""The sharded design on one machine: three `seispick serve` processes, one SeedLink replay server, one Redis.

Replica i of 3 (``SEISPICK_STREAMING__SHARD_INDEX=i``, ``..._SHARD_COUNT=3``) picks the stations whose stable
hash falls in its shard. Together they must put into Redis exactly the picks and detections `annotate` (what
`seispick pick` runs) finds in the same files, each once, none missing; also when one replica is killed
(SIGKILL) mid-stream and started again: it replays from ``begin_time`` and the dedupe keys keep the picks it
had already published from being added a second time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import obspy
import pytest
import redis

from seispick.picking.annotate import annotate
from seispick.picking.waveforms import read_waveforms
from seispick.replay.server import ThreadedReplayServer
from seispick.service.settings import StreamingSettings
from seispick.service.stream.runtime import DEMO_DIR
from tests.test_streaming_e2e import REDIS_URL, redis_available

SHARDS = 3
SPEED = 20.0  # the 10-minute archive streams in 30 s
# Station (5 characters at most: miniSEED 2) -> the demo recording it carries; six, so every shard holds some.
STATIONS = {"DEMO1": "DEMO1", "DEMO2": "DEMO2", "DEMO3": "DEMO3", "DEMO5": "DEMO2", "DEMO8": "DEMO1",
            "DEMOD": "DEMO3"}  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        time.sleep(poll)


def shard_of(station: str) -> int:
    return next(
        i for i in range(SHARDS) if StreamingSettings(shard_index=i, shard_count=SHARDS).owns("SP", station)
    )


def write_archive(folder: Path) -> list[Path]:
    files = []
    for station, source in STATIONS.items():
        stream = obspy.read(str(DEMO_DIR / f"SP.{source}.mseed"))
        for trace in stream:
            trace.stats.station = station
        files.append(folder / f"SP.{station}.mseed")
        stream.write(str(files[-1]), format="MSEED", reclen=512)
    return files


class Replica:
    """One `seispick serve` process (uvicorn) for one shard, configured only through SEISPICK_* variables."""

    def __init__(self, index: int, env: dict[str, str], log_dir: Path) -> None:
        self.index = index
        self.port = free_port()
        self.env = {**env, "SEISPICK_PORT": str(self.port), "SEISPICK_STREAMING__SHARD_INDEX": str(index)}
        self.log = log_dir / f"replica{index}.log"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        with open(self.log, "a") as out:
            out.write(f"--- start {self.starts}\n")
            out.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "seispick.cli.main", "serve"], env=self.env, stdout=out, stderr=out
            )

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text()[-chars:] if self.log.exists() else ""

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=10)

    def ready(self) -> bool:
        assert self.process is not None and self.process.poll() is None, (
            f"replica {self.index} exited: {self.log_tail()}"
        )
        with contextlib.suppress(httpx.HTTPError):
            return self.get("/readyz").status_code == 200
        return False

    def stations(self) -> dict:
        return self.get("/v1/stations").json()

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


@pytest.mark.skipif(not redis_available(), reason="needs the Redis server at 127.0.0.1:6379")
def test_three_shards_give_the_single_process_picks_once_through_a_replica_kill(shipped_model, tmp_path):
    folder = tmp_path / "archive"
    folder.mkdir()
    files = write_archive(folder)
    archive = read_waveforms(files).stream
    result = annotate(archive, shipped_model)
    expected = {item.id: item for item in [*result.picks, *result.detections]}
    shards = {station: shard_of(station) for station in STATIONS}
    assert set(shards.values()) == set(range(SHARDS)), "every replica must own stations"
    per_shard = {
        i: {k for k, p in expected.items() if shards[p.trace_id.split(".")[1]] == i} for i in range(3)
    }
    victim = max(per_shard, key=lambda i: len(per_shard[i]))
    assert all(per_shard.values()) and len(per_shard[victim]) >= 6

    key = f"seispick:test:{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    start = min(trace.stats.starttime for trace in archive)
    replay_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEISPICK_")}
    env.update(
        SEISPICK_HOST="127.0.0.1",
        SEISPICK_LOG_LEVEL="warning",
        SEISPICK_ACCESS_LOG="false",
        SEISPICK_REDIS_URL=REDIS_URL,
        SEISPICK_DEFAULT_MODEL=shipped_model.name,
        SEISPICK_MODELS=shipped_model.name,
        SEISPICK_INFERENCE_THREADS="1",
        SEISPICK_STREAMING__SEEDLINK=f"127.0.0.1:{replay_port}",
        SEISPICK_STREAMING__SELECTORS="SP_*:HH?",
        SEISPICK_STREAMING__BEGIN_TIME=start.isoformat() + "Z",
        SEISPICK_STREAMING__SHARD_COUNT=str(SHARDS),
        SEISPICK_STREAMING__SILENCE_TIMEOUT_S="10",
        SEISPICK_STREAMING__RECONNECT_MAX_S="1",
        SEISPICK_STREAMING__STREAM_KEY=key,
        SEISPICK_STREAMING__DETECTIONS_KEY=f"{key}:det",
        SEISPICK_STREAMING__CHANNEL=f"{key}:live",
    )
    replicas = [Replica(i, env, tmp_path) for i in range(SHARDS)]

    def published(ids: set[str]) -> int:
        return sum(fields["id"] in ids for _, fields in client.xrange(key) + client.xrange(f"{key}:det"))

    def done(replica: Replica) -> bool:
        publisher = replica.stations()["publisher"]
        return publisher["published"] >= len(per_shard[replica.index]) and publisher["depth"] == 0

    try:
        for replica in replicas:
            replica.start()
        for replica in replicas:  # up before any data flows (they retry the SeedLink port meanwhile)
            wait_until(replica.ready, 240, f"replica {replica.index} ready")
        with ThreadedReplayServer(files, port=replay_port, speed=SPEED):
            wait_until(lambda: published(per_shard[victim]) >= len(per_shard[victim]) // 3, 120, "picks")
            replicas[victim].kill()  # mid-stream, with picks in flight
            at_kill = published(per_shard[victim])
            assert 0 < at_kill < len(per_shard[victim]), "not killed mid-stream"
            replicas[victim].start()
            wait_until(replicas[victim].ready, 240, "the restarted replica ready")
            for replica in replicas:
                wait_until(lambda r=replica: done(r), 180, f"replica {replica.index} done", poll=1.0)
        states = {replica.index: replica.stations() for replica in replicas}
    finally:
        for replica in replicas:
            replica.stop()
        entries = client.xrange(key) + client.xrange(f"{key}:det")
        client.delete(key, f"{key}:det", *client.scan_iter(f"{key}:seen:*"))

    logs = {replica.index: replica.log_tail(1500) for replica in replicas}
    ids = [fields["id"] for _, fields in entries]
    assert len(ids) == len(set(ids)), f"a pick was published twice: {logs}"
    missing = sorted(
        (p.trace_id, p.phase, str(p.peak_time)) for i, p in expected.items() if i not in set(ids)
    )
    extra = [fields for _, fields in entries if fields["id"] not in expected]
    assert not missing and not extra, f"missing {missing}, extra {extra}, logs {logs}, states {states}"
    assert result.picks and any(fields["id"].startswith("pick-") for _, fields in entries)
    for _, fields in entries:
        item = expected[fields["id"]]
        assert fields["trace_id"] == item.trace_id
        if fields["id"].startswith("pick-"):
            assert fields["phase"] == item.phase
            assert abs(obspy.UTCDateTime(fields["peak_time"]) - item.peak_time) <= 0.01

    for index, state in states.items():
        own = {f"SP.{s}..HH" for s, shard in shards.items() if shard == index}
        assert {s["trace_id"] for s in state["stations"]} == own  # each replica picks its shard only
        assert state["outside_shard_records"] > 0  # and saw (and left) the others' records
        assert state["publisher"]["published"] == len(per_shard[index])
    # The restarted replica published again what it had before the kill; Redis kept the first copy.
    assert states[victim]["publisher"]["duplicates"] >= at_kill
    assert replicas[victim].starts == 2
