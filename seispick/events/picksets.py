"""Picks to associate: seispick's pick CSV, JSON or QuakeML files (what ``seispick pick`` writes) as columns.

A ``PickSet`` keeps station key, phase and epoch time as numpy arrays for PyOcto and builds ``Pick`` objects
(and their ids) only for the picks that end up in an event. Bad files raise ``PickFileError`` naming the file;
unreadable rows of a readable file are skipped and counted in the notes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from obspy import UTCDateTime, read_events

from seispick.events.stations import station_key
from seispick.picking.formats import CSV_COLUMNS
from seispick.picking.results import Pick

REQUIRED = ("trace_id", "phase", "peak_time")
TEXT_COLUMNS = tuple(CSV_COLUMNS)  # what ``seispick pick`` writes


class PickFileError(ValueError):
    """A picks file that is not seispick's pick CSV, JSON or QuakeML; the message names the file."""


@dataclass
class PickSet:
    """Picks as columns: ``station`` (NET.STA), ``phase``, ``time`` (epoch s), and the rows they came from."""

    station: np.ndarray
    phase: np.ndarray
    time: np.ndarray
    text: pd.DataFrame | None = None  # TEXT_COLUMNS (+ ``id``) as strings, for picks read from CSV/JSON
    objects: list[Pick] | None = None  # for picks given as objects
    ids: list[str] | None = None
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.time)

    def pick_at(self, row: int) -> Pick:
        if self.objects is not None:
            return self.objects[row]
        assert self.text is not None
        r = self.text.iloc[row]
        peak = UTCDateTime(r["peak_time"])
        return Pick(
            trace_id=r["trace_id"],
            phase=r["phase"],
            peak_time=peak,
            probability=float(r["probability"]) if r["probability"] else 1.0,
            start_time=UTCDateTime(r["start_time"]) if r["start_time"] else peak,
            end_time=UTCDateTime(r["end_time"]) if r["end_time"] else peak,
            model=r["model"],
            model_sha256=r["model_sha256"],
        )

    def pick_id_at(self, row: int) -> str:
        if self.ids is not None and self.ids[row]:
            return self.ids[row]
        return self.pick_at(row).id

    @classmethod
    def from_picks(cls, picks: Sequence[Pick], ids: Sequence[str] | None = None) -> PickSet:
        return cls(
            station=np.array([station_key(p.trace_id) for p in picks], dtype=object),
            phase=np.array([p.phase.upper() for p in picks], dtype=object),
            time=np.array([p.peak_time.timestamp for p in picks], dtype=np.float64),
            objects=list(picks),
            ids=list(ids) if ids is not None else None,
        )

    @classmethod
    def from_text(cls, frame: pd.DataFrame, source: str) -> PickSet:
        """From string columns (``REQUIRED`` at least); rows with an unreadable time are dropped and noted."""
        frame = frame.fillna("").astype(str)
        for name in TEXT_COLUMNS:
            if name not in frame.columns:
                frame[name] = ""
        times = pd.to_datetime(frame["peak_time"], utc=True, format="ISO8601", errors="coerce")
        bad = times.isna().to_numpy()
        notes = []
        if bad.any():
            notes.append(f"{source}: {int(bad.sum())} pick(s) with an unreadable peak_time skipped")
            frame, times = frame[~bad], times[~bad]
        epoch = (times - pd.Timestamp("1970-01-01", tz="UTC")) / pd.Timedelta(seconds=1)
        frame = frame.reset_index(drop=True)
        return cls(
            station=np.array([station_key(t) for t in frame["trace_id"]], dtype=object),
            phase=frame["phase"].str.strip().str.upper().to_numpy(dtype=object),
            time=epoch.to_numpy(dtype=np.float64),
            text=frame,
            ids=frame["id"].tolist() if "id" in frame.columns else None,
            notes=notes,
        )

    @classmethod
    def concat(cls, sets: Sequence[PickSet]) -> PickSet:
        """One set of several (objects and text rows are turned into objects only when they mix)."""
        if len(sets) == 1:
            return sets[0]
        notes = [note for s in sets for note in s.notes]
        if all(s.text is not None for s in sets):
            frames = [s.text for s in sets]
            has_ids = all(s.ids is not None for s in sets)
            merged = pd.concat(frames, ignore_index=True).fillna("")
            out = cls(
                station=np.concatenate([s.station for s in sets]),
                phase=np.concatenate([s.phase for s in sets]),
                time=np.concatenate([s.time for s in sets]),
                text=merged,
                ids=merged["id"].tolist() if has_ids else None,
            )
        else:
            picks = [s.pick_at(i) for s in sets for i in range(len(s))]
            ids = [s.pick_id_at(i) for s in sets for i in range(len(s))]
            out = cls.from_picks(picks, ids)
        out.notes = notes
        return out


