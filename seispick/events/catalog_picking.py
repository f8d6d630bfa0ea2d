"""Models over the continuous waveforms of a catalogue evaluation, through the picking core.

Each file is read once (``seispick.picking.waveforms``, as ``seispick pick`` reads), each model's windows are
run once (``annotate.prepare`` and the model's ``predict`` in batches, as ``annotate`` does), and the picking
core (``annotate.finish``) is run on those outputs at every threshold asked for: the grid of a calibration
costs one inference, not nine. Scoring lives in ``catalog_evaluation``. No torch (see ``.importlinter``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seispick.events.catalog_evaluation import GRID, OFF_GRID, ModelPick, Span, from_seispick_picks
from seispick.models.inference import OnnxModel
from seispick.picking.annotate import NoUsableDataError, finish, prepare
from seispick.picking.trigger import OFF_RATIO
from seispick.picking.waveforms import expand_paths, read_waveform_file


@dataclass
class ModelRun:
    """One model's picks over all files: at each threshold run (P and S picked at the same threshold), and the
    data spans it annotated."""

    name: str
    sha256: str
    card_thresholds: dict[str, float]  # the thresholds the evaluation reports (card's, or given)
    vertical_only_thresholds: dict[str, float] = field(default_factory=dict)  # the card's, unless given
    picks: dict[float, list[ModelPick]] = field(default_factory=dict)
    reported: list[ModelPick] = field(default_factory=list)  # at the reported thresholds, as `pick` picks
    # at the reported thresholds with each trigger off ratio of OFF_GRID (calibrating only)
    by_off_ratio: dict[float, list[ModelPick]] = field(default_factory=dict)
    card_off_ratios: dict[str, float] = field(default_factory=dict)
    spans: list[Span] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def thresholds_to_run(
    card_thresholds: dict[str, float],
    grid: Sequence[float] | None,
    vertical_only_thresholds: dict[str, float] | None = None,
) -> list[float]:
    """The card's P and S thresholds (also those for vertical-only instruments) and, when calibrating, the
    grid."""
    wanted = {float(card_thresholds["P"]), float(card_thresholds["S"])} | {float(t) for t in grid or ()}
    wanted |= {float(v) for k, v in (vertical_only_thresholds or {}).items() if k in ("P", "S")}
    return sorted(wanted)


def off_ratios_to_run(card_off_ratios: dict[str, float]) -> list[float]:
    """The trigger off ratios a calibration chooses from: the grid and the card's."""
    return sorted({*OFF_GRID, OFF_RATIO, *(float(v) for v in card_off_ratios.values())})


def pick_stream(
    stream,
    model: OnnxModel,
    thresholds: Sequence[float],
    batch_size: int = 64,
    reported: dict[str, float] | None = None,
    off_ratios: Sequence[float] = (),
) -> tuple[
    dict[float, list[ModelPick]], list[Span], list[str], list[ModelPick], dict[float, list[ModelPick]]
]:
    """``model``'s picks on ``stream`` at every threshold in ``thresholds`` (each for every instrument; one
    inference), the spans of data it annotated (NET.STA), the notes, the picks at the ``reported``
    thresholds (None: the card's, its vertical-only ones included, as ``seispick pick`` picks), and those
    picks again with each trigger off ratio in ``off_ratios``."""
    job = prepare(stream, model.card)
    outputs = [model.predict(job.windows(a, a + batch_size)) for a in range(0, job.n_windows, batch_size)]
    merged = np.concatenate(outputs) if outputs else np.zeros((0, len(model.card.labels), 0), np.float32)
    picks: dict[float, list[ModelPick]] = {}
    result = finish(job, merged, model.name, model.sha256, thresholds=reported)
    spans = [
        Span(
            ".".join(a.segment.instrument.split(".")[:2]),
            a.segment.time_of(0),
            a.segment.time_of(a.segment.n_samples - 1),
            set(a.segment.channels) <= {"Z"},
        )
        for a in result.annotations
    ]
    at_reported = from_seispick_picks(result.picks)
    for t in thresholds:
        result = finish(job, merged, model.name, model.sha256, thresholds={"P": t, "S": t})
        picks[float(t)] = from_seispick_picks(result.picks)
    by_ratio = {
        float(r): from_seispick_picks(
            finish(job, merged, model.name, model.sha256, reported, off_ratios={"P": r, "S": r}).picks
        )
        for r in off_ratios
    }
    return picks, spans, list(job.notes.messages), at_reported, by_ratio


def waveform_files(paths: Iterable[str | Path]) -> tuple[list[Path], list[str]]:
    """The files below ``paths`` (folders searched recursively) and the problems with the paths."""
    files, problems = expand_paths(list(paths))
    return [f for f, _ in files], problems


def run_models(
    files: Sequence[Path],
    models: Sequence[OnnxModel],
    card_thresholds: dict[str, dict[str, float]],
    grid: Sequence[float] | None = None,
    batch_size: int = 64,
    progress: Callable[[Path], None] | None = None,
    given: dict[str, float] | None = None,
) -> tuple[dict[str, ModelRun], list[Path], list[str]]:
    """Every model over every waveform file: (runs by model name, files read, problems).

    ``card_thresholds[name]`` are the P and S thresholds reported for a model; ``grid`` (e.g. ``GRID``) adds
    the thresholds a calibration chooses from; ``given`` thresholds (the user's) replace the card's for every
    instrument, else vertical-only instruments are picked at the card's ``vertical_only_thresholds``. A file
    that is not a waveform, or whose data no model can use, is skipped with a problem naming it;
    ``progress(file)`` is called after each file.
    """
    given = {k: float(v) for k, v in (given or {}).items() if v is not None}
    runs = {
        m.name: ModelRun(
            m.name,
            m.sha256,
            {k: float(v) for k, v in card_thresholds[m.name].items()},
            {
                ph: float(given.get(ph, m.card.vertical_only_thresholds.get(ph, card_thresholds[m.name][ph])))
                for ph in ("P", "S")
            },
            card_off_ratios=dict(m.card.trigger_off_ratios),
        )
        for m in models
    }
    problems: list[str] = []
    used: list[Path] = []
    for path in files:
        try:
            stream = read_waveform_file(path)
        except ValueError as exc:
            problems.append(str(exc))
            if progress:
                progress(path)
            continue
        read_ok = False
        for m in models:
            run = runs[m.name]
            try:
                wanted = thresholds_to_run(run.card_thresholds, grid, run.vertical_only_thresholds)
                ratios = off_ratios_to_run(m.card.trigger_off_ratios) if grid else ()
                picks, spans, notes, reported, by_ratio = pick_stream(
                    stream, m, wanted, batch_size, given or None, ratios
                )
            except (NoUsableDataError, ValueError, ArithmeticError) as exc:
                problems.append(f"{path}: {m.name}: {exc}")
                continue
            read_ok = True
            for t, found in picks.items():
                run.picks.setdefault(t, []).extend(found)
            run.spans += spans
            run.reported += reported
            for r, found in by_ratio.items():
                run.by_off_ratio.setdefault(r, []).extend(found)
            run.notes += [f"{path.name}: {n}" for n in notes]
        if read_ok:
            used.append(path)
        if progress:
            progress(path)
    return runs, used, problems


__all__ = ["GRID", "ModelRun", "pick_stream", "run_models", "thresholds_to_run", "waveform_files"]
