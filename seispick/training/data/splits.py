"""Deterministic train/validation/test splits by station or by time, with a JSON description for model cards."""

from __future__ import annotations

import json
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from obspy import UTCDateTime

from seispick.training.data.samples import WaveformSample, sample_time

__all__ = ["Split", "split_by_station", "split_by_time"]

PARTS = ("train", "val", "test")


@dataclass
class Split:
    """Three disjoint lists of samples and a JSON-able description of what went where."""

    train: list[WaveformSample]
    val: list[WaveformSample]
    test: list[WaveformSample]
    description: dict[str, Any] = field(default_factory=dict)

    def parts(self) -> dict[str, list[WaveformSample]]:
        """The three parts by name."""
        return {"train": self.train, "val": self.val, "test": self.test}

    def to_json(self, **kwargs: Any) -> str:
        """The description as JSON text (for the model card)."""
        return json.dumps(self.description, **kwargs)


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    frac = np.asarray(fractions, dtype=float)
    if frac.shape != (3,) or np.any(frac < 0) or abs(frac.sum() - 1.0) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {tuple(fractions)}")
    return frac


def _assign_groups(sizes: Sequence[int], frac: np.ndarray) -> list[int]:
    """Assign ordered groups to parts 0, 1, 2 (in order, never interleaved) so that sample counts follow
    ``frac``, and no part with a non-zero fraction stays empty."""
    n = len(sizes)
    wanted = int(np.count_nonzero(frac))
    if n < wanted:
        raise ValueError(f"cannot split {n} group(s) into {wanted} non-empty parts")
    bounds = np.cumsum(frac[:2])
    if frac[2] == 0:
        bounds[1] = np.inf
    total, cum, parts = float(sum(sizes)), 0.0, []
    for size in sizes:
        parts.append(int(np.searchsorted(bounds, (cum + size / 2.0) / total, side="right")))
        cum += size
    # Cut points: groups [0, c1) train, [c1, c2) validation, [c2, n) test; nudge them so no wanted part is empty.
    lo1, hi2, gap = int(frac[0] > 0), n - int(frac[2] > 0), int(frac[1] > 0)
    c1 = max(parts.count(0), lo1)
    c2 = min(parts.count(0) + parts.count(1), hi2)
    if c2 - c1 < gap:
        c2 = min(hi2, c1 + gap)
        c1 = min(c1, c2 - gap)  # stays >= lo1 because n >= number of wanted parts
    return [0 if i < c1 else 1 if i < c2 else 2 for i in range(n)]


def _iso(t: UTCDateTime | None) -> str | None:
    return None if t is None else str(t)


def _describe(samples: list[WaveformSample]) -> dict[str, Any]:
    times = [t for t in (sample_time(s) for s in samples) if t is not None]
    return {
        "n_samples": len(samples),
        "n_noise": sum(s.is_noise for s in samples),
        "stations": sorted({s.station for s in samples}),
        "start": _iso(min(times)) if times else None,
        "end": _iso(max(times)) if times else None,
    }


def _build(groups: list[list[WaveformSample]], parts: list[int], description: dict[str, Any]) -> Split:
    out: list[list[WaveformSample]] = [[], [], []]
    for group, part in zip(groups, parts):
        out[part].extend(group)
    for name, part in zip(PARTS, out):
        description[name] = _describe(part)
    return Split(train=out[0], val=out[1], test=out[2], description=description)


def split_by_station(
    samples: Sequence[WaveformSample], fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0
) -> Split:
    """Split so that each station's samples all land in one part; stations are shuffled with ``seed``.

    Fractions are of samples (not of stations) and are met as closely as whole stations allow.
    """
    frac = _check_fractions(fractions)
    by_station: dict[str, list[WaveformSample]] = {}
    for s in samples:
        by_station.setdefault(s.station, []).append(s)
    stations = sorted(by_station)
    order = [stations[i] for i in np.random.default_rng(seed).permutation(len(stations))]
    groups = [by_station[st] for st in order]
    parts = _assign_groups([len(g) for g in groups], frac)
    description = {"method": "by_station", "seed": seed, "fractions": frac.tolist()}
    return _build(groups, parts, description)


def split_by_time(
    samples: Sequence[WaveformSample],
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    boundaries: tuple[UTCDateTime, UTCDateTime] | None = None,
) -> Split:
    """Chronological split: oldest events train, then validation, newest test.

    Samples are ordered by event origin time (else trace start, else a time from the file name); all samples of
    one event (same ``source['event_id']``, else same time) stay together. With ``boundaries`` = (t1, t2),
    train is before t1, validation in [t1, t2), test from t2 on, and ``fractions`` are ignored.
    """
    frac = _check_fractions(fractions)
    groups_by_key: dict[Hashable, list[WaveformSample]] = {}
    group_time: dict[Hashable, UTCDateTime] = {}
    for s in samples:
        t = sample_time(s)
        if t is None:
            raise ValueError(f"{s.where()}: no origin time or start time to split by")
        event = s.source.get("event_id")
        key = ("event", str(event)) if event not in (None, "") else ("time", t.ns)
        groups_by_key.setdefault(key, []).append(s)
        group_time[key] = min(t, group_time.get(key, t))
    keys = sorted(groups_by_key, key=lambda k: (group_time[k].ns, str(k)))
    groups = [groups_by_key[k] for k in keys]
    description: dict[str, Any] = {"method": "by_time"}
    if boundaries is None:
        parts = _assign_groups([len(g) for g in groups], frac)
        description["fractions"] = frac.tolist()
    else:
        t1, t2 = UTCDateTime(boundaries[0]), UTCDateTime(boundaries[1])
        if t2 < t1:
            raise ValueError(f"boundaries must be ordered, got {t1} > {t2}")
        parts = [0 if group_time[k] < t1 else 1 if group_time[k] < t2 else 2 for k in keys]
        description["boundaries"] = [str(t1), str(t2)]
    return _build(groups, parts, description)
