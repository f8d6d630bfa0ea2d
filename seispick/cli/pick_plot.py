"""Pictures of a picking run a seismologist can read: one panel per instrument and continuous stretch.

Each panel shows the stretch's waveforms (the channels the model saw, each scaled to its own peak, channel
codes on the y axis) above the P/S probabilities, with the picks marked on both. Every time axis has one
format, UTC clock time HH:MM:SS (with decimals when ticks are under a second apart), and its label names the
date. Files days apart give separate panels, not one axis spanning days. ``PANELS_PER_PAGE`` panels go on one
page; more make further pages: ``picks.png``, ``picks-2.png``, ... (one PDF with several pages for a ``.pdf``
path). Each page is drawn, written and dropped before the next (no pyplot figures are kept), so memory does
not grow with the number of recordings (bench/plot_memory.py). Long stretches are drawn as min/max envelopes;
anything not drawn (pages beyond ``MAX_PAGES``) is said on the last page and returned as a note.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import matplotlib.dates as mdates
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.ticker import Formatter
from matplotlib.transforms import blended_transform_factory
from obspy import UTCDateTime

from seispick.picking.annotate import AnnotationResult, SegmentAnnotation
from seispick.picking.notes import duration, when
from seispick.picking.results import Pick

PHASE_COLOURS = {"P": "tab:blue", "S": "tab:red"}
PANELS_PER_PAGE = 6
MAX_PAGES = 40
MAX_POINTS = 4000  # per drawn line; longer stretches become min/max envelopes
DAY_S = 86400.0


@dataclass
class PlotOutput:
    """The files written and what was left out of them."""

    paths: list[Path]
    notes: list[str]


def pages_of(result: AnnotationResult) -> tuple[list[list[SegmentAnnotation]], list[str]]:
    """The panels (one per instrument and continuous stretch, by instrument and time) page by page, and
    notes on what does not fit in ``MAX_PAGES`` pages."""
    panels = sorted(result.annotations, key=lambda a: (a.segment.instrument, a.segment.start_index))
    pages = [panels[i : i + PANELS_PER_PAGE] for i in range(0, len(panels), PANELS_PER_PAGE)] or [[]]
    notes = []
    if len(pages) > MAX_PAGES:
        left = pages[MAX_PAGES:]
        stretches = sum(len(p) for p in left)
        instruments = sorted({a.segment.instrument for p in left for a in p})
        shown = ", ".join(instruments[:5]) + (", ..." if len(instruments) > 5 else "")
        notes.append(
            f"plot: {stretches} stretch(es) of {len(instruments)} instrument(s) ({shown}) left out after "
            f"{MAX_PAGES} pages of {PANELS_PER_PAGE} panels"
        )
        pages = pages[:MAX_PAGES]
    return pages, notes


def plot_annotations(result: AnnotationResult, labels: list[str], path: Path) -> PlotOutput:
    """Write the pages of ``result`` (see the module docstring) to ``path`` (and siblings) and return them."""
    pages, notes = pages_of(result)
    by_instrument: dict[str, list[Pick]] = {}
    for pick in result.picks:
        by_instrument.setdefault(pick.trace_id, []).append(pick)
    header = (
        f"seispick {result.model}: {len(result.picks)} picks on {len(result.annotations)} stretch(es) of "
        f"{len({a.segment.instrument for a in result.annotations})} instrument(s)"
    )
    path = Path(path)
    pdf = path.suffix.lower() == ".pdf"
    paths = [path] if pdf else page_paths(path, len(pages))
    with _writer(path) as write:
        for number, (page, out) in enumerate(zip(pages, [path] * len(pages) if pdf else paths), start=1):
            fig = _page(page, labels, by_instrument)
            fig.suptitle(f"{header} - page {number} of {len(pages)}", fontsize=10, x=0.01, ha="left")
            if number == len(pages) and notes:
                fig.text(0.01, 0.005, "; ".join(notes), fontsize=8, color="tab:red", va="bottom")
            write(fig, out)
            fig.clear()  # drawn and written: nothing of this page is kept for the next
            del fig
    return PlotOutput(paths=paths, notes=notes)


def page_paths(path: Path, pages: int) -> list[Path]:
    """``path`` for the first page, ``<stem>-2<suffix>`` ... for the others."""
    return [path] + [path.with_name(f"{path.stem}-{n}{path.suffix}") for n in range(2, pages + 1)]


@contextlib.contextmanager
def _writer(path: Path) -> Iterator:
    """``write(fig, out)``: a page into the open PDF at ``path``, or a PNG at ``out``."""
    if path.suffix.lower() == ".pdf":
        with PdfPages(path) as pdf:
            yield lambda fig, out: pdf.savefig(fig)
    else:
        yield lambda fig, out: fig.savefig(out, dpi=110)


class ClockFormatter(Formatter):
    """Tick labels in one format on every axis: UTC HH:MM:SS, with as many decimals as ticks under a second
    apart need (matplotlib's concise formatter mixes "50", "08:01" and "10" on one axis)."""

    def __init__(self) -> None:
        self.decimals = 0

    def set_locs(self, locs) -> None:
        super().set_locs(locs)
        steps = np.diff(np.asarray(locs, dtype=np.float64)) * DAY_S
        steps = steps[steps > 0]
        step = float(steps.min()) if steps.size else 1.0
        self.decimals = 0 if step >= 0.999 else min(6, int(np.ceil(-np.log10(step) - 1e-9)))

    def __call__(self, x: float, pos: int | None = None) -> str:
        seconds = round((x % 1.0) * DAY_S, self.decimals) % DAY_S  # date numbers count days; rounded first
        hours, rest = divmod(seconds, 3600.0)
        minutes, rest = divmod(rest, 60.0)
        width = 3 + self.decimals if self.decimals else 2
        return f"{int(hours):02d}:{int(minutes):02d}:{rest:0{width}.{self.decimals}f}"


def _page(panels: list[SegmentAnnotation], labels: list[str], picks: dict[str, list[Pick]]):
    """One figure: per panel a waveform row and a probability row, an empty row between panels for the time
    labels below and the title above (so no label sits on a trace)."""
    rows = max(len(panels), 1)
    ratios: list[float] = []
    for i in range(rows):
        ratios += [2.2, 1.0] + ([1.1] if i < rows - 1 else [])
    fig = Figure(figsize=(13, 0.8 * sum(ratios) + 1.1))  # not pyplot's: nothing keeps it once written
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(len(ratios), 1, height_ratios=ratios, hspace=0.0)
    height = fig.get_figheight()
    fig.subplots_adjust(left=0.08, right=0.98, top=1 - 0.95 / height, bottom=0.55 / height)
    for i, annotation in enumerate(panels):
        ax_wave = fig.add_subplot(grid[3 * i])
        ax_prob = fig.add_subplot(grid[3 * i + 1], sharex=ax_wave)
        _panel(ax_wave, ax_prob, annotation, labels, picks.get(annotation.segment.instrument, []))
    if not panels:
        fig.text(0.5, 0.5, "nothing was annotated", ha="center")
    return fig


def _panel(ax_wave, ax_prob, annotation: SegmentAnnotation, labels: list[str], picks: list[Pick]) -> None:
    segment = annotation.segment
    start, end = segment.time_of(0), segment.time_of(segment.n_samples - 1)
    first = mdates.date2num(UTCDateTime(start).datetime)
    times = first + np.arange(segment.n_samples) / (segment.sampling_rate * DAY_S)
    present = [letter for letter in "ZNE12" if letter in segment.channels]
    for row, letter in enumerate(present):
        values = segment.data[segment.channel_order.index(letter)].astype(np.float64)
        values = values - values.mean()
        peak = np.abs(values).max() or 1.0
        x, y = _envelope(times, values / peak)
        ax_wave.plot(x, 0.45 * y - row, lw=0.5, color="k")
    ax_wave.set_yticks(
        [-row for row in range(len(present))], [segment.channels[c] for c in present], fontsize=8
    )
    ax_wave.set_ylim(-len(present) + 0.4, 0.6)
    for row, label in enumerate(labels):
        if label in PHASE_COLOURS:
            x, y = _envelope(times, annotation.probabilities[row].astype(np.float64))
            ax_prob.plot(x, y, color=PHASE_COLOURS[label], lw=0.8, label=label)
    half = 0.5 / segment.sampling_rate
    inside = [p for p in picks if start - half <= p.peak_time.timestamp <= end + half]
    marker = blended_transform_factory(ax_wave.transData, ax_wave.transAxes)
    for pick in inside:
        t = mdates.date2num(pick.peak_time.datetime)
        colour = PHASE_COLOURS.get(pick.phase, "tab:green")
        for ax in (ax_wave, ax_prob):
            ax.axvline(t, color=colour, lw=1.0, ls="--")
        ax_wave.text(
            t, 1.01, pick.phase, transform=marker, color=colour, fontsize=8, ha="center", va="bottom"
        )
    ax_prob.set_ylim(0, 1.05)
    ax_prob.set_yticks([0, 0.5, 1])
    ax_prob.set_ylabel("probability", fontsize=8)
    ax_prob.tick_params(labelsize=8)
    if ax_prob.lines:
        ax_prob.legend(loc="upper right", fontsize=7, ncols=2, framealpha=0.8)
    counts = ", ".join(f"{n} {phase}" for phase, n in _count(inside).items()) or "no picks"
    ax_wave.set_title(
        f"{segment.instrument}   {when(start)} - {when(end)} ({duration(end - start)}): {counts}",
        fontsize=9,
        loc="left",
        pad=12,
    )
    locator = mdates.AutoDateLocator(minticks=4, maxticks=10)
    ax_prob.xaxis.set_major_locator(locator)
    ax_prob.xaxis.set_major_formatter(ClockFormatter())
    first_day, last_day = when(start)[:10], when(end)[:10]
    days = first_day if first_day == last_day else f"{first_day} to {last_day}"
    ax_prob.set_xlabel(f"time (UTC, HH:MM:SS), {days}", fontsize=8)
    ax_prob.set_xlim(times[0], times[-1])
    ax_wave.tick_params(axis="x", labelbottom=False)


def _count(picks: list[Pick]) -> dict[str, int]:
    out: dict[str, int] = {}
    for pick in picks:
        out[pick.phase] = out.get(pick.phase, 0) + 1
    return out


def _envelope(x: np.ndarray, y: np.ndarray, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """``x, y`` as they are when short, else the min and max of each of ``max_points / 2`` bins, interleaved."""
    if len(y) <= max_points:
        return x, y
    bins = max_points // 2
    size = len(y) // bins
    cut = bins * size
    blocks = y[:cut].reshape(bins, size)
    xs = x[:cut].reshape(bins, size)[:, [0, -1]].ravel()
    ys = np.stack([blocks.min(axis=1), blocks.max(axis=1)], axis=1).ravel()
    return np.concatenate([xs, x[cut:]]), np.concatenate([ys, y[cut:]])
