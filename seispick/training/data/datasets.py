"""Dataset readers: PhaseNet npz + csv, STEAD HDF5 + csv, SeisBench layout, miniSEED + pick table.

Every reader yields :class:`~seispick.training.data.samples.WaveformSample`; :func:`load_dataset` picks the reader
from the folder contents and validates the result. Structural faults (missing files, unreadable entries) raise
:class:`DatasetError` naming the file at once; content faults are collected by :func:`validate_dataset`.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from obspy import Stream, UTCDateTime, read_events

from seispick.picking.waveforms import read_waveform_file
from seispick.training.data.samples import WaveformSample, reorder
from seispick.training.data.splits import Split, split_by_station, split_by_time
from seispick.training.data.validation import DatasetError, check_dataset, validate_dataset

__all__ = [
    "DatasetError",
    "PickRecord",
    "Split",
    "check_dataset",
    "detect_format",
    "iter_dataset",
    "load_dataset",
    "read_mseed_picks",
    "samples_from_picks",
    "read_phasenet_npz",
    "read_pick_table",
    "read_seisbench",
    "read_stead",
    "split_by_station",
    "split_by_time",
    "validate_dataset",
]

MSEED_SUFFIXES = {".mseed", ".miniseed", ".msd", ".ms"}
# Waveform files of an "mseed" dataset folder: miniSEED or SAC, plain or compressed (read by seispick.picking.waveforms).
WAVEFORM_SUFFIXES = MSEED_SUFFIXES | {".sac"}
COMPRESSED_SUFFIXES = {".gz", ".bz2", ".xz"}


def is_waveform_file(path: Path) -> bool:
    """``x.mseed``, ``x.sac``, ``x.mseed.gz``...: a waveform file by its name."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSED_SUFFIXES:
        suffixes = suffixes[:-1]
    return bool(suffixes) and suffixes[-1] in WAVEFORM_SUFFIXES


QUAKEML_SUFFIXES = {".xml", ".qml", ".quakeml"}
_P_NAMES = re.compile(r"^[Pp][gnb1]?$")
_S_NAMES = re.compile(r"^[Ss][gnb1]?$")
_SEISBENCH_PICK = re.compile(r"^trace_(\w+?)_arrival_sample$")


def phase_type(name: str) -> str | None:
    """'P' for first-arriving P phases (P, p, Pg, Pn, Pb, P1), 'S' likewise, else None."""
    name = name.strip()
    if _P_NAMES.match(name):
        return "P"
    if _S_NAMES.match(name):
        return "S"
    return None


# --- small parsing helpers -------------------------------------------------------------------------------------


def _value(text: Any) -> Any:
    """CSV cell to float where numeric, None for empty/None/nan, else the stripped string."""
    if text is None:
        return None
    if not isinstance(text, str):
        return text
    text = text.strip()
    if text in ("", "None", "none", "nan", "NaN"):
        return None
    try:
        return float(text)
    except ValueError:
        return text


def _index(text: Any) -> int | None:
    value = _value(text)
    if value is None:
        return None
    if not isinstance(value, float) or not math.isfinite(value):
        raise ValueError(f"not a sample index: {text!r}")
    return int(round(value))


def _time(text: Any) -> UTCDateTime | None:
    value = _value(text)
    if value is None:
        return None
    try:
        return UTCDateTime(value)
    except (TypeError, ValueError):
        return None


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from exc


def _csv_header(path: Path) -> list[str]:
    try:
        with open(path, newline="") as f:
            return next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError):
        return []


def _require(path: Path, header: list[str], columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in header]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}")


# --- PhaseNet npz + csv ------------------------------------------------------------------------------------------


def _phasenet_name_info(stem: str) -> tuple[str, UTCDateTime | None]:
    """Station 'NET.STA' and the time encoded in a name like 'NC_MEM_2017100709282692[_02]'."""
    parts = stem.split("_")
    station = ".".join(parts[:2]) if len(parts) >= 2 else stem
    file_time = None
    if len(parts) >= 3 and re.fullmatch(r"\d{14,16}", parts[2]):
        digits = parts[2]
        try:
            file_time = UTCDateTime(digits[:14]) + (
                int(digits[14:]) / 10 ** len(digits[14:]) if digits[14:] else 0
            )
        except ValueError:
            file_time = None
    return station, file_time


