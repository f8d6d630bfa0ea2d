"""Pick and detection output formats shared by the CLI and the service: CSV, JSON, QuakeML and SeisComP XML
(SCML, for ``scdispatch``), both via ObsPy.

A detector's detections (ConvNetQuake) are written as CSV (``DETECTION_CSV_COLUMNS``: the location cell and its
probability are empty for a detector without cells) or JSON (``detections``); QuakeML has no form for a
detection without an origin, so ``render_detections`` refuses it.

Every format carries the pick's own id (``Pick.id``): the CSV ``id`` column, the JSON ``id`` field and the
QuakeML resource id ``smi:seispick/pick/<id>``. QuakeML picks name the channel they were picked on
(``pick_channels``): P on the vertical; S on the horizontal with the larger amplitude around the pick (N/1
when both are equal), the vertical only when the instrument recorded no horizontal.

SCML is ObsPy's translation of the QuakeML document (``SCML_VERSION``, the schema of SeisComP 5 and later);
a picks document holds the picks alone (no event: SeisComP makes events of origins). ``validate_scml`` checks
a document against the SCML schema ObsPy ships.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np
import obspy
from lxml import etree
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

from seispick.picking.grouping import StationSegment
from seispick.picking.results import Detection, Pick

CSV_COLUMNS = [
    "id",
    "trace_id",
    "phase",
    "peak_time",
    "probability",
    "start_time",
    "end_time",
    "model",
    "model_sha256",
]
DETECTION_CSV_COLUMNS = [
    "id",
    "trace_id",
    "start_time",
    "end_time",
    "probability",
    "cell",
    "cell_probability",
    "model",
    "model_sha256",
]
FORMATS = ("csv", "json", "quakeml", "scml")
SCML_VERSION = "0.12"  # ObsPy's default SCML writer version; SeisComP 5 and later read it
DETECTION_FORMATS = ("csv", "json")


def picks_to_csv(picks: list[Pick]) -> str:
    """CSV with SeisBench/PhaseNet-style columns, one row per pick, times in UTC ISO 8601."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for pick in picks:
        writer.writerow(pick.as_dict())
    return buffer.getvalue()


