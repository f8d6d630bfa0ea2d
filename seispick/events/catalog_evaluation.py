"""Analyst picks of a QuakeML catalogue against a model's picks on the continuous waveforms: pure scoring.

This module runs no model (``catalog_picking`` does): it turns an ObsPy catalogue into reference picks, matches
model picks to them and scores the result, and chooses P/S thresholds by cross-validation over time blocks.
No torch (see ``.importlinter``).

Matching: a model pick matches a reference (analyst) pick of the same station (``NET.STA``, any location and
channel) and phase within the tolerance, one to one, greedily by smallest |dt| (as the labelled-window
evaluation does). Only reference picks inside the data the model saw are scored (the others are counted as
``outside``); false picks per hour divide the unmatched model picks by the station-hours of data (the union of
the annotated spans of each station). Residuals are model - analyst, in seconds.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seispick.picking.agreement import match_times

TOLERANCES = (0.1, 0.5)
PHASES = ("P", "S")
GRID = tuple(round(0.1 * k, 1) for k in range(1, 10))  # 0.1 .. 0.9
OFF_GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)  # trigger off ratios (a trigger ends below ratio x threshold)
ALL = "all"  # the station column of the rows over every station


class CatalogError(ValueError):
    """A catalogue that cannot be read or holds no usable pick; the message names the file."""


@dataclass(frozen=True)
class RefPick:
    """A reference (analyst) pick: ``time`` in POSIX seconds."""

    station: str  # NET.STA
    phase: str  # P or S
    time: float
    waveform_id: str = ""
    event_id: str = ""


@dataclass(frozen=True)
class ModelPick:
    """A model pick reduced to what scoring needs: ``time`` (the peak) in POSIX seconds."""

    station: str
    phase: str
    time: float
    probability: float = 1.0
    trace_id: str = ""


@dataclass(frozen=True)
class Span:
    """A stretch of data a model annotated on one station (POSIX seconds)."""

    station: str
    start: float
    end: float
    vertical_only: bool = False  # the instrument recorded no horizontal component there


# -- reference picks from QuakeML ------------------------------------------------------------------------------


def phase_of(hint: str | None) -> str | None:
    """``P`` or ``S`` from an analyst's phase hint (P, Pg, Pn, Pb, S, Sg, Sn, ...); None for anything else
    (depth phases such as pP start with a lower-case letter and are left out, as are amplitudes)."""
    hint = (hint or "").strip()
    return hint[0] if hint[:1] in ("P", "S") else None


@dataclass
class CatalogPicks:
    """The reference picks of a catalogue and what was left out, with reasons."""

    picks: list[RefPick]
    n_events: int
    notes: list[str] = field(default_factory=list)


def read_catalog(path: str | Path):
    """``obspy.read_events`` of a QuakeML (or SeisComP XML, ...) file; :class:`CatalogError` names the file."""
    from obspy import read_events

    try:
        return read_events(str(path))
    except Exception as exc:  # ObsPy raises many kinds for a file it cannot read
        raise CatalogError(f"{path}: cannot be read as an event catalogue ({exc})") from exc


def reference_picks(catalog, manual_only: bool | None = None) -> CatalogPicks:
    """The P and S picks of ``catalog`` (an ObsPy Catalog) with a waveform id and a phase hint.

    ``manual_only``: keep only picks whose evaluation mode is ``manual``; None (default) does so when the
    catalogue has any manual pick (SeisComP exports its automatic picks too) and keeps every pick otherwise.
    The same pick (station, phase, time within 10 ms) listed under several events counts once.
    """
    notes: list[str] = []
    raw = [(event, pick) for event in catalog for pick in event.picks]
    modes = [str(p.evaluation_mode or "") for _, p in raw]
    if manual_only is None:
        manual_only = "manual" in modes
        if manual_only and any(m != "manual" for m in modes):
            notes.append(
                f"{sum(m != 'manual' for m in modes)} pick(s) whose evaluation mode is not manual were left out"
            )
    elif manual_only:
        left = sum(m != "manual" for m in modes)
        if left:
            notes.append(f"{left} pick(s) whose evaluation mode is not manual were left out")
    picks, seen, no_phase, no_id, repeated = [], set(), 0, 0, 0
    for (event, pick), mode in zip(raw, modes):
        if manual_only and mode != "manual":
            continue
        phase = phase_of(pick.phase_hint)
        wid = pick.waveform_id
        if phase is None:
            no_phase += 1
            continue
        if wid is None or not wid.network_code or not wid.station_code or pick.time is None:
            no_id += 1
            continue
        station = f"{wid.network_code}.{wid.station_code}"
        time = float(pick.time.timestamp)
        key = (station, phase, round(time * 100))
        if key in seen:
            repeated += 1
            continue
        seen.add(key)
        event_id = str(event.resource_id) if event.resource_id else ""
        picks.append(RefPick(station, phase, time, wid.get_seed_string(), event_id))
    if no_phase:
        notes.append(f"{no_phase} pick(s) without a P or S phase hint were left out")
    if no_id:
        notes.append(f"{no_id} pick(s) without a network and station code or a time were left out")
    if repeated:
        notes.append(f"{repeated} pick(s) listed again (same station, phase and time) were counted once")
    picks.sort(key=lambda p: (p.time, p.station, p.phase))
    return CatalogPicks(picks=picks, n_events=len(catalog), notes=notes)


def from_seispick_picks(picks: Iterable[Any]) -> list[ModelPick]:
    """Model picks from seispick's ``Pick`` records (trace_id NET.STA.LOC.BI, phase, peak_time)."""
    out = []
    for p in picks:
        net, sta = p.trace_id.split(".")[:2]
        out.append(
            ModelPick(f"{net}.{sta}", p.phase, float(p.peak_time.timestamp), float(p.probability), p.trace_id)
        )
    return out


