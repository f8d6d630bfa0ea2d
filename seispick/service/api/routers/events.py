"""Located events: ``GET /v1/events`` (JSON, QuakeML or SCML), ``GET /v1/events/{id}``, SSE and a WebSocket.

Where this process associates its picks (``events.stations``, or ``--demo``) the answers come from its own
events (the latest version of each, as published). Where it does not but publishes to Redis, ``GET`` reads
the events stream (``seispick:events``) another process fills, e.g. the one ``seispick associate --follow
REDIS_URL`` of a sharded deployment: JSON then, since QuakeML is built from the events' picks, which only the
associating process holds (SCML, SeisComP's XML for ``scdispatch``, likewise). Every JSON form (GET, SSE,
WebSocket) is the published record with numbers as numbers, ``pick_ids`` and ``arrivals`` as lists.
"""

from __future__ import annotations

import contextlib
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, WebSocket, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.responses import Response

from seispick.events.quakeml import events_to_quakeml, events_to_scml
from seispick.service.api.dependencies import StateDep
from seispick.service.api.routers import API_PREFIX
from seispick.service.api.routers.subscriptions import BAD_QUERY, parse_since, sse_response, websocket_feed
from seispick.service.api.state import ServiceState
from seispick.service.publish.publisher import PickPublisher, Record, Subscription

NOT_CONFIGURED_TEXT = (
    "association is not configured: start the stream with SEISPICK_EVENTS__STATIONS (or --stations FILE), "
    "or run `seispick associate --follow REDIS_URL` and give this service the same Redis"
)
router = APIRouter(
    prefix=API_PREFIX,
    tags=["events"],
    responses={404: {"description": "Unknown event, or association not configured"}, **BAD_QUERY},
)
ws_router = APIRouter(prefix=API_PREFIX, tags=["events"])
SCAN = 10_000  # event versions read from Redis for one answer
INTEGERS = ("version", "n_picks", "n_p", "n_s", "n_stations", "magnitude_stations")
FLOATS = (
    "latitude",
    "longitude",
    "depth_km",
    "rms_s",
    "azimuthal_gap_deg",
    "time_error_s",
    "horizontal_error_km",
    "depth_error_km",
    "magnitude",
)
QUAKEML = "application/xml"

MinStations = Annotated[
    int, Query(ge=0, le=100_000, description="Only events with at least this many stations")
]
Format = Annotated[
    Literal["json", "quakeml", "scml"], Query(description="json, QuakeML 1.2, or SCML (SeisComP XML 0.12)")
]
WRITERS = {"quakeml": events_to_quakeml, "scml": events_to_scml}


class ArrivalOut(BaseModel):
    pick_id: str = Field(description="The pick's id, as in seispick:picks, GET /v1/picks and QuakeML")
    station: str
    phase: str
    residual_s: float


class EventOut(BaseModel):
    """The latest version of an event, as published to ``seispick:events`` (numbers as numbers)."""

    id: str = Field(description="ev- + 16 hex of sha1 of the event's first pick id: stable over versions")
    version: int = Field(description="1 when declared, + 1 each time picks join or the origin moves")
    origin_time: str
    latitude: float
    longitude: float
    depth_km: float
    n_picks: int
    n_p: int
    n_s: int
    n_stations: int
    rms_s: float
    azimuthal_gap_deg: float
    time_error_s: float | None = None
    horizontal_error_km: float | None = None
    depth_error_km: float | None = None
    magnitude: float | None = None
    magnitude_type: str | None = None
    magnitude_stations: int | None = None
    pick_ids: list[str]
    arrivals: list[ArrivalOut]
    evaluation_status: Literal["preliminary", "final", "rejected"] = Field(
        default="preliminary",
        description="QuakeML evaluationStatus: preliminary while open, final once out of the live window, "
        "rejected when merged into another event (superseded_by) or left without enough picks",
    )
    superseded_by: str | None = Field(default=None, description="The id that carries a merged event on")
    published_at: str


class EventsResponse(BaseModel):
    events: list[EventOut]
    count: int
    source: Literal["associator", "redis"] = Field(
        description="associator: this process's own association; redis: the events stream another fills"
    )
    association: dict[str, Any] | None = Field(
        default=None, description="Picks received, associated and unassociated (by reason), events declared"
    )


def event_document(fields: dict[str, str]) -> dict[str, Any]:
    """A published event record as JSON: numbers as numbers (empty as null), pick ids and arrivals as lists."""
    out: dict[str, Any] = dict(fields)
    for name, kind in [*((n, int) for n in INTEGERS), *((n, float) for n in FLOATS)]:
        value = out.get(name)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):  # not a number: left as the string it is
                out[name] = kind(value) if value not in ("", "None") else None
    out["magnitude_type"] = out.get("magnitude_type") or None
    out["superseded_by"] = out.get("superseded_by") or None
    out["pick_ids"] = [p for p in out.get("pick_ids", "").split(",") if p]
    arrivals = json.loads(out.get("arrivals") or "[]")
    out["arrivals"] = [
        {"pick_id": a[0], "station": a[1], "phase": a[2], "residual_s": a[3]} for a in arrivals
    ]
    return out


