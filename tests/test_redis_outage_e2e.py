"""Faults through the whole service: replay -> SeedLink ingest -> stream picker -> publisher -> a real Redis that
is killed (SIGKILL) for 20 s mid-stream and started again.

The Redis server is this test's own (fsync-always AOF, so SIGKILL loses nothing it acknowledged). Afterwards
the Redis streams must hold every pick and detection `annotate` finds in the same files, once, in the order the
service published them (the order its live subscribers saw, which the outage does not touch).
"""

from __future__ import annotations

import shutil
import threading
import time
from datetime import datetime, timezone

import httpx
import pytest
import redis

from seispick.picking.annotate import annotate
from seispick.picking.waveforms import read_waveforms
from seispick.replay.server import ThreadedReplayServer
from seispick.service.api.app import create_app
from seispick.service.settings import Settings, StreamingSettings
from seispick.service.stream.runtime import DEMO_DIR
from tests.service_harness import metric, parse_metrics
from tests.test_publisher import RedisServer
from tests.test_sharding_e2e import free_port, wait_until
from tests.test_streaming_e2e import UvicornThread, collect_sse

SPEED = 12.0  # the 10-minute demo archive streams in 50 s
OUTAGE_S = 20.0


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_redis_killed_for_20_s_mid_stream_every_pick_once_in_order(shipped_model, tmp_path):
    files = sorted(DEMO_DIR.glob("*.mseed"))
    archive = read_waveforms(files).stream
    result = annotate(archive, shipped_model)
    expected = {item.id for item in [*result.picks, *result.detections]}
    start = min(trace.stats.starttime for trace in archive)
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis", durable=True)
    server.start()
    client = redis.Redis(port=server.port, decode_responses=True)
    replay_port = free_port()
    settings = Settings(
        redis_url=server.url,
        streaming=StreamingSettings(
            model=shipped_model.name,
            seedlink=[f"127.0.0.1:{replay_port}"],
            selectors=["SP_*:HH?"],
            begin_time=datetime.fromtimestamp(start.timestamp, tz=timezone.utc),
            silence_timeout_s=10.0,
            reconnect_max_s=1.0,
        ),
    )
    live: list[dict] = []

    def stored() -> list[str]:
        """Ids in the Redis streams, picks then detections, each in stream order."""
        return [
            fields["id"]
            for key in ("seispick:picks", "seispick:detections")
            for _, fields in client.xrange(key)
        ]

    stop = threading.Event()
    try:
        with UvicornThread(create_app(settings)) as app:
            base = f"http://127.0.0.1:{app.port}"
            sse = threading.Thread(
                target=collect_sse, args=(f"{base}/v1/stream/picks", live, stop), daemon=True
            )
            sse.start()
            wait_until(lambda: httpx.get(f"{base}/readyz", timeout=5).status_code == 200, 60, "ready")
            stations = f"{base}/v1/stations"
            # the live subscriber is connected before the first record exists
            wait_until(lambda: httpx.get(stations).json()["publisher"]["subscribers"] == 1, 30, "subscriber")
            with ThreadedReplayServer(files, port=replay_port, speed=SPEED):
                wait_until(lambda: client.xlen("seispick:picks") >= 5, 60, "the first picks in Redis")
                server.kill()  # SIGKILL, mid-stream
                live_at_kill = len(live)
                killed_at = time.monotonic()
                time.sleep(OUTAGE_S / 2)
                ready = httpx.get(f"{base}/readyz", timeout=10)
                during = parse_metrics(httpx.get(f"{base}/metrics", timeout=10).text)
                time.sleep(max(OUTAGE_S - (time.monotonic() - killed_at), 0))
                live_in_outage = len(live) - live_at_kill
                server.start()
                wait_until(lambda: len(stored()) >= len(expected), 180, "every pick and detection in Redis")
                time.sleep(3.0)  # anything more would be a duplicate
            after = parse_metrics(httpx.get(f"{base}/metrics", timeout=10).text)
            stop.set()
    finally:
        ids = stored() if server.process else []
        server.kill()

    assert ready.status_code == 503 and ready.json()["checks"]["redis"].startswith("unreachable")
    assert (
        metric(during, "seispick_outbox_depth") > 0 and metric(during, "seispick_publish_failures_total") > 0
    )
    assert live_in_outage > 0, "no pick was published during the outage: the test proved nothing"
    published = [p["id"] for p in live if p["id"].startswith("pick-")]
    published += [p["id"] for p in live if p["id"].startswith("det-")]
    assert result.picks and len(ids) == len(set(ids)), "a pick was added twice"
    assert set(ids) == expected, f"missing {expected - set(ids)}, extra {set(ids) - expected}"
    assert ids == published, "Redis holds the picks in another order than the service published them"
    assert metric(after, "seispick_outbox_depth") == 0
    assert metric(after, "seispick_stream_dropped_total", what="outbox_full") == 0
