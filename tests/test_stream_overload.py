"""Overload made visible: a model held back (a gate, not a timing) makes the stream say it is behind.

The picker's predict waits on an ``asyncio.Event``; records are fed with explicit arrival times, so every
assertion follows from the state, never from how fast this machine is.
"""

from __future__ import annotations

import asyncio
import logging
import time

import obspy
import pytest

from seispick.service.settings import Settings, StreamingSettings
from seispick.service.stream.picker import StreamPicker
from tests.service_harness import ServiceHarness, metric
from tests.streams import noise_stream
from tests.test_stream_picker import chop

T0 = obspy.UTCDateTime(2024, 7, 1)


class GatedModel:
    """``predict`` for the picker that holds every call until ``release()``."""

    def __init__(self, model) -> None:
        self.model = model
        self.gate = asyncio.Event()
        self.windows = 0

    async def __call__(self, name: str, windows):
        self.windows += len(windows)
        await self.gate.wait()
        return self.model.predict(windows)

    def release(self) -> None:
        self.gate.set()


def records(station: str, seconds: float = 120.0, seed: int = 0) -> list[obspy.Trace]:
    return chop(noise_stream(T0, seconds, station=station, seed=seed))


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_held_model_makes_the_stream_behind_holds_ingest_and_recovers(shipped_model, caplog):
    caplog.set_level(logging.INFO, logger="seispick.service.stream.overload")

    async def main():
        model = GatedModel(shipped_model)
        got = []
        picker = StreamPicker(
            shipped_model,
            model,
            lambda item, latency: got.append(item),
            silence_timeout_s=30.0,
            behind_s=10.0,
            behind_timeout_s=60.0,
            max_in_flight=3,
        )
        arrival = T0.timestamp + 130.0  # every record arrives at once, 10-130 s after its end
        for record in records("AAA"):
            picker.add_trace(record, now=arrival)
        await settle()
        held = picker.in_flight
        assert held >= 3 and model.windows == held  # every window waits for the model

        # Backpressure: ingest waits for room instead of piling windows up.
        waiting = asyncio.create_task(picker.wait_for_room())
        await settle()
        assert not waiting.done()

        picker.check_behind(now=arrival + 5)
        assert not picker.monitor.behind  # waited 5 s: within behind_s
        assert picker.close_silent(now=arrival + 1000) == []  # ingest held: silence is not judged either
        assert [s["state"] for s in picker.station_states(now=arrival + 5)] == ["streaming"]

        picker.check_behind(now=arrival + 20)
        picker.check_behind(now=arrival + 40)  # within a minute of the first line: no second one
        states = picker.station_states(now=arrival + 40)
        assert picker.monitor.behind and picker.monitor.since == arrival + 20
        assert [s["state"] for s in states] == ["behind"] and states[0]["lag_s"] == pytest.approx(40.0)
        assert picker.oldest_window_s(now=arrival + 40) == pytest.approx(40.0)
        behind_lines = [r for r in caplog.records if "stream behind" in r.getMessage()]
        assert len(behind_lines) == 1 and behind_lines[0].levelno == logging.WARNING
        assert "1 of 1 instruments behind" in behind_lines[0].getMessage()

        # Silence is not judged while behind: the station stays open (and connected).
        assert picker.close_silent(now=arrival + 1000) == []
        assert picker.instruments["XX.AAA..HH"].picker.current is not None

        assert picker.monitor.unready_reason(now=arrival + 70) is None  # behind 50 s, timeout 60 s
        reason = picker.monitor.unready_reason(now=arrival + 90)
        assert reason is not None and reason.startswith("behind for 70 s (over 60 s)")

        picker.check_behind(now=arrival + 81)  # a minute after the first line: the second
        assert len([r for r in caplog.records if "stream behind" in r.getMessage()]) == 2

        model.release()
        await asyncio.wait_for(waiting, 30)  # room again: ingest goes on
        await picker.drain()
        assert picker.in_flight == 0 and picker.held_s > 0
        picker.check_behind(now=arrival + 100)
        assert not picker.monitor.behind and picker.monitor.unready_reason(now=arrival + 1000) is None
        assert any("caught up after 80 s" in r.getMessage() for r in caplog.records)
        assert picker.monitor.episodes == 1
        await picker.stop()
        assert picker.dropped_windows == 0

    asyncio.run(main())


