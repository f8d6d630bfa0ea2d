"""Labelled samples as ObsPy Streams, so that evaluation runs them through the same runtime as real data."""

from __future__ import annotations

import zlib

import numpy as np
import obspy
from obspy import UTCDateTime

from seispick.training.data.samples import WaveformSample

__all__ = ["REFERENCE_START", "sample_start", "sample_stream"]

# Start times given to samples that carry none (PhaseNet npz files) lie in the minute after this reference.
REFERENCE_START = UTCDateTime(2000, 1, 1)


def sample_start(sample: WaveformSample) -> UTCDateTime:
    """The sample's start time; when it has none, :data:`REFERENCE_START` plus 0-60 s taken from a hash of the
    trace id.

    Windows are placed on the absolute time grid, so one start time for all would put every NCEDC P (always at
    sample 3000) at the same place in its windows, as real data never do; the hash spreads the grid phase over
    the samples reproducibly.
    """
    if sample.start_time is not None:
        return sample.start_time
    return REFERENCE_START + (zlib.crc32(sample.trace_id.encode()) % 6000) / 100.0


def _band_code(sample: WaveformSample) -> str:
    channels = str(sample.source.get("channels") or "")
    first = channels.split("_")[0]
    return first[:2] if len(first) == 3 else "HH"


def sample_stream(sample: WaveformSample, drop_zero: bool = True) -> obspy.Stream:
    """One trace per component of ``sample`` (``NET.STA..<band><comp>``), starting at :func:`sample_start`.

    All-zero channels (vertical-only records padded with zeros) are left out with ``drop_zero``, as a user's
    vertical-only miniSEED would hold no horizontal traces.
    """
    network, _, station = sample.station.rpartition(".")
    band = _band_code(sample)
    start = sample_start(sample)
    traces = []
    for comp, row in zip(sample.channel_order.upper(), np.asarray(sample.waveform)):
        if drop_zero and not np.any(row):
            continue
        header = {
            "network": network or "XX",
            "station": station or "SYN",
            "channel": f"{band}{comp}",
            "sampling_rate": float(sample.sampling_rate),
            "starttime": start,
        }
        traces.append(obspy.Trace(np.asarray(row, dtype=np.float32), header=header))
    return obspy.Stream(traces)
