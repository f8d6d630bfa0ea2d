"""Picks from the real-time job: recent picks, station states, Server-Sent Events and a WebSocket.

Without ``status`` every route gives the final picks (and the live feeds detections) as it always did; with
``status`` (preliminary, confirmed, rejected, comma-separated) it gives the pick updates of those statuses
instead (records of kind ``pick_update``, each with ``status``, ``evaluation_mode`` and ``supersedes``).
``phase`` and ``status`` take only their known values (comma-separated); any other is a 422 naming the allowed ones
(on the WebSockets: a close with code 1008 and that reason), never an empty answer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, WebSocket, status
from fastapi.responses import StreamingResponse
from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

from seispick.service.api.dependencies import StateDep
from seispick.service.api.responses import record_document, record_json
from seispick.service.api.routers import API_PREFIX
from seispick.service.api.routers.subscriptions import parse_since, sse_response, websocket_feed
from seispick.service.api.schemas import RecentPicksResponse
from seispick.service.api.state import ServiceState
from seispick.service.publish.publisher import STATUSES, Record, Subscription
from seispick.service.stream.job import RealtimeJob

NOT_CONFIGURED = {
    404: {"description": "Real-time picking is not configured (no --demo, --seedlink or --watch)"}
}
router = APIRouter(prefix=API_PREFIX, tags=["stream"], responses=NOT_CONFIGURED)
ws_router = APIRouter(prefix=API_PREFIX, tags=["stream"])
LIVE_KINDS = "pick,detection"  # events have routes of their own (routers/events.py)
STATUS_HELP = (
    "Pick updates of these statuses instead of the final picks: preliminary, confirmed, rejected "
    "(comma-separated; QuakeML evaluationStatus)"
)
PHASES = ("P", "S")  # the phases picks have (a picker's labels but noise)


def choices_pattern(allowed: tuple[str, ...]) -> str:
    """The pattern of a comma-separated list of ``allowed`` values (documented in the OpenAPI schema)."""
    one = f"({'|'.join(allowed)})"
    return rf"^\s*{one}(\s*,\s*{one})*\s*$"


STATUS_PATTERN = choices_pattern(STATUSES)
MAX_CHOICES_LENGTH = 64


def comma_choices(name: str, allowed: tuple[str, ...]) -> Callable[[str | None], str | None]:
    """A check of a comma-separated query value: the values asked for, None for none; an unknown one is an error
    naming the allowed values (a 422 through FastAPI)."""

    def check(value: str | None) -> str | None:
        if value is not None and len(value) > MAX_CHOICES_LENGTH:
            raise PydanticCustomError(
                "string_too_long",
                "{name} is longer than {limit} characters",
                {"name": name, "limit": MAX_CHOICES_LENGTH},
            )
        wanted = [s.strip() for s in (value or "").split(",") if s.strip()]
        unknown = [s for s in wanted if s not in allowed]
        if unknown:
            raise PydanticCustomError(
                "enum",
                "unknown {name} {unknown}: use {allowed} (comma-separated)",
                {"name": name, "unknown": ", ".join(unknown), "allowed": ", ".join(allowed)},
            )
        return ",".join(wanted) or None

    return check


check_status = comma_choices("status", STATUSES)
check_phase = comma_choices("phase", PHASES)


def _choices_query(check: Callable, allowed: tuple[str, ...], description: str):
    """A comma-separated query parameter of ``allowed`` values: checked by ``check`` (so the 422 names them, not
    a pattern), the pattern shown in the schema."""
    extra = {"pattern": choices_pattern(allowed), "maxLength": MAX_CHOICES_LENGTH}
    return Annotated[
        str | None, AfterValidator(check), Query(description=description, json_schema_extra=extra)
    ]


StatusQuery = _choices_query(check_status, STATUSES, STATUS_HELP)
PhaseQuery = _choices_query(check_phase, PHASES, "P, S or both comma-separated")


def _parsed(check: Callable[[str | None], str | None], value: str | None) -> str | None:
    try:
        return check(value)
    except PydanticCustomError as error:
        raise HTTPException(422, error.message()) from None


def parse_status(value: str | None) -> str | None:
    """The statuses asked for (comma-separated), None for none; 422 naming an unknown one."""
    return _parsed(check_status, value)


def parse_phase(value: str | None) -> str | None:
    """The phases asked for (comma-separated), None for none; 422 naming an unknown one."""
    return _parsed(check_phase, value)


def _subscribe(runtime: RealtimeJob, network, station, phase, statuses: str | None) -> Subscription:
    """The final picks and detections, or with ``statuses`` the pick updates of those statuses."""
    if statuses is None:
        return runtime.publisher.subscribe(network=network, station=station, phase=phase, kind=LIVE_KINDS)
    return runtime.publisher.subscribe(
        network=network, station=station, phase=phase, kind="pick_update", status=statuses
    )


def get_runtime(state: StateDep) -> RealtimeJob:
    runtime = state.streaming
    if runtime is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            "real-time picking is not configured: start with --demo, --seedlink HOST:PORT or --watch DIR",
        )
    return runtime


RuntimeDep = Annotated[RealtimeJob, Depends(get_runtime)]


def _record_json(record: Record) -> str:
    return record_json(record.fields)


@router.get(
    "/picks",
    summary="Recent picks from the real-time job, oldest first (with status: pick updates)",
    response_model=RecentPicksResponse,
    response_model_exclude_none=True,
)
async def recent_picks(
    runtime: RuntimeDep,
    network: Annotated[
        str | None, Query(max_length=64, description="Network code(s), comma-separated")
    ] = None,
    station: Annotated[
        str | None, Query(max_length=256, description="Station code(s), comma-separated")
    ] = None,
    phase: PhaseQuery = None,
    since: Annotated[str | None, Query(description="Only picks published at or after this UTC time")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    status: StatusQuery = None,
) -> dict:
    when = parse_since(since)
    statuses = status  # checked and tidied by StatusQuery
    kind = "pick" if statuses is None else "pick_update"
    publisher = runtime.publisher
    records = None
    if publisher.redis_url:
        with contextlib.suppress(Exception):  # Redis down: answer from memory
            records = await publisher.recent_from_redis(
                network, station, phase, when, limit, kind=kind, status=statuses
            )
    if records is None:
        records = publisher.recent(network, station, phase, when, limit, kind=kind, status=statuses)
    return {"picks": [record_document(r.fields) for r in records], "count": len(records)}


@router.get(
    "/stations",
    summary="Per instrument: last sample, data latency, lag, gaps, counters, state (streaming, behind, silent)",
)
async def stations(runtime: RuntimeDep) -> dict:
    await runtime.refresh()  # picking processes of serve --workers N report theirs
    return {"stations": runtime.station_states(), **runtime.state()}


@router.get(
    "/stream/picks",
    summary="Live picks as Server-Sent Events (event: pick or detection, data: JSON; with status: pick_update)",
    response_class=StreamingResponse,
)
async def stream_picks(
    request: Request,
    runtime: RuntimeDep,
    network: Annotated[str | None, Query(max_length=64)] = None,
    station: Annotated[str | None, Query(max_length=256)] = None,
    phase: PhaseQuery = None,
    status: StatusQuery = None,
) -> StreamingResponse:
    subscription = _subscribe(runtime, network, station, phase, status)
    return sse_response(request, subscription, _record_json, "seispick live picks")


@ws_router.websocket("/ws/picks")
async def websocket_picks(
    websocket: WebSocket,
    network: str | None = None,
    station: str | None = None,
    phase: str | None = None,
    api_key: str | None = None,
    status: str | None = None,
) -> None:
    """Live picks as JSON text messages; filters (``status``: pick updates) as query parameters; key in
    X-API-Key or ?api_key=. An unknown status or phase closes the socket (1008) with the reason."""
    try:
        statuses = parse_status(status)
        phase = parse_phase(phase)
    except HTTPException as error:
        await websocket.close(code=1008, reason=str(error.detail))
        return

    def subscribe(state: ServiceState) -> Subscription | None:
        if state.streaming is None:
            return None
        return _subscribe(state.streaming, network, station, phase, statuses)

    await websocket_feed(websocket, api_key, subscribe, _record_json, "real-time picking is not configured")