def test_growing_data_latency_is_behind_and_one_slow_station_is_not_the_job(shipped_model):
    async def main():
        async def predict(name, windows):
            return shipped_model.predict(windows)

        picker = StreamPicker(shipped_model, predict, lambda item, latency: None, behind_s=10.0)
        # Three stations: each record arrives 1 s after its end, except BBB's, which fall 25 s further behind.
        for station in ("AAA", "BBB", "CCC"):
            for record in records(station):
                late = 25.0 if station == "BBB" and record.stats.endtime > T0 + 60 else 0.0
                picker.add_trace(record, now=record.stats.endtime.timestamp + 1.0 + late)
        await picker.drain()
        now = T0.timestamp + 125.0
        states = {s["trace_id"]: s for s in picker.station_states(now=now)}
        assert states["XX.BBB..HH"]["state"] == "behind"
        assert states["XX.BBB..HH"]["lag_s"] == pytest.approx(25.0, abs=0.05)
        assert states["XX.AAA..HH"]["state"] == states["XX.CCC..HH"]["state"] == "streaming"
        picker.check_behind(now=now)
        assert not picker.monitor.behind  # one of three: the station's state, not the job's
        await picker.stop()

    asyncio.run(main())


def test_windows_still_failing_at_stop_are_counted_as_dropped(shipped_model):
    async def main():
        model = GatedModel(shipped_model)
        picker = StreamPicker(shipped_model, model, lambda item, latency: None)
        for record in records("DDD", seconds=60.0):
            picker.add_trace(record)
        await settle()
        held = picker.in_flight
        await picker.stop(flush=True, timeout_s=0.01)  # the gate stays shut: these windows never run
        return held, picker.dropped_windows

    held, dropped = asyncio.run(main())
    assert held > 0 and dropped >= held


def test_service_reports_behind_in_stations_metrics_and_readiness(shipped_model, tmp_path):
    """Through the app: /v1/stations, /metrics and /readyz while the model is held, and after."""
    settings = Settings(
        default_model=shipped_model.name,
        models=[shipped_model.name],
        streaming=StreamingSettings(  # one process: the test holds the picker's model in this one
            watch_dirs=[tmp_path], behind_s=5.0, behind_timeout_s=30.0, workers=1
        ),
    )
    with ServiceHarness(settings) as service:
        picker = service.state.streaming.picker
        model = GatedModel(shipped_model)
        picker.predict = model

        async def feed() -> None:
            past = time.time() - 200.0  # the records arrived 200 s ago and their windows still wait
            for record in records("EEE"):
                picker.add_trace(record, now=past)
            await settle()
            picker.check_behind(now=time.time() - 100.0)  # fell behind 100 s ago ...
            picker.check_behind()  # ... and still is

        service.run(feed())
        assert service.get("/readyz").status_code == 503
        ready = service.get("/readyz").json()
        assert ready["checks"]["stream"].startswith("behind for 10")
        assert "1 of 1 instruments behind" in ready["checks"]["stream"]
        stations = service.get("/v1/stations").json()
        assert [s["state"] for s in stations["stations"]] == ["behind"]
        assert stations["overload"]["behind"] and stations["overload"]["windows_in_flight"] > 0
        samples = service.metrics()
        assert metric(samples, "seispick_stations", network="XX", state="behind") == 1
        assert metric(samples, "seispick_stream_lag_seconds", network="XX") >= 200
        assert metric(samples, "seispick_stream_behind_seconds") >= 100
        assert metric(samples, "seispick_stream_windows_in_flight") == picker.in_flight > 0
        assert metric(samples, "seispick_stream_oldest_window_seconds") >= 200
        for what in ("window", "outbox_full", "slow_subscriber"):
            assert ("seispick_stream_dropped_total", (("what", what),)) in samples

        async def release() -> None:
            model.release()
            await picker.drain()
            picker.check_behind()

        service.run(release())
        assert service.get("/readyz").status_code == 200
        assert service.get("/readyz").json()["checks"]["stream"] == "ok"
        samples = service.metrics()
        assert metric(samples, "seispick_stream_behind_seconds") == 0
        assert metric(samples, "seispick_stream_windows_in_flight") == 0