def read_pick_files(paths: Sequence[Path | str]) -> PickSet:
    """All picks of ``paths`` (CSV, JSON or QuakeML, told apart by their content)."""
    if not paths:
        raise PickFileError("no picks file given")
    return PickSet.concat([read_pick_file(Path(p)) for p in paths])


def read_pick_file(path: Path) -> PickSet:
    if not path.is_file():
        raise PickFileError(f"{path}: no such picks file")
    raw = path.read_bytes()
    if not raw.strip():
        raise PickFileError(f"{path}: empty picks file")
    if b"\x00" in raw[:4096]:
        raise PickFileError(f"{path}: a binary file, not seispick picks (CSV, JSON or QuakeML)")
    start = raw.lstrip()[:1]
    if start == b"<":
        return _read_quakeml(path)
    if start in (b"{", b"["):
        return _read_json(path, raw)
    return _read_csv(path)


def _read_csv(path: Path) -> PickSet:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise PickFileError(f"{path}: not a readable CSV ({exc})") from exc
    _require_columns(frame.columns, path)
    return PickSet.from_text(frame, str(path))


def _read_json(path: Path, raw: bytes) -> PickSet:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PickFileError(f"{path}: not valid JSON ({exc})") from exc
    rows = body.get("picks") if isinstance(body, dict) else body
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise PickFileError(
            f'{path}: expected seispick\'s JSON ({{"picks": [...]}}) or a list of pick objects'
        )
    frame = pd.DataFrame(rows)
    if rows:
        _require_columns(frame.columns, path)
    else:
        frame = pd.DataFrame(columns=list(TEXT_COLUMNS))
    return PickSet.from_text(frame, str(path))


_COMMENT = re.compile(r"(probability|model_sha256)=(\S+)")


def _read_quakeml(path: Path) -> PickSet:
    try:
        catalog = read_events(str(path), format="QUAKEML")
    except Exception as exc:  # ObsPy raises many kinds for a broken document
        raise PickFileError(f"{path}: not a readable QuakeML document ({type(exc).__name__}: {exc})") from exc
    picks: list[Pick] = []
    for event in catalog:
        for qp in event.picks:
            wid = qp.waveform_id
            if wid is None or not wid.station_code or qp.time is None or not qp.phase_hint:
                continue
            half = (qp.time_errors.uncertainty or 0.0) if qp.time_errors else 0.0
            values = dict(_COMMENT.findall(" ".join(c.text or "" for c in qp.comments)))
            model = str(qp.method_id).rsplit("/", 1)[-1] if qp.method_id else ""
            channel = wid.channel_code or ""
            trace_id = f"{wid.network_code or ''}.{wid.station_code}.{wid.location_code or ''}.{channel[:2]}"
            picks.append(
                Pick(
                    trace_id=trace_id,
                    phase=qp.phase_hint.upper(),
                    peak_time=qp.time,
                    probability=float(values.get("probability", 1.0)),
                    start_time=qp.time - half,
                    end_time=qp.time + half,
                    model=model,
                    model_sha256=values.get("model_sha256", ""),
                )
            )
    return PickSet.from_picks(picks)


def _require_columns(columns, path: Path) -> None:
    absent = [c for c in REQUIRED if c not in columns]
    if absent:
        found = ",".join(map(str, columns))[:200]
        raise PickFileError(
            f"{path}: not a seispick picks file: column(s) {', '.join(absent)} missing "
            f"(expected {','.join(TEXT_COLUMNS)}; found {found})"
        )
