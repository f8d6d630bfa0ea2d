"""QuakeML 1.2 events (ObsPy): event, preferred origin with uncertainties and quality, arrivals, magnitude.

Picks keep the ids they have everywhere else (``smi:seispick/pick/<pick id>``), arrivals reference them with
their residuals; origins and magnitudes are automatic and preliminary. ``validate`` checks a document against
the QuakeML 1.2 XSD that ObsPy ships. ``events_to_scml`` writes the same catalog as SeisComP XML (SCML, for
``scdispatch``; ``validate_scml`` checks it against the SCML XSD ObsPy ships). ``documents_to_catalog`` builds
events of published records alone (origin and magnitude, no picks): what a process that reads another's events
from Redis can give.
"""

from __future__ import annotations

import io
import math
from functools import lru_cache
from pathlib import Path

import obspy
from lxml import etree
from obspy import UTCDateTime
from obspy.core.event import (
    Amplitude,
    Arrival,
    Catalog,
    Comment,
    CreationInfo,
    Event,
    EventDescription,
    Magnitude,
    Origin,
    OriginQuality,
    OriginUncertainty,
    QuantityError,
    ResourceIdentifier,
    StationMagnitude,
    StationMagnitudeContribution,
    WaveformStreamID,
)

from seispick.events.event import Event as SeispickEvent
from seispick.picking.formats import SCML_VERSION, catalog_to_scml, picks_to_catalog, validate_scml

__all__ = [
    "SCML_VERSION",
    "documents_to_catalog",
    "events_to_catalog",
    "events_to_quakeml",
    "events_to_scml",
    "validate",
    "validate_scml",
]

KM_PER_DEG = 111.19492664455873
PREFIX = "smi:seispick"


def pick_resource_id(pick_id: str) -> ResourceIdentifier:
    return ResourceIdentifier(f"{PREFIX}/pick/{pick_id}")


def events_to_catalog(events: list[SeispickEvent], arrivals: bool = True) -> Catalog:
    """An ObsPy Catalog with one QuakeML event per seispick event; without ``arrivals``, no picks and no
    arrivals (fdsnws-event's ``includearrivals=false``)."""
    catalog = Catalog(
        events=[_event(e) for e in events],
        creator="seispick",
        resource_id=ResourceIdentifier(f"{PREFIX}/catalog"),
    )
    if not arrivals:
        for event in catalog.events:
            event.picks = []
            for origin in event.origins:
                origin.arrivals = []
    return catalog


def events_to_quakeml(events: list[SeispickEvent]) -> str:
    return catalog_to_quakeml(events_to_catalog(events))


def catalog_to_quakeml(catalog: Catalog) -> str:
    buffer = io.BytesIO()
    catalog.write(buffer, format="QUAKEML")
    return buffer.getvalue().decode("utf-8")


def events_to_scml(events: list[SeispickEvent]) -> str:
    """SCML of ``events_to_catalog``: events, origins with arrivals, picks, amplitudes and magnitudes."""
    return catalog_to_scml(events_to_catalog(events))