# -- data coverage ---------------------------------------------------------------------------------------------


def vertical_only_stations(spans: Iterable[Span]) -> set[str]:
    """Stations whose every span is vertical-only: scored with the card's ``vertical_only_thresholds``, and
    calibrated apart from the three-component ones."""
    seen: dict[str, bool] = {}
    for s in spans:
        seen[s.station] = seen.get(s.station, True) and s.vertical_only
    return {station for station, vertical in seen.items() if vertical}


def merged_spans(spans: Iterable[Span]) -> dict[str, list[tuple[float, float]]]:
    """The union of ``spans`` per station, as sorted disjoint (start, end) intervals."""
    by_station: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for s in sorted(spans, key=lambda s: (s.station, s.start)):
        runs = by_station[s.station]
        if runs and s.start <= runs[-1][1]:
            runs[-1] = (runs[-1][0], max(runs[-1][1], s.end))
        else:
            runs.append((s.start, s.end))
    return dict(by_station)


def _inside(runs: list[tuple[float, float]], t: float) -> bool:
    return any(a <= t <= b for a, b in runs)


def hours(runs: Mapping[str, list[tuple[float, float]]], stations: Iterable[str] | None = None) -> float:
    """Station-hours of data in ``runs`` (all stations, or those named)."""
    keys = runs.keys() if stations is None else [s for s in stations if s in runs]
    return sum(b - a for k in keys for a, b in runs[k]) / 3600.0


# -- matching and scores ---------------------------------------------------------------------------------------


def match(
    reference: Sequence[float], model: Sequence[float], tolerance: float
) -> tuple[list[tuple[int, int, float]], list[int], list[int]]:
    """One-to-one matches of ``model`` times to ``reference`` times within ``tolerance`` (greedy by |dt|).

    Returns ((reference index, model index, model - reference), unmatched reference indices, unmatched model
    indices). Ties in |dt| go to the earlier reference, then the earlier model pick (by time), as
    ``picking.agreement.match_times`` (the one matcher) chooses them.
    """
    ref = [float(t) for t in reference]
    mod = [float(t) for t in model]
    pairs = sorted((i, j, mod[j] - ref[i]) for i, j in match_times(ref, mod, tolerance))
    used_ref, used_mod = {i for i, _, _ in pairs}, {j for _, j, _ in pairs}
    return (
        pairs,
        [i for i in range(len(ref)) if i not in used_ref],
        [j for j in range(len(mod)) if j not in used_mod],
    )