def read_phasenet_npz(
    csv_path: str | Path, data_dir: str | Path | None = None, sampling_rate: float = 100.0
) -> Iterator[WaveformSample]:
    """Read PhaseNet's format: a csv (fname, itp, its[, channels]) and npz files with ``data`` (n, 3) E,N,Z.

    ``data_dir`` defaults to the csv's folder, or its ``waveform_train``/``waveform_pred`` subfolder holding the
    first listed file. No absolute start times are stored, so ``start_time`` is None; the time in the file name
    (probably the event time) goes to ``source['file_time']``. Vertical-only files keep zero E and N channels.
    """
    csv_path = Path(csv_path)
    rows = _read_csv(csv_path)
    header = list(rows[0].keys()) if rows else _csv_header(csv_path)
    _require(csv_path, header, ("fname", "itp", "its"))
    if data_dir is None:
        candidates = [csv_path.parent / d for d in ("", "waveform_train", "waveform_pred", "waveform", "npz")]
        first = rows[0]["fname"] if rows else ""
        data_dir = next((d for d in candidates if (d / first).is_file()), csv_path.parent)
    data_dir = Path(data_dir)
    for row in rows:
        path = data_dir / row["fname"]
        if not path.is_file():
            raise DatasetError(f"{path}: listed in {csv_path} but missing")
        try:
            with np.load(path) as npz:
                data = np.asarray(npz["data"])
                rate = 1.0 / float(npz["dt"]) if "dt" in npz.files else sampling_rate
        except (OSError, ValueError, KeyError) as exc:
            raise DatasetError(f"{path}: cannot read npz 'data' array ({exc})") from exc
        if data.ndim != 2:
            raise DatasetError(f"{path}: 'data' has shape {data.shape}, expected (samples, channels)")
        try:
            p_index, s_index = _index(row["itp"]), _index(row["its"])
        except ValueError as exc:
            raise DatasetError(f"{csv_path}: row for {row['fname']}: {exc}") from exc
        stem = Path(row["fname"]).stem
        station, file_time = _phasenet_name_info(stem)
        source: dict[str, Any] = {"file_time": file_time}
        if row.get("channels"):
            source["channels"] = row["channels"]
        yield WaveformSample(
            waveform=np.ascontiguousarray(data.T, dtype=np.float32),
            sampling_rate=rate,
            channel_order="ENZ",
            p_index=p_index,
            s_index=s_index,
            trace_id=stem,
            station=station,
            start_time=None,
            source=source,
            path=str(path),
        )


# --- STEAD HDF5 + csv --------------------------------------------------------------------------------------------

STEAD_SOURCE_KEYS = (
    "source_latitude",
    "source_longitude",
    "source_depth_km",
    "source_magnitude",
    "source_magnitude_type",
    "source_distance_km",
    "back_azimuth_deg",
    "snr_db",
    "trace_category",
    "p_status",
    "s_status",
    "coda_end_sample",
)


def _hdf5_index(f: Any) -> dict[str, str]:
    """Map dataset base names to their full paths in an HDF5 file."""
    import h5py

    index: dict[str, str] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            index.setdefault(name.rsplit("/", 1)[-1], name)

    f.visititems(visit)
    return index


