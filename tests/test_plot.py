"""``seispick pick --plot``: one panel per instrument and continuous stretch, pages, a dated UTC axis."""

from __future__ import annotations

import re

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
    try:
        axes = fig.axes
        assert len(axes) == 2 * 3  # a waveform and a probability row per stretch
        dates = [ax.get_xlabel() for ax in axes[1::2]]
        assert dates == ["time (UTC), 2011-05-01", "time (UTC), 2011-05-03", "time (UTC), 2011-05-06"]
        waves = axes[0::2]
        assert [t.get_text() for t in waves[0].get_yticklabels()] == ["DPZ", "DPN", "DPE"]
        marks = [t.get_text() for ax in waves for t in ax.texts]
        assert sorted(marks) == sorted(p.phase for p in result.picks) and {"P", "S"} <= set(marks)
        assert all(len(ax.lines) >= 2 for ax in axes[1::2])  # P and S probabilities (and pick lines)
    finally:
        plot.plt.close(fig)


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
