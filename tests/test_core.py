"""The picking core (models/trigger.py, stacking.py, windowing.py, segment.py): ObsPy's trigger without scipy,
incremental placement and stacking in any order equal to the whole-segment result, each pick emitted once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from obspy.signal.trigger import trigger_onset

from seispick.models.card import ModelCard
from seispick.picking.segment import CoreSettings, SegmentPicker, grid_clock
from seispick.picking.stacking import Stack, stack_windows
from seispick.picking.trigger import Trigger, WindowRuns, trigger_intervals
from seispick.picking.windowing import WindowPlacement, window_offsets

MODELS = Path(__file__).resolve().parents[1] / "seispick" / "models"


def probability_like(rng: np.random.Generator, n: int) -> np.ndarray:
    """A smooth trace in [0, 1] crossing every threshold many times, with plateaus and a NaN or two."""
    x = np.convolve(rng.random(n + 40), np.hanning(40) / np.hanning(40).sum(), mode="same")[20 : 20 + n]
    x = (x - x.min()) / (np.ptp(x) or 1)
    x[rng.integers(0, n, 3)] = 1.0  # spikes
    x[n // 3 : n // 3 + 5] = 0.9  # a plateau: the first sample of equals is the peak
    if n > 100:
        x[rng.integers(0, n)] = np.nan
    return x.astype(np.float32)


def seisbench_picks(values: np.ndarray, threshold: float) -> list[tuple[int, int, int]]:
    """(on, off, peak) as SeisBench's picks_from_annotations computes them with ObsPy's trigger_onset."""
    out = []
    for s0, s1 in trigger_onset(values, threshold, threshold / 2):
        out.append((int(s0), int(s1), int(s0 + np.argmax(values[s0 : s1 + 1]))))
    return out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("threshold", [0.1, 0.3, 0.5, 0.77])
def test_trigger_equals_obspy_trigger_onset(seed, threshold):
    rng = np.random.default_rng(seed)
    values = probability_like(rng, int(rng.integers(50, 5000)))
    if seed % 2:
        values[-30:] = 0.95  # still on at the end of the data
    expected = seisbench_picks(values, threshold)
    assert expected, "the trace must trigger"
    trigger = Trigger(threshold)
    closed = trigger.feed(values, 0) + [t for t in [trigger.close()] if t is not None]
    assert [(t.on, t.off, t.peak) for t in closed] == expected
    assert [t.value for t in closed] == [float(values[p]) for _, _, p in expected]
    assert trigger_intervals(values, threshold).tolist() == [[a, b] for a, b, _ in expected]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("off_ratio", [0.3, 0.8])
def test_trigger_off_ratio_equals_obspy_trigger_onset_with_that_off_level(seed, off_ratio):
    """A card's trigger_off_ratios: the trigger ends below ratio x threshold, as trigger_onset(v, t, t * r)."""
    rng = np.random.default_rng(50 + seed)
    values = probability_like(rng, int(rng.integers(500, 5000)))
    threshold = 0.4
    expected = [(int(a), int(b)) for a, b in trigger_onset(values, threshold, threshold * off_ratio)]
    assert (
        expected and [list(e) for e in expected] != trigger_intervals(values, threshold).tolist()
    )  # it matters
    assert trigger_intervals(values, threshold, off_ratio).tolist() == [list(e) for e in expected]
    trigger = Trigger(threshold, off_ratio=off_ratio)
    closed = trigger.feed(values, 0) + [t for t in [trigger.close()] if t is not None]
    assert [(t.on, t.off) for t in closed] == expected


@pytest.mark.parametrize("seed", range(5))
def test_trigger_fed_in_chunks_gives_the_same_triggers_once(seed):
    rng = np.random.default_rng(100 + seed)
    values = probability_like(rng, 20_000)
    whole = Trigger(0.4)
    expected = whole.feed(values, 1000) + [t for t in [whole.close()] if t is not None]
    chunked, got, position = Trigger(0.4), [], 0
    while position < values.size:
        n = int(rng.integers(0, 700))  # empty chunks too
        got += chunked.feed(values[position : position + n], 1000 + position)
        position += n
    got += [t for t in [chunked.close()] if t is not None]
    assert got == expected and len(expected) > 5


def test_window_runs_in_chunks_equal_whole():
    rng = np.random.default_rng(7)
    starts = np.cumsum(rng.choice([500, 500, 500, 1200], 300))  # some windows neither overlap nor touch
    scores = rng.random(300).astype(np.float32)
    outputs = [np.array([1 - s, s]) for s in scores]
    whole = WindowRuns(0.5, 1000)
    expected = whole.feed(starts, scores, outputs) + [r for r in [whole.close()] if r]
    part, got = WindowRuns(0.5, 1000), []
    for a in range(0, 300, 17):
        got += part.feed(starts[a : a + 17], scores[a : a + 17], outputs[a : a + 17])
    got += [r for r in [part.close()] if r]
    assert [(r.first, r.last, r.best, r.score) for r in got] == [
        (r.first, r.last, r.best, r.score) for r in expected
    ]
    for run in expected:  # a run: windows at or above the threshold, touching, best = first of the highest
        inside = (starts >= run.first) & (starts <= run.last)
        assert (scores[inside] >= 0.5).all() and run.score == scores[inside].max()
        assert run.best == starts[inside][np.argmax(scores[inside])]
        assert (np.diff(starts[inside]) <= 1000).all()