def read_stead(
    csv_path: str | Path, hdf5_path: str | Path, sampling_rate: float = 100.0
) -> Iterator[WaveformSample]:
    """Read STEAD: metadata csv rows (trace_name, p/s_arrival_sample, ...) and HDF5 datasets (n, 3) E,N,Z.

    The dataset is looked up as ``data/<trace_name>`` (STEAD), ``earthquake/local/<trace_name>`` (EQTransformer
    test data), or anywhere in the file by name. Noise traces (no picks) come out unlabelled.
    """
    import h5py

    csv_path, hdf5_path = Path(csv_path), Path(hdf5_path)
    rows = _read_csv(csv_path)
    header = list(rows[0].keys()) if rows else _csv_header(csv_path)
    _require(csv_path, header, ("trace_name", "p_arrival_sample", "s_arrival_sample"))
    try:
        f = h5py.File(hdf5_path, "r")
    except OSError as exc:
        raise DatasetError(f"{hdf5_path}: cannot open HDF5 ({exc})") from exc
    with f:
        index: dict[str, str] | None = None
        for row in rows:
            name = row["trace_name"]
            key = next((k for k in (f"data/{name}", f"earthquake/local/{name}") if k in f), None)
            if key is None:
                index = _hdf5_index(f) if index is None else index
                key = index.get(name)
            if key is None:
                raise DatasetError(f"{hdf5_path}: trace {name} (listed in {csv_path}) not found")
            data = np.asarray(f[key])
            if data.ndim != 2:
                raise DatasetError(f"{hdf5_path}[{key}]: shape {data.shape}, expected (samples, channels)")
            try:
                p_index, s_index = _index(row.get("p_arrival_sample")), _index(row.get("s_arrival_sample"))
            except ValueError as exc:
                raise DatasetError(f"{csv_path}: row for {name}: {exc}") from exc
            source = {k: _value(row[k]) for k in STEAD_SOURCE_KEYS if k in row}
            source["origin_time"] = _time(row.get("source_origin_time"))
            source["event_id"] = _value(row.get("source_id"))
            if isinstance(source["event_id"], float):
                source["event_id"] = str(int(source["event_id"]))
            network, code = row.get("network_code", ""), row.get("receiver_code", "")
            yield WaveformSample(
                waveform=np.ascontiguousarray(data.T, dtype=np.float32),
                sampling_rate=sampling_rate,
                channel_order="ENZ",
                p_index=p_index,
                s_index=s_index,
                trace_id=name,
                station=f"{network}.{code}" if network else code,
                start_time=_time(row.get("trace_start_time")),
                source=source,
                path=f"{hdf5_path}[{key}]",
            )


# --- SeisBench layout ---------------------------------------------------------------------------------------------


def seisbench_chunks(folder: Path) -> list[str]:
    """Chunk names of a SeisBench dataset: from the ``chunks`` file, else from metadata*.csv/waveforms*.hdf5 pairs."""
    chunks_file = folder / "chunks"
    if chunks_file.is_file():
        chunks = [c.strip() for c in chunks_file.read_text().splitlines() if c.strip()]
        if chunks:
            return chunks
    meta = {p.name[len("metadata") : -len(".csv")] for p in folder.glob("metadata*.csv")}
    wave = {p.name[len("waveforms") : -len(".hdf5")] for p in folder.glob("waveforms*.hdf5")}
    return sorted(meta & wave)


def parse_location(location: str) -> tuple[int | slice | None, ...]:
    """SeisBench location string ("0,:3,:1000") to a tuple of indices/slices (as SeisBench's _parse_location)."""

    def num(s: str) -> int | None:
        return None if s == "" else int(s)

    out: list[int | slice | None] = []
    for part in location.replace(" ", "").split(","):
        pieces = part.split(":")
        if len(pieces) == 1:
            out.append(num(pieces[0]))
        elif len(pieces) in (2, 3):
            out.append(slice(*[num(p) for p in pieces]))
        else:
            raise ValueError(f"invalid location string {location!r}")
    return tuple(out)


def _data_format(f: Any) -> dict[str, Any]:
    fmt: dict[str, Any] = {}
    if "data_format" in f:
        for key, ds in f["data_format"].items():
            value = ds[()]
            fmt[key] = value.decode() if isinstance(value, bytes) else value
    fmt.setdefault("dimension_order", "CW")
    return fmt


def _seisbench_picks(row: dict[str, str]) -> tuple[int | None, int | None]:
    """First P-type and first S-type arrival over the trace_<phase>_arrival_sample columns."""
    first: dict[str, int] = {}
    for column, text in row.items():
        match = _SEISBENCH_PICK.match(column or "")
        kind = phase_type(match.group(1)) if match else None
        if kind is None:
            continue
        idx = _index(text)
        if idx is not None and (kind not in first or idx < first[kind]):
            first[kind] = idx
    return first.get("P"), first.get("S")


