"""Exception handlers: every client mistake becomes a 4xx with ``{"detail": message}``, counted by kind.

Anything else is caught by ``UnhandledErrors`` (inside the metrics middleware, so it is counted as a 500): a
500 with ``Connection: close`` and a request id (body and ``X-Request-ID``), logged as one line with that id
(the traceback at debug level), never re-raised to the server (which would drop a keep-alive connection
without telling the client).
"""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from seispick.picking.annotate import NoUsableDataError
from seispick.picking.waveforms import LimitExceededError
from seispick.service.app_metrics import ServiceMetrics
from seispick.service.errors import ServiceError

log = logging.getLogger(__name__)


def _allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method any route of the app serves on the request's path."""
    methods: set[str] = set()
    for route in app.router.routes:
        regex, route_methods = getattr(route, "path_regex", None), getattr(route, "methods", None)
        if regex is not None and route_methods and regex.match(request.url.path):
            methods |= set(route_methods)
    return sorted(methods)


def install_handlers(app: FastAPI, metrics: ServiceMetrics) -> None:
    """Register the service's exception handlers on ``app``."""

    async def service_error(request: Request, error: ServiceError) -> Response:
        if error.counts_as_input_error:
            metrics.input_errors.labels(error.kind).inc()
        return JSONResponse({"detail": error.message}, status_code=error.status, headers=error.headers)

    async def no_usable_data(request: Request, error: NoUsableDataError) -> Response:
        metrics.input_errors.labels("no_data").inc()
        return JSONResponse({"detail": str(error)}, status_code=422)

    async def over_limit(request: Request, error: LimitExceededError) -> Response:
        metrics.input_errors.labels(error.limit).inc()
        return JSONResponse({"detail": str(error)}, status_code=413)

    async def query_error(request: Request, error: RequestValidationError) -> Response:
        metrics.input_errors.labels("query").inc()
        return await request_validation_exception_handler(request, error)

    async def http_error(request: Request, error: HTTPException) -> Response:
        if error.status_code in (401, 403):
            metrics.input_errors.labels("auth").inc()
        if error.status_code == 405:
            # Starlette lists only the first matching route's methods; one path may have several routes
            # (GET and POST /v1/picks live in different routers).
            error.headers = {**(error.headers or {}), "Allow": ", ".join(_allowed_methods(app, request))}
        return await http_exception_handler(request, error)

    app.add_exception_handler(ServiceError, service_error)  # type: ignore[arg-type]
    app.add_exception_handler(NoUsableDataError, no_usable_data)  # type: ignore[arg-type]
    app.add_exception_handler(LimitExceededError, over_limit)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, query_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]
    app.add_middleware(UnhandledErrors)


def server_error(method: str, path: str, error: BaseException) -> JSONResponse:
    """The 500 for an unhandled ``error``: one log line with a new request id, ``Connection: close``."""
    request_id = uuid.uuid4().hex[:16]
    text = " ".join(str(error).split())[:300]
    log.error("request %s: unhandled %s on %s %s: %s", request_id, type(error).__name__, method, path, text)
    log.debug("request %s: traceback", request_id, exc_info=error)
    return JSONResponse(
        {"detail": f"internal server error (request id {request_id})"},
        status_code=500,
        headers={"Connection": "close", "X-Request-ID": request_id},
    )


class UnhandledErrors:
    """ASGI middleware: an exception no handler answered becomes ``server_error``'s 500 (see the module
    docstring); after the response has started it can only be logged, and the server closes the connection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception as error:  # noqa: BLE001 - the last resort: every exception gets its 500
            response = server_error(scope.get("method", "?"), scope.get("path", "?"), error)
            if started:
                raise
            await response(scope, receive, send)
