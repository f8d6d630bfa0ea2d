"""Prometheus metrics of one app, on the app's own CollectorRegistry (so several apps can coexist in tests).

Counters and histograms export no ``_created`` series (a timestamp per labelled child that no dashboard or alert
reads: a tenth of /metrics): ``disable_created_metrics`` at import, for the whole process.
"""

from __future__ import annotations

import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from seispick.models.inference import OnnxModel

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
INFERENCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
UNMATCHED_ROUTE = "unmatched"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

disable_created_metrics()


class ServiceMetrics:
    """The metric objects of one service instance."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # process_* (resident memory, CPU seconds, open fds; Linux /proc) and python_info of this process
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.http_requests = Counter(
            "seispick_http_requests", "HTTP requests served", ["route", "method", "status"], registry=r
        )
        self.http_duration = Histogram(
            "seispick_http_request_duration_seconds",
            "HTTP request latency",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "seispick_inference_batch_size",
            "Windows per onnxruntime call",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.inference_duration = Histogram(
            "seispick_inference_duration_seconds",
            "Duration of one onnxruntime call",
            ["model"],
            buckets=INFERENCE_BUCKETS,
            registry=r,
        )
        self.inference_calls = Counter("seispick_inference_calls", "onnxruntime calls", ["model"], registry=r)
        self.queue_depth = Gauge(
            "seispick_batcher_queue_depth", "Windows waiting for inference", ["model"], registry=r
        )
        self.windows_processed = Counter(
            "seispick_windows_processed", "Windows run through a model", ["model"], registry=r
        )
        self.picks = Counter(  # streamed picks: seispick_published_total{kind="pick"} (job_metrics)
            "seispick_picks", "Picks returned by POST /v1/picks (HTTP only)", ["phase", "model"], registry=r
        )
        self.input_errors = Counter(
            "seispick_input_errors", "Requests rejected for their input", ["kind"], registry=r
        )
        self.model_info = Gauge(
            "seispick_model_info", "Loaded models (value 1)", ["name", "version", "sha256"], registry=r
        )

        self.stream_role = Gauge(
            "seispick_model_stream_role",
            "The stream's pickers by role (value 1): live (published, associated) or shadow (compared only); "
            "changed at run time by POST /v1/models/{name}/promote",
            ["name", "role"],
            registry=r,
        )

    def set_roles(self, live: list[str], shadow: list[str]) -> None:
        self.stream_role.clear()
        for role, names in (("live", live), ("shadow", shadow)):
            for name in names:
                self.stream_role.labels(name, role).set(1)

    def set_models(self, models: list[OnnxModel]) -> None:
        self.model_info.clear()
        for model in models:
            self.model_info.labels(model.name, model.card.version, model.sha256).set(1)

    def record_inference(self, model: str, windows: int, seconds: float) -> None:
        self.inference_calls.labels(model).inc()
        self.batch_size.labels(model).observe(windows)
        self.inference_duration.labels(model).observe(seconds)
        self.windows_processed.labels(model).inc(windows)

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class HttpMetricsMiddleware:
    """Counts and times HTTP requests by route template (e.g. ``/v1/models/{name}``), never the raw path."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        before = dict(scope)  # routing updates ``scope`` in place (a mount's root_path)

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or _route_template(before)
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
            self.metrics.http_requests.labels(route, method, str(status)).inc()
            self.metrics.http_duration.labels(route, method).observe(time.perf_counter() - start)


def _route_template(scope: Scope) -> str:
    """The path template of a plain Starlette route or mount that set no ``scope["route"]`` (FastAPI's own
    ``/openapi.json``, the docs' ``/static`` assets), else ``unmatched``."""
    app = scope.get("app")
    for route in getattr(getattr(app, "router", None), "routes", ()):
        match, _ = route.matches(scope)
        if match == Match.FULL:
            path = getattr(route, "path", None)
            if path is not None and hasattr(route, "routes"):  # a mount: its prefix, not the file
                return path + "/{path}"
            return path or UNMATCHED_ROUTE
    return UNMATCHED_ROUTE