def detections_to_csv(detections: list[Detection]) -> str:
    """CSV, one row per detection (``DETECTION_CSV_COLUMNS``), times in UTC ISO 8601."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=DETECTION_CSV_COLUMNS, lineterminator="\n", restval="")
    writer.writeheader()
    for detection in detections:
        writer.writerow(detection.as_dict())
    return buffer.getvalue()


def picks_to_json(picks: list[Pick], detections: list[Detection] | None = None, **extra) -> str:
    """JSON object with ``picks``, ``detections`` and any extra keys (model, notes...)."""
    body = {
        **extra,
        "picks": [p.as_dict() for p in picks],
        "detections": [d.as_dict() for d in detections or []],
    }
    return json.dumps(body, indent=2)


# Seconds around an S pick over which the horizontals' amplitudes are compared.
S_AMPLITUDE_WINDOW = (-0.5, 1.5)


def pick_channels(picks: Iterable[Pick], segments: Iterable[StationSegment]) -> dict[str, str]:
    """Pick id -> the channel code it was picked on (see the module docstring)."""
    by_instrument: dict[str, list[StationSegment]] = {}
    for seg in segments:
        by_instrument.setdefault(seg.instrument, []).append(seg)
    out = {}
    for pick in picks:
        segs = by_instrument.get(pick.trace_id, [])
        seg = next((s for s in segs if s.starttime <= pick.peak_time <= s.endtime), segs[0] if segs else None)
        if seg is not None:
            out[pick.id] = _channel_of(pick, seg)
    return out


def _channel_of(pick: Pick, seg: StationSegment) -> str:
    chans = seg.channels
    vertical = chans.get("Z")
    horizontals = [c for c in ("N", "E") if c in chans]
    if pick.phase != "S" or not horizontals:
        return vertical or next(iter(chans.values()))
    if len(horizontals) == 1:
        return chans[horizontals[0]]
    rate = seg.sampling_rate
    centre = (pick.peak_time.timestamp - seg.time_of(0)) * rate
    lo = max(int(centre + S_AMPLITUDE_WINDOW[0] * rate), 0)
    hi = min(int(centre + S_AMPLITUDE_WINDOW[1] * rate) + 1, seg.n_samples)
    amplitudes = []
    for letter in horizontals:
        row = seg.data[seg.channel_order.index(letter), lo:hi] if hi > lo else np.zeros(0)
        amplitudes.append(float(np.abs(row - row.mean()).max()) if row.size else 0.0)
    best = 1 if amplitudes[1] > amplitudes[0] else 0  # N/1 unless E/2 is strictly larger
    return chans[horizontals[best]]


def _waveform_id(pick: Pick, channel: str | None) -> WaveformStreamID:
    net, sta, loc, band = pick.trace_id.split(".")
    channel = channel or f"{band}{'Z' if pick.phase == 'P' else 'N'}"
    return WaveformStreamID(network_code=net, station_code=sta, location_code=loc, channel_code=channel)


def picks_to_catalog(picks: list[Pick], channels: dict[str, str] | None = None) -> Catalog:
    """An ObsPy Catalog with one event holding all picks (no origin: association is a later step).

    Resource ids are built from the pick ids, so the same picks always give the same document.
    ``channels`` maps pick id -> channel code (``pick_channels``).
    """
    digest = hashlib.sha1("|".join(sorted(p.id for p in picks)).encode()).hexdigest()[:16]
    event = Event(resource_id=ResourceIdentifier(f"smi:seispick/event/{digest}"))
    for pick in picks:
        half_width = max((pick.end_time - pick.start_time) / 2.0, 0.0)
        event.picks.append(
            QmlPick(
                resource_id=ResourceIdentifier(f"smi:seispick/pick/{pick.id}"),
                time=pick.peak_time,
                time_errors=QuantityError(uncertainty=half_width),
                waveform_id=_waveform_id(pick, (channels or {}).get(pick.id)),
                phase_hint=pick.phase,
                evaluation_mode="automatic",
                method_id=ResourceIdentifier(f"smi:seispick/model/{pick.model}"),
                creation_info=CreationInfo(agency_id="seispick", author=pick.model),
                comments=[
                    Comment(
                        resource_id=ResourceIdentifier(f"smi:seispick/pick/{pick.id}/comment"),
                        text=f"probability={pick.probability:.4f} model_sha256={pick.model_sha256}",
                    )
                ],
            )
        )
    return Catalog(
        events=[event] if picks else [],
        resource_id=ResourceIdentifier(f"smi:seispick/catalog/{digest}"),
        creator="seispick",
    )


def picks_to_quakeml(picks: list[Pick], channels: dict[str, str] | None = None) -> str:
    """QuakeML 1.2 text of ``picks_to_catalog``."""
    buffer = io.BytesIO()
    picks_to_catalog(picks, channels).write(buffer, format="QUAKEML")
    return buffer.getvalue().decode("utf-8")


def catalog_to_scml(catalog: Catalog, event_removal: bool = False) -> str:
    """SCML (``SCML_VERSION``) text of ``catalog`` by ObsPy's writer; ``event_removal`` leaves the events out
    (their picks, origins and magnitudes stay)."""
    buffer = io.BytesIO()
    catalog.write(buffer, format="SCML", version=SCML_VERSION, event_removal=event_removal)
    return buffer.getvalue().decode("utf-8")


def picks_to_scml(picks: list[Pick], channels: dict[str, str] | None = None) -> str:
    """SCML with the picks of ``picks_to_catalog`` and no event: ``scdispatch -i picks.scml`` imports them."""
    return catalog_to_scml(picks_to_catalog(picks, channels), event_removal=True)


@lru_cache(maxsize=1)
def _scml_schema() -> etree.XMLSchema:
    xsd = Path(obspy.__file__).parent / "io" / "seiscomp" / "data" / f"sc3ml_{SCML_VERSION}.xsd"
    return etree.XMLSchema(etree.parse(str(xsd)))


def validate_scml(document: str | bytes) -> list[str]:
    """Errors of ``document`` against the SCML schema ObsPy ships (empty when valid)."""
    data = document.encode() if isinstance(document, str) else document
    schema = _scml_schema()
    if schema.validate(etree.fromstring(data)):
        return []
    return [f"line {e.line}: {e.message}" for e in schema.error_log]


def render(
    fmt: str, picks: list[Pick], detections: list[Detection] | None = None, segments=None, **extra
) -> str:
    """Render picks in ``fmt`` (csv, json, quakeml or scml)."""
    if fmt == "csv":
        return picks_to_csv(picks)
    if fmt == "json":
        return picks_to_json(picks, detections, **extra)
    if fmt == "quakeml":
        return picks_to_quakeml(picks, pick_channels(picks, segments or []))
    if fmt == "scml":
        return picks_to_scml(picks, pick_channels(picks, segments or []))
    raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def render_detections(fmt: str, detections: list[Detection], **extra) -> str:
    """Render a detector's detections in ``fmt`` (csv or json); QuakeML and SCML are refused with the reason."""
    if fmt == "csv":
        return detections_to_csv(detections)
    if fmt == "json":
        return picks_to_json([], detections, **extra)
    if fmt in ("quakeml", "scml"):
        name = "QuakeML" if fmt == "quakeml" else "SCML"
        raise ValueError(
            f"a detector's detections have no {name} form ({name} events need an origin or picks); "
            "use format csv or json"
        )
    raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(DETECTION_FORMATS)}")
