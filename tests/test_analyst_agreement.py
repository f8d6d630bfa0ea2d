"""The stream's pickers against analyst picks read from a Redis stream (streaming.analyst_picks_key).

The demo archive streamed through the service with phasenet-original live; "analyst" picks (phasenet-ta109c's
picks of the same archive, one moved by 0.3 s, one left out, one invented, plus malformed entries) written to a
real Redis stream while it runs: the counts on the route and in the metrics are ``compare`` of the analyst picks
and ``seispick pick``'s picks of the live model.
"""

from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import dataclass

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from obspy import UTCDateTime
from pydantic import ValidationError

from seispick.models.registry import ModelRegistry
from seispick.picking.agreement import Mark, compare
from seispick.picking.annotate import annotate
from seispick.picking.waveforms import read_waveforms
from seispick.service.settings import Settings, StreamingSettings
from seispick.service.stream.analyst import analyst_mark
from seispick.service.stream.runtime import DEMO_DIR
from tests.service_harness import ServiceHarness
from tests.test_shadow_models import REDIS_URL, _agreement_samples, redis_available

LIVE, ANALYST_SOURCE = "phasenet-original", "phasenet-ta109c"
OUTCOME = {"matched": "matched", "only_live": "only_analyst", "only_shadow": "only_model"}


def test_an_analyst_entry_becomes_a_mark_on_the_pickers_instrument_id() -> None:
    mark = analyst_mark(
        {b"waveform_id": b"NC.MEM..EHE", b"phase": b"Sg", b"time": b"2024-06-01T00:00:03.25Z"}
    )
    assert mark == Mark("NC.MEM..EH", "S", UTCDateTime("2024-06-01T00:00:03.25").timestamp)
    assert analyst_mark({"waveform_id": "XX.A.00.HHZ", "phase": "P", "time": "1717200003.5"}) == Mark(
        "XX.A.00.HH", "P", 1717200003.5
    )
    for bad in (
        {"waveform_id": "XX.A..HHZ", "phase": "pP", "time": "1717200003"},  # a depth phase
        {"waveform_id": "XX.A.HHZ", "phase": "P", "time": "1717200003"},  # not NET.STA.LOC.CHA
        {"waveform_id": "XX.A..HHZ", "phase": "P", "time": "yesterday"},
        {"waveform_id": "XX.A..HHZ", "phase": "P", "time": "-5"},
        {"phase": "P"},
    ):
        assert analyst_mark(bad) is None, bad


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from([b"waveform_id", b"phase", b"time", b"x"]), st.binary(max_size=40)))
def test_any_entry_is_a_mark_or_skipped_never_an_error(fields) -> None:
    first = analyst_mark(fields)
    assert first is None or isinstance(first, Mark)
    assert analyst_mark(fields) == first  # the same answer for the same bytes


def test_analyst_picks_need_redis() -> None:
    with pytest.raises(ValidationError, match="SEISPICK_REDIS_URL"):
        Settings(streaming=StreamingSettings(analyst_picks_key="seispick:analyst"))


@dataclass
class _Analyst:
    trace_id: str
    phase: str
    peak_time: UTCDateTime


