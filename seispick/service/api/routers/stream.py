"""Picks from the real-time job: recent picks, station states, Server-Sent Events and a WebSocket.

Without ``status`` every route gives the final picks (and the live feeds detections) as it always did; with
``status`` (preliminary, confirmed, rejected, comma-separated) it gives the pick updates of those statuses
instead (records of kind ``pick_update``, each with ``status``, ``evaluation_mode`` and ``supersedes``).
"""

from __future__ import annotations

import contextlib
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, WebSocket, status
from fastapi.responses import StreamingResponse

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
_ONE_STATUS = "(preliminary|confirmed|rejected)"
STATUS_PATTERN = rf"^\s*{_ONE_STATUS}(\s*,\s*{_ONE_STATUS})*\s*$"
StatusQuery = Annotated[str | None, Query(max_length=64, pattern=STATUS_PATTERN, description=STATUS_HELP)]


def parse_status(value: str | None) -> str | None:
    """The statuses asked for (comma-separated), None for none; 422 naming an unknown one."""
    if value is None or not value.strip():
        return None
    wanted = [s.strip() for s in value.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in STATUSES]
    if unknown:
        raise HTTPException(
            422,
            f"unknown status {', '.join(unknown)}: use {', '.join(STATUSES)} (comma-separated)",
        )
    return ",".join(wanted)


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
    phase: Annotated[str | None, Query(max_length=16, description="P, S or both comma-separated")] = None,
    since: Annotated[str | None, Query(description="Only picks published at or after this UTC time")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    status: StatusQuery = None,
) -> dict:
    when = parse_since(since)
    statuses = parse_status(status)
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
    phase: Annotated[str | None, Query(max_length=16)] = None,
    status: StatusQuery = None,
) -> StreamingResponse:
    subscription = _subscribe(runtime, network, station, phase, parse_status(status))
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
    X-API-Key or ?api_key=. An unknown status closes the socket (1008) with the reason."""
    try:
        statuses = parse_status(status)
    except HTTPException as error:
        await websocket.close(code=1008, reason=str(error.detail))
        return

    def subscribe(state: ServiceState) -> Subscription | None:
        if state.streaming is None:
            return None
        return _subscribe(state.streaming, network, station, phase, statuses)

    await websocket_feed(websocket, api_key, subscribe, _record_json, "real-time picking is not configured")
