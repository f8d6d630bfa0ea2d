"""First-look windows (``streaming.first_look_stride_s``): extra windows ending at the newest data, for the
preliminary picks only; the final picks stay those of ``annotate``."""

from __future__ import annotations

import asyncio

import numpy as np
import obspy
import pytest
from pydantic import ValidationError

from seispick.picking.annotate import annotate
from seispick.picking.results import Pick, PickUpdate
from seispick.picking.segment import CoreSettings, SegmentPicker, grid_clock
from seispick.service.settings import Settings
from seispick.service.stream.picker import StreamPicker
from tests.streams import event_hour
from tests.test_config import run_cli
from tests.test_stream_picker import chop

RECORD_S = 4.0  # about a 512-byte record of 100 Hz data


def run_stream(model, stream: obspy.Stream, first_look_stride_s: float | None, preliminary: bool = True):
    """Records in order (windows run before the next record): final items, pick updates with the data end
    when each was handed out, and the windows run."""

    async def main():
        reach = {"t": 0.0}
        got: list = []
        updates: list[tuple[PickUpdate, float]] = []
        windows: list[int] = []

        async def predict(name, batch):
            windows.append(len(batch))
            return model.predict(batch)

        picker = StreamPicker(
            model,
            predict,
            lambda item, latency: got.append(item),
            silence_timeout_s=0.2,
            on_update=(lambda u, latency: updates.append((u, reach["t"]))) if preliminary else None,
            first_look_stride_s=first_look_stride_s,
        )
        await picker.start()
        for record in chop(stream, RECORD_S):
            reach["t"] = record.stats.endtime.timestamp + record.stats.delta  # data end (exclusive)
            picker.add_trace(record)
            await asyncio.sleep(0)
            await picker.drain()
        await asyncio.sleep(0.6)  # silence closes the instrument
        await picker.drain()
        await picker.stop()
        return got, updates, sum(windows)

    return asyncio.run(main())


@pytest.fixture(scope="module")
def runs(shipped_model):
    stream, _ = event_hour(obspy.UTCDateTime(2024, 6, 1, 0, 0, 3.0), station="AAA", seed=0)
    stream.trim(endtime=stream[0].stats.starttime + 1800)
    return {
        "stream": stream,
        "annotate": annotate(stream, shipped_model).picks,
        None: run_stream(shipped_model, stream, None),
        3.0: run_stream(shipped_model, stream, 3.0),
    }


def test_final_picks_stay_those_of_annotate(runs):
    got, updates, windows = runs[3.0]
    plain, _, plain_windows = runs[None]
    finals = [item for item in got if isinstance(item, Pick)]
    assert sorted(p.id for p in finals) == sorted(p.id for p in runs["annotate"]) and len(finals) > 10
    assert got == plain  # every final item, in the same order, as without first look
    assert [u.pick for u, _ in updates if u.status == "confirmed"] == finals
    assert windows > 3 * plain_windows  # 3 s first looks at a 15 s stride: up to 4 more windows per stride


def first_seen(updates: list[tuple[PickUpdate, float]]) -> dict[str, float]:
    """Final P pick id -> seconds of data past its peak when its first preliminary pick was handed out."""
    published = {u.id: t for u, t in updates if u.status == "preliminary"}
    out = {}
    for u, _ in updates:
        seen = [published[i] for i in (u.id, *u.supersedes) if i in published]
        if u.status == "confirmed" and u.pick.phase == "P" and seen:
            out[u.id] = min(seen) - u.pick.peak_time.timestamp
    return out


def test_clear_p_picks_are_seen_after_less_data(runs):
    before, after = first_seen(runs[None][1]), first_seen(runs[3.0][1])
    updates = runs[None][1]
    clear = {
        u.id
        for u, _ in updates
        if u.status == "confirmed" and u.pick.phase == "P" and u.pick.probability >= 0.9
    }
    assert len(clear) >= 3 and clear <= before.keys() and clear <= after.keys()
    for pick_id in clear:  # every clear P: at least a record (4 s) sooner
        assert after[pick_id] < before[pick_id] - RECORD_S + 0.5, (after[pick_id], before[pick_id])
    assert np.median([after[i] for i in clear]) < 6.0 < 7.0 < np.median([before[i] for i in clear])
    # every preliminary pick is still resolved once: confirmed (as is or superseded) or rejected
    updates = runs[3.0][1]
    published = [u.id for u, _ in updates if u.status == "preliminary"]
    resolved = [u.id for u, _ in updates if u.status == "rejected"]
    resolved += [i for u, _ in updates if u.status == "confirmed" for i in (u.id, *u.supersedes)]
    assert len(published) == len(set(published)) and set(published) <= set(resolved)


def test_no_first_look_without_preliminary_picks(shipped_model, runs):
    stream = runs["stream"].slice(endtime=runs["stream"][0].stats.starttime + 200)
    _, _, plain = run_stream(shipped_model, stream, None, preliminary=False)
    got, updates, windows = run_stream(shipped_model, stream, 3.0, preliminary=False)
    assert windows == plain and updates == []


