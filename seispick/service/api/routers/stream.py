"""Picks from the real-time job: recent picks, station states, Server-Sent Events and a WebSocket."""

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
from seispick.service.publish.publisher import Record, Subscription
from seispick.service.stream.job import RealtimeJob

NOT_CONFIGURED = {
    404: {"description": "Real-time picking is not configured (no --demo, --seedlink or --watch)"}
}
router = APIRouter(prefix=API_PREFIX, tags=["stream"], responses=NOT_CONFIGURED)
ws_router = APIRouter(prefix=API_PREFIX, tags=["stream"])
LIVE_KINDS = "pick,detection"  # events have routes of their own (routers/events.py)


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
    summary="Recent picks from the real-time job, oldest first",
    response_model=RecentPicksResponse,
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
) -> dict:
    when = parse_since(since)
    publisher = runtime.publisher
    records = None
    if publisher.redis_url:
        with contextlib.suppress(Exception):  # Redis down: answer from memory
            records = await publisher.recent_from_redis(network, station, phase, when, limit)
    if records is None:
        records = publisher.recent(network, station, phase, when, limit)
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
    summary="Live picks as Server-Sent Events (event: pick or detection, data: JSON)",
    response_class=StreamingResponse,
)
async def stream_picks(
    request: Request,
    runtime: RuntimeDep,
    network: Annotated[str | None, Query(max_length=64)] = None,
    station: Annotated[str | None, Query(max_length=256)] = None,
    phase: Annotated[str | None, Query(max_length=16)] = None,
) -> StreamingResponse:
    subscription = runtime.publisher.subscribe(network=network, station=station, phase=phase, kind=LIVE_KINDS)
    return sse_response(request, subscription, _record_json, "seispick live picks")


@ws_router.websocket("/ws/picks")
async def websocket_picks(
    websocket: WebSocket,
    network: str | None = None,
    station: str | None = None,
    phase: str | None = None,
    api_key: str | None = None,
) -> None:
    """Live picks as JSON text messages; filters as query parameters; key in X-API-Key or ?api_key=."""

    def subscribe(state: ServiceState) -> Subscription | None:
        if state.streaming is None:
            return None
        return state.streaming.publisher.subscribe(
            network=network, station=station, phase=phase, kind=LIVE_KINDS
        )

    await websocket_feed(websocket, api_key, subscribe, _record_json, "real-time picking is not configured")
