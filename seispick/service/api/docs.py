"""Swagger UI (``/docs``) and ReDoc (``/redoc``) served from the service itself, without a CDN.

FastAPI's pages load their JavaScript and CSS from a CDN (and ReDoc its fonts from Google), so on an
air-gapped network they are blank. Here the pages point at ``/static/docs/``, served from the assets that
the ``fastapi-offline`` package ships (Swagger UI: Apache-2.0, ReDoc: MIT) - FastAPI's "self-hosting
JavaScript and CSS for docs" recipe.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
STATIC = "/static/docs"


def install_docs(app: FastAPI) -> None:
    """Mount the assets and the two pages (build the app with ``docs_url=None, redoc_url=None``)."""
    app.mount(STATIC, StaticFiles(directory=ASSETS), name="docs-assets")
    title = app.title

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{title} - Swagger UI",
            swagger_js_url=f"{STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{title} - ReDoc",
            redoc_js_url=f"{STATIC}/redoc.standalone.js",
            redoc_favicon_url=f"{STATIC}/favicon.png",
            with_google_fonts=False,
        )
