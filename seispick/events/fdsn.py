"""fdsnws-event 1.2 without the web framework: query parameters, event selection, the text format, WADL.

``parse_query`` turns a request's parameters (long or short names, as the FDSN web service specification
spells them) into an :class:`EventQuery`, or raises :class:`FdsnQueryError` naming the parameter; ``select``
applies it to :class:`EventSummary` items (filters, ``orderby``, ``offset`` from 1, ``limit``); ``text``
writes the pipe-separated text format, ``wadl`` the application.wadl that clients such as ObsPy's read at
start, ``error_document`` the plain-text error body of the specification. The service's router
(``seispick.service.api.routers.fdsnws_event``) only gathers the events and answers.

Every event has one origin (the latest version's) and at most one magnitude, so ``includeallorigins`` and
``includeallmagnitudes`` are accepted and change nothing; the catalog and the contributor are ``seispick``.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from obspy.geodetics import FlinnEngdahl, locations2degrees

SPEC_VERSION = "1.2.0"  # SpecMajor.SpecMinor.Implementation
CATALOG = "seispick"
CONTRIBUTOR = "seispick"
EVENT_TYPE = "earthquake"
ORDERS = ("time", "time-asc", "magnitude", "magnitude-asc")
FORMATS = ("xml", "text")
TEXT_HEADER = (
    "#EventID|Time|Latitude|Longitude|Depth/km|Author|Catalog|Contributor|ContributorID|MagType|Magnitude|"
    "MagAuthor|EventLocationName"
)

# name -> (type, description); the long names, as the WADL lists them
PARAMETERS: dict[str, tuple[str, str]] = {
    "starttime": ("xs:dateTime", "Events at or after this origin time (UTC)"),
    "endtime": ("xs:dateTime", "Events at or before this origin time (UTC)"),
    "minlatitude": ("xs:double", "Southern boundary, degrees"),
    "maxlatitude": ("xs:double", "Northern boundary, degrees"),
    "minlongitude": ("xs:double", "Western boundary, degrees"),
    "maxlongitude": ("xs:double", "Eastern boundary, degrees"),
    "latitude": ("xs:double", "Centre of a radial search, degrees (0 by default)"),
    "longitude": ("xs:double", "Centre of a radial search, degrees (0 by default)"),
    "minradius": ("xs:double", "Minimum distance from the centre, degrees"),
    "maxradius": ("xs:double", "Maximum distance from the centre, degrees"),
    "mindepth": ("xs:double", "Minimum depth, km"),
    "maxdepth": ("xs:double", "Maximum depth, km"),
    "minmagnitude": ("xs:double", "Minimum magnitude"),
    "maxmagnitude": ("xs:double", "Maximum magnitude"),
    "magnitudetype": ("xs:string", "The magnitude type the magnitude limits apply to (ML)"),
    "eventtype": ("xs:string", "Event types, comma separated, * and ? wildcards (earthquake)"),
    "includeallorigins": ("xs:boolean", "All origins (one per event here: the latest)"),
    "includeallmagnitudes": ("xs:boolean", "All magnitudes (at most one per event here)"),
    "includearrivals": ("xs:boolean", "The picks and arrivals of each origin"),
    "eventid": ("xs:string", "Event ids (ev-...), comma separated"),
    "limit": ("xs:int", "At most this many events"),
    "offset": ("xs:int", "The first event returned, counted from 1"),
    "orderby": ("xs:string", "time (newest first), time-asc, magnitude (largest first), magnitude-asc"),
    "catalog": ("xs:string", "The catalog (seispick)"),
    "contributor": ("xs:string", "The contributor (seispick)"),
    "updatedafter": ("xs:dateTime", "Events whose latest version was published after this time"),
    "format": ("xs:string", "xml (QuakeML 1.2) or text"),
    "nodata": ("xs:int", "The status without matching events: 204 or 404"),
}
ALIASES = {
    "start": "starttime",
    "end": "endtime",
    "minlat": "minlatitude",
    "maxlat": "maxlatitude",
    "minlon": "minlongitude",
    "maxlon": "maxlongitude",
    "lat": "latitude",
    "lon": "longitude",
    "minmag": "minmagnitude",
    "maxmag": "maxmagnitude",
    "magtype": "magnitudetype",
}
OPTIONS = {"orderby": ORDERS, "format": FORMATS, "nodata": ("204", "404")}
DEFAULTS = {"orderby": "time", "format": "xml", "nodata": "204", "offset": "1"}
BOOLEANS = ("includeallorigins", "includeallmagnitudes", "includearrivals")
RANGES = {
    "minlatitude": (-90.0, 90.0),
    "maxlatitude": (-90.0, 90.0),
    "latitude": (-90.0, 90.0),
    "minlongitude": (-180.0, 180.0),
    "maxlongitude": (-180.0, 180.0),
    "longitude": (-180.0, 180.0),
    "minradius": (0.0, 180.0),
    "maxradius": (0.0, 180.0),
}


class FdsnQueryError(ValueError):
    """A bad parameter: answered 400 with the message."""


class FdsnLimitError(ValueError):
    """``limit`` above the service's maximum: answered 413."""


