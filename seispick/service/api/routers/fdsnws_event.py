"""fdsnws-event 1: ``/fdsnws/event/1/query``, ``/version``, ``/application.wadl``, ``/catalogs``,
``/contributors`` over the service's events, for FDSN clients (ObsPy's ``Client(base_url)``, SeisComP's
``fdsnws`` consumers, web maps).

The events are those of ``GET /v1/events`` (:mod:`.events`, the same way of getting them): this process's own
association when it associates (the latest version of each event; QuakeML with picks and arrivals on
``includearrivals=true``), else the events stream another process fills in Redis (QuakeML of the records:
origin and magnitude, no arrivals). Parameters, selection and the text format: :mod:`seispick.events.fdsn`.
Errors are the specification's plain-text document: 400 for a bad parameter, 413 for a ``limit`` above
``events.keep`` (no answer holds more events than the service keeps), 404 naming the settings when the service
has no events to serve (association not configured: as ``GET /v1/events``), 503 when Redis does not answer; no
matching event is 204, or 404 with ``nodata=404``.
"""

from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter, HTTPException, Request, status
from starlette.responses import PlainTextResponse, Response

from seispick.events.fdsn import (
    CATALOG,
    CONTRIBUTOR,
    OPTIONS,
    PARAMETERS,
    RANGES,
    SPEC_VERSION,
    EventQuery,
    EventSummary,
    FdsnLimitError,
    FdsnQueryError,
    error_document,
    listing,
    parse_query,
    select,
    summary_from_document,
    text,
    wadl,
)
from seispick.events.quakeml import catalog_to_quakeml, documents_to_catalog, events_to_catalog
from seispick.service.api.dependencies import StateDep
from seispick.service.api.routers.events import _from_redis, event_document, latest_versions
from seispick.service.api.state import ServiceState

PREFIX = "/fdsnws/event/1"
router = APIRouter(prefix=PREFIX, tags=["fdsnws-event"])
QUAKEML = "application/xml"
TEXT = "text/plain; charset=utf-8"
ERROR = {"content": {"text/plain": {}}}  # the FDSN error document


class XmlResponse(Response):
    media_type = QUAKEML


def _openapi_parameters() -> list[dict]:
    """The query parameters for the OpenAPI document (the route reads them itself: FDSN errors, aliases)."""
    kinds = {"xs:dateTime": "string", "xs:double": "number", "xs:int": "integer", "xs:boolean": "boolean"}
    out = []
    for name, (kind, description) in PARAMETERS.items():
        schema: dict = {"type": kinds.get(kind, "string")}
        if kind == "xs:dateTime":
            schema["format"] = "date-time"
        if name in OPTIONS:
            schema = {"type": "integer" if name == "nodata" else "string", "enum": list(OPTIONS[name])}
            if name == "nodata":
                schema["enum"] = [int(v) for v in OPTIONS[name]]
        if name in RANGES:
            schema["minimum"], schema["maximum"] = RANGES[name]
        if kind == "xs:int" and name not in OPTIONS:
            schema["minimum"] = 1
        out.append(
            {"name": name, "in": "query", "required": False, "description": description, "schema": schema}
        )
    return out


NOT_CONFIGURED = (
    "this service has no events: association is not configured (SEISPICK_EVENTS__STATIONS, or --stations "
    "FILE) and no Redis events stream is read (`seispick associate --follow REDIS_URL` with the same Redis)"
)


def _base(request: Request) -> str:
    return f"{str(request.base_url).rstrip('/')}{PREFIX}/"


def fdsn_error(request: Request, code: int, detail: str) -> Response:
    """The specification's error document with status ``code``."""
    body = error_document(code, detail, str(request.url), _base(request), datetime.now(timezone.utc))
    return Response(body, status_code=code, media_type=TEXT)


