"""Station metadata: coordinates from FDSN StationXML (ObsPy ``read_inventory``) or a CSV file.

CSV columns: ``network,station,latitude,longitude,elevation_m`` (a header row; extra columns are ignored).
Picks are matched to stations by ``NET.STA`` (any location code). A station without coordinates is left out
with a note (its picks are counted as unassociated); a file that cannot be read, lacks a column or holds an
invalid value is a ``StationFileError`` naming the file and the problem.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from obspy import Inventory, read_inventory

CSV_REQUIRED = ("network", "station", "latitude", "longitude", "elevation_m")


class StationFileError(ValueError):
    """A station file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Station:
    """One station: ``NET.STA``, WGS84 degrees and elevation in metres above sea level."""

    network: str
    station: str
    latitude: float
    longitude: float
    elevation_m: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.network}.{self.station}"


@dataclass
class StationTable:
    """Stations by ``NET.STA``, the ObsPy inventory they came from (responses, if any) and reading notes."""

    stations: dict[str, Station]
    source: str = ""
    inventory: Inventory | None = None
    notes: list[str] = field(default_factory=list)
    without_coordinates: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if not self.stations:
            raise StationFileError(f"{self.source or 'stations'}: no station with coordinates")

    def __len__(self) -> int:
        return len(self.stations)

    def __contains__(self, key: str) -> bool:
        return key in self.stations

    def get(self, key: str) -> Station | None:
        return self.stations.get(key)

    @property
    def has_responses(self) -> bool:
        """Whether the inventory holds at least one channel response (needed for magnitudes)."""
        return self.inventory is not None and has_responses(self.inventory)

    def extent(self) -> tuple[float, float, float, float]:
        """(min latitude, max latitude, min longitude, max longitude)."""
        lats = [s.latitude for s in self.stations.values()]
        lons = [s.longitude for s in self.stations.values()]
        return min(lats), max(lats), min(lons), max(lons)


def station_key(trace_id: str) -> str:
    """``NET.STA`` of a trace id ``NET.STA.LOC.CHA`` (or ``NET.STA.LOC.BI`` as seispick writes it)."""
    parts = trace_id.split(".")
    return ".".join(parts[:2])


def read_stations(path: Path | str) -> StationTable:
    """Stations of a StationXML (or any format ObsPy's ``read_inventory`` reads) or a CSV file."""
    path = Path(path)
    if not path.is_file():
        raise StationFileError(f"{path}: no such station file")
    head = path.read_bytes()[:4096]
    if not head.strip():
        raise StationFileError(f"{path}: empty station file")
    text_head = head.decode("utf-8", errors="replace").lstrip().lower()
    if path.suffix.lower() == ".csv" or text_head.startswith("network"):
        return _read_csv(path)
    try:
        inventory = read_inventory(str(path))
    except Exception as exc:  # ObsPy raises TypeError, XMLSyntaxError, ValueError... for unreadable input
        raise StationFileError(
            f"{path}: not a readable StationXML/inventory file nor a CSV with columns "
            f"{','.join(CSV_REQUIRED)} ({type(exc).__name__}: {exc})"
        ) from exc
    return from_inventory(inventory, source=str(path))


def from_inventory(inventory: Inventory, source: str = "inventory") -> StationTable:
    """Stations of an ObsPy inventory (the first epoch with coordinates wins for a repeated NET.STA)."""
    stations: dict[str, Station] = {}
    missing: set[str] = set()
    for net in inventory:
        for sta in net:
            key = f"{net.code}.{sta.code}"
            if key in stations:
                continue
            lat, lon = _float_or_none(sta.latitude), _float_or_none(sta.longitude)
            if lat is None or lon is None:
                missing.add(key)
                continue
            _check_range(lat, lon, f"{source}: station {key}")
            stations[key] = Station(net.code, sta.code, lat, lon, _float_or_none(sta.elevation) or 0.0)
    missing -= stations.keys()
    table = _table(stations, source, missing)
    table.inventory = inventory
    return table


def _read_csv(path: Path) -> StationTable:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        absent = [c for c in CSV_REQUIRED if c not in columns]
        if absent:
            raise StationFileError(
                f"{path}: station CSV lacks column(s) {', '.join(absent)} "
                f"(expected a header {','.join(CSV_REQUIRED)}; found {','.join(columns) or 'nothing'})"
            )
        stations: dict[str, Station] = {}
        missing: set[str] = set()
        for line, raw in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            net, sta = row["network"], row["station"]
            if not net or not sta:
                raise StationFileError(f"{path}, line {line}: network and station must not be empty")
            key = f"{net}.{sta}"
            if not row["latitude"] or not row["longitude"]:
                missing.add(key)
                continue
            try:
                lat, lon = float(row["latitude"]), float(row["longitude"])
                elevation = float(row["elevation_m"]) if row["elevation_m"] else 0.0
            except ValueError as exc:
                raise StationFileError(f"{path}, line {line}: {key}: not a number ({exc})") from exc
            _check_range(lat, lon, f"{path}, line {line}: {key}")
            if not math.isfinite(elevation):
                raise StationFileError(f"{path}, line {line}: {key}: elevation_m is not finite")
            if key in stations:
                raise StationFileError(f"{path}, line {line}: station {key} listed twice")
            stations[key] = Station(net, sta, lat, lon, elevation)
    return _table(stations, str(path), missing - stations.keys())


def _table(stations: dict[str, Station], source: str, missing: set[str]) -> StationTable:
    notes = []
    if missing:
        names = ", ".join(sorted(missing))
        notes.append(f"{source}: {len(missing)} station(s) without coordinates left out: {names}")
    if not stations:
        detail = f" ({len(missing)} without coordinates)" if missing else ""
        raise StationFileError(f"{source}: no station with coordinates{detail}")
    return StationTable(stations, source, notes=notes, without_coordinates=set(missing))


def _check_range(lat: float, lon: float, where: str) -> None:
    if not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
        raise StationFileError(f"{where}: latitude {lat} outside [-90, 90]")
    if not (math.isfinite(lon) and -180.0 <= lon <= 360.0):
        raise StationFileError(f"{where}: longitude {lon} outside [-180, 360]")


def _float_or_none(value) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def has_responses(inventory: Inventory) -> bool:
    """Whether any channel of ``inventory`` has a response with stages."""
    return any(
        cha.response is not None and cha.response.response_stages
        for net in inventory
        for sta in net
        for cha in sta
    )