@dataclass(frozen=True)
class EventQuery:
    starttime: float | None = None  # epoch seconds
    endtime: float | None = None
    minlatitude: float | None = None
    maxlatitude: float | None = None
    minlongitude: float | None = None
    maxlongitude: float | None = None
    latitude: float | None = None
    longitude: float | None = None
    minradius: float | None = None
    maxradius: float | None = None
    mindepth: float | None = None
    maxdepth: float | None = None
    minmagnitude: float | None = None
    maxmagnitude: float | None = None
    magnitudetype: str | None = None
    eventtype: tuple[str, ...] = ()
    includeallorigins: bool = False
    includeallmagnitudes: bool = False
    includearrivals: bool = False
    eventid: tuple[str, ...] = ()
    limit: int | None = None
    offset: int = 1
    orderby: str = "time"
    catalog: str | None = None
    contributor: str | None = None
    updatedafter: float | None = None
    format: str = "xml"
    nodata: int = 204


@dataclass
class EventSummary:
    """What selection and the text format need of an event; ``payload`` is carried along (the event)."""

    event_id: str
    time: float  # origin time, epoch seconds
    latitude: float
    longitude: float
    depth_km: float
    magnitude: float | None = None
    magnitude_type: str | None = None
    updated: float | None = None  # when its latest version was published, epoch seconds
    payload: Any = field(default=None, repr=False)


