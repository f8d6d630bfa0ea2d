"""Dataset folders in, validated samples and train/validation/test splits out, failing fast with file names."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from seispick.training.data.datasets import iter_dataset
from seispick.training.data.samples import WaveformSample
from seispick.training.data.splits import Split, split_by_station, split_by_time
from seispick.training.data.validation import MAX_LISTED, DatasetError, validate_dataset

__all__ = ["DataSplit", "SplitMethod", "check_for_model", "load_folder", "load_split", "split_samples"]

SplitMethod = Literal["auto", "station", "time"]


def load_folder(path: str | Path, allow_noise: bool = False, n_channels: int = 3) -> list[WaveformSample]:
    """All samples of a dataset folder, validated; :class:`DatasetError` names the folder or the files at fault."""
    path = Path(path)
    samples = list(iter_dataset(path))
    if not samples:
        raise DatasetError(f"{path}: dataset contains no traces")
    _raise(validate_dataset(samples, allow_noise=allow_noise, n_channels=n_channels))
    return samples


def _raise(problems: list[str]) -> None:
    if problems:
        shown = problems[:MAX_LISTED]
        text = f"{len(problems)} problem(s) in dataset:\n  " + "\n  ".join(shown)
        if len(problems) > len(shown):
            text += f"\n  ... and {len(problems) - len(shown)} more"
        raise DatasetError(text, problems)


def check_for_model(samples: Sequence[WaveformSample], sampling_rate: float, min_samples: int = 1) -> None:
    """Raise :class:`DatasetError` for samples a model of ``sampling_rate`` cannot be trained on as they are."""
    problems = [
        f"{s.where()}: sampling rate {s.sampling_rate:g} Hz differs from the model's {sampling_rate:g} Hz "
        "(resample the data first)"
        for s in samples
        if abs(s.sampling_rate - sampling_rate) > 1e-6 * sampling_rate
    ]
    problems += [
        f"{s.where()}: only {s.n_samples} samples, need {min_samples}"
        for s in samples
        if s.n_samples < min_samples
    ]
    _raise(problems)


def split_samples(
    samples: Sequence[WaveformSample],
    method: SplitMethod = "auto",
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> Split:
    """Split by station or by event time; ``auto`` splits one-station data by time and other data by station."""
    if method == "auto":
        method = "time" if len({s.station for s in samples}) == 1 else "station"
    if method == "time":
        return split_by_time(samples, fractions)
    if method == "station":
        return split_by_station(samples, fractions, seed=seed)
    raise ValueError(f"unknown split method {method!r}; use auto, station or time")


@dataclass
class DataSplit:
    """Samples of several folders, each split on its own, merged part by part, and the description per folder."""

    train: list[WaveformSample] = field(default_factory=list)
    val: list[WaveformSample] = field(default_factory=list)
    test: list[WaveformSample] = field(default_factory=list)
    description: dict[str, Any] = field(default_factory=dict)

    def part(self, name: str) -> list[WaveformSample]:
        """``train``, ``val``, ``test`` or ``all``."""
        if name == "all":
            return self.train + self.val + self.test
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split part {name!r}; use train, val, test or all")
        return getattr(self, name)

    def add(self, name: str, split: Split) -> None:
        self.train += split.train
        self.val += split.val
        self.test += split.test
        self.description[name] = split.description


def load_split(
    paths: Sequence[str | Path],
    method: SplitMethod = "auto",
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    allow_noise: bool = False,
) -> DataSplit:
    """Load and validate every folder (all problems of all folders reported together), then split each one."""
    if not paths:
        raise DatasetError("no dataset folder given")
    loaded, problems = {}, []
    for path in paths:
        try:
            loaded[Path(path)] = load_folder(path, allow_noise=allow_noise)
        except DatasetError as exc:
            problems += exc.problems
    _raise(problems)
    out = DataSplit()
    for path, samples in loaded.items():
        try:
            out.add(path.name, split_samples(samples, method, fractions, seed))
        except ValueError as exc:
            raise DatasetError(f"{path}: cannot split {len(samples)} sample(s): {exc}") from exc
    return out