def read_seisbench(folder: str | Path, chunks: list[str] | None = None) -> Iterator[WaveformSample]:
    """Read a dataset in SeisBench's layout: metadata{chunk}.csv + waveforms{chunk}.hdf5.

    Waveforms live in the HDF5 group ``data``; ``trace_name`` is either a dataset name or ``<bucket>$<location>``
    (e.g. ``bucket0$3,:3,:6000``), a row of a packed array with the padding sliced off. The group
    ``data_format`` gives ``dimension_order`` (default "CW"), ``component_order`` and ``sampling_rate``; the
    columns ``trace_component_order`` and ``trace_sampling_rate_hz``/``trace_dt_s`` override them per trace.
    Picks come from ``trace_<phase>_arrival_sample`` columns (earliest P-type and S-type phase).
    """
    import h5py

    folder = Path(folder)
    for chunk in chunks if chunks is not None else seisbench_chunks(folder):
        csv_path, hdf5_path = folder / f"metadata{chunk}.csv", folder / f"waveforms{chunk}.hdf5"
        for path in (csv_path, hdf5_path):
            if not path.is_file():
                raise DatasetError(f"{path}: missing (SeisBench chunk '{chunk}')")
        rows = _read_csv(csv_path)
        _require(csv_path, list(rows[0].keys()) if rows else _csv_header(csv_path), ("trace_name",))
        with h5py.File(hdf5_path, "r") as f:
            if "data" not in f:
                raise DatasetError(f"{hdf5_path}: no 'data' group")
            fmt = _data_format(f)
            for row in rows:
                yield _seisbench_sample(row, f["data"], fmt, hdf5_path, csv_path)


def _seisbench_sample(
    row: dict[str, str], data: Any, fmt: dict[str, Any], hdf5_path: Path, csv_path: Path
) -> WaveformSample:
    name = row["trace_name"]
    block, _, location = name.partition("$")
    if block not in data:
        raise DatasetError(f"{hdf5_path}: trace {name} (listed in {csv_path}) not found in group 'data'")
    try:
        wave = np.asarray(data[block][parse_location(location or ":")])
    except (ValueError, IndexError) as exc:
        raise DatasetError(f"{hdf5_path}[data/{name}]: cannot read ({exc})") from exc
    if wave.ndim != 2:
        raise DatasetError(f"{hdf5_path}[data/{name}]: shape {wave.shape}, expected 2 dimensions")
    if str(fmt["dimension_order"]).upper() == "WC":
        wave = wave.T
    rate = _value(row.get("trace_sampling_rate_hz"))
    if rate is None and _value(row.get("trace_dt_s")) is not None:
        rate = 1.0 / float(_value(row["trace_dt_s"]))
    if rate is None:
        rate = float(fmt["sampling_rate"]) if "sampling_rate" in fmt else math.nan
    order = row.get("trace_component_order") or fmt.get("component_order") or "ZNE"
    try:
        p_index, s_index = _seisbench_picks(row)
    except ValueError as exc:
        raise DatasetError(f"{csv_path}: row for {name}: {exc}") from exc
    source = {k: _value(v) for k, v in row.items() if k and k.startswith("source_")}
    for coord in ("latitude", "longitude"):  # SeisBench names them source_latitude_deg etc.
        if f"source_{coord}_deg" in source:
            source.setdefault(f"source_{coord}", source[f"source_{coord}_deg"])
    source["origin_time"] = _time(row.get("source_origin_time"))
    source["event_id"] = source.pop("source_id", None)
    network, code = row.get("station_network_code", ""), row.get("station_code", "")
    return WaveformSample(
        waveform=np.ascontiguousarray(wave, dtype=np.float32),
        sampling_rate=float(rate),
        channel_order=str(order),
        p_index=p_index,
        s_index=s_index,
        trace_id=row.get("trace_name_original") or name,
        station=f"{network}.{code}" if network else code,
        start_time=_time(row.get("trace_start_time")),
        source=source,
        path=f"{hdf5_path}[data/{name}]",
    )


# --- miniSEED + pick table -----------------------------------------------------------------------------------------