@pytest.mark.skipif(not redis_available(), reason="needs the Redis server at 127.0.0.1:6379")
def test_the_service_counts_its_picks_against_the_analysts_as_compare_does(tmp_path) -> None:
    files = sorted(DEMO_DIR.glob("SP.DEMO*.mseed"))
    archive = read_waveforms(files).stream
    registry = ModelRegistry()
    live_picks = annotate(archive, registry.load(LIVE)).picks
    source = annotate(archive, registry.load(ANALYST_SOURCE)).picks
    analysts = [_Analyst(p.trace_id, p.phase, p.peak_time) for p in source]
    analysts[0].peak_time += 0.3  # moved: unmatched within 0.1 s
    del analysts[len(analysts) // 2]  # left out
    analysts.append(_Analyst(analysts[1].trace_id, "P", analysts[1].peak_time + 200))  # invented
    counts = compare(analysts, live_picks)
    expected = {key: {OUTCOME[o]: n for o, n in row.items()} for key, row in counts.items()}
    assert any(row["only_analyst"] for row in expected.values())
    assert any(row["only_model"] for row in expected.values())

    folder = tmp_path / "watched"
    folder.mkdir()
    key = f"seispick:test:analyst:{uuid.uuid4().hex[:8]}"
    settings = Settings(
        models=[LIVE],
        default_model=LIVE,
        redis_url=REDIS_URL,
        streaming=StreamingSettings(
            watch_dirs=[folder],
            silence_timeout_s=2.0,
            workers=1,
            models=[LIVE],
            analyst_picks_key=key + ":analyst",
            analyst_hold_s=5.0,
            stream_key=key,
            channel=key + ":live",
            detections_key=key + ":det",
            preliminary_key=key + ":prelim",
            preliminary_channel=key + ":prelim:live",
        ),
    )
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    r.xadd(key + ":analyst", {"waveform_id": "SP.DEMO1..HHZ", "phase": "P", "time": "2000-01-01T00:00:00"})
    try:
        with ServiceHarness(settings, timeout=120) as service:
            publisher = service.state.streaming.publisher
            for a in analysts:  # written after the start: the reader begins at the stream's end then
                component = "Z" if a.phase == "P" else "E"
                r.xadd(key + ":analyst", {"waveform_id": a.trace_id + component, "phase": a.phase,
                                          "time": str(a.peak_time)})  # fmt: skip
            r.xadd(key + ":analyst", {"waveform_id": "junk", "phase": "P", "time": "0"})
            for path in files:
                shutil.copy(path, folder / path.name)
            deadline = time.time() + 120
            while time.time() < deadline:
                if len(publisher.recent(kind="pick", limit=10_000)) >= len(live_picks):
                    break
                time.sleep(0.5)
            time.sleep(3.0)
            while time.time() < deadline:  # the last picks wait analyst_hold_s for a counterpart
                report = service.get(f"/v1/models/{LIVE}/agreement").json()["analyst"]
                if report["held"] == 0:
                    break
                time.sleep(1.0)
            report = service.get(f"/v1/models/{LIVE}/agreement").json()["analyst"]
            metrics = service.get("/metrics").text
    finally:
        stale = list(r.scan_iter(match=key + "*", count=1000))
        if stale:
            r.delete(*stale)

    got = {
        (row["network"], row["phase"]): {o: row[o] for o in ("matched", "only_analyst", "only_model")}
        for row in report["networks"]
    }
    assert got == expected  # the one entry before the start (year 2000) is not read
    assert report["total"]["matched"] == sum(row["matched"] for row in expected.values())
    assert _agreement_samples(metrics, "seispick_analyst_agreement_total") == {
        (LIVE, network, phase, outcome): float(n)
        for (network, phase), row in expected.items()
        for outcome, n in row.items()
        if n
    }
    assert 'seispick_analyst_picks_total{result="skipped"} 1.0' in metrics
    assert f'seispick_analyst_picks_total{{result="accepted"}} {float(len(analysts))}' in metrics


@pytest.mark.skipif(not redis_available(), reason="needs the Redis server at 127.0.0.1:6379")
def test_the_feeder_script_writes_a_catalogues_picks_as_the_service_reads_them(tmp_path) -> None:
    import subprocess
    import sys
    from pathlib import Path

    from obspy.core.event import Catalog, Event, Pick, WaveformStreamID

    event = Event()
    for phase, channel, t in (("Pg", "HHZ", 10.0), ("Sg", "HHN", 14.5), ("pP", "HHZ", 20.0)):
        event.picks.append(
            Pick(
                time=UTCDateTime(2024, 6, 1) + t,
                phase_hint=phase,
                evaluation_mode="manual",
                waveform_id=WaveformStreamID("XX", "AAA", "", channel),
            )
        )
    path = tmp_path / "events.xml"
    Catalog([event]).write(str(path), format="QUAKEML")
    key = f"seispick:test:feeder:{uuid.uuid4().hex[:8]}"
    script = Path(__file__).resolve().parents[1] / "scripts" / "analyst_picks_to_redis.py"
    done = subprocess.run(
        [sys.executable, str(script), str(path), "--redis-url", REDIS_URL, "--key", key],
        capture_output=True,
        text=True,
        timeout=120,
    )
    r = redis.Redis.from_url(REDIS_URL)
    try:
        assert done.returncode == 0, done.stderr
        marks = [analyst_mark(fields) for _, fields in r.xrange(key)]
    finally:
        r.delete(key)
    start = UTCDateTime(2024, 6, 1).timestamp
    assert marks == [Mark("XX.AAA..HH", "P", start + 10.0), Mark("XX.AAA..HH", "S", start + 14.5)]
