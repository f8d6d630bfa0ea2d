"""Cross-validation folds: held-out blocks in time or by station, and the train/validation/test splits of each fold.

Used by cross-validation of fine-tuning (:mod:`~seispick.training.fitting.crossval`) and by k-fold selection
(:mod:`~seispick.training.fitting.fold_selection`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from seispick.training.data.inputs import DataSplit, load_split, split_samples
from seispick.training.data.samples import WaveformSample, sample_time

__all__ = [
    "held_out_blocks",
    "make_folds",
    "station_folds",
    "station_groups",
    "time_blocks",
    "time_folds",
]

# Training and validation shares of what a fold leaves for fine-tuning: seispick finetune's 0.7 / 0.15.
POOL_FRACTIONS = (0.7 / 0.85, 0.15 / 0.85, 0.0)


def time_blocks(samples: Sequence[WaveformSample], folds: int) -> list[list[WaveformSample]]:
    """``folds`` consecutive blocks of samples in time order, as equal in size as possible."""
    if len(samples) < folds:
        raise ValueError(f"{len(samples)} sample(s) cannot make {folds} folds")
    ordered = sorted(samples, key=lambda s: (sample_time(s) or 0, s.trace_id))
    size, extra = divmod(len(ordered), folds)
    blocks, start = [], 0
    for i in range(folds):
        stop = start + size + (1 if i < extra else 0)
        blocks.append(ordered[start:stop])
        start = stop
    return blocks


def station_groups(
    samples: Sequence[WaveformSample], folds: int, seed: int = 0
) -> list[list[WaveformSample]]:
    """The samples in ``folds`` groups of whole stations: stations shuffled with ``seed`` and dealt, largest
    first, to the group with the fewest samples so far, so groups hold about as many records."""
    by_station: dict[str, list[WaveformSample]] = {}
    for s in samples:
        by_station.setdefault(s.station, []).append(s)
    if len(by_station) < folds:
        raise ValueError(f"{len(by_station)} station(s) cannot make {folds} station folds")
    stations = sorted(by_station)
    order = [stations[i] for i in np.random.default_rng(seed).permutation(len(stations))]
    order.sort(key=lambda st: -len(by_station[st]))  # stable: shuffled within equal sizes
    groups: list[list[str]] = [[] for _ in range(folds)]
    for st in order:
        smallest = min(range(folds), key=lambda g: (sum(len(by_station[x]) for x in groups[g]), g))
        groups[smallest].append(st)
    return [[s for st in sorted(group) for s in by_station[st]] for group in groups]


def held_out_blocks(
    samples: Sequence[WaveformSample], folds: int, by: str, seed: int = 0
) -> list[list[WaveformSample]]:
    """Blocks of :func:`time_blocks` (``by="time"``) or :func:`station_groups` (``by="station"``)."""
    if by == "time":
        return time_blocks(samples, folds)
    if by == "station":
        return station_groups(samples, folds, seed)
    raise ValueError(f"unknown fold method {by!r}; use time or station")


def time_folds(samples: Sequence[WaveformSample], folds: int) -> list[DataSplit]:
    """``folds`` splits of chronological blocks: test = block i, validation = block i+1 (cyclic), train = rest."""
    if folds < 3:
        raise ValueError(f"need at least 3 folds (train, validation, test blocks), got {folds}")
    blocks = time_blocks(samples, folds)
    out = []
    for i in range(folds):
        j = (i + 1) % folds
        train = [s for k, b in enumerate(blocks) if k not in (i, j) for s in b]
        out.append(
            DataSplit(train=train, val=blocks[j], test=blocks[i], description={"fold": i, "of": folds})
        )
    return out


def station_folds(samples: Sequence[WaveformSample], folds: int, seed: int = 0) -> list[DataSplit]:
    """``folds`` splits with disjoint stations: test = the records of station group i
    (:func:`station_groups`); the other stations are split by station into training and validation as
    ``seispick finetune`` splits a user's folder (0.7 : 0.15)."""
    if folds < 2:
        raise ValueError(f"need at least 2 folds, got {folds}")
    if len({s.station for s in samples}) < folds + 2:
        raise ValueError(f"{len({s.station for s in samples})} station(s) cannot make {folds} station folds")
    out = []
    for i, test in enumerate(station_groups(samples, folds, seed)):
        held = {id(s) for s in test}
        inner = split_samples([s for s in samples if id(s) not in held], "station", POOL_FRACTIONS, seed)
        description = {"fold": i, "of": folds, "test_stations": sorted({s.station for s in test})}
        out.append(DataSplit(train=inner.train, val=inner.val, test=test, description=description))
    return out


def make_folds(
    data: Path | Sequence[WaveformSample],
    folds: int,
    by: str = "time",
    use_all: bool = False,
    seed: int = 0,
) -> list[DataSplit]:
    """The folds of ``data`` (a dataset folder, or samples such as a catalogue's windows) over the training and
    validation part of its default split (by time or by station, seed 0; so its test part stays unseen), or
    over every record with ``use_all``."""
    if by not in ("time", "station"):
        raise ValueError(f"unknown fold method {by!r}; use time or station")
    if isinstance(data, str | Path):
        split = load_split([data], by)
    else:
        split = DataSplit()
        split.add("samples", split_samples(list(data), by))
    samples = split.part("all") if use_all else split.train + split.val
    return time_folds(samples, folds) if by == "time" else station_folds(samples, folds, seed)
