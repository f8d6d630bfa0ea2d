"""The one sample type that every dataset reader, generator and augmentation works on."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from obspy import UTCDateTime

__all__ = ["WaveformSample", "reorder", "sample_time"]


@dataclass
class WaveformSample:
    """A labelled (or noise-only) 3-component recording.

    ``waveform`` is (channels, n) float32 in the order named by ``channel_order`` (e.g. "ENZ").
    ``p_index``/``s_index`` are sample indices of the P and S onsets (None when not picked).
    ``other_picks`` holds further onsets in the window as (phase, index), e.g. of a superposed second event.
    ``source`` holds event metadata; the readers use the keys source_latitude, source_longitude (degrees),
    source_depth_km, source_magnitude, origin_time (UTCDateTime) and event_id where the data have them, and
    keep other format-specific fields. ``path`` names the file (and the entry within it) the sample came from,
    so that problems can be reported against it.
    """

    waveform: np.ndarray
    sampling_rate: float
    channel_order: str
    p_index: int | None
    s_index: int | None
    trace_id: str
    station: str
    start_time: UTCDateTime | None = None
    source: dict[str, Any] = field(default_factory=dict)
    path: str = ""
    other_picks: list[tuple[str, int]] = field(default_factory=list)

    @property
    def n_samples(self) -> int:
        """Number of samples per channel."""
        return int(self.waveform.shape[-1])

    @property
    def is_noise(self) -> bool:
        """True when the sample carries no pick at all."""
        return self.p_index is None and self.s_index is None and not self.other_picks

    def picks(self) -> list[tuple[str, int]]:
        """All picks in the window as (phase, index): P, S, then ``other_picks``."""
        out = [(phase, idx) for phase, idx in (("P", self.p_index), ("S", self.s_index)) if idx is not None]
        return out + list(self.other_picks)

    def replace(self, **changes: Any) -> WaveformSample:
        """A copy with some fields changed (the waveform array is shared unless replaced)."""
        return dataclasses.replace(self, **changes)

    def where(self) -> str:
        """Short location string for messages: the file, else the trace id."""
        return self.path or self.trace_id


def reorder(sample: WaveformSample, order: str = "ZNE") -> WaveformSample:
    """Return ``sample`` with its channels in ``order``.

    Components 1 and 2 are treated as N and E. A component missing from the sample becomes a zero channel.
    """
    aliases = {"1": "N", "2": "E"}
    have = [aliases.get(c, c) for c in sample.channel_order.upper()]
    rows = []
    for comp in order.upper():
        comp = aliases.get(comp, comp)
        if comp in have:
            rows.append(sample.waveform[have.index(comp)])
        else:
            rows.append(np.zeros(sample.n_samples, dtype=np.float32))
    waveform = np.stack(rows).astype(np.float32, copy=False)
    return sample.replace(waveform=waveform, channel_order=order.upper())


def sample_time(sample: WaveformSample) -> UTCDateTime | None:
    """Best time for ordering a sample: event origin time, else trace start, else a time from the file name."""
    for value in (sample.source.get("origin_time"), sample.start_time, sample.source.get("file_time")):
        if value is None or value == "":
            continue
        try:
            return UTCDateTime(value)
        except (TypeError, ValueError):
            continue
    return None