def test_first_look_windows_on_the_absolute_grid(shipped_model):
    """They end at multiples of the first-look stride, only past every window cut so far, never before a
    whole window of data or after the segment's end; the data they need are kept."""
    settings = CoreSettings.of(shipped_model.card, "m")  # 3000-sample windows, stride 1500
    core = SegmentPicker(settings, "XX.AAA..HH", 1234, grid_clock(100.0), preliminary=True, first_look=300)
    looks = []
    for end in range(1234, 12000, 137):
        regular = core.extend(end)
        look = core.first_look_window()
        assert core.needed_from() <= max(end - end % 300 - 3000, 1234)
        if look is None:
            continue
        looks.append(look + 3000)
        assert (look + 3000) % 300 == 0 and look >= 1234 and look + 3000 <= end
        assert all(look + 3000 > s + 3000 for s in regular)  # no regular window reaches its end
    assert looks == sorted(set(looks)) and len(looks) >= 20
    assert not set(looks) & {s + 3000 for s in range(1500, 12000, 1500)}  # those ends had a regular window
    core.close(12000)
    assert core.first_look_window() is None
    with pytest.raises(ValueError, match="first_look"):
        SegmentPicker(settings, "XX.AAA..HH", 0, grid_clock(100.0), preliminary=True, first_look=1500)


def test_bad_values_are_refused_naming_the_setting(shipped_model):
    assert Settings().streaming.first_look_stride_s is None  # off by default
    with pytest.raises(ValidationError, match="first_look_stride_s"):
        Settings(streaming={"first_look_stride_s": -1})
    variable = "SEISPICK_STREAMING__FIRST_LOOK_STRIDE_S"
    result = run_cli("config", env={variable: "-2"})
    assert result.exit_code == 1 and f"{variable}='-2'" in result.output, result.output
    listed = run_cli("config", "--names")
    assert f"{variable}\tstreaming.first_look_stride_s" in listed.output

    async def predict(name, batch):
        return shipped_model.predict(batch)

    for bad in (15.0, 20.0, 0.001):  # the stride (15 s), above it, under one sample
        with pytest.raises(ValueError, match=r"streaming\.first_look_stride_s .*phasenet-original \(15 s\)"):
            StreamPicker(shipped_model, predict, print, on_update=print, first_look_stride_s=bad)
    for off in (None, 0, 0.0):
        picker = StreamPicker(shipped_model, predict, print, on_update=print, first_look_stride_s=off)
        assert picker.first_look == {shipped_model.name: 0}


def test_first_look_windows_carry_the_newest_data(shipped_model):
    """Record by record, each first-look window is the model's window of the data ending at its grid point."""
    from seispick.picking.incremental import InstrumentPicker
    from seispick.picking.preprocess import normalise_windows

    card = shipped_model.card
    data = np.random.default_rng(3).normal(size=(3, 9000)).astype(np.float32)
    picker = InstrumentPicker("XX.AAA..HH", card, "m", preliminary=True, first_look=300)
    start = 777
    requests = []
    for a in range(0, 9000, 440):  # 4.4 s records, component after component
        for c in range(3):
            requests += picker.add(c, start + a, data[c, a : a + 440], now=float(a))[0]
    looks = [r for r in requests if r.first_look]
    assert len(looks) == picker.stats.first_look_windows >= 10
    assert picker.stats.windows == sum(not r.first_look for r in requests)
    for r in looks:
        assert (r.start + 3000) % 300 == 0
        raw = data[None, :, r.start - start : r.start - start + 3000].copy()
        np.testing.assert_array_equal(r.window, normalise_windows(raw, card.normalisation)[0])


def test_the_service_setting_reaches_the_stream_picker(shipped_model):
    """``serve --first-look-stride-s`` / ``SEISPICK_STREAMING__FIRST_LOOK_STRIDE_S`` reach the job's picker
    (with preliminary picks on; without them there is nothing to look at first)."""
    from prometheus_client import CollectorRegistry

    from seispick.service.stream.job_metrics import StreamMetrics
    from seispick.service.stream.runtime import StreamingRuntime

    async def predict(name, windows):
        raise AssertionError("not called")

    seen = {}
    for preliminary in (True, False):
        settings = Settings(
            default_model=shipped_model.name,
            streaming={"first_look_stride_s": 3.0, "preliminary_picks": preliminary},
        )
        runtime = StreamingRuntime(settings, shipped_model, predict, StreamMetrics(CollectorRegistry()))
        seen[preliminary] = runtime.picker.first_look[shipped_model.name]
    rate = shipped_model.card.sampling_rate
    assert seen == {True: round(3.0 * rate), False: 0}


def test_serve_with_picking_processes_refuses_a_bad_stride_at_start(tmp_path):
    """With ``--workers 2`` the pickers run in picking processes: the API process checks the stride against
    the models first, so a bad one is a one-line start-up error, not workers crashing and restarting."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("SEISPICK_")}
    run = subprocess.run(
        [sys.executable, "-m", "seispick.cli.main", "serve", "--port", "0", "--watch", str(tmp_path),
         "--workers", "2", "--first-look-stride-s", "20"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode != 0
    assert "first_look_stride_s" in run.stderr and "phasenet-original (15 s)" in run.stderr, run.stderr[
        -2000:
    ]
    assert "Traceback" not in run.stderr