@dataclass
class PickRecord:
    """One analyst pick: station 'NET.STA' (or 'STA'), optional full SEED id, phase 'P'/'S', absolute time."""

    station: str
    phase: str
    time: UTCDateTime
    seed_id: str | None = None
    event_id: str | None = None
    source: dict[str, Any] = field(default_factory=dict)


def _station_of(seed_id: str) -> str:
    parts = seed_id.split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 else seed_id


def read_pick_table(path: str | Path) -> list[PickRecord]:
    """Read picks from a CSV (trace_id or station, phase, time[, event_id, origin_time, source_*]) or QuakeML.

    Phases other than first-arriving P and S types are dropped. QuakeML events supply event id, origin and
    magnitude to ``source``.
    """
    path = Path(path)
    if path.suffix.lower() in QUAKEML_SUFFIXES:
        return _read_quakeml_picks(path)
    rows = _read_csv(path)
    header = list(rows[0].keys()) if rows else _csv_header(path)
    _require(path, header, ("phase", "time"))
    if "trace_id" not in header and "station" not in header:
        raise DatasetError(f"{path}: needs a 'trace_id' or a 'station' column")
    picks = []
    for line, row in enumerate(rows, start=2):
        phase = phase_type(row["phase"] or "")
        if phase is None:
            continue
        time = _time(row["time"])
        if time is None:
            raise DatasetError(f"{path}: line {line}: cannot parse time {row['time']!r}")
        seed_id = (row.get("trace_id") or "").strip() or None
        station = (row.get("station") or "").strip() or (_station_of(seed_id) if seed_id else "")
        source = {k: _value(v) for k, v in row.items() if k and k.startswith("source_")}
        if row.get("origin_time"):
            source["origin_time"] = _time(row["origin_time"])
        event_id = (row.get("event_id") or "").strip() or None
        source["event_id"] = event_id
        picks.append(PickRecord(station, phase, time, seed_id, event_id, source))
    return picks


def _read_quakeml_picks(path: Path) -> list[PickRecord]:
    try:
        catalog = read_events(str(path))
    except Exception as exc:  # obspy raises many types for malformed XML
        raise DatasetError(f"{path}: cannot read QuakeML ({exc})") from exc
    picks = []
    for event in catalog:
        origin = event.preferred_origin() or (event.origins[0] if event.origins else None)
        magnitude = event.preferred_magnitude() or (event.magnitudes[0] if event.magnitudes else None)
        event_id = str(event.resource_id)
        source: dict[str, Any] = {"event_id": event_id}
        if origin is not None:
            source.update(
                origin_time=origin.time,
                source_latitude=origin.latitude,
                source_longitude=origin.longitude,
                source_depth_km=None if origin.depth is None else origin.depth / 1000.0,
            )
        if magnitude is not None:
            source.update(source_magnitude=magnitude.mag, source_magnitude_type=magnitude.magnitude_type)
        for pick in event.picks:
            phase = phase_type(pick.phase_hint or "")
            if phase is None or pick.waveform_id is None:
                continue
            seed_id = pick.waveform_id.get_seed_string()
            picks.append(PickRecord(_station_of(seed_id), phase, pick.time, seed_id, event_id, dict(source)))
    return picks


