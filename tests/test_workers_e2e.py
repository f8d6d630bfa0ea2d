"""`seispick serve --workers 2`: two picking processes under one API process, one replay server, one Redis.

Worker i picks the stations with ``StreamingSettings.worker_of(net, sta, 2) == i``. Together they must put into
Redis exactly the picks and detections `annotate` (what `seispick pick` runs, and what one process gives:
tests/test_streaming_e2e.py) finds in the same files, each once, none missing, also when one worker is killed
(SIGKILL) mid-stream: the API process logs and restarts it, it replays its stations from ``begin_time`` and the
picks it had already published are dropped as repeats. The API process serves every worker's stations, their
metrics (streams, latencies and inference calls) and the live picks; stopping it stops the workers.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
import zlib
from pathlib import Path

import httpx
import obspy
import pytest
import redis
from click.testing import CliRunner

from seispick.cli.main import cli
from seispick.picking.annotate import annotate
from seispick.picking.waveforms import read_waveforms
from seispick.replay.server import ThreadedReplayServer
from seispick.service.settings import Settings, StreamingSettings, available_cores
from seispick.service.stream.runtime import DEMO_DIR
from tests.service_harness import metric, parse_metrics
from tests.test_sharding_e2e import Replica, free_port, wait_until
from tests.test_streaming_e2e import REDIS_URL, redis_available

WORKERS = 2
SPEED = 20.0  # the 10-minute archive streams in 30 s
# Station -> the demo recording it carries; two stations for each worker (worker_of: DEMO1/2 -> 0, DEMO4/5 -> 1).
STATIONS = {"DEMO1": "DEMO1", "DEMO2": "DEMO2", "DEMO4": "DEMO3", "DEMO5": "DEMO1"}


def worker_of(station: str) -> int:
    return StreamingSettings().worker_of("SP", station, WORKERS)


def write_archive(folder: Path) -> list[Path]:
    files = []
    for station, source in STATIONS.items():
        stream = obspy.read(str(DEMO_DIR / f"SP.{source}.mseed"))
        for trace in stream:
            trace.stats.station = station
        files.append(folder / f"SP.{station}.mseed")
        stream.write(str(files[-1]), format="MSEED", reclen=512)
    return files


class LiveSubscriber(threading.Thread):
    """Server-Sent Events of the live picks, collected until ``close()`` ends the connection."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.received: list[dict] = []
        self.client = httpx.Client(timeout=None)

    def run(self) -> None:
        closed = contextlib.suppress(httpx.HTTPError, RuntimeError, OSError)  # close() ends the read
        with closed, self.client.stream("GET", self.url) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    self.received.append(json.loads(line[6:]))

    def close(self) -> None:
        self.client.close()
        self.join(10)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its parent to reap it does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


# ------------------------------------------------------------------------------------ the station split
@pytest.mark.parametrize("replicas", [1, 2, 3])
def test_workers_divide_each_replicas_shard_whatever_their_number(replicas: int) -> None:
    stations = [f"S{k:04d}" for k in range(3000)]
    for replica in range(replicas):
        config = StreamingSettings(shard_index=replica, shard_count=replicas)
        shard = {s for s in stations if config.owns("XX", s)}
        assert shard == {s for s in stations if zlib.crc32(f"XX.{s}".encode()) % replicas == replica}
        for workers in (1, 2, 3, 5):
            parts = [{s for s in shard if config.worker_of("XX", s, workers) == i} for i in range(workers)]
            assert set().union(*parts) == shard and sum(map(len, parts)) == len(shard)  # each station once
            assert min(map(len, parts)) > 0.8 * len(shard) / workers  # and evenly