def latest_versions(records: list[Record]) -> dict[str, Record]:
    """The highest version of each event id among ``records``."""
    latest: dict[str, Record] = {}
    for record in records:
        have = latest.get(record.id)
        if have is None or int(record.fields.get("version", 0)) >= int(have.fields.get("version", 0)):
            latest[record.id] = record
    return latest


def _publisher(state: ServiceState) -> PickPublisher:
    runtime = state.streaming
    if runtime is None or not runtime.publisher.redis_url:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_CONFIGURED_TEXT)
    return runtime.publisher


async def _from_redis(state: ServiceState, since) -> list[Record]:
    publisher = _publisher(state)
    try:
        return await publisher.recent_from_redis(since=since, limit=SCAN, kind="event")
    except Exception as exc:  # noqa: BLE001 - Redis down or refusing: say so
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"Redis did not answer: {exc}") from exc


def _no_quakeml() -> HTTPException:
    return HTTPException(
        status.HTTP_409_CONFLICT,
        "QuakeML is built by the process that associates (it holds the events' picks); this one reads the "
        "events of another from Redis: ask for format=json, or QuakeML from the associating process",
    )


@router.get(
    "/events",
    summary="Located events (latest version of each), by origin time",
    response_model=EventsResponse,
    responses={
        200: {"content": {QUAKEML: {}}},
        409: {"description": "QuakeML asked of a process that does not associate"},
    },
)
async def list_events(
    state: StateDep,
    since: Annotated[
        str | None, Query(description="Only events whose latest version was published at or after this time")
    ] = None,
    min_stations: MinStations = 0,
    limit: Annotated[int, Query(ge=1, le=10_000, description="The latest events by origin time")] = 100,
    format: Format = "json",
) -> Any:
    when = parse_since(since)
    live = state.events
    if live is not None:
        chosen = live.store.select(None if when is None else when.timestamp, min_stations, limit)
        if format in WRITERS:
            return Response(WRITERS[format]([s.event for s in chosen]), media_type=QUAKEML)
        documents = [event_document(s.fields) for s in chosen]
        return {
            "events": documents,
            "count": len(documents),
            "source": "associator",
            "association": live.state(),
        }
    if format in WRITERS:
        _publisher(state)  # 404 first when there is nothing to read at all
        raise _no_quakeml()
    latest = latest_versions(await _from_redis(state, when)).values()
    documents = [event_document(r.fields) for r in latest]
    documents = [d for d in documents if (d.get("n_stations") or 0) >= min_stations]
    documents.sort(key=lambda d: d.get("origin_time", ""))
    documents = documents[-limit:]
    return {"events": documents, "count": len(documents), "source": "redis"}


@router.get(
    "/events/{event_id}",
    summary="One event, its latest version (JSON or QuakeML)",
    response_model=EventOut,
    responses={
        200: {"content": {QUAKEML: {}}},
        409: {"description": "QuakeML asked of a process that does not associate"},
    },
)
async def get_event(
    state: StateDep,
    event_id: Annotated[str, Path(max_length=64, description="The event's id (ev-...)")],
    format: Format = "json",
) -> Any:
    live = state.events
    if live is not None:
        stored = live.store.get(event_id)
        if stored is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"no event {event_id!r} (kept: the latest {live.store.keep})"
            )
        if format in WRITERS:
            return Response(WRITERS[format]([stored.event]), media_type=QUAKEML)
        return event_document(stored.fields)
    if format in WRITERS:
        _publisher(state)
        raise _no_quakeml()
    records = [r for r in await _from_redis(state, None) if r.id == event_id]
    if not records:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"no event {event_id!r} among the last {SCAN} versions"
        )
    return event_document(latest_versions(records)[event_id].fields)


def _render(min_stations: int):
    def render(record: Record) -> str | None:
        document = event_document(record.fields)
        if (document.get("n_stations") or 0) < min_stations:
            return None
        return json.dumps(document, separators=(",", ":"))

    return render


@router.get(
    "/stream/events",
    summary="Event versions as Server-Sent Events as they are published (event: event, data: JSON)",
    response_class=StreamingResponse,
)
async def stream_events(
    request: Request, state: StateDep, min_stations: MinStations = 0
) -> StreamingResponse:
    if state.events is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_CONFIGURED_TEXT)
    subscription = state.events.publisher.subscribe(kind="event")
    return sse_response(request, subscription, _render(min_stations), "seispick live events")


@ws_router.websocket("/ws/events")
async def websocket_events(websocket: WebSocket, min_stations: int = 0, api_key: str | None = None) -> None:
    """Event versions as JSON text messages as they are published; key in X-API-Key or ?api_key=."""

    def subscribe(state: ServiceState) -> Subscription | None:
        return None if state.events is None else state.events.publisher.subscribe(kind="event")

    await websocket_feed(
        websocket, api_key, subscribe, _render(min_stations), "association is not configured"
    )
