"""``seispick pick --plot``: one panel per instrument and continuous stretch, pages, a dated UTC axis."""

from __future__ import annotations

import gc
import re
import weakref

import obspy
import pytest
from click.testing import CliRunner

from seispick.cli import pick_plot as plot
from seispick.cli.pick_cmd import pick as pick_command
from seispick.picking.annotate import annotate
from tests.service_harness import DATA, EVENTS

DAY = 86400.0


@pytest.fixture(scope="module")
def days_apart() -> obspy.Stream:
    """One station's event on three days (files days apart), and nine more instruments on the first day."""
    base = obspy.read(str(DATA / f"{EVENTS[0]}.mseed"))
    stream = obspy.Stream()
    for day in (0, 2, 5):
        part = base.copy()
        for trace in part:
            trace.stats.starttime += day * DAY
        stream += part
    for k in range(9):
        part = base.copy()
        for trace in part:
            trace.stats.station = f"S{k}"
        stream += part
    return stream


def test_one_panel_per_stretch_and_pages_for_many_instruments(days_apart, shipped_model, monkeypatch):
    result = annotate(days_apart, shipped_model)
    pages, notes = plot.pages_of(result)
    panels = [a for page in pages for a in page]
    assert len(panels) == 12 and notes == []  # 3 stretches of BG.AL4 + 9 instruments
    assert [len(page) for page in pages] == [plot.PANELS_PER_PAGE, 12 - plot.PANELS_PER_PAGE]
    stretches = [a for a in panels if a.segment.instrument == "BG.AL4..DP"]
    assert len(stretches) == 3 and all(a.segment.n_samples / 100.0 < 100 for a in stretches)  # no 5-day axis

    monkeypatch.setattr(plot, "MAX_PAGES", 1)
    pages, notes = plot.pages_of(result)
    assert len(pages) == 1 and len(notes) == 1
    assert "6 stretch(es) of 6 instrument(s)" in notes[0] and "left out" in notes[0]


def test_panels_have_a_dated_utc_axis_channel_labels_and_pick_marks(days_apart, shipped_model):
    result = annotate(days_apart.select(station="AL4"), shipped_model)
    by_instrument = {}
    for p in result.picks:
        by_instrument.setdefault(p.trace_id, []).append(p)
    fig = plot._page(result.annotations, shipped_model.card.labels, by_instrument)
    axes = fig.axes
    assert len(axes) == 2 * 3  # a waveform and a probability row per stretch
    dates = [ax.get_xlabel() for ax in axes[1::2]]
    assert dates == [f"time (UTC, HH:MM:SS), 2011-05-0{day}" for day in (1, 3, 6)]
    waves = axes[0::2]
    assert [t.get_text() for t in waves[0].get_yticklabels()] == ["DPZ", "DPN", "DPE"]
    marks = [t.get_text() for ax in waves for t in ax.texts]
    assert sorted(marks) == sorted(p.phase for p in result.picks) and {"P", "S"} <= set(marks)
    assert all(len(ax.lines) >= 2 for ax in axes[1::2])  # P and S probabilities (and pick lines)
    fig.canvas.draw()
    for ax in axes[1::2]:  # one tick format on every axis: no "50, 08:01, 10" of seconds mixed with minutes
        ticks = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
        assert len(ticks) >= 3 and all(re.fullmatch(r"\d\d:\d\d:\d\d", t) for t in ticks), ticks


def test_clock_ticks_take_decimals_only_below_a_second():
    base = plot.mdates.date2num(obspy.UTCDateTime("2026-03-01T08:00:50").datetime)
    seconds = [base + k * 10 / DAY for k in range(4)]
    assert plot.ClockFormatter().format_ticks(seconds) == ["08:00:50", "08:01:00", "08:01:10", "08:01:20"]
    tenths = [base + k * 0.2 / DAY - 1e-12 for k in range(3)]  # just below: rounded, not cut
    assert plot.ClockFormatter().format_ticks(tenths) == ["08:00:50.0", "08:00:50.2", "08:00:50.4"]


def test_pages_are_drawn_written_and_dropped_one_at_a_time(days_apart, shipped_model, monkeypatch, tmp_path):
    """Memory independent of the number of recordings: no earlier page is alive when the next is drawn (nor
    a pyplot figure left open: "More than 20 figures have been opened" warned on 200 recordings)."""
    result = annotate(days_apart, shipped_model)
    monkeypatch.setattr(plot, "PANELS_PER_PAGE", 1)  # 12 pages
    alive: list[weakref.ref] = []
    at_draw: list[int] = []
    page = plot._page

    def tracked(*args):
        gc.collect()
        at_draw.append(sum(ref() is not None for ref in alive))
        fig = page(*args)
        alive.append(weakref.ref(fig))
        return fig

    monkeypatch.setattr(plot, "_page", tracked)
    for name in ("picks.png", "picks.pdf"):
        out = plot.plot_annotations(result, shipped_model.card.labels, tmp_path / name)
        assert len(out.paths) == (12 if name.endswith(".png") else 1)
        assert at_draw == [0] * 12, at_draw  # before: every page figure kept until all were drawn
        alive.clear()
        at_draw.clear()
    assert re.search(rb"/Count (\d+)", (tmp_path / "picks.pdf").read_bytes()).group(1) == b"12"
    assert (tmp_path / "picks-12.png").is_file() and not (tmp_path / "picks-13.png").exists()


def test_cli_writes_several_pages_and_says_so(days_apart, tmp_path):
    path = tmp_path / "days.mseed"
    days_apart.write(str(path), format="MSEED")
    png = tmp_path / "picks.png"
    result = CliRunner().invoke(pick_command, [str(path), "--plot", str(png), "-o", str(tmp_path / "p.csv")])
    assert result.exit_code == 0, result.output
    written = [png, tmp_path / "picks-2.png"]
    assert "plot: 2 file(s)" in result.stderr
    for page in written:
        assert page.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and page.stat().st_size > 50_000
    assert not (tmp_path / "picks-3.png").exists()
    pdf = tmp_path / "picks.pdf"
    result = CliRunner().invoke(
        pick_command, [str(path), "-q", "--plot", str(pdf), "-o", str(tmp_path / "p.csv")]
    )
    assert result.exit_code == 0 and pdf.read_bytes()[:5] == b"%PDF-"
    assert re.search(rb"/Count (\d+)", pdf.read_bytes()).group(1) == b"2"  # one PDF, two pages
