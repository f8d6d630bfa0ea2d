"""Pick and detection output formats shared by the CLI and the service: CSV, JSON and QuakeML (via ObsPy)."""

from __future__ import annotations

import csv
import io
import json

from obspy.core.event import (
    Catalog,
    Comment,
    CreationInfo,
    Event,
    QuantityError,
    ResourceIdentifier,
    WaveformStreamID,
)
from obspy.core.event import Pick as QmlPick

from .picks import Detection, Pick

CSV_COLUMNS = [
    "trace_id",
    "phase",
    "peak_time",
    "probability",
    "start_time",
    "end_time",
    "model",
    "model_sha256",
]
FORMATS = ("csv", "json", "quakeml")


def picks_to_csv(picks: list[Pick]) -> str:
    """CSV with SeisBench/PhaseNet-style columns, one row per pick, times in UTC ISO 8601."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for pick in picks:
        writer.writerow(pick.as_dict())
    return buffer.getvalue()


def picks_to_json(picks: list[Pick], detections: list[Detection] | None = None, **extra) -> str:
    """JSON object with ``picks``, ``detections`` and any extra keys (model, notes...)."""
    body = {
        **extra,
        "picks": [p.as_dict() for p in picks],
        "detections": [d.as_dict() for d in detections or []],
    }
    return json.dumps(body, indent=2)


def _waveform_id(pick: Pick, channel_hint: dict[str, str] | None) -> WaveformStreamID:
    net, sta, loc, band = pick.trace_id.split(".")
    channel = (channel_hint or {}).get(pick.phase) or f"{band}{'Z' if pick.phase == 'P' else 'N'}"
    return WaveformStreamID(network_code=net, station_code=sta, location_code=loc, channel_code=channel)


def picks_to_catalog(picks: list[Pick], channel_hints: dict[str, dict[str, str]] | None = None) -> Catalog:
    """An ObsPy Catalog with one event holding all picks (no origin: association is a later step).

    ``channel_hints`` maps trace_id -> {phase: channel code} so P sits on the vertical and S on a horizontal.
    """
    event = Event(resource_id=ResourceIdentifier(prefix="smi:seispick/event"))
    for pick in picks:
        half_width = max((pick.end_time - pick.start_time) / 2.0, 0.0)
        event.picks.append(
            QmlPick(
                resource_id=ResourceIdentifier(prefix="smi:seispick/pick"),
                time=pick.peak_time,
                time_errors=QuantityError(uncertainty=half_width),
                waveform_id=_waveform_id(pick, (channel_hints or {}).get(pick.trace_id)),
                phase_hint=pick.phase,
                evaluation_mode="automatic",
                method_id=ResourceIdentifier(f"smi:seispick/model/{pick.model}"),
                creation_info=CreationInfo(agency_id="seispick", author=pick.model),
                comments=[
                    Comment(text=f"probability={pick.probability:.4f} model_sha256={pick.model_sha256}")
                ],
            )
        )
    return Catalog(events=[event] if picks else [], creator="seispick")


def picks_to_quakeml(picks: list[Pick], channel_hints: dict[str, dict[str, str]] | None = None) -> str:
    """QuakeML 1.2 text of ``picks_to_catalog``."""
    buffer = io.BytesIO()
    picks_to_catalog(picks, channel_hints).write(buffer, format="QUAKEML")
    return buffer.getvalue().decode("utf-8")


def channel_hints_from_segments(segments) -> dict[str, dict[str, str]]:
    """P on the vertical channel, S on the first horizontal one present (else the vertical)."""
    hints: dict[str, dict[str, str]] = {}
    for seg in segments:
        chans = seg.channels
        vertical = chans.get("Z") or next(iter(chans.values()))
        horizontal = chans.get("N") or chans.get("E") or chans.get("1") or chans.get("2") or vertical
        hints[seg.instrument] = {"P": vertical, "S": horizontal}
    return hints


def render(
    fmt: str, picks: list[Pick], detections: list[Detection] | None = None, segments=None, **extra
) -> str:
    """Render picks in ``fmt`` (csv, json or quakeml)."""
    if fmt == "csv":
        return picks_to_csv(picks)
    if fmt == "json":
        return picks_to_json(picks, detections, **extra)
    if fmt == "quakeml":
        return picks_to_quakeml(picks, channel_hints_from_segments(segments or []))
    raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
