"""Training windows from a catalogue: analyst picks of a QuakeML catalogue cut out of continuous waveforms.

The catalogue is read as ``seispick evaluate --catalog`` reads it (:func:`seispick.events.catalog_evaluation.
reference_picks`: P and S picks with a waveform id and a phase hint, manual ones only when there are any, each
pick once); the windows are cut as a miniSEED + pick table folder is cut
(:func:`~seispick.training.data.datasets.samples_from_picks`): one window per station and event, from ``pre_s``
before its first pick to ``post_s`` after its last, channels Z, N, E. Picks without waveform data are skipped
(and counted), labels that fall outside the data a window holds are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from obspy import Stream, UTCDateTime

from seispick.events.catalog_evaluation import CatalogError, read_catalog, reference_picks
from seispick.picking.waveforms import expand_paths, read_waveform_file
from seispick.training.data.datasets import PickRecord, samples_from_picks
from seispick.training.data.samples import WaveformSample
from seispick.training.data.validation import DatasetError, validate_dataset

__all__ = ["CatalogWindows", "catalog_samples"]


@dataclass
class CatalogWindows:
    """The labelled windows of a catalogue and what was left out, with reasons."""

    samples: list[WaveformSample]
    n_events: int
    n_picks: int
    notes: list[str] = field(default_factory=list)


def _origins(catalog) -> dict[str, UTCDateTime]:
    out = {}
    for event in catalog:
        origin = event.preferred_origin() or (event.origins[0] if event.origins else None)
        if origin is not None and origin.time is not None and event.resource_id:
            out[str(event.resource_id)] = origin.time
    return out


def _inside(sample: WaveformSample) -> WaveformSample | None:
    """``sample`` with the labels outside its data dropped; None when none is left."""
    n = sample.n_samples
    inside = lambda i: i is not None and 0 <= i < n  # noqa: E731
    p, s = (i if inside(i) else None for i in (sample.p_index, sample.s_index))
    other = [(phase, i) for phase, i in sample.other_picks if inside(i)]
    if p is None and s is None and not other:
        return None
    return sample.replace(p_index=p, s_index=s, other_picks=other)


def catalog_samples(
    catalog_path: str | Path,
    waveforms: Sequence[str | Path],
    manual_only: bool | None = None,
    pre_s: float = 30.0,
    post_s: float = 30.0,
) -> CatalogWindows:
    """Labelled windows from the picks of ``catalog_path`` on the waveform files below ``waveforms``.

    ``manual_only`` as in :func:`~seispick.events.catalog_evaluation.reference_picks`. Raises
    :class:`DatasetError` naming the catalogue when it cannot be read or no window can be cut.
    """
    try:
        catalog = read_catalog(catalog_path)
    except CatalogError as exc:
        raise DatasetError(str(exc)) from exc
    refs = reference_picks(catalog, manual_only)
    notes = list(refs.notes)
    origins = _origins(catalog)
    records = []
    for ref in refs.picks:
        source = {"event_id": ref.event_id or None}
        if ref.event_id in origins:
            source["origin_time"] = origins[ref.event_id]
        records.append(
            PickRecord(
                ref.station,
                ref.phase,
                UTCDateTime(ref.time),
                ref.waveform_id or None,
                ref.event_id or None,
                source,
            )
        )
    files, problems = expand_paths([str(w) for w in waveforms])
    notes += problems
    stream = Stream()
    for path, _ in files:
        try:
            stream += read_waveform_file(path)
        except ValueError as exc:  # not a waveform file: said, and skipped, as evaluate --catalog does
            notes.append(str(exc))
    cut = list(
        samples_from_picks(
            stream, records, str(catalog_path), ", ".join(map(str, waveforms)), pre_s, post_s, missing="skip"
        )
    )
    samples = [s for s in (_inside(c) for c in cut) if s is not None]
    used = sum(len(s.picks()) for s in samples)
    if used < len(records):
        notes.append(
            f"{len(records) - used} of {len(records)} pick(s) had no waveform data and were left out"
        )
    if not samples:
        raise DatasetError(f"{catalog_path}: no pick of the catalogue lies in the waveforms given")
    problems = validate_dataset(samples)
    if problems:
        raise DatasetError(f"{catalog_path}: " + "; ".join(problems[:5]), problems)
    return CatalogWindows(samples, refs.n_events, len(records), notes)
