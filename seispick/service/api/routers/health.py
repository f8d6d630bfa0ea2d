"""``/healthz`` (the process answers) and ``/readyz`` (models loaded, Redis reachable when configured, and the
real-time stream not stuck behind)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from seispick.service.api.dependencies import StateDep
from seispick.service.api.schemas import ReadyResponse
from seispick.service.api.state import ServiceState

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process serves requests")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    summary="Readiness: models loaded, Redis reachable (when configured), the stream keeping up (when running)",
    responses={503: {"model": ReadyResponse, "description": "Not ready"}},
)
async def readyz(state: StateDep) -> JSONResponse:
    checks = {"models": _models_check(state)}
    if state.settings.redis_url:
        checks["redis"] = await _redis_check(state)
    if state.streaming is not None:
        checks["stream"] = state.streaming.unready_reason() or "ok"
    ready = all(value == "ok" for value in checks.values())
    body = ReadyResponse(ready=ready, checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


def _models_check(state: ServiceState) -> str:
    if not state.ready:
        return f"not loaded: default model {state.settings.default_model} or the batcher is not up"
    return "ok"


async def _redis_check(state: ServiceState) -> str:
    if state.redis is None:
        return "no client"
    timeout = state.settings.redis_timeout_s
    try:
        await asyncio.wait_for(state.redis.ping(), timeout)
    except asyncio.TimeoutError:
        return f"unreachable: no answer within {timeout:g} s"
    except Exception as error:  # connection refused, auth, DNS...
        return f"unreachable: {type(error).__name__}: {str(error)[:200]}"
    return "ok"