@dataclass
class Counts:
    """Matches of one phase at one tolerance (over a station, or all of them)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    residuals: list[float] = field(default_factory=list)

    def add(self, other: Counts) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.residuals += other.residuals

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        return f1_of(self.tp, self.fp, self.fn)


def f1_of(tp: int, fp: int, fn: int) -> float:
    """F1 from counts (0 when there is nothing to score)."""
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def median_mad(values: Sequence[float]) -> tuple[float, float]:
    """Median and median absolute deviation (unscaled); NaN for no values."""
    if not len(values):
        return math.nan, math.nan
    x = np.asarray(values, dtype=float)
    med = float(np.median(x))
    return med, float(np.median(np.abs(x - med)))


@dataclass
class ScoreRow:
    """One line of the evaluation table: a model, a station (or ``all``), a phase and a tolerance."""

    model: str
    station: str
    phase: str
    tolerance: float
    n_reference: int
    n_model: int
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    residual_median: float
    residual_mad: float
    hours: float
    false_per_hour: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Scores:
    """A model's scores on a catalogue: rows over all stations and per station, the residuals of the matches
    (by phase and tolerance) and the reference picks left out because no data covers them."""

    model: str
    rows: list[ScoreRow]
    residuals: dict[tuple[str, float], list[float]]
    n_outside: int
    hours: float

    def row(self, phase: str, tolerance: float, station: str = ALL) -> ScoreRow:
        for r in self.rows:
            if r.station == station and r.phase == phase and math.isclose(r.tolerance, tolerance):
                return r
        raise KeyError((station, phase, tolerance))


def scored_references(
    reference: Iterable[RefPick], runs: Mapping[str, list[tuple[float, float]]]
) -> list[RefPick]:
    """The reference picks inside the data (``merged_spans``)."""
    return [r for r in reference if _inside(runs.get(r.station, []), r.time)]


def count(
    reference: Sequence[RefPick],
    picks: Sequence[ModelPick],
    tolerance: float,
    phases: Sequence[str] = PHASES,
) -> dict[tuple[str, str], Counts]:
    """Counts per (station, phase) at ``tolerance``: every station with a reference or a model pick."""
    refs: dict[tuple[str, str], list[float]] = defaultdict(list)
    mods: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in reference:
        if r.phase in phases:
            refs[(r.station, r.phase)].append(r.time)
    for p in picks:
        if p.phase in phases:
            mods[(p.station, p.phase)].append(p.time)
    out = {}
    for key in sorted(set(refs) | set(mods)):
        pairs, missed, false = match(refs.get(key, []), mods.get(key, []), tolerance)
        out[key] = Counts(len(pairs), len(false), len(missed), [dt for _, _, dt in pairs])
    return out


def score(
    model: str,
    reference: Sequence[RefPick],
    picks: Sequence[ModelPick],
    spans: Iterable[Span],
    tolerances: Sequence[float] = TOLERANCES,
    phases: Sequence[str] = PHASES,
) -> Scores:
    """P/R/F1, residual median and MAD and false picks per hour of a model's ``picks`` against ``reference``,
    per phase and tolerance, over all stations and per station (only reference picks inside ``spans``)."""
    runs = merged_spans(spans)
    inside = scored_references(reference, runs)
    stations = sorted({r.station for r in inside} | {p.station for p in picks} | set(runs))
    rows, residuals = [], {}
    for phase in phases:
        for tol in tolerances:
            per_station = count(inside, picks, tol, [phase])
            total = Counts()
            station_rows = []
            for station in stations:
                c = per_station.get((station, phase), Counts())
                total.add(c)
                station_rows.append(_row(model, station, phase, tol, c, hours(runs, [station])))
            rows.append(_row(model, ALL, phase, tol, total, hours(runs)))
            rows += station_rows
            residuals[(phase, float(tol))] = total.residuals
    return Scores(model, rows, residuals, len(reference) - len(inside), hours(runs))


def _row(model: str, station: str, phase: str, tol: float, c: Counts, h: float) -> ScoreRow:
    med, mad = median_mad(c.residuals)
    return ScoreRow(
        model=model,
        station=station,
        phase=phase,
        tolerance=float(tol),
        n_reference=c.tp + c.fn,
        n_model=c.tp + c.fp,
        tp=c.tp,
        fp=c.fp,
        fn=c.fn,
        precision=c.precision,
        recall=c.recall,
        f1=c.f1,
        residual_median=med,
        residual_mad=mad,
        hours=h,
        false_per_hour=c.fp / h if h > 0 else math.nan,
    )


# -- threshold calibration -------------------------------------------------------------------------------------


def time_blocks(spans: Iterable[Span], n_blocks: int) -> list[float]:
    """Start times of ``n_blocks`` contiguous time blocks holding about as many data spans each (fewer blocks
    when there are fewer distinct span starts). Block k runs from ``starts[k]`` to ``starts[k+1]``."""
    starts = sorted({s.start for s in spans})
    if not starts:
        return []
    n = max(1, min(n_blocks, len(starts)))
    return [starts[(k * len(starts)) // n] for k in range(n)]


def block_of(starts: Sequence[float], t: float) -> int:
    """Index of the block holding time ``t`` (times before the first block belong to it)."""
    return max(0, int(np.searchsorted(np.asarray(starts), t, side="right")) - 1)


def _by_block(picks: Sequence[Any], starts: Sequence[float], n: int) -> list[list[Any]]:
    """``picks`` (with a ``time``) split into the ``n`` blocks that start at ``starts``."""
    out: list[list[Any]] = [[] for _ in range(n)]
    if not picks:
        return out
    index = np.searchsorted(np.asarray(starts, dtype=float), [p.time for p in picks], side="right") - 1
    for p, b in zip(picks, np.clip(index, 0, n - 1)):
        out[int(b)].append(p)
    return out


@dataclass
class PhaseCalibration:
    """One phase's threshold choice: the card's and the calibrated threshold (best on all the data), the
    held-out F1 of each (each block scored with the threshold chosen on the other blocks), the threshold chosen
    per fold, the F1 on all the data of every grid threshold, and the ``recommended`` threshold: the calibrated
    one when its held-out F1 beats the card's, else the card's (a choice that does not hold up on held-out
    blocks is not worth a change)."""

    phase: str
    card_threshold: float
    threshold: float
    recommended: float
    held_out_f1_card: float
    held_out_f1_calibrated: float
    fold_thresholds: list[float]
    held_out_counts_card: dict[str, int]
    held_out_counts_calibrated: dict[str, int]
    f1_by_threshold: dict[str, float]


def _choose(counts: Mapping[float, tuple[int, int, int]], prefer: float) -> float:
    """The threshold of best F1; ties go to the one nearest ``prefer`` (the card's), then the lower one."""
    return min(counts, key=lambda t: (-round(f1_of(*counts[t]), 12), abs(t - prefer), t))


def calibrate_phase(
    phase: str,
    reference: Sequence[RefPick],
    picks_by_threshold: Mapping[float, Sequence[ModelPick]],
    card_threshold: float,
    starts: Sequence[float],
    tolerance: float = 0.1,
) -> PhaseCalibration:
    """Choose ``phase``'s threshold among ``picks_by_threshold`` (the model's picks at each grid threshold, and
    at ``card_threshold``) by leave-one-block-out over the time blocks ``starts``.

    ``reference`` must already be restricted to the data (``scored_references``). Each fold chooses the
    threshold of best F1 at ``tolerance`` on the other blocks' pooled counts and is scored on its own block;
    the held-out counts of all folds are pooled. The card's threshold is scored on the same blocks (it needs
    no choice). The calibrated threshold is the best on all the data.
    """
    if card_threshold not in picks_by_threshold:
        raise ValueError(f"no picks at the card's {phase} threshold {card_threshold}")
    n = max(1, len(starts))
    # counts[threshold][block] = (tp, fp, fn)
    counts: dict[float, list[tuple[int, int, int]]] = {}
    refs_by_block = _by_block([r for r in reference if r.phase == phase], starts, n)
    for t, picks in picks_by_threshold.items():
        by_block = _by_block([p for p in picks if p.phase == phase], starts, n)
        counts[t] = []
        for b in range(n):
            c = count(refs_by_block[b], by_block[b], tolerance, [phase]).values()
            counts[t].append((sum(x.tp for x in c), sum(x.fp for x in c), sum(x.fn for x in c)))

    def pooled(t: float, blocks: Iterable[int]) -> tuple[int, int, int]:
        rows = [counts[t][b] for b in blocks]
        return tuple(sum(r[i] for r in rows) for i in range(3))  # type: ignore[return-value]

    grid = [t for t in picks_by_threshold]
    folds, held_cal = [], [0, 0, 0]
    for b in range(n):
        train = [k for k in range(n) if k != b] or [b]
        chosen = _choose({t: pooled(t, train) for t in grid}, card_threshold)
        folds.append(chosen)
        for i, v in enumerate(counts[chosen][b]):
            held_cal[i] += v
    held_card = pooled(card_threshold, range(n))
    overall = {t: pooled(t, range(n)) for t in grid}
    best = _choose(overall, card_threshold)

    def as_counts(c) -> dict[str, int]:
        return {"tp": int(c[0]), "fp": int(c[1]), "fn": int(c[2])}

    f1_card, f1_cal = f1_of(*held_card), f1_of(*held_cal)
    return PhaseCalibration(
        phase=phase,
        card_threshold=card_threshold,
        threshold=best,
        recommended=best if f1_cal > f1_card else card_threshold,
        held_out_f1_card=f1_card,
        held_out_f1_calibrated=f1_cal,
        fold_thresholds=folds,
        held_out_counts_card=as_counts(held_card),
        held_out_counts_calibrated=as_counts(held_cal),
        f1_by_threshold={f"{t:g}": f1_of(*overall[t]) for t in sorted(grid)},
    )


def calibrate(
    reference: Sequence[RefPick],
    picks_by_threshold: Mapping[float, Sequence[ModelPick]],
    spans: Iterable[Span],
    card_thresholds: Mapping[str, float],
    n_blocks: int = 3,
    tolerance: float = 0.1,
    phases: Sequence[str] = PHASES,
    vertical_only_thresholds: Mapping[str, float] | None = None,
    picks_by_off_ratio: Mapping[float, Sequence[ModelPick]] | None = None,
    card_off_ratios: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """P and S thresholds of one model chosen on a catalogue (see :func:`calibrate_phase`), as a JSON-ready
    record with the time blocks used. Vertical-only stations (:func:`vertical_only_stations`), when there are
    any, are calibrated apart (``vertical_only``, against ``vertical_only_thresholds``); the main choice is then
    made on the three-component stations only. With ``picks_by_off_ratio`` (the picks at the card's thresholds
    with each trigger off ratio) the off ratio of each phase is chosen the same way against the card's
    (``card_off_ratios``, default 0.5), over all stations (``off_ratio``)."""
    spans = list(spans)
    runs = merged_spans(spans)
    inside = scored_references(reference, runs)
    starts = time_blocks(spans, n_blocks)
    ends = [*starts[1:], max((s.end for s in spans), default=0.0)]
    result = {
        "tolerance_s": tolerance,
        "n_blocks": len(starts),
        "blocks": [
            {
                "start": iso(a),
                "end": iso(b),
                "n_reference": {
                    ph: sum(r.phase == ph and block_of(starts, r.time) == k for r in inside) for ph in phases
                },
            }
            for k, (a, b) in enumerate(zip(starts, ends))
        ],
        "phases": {},
    }
    vertical = vertical_only_stations(spans)

    def group(items: Iterable[Any], want_vertical: bool) -> list[Any]:
        return [x for x in items if (x.station in vertical) == want_vertical]

    for phase in phases:
        cal = calibrate_phase(
            phase,
            group(inside, False) if vertical else inside,
            {t: group(p, False) for t, p in picks_by_threshold_for(picks_by_threshold, phase).items()},
            card_thresholds[phase],
            starts,
            tolerance,
        )
        result["phases"][phase] = asdict(cal)
    result["card_thresholds"] = {ph: float(card_thresholds[ph]) for ph in phases}
    result["recommended"] = {ph: result["phases"][ph]["recommended"] for ph in phases}
    vertical_card = vertical_only_thresholds or card_thresholds
    if vertical:  # vertical-only stations: their own thresholds (the card's vertical_only_thresholds)
        result["vertical_only"] = {"stations": sorted(vertical), "phases": {}}
        for phase in phases:
            cal = calibrate_phase(
                phase,
                group(inside, True),
                {t: group(p, True) for t, p in picks_by_threshold_for(picks_by_threshold, phase).items()},
                vertical_card[phase],
                starts,
                tolerance,
            )
            result["vertical_only"]["phases"][phase] = asdict(cal)
        result["vertical_only"]["card_thresholds"] = {ph: float(vertical_card[ph]) for ph in phases}
        result["vertical_only"]["recommended"] = {
            ph: result["vertical_only"]["phases"][ph]["recommended"] for ph in phases
        }
    if picks_by_off_ratio:
        card_ratios = {ph: float((card_off_ratios or {}).get(ph, 0.5)) for ph in phases}
        result["off_ratio"] = {"card": card_ratios, "phases": {}}
        for phase in phases:
            cal = calibrate_phase(
                phase,
                inside,
                picks_by_threshold_for(picks_by_off_ratio, phase),
                card_ratios[phase],
                starts,
                tolerance,
            )
            result["off_ratio"]["phases"][phase] = asdict(cal)
        result["off_ratio"]["recommended"] = {
            ph: result["off_ratio"]["phases"][ph]["recommended"] for ph in phases
        }
    return result


def picks_by_threshold_for(
    picks: Mapping[float, Sequence[ModelPick]], phase: str
) -> dict[float, list[ModelPick]]:
    """The picks of ``phase`` at each threshold."""
    return {float(t): [p for p in value if p.phase == phase] for t, value in picks.items()}


def iso(t: float) -> str:
    from obspy import UTCDateTime

    return str(UTCDateTime(t))
