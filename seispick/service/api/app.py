"""The app factory, its lifespan (models, batcher, Redis client) and ``run_server`` for ``seispick serve``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from redis.asyncio import Redis

from seispick import __version__
from seispick.models.registry import ModelRegistry
from seispick.service.api.dependencies import require_api_key
from seispick.service.api.docs import install_docs
from seispick.service.api.handlers import install_handlers
from seispick.service.api.routers import detections, events, health, models, picks, stream
from seispick.service.api.routers import prometheus as metrics
from seispick.service.api.schemas import WaveformJsonBody
from seispick.service.api.state import ServiceState, load_models
from seispick.service.app_metrics import HttpMetricsMiddleware, ServiceMetrics
from seispick.service.batcher import MicroBatcher
from seispick.service.settings import Settings, model_warnings
from seispick.service.stream.association import start_events
from seispick.service.stream.job_metrics import StreamMetrics
from seispick.service.stream.runtime import StreamingRuntime
from seispick.service.stream.worker_pool import WorkerPool

log = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the registry and models, start the batcher and the Redis client; undo it all on shutdown."""
    state: ServiceState = app.state.seispick
    settings = state.settings
    state.registry = await asyncio.to_thread(ModelRegistry, settings.model_dirs or None)
    state.models = await asyncio.to_thread(load_models, state.registry, settings)
    state.metrics.set_models(list(state.models.values()))
    state.batcher = MicroBatcher(state.models, settings.batching, state.metrics)
    await state.batcher.start()
    if settings.redis_url:
        timeout = settings.redis_timeout_s
        state.redis = Redis.from_url(
            settings.redis_url, socket_connect_timeout=timeout, socket_timeout=timeout
        )
    if StreamingRuntime.wanted(settings):
        model = [state.model(name) for name in settings.streaming.stream_models(settings.default_model)]
        if settings.streaming.worker_count() > 1:  # picking processes of their own, supervised from here
            state.streaming = WorkerPool(settings, app.state.stream_metrics, state.metrics)
        else:
            state.streaming = StreamingRuntime(
                settings, model, state.batcher.predict, app.state.stream_metrics
            )
        state.streaming.selection.warnings += model_warnings(settings, state.registry.names())
        # association follows the publisher's picks from the first one (subscribed before sources start)
        state.events = await start_events(
            settings, state.streaming.publisher, state.metrics.registry, state.models
        )
        await state.streaming.start()
    log.info("serving models %s (default %s)", ", ".join(state.models), settings.default_model)
    try:
        yield
    finally:
        if state.events is not None:  # its last versions go out before the publisher stops
            await state.events.stop()
            state.events = None
        if state.streaming is not None:
            await state.streaming.stop()
            state.streaming = None
        await state.batcher.stop()
        if state.redis is not None:
            await state.redis.aclose()
            state.redis = None
        state.models = {}


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new service app; models load when its lifespan starts."""
    settings = settings or Settings()
    service_metrics = ServiceMetrics()
    app = FastAPI(
        title="seispick",
        version=__version__,
        summary="Seismic phase picking (PhaseNet in ONNX) with cross-request micro-batching",
        lifespan=lifespan,
        docs_url=None,  # served by install_docs from local assets (no CDN)
        redoc_url=None,
    )
    install_docs(app)
    app.state.seispick = ServiceState(settings=settings, metrics=service_metrics)
    app.state.stream_metrics = StreamMetrics(service_metrics.registry)
    install_handlers(app, service_metrics)
    # Only with keys configured does the API (and its OpenAPI document) ask for X-API-Key.
    secured = [Depends(require_api_key)] if settings.api_keys else []
    app.include_router(picks.router, dependencies=secured)
    app.include_router(models.router, dependencies=secured)
    app.include_router(stream.router, dependencies=secured)
    app.include_router(stream.ws_router)  # checks the key itself (header or ?api_key=)
    for router in (detections, events):
        app.include_router(router.router, dependencies=secured)
        app.include_router(router.ws_router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "X-API-Key"],
        )
    app.add_middleware(HttpMetricsMiddleware, metrics=service_metrics)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict:
    """FastAPI's schema plus the JSON waveform body, which the picks route reads by hand."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes, openapi_version="3.1.0"
    )
    body = WaveformJsonBody.model_json_schema(ref_template="#/components/schemas/{model}")
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(body.pop("$defs", {}))
    components["WaveformJsonBody"] = body
    app.openapi_schema = schema
    return schema


def run_server(settings: Settings | None = None) -> None:
    """Serve the app with uvicorn until interrupted (``seispick serve``)."""
    settings = settings or Settings()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=10,
    )
