"""Figures of ``seispick evaluate --catalog``: residual histograms per phase and a per-station F1 map."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from seispick.events import catalog_evaluation as ce  # noqa: E402

TOLERANCE = 0.5  # residuals of the matches within 0.5 s are drawn


def plot_residuals(scores: list[ce.Scores], path: str | Path) -> Path:
    """One panel per phase: each model's residuals (model - analyst) of its matches within 0.5 s."""
    fig, axes = plt.subplots(1, len(ce.PHASES), figsize=(5 * len(ce.PHASES), 3.8), squeeze=False)
    bins = np.linspace(-TOLERANCE, TOLERANCE, 41)
    try:
        for ax, phase in zip(axes[0], ce.PHASES):
            for s in scores:
                res = s.residuals.get((phase, TOLERANCE), [])
                row = s.row(phase, TOLERANCE)
                label = f"{s.model}: n={len(res)}, median {_fmt(row.residual_median)} s, MAD {_fmt(row.residual_mad)} s"
                ax.hist(res, bins=bins, histtype="step", lw=1.5, label=label)
            ax.axvline(0, color="grey", lw=0.8)
            ax.set_xlabel(f"{phase} residual, model - analyst (s)")
            ax.set_ylabel("matches")
            ax.set_title(f"{phase} picks matched within {TOLERANCE:g} s")
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return Path(path)


def _fmt(value: float) -> str:
    return "n/a" if value != value else f"{value:+.3f}"


def map_path(path: str | Path) -> Path:
    """Where the station map goes: ``NAME-stations.png`` next to ``--plot NAME.png``."""
    path = Path(path)
    return path.with_name(f"{path.stem}-stations{path.suffix or '.png'}")


def plot_station_map(scores: list[ce.Scores], table, path: str | Path) -> tuple[Path, list[str]]:
    """Stations coloured by F1 within 0.1 s, one row per model, one column per phase; returns the file and the
    scored stations without coordinates."""
    stations = sorted({r.station for s in scores for r in s.rows if r.station != ce.ALL})
    located = [st for st in stations if table.get(st) is not None]
    missing = [st for st in stations if table.get(st) is None]
    out = map_path(path)
    fig, axes = plt.subplots(
        len(scores), len(ce.PHASES), figsize=(5 * len(ce.PHASES), 4 * len(scores)), squeeze=False
    )
    try:
        lon = np.array([table.get(st).longitude for st in located])
        lat = np.array([table.get(st).latitude for st in located])
        for i, s in enumerate(scores):
            for j, phase in enumerate(ce.PHASES):
                ax = axes[i][j]
                rows = [s.row(phase, 0.1, st) for st in located]
                f1 = np.array([r.f1 if r.n_reference else np.nan for r in rows])
                scored = ~np.isnan(f1)
                ax.scatter(lon[~scored], lat[~scored], marker="x", c="lightgrey", label="no analyst pick")
                dots = ax.scatter(
                    lon[scored], lat[scored], c=f1[scored], cmap="viridis", vmin=0, vmax=1, s=60
                )
                for x, y, st in zip(lon, lat, located):
                    ax.annotate(
                        st.split(".")[1], (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points"
                    )
                ax.set_title(f"{s.model}: {phase} F1 within 0.1 s")
                ax.set_xlabel("longitude")
                ax.set_ylabel("latitude")
                fig.colorbar(dots, ax=ax, label="F1")
        fig.tight_layout()
        fig.savefig(out, dpi=100)
    finally:
        plt.close(fig)
    return out, missing
