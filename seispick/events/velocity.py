"""Velocity models for association: homogeneous (PyOcto ``VelocityModel0D``) or 1D layered (``VelocityModel1D``).

A 1D model file is CSV with a header ``depth_km,vp,vs`` (or ``depth,vp,vs``; km and km/s), one row per depth
node, depths strictly increasing from the top; velocities are linear between nodes, as PyOcto builds its
travel-time table (with pyrocko's eikonal solver) from them. ``TravelTimes`` predicts P and S times for a
source and stations, for residuals and uncertainties of the locations PyOcto returns.
"""

from __future__ import annotations

import csv
import hashlib
import math
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class VelocityModelError(ValueError):
    """A velocity model that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Homogeneous:
    """Constant P and S velocities (km/s)."""

    vp: float = 6.0
    vs: float = 3.5

    def __post_init__(self) -> None:
        _check_velocities(self.vp, self.vs, "homogeneous model")

    @property
    def surface(self) -> tuple[float, float]:
        return self.vp, self.vs

    def describe(self) -> str:
        return f"homogeneous vp={self.vp:g} km/s vs={self.vs:g} km/s"


@dataclass(frozen=True)
class Layered:
    """A 1D model: depth nodes (km, increasing) with P and S velocities (km/s), linear in between."""

    depth_km: tuple[float, ...]
    vp: tuple[float, ...]
    vs: tuple[float, ...]
    source: str = "1D model"

    def __post_init__(self) -> None:
        if not self.depth_km:
            raise VelocityModelError(f"{self.source}: empty velocity model (no depth rows)")
        if not (len(self.depth_km) == len(self.vp) == len(self.vs)):
            raise VelocityModelError(f"{self.source}: depth, vp and vs differ in length")
        depths = np.asarray(self.depth_km, dtype=float)
        if not np.isfinite(depths).all():
            raise VelocityModelError(f"{self.source}: depths must be finite numbers")
        steps = np.diff(depths)
        if (steps <= 0).any():
            row = int(np.argmax(steps <= 0)) + 1
            raise VelocityModelError(
                f"{self.source}: depths must increase strictly (node {row + 1}: {depths[row]:g} km after "
                f"{depths[row - 1]:g} km)"
            )
        for i, (vp, vs) in enumerate(zip(self.vp, self.vs)):
            _check_velocities(vp, vs, f"{self.source}, node {i + 1}")

    @property
    def surface(self) -> tuple[float, float]:
        return self.vp[0], self.vs[0]

    def describe(self) -> str:
        return f"1D model {self.source} ({len(self.depth_km)} nodes to {self.depth_km[-1]:g} km)"

    def sha1(self) -> str:
        key = repr((self.depth_km, self.vp, self.vs)).encode()
        return hashlib.sha1(key).hexdigest()[:16]


VelocityModel = Homogeneous | Layered


def read_velocity_model(path: Path | str) -> Layered:
    """A ``Layered`` model from a CSV file (header ``depth_km,vp,vs`` or ``depth,vp,vs``)."""
    path = Path(path)
    if not path.is_file():
        raise VelocityModelError(f"{path}: no such velocity model file")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    rows = [row for row in rows if not row[0].lstrip().startswith("#")]
    if not rows:
        raise VelocityModelError(f"{path}: empty velocity model (expected a header depth_km,vp,vs and rows)")
    header = [cell.strip().lower() for cell in rows[0]]
    depth_col = "depth_km" if "depth_km" in header else "depth"
    if not all(name in header for name in (depth_col, "vp", "vs")):
        raise VelocityModelError(f"{path}: expected a header depth_km,vp,vs; found {','.join(header)}")
    index = [header.index(name) for name in (depth_col, "vp", "vs")]
    values: list[tuple[float, float, float]] = []
    for line, row in enumerate(rows[1:], start=2):
        try:
            values.append(tuple(float(row[i]) for i in index))  # type: ignore[arg-type]
        except (ValueError, IndexError) as exc:
            raise VelocityModelError(f"{path}, row {line}: three numbers expected ({exc})") from exc
    if not values:
        raise VelocityModelError(f"{path}: empty velocity model (a header and no rows)")
    depth, vp, vs = (tuple(col) for col in zip(*values))
    return Layered(depth, vp, vs, source=str(path))


def _check_velocities(vp: float, vs: float, where: str) -> None:
    if not (math.isfinite(vp) and math.isfinite(vs) and vp > 0 and vs > 0):
        raise VelocityModelError(f"{where}: velocities must be positive numbers (vp={vp}, vs={vs})")
    if vs >= vp:
        raise VelocityModelError(f"{where}: vs ({vs}) must be below vp ({vp})")


# -- PyOcto models and travel times ------------------------------------------------------------------


class TravelTimes:
    """P/S travel times (s) from sources to stations, for residuals and location uncertainties.

    Homogeneous: straight rays. Layered: bilinear interpolation in PyOcto's own table (distance, depth).
    """

    def __init__(self, model: VelocityModel, table: Path | None = None) -> None:
        self.model = model
        self._grid = _load_table(table) if table is not None else None

    def __call__(
        self, is_s: np.ndarray, r_km: np.ndarray, depth_km: float | np.ndarray, station_z_km: np.ndarray
    ) -> np.ndarray:
        """Times for horizontal distances ``r_km``, sources at ``depth_km`` below sea level and stations at
        ``station_z_km`` (km below sea level: minus the elevation), as PyOcto models them; the arguments
        broadcast against ``r_km`` (several trial sources at once: one row each)."""
        r_km = np.asarray(r_km, float)
        is_s = np.broadcast_to(np.asarray(is_s, dtype=bool), r_km.shape)
        if isinstance(self.model, Homogeneous):
            v = np.where(is_s, self.model.vs, self.model.vp)
            return np.hypot(r_km, depth_km - station_z_km) / v
        assert self._grid is not None
        delta, p_times, s_times = self._grid
        r = np.clip(r_km / delta, 0, p_times.shape[0] - 1.0001)
        depth = np.broadcast_to(np.maximum(np.asarray(depth_km, float), 0.0), r.shape)
        z = np.clip(depth / delta, 0, p_times.shape[1] - 1.0001)
        i, j = r.astype(int), z.astype(int)
        fr, fz = r - i, z - j
        out = np.empty_like(r)
        for table, mask in ((p_times, ~is_s), (s_times, is_s)):
            ii, jj, a, b = i[mask], j[mask], fr[mask], fz[mask]
            out[mask] = (
                table[ii, jj] * (1 - a) * (1 - b)
                + table[ii + 1, jj] * a * (1 - b)
                + table[ii, jj + 1] * (1 - a) * b
                + table[ii + 1, jj + 1] * a * b
            )
        vp, vs = self.model.surface
        return out - np.asarray(station_z_km, float) / np.where(is_s, vs, vp)  # elevation correction


def pyocto_model(
    model: VelocityModel,
    tolerance_s: float,
    xdist_km: float,
    zdist_km: float,
    cutoff_km: float | None = None,
    table_dir: Path | None = None,
):
    """The PyOcto velocity model and ``TravelTimes`` for it (a layered model writes its table once)."""
    import pyocto

    if isinstance(model, Homogeneous):
        return pyocto.VelocityModel0D(model.vp, model.vs, tolerance_s, cutoff_km), TravelTimes(model)
    delta = float(np.clip(max(xdist_km, zdist_km) / 1000.0, 0.1, 1.0))
    table_dir = Path(table_dir or tempfile.gettempdir())
    path = table_dir / f"seispick-velocity-{model.sha1()}-{xdist_km:.0f}-{zdist_km:.0f}-{delta:g}.pyocto"
    if not path.exists():
        import pandas as pd

        frame = pd.DataFrame({"depth": model.depth_km, "vp": model.vp, "vs": model.vs})
        partial = path.with_suffix(f".{id(frame)}.part")
        try:
            pyocto.VelocityModel1D.create_model(frame, delta, xdist_km, zdist_km, partial)
        except ImportError as exc:
            raise VelocityModelError(f"{model.source}: a 1D model needs pyrocko ({exc})") from exc
        partial.replace(path)
    vp, vs = model.surface
    return (
        pyocto.VelocityModel1D(path, tolerance_s, cutoff_km, surface_p_velocity=vp, surface_s_velocity=vs),
        TravelTimes(model, path),
    )


def _load_table(path: Path) -> tuple[float, np.ndarray, np.ndarray]:
    """PyOcto's binary travel-time table: int nx, int nz, double delta, then P and S times (nx, nz)."""
    raw = Path(path).read_bytes()
    nx, nz, delta = struct.unpack("iid", raw[:16])
    times = np.frombuffer(raw[16:], dtype=np.float64)
    p_times = times[: nx * nz].reshape(nx, nz)
    s_times = times[nx * nz : 2 * nx * nz].reshape(nx, nz)
    return delta, p_times, s_times
