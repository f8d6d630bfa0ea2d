"""Restarts that lose nothing: `seispick serve` SIGKILLed, then SIGTERMed, mid-stream, left down while data keep
coming, and started again with the same command, must put into Redis exactly the picks and detections `annotate`
(what `seispick pick` runs) finds in the same data: each once, none missing, none other.

The commands hold no ``begin_time``: without kept positions a restarted service starts at the live end (SeedLink)
or skips the files already there (a watched folder with ``read_existing`` off) and loses what came while it was
down. Real TCP (the replay server), the real Redis at 127.0.0.1:6379 (keys under a unique prefix, deleted after).
"""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import obspy
import pytest
import redis

from seispick.miniseed.decode import trace_end_ns
from seispick.picking.annotate import annotate
from seispick.picking.waveforms import read_waveforms
from seispick.replay.server import ThreadedReplayServer
from seispick.service.ingest.folder import split_records
from seispick.service.stream.runtime import DEMO_DIR
from tests.test_sharding_e2e import Replica, free_port, wait_until
from tests.test_streaming_e2e import REDIS_URL, redis_available

SPEED = 5.0  # the 10-minute demo archive streams in 2 minutes
DOWN_S = 8.0  # 40 s of data arrive while the service is down


def service_env(model: str, key: str, **streaming: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEISPICK_")}
    env.update(
        SEISPICK_HOST="127.0.0.1",
        SEISPICK_LOG_LEVEL="info",
        SEISPICK_ACCESS_LOG="false",
        SEISPICK_REDIS_URL=REDIS_URL,
        SEISPICK_DEFAULT_MODEL=model,
        SEISPICK_MODELS=model,
        SEISPICK_INFERENCE_THREADS="1",
        SEISPICK_STREAMING__WORKERS="1",
        SEISPICK_STREAMING__SILENCE_TIMEOUT_S="10",
        SEISPICK_STREAMING__STREAM_KEY=key,
        SEISPICK_STREAMING__DETECTIONS_KEY=f"{key}:det",
        SEISPICK_STREAMING__CHANNEL=f"{key}:live",
        SEISPICK_STREAMING__KEEP_POSITIONS="true",
        SEISPICK_STREAMING__POSITIONS_KEY=f"{key}:positions",
        SEISPICK_STREAMING__POSITIONS_EVERY_S="1",
    )
    env.update({f"SEISPICK_STREAMING__{name.upper()}": value for name, value in streaming.items()})
    return env


class Ledger:
    """What the service put into Redis under ``key``."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.client = redis.Redis.from_url(REDIS_URL, decode_responses=True)

    def ids(self) -> list[str]:
        entries = self.client.xrange(self.key) + self.client.xrange(f"{self.key}:det")
        return [fields["id"] for _, fields in entries]

    def count(self, expected: set[str]) -> int:
        return sum(i in expected for i in self.ids())

    def delete(self) -> None:
        keys = [self.key, f"{self.key}:det", f"{self.key}:positions"]
        seen = [
            *self.client.scan_iter(f"{self.key}:seen:*"),
            *self.client.scan_iter(f"{self.key}:det:seen:*"),
        ]
        self.client.delete(*keys, *seen)


def expected_ids(files: list[Path], model) -> set[str]:
    result = annotate(read_waveforms(files).stream, model)
    return {item.id for item in [*result.picks, *result.detections]}


def restart_twice(service: Replica, ledger: Ledger, expected: set[str]) -> dict[str, int]:
    """SIGKILL at a quarter of the picks, SIGTERM at half, each followed by ``DOWN_S`` down and a restart with
    the same command; returns the exit status of the SIGTERM and the picks in Redis at each stop."""
    process = service.process
    assert process is not None
    wait_until(lambda: ledger.count(expected) >= len(expected) // 4, 240, "a quarter of the picks", poll=0.5)
    service.kill()  # SIGKILL, mid-stream
    at_kill = ledger.count(expected)
    time.sleep(DOWN_S)
    service.start()
    wait_until(service.ready, 120, "the service ready again")
    wait_until(lambda: ledger.count(expected) >= len(expected) // 2, 240, "half of the picks", poll=0.5)
    process = service.process
    assert process is not None
    process.send_signal(signal.SIGTERM)
    exit_status = process.wait(60)
    at_term = ledger.count(expected)
    time.sleep(DOWN_S)
    service.start()
    wait_until(service.ready, 120, "the service ready after the SIGTERM")
    return {"exit_status": exit_status, "at_kill": at_kill, "at_term": at_term}


def check(ledger: Ledger, expected: set[str], stops: dict[str, int], service: Replica) -> None:
    ids = ledger.ids()
    log = service.log.read_text()
    assert stops["exit_status"] == 0, log[-3000:]
    assert 0 < stops["at_kill"] < len(expected) and stops["at_term"] < len(expected), stops  # mid-stream
    missing = expected - set(ids)
    assert not missing, f"{len(missing)} of {len(expected)} offline picks missing; {log[-3000:]}"
    assert len(ids) == len(set(ids)), "a pick published twice"
    assert set(ids) == expected, f"picks the offline run does not give: {sorted(set(ids) - expected)}"
    assert "Traceback" not in log, log[-3000:]


@pytest.mark.skipif(not redis_available(), reason="needs the Redis server at 127.0.0.1:6379")
@pytest.mark.parametrize("workers", [1, 2])
def test_seedlink_restarts_after_sigkill_and_sigterm_lose_and_double_nothing(
    shipped_model, tmp_path, workers
):
    """With ``--workers 2`` the SIGKILL hits the API process only: its workers see their channel close."""
    files = sorted(DEMO_DIR.glob("*.mseed"))
    expected = expected_ids(files, shipped_model)
    ledger = Ledger(f"seispick:test:{uuid.uuid4().hex[:8]}")
    port = free_port()
    env = service_env(
        shipped_model.name, ledger.key, seedlink=f"127.0.0.1:{port}", selectors="SP_*:HH?",
        reconnect_max_s="1", workers=str(workers),
    )  # fmt: skip
    service = Replica(0, env, tmp_path)
    replay = ThreadedReplayServer(files, port=port, speed=SPEED)
    try:
        service.start()
        wait_until(service.ready, 240, "the service ready")
        replay.start()
        replay.call(replay.server.pause)  # nothing released until the service is connected (no begin_time)
        sources = lambda: service.stations()["sources"]["sources"]  # noqa: E731
        connected = lambda: len(sources()) == workers and all(s["connected"] for s in sources())  # noqa: E731
        wait_until(connected, 60, "the SeedLink sources connected")
        replay.call(replay.server.resume)
        stops = restart_twice(service, ledger, expected)
        wait_until(lambda: ledger.count(expected) >= len(expected), 300, "every offline pick", poll=1.0)
        time.sleep(3.0)  # anything more would be a duplicate or a pick the offline run does not give
        states = service.stations()["sources"]["sources"]
        service.stop()
        check(ledger, expected, stops, service)
        assert all(s["resume_gaps"] == 0 for s in states) and sum(s["stats"]["records"] for s in states) > 0
    finally:
        service.stop()
        replay.close()
        ledger.delete()


class GrowingFolder(threading.Thread):
    """Appends the archive's records to one file per station, in end-time order, at ``speed`` x real time."""

    def __init__(self, files: list[Path], folder: Path, speed: float) -> None:
        super().__init__(daemon=True)
        self.folder, self.speed = folder, speed
        self.records: list[tuple[int, str, bytes]] = []
        for path in files:
            records, _ = split_records(path.read_bytes())
            for record in records:
                trace = obspy.read(io.BytesIO(record))[0]
                self.records.append((trace_end_ns(trace), path.name, record))
        self.records.sort()
        self.done = threading.Event()

    def run(self) -> None:
        t0, wall0 = self.records[0][0], time.monotonic()
        for end_ns, name, record in self.records:
            delay = wall0 + (end_ns - t0) / 1e9 / self.speed - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            with open(self.folder / name, "ab") as out:
                out.write(record)
        self.done.set()


@pytest.mark.skipif(not redis_available(), reason="needs the Redis server at 127.0.0.1:6379")
def test_watched_folder_restarts_after_sigkill_and_sigterm_lose_and_double_nothing(shipped_model, tmp_path):
    files = sorted(DEMO_DIR.glob("*.mseed"))
    expected = expected_ids(files, shipped_model)
    ledger = Ledger(f"seispick:test:{uuid.uuid4().hex[:8]}")
    folder = tmp_path / "incoming"
    folder.mkdir()
    source = {"kind": "directory", "path": str(folder), "read_existing": False, "poll_s": 0.5}
    env = service_env(shipped_model.name, ledger.key, sources=json.dumps([source]))
    service = Replica(0, env, tmp_path)
    writer = GrowingFolder(files, folder, SPEED)
    try:
        service.start()
        wait_until(service.ready, 240, "the service ready")
        writer.start()
        stops = restart_twice(service, ledger, expected)
        wait_until(lambda: ledger.count(expected) >= len(expected), 300, "every offline pick", poll=1.0)
        assert writer.done.wait(300)
        time.sleep(3.0)
        service.stop()
        check(ledger, expected, stops, service)
    finally:
        service.stop()
        ledger.delete()