def parse_time(text: str) -> float:
    """ISO 8601 (``YYYY-MM-DD``, ``YYYY-MM-DDThh:mm:ss[.ffffff]``, an optional ``Z``) as UTC epoch seconds."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1]
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def parse_query(params: Iterable[tuple[str, str]], max_limit: int) -> EventQuery:
    """The query of ``params`` (name, value pairs as received); :class:`FdsnQueryError` names what is wrong,
    :class:`FdsnLimitError` a ``limit`` above ``max_limit``."""
    given: dict[str, str] = {}
    for raw_name, value in params:
        name = ALIASES.get(raw_name.lower(), raw_name.lower())
        if name not in PARAMETERS:
            raise FdsnQueryError(f"unknown parameter {raw_name!r}")
        if name in given:
            raise FdsnQueryError(f"parameter {name!r} given more than once")
        given[name] = value
    values: dict[str, Any] = {}
    for name, text in {**DEFAULTS, **given}.items():
        values[name] = _value(name, text)
    query = EventQuery(**values)
    _check(query)
    if (
        query.limit is not None and query.limit > max_limit
    ):  # last: a malformed query is a 400 whatever its limit
        raise FdsnLimitError(f"limit={query.limit}: this service returns at most {max_limit} events")
    return query


def _value(name: str, text: str) -> Any:
    kind = PARAMETERS[name][0]
    text = text.strip()
    if name in OPTIONS:
        if text.lower() not in OPTIONS[name]:
            raise FdsnQueryError(f"{name}={text!r}: use one of {', '.join(OPTIONS[name])}")
        return int(text) if name == "nodata" else text.lower()
    if kind == "xs:dateTime":
        try:
            return parse_time(text)
        except ValueError:
            raise FdsnQueryError(
                f"{name}={text!r}: not a time (YYYY-MM-DD or YYYY-MM-DDThh:mm:ss[.ssssss], UTC)"
            ) from None
    if kind == "xs:double":
        try:
            number = float(text)
        except ValueError:
            raise FdsnQueryError(f"{name}={text!r}: not a number") from None
        if not math.isfinite(number):
            raise FdsnQueryError(f"{name}={text!r}: not a finite number")
        low, high = RANGES.get(name, (-math.inf, math.inf))
        if not low <= number <= high:
            raise FdsnQueryError(f"{name}={text!r}: outside [{low:g}, {high:g}]")
        return number
    if kind == "xs:int":
        try:
            number = int(text)
        except ValueError:
            raise FdsnQueryError(f"{name}={text!r}: not an integer") from None
        if number < 1:
            raise FdsnQueryError(f"{name}={text!r}: must be 1 or more")
        return number
    if kind == "xs:boolean":
        if text.lower() not in ("true", "false"):
            raise FdsnQueryError(f"{name}={text!r}: use true or false")
        return text.lower() == "true"
    if not text:
        raise FdsnQueryError(f"{name} is empty")
    if name in ("eventid", "eventtype"):
        return tuple(part.strip() for part in text.split(",") if part.strip())
    return text


def _check(q: EventQuery) -> None:
    for low, high in [
        ("starttime", "endtime"),
        ("minlatitude", "maxlatitude"),
        ("minradius", "maxradius"),
        ("mindepth", "maxdepth"),
        ("minmagnitude", "maxmagnitude"),
    ]:
        a, b = getattr(q, low), getattr(q, high)
        if a is not None and b is not None and a > b:
            raise FdsnQueryError(f"{low} is after/above {high}")


def matches(q: EventQuery, s: EventSummary) -> bool:
    """Whether ``s`` passes every filter of ``q`` (not ``limit``, ``offset``, ``orderby``)."""
    checks = [
        q.starttime is None or s.time >= q.starttime,
        q.endtime is None or s.time <= q.endtime,
        q.minlatitude is None or s.latitude >= q.minlatitude,
        q.maxlatitude is None or s.latitude <= q.maxlatitude,
        _in_longitudes(q, s.longitude),
        q.mindepth is None or s.depth_km >= q.mindepth,
        q.maxdepth is None or s.depth_km <= q.maxdepth,
        q.updatedafter is None or (s.updated is not None and s.updated > q.updatedafter),
        not q.eventid or s.event_id in q.eventid or any(s.event_id == _bare_id(i) for i in q.eventid),
        not q.eventtype or any(fnmatch.fnmatch(EVENT_TYPE, t.lower()) for t in q.eventtype),
        q.catalog is None or q.catalog == CATALOG,
        q.contributor is None or q.contributor == CONTRIBUTOR,
    ]
    if not all(checks):
        return False
    if q.maxradius is not None or q.minradius is not None:  # around latitude/longitude, 0/0 by default
        distance = locations2degrees(q.latitude or 0.0, q.longitude or 0.0, s.latitude, s.longitude)
        if q.minradius is not None and distance < q.minradius:
            return False
        if q.maxradius is not None and distance > q.maxradius:
            return False
    if q.magnitudetype is not None and (s.magnitude_type or "").lower() != q.magnitudetype.lower():
        return False
    if q.minmagnitude is not None or q.maxmagnitude is not None:
        if s.magnitude is None:
            return False
        if q.minmagnitude is not None and s.magnitude < q.minmagnitude:
            return False
        if q.maxmagnitude is not None and s.magnitude > q.maxmagnitude:
            return False
    return True


def _in_longitudes(q: EventQuery, lon: float) -> bool:
    low, high = q.minlongitude, q.maxlongitude
    if low is not None and high is not None and low > high:  # the box crosses the antimeridian
        return lon >= low or lon <= high
    return (low is None or lon >= low) and (high is None or lon <= high)


def _bare_id(given: str) -> str:
    """``smi:seispick/event/ev-...`` (the QuakeML resource id) -> ``ev-...``."""
    return given.rsplit("/", 1)[-1]


def select(q: EventQuery, summaries: Iterable[EventSummary]) -> list[EventSummary]:
    """The events of ``summaries`` that match ``q``, in its order, from ``offset`` (1 = the first), at most
    ``limit``. Events without a magnitude come last when ordering by magnitude."""
    chosen = [s for s in summaries if matches(q, s)]
    if q.orderby.startswith("magnitude"):
        with_mag = [s for s in chosen if s.magnitude is not None]
        without = sorted((s for s in chosen if s.magnitude is None), key=lambda s: -s.time)
        with_mag.sort(key=lambda s: (s.magnitude, s.time), reverse=q.orderby == "magnitude")
        chosen = with_mag + without
    else:
        chosen.sort(key=lambda s: s.time, reverse=q.orderby == "time")
    chosen = chosen[q.offset - 1 :]
    return chosen if q.limit is None else chosen[: q.limit]


def summary_from_document(document: Mapping[str, Any], payload: Any = None) -> EventSummary | None:
    """An :class:`EventSummary` of a published event record as JSON (``event_document``): None when the
    record lacks a time or position."""
    try:
        return EventSummary(
            event_id=str(document["id"]),
            time=parse_time(str(document["origin_time"])),
            latitude=float(document["latitude"]),
            longitude=float(document["longitude"]),
            depth_km=float(document["depth_km"]),
            magnitude=_float_or_none(document.get("magnitude")),
            magnitude_type=document.get("magnitude_type") or None,
            updated=_time_or_none(document.get("published_at")),
            payload=payload,
        )
    except (KeyError, TypeError, ValueError):
        return None


def _float_or_none(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _time_or_none(value: Any) -> float | None:
    if value in (None, ""):
        return None
    try:
        return parse_time(str(value))
    except ValueError:
        return None


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")


_REGIONS: FlinnEngdahl | None = None


def region(latitude: float, longitude: float) -> str:
    """The Flinn-Engdahl region name (ObsPy's tables, offline)."""
    global _REGIONS
    if _REGIONS is None:
        _REGIONS = FlinnEngdahl()
    try:
        return _REGIONS.get_region(longitude, latitude)
    except Exception:  # noqa: BLE001 - a name is a courtesy, never a failure
        return ""


def text(summaries: Iterable[EventSummary]) -> str:
    """The fdsnws-event text format: a header line, then one ``|``-separated line per event."""
    lines = [TEXT_HEADER]
    for s in summaries:
        mag = "" if s.magnitude is None else f"{s.magnitude:.2f}"
        cells = [
            s.event_id,
            iso(s.time),
            f"{s.latitude:.5f}",
            f"{s.longitude:.5f}",
            f"{s.depth_km:.3f}",
            CONTRIBUTOR,
            CATALOG,
            CONTRIBUTOR,
            s.event_id,
            (s.magnitude_type or "") if s.magnitude is not None else "",
            mag,
            CONTRIBUTOR if s.magnitude is not None else "",
            region(s.latitude, s.longitude),
        ]
        lines.append("|".join(c.replace("|", "/") for c in cells))
    return "\n".join(lines) + "\n"


def listing(kind: str, names: Iterable[str]) -> str:
    """``/catalogs`` (kind Catalog) and ``/contributors`` (kind Contributor) as ObsPy and others read them."""
    items = "".join(f"<{kind}>{escape(n)}</{kind}>" for n in names)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<{kind}s>{items}</{kind}s>\n'


def wadl(base_url: str, max_limit: int) -> str:
    """application.wadl of the service at ``base_url`` (ending in ``/fdsnws/event/1/``)."""
    params = []
    for name, (kind, title) in PARAMETERS.items():
        attrs = f'name="{name}" style="query" type="{kind}"'
        if name in DEFAULTS:
            attrs += f" default={quoteattr(DEFAULTS[name])}"
        if name == "limit":
            title += f" (at most {max_limit})"
        options = "".join(f'<option value="{o}"/>' for o in OPTIONS.get(name, ()))
        params.append(f"<param {attrs}><doc title={quoteattr(title)}/>{options}</param>")
    body = "\n          ".join(params)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<application xmlns="http://wadl.dev.java.net/2009/02" xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <doc title="seispick fdsnws-event {SPEC_VERSION}"/>
  <resources base={quoteattr(base_url)}>
    <resource path="query">
      <method id="query" name="GET">
        <request>
          {body}
        </request>
        <response status="200">
          <representation mediaType="application/xml"/>
          <representation mediaType="text/plain"/>
        </response>
        <response status="204 400 404 413 503">
          <representation mediaType="text/plain"/>
        </response>
      </method>
    </resource>
    <resource path="version">
      <method name="GET"><response><representation mediaType="text/plain"/></response></method>
    </resource>
    <resource path="catalogs">
      <method name="GET"><response><representation mediaType="application/xml"/></response></method>
    </resource>
    <resource path="contributors">
      <method name="GET"><response><representation mediaType="application/xml"/></response></method>
    </resource>
    <resource path="application.wadl">
      <method name="GET"><response><representation mediaType="application/xml"/></response></method>
    </resource>
  </resources>
</application>
"""


STATUS_TEXT = {
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    413: "Request Entity Too Large",
    414: "Request-URI Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def error_document(code: int, detail: str, request_url: str, usage_url: str, when: datetime) -> str:
    """The plain-text error body of the FDSN web service specification."""
    return (
        f"Error {code}: {STATUS_TEXT.get(code, 'Error')}\n\n"
        f"{detail}\n\n"
        f"Usage details are available from {usage_url}\n\n"
        f"Request:\n{request_url}\n\n"
        f"Request Submitted:\n{when.astimezone(timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%f')}\n\n"
        f"Service version:\n{SPEC_VERSION}\n"
    )
