"""A picture of a picking run: waveforms, probability traces and picks, one panel pair per instrument."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import obspy  # noqa: E402

from seispick.models.annotate import AnnotationResult  # noqa: E402

PHASE_COLOURS = {"P": "tab:blue", "S": "tab:red"}
MAX_INSTRUMENTS = 8


def plot_annotations(stream: obspy.Stream, result: AnnotationResult, labels: list[str], path: Path) -> Path:
    """Save a PNG with, per instrument (at most 8), its waveforms and the P/S probabilities with picks."""
    instruments = list(dict.fromkeys(a.segment.instrument for a in result.annotations))[:MAX_INSTRUMENTS]
    fig, axes = plt.subplots(
        2 * len(instruments), 1, figsize=(12, 2.6 * len(instruments) + 0.5), sharex=False, squeeze=False
    )
    for i, instrument in enumerate(instruments):
        ax_wave, ax_prob = axes[2 * i, 0], axes[2 * i + 1, 0]
        net, sta, loc, band = instrument.split(".")
        picks = [p for p in result.picks if p.trace_id == instrument]
        for tr in stream.select(network=net, station=sta, location=loc, channel=f"{band}?"):
            t0 = tr.stats.starttime
            data = tr.data.astype(np.float64)
            scale = np.abs(data).max() or 1.0
            offset = "ZNE12".find(tr.stats.channel[-1])
            ax_wave.plot(tr.times("matplotlib"), data / scale + 2 * offset, lw=0.5, color="k")
            ax_wave.text(t0.matplotlib_date, 2 * offset + 0.5, tr.stats.channel, fontsize=7)
        for ann in (a for a in result.annotations if a.segment.instrument == instrument):
            times = ann.segment.starttime.matplotlib_date + np.arange(ann.segment.n_samples) / (
                ann.segment.sampling_rate * 86400.0
            )
            for row, label in enumerate(labels):
                if label != "N":
                    ax_prob.plot(
                        times, ann.probabilities[row], color=PHASE_COLOURS.get(label), lw=0.8, label=label
                    )
        for pick in picks:
            for ax in (ax_wave, ax_prob):
                ax.axvline(
                    pick.peak_time.matplotlib_date, color=PHASE_COLOURS.get(pick.phase, "g"), lw=1, ls="--"
                )
        ax_wave.set_title(f"{instrument}: {len(picks)} picks", fontsize=9, loc="left")
        ax_wave.set_yticks([])
        ax_prob.set_ylim(0, 1.02)
        ax_prob.set_ylabel("probability", fontsize=8)
        handles, names = ax_prob.get_legend_handles_labels()
        unique = dict(zip(names, handles))
        ax_prob.legend(unique.values(), unique.keys(), fontsize=7, loc="upper right")
        for ax in (ax_wave, ax_prob):
            ax.xaxis_date()
    fig.suptitle(f"seispick picks with {result.model} ({len(result.picks)} picks)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