def documents_to_catalog(documents: list[dict]) -> Catalog:
    """A Catalog of published event records as JSON (``GET /v1/events``' form): per record an event with its
    origin (time, position, depth, their errors, quality) and its magnitude; no picks (the record has their
    ids, not their times)."""
    events = []
    for d in documents:
        base = f"{PREFIX}/event/{d['id']}"
        version = d.get("version") or 1
        status = d.get("evaluation_status") or "preliminary"
        info = CreationInfo(agency_id="seispick", author="seispick associate", version=str(version))
        latitude = float(d["latitude"])
        origin = Origin(
            resource_id=ResourceIdentifier(f"{base}/origin/{version}"),
            time=UTCDateTime(d["origin_time"]),
            time_errors=_err(_num(d.get("time_error_s"))),
            latitude=latitude,
            longitude=float(d["longitude"]),
            depth=float(d["depth_km"]) * 1000.0,
            depth_errors=_err(_num(d.get("depth_error_km")) * 1000.0),
            depth_type="from location",
            evaluation_mode="automatic",
            evaluation_status=status,
            origin_type="hypocenter",
            creation_info=info,
            quality=OriginQuality(
                associated_phase_count=d.get("n_picks"),
                used_phase_count=d.get("n_picks"),
                associated_station_count=d.get("n_stations"),
                used_station_count=d.get("n_stations"),
                standard_error=d.get("rms_s"),
                azimuthal_gap=d.get("azimuthal_gap_deg"),
            ),
        )
        horizontal = _num(d.get("horizontal_error_km"))
        if horizontal == horizontal:
            origin.origin_uncertainty = OriginUncertainty(
                horizontal_uncertainty=horizontal * 1000.0,
                preferred_description="horizontal uncertainty",
                confidence_level=68.3,
            )
        event = Event(
            resource_id=ResourceIdentifier(base),
            event_type="earthquake",
            event_type_certainty="suspected",
            creation_info=info,
            origins=[origin],
            event_descriptions=[EventDescription(text=str(d["id"]), type="earthquake name")],
        )
        event.preferred_origin_id = origin.resource_id
        if d.get("magnitude") is not None:
            magnitude = Magnitude(
                resource_id=ResourceIdentifier(f"{base}/magnitude/{version}"),
                mag=float(d["magnitude"]),
                magnitude_type=d.get("magnitude_type") or None,
                origin_id=origin.resource_id,
                station_count=d.get("magnitude_stations"),
                evaluation_mode="automatic",
                evaluation_status=status,
                creation_info=info,
            )
            event.magnitudes.append(magnitude)
            event.preferred_magnitude_id = magnitude.resource_id
        events.append(event)
    return Catalog(events=events, creator="seispick", resource_id=ResourceIdentifier(f"{PREFIX}/catalog"))