def _group_picks(picks: list[PickRecord], max_span_s: float) -> list[list[PickRecord]]:
    """Group picks per station and event: by event id when given, else P/S pairs close in time."""
    by_key: dict[tuple[str, str | None], list[PickRecord]] = {}
    for pick in picks:
        by_key.setdefault((pick.station, pick.event_id), []).append(pick)
    groups: list[list[PickRecord]] = []
    for (_, event_id), items in sorted(by_key.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        items.sort(key=lambda p: p.time)
        if event_id is not None:
            groups.append(items)
            continue
        current: list[PickRecord] = []
        for pick in items:
            phases = {p.phase for p in current}
            if current and (pick.phase in phases or pick.time - current[0].time > max_span_s):
                groups.append(current)
                current = []
            current.append(pick)
        if current:
            groups.append(current)
    return groups


def _channel_families(stream: Stream, station: str, seed_id: str | None) -> list[Stream]:
    """Candidate 3-component sets (same net, sta, loc, band+instrument code), best first."""
    want_net, _, want_sta = station.rpartition(".")
    families: dict[tuple[str, str, str, str], Stream] = {}
    for tr in stream:
        st = tr.stats
        if st.station != want_sta or (want_net and st.network != want_net):
            continue
        families.setdefault((st.network, st.station, st.location, st.channel[:2]), Stream()).append(tr)
    if seed_id:
        net, sta, loc, cha = (seed_id.split(".") + ["", "", "", ""])[:4]
        exact = families.get((net, sta, loc, cha[:2]))
        if exact is not None:
            return [exact]
    ranked = sorted(
        families.items(),
        key=lambda kv: (-len({t.stats.channel[-1] for t in kv[1]}), -kv[1][0].stats.sampling_rate, kv[0]),
    )
    return [fam for _, fam in ranked]


def _cut(
    family: Stream, start: UTCDateTime, end: UTCDateTime, where: str
) -> tuple[np.ndarray, str, float, Any]:
    rates = {tr.stats.sampling_rate for tr in family}
    if len(rates) != 1:
        raise DatasetError(f"{where}: components have different sampling rates {sorted(rates)}")
    rate = rates.pop()
    st = family.slice(start - 1.0 / rate, end + 1.0 / rate).copy()
    if len(st) == 0:
        return np.zeros((0, 0)), "", rate, None
    st.merge(method=1, fill_value=0)  # gaps inside the window become zeros
    # Keep the span that all components cover (no zero padding at the window edges).
    t0 = max([start] + [tr.stats.starttime for tr in st])
    t1 = min([end] + [tr.stats.endtime for tr in st])
    if t1 <= t0:
        return np.zeros((0, 0)), "", rate, None
    st.trim(t0, t1, nearest_sample=True)
    st.sort(keys=["channel"])
    rows, comps = [], ""
    for tr in st:
        comp = {"1": "N", "2": "E"}.get(tr.stats.channel[-1], tr.stats.channel[-1])
        if comp in comps:
            continue
        comps += comp
        rows.append(np.asarray(tr.data, dtype=np.float32))
    n = min(len(r) for r in rows)
    return np.stack([r[:n] for r in rows]), comps, rate, st[0].stats.starttime


def read_mseed_picks(
    folder: str | Path,
    pick_file: str | Path | None = None,
    pre_s: float = 30.0,
    post_s: float = 30.0,
    max_span_s: float = 120.0,
    missing: str = "raise",
) -> Iterator[WaveformSample]:
    """Cut labelled windows from waveform files (miniSEED, SAC, compressed) around a pick table's picks (CSV, QuakeML).

    Picks are grouped per station and event; each group gives one sample from ``pre_s`` before its first pick
    to ``post_s`` after its last (shortened to the span all components cover; gaps inside become zeros), with
    channels in the order Z, N, E (components 1/2 read as N/E; missing ones stay zero). ``missing`` = "raise" or "skip" decides what happens to picks without waveforms.
    """
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if is_waveform_file(p))
    if pick_file is None:
        pick_file = _find_pick_file(folder)
        if pick_file is None:
            raise DatasetError(
                f"{folder}: no pick table (picks CSV with phase,time columns, or QuakeML) found"
            )
    pick_file = Path(pick_file)
    stream = Stream()
    for path in files:
        try:
            stream += read_waveform_file(path)  # the CLI's and the HTTP API's input path
        except ValueError as exc:  # the message names the file and what it looks like
            raise DatasetError(str(exc)) from exc
    yield from samples_from_picks(
        stream, read_pick_table(pick_file), str(pick_file), str(folder), pre_s, post_s, max_span_s, missing
    )


