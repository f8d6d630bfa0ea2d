"""FastAPI dependencies: the app's state, settings, registry, batcher, and API-key authentication.

Keys come from the ``X-API-Key`` header (``/metrics`` also takes ``Authorization: Bearer``, which Prometheus
sends); only the WebSocket routes also take ``?api_key=`` (browsers cannot set their headers), and every log
line masks it (:mod:`.server`).

Every dependency is ``async def``: FastAPI runs a plain ``def`` dependency on a worker thread, a thread hop per
dependency and request for a few attribute reads."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from seispick.models.registry import ModelRegistry
from seispick.service.api.state import ServiceState
from seispick.service.batcher import MicroBatcher
from seispick.service.settings import Settings

API_KEY_HEADER = "X-API-Key"
_api_key_header = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="Required when keys are set"
)
_bearer = HTTPBearer(auto_error=False, description="The API key as a bearer token (/metrics, for Prometheus)")


async def get_state(request: Request) -> ServiceState:
    return request.app.state.seispick


async def get_settings(state: Annotated[ServiceState, Depends(get_state)]) -> Settings:
    return state.settings


async def get_registry(state: Annotated[ServiceState, Depends(get_state)]) -> ModelRegistry:
    if state.registry is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "models are not loaded yet")
    return state.registry


async def get_batcher(state: Annotated[ServiceState, Depends(get_state)]) -> MicroBatcher:
    if state.batcher is None or not state.batcher.running:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the inference batcher is not running")
    return state.batcher


async def require_api_key(
    settings: Annotated[Settings, Depends(get_settings)],
    key: Annotated[str | None, Security(_api_key_header)] = None,
) -> None:
    """401 without a key, 403 with a wrong one; a no-op when no keys are configured."""
    check_api_key(settings, key)


def check_api_key(settings: Settings, key: str | None) -> None:
    """``require_api_key``'s check."""
    if not settings.api_keys:
        return
    if not key:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"missing API key: send it in the {API_KEY_HEADER} header",
            headers={"WWW-Authenticate": API_KEY_HEADER},
        )
    given = key.encode()
    if not any(hmac.compare_digest(given, k.get_secret_value().encode()) for k in settings.api_keys):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid API key")


async def require_metrics_key(
    settings: Annotated[Settings, Depends(get_settings)],
    key: Annotated[str | None, Security(_api_key_header)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
) -> None:
    """``/metrics``: the API key (header or bearer token) unless ``metrics_public``."""
    if settings.metrics_public:
        return
    check_api_key(settings, key or (bearer.credentials if bearer is not None else None))


StateDep = Annotated[ServiceState, Depends(get_state)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
BatcherDep = Annotated[MicroBatcher, Depends(get_batcher)]