def _num(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _event(ev: SeispickEvent) -> Event:
    base = f"{PREFIX}/event/{ev.event_id}"
    info = CreationInfo(
        agency_id="seispick",
        author="seispick associate",
        version=str(ev.version),
        creation_time=UTCDateTime(),
    )
    arrivals = sorted(ev.arrivals, key=lambda a: a.time)
    qml_picks = picks_to_catalog([a.pick for a in arrivals]).events[0].picks if arrivals else []
    for qp, a in zip(qml_picks, arrivals):
        qp.resource_id = pick_resource_id(a.pick_id)
    o = ev.origin
    origin = Origin(
        resource_id=ResourceIdentifier(f"{base}/origin/{ev.version}"),
        time=UTCDateTime(o.time),
        time_errors=_err(o.time_error_s),
        latitude=o.latitude,
        latitude_errors=_err(o.latitude_error_km / KM_PER_DEG),
        longitude=o.longitude,
        longitude_errors=_err(
            o.longitude_error_km / (KM_PER_DEG * max(math.cos(math.radians(o.latitude)), 0.01))
        ),
        depth=o.depth_km * 1000.0,
        depth_errors=_err(o.depth_error_km * 1000.0),
        depth_type="from location",
        method_id=ResourceIdentifier(f"{PREFIX}/method/pyocto+least-squares"),
        earth_model_id=ResourceIdentifier(f"{PREFIX}/velocity/{_slug(ev.model)}"),
        evaluation_mode="automatic",
        evaluation_status=ev.evaluation_status,
        origin_type="hypocenter",
        creation_info=info,
        quality=OriginQuality(
            associated_phase_count=ev.n_picks,
            used_phase_count=ev.n_picks,
            associated_station_count=ev.n_stations,
            used_station_count=ev.n_stations,
            standard_error=o.rms_s,
            azimuthal_gap=o.azimuthal_gap_deg,
            minimum_distance=o.min_distance_km / KM_PER_DEG,
            maximum_distance=o.max_distance_km / KM_PER_DEG,
        ),
        comments=[Comment(text=f"velocity model: {ev.model}")] if ev.model else [],
    )
    if o.horizontal_error_km == o.horizontal_error_km:  # not NaN
        origin.origin_uncertainty = OriginUncertainty(
            horizontal_uncertainty=o.horizontal_error_km * 1000.0,
            preferred_description="horizontal uncertainty",
            confidence_level=68.3,
        )
    for qp, a in zip(qml_picks, arrivals):
        origin.arrivals.append(
            Arrival(
                resource_id=ResourceIdentifier(f"{base}/arrival/{a.pick_id}"),
                pick_id=qp.resource_id,
                phase=a.phase,
                time_residual=a.residual_s,
                distance=a.distance_km / KM_PER_DEG,
                azimuth=a.azimuth_deg,
            )
        )
    event = Event(
        resource_id=ResourceIdentifier(base),
        event_type="earthquake",
        event_type_certainty="suspected",
        creation_info=info,
        picks=qml_picks,
        origins=[origin],
        event_descriptions=[EventDescription(text=ev.event_id, type="earthquake name")],
        comments=[Comment(text=note) for note in ev.notes]
        + ([Comment(text=f"superseded by {ev.superseded_by}")] if ev.superseded_by else []),
    )
    event.preferred_origin_id = origin.resource_id
    if ev.magnitude is not None:
        _add_magnitude(event, ev, origin, base, info)
    return event


def _add_magnitude(event: Event, ev: SeispickEvent, origin: Origin, base: str, info: CreationInfo) -> None:
    mag = ev.magnitude
    assert mag is not None
    contributions = []
    for sm in mag.stations:
        for comp in sm.components:
            net, sta, loc, cha = comp.trace_id.split(".")
            amp = Amplitude(
                resource_id=ResourceIdentifier(f"{base}/amplitude/{comp.trace_id}/{ev.version}"),
                generic_amplitude=comp.amplitude_m,
                type="AML",
                unit="m",
                category="point",
                waveform_id=WaveformStreamID(
                    network_code=net, station_code=sta, location_code=loc, channel_code=cha
                ),
                magnitude_hint="ML",
                evaluation_mode="automatic",
                creation_info=info,
                comments=[Comment(text="Wood-Anderson (static magnification 1) peak displacement")],
            )
            event.amplitudes.append(amp)
            station_mag = StationMagnitude(
                resource_id=ResourceIdentifier(f"{base}/stationmagnitude/{comp.trace_id}/{ev.version}"),
                origin_id=origin.resource_id,
                mag=comp.ml,
                station_magnitude_type="ML",
                amplitude_id=amp.resource_id,
                waveform_id=amp.waveform_id,
                creation_info=info,
            )
            event.station_magnitudes.append(station_mag)
            contributions.append(
                StationMagnitudeContribution(station_magnitude_id=station_mag.resource_id, weight=1.0)
            )
    magnitude = Magnitude(
        resource_id=ResourceIdentifier(f"{base}/magnitude/{ev.version}"),
        mag=mag.value,
        magnitude_type=mag.magnitude_type,
        origin_id=origin.resource_id,
        method_id=ResourceIdentifier(f"{PREFIX}/method/ml-iaspei-median"),
        station_count=mag.station_count,
        evaluation_mode="automatic",
        evaluation_status=ev.evaluation_status,
        station_magnitude_contributions=contributions,
        creation_info=info,
        comments=[
            Comment(
                text=f"{mag.formula}; distance range {mag.distance_range_km[0]:g}-{mag.distance_range_km[1]:g} km"
            )
        ],
    )
    event.magnitudes.append(magnitude)
    event.preferred_magnitude_id = magnitude.resource_id


def _err(value: float) -> QuantityError:
    return QuantityError(uncertainty=value) if value == value else QuantityError()


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text).strip("-") or "unknown"


@lru_cache(maxsize=1)
def _schema() -> etree.XMLSchema:
    xsd = Path(obspy.__file__).parent / "io" / "quakeml" / "data" / "QuakeML-1.2.xsd"
    return etree.XMLSchema(etree.parse(str(xsd)))


def validate(document: str | bytes) -> list[str]:
    """Errors of ``document`` against the QuakeML 1.2 schema ObsPy ships (empty when valid)."""
    data = document.encode() if isinstance(document, str) else document
    schema = _schema()
    if schema.validate(etree.fromstring(data)):
        return []
    return [f"line {e.line}: {e.message}" for e in schema.error_log]
