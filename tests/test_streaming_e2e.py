"""End to end over real TCP and a real Redis: replay server -> SeedLink ingest -> picks -> Redis and subscribers.

The SeedLink server is killed and restarted mid-stream; afterwards the Redis stream must hold exactly the
picks `seispick pick` finds in the same files (same ids, same times), each once, and the SSE and WebSocket
subscribers must have received their filtered picks live.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import datetime, timezone

import httpx
import obspy
import pytest
import redis
import uvicorn
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from seispick.picking.annotate import annotate
from seispick.picking.waveforms import read_waveforms
from seispick.replay.server import ThreadedReplayServer
from seispick.service.api.app import create_app
from seispick.service.settings import Settings, StreamingSettings
from seispick.service.stream.runtime import DEMO_DIR

REDIS_URL = "redis://127.0.0.1:6379/0"
SPEED = 40.0


def redis_available() -> bool:
    try:
        return redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return False


class UvicornThread:
    """The app under a real uvicorn server on a free port, in a thread."""

    def __init__(self, app) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            assert time.time() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=30)


def collect_sse(url: str, out: list, stop: threading.Event) -> None:
    with httpx.stream("GET", url, timeout=None) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                out.append(json.loads(line[6:]))
            if stop.is_set():
                return


def collect_ws(url: str, out: list, stop: threading.Event) -> None:
    with ws_connect(url) as ws:
        while not stop.is_set():
            try:
                out.append(json.loads(ws.recv(timeout=0.5)))
            except TimeoutError:
                continue
            except ConnectionClosed:
                return


def by_id_(entries) -> dict:
    return {fields["id"]: fields for _, fields in entries}


@pytest.mark.skipif(not redis_available(), reason="needs the Redis server at 127.0.0.1:6379")
def test_replay_to_redis_exactly_once_through_a_seedlink_restart(shipped_model):
    files = sorted(DEMO_DIR.glob("*.mseed"))
    archive = read_waveforms(files).stream
    expected = annotate(archive, shipped_model).picks
    start = min(tr.stats.starttime for tr in archive)
    key = f"seispick:test:{uuid.uuid4().hex[:8]}"
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)

    with ThreadedReplayServer(files, port=0, speed=SPEED) as replay:
        settings = Settings(
            redis_url=REDIS_URL,
            streaming=StreamingSettings(
                model=shipped_model.name,
                seedlink=[f"127.0.0.1:{replay.port}"],
                selectors=["SP_*:HH?"],
                begin_time=datetime.fromtimestamp(start.timestamp, tz=timezone.utc),
                silence_timeout_s=10.0,  # longer than the outage: a longer silence ends the data like a gap
                reconnect_max_s=1.0,
                stream_key=key,
                detections_key=key + ":det",
                channel=key + ":live",
            ),
        )
        with UvicornThread(create_app(settings)) as server:
            base = f"http://127.0.0.1:{server.port}/v1"
            stop = threading.Event()
            sse, ws = [], []
            threads = [
                threading.Thread(target=collect_sse, args=(f"{base}/stream/picks?station=DEMO2", sse, stop)),
                threading.Thread(
                    target=collect_ws, args=(f"ws://127.0.0.1:{server.port}/v1/ws/picks?phase=P", ws, stop)
                ),
            ]
            for t in threads:
                t.daemon = True
                t.start()
            time.sleep(5.0)
            replay.stop()  # the SeedLink server dies mid-stream ...
            time.sleep(3.0)
            replay.start()  # ... and comes back on the same port
            duration = (max(tr.stats.endtime for tr in archive) - start) / SPEED
            deadline = time.time() + duration + 40
            while time.time() < deadline:
                if r.xlen(key) >= len(expected):
                    time.sleep(4.0)  # anything more would be a duplicate
                    break
                time.sleep(1.0)
            stations = httpx.get(f"{base}/stations", timeout=10).json()
            recent = httpx.get(f"{base}/picks", params={"station": "DEMO1", "limit": 1000}, timeout=10).json()
            metrics = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=10).text
            stop.set()

    entries = r.xrange(key)
    r.delete(key, key + ":det")
    ids = [fields["id"] for _, fields in entries]
    assert len(ids) == len(set(ids)), "a pick was published twice"
    missing = [(p.trace_id, p.phase, str(p.peak_time)) for p in expected if p.id not in set(ids)]
    extra = [by_id_(entries)[i] for i in set(ids) - {p.id for p in expected}]
    assert not missing and not extra, f"missing {missing}, extra {extra}, stations {stations}"
    by_id = {fields["id"]: fields for _, fields in entries}
    for pick in expected:
        got = by_id[pick.id]
        assert (
            abs(obspy.UTCDateTime(got["peak_time"]) - pick.peak_time) <= 0.01 and got["phase"] == pick.phase
        )

    assert sse and all(p["station"] == "DEMO2" for p in sse)
    assert ws and all(p["phase"] == "P" for p in ws)
    assert sum(p["id"].startswith("pick-") for p in sse) == sum(
        p.trace_id == "SP.DEMO2..HH" for p in expected
    )
    assert recent["count"] == sum(p.trace_id == "SP.DEMO1..HH" for p in expected)
    assert {s["trace_id"] for s in stations["stations"]} == {"SP.DEMO1..HH", "SP.DEMO2..HH", "SP.DEMO3..HH"}
    assert stations["sources"]["totals"]["reconnects"] >= 1
    assert all(s["gaps"] == 0 for s in stations["stations"])
    for line in (
        'seispick_data_latency_seconds_count{network="SP"}',
        'seispick_pick_latency_seconds_count{network="SP",phase="P"}',
        'seispick_stations{network="SP",state=',
        'seispick_records_ingested_total{network="SP"}',
        'seispick_gaps_total{network="SP"} 0.0',
        "seispick_source_reconnects_total",
        "seispick_outbox_depth 0.0",
        "seispick_buffer_bytes",
        'seispick_latency_stage_seconds_count{stage="record"}',
        'seispick_latency_stage_seconds_count{stage="window"}',
        'seispick_latency_stage_seconds_count{stage="first_look"}',
        'seispick_latency_stage_seconds_count{stage="inference"}',
        'seispick_latency_stage_seconds_count{stage="publication"}',
    ):
        assert line in metrics, line
    budget = {s["trace_id"]: s["latency_stages"] for s in stations["stations"]}
    for stages in budget.values():  # each instrument's latest pick, stage by stage
        assert {"record_s", "window_s", "first_look_s", "inference_s"} <= stages.keys(), stages
        assert (
            0 <= stages["first_look_s"] < 30 and 0 <= stages["window_s"] < 60 and stages["inference_s"] >= 0
        )
    assert "DEMO1" not in metrics, "metrics are labelled by network, not by station"
