"""``GET /v1/models``, ``GET /v1/models/{name}``: what the service can pick with (and each model's role on the
stream); ``GET /v1/models/{name}/agreement``: how a shadow model's stream picks agree with the live model's;
``POST /v1/models/{name}/promote``: a shadow model becomes the live picker, at run time."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from seispick.models.card import ModelCard
from seispick.service.api.dependencies import RegistryDep, StateDep
from seispick.service.api.routers import API_PREFIX
from seispick.service.api.schemas import ErrorResponse, ModelsResponse, ModelSummary
from seispick.service.errors import ModelNotFound
from seispick.service.stream.promotion import promote

router = APIRouter(prefix=API_PREFIX, tags=["models"])


@router.get("/models", response_model=ModelsResponse, summary="List the models found and which are loaded")
async def list_models(state: StateDep, registry: RegistryDep) -> ModelsResponse:
    default = state.settings.default_model
    roles: dict[str, str] = {}
    if state.streaming is not None:
        config = state.settings.streaming
        roles = {name: "shadow" for name in config.shadow_models}
        roles.update({name: "live" for name in config.live_models(default)})
    return ModelsResponse(
        default=default,
        models=[
            ModelSummary(
                name=entry.card.name,
                version=entry.card.version,
                description=entry.card.description,
                architecture=entry.card.architecture,
                task=entry.card.task,
                sampling_rate=entry.card.sampling_rate,
                window_samples=entry.card.window_samples,
                channel_order=entry.card.channel_order,
                labels=entry.card.labels,
                default_thresholds=entry.card.default_thresholds,
                sha256=entry.card.onnx_sha256,
                shipped=entry.shipped,
                loaded=entry.card.name in state.models,
                default=entry.card.name == default,
                stream_role=roles.get(entry.card.name),
            )
            for entry in registry.entries()
        ],
    )


@router.get(
    "/models/{name}",
    response_model=ModelCard,
    summary="A model's card (absolute paths in its text shown as file names or relative to the package)",
    responses={404: {"model": ErrorResponse, "description": "Unknown model"}},
)
async def get_model(name: str, registry: RegistryDep) -> ModelCard:
    # Look the name up among the registry's names only: registry.get() would also accept a folder path.
    entries = {entry.card.name: entry for entry in registry.entries()}
    if name not in entries:
        raise ModelNotFound(f"unknown model {name!r}; known models: {', '.join(sorted(entries)) or 'none'}")
    return entries[name].card.for_display()  # no absolute paths of the machine it was built on


@router.get(
    "/models/{name}/agreement",
    summary="A shadow model's picks on the stream compared with the live model's (streaming.shadow_models)",
    responses={404: {"model": ErrorResponse, "description": "Not a shadow model of the stream"}},
)
async def get_agreement(name: str, state: StateDep) -> dict[str, Any]:
    """Matched pairs (same instrument and phase, within 0.1 s, one to one), picks only the live model made and
    picks only the shadow made, per network and phase, per phase and in all, with ``live_recall`` =
    matched / (matched + only_live), ``shadow_precision`` = matched / (matched + only_shadow) and
    ``agreement`` = matched / all. Picks still waiting for a counterpart (``held``) are not counted yet. With
    ``streaming.analyst_picks_key``, ``analyst`` counts the model (also a live one) against the analysts' picks:
    ``matched``, ``only_analyst``, ``only_model``, ``recall`` and ``precision``."""
    shadows, analysts = state.shadows, state.analysts
    analyst = analysts.report(name) if analysts is not None else None
    if shadows is None or name not in shadows.trackers:
        if analyst is not None:  # a live picker: only the analysts to compare with
            return {"model": name, "analyst": analyst}
        running = ", ".join(shadows.trackers) if shadows is not None else "none"
        raise ModelNotFound(
            f"{name!r} is not a shadow model of the stream (streaming.shadow_models, "
            f"SEISPICK_STREAMING__SHADOW_MODELS: {running}), nor is streaming.analyst_picks_key set"
        )
    report = shadows.report(name)
    if analyst is not None:
        report["analyst"] = analyst
    return report


@router.post(
    "/models/{name}/promote",
    summary="Make a shadow model the stream's live picker now, and the live picker a shadow model (no restart)",
    responses={
        404: {"model": ErrorResponse, "description": "Not a shadow model of the stream"},
        409: {"model": ErrorResponse, "description": "No real-time stream runs"},
    },
)
async def promote_model(name: str, state: StateDep) -> dict[str, Any]:
    """From this request on, ``name``'s picks go to the pick stream (with pick updates) and are associated
    (unless ``events.model`` names another model), the replaced live picker's go to the shadow stream and its
    open preliminary picks are rejected; the agreement compares with ``name``, counting from zero. Every
    model keeps its buffers and windows. In memory only: the answer says which settings keep it after a
    restart."""
    answer = await promote(
        state.settings, state.streaming, state.models, name, shadows=state.shadows, events=state.events
    )
    state.show_roles()
    return answer
