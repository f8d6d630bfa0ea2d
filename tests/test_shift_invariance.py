"""Picks do not move when the data start a few seconds later: windows sit on an absolute time grid."""

from __future__ import annotations

import obspy

from seispick.picking.annotate import annotate
from tests.streams import event_hour


def test_trimmed_start_gives_same_picks(shipped_model):
    stream, _ = event_hour(obspy.UTCDateTime(2023, 3, 4, 5, 6, 7.37), seed=2)
    full = annotate(stream, shipped_model).picks
    trimmed_stream = stream.copy().trim(starttime=stream[0].stats.starttime + 7.3)
    trimmed = annotate(trimmed_stream, shipped_model).picks
    window_s = shipped_model.card.window_samples / shipped_model.card.sampling_rate
    edge = trimmed_stream[0].stats.starttime + window_s
    expected = [p for p in full if p.peak_time > edge]
    compared = [p for p in trimmed if p.peak_time > edge]
    assert len(expected) >= 20
    assert len(compared) == len(expected)
    for a, b in zip(expected, compared):
        assert a.phase == b.phase and abs(a.peak_time - b.peak_time) <= 0.01
        assert abs(a.probability - b.probability) < 1e-4