def samples_from_picks(
    stream: Stream,
    picks: list[PickRecord],
    source_name: str,
    data_name: str,
    pre_s: float = 30.0,
    post_s: float = 30.0,
    max_span_s: float = 120.0,
    missing: str = "raise",
) -> Iterator[WaveformSample]:
    """Labelled windows cut from ``stream`` around ``picks`` (see :func:`read_mseed_picks`); ``source_name``
    (the pick table or catalogue) and ``data_name`` (the waveforms) name them in messages and ``path``."""
    for group in _group_picks(picks, max_span_s):
        first, last = group[0], group[-1]
        where = f"{source_name} ({first.station} {first.time})"
        start, end = first.time - pre_s, last.time + post_s
        wave = None
        for family in _channel_families(stream, first.station, first.seed_id):
            wave, comps, rate, t0 = _cut(family, start, end, where)
            if wave.size:
                break
        if wave is None or not wave.size:
            if missing == "skip":
                continue
            raise DatasetError(f"{where}: no waveform data in {data_name} for these picks")
        index = {p.phase: int(round((p.time - t0) * rate)) for p in reversed(group)}
        # a phase picked again in the group (a second arrival under one event id) is labelled, not dropped
        other = [(p.phase, at) for p in group if (at := int(round((p.time - t0) * rate))) != index[p.phase]]
        sample = WaveformSample(
            waveform=wave,
            sampling_rate=float(rate),
            channel_order=comps,
            p_index=index.get("P"),
            s_index=index.get("S"),
            trace_id=f"{family[0].id[:-1]}_{first.time.strftime('%Y%m%dT%H%M%S.%f')}",
            station=first.station if "." in first.station else f"{family[0].stats.network}.{first.station}",
            start_time=t0,
            source={**first.source, "channels": comps},
            path=where,
            other_picks=other,
        )
        yield reorder(sample, "ZNE")


def _find_pick_file(folder: Path) -> Path | None:
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in QUAKEML_SUFFIXES:
            return path
        if path.suffix.lower() == ".csv":
            header = _csv_header(path)
            if "phase" in header and "time" in header:
                return path
    return None


# --- detection and loading -----------------------------------------------------------------------------------------


def detect_format(path: str | Path) -> tuple[str, Callable[[], Iterator[WaveformSample]]]:
    """Name of the format in folder ``path`` and a function that iterates its samples.

    Formats: "phasenet" (csv with fname,itp,its + npz), "stead" (csv with trace_name,p_arrival_sample + HDF5),
    "seisbench" (metadata*.csv + waveforms*.hdf5), "mseed" (miniSEED files + pick CSV or QuakeML).
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: dataset folder does not exist")
    if not path.is_dir():
        raise DatasetError(f"{path}: not a folder")
    entries = sorted(p for p in path.iterdir() if not p.name.startswith("."))
    if not entries:
        raise DatasetError(f"{path}: dataset folder is empty")
    csvs = [p for p in entries if p.suffix.lower() == ".csv"]
    hdf5s = [p for p in entries if p.suffix.lower() in (".hdf5", ".h5")]
    for csv_path in csvs:
        header = _csv_header(csv_path)
        if {"fname", "itp", "its"} <= set(header):
            return "phasenet", partial(read_phasenet_npz, csv_path)
        if {"trace_name", "p_arrival_sample"} <= set(header) and hdf5s:
            same = [h for h in hdf5s if h.stem == csv_path.stem]
            hdf5_path = same[0] if same else hdf5s[0]
            return "stead", partial(read_stead, csv_path, hdf5_path)
    if seisbench_chunks(path):
        return "seisbench", partial(read_seisbench, path)
    if any(is_waveform_file(p) for p in entries):
        return "mseed", partial(read_mseed_picks, path)
    names = ", ".join(p.name for p in entries[:10])
    raise DatasetError(f"{path}: unrecognised dataset layout (found {names})")


def iter_dataset(path: str | Path) -> Iterator[WaveformSample]:
    """Iterate the samples of the dataset in folder ``path`` (format detected), without validation."""
    _, reader = detect_format(path)
    return reader()


def load_dataset(
    path: str | Path, *, validate: bool = True, allow_noise: bool = False, n_channels: int = 3
) -> list[WaveformSample]:
    """Load every sample of the dataset in folder ``path``; with ``validate`` raise :class:`DatasetError`
    listing all problems (see :func:`validate_dataset`)."""
    samples = list(iter_dataset(path))
    if not samples:
        raise DatasetError(f"{path}: dataset contains no traces")
    if validate:
        check_dataset(samples, allow_noise=allow_noise, n_channels=n_channels)
    return samples