def test_workers_default_to_the_cores_and_are_a_checked_setting(monkeypatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("SEISPICK_"):
            monkeypatch.delenv(name)
    assert Settings().streaming.workers is None
    assert Settings().streaming.worker_count() == available_cores() == len(os.sched_getaffinity(0))
    assert StreamingSettings(workers=3).worker_count() == 3
    refused = CliRunner().invoke(cli, ["config", "--workers", "0"])
    assert refused.exit_code != 0 and "--workers=0" in refused.output
    shown = CliRunner().invoke(
        cli, ["config", "--format", "json", "--workers", "3"], env={"SEISPICK_STREAMING__WORKERS": "2"}
    )
    assert shown.exit_code == 0 and json.loads(shown.stdout)["streaming"]["workers"] == 3


# ------------------------------------------------------------------------------------ end to end
@pytest.mark.skipif(not redis_available(), reason="needs the Redis server at 127.0.0.1:6379")
def test_two_workers_give_the_single_process_picks_once_through_a_worker_kill(shipped_model, tmp_path):
    folder = tmp_path / "archive"
    folder.mkdir()
    files = write_archive(folder)
    archive = read_waveforms(files).stream
    result = annotate(archive, shipped_model)
    expected = {item.id: item for item in [*result.picks, *result.detections]}
    owner = {station: worker_of(station) for station in STATIONS}
    assert sorted(owner.values()) == [0, 0, 1, 1]
    per_worker = {
        i: {k for k, p in expected.items() if owner[p.trace_id.split(".")[1]] == i} for i in range(WORKERS)
    }
    victim = 1
    assert all(per_worker.values()) and len(per_worker[victim]) >= 6

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
        SEISPICK_STREAMING__WORKERS=str(WORKERS),
        SEISPICK_STREAMING__SEEDLINK=f"127.0.0.1:{replay_port}",
        SEISPICK_STREAMING__SELECTORS="SP_*:HH?",
        SEISPICK_STREAMING__BEGIN_TIME=start.isoformat() + "Z",
        SEISPICK_STREAMING__SILENCE_TIMEOUT_S="10",
        SEISPICK_STREAMING__RECONNECT_MAX_S="1",
        SEISPICK_STREAMING__STREAM_KEY=key,
        SEISPICK_STREAMING__DETECTIONS_KEY=f"{key}:det",
        SEISPICK_STREAMING__CHANNEL=f"{key}:live",
    )
    service = Replica(0, env, tmp_path)  # one `seispick serve` process (configured by the environment)
    base = f"http://127.0.0.1:{service.port}"
    live = LiveSubscriber(f"{base}/v1/stream/picks")

    def published(ids: set[str]) -> int:
        return sum(fields["id"] in ids for _, fields in client.xrange(key) + client.xrange(f"{key}:det"))

    def workers() -> list[dict]:
        return service.stations()["workers"]

    def done() -> bool:
        publisher = service.stations()["publisher"]
        return published(set(expected)) >= len(expected) and publisher["depth"] == 0

    try:
        service.start()
        wait_until(service.ready, 240, "the service and its workers ready")  # ready: every worker picking
        before = workers()
        live.start()
        wait_until(lambda: service.stations()["publisher"]["subscribers"] == 1, 30, "the live subscriber")
        with ThreadedReplayServer(files, port=replay_port, speed=SPEED):
            wait_until(lambda: published(per_worker[victim]) >= len(per_worker[victim]) // 3, 120, "picks")
            os.kill(before[victim]["pid"], 9)  # SIGKILL, mid-stream, with picks in flight
            at_kill = published(per_worker[victim])
            assert 0 < at_kill < len(per_worker[victim]), "not killed mid-stream"
            wait_until(lambda: workers()[victim]["restarts"] == 1, 30, "the restart")
            wait_until(service.ready, 120, "the restarted worker picking")
            wait_until(done, 180, "every pick and detection in Redis", poll=1.0)
            time.sleep(3.0)  # anything more would be a duplicate
        stations = service.stations()
        metrics = parse_metrics(service.get("/metrics").text)
        recent = service.get("/v1/picks?station=DEMO4&limit=1000").json()
        live.close()
        pids = [row["pid"] for row in stations["workers"]]
        service.stop()  # SIGINT: the API process stops its workers and exits
        exit_code = service.process.returncode
    finally:
        live.close()
        service.stop()
        entries = client.xrange(key) + client.xrange(f"{key}:det")
        client.delete(key, f"{key}:det", *client.scan_iter(f"{key}:seen:*"))

    log = service.log.read_text()
    ids = [fields["id"] for _, fields in entries]
    assert len(ids) == len(set(ids)), f"a pick was published twice: {log[-3000:]}"
    missing = sorted(f"{p.trace_id} {i}" for i, p in expected.items() if i not in set(ids))
    extra = [fields for _, fields in entries if fields["id"] not in expected]
    assert not missing and not extra, f"missing {missing}, extra {extra}, log {log[-3000:]}"
    for _, fields in entries:
        item = expected[fields["id"]]
        assert fields["trace_id"] == item.trace_id
        if fields["id"].startswith("pick-"):
            assert fields["phase"] == item.phase
            assert abs(obspy.UTCDateTime(fields["peak_time"]) - item.peak_time) <= 0.01

    # The restart: logged, counted, and the repeats of what was published before the kill dropped.
    assert "picking worker 1" in log and "restarting it" in log
    rows = {row["index"]: row for row in stations["workers"]}
    assert rows[victim]["starts"] == 2 and rows[victim]["restarts"] == 1 and "-9" in rows[victim]["last_exit"]
    assert rows[0]["starts"] == 1 and rows[victim]["pid"] != before[victim]["pid"]
    assert stations["publisher"]["published"] == len(expected)
    assert stations["publisher"]["repeats"] + stations["publisher"]["duplicates"] >= at_kill

    # One view of every worker's stations (each where the hash puts it) and of every worker's metrics.
    assert {(s["trace_id"], s["worker"]) for s in stations["stations"]} == {
        (f"SP.{station}..HH", worker) for station, worker in owner.items()
    }
    assert stations["sources"]["running"] == WORKERS and stations["outside_shard_records"] > 0
    assert sum(v for (name, _), v in metrics.items() if name == "seispick_stations") == len(STATIONS)
    records = sum(s["records"] for s in stations["stations"])
    assert metric(metrics, "seispick_records_ingested_total", network="SP") >= records > 0
    picked = sum(
        metric(metrics, "seispick_pick_latency_seconds_count", network="SP", phase=phase)
        for phase in ("P", "S", "detection")
    )
    assert picked >= len(expected)  # observed where emitted, repeats after the restart included
    assert metric(metrics, "seispick_data_latency_seconds_count", network="SP") >= records
    # the latency budget of the workers' picks reaches the API process's metrics, delivery observed there
    for stage in ("record", "window", "inference", "publication"):
        assert metric(metrics, "seispick_latency_stage_seconds_count", stage=stage) > 0, stage
    assert metric(metrics, "seispick_inference_calls_total", model=shipped_model.name) > 0  # no HTTP: streams
    published = sum(  # by kind and status: the final feed's picks and detections, each once
        value
        for (name, labels), value in metrics.items()
        if name == "seispick_published_total" and dict(labels)["kind"] in ("pick", "detection")
    )
    assert published == len(expected)
    assert metric(metrics, "seispick_sources_running") == WORKERS

    # Live subscribers and recent picks are served for all workers, each pick once.
    live_ids = [p["id"] for p in live.received]
    assert sorted(live_ids) == sorted(expected), "the SSE subscriber missed or repeated picks"
    assert recent["count"] == sum(p.trace_id == "SP.DEMO4..HH" for p in result.picks)

    # Stopping the service stopped the workers.
    assert exit_code == 0, log[-3000:]
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in pids), f"workers left running: {pids}"
