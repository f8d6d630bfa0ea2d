"""Reading waveform files and folders into one ObsPy Stream, with a clear reason for every file refused."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import obspy


class WaveformReadError(ValueError):
    """None of the given paths held readable waveforms."""


@dataclass
class ReadResult:
    """The stream read, the files it came from and the files refused with their reasons."""

    stream: obspy.Stream
    files: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def expand_paths(paths: list[str | Path]) -> tuple[list[tuple[Path, bool]], list[str]]:
    """(file, named directly) for files named and every file below named folders (sorted, hidden skipped)."""
    files, problems = [], []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
            if not found:
                problems.append(f"{path}: folder holds no files")
            files.extend((p, False) for p in found)
        elif path.is_file():
            files.append((path, True))
        else:
            problems.append(f"{path}: no such file or folder")
    return files, problems


def read_waveform_file(path: Path) -> obspy.Stream:
    """Read one miniSEED (or other ObsPy-readable) file; raise ValueError with a readable reason."""
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stream = obspy.read(str(path))
    except TypeError as exc:  # ObsPy's "Unknown format" error
        raise ValueError(f"{path}: not a miniSEED (or other ObsPy-readable) waveform file") from exc
    except Exception as exc:  # noqa: BLE001 - decoders raise many types for corrupt input
        raise ValueError(
            f"{path}: could not be decoded as miniSEED ({exc.__class__.__name__}: {exc})"
        ) from exc
    if len(stream) == 0:
        raise ValueError(f"{path}: holds no waveform records")
    return stream


def read_waveforms(paths: list[str | Path]) -> ReadResult:
    """Read every file below ``paths``; raise WaveformReadError if nothing could be read."""
    files, problems = expand_paths(paths)
    result = ReadResult(stream=obspy.Stream(), problems=problems)
    skipped: list[Path] = []  # files found in folders that are not waveforms (READMEs, CSVs, ...)
    for path, named in files:
        try:
            result.stream += read_waveform_file(path)
            result.files.append(path)
        except ValueError as exc:
            if named:
                result.problems.append(str(exc))
            else:
                skipped.append(path)
    if skipped:
        examples = ", ".join(p.name for p in skipped[:3]) + (", ..." if len(skipped) > 3 else "")
        result.problems.append(
            f"skipped {len(skipped)} file(s) in folders that are not waveforms ({examples})"
        )
    if not result.files:
        reasons = "\n  ".join(result.problems) or "no paths given"
        raise WaveformReadError(f"no readable waveform files:\n  {reasons}")
    return result