@pytest.mark.parametrize("method", ["avg", "max"])
def test_stack_in_any_order_equals_stack_windows(method):
    rng = np.random.default_rng(3)
    offsets = window_offsets(777, 20_000, 3000, 1500)
    preds = rng.random((len(offsets), 3, 3000)).astype(np.float32)
    expected = stack_windows(preds, offsets, 20_000, method)
    stack = Stack(3, method, 777)
    for i in rng.permutation(len(offsets)):
        stack.add(777 + int(offsets[i]), preds[i])
    # sums of up to three windows in another order differ in the last bit at most; a maximum not at all
    tolerance = 5e-7 if method == "avg" else 0
    np.testing.assert_allclose(stack.final(777, 777 + 20_000), expected, rtol=0, atol=tolerance)
    with pytest.raises(ValueError, match="stacking"):
        Stack(3, "median", 0)


@pytest.mark.parametrize("start", [0, 1, 1499, 1500, 123_456_789])
@pytest.mark.parametrize("n", [1000, 3000, 3001, 4499, 10_000, 77_777])
def test_placement_as_data_arrive_equals_whole_segment(start, n):
    rng = np.random.default_rng(start + n)
    placement, placed, ready, bound = WindowPlacement(start, 3000, 1500), [], start, start
    while ready < start + n:
        ready = min(ready + int(rng.integers(1, 2500)), start + n)
        new = placement.extend(ready).tolist()
        assert all(s >= bound for s in new), "no window starts before the bound announced earlier"
        placed += new
        bound = placement.earliest_future(ready)
    new = placement.close(start + n).tolist()
    assert all(s >= bound for s in new)
    placed += new
    assert len(placed) == len(set(placed))
    assert sorted(placed) == (window_offsets(start, n, 3000, 1500) + start).tolist()


def fake_outputs(starts: np.ndarray, window: int) -> np.ndarray:
    """Picker-like outputs (N, P, S) that differ between overlapping windows, so that stacking matters:
    a P bump every 4321 samples of the absolute grid and an S bump 600 samples after it."""
    out = np.zeros((len(starts), 3, window), np.float32)
    for k, s in enumerate(starts.tolist()):
        t = np.arange(s, s + window) % 4321
        gain = 0.8 + 0.2 * np.cos(s / 977.0)
        p = np.exp(-0.5 * ((t - 2000) / 25.0) ** 2)
        q = np.exp(-0.5 * ((t - 2600) / 40.0) ** 2)
        out[k, 1], out[k, 2] = gain * p, 0.9 * gain * q
        out[k, 0] = 1 - np.clip(out[k, 1] + out[k, 2], 0, 1)
    return out


@pytest.mark.parametrize("stacking", ["avg", "max"])
def test_segment_picker_record_by_record_equals_whole_segment(stacking):
    """Windows asked for as data arrive, outputs back in random order: every pick and detection of the
    whole-segment run comes out exactly once."""
    card = ModelCard.read(MODELS / "phasenet-original" / "card.json")
    settings = CoreSettings.of(card, card.name, stacking=stacking)
    start, n = 1_000_000 * 1500 + 321, 60_000
    clock = grid_clock(100.0, 0.004)

    whole = SegmentPicker(settings, "XX.AAA..HH", start, clock, keep=True)
    starts = whole.close(start + n)
    expected = whole.results(starts, fake_outputs(starts, 3000))
    assert len({type(e).__name__ for e in expected}) == 2 and len(expected) > 20  # picks and detections
    assert whole.done and whole.probabilities.shape == (3, n)

    rng = np.random.default_rng(11)
    core = SegmentPicker(settings, "XX.AAA..HH", start, clock)
    waiting, got, ready = [], [], start
    while not core.done:
        if ready < start + n:
            ready = min(ready + int(rng.integers(100, 2000)), start + n)
            waiting += core.extend(ready).tolist()
        elif core.closed_end is None:
            waiting += core.close().tolist()
            got += core.advance()
        rng.shuffle(waiting)
        k = int(rng.integers(0, 4)) if core.closed_end is None else len(waiting)
        for s in waiting[:k]:
            got += core.result(s, fake_outputs(np.array([s]), 3000)[0])
        waiting = waiting[k:]
    key = lambda e: (type(e).__name__, e.start_time, getattr(e, "phase", ""))  # noqa: E731
    got, expected = sorted(got, key=key), sorted(expected, key=key)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert (type(a), a.start_time, a.end_time, getattr(a, "peak_time", None)) == (
            type(b),
            b.start_time,
            b.end_time,
            getattr(b, "peak_time", None),
        )
        assert a.probability == pytest.approx(b.probability, abs=1e-6)


def test_importing_the_picking_path_does_not_import_scipy_signal():
    code = (
        "import sys, seispick.picking.annotate, seispick.picking.detect, seispick.picking.incremental; "
        "sys.exit('scipy.signal' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