async def _summaries(state: ServiceState) -> list[EventSummary]:
    """Every event the service holds, with its Event (live association) or its record (Redis) as payload."""
    live = state.events
    if live is not None:
        stored = live.store.select(None, 0, len(live.store))
        found = [summary_from_document(event_document(s.fields), s.event) for s in stored]
        return [s for s in found if s is not None]
    runtime = state.streaming
    if runtime is None or not runtime.publisher.redis_url:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_CONFIGURED)
    documents = [event_document(r.fields) for r in latest_versions(await _from_redis(state, None)).values()]
    # a duplicate merged into another event is out of the catalog, as out of the live store
    found = [summary_from_document(d, d) for d in documents if not d.get("superseded_by")]
    return [s for s in found if s is not None]


def _quakeml(query: EventQuery, chosen: list[EventSummary]) -> str:
    if all(isinstance(s.payload, dict) for s in chosen):  # records read from Redis
        return catalog_to_quakeml(documents_to_catalog([s.payload for s in chosen]))
    return catalog_to_quakeml(events_to_catalog([s.payload for s in chosen], arrivals=query.includearrivals))


@router.get(
    "/query",
    summary="Events by time, region, depth, magnitude (FDSN fdsnws-event 1.2: QuakeML 1.2 or text)",
    response_class=XmlResponse,
    openapi_extra={"parameters": _openapi_parameters()},
    responses={
        200: {"content": {"text/plain": {}}, "description": "QuakeML 1.2 (format=xml) or text (format=text)"},
        204: {"description": "No matching event (nodata=204, the default)"},
        400: {**ERROR, "description": "A bad parameter"},
        404: {
            **ERROR,
            "description": "No matching event (nodata=404), or no events (association not configured)",
        },
        413: {**ERROR, "description": "limit above events.keep"},
        503: {**ERROR, "description": "Redis did not answer"},
    },
)
async def query(request: Request, state: StateDep) -> Response:
    try:
        q = parse_query(request.query_params.multi_items(), max_limit=state.settings.events.keep)
    except FdsnLimitError as exc:
        return fdsn_error(request, 413, str(exc))
    except FdsnQueryError as exc:
        return fdsn_error(request, 400, str(exc))
    try:
        summaries = await _summaries(state)
    except HTTPException as exc:
        return fdsn_error(request, exc.status_code, str(exc.detail))
    chosen = select(q, summaries)
    if not chosen:
        if q.nodata == 404:
            return fdsn_error(request, 404, "no event matches the request")
        return Response(status_code=204)
    if q.format == "text":
        return Response(text(chosen), media_type=TEXT)
    return Response(_quakeml(q, chosen), media_type=QUAKEML)


@router.get(
    "/",
    summary="What this fdsnws-event service is, and its parameters (plain text)",
    response_class=PlainTextResponse,
)
async def index(request: Request) -> Response:
    base = _base(request)
    lines = [
        f"seispick fdsnws-event {SPEC_VERSION}: the events this service associates or reads from Redis",
        "",
        f"{base}query?[parameters]  QuakeML 1.2 (format=xml) or text (format=text)",
        f"{base}version  {base}application.wadl  {base}catalogs  {base}contributors",
        "",
        *(f"{name:22}{description}" for name, (_, description) in PARAMETERS.items()),
    ]
    return Response("\n".join(lines) + "\n", media_type=TEXT)


@router.get(
    "/version",
    summary="The fdsnws-event version (SpecMajor.SpecMinor.Implementation)",
    response_class=PlainTextResponse,
)
async def version() -> Response:
    return Response(SPEC_VERSION, media_type=TEXT)


@router.get(
    "/application.wadl",
    summary="The service's parameters as WADL (read by FDSN clients at start)",
    response_class=XmlResponse,
)
async def application_wadl(request: Request, state: StateDep) -> Response:
    return Response(wadl(_base(request), state.settings.events.keep), media_type="application/xml")


@router.get("/catalogs", summary="The catalogs served (seispick)", response_class=XmlResponse)
async def catalogs() -> Response:
    return Response(listing("Catalog", [CATALOG]), media_type="application/xml")


@router.get("/contributors", summary="The contributors served (seispick)", response_class=XmlResponse)
async def contributors() -> Response:
    return Response(listing("Contributor", [CONTRIBUTOR]), media_type="application/xml")
