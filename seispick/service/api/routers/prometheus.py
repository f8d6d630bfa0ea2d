"""``GET /metrics``: the app's Prometheus registry in the text exposition format."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from seispick.service.api.dependencies import StateDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(state: StateDep) -> Response:
    if state.streaming is not None:
        await state.streaming.refresh()  # picking processes of serve --workers N report their state
    body, content_type = state.metrics.exposition()
    return Response(content=body, media_type=content_type)
