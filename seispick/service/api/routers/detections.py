"""Detections of the real-time job (ConvNetQuake, and the pickers' 1 - noise): recent ones, SSE, WebSocket.

The stream publishes every detection to the Redis stream ``seispick:detections`` (``streaming.detections_key``)
and to the live subscribers; these routes read them back as ``GET /v1/picks`` and ``/v1/stream/picks`` do
for picks, with a ``model`` filter to keep one model's (e.g. ``model=convnetquake-ta109c``).
"""

from __future__ import annotations

import contextlib
from typing import Annotated

from fastapi import APIRouter, Query, Request, WebSocket
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from seispick.service.api.responses import record_document, record_json
from seispick.service.api.routers import API_PREFIX
from seispick.service.api.routers.stream import NOT_CONFIGURED, RuntimeDep
from seispick.service.api.routers.subscriptions import BAD_QUERY, parse_since, sse_response, websocket_feed
from seispick.service.api.schemas import DetectionOut
from seispick.service.api.state import ServiceState
from seispick.service.publish.publisher import Record, Subscription

router = APIRouter(prefix=API_PREFIX, tags=["detections"], responses={**NOT_CONFIGURED, **BAD_QUERY})
ws_router = APIRouter(prefix=API_PREFIX, tags=["detections"])
SCAN = 10_000  # records looked at when a model filter thins them out

Network = Annotated[str | None, Query(max_length=64, description="Network code(s), comma-separated")]
Station = Annotated[str | None, Query(max_length=256, description="Station code(s), comma-separated")]
Model = Annotated[str | None, Query(max_length=256, description="Model name(s), comma-separated")]


class PublishedDetection(DetectionOut):
    """A detection of the real-time job (numbers as numbers)."""

    network: str
    station: str
    location: str
    published_at: str


class RecentDetectionsResponse(BaseModel):
    detections: list[PublishedDetection]
    count: int


def _models(model: str | None) -> set[str] | None:
    names = {m.strip() for m in (model or "").split(",") if m.strip()}
    return names or None


def _render(models: set[str] | None):
    def render(record: Record) -> str | None:
        if models is not None and record.fields.get("model") not in models:
            return None
        return record_json(record.fields)

    return render


@router.get(
    "/detections",
    summary="Recent detections from the real-time job, oldest first",
    response_model=RecentDetectionsResponse,
)
async def recent_detections(
    runtime: RuntimeDep,
    network: Network = None,
    station: Station = None,
    model: Model = None,
    since: Annotated[str | None, Query(description="Only those published at or after this UTC time")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> dict:
    when = parse_since(since)
    models = _models(model)
    fetch = SCAN if models else limit
    publisher = runtime.publisher
    records = None
    if publisher.redis_url:
        with contextlib.suppress(Exception):  # Redis down: answer from memory
            records = await publisher.recent_from_redis(network, station, None, when, fetch, kind="detection")
    if records is None:
        records = publisher.recent(network, station, None, when, fetch, kind="detection")
    if models is not None:
        records = [r for r in records if r.fields.get("model") in models]
        records = records[:limit] if when is not None else records[-limit:]
    return {"detections": [record_document(r.fields) for r in records], "count": len(records)}


@router.get(
    "/stream/detections",
    summary="Live detections as Server-Sent Events (event: detection, data: JSON)",
    response_class=StreamingResponse,
)
async def stream_detections(
    request: Request,
    runtime: RuntimeDep,
    network: Network = None,
    station: Station = None,
    model: Model = None,
) -> StreamingResponse:
    subscription = runtime.publisher.subscribe(network=network, station=station, kind="detection")
    return sse_response(request, subscription, _render(_models(model)), "seispick live detections")


@ws_router.websocket("/ws/detections")
async def websocket_detections(
    websocket: WebSocket,
    network: str | None = None,
    station: str | None = None,
    model: str | None = None,
    api_key: str | None = None,
) -> None:
    """Live detections as JSON text messages; filters as query parameters; key in X-API-Key or ?api_key=."""

    def subscribe(state: ServiceState) -> Subscription | None:
        if state.streaming is None:
            return None
        return state.streaming.publisher.subscribe(network=network, station=station, kind="detection")

    await websocket_feed(
        websocket, api_key, subscribe, _render(_models(model)), "real-time picking is not configured"
    )
