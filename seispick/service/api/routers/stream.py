"""Picks from the real-time job: recent picks, station states, Server-Sent Events and a WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, WebSocket, WebSocketDisconnect, status
from fastapi.responses import StreamingResponse
from obspy import UTCDateTime

from seispick.service.api.dependencies import API_KEY_HEADER, StateDep
from seispick.service.api.responses import record_document, record_json
from seispick.service.api.routers import API_PREFIX
from seispick.service.api.schemas import RecentPicksResponse
from seispick.service.api.state import ServiceState

NOT_CONFIGURED = {
    404: {"description": "Real-time picking is not configured (no --demo, --seedlink or --watch)"}
}
router = APIRouter(prefix=API_PREFIX, tags=["stream"], responses=NOT_CONFIGURED)
ws_router = APIRouter(prefix=API_PREFIX, tags=["stream"])
HEARTBEAT_S = 15.0


def get_runtime(state: StateDep):
    runtime = state.streaming
    if runtime is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            "real-time picking is not configured: start with --demo, --seedlink HOST:PORT or --watch DIR",
        )
    return runtime


RuntimeDep = Annotated[object, Depends(get_runtime)]


def _since(value: str | None) -> UTCDateTime | None:
    if value is None:
        return None
    try:
        return UTCDateTime(value)
    except Exception as exc:  # noqa: BLE001 - ObsPy raises several types for bad times
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, f"since: not a time: {value!r}") from exc


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
    when = _since(since)
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
    return {"stations": runtime.picker.station_states(), **runtime.state()}


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
    subscription = runtime.publisher.subscribe(network=network, station=station, phase=phase)

    async def events():
        try:
            yield ": seispick live picks\n\n"
            while not await request.is_disconnected():
                try:
                    record = await asyncio.wait_for(subscription.get(), HEARTBEAT_S)
                except asyncio.TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield f"id: {record.id}\nevent: {record.kind}\ndata: {record_json(record.fields)}\n\n"
        finally:
            subscription.close()

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@ws_router.websocket("/ws/picks")
async def websocket_picks(
    websocket: WebSocket,
    network: str | None = None,
    station: str | None = None,
    phase: str | None = None,
    api_key: str | None = None,
) -> None:
    """Live picks as JSON text messages; filters as query parameters; key in X-API-Key or ?api_key=."""
    state: ServiceState = websocket.app.state.seispick
    if not _key_ok(state, websocket.headers.get(API_KEY_HEADER) or api_key):
        await websocket.close(code=status.WS_1008_POLICY_VIOLATION, reason="missing or invalid API key")
        return
    if state.streaming is None:
        await websocket.close(
            code=status.WS_1011_INTERNAL_ERROR, reason="real-time picking is not configured"
        )
        return
    await websocket.accept()
    subscription = state.streaming.publisher.subscribe(network=network, station=station, phase=phase)
    try:
        while True:
            record = await subscription.get()
            await websocket.send_text(record_json(record.fields))
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        subscription.close()


def _key_ok(state: ServiceState, key: str | None) -> bool:
    keys = state.settings.api_keys
    if not keys:
        return True
    return bool(key) and any(hmac.compare_digest(key.encode(), k.get_secret_value().encode()) for k in keys)
