"""Located events: origin, arrivals (picks with residuals), optional magnitude; CSV/JSON rows and flat records."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from obspy import UTCDateTime

from seispick.picking.results import Pick, iso

if TYPE_CHECKING:
    from seispick.events.magnitude import MagnitudeResult
    from seispick.events.picksets import PickSet

CSV_COLUMNS = [
    "event_id",
    "version",
    "origin_time",
    "latitude",
    "longitude",
    "depth_km",
    "n_picks",
    "n_p",
    "n_s",
    "n_stations",
    "rms_s",
    "azimuthal_gap_deg",
    "time_error_s",
    "horizontal_error_km",
    "depth_error_km",
    "magnitude",
    "magnitude_type",
    "magnitude_stations",
]


def event_id(first_pick_id: str) -> str:
    """``ev-`` + 16 hex of sha1 of the event's first arrival's pick id: the same event, the same id.

    The first arrival is the earliest pick (ties: smallest pick id) when the event is first declared; a live
    event keeps its id through later versions.
    """
    return "ev-" + hashlib.sha1(first_pick_id.encode()).hexdigest()[:16]


@dataclass(eq=False)
class Arrival:
    """One associated pick: its row in the pick set, phase, travel-time residual (observed - predicted, s)."""

    source: PickSet
    row: int
    station: str
    phase: str
    time: float  # epoch seconds of the pick
    residual_s: float
    distance_km: float  # epicentral
    azimuth_deg: float  # from the epicentre to the station

    @cached_property
    def pick(self) -> Pick:
        return self.source.pick_at(self.row)

    @cached_property
    def pick_id(self) -> str:
        return self.source.pick_id_at(self.row)

    def as_dict(self) -> dict:
        return {
            "pick_id": self.pick_id,
            "trace_id": self.pick.trace_id,
            "phase": self.phase,
            "time": iso(UTCDateTime(self.time)),
            "residual_s": round(self.residual_s, 4),
            "distance_km": round(self.distance_km, 3),
            "azimuth_deg": round(self.azimuth_deg, 2),
        }


@dataclass
class Origin:
    """Hypocentre and its quality; errors are one standard deviation from the linearised problem."""

    time: float  # epoch seconds
    latitude: float
    longitude: float
    depth_km: float
    x_km: float  # in the associator's local projection
    y_km: float
    time_error_s: float
    latitude_error_km: float
    longitude_error_km: float
    horizontal_error_km: float  # semi-major axis of the 1-sigma epicentral ellipse
    depth_error_km: float
    rms_s: float
    azimuthal_gap_deg: float
    min_distance_km: float
    max_distance_km: float


@dataclass(eq=False)
class Event:
    """A located event: deterministic id, version (live updates count up), origin, arrivals, magnitude."""

    event_id: str
    origin: Origin
    arrivals: list[Arrival]
    version: int = 1
    magnitude: MagnitudeResult | None = None
    notes: list[str] = field(default_factory=list)
    model: str = ""  # the velocity model, described
    evaluation_status: str = "preliminary"  # "final" once out of the live window; "rejected" when superseded
    superseded_by: str | None = None  # the id that carries this event on (a duplicate merged into it)

    @property
    def n_picks(self) -> int:
        return len(self.arrivals)

    @property
    def n_p(self) -> int:
        return sum(a.phase == "P" for a in self.arrivals)

    @property
    def n_s(self) -> int:
        return sum(a.phase == "S" for a in self.arrivals)

    @property
    def n_stations(self) -> int:
        return len({a.station for a in self.arrivals})

    @property
    def pick_rows(self) -> frozenset[int]:
        return frozenset(a.row for a in self.arrivals)

    def row(self) -> dict:
        """One CSV row (``CSV_COLUMNS``); magnitude columns empty without a magnitude."""
        o = self.origin
        mag = self.magnitude
        return {
            "event_id": self.event_id,
            "version": self.version,
            "origin_time": iso(UTCDateTime(o.time)),
            "latitude": f"{o.latitude:.5f}",
            "longitude": f"{o.longitude:.5f}",
            "depth_km": f"{o.depth_km:.3f}",
            "n_picks": self.n_picks,
            "n_p": self.n_p,
            "n_s": self.n_s,
            "n_stations": self.n_stations,
            "rms_s": f"{o.rms_s:.4f}",
            "azimuthal_gap_deg": f"{o.azimuthal_gap_deg:.1f}",
            "time_error_s": _fmt(o.time_error_s, 4),
            "horizontal_error_km": _fmt(o.horizontal_error_km, 3),
            "depth_error_km": _fmt(o.depth_error_km, 3),
            "magnitude": f"{mag.value:.2f}" if mag else "",
            "magnitude_type": mag.magnitude_type if mag else "",
            "magnitude_stations": mag.station_count if mag else "",
        }

    def as_dict(self, arrivals: bool = True) -> dict:
        """JSON-ready: the CSV fields with numbers, plus arrivals, magnitude details and notes."""
        o = self.origin
        out: dict = {
            "event_id": self.event_id,
            "version": self.version,
            "origin_time": iso(UTCDateTime(o.time)),
            "latitude": round(o.latitude, 6),
            "longitude": round(o.longitude, 6),
            "depth_km": round(o.depth_km, 4),
            "n_picks": self.n_picks,
            "n_p": self.n_p,
            "n_s": self.n_s,
            "n_stations": self.n_stations,
            "rms_s": round(o.rms_s, 5),
            "azimuthal_gap_deg": round(o.azimuthal_gap_deg, 2),
            "time_error_s": _num(o.time_error_s, 5),
            "latitude_error_km": _num(o.latitude_error_km, 4),
            "longitude_error_km": _num(o.longitude_error_km, 4),
            "horizontal_error_km": _num(o.horizontal_error_km, 4),
            "depth_error_km": _num(o.depth_error_km, 4),
            "velocity_model": self.model,
            "magnitude": round(self.magnitude.value, 3) if self.magnitude else None,
            "magnitude_type": self.magnitude.magnitude_type if self.magnitude else None,
        }
        if self.magnitude:
            out["magnitude_detail"] = self.magnitude.as_dict()
        if arrivals:
            out["arrivals"] = [a.as_dict() for a in sorted(self.arrivals, key=lambda a: a.time)]
        out["notes"] = list(self.notes)
        out["evaluation_status"] = self.evaluation_status
        out["superseded_by"] = self.superseded_by
        return out

    def record_fields(self) -> dict[str, str]:
        """Flat string fields for a Redis stream entry / pub-sub message (``id`` and ``version`` first)."""
        row = {k: str(v) for k, v in self.row().items()}
        row.pop("event_id")
        return {
            "id": self.event_id,
            **row,
            "pick_ids": ",".join(a.pick_id for a in sorted(self.arrivals, key=lambda a: a.time)),
            "arrivals": json.dumps(
                [
                    [a.pick_id, a.station, a.phase, round(a.residual_s, 4)]
                    for a in sorted(self.arrivals, key=lambda a: a.time)
                ],
                separators=(",", ":"),
            ),
            "evaluation_status": self.evaluation_status,
            "superseded_by": self.superseded_by or "",
        }


def _fmt(value: float, digits: int) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else ""


def _num(value: float, digits: int) -> float | None:
    return round(value, digits) if math.isfinite(value) else None
