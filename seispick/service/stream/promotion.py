"""Promoting a shadow model at run time (``POST /v1/models/{name}/promote``): no restart, no state lost.

The named shadow model takes the place of the stream's first live picker in ``streaming.models`` and that
model takes its place in ``streaming.shadow_models`` (the operator keeps watching it and can promote it back).
Every model keeps running on the same instruments, segments, windows and stacks; only the roles change:

* the publisher (``PickPublisher.set_shadow_models``) decides by the role at ``publish``: every pick handed to
  it from the switch on goes by the new roles (the promoted model's to the pick stream, kind ``pick``; the
  demoted one's to the shadow stream, kind ``shadow_pick``), every pick before it went by the old ones. A
  pick is handed over once, so no pick is on both streams and none is lost. The demoted model's open
  preliminary picks are published as ``rejected`` just before the switch (their final picks go to the shadow
  stream); its later updates are dropped like any shadow model's;
* the pickers (``StreamPicker.set_quiet``; with ``serve --workers N`` a ``("roles", shadow models)`` message
  on each worker's channel, and a restarted worker starts from the promoted settings) start the promoted
  model's pick updates (and first-look windows) in the open segments from their next output, and stop the
  demoted one's. A pick of the promoted model final before its pickers heard of the switch is on the pick
  stream without a pick update (a worker hears of it within milliseconds);
* the live association (when ``events.model`` is unset) follows the promoted model: the picks published
  before the switch are associated under the old roles (its queue is drained first), the promoted model's
  from the switch on;
* the agreement (``ShadowAgreement.switch``) compares every shadow model with the promoted one from the
  switch on; the route's counts start again from zero (``since``), the counter keeps what settled.

All of it happens in one step of the event loop (after the association's step in its thread, if one runs),
so no record is published between the parts. The change is in memory (``settings.streaming`` is updated):
a restart goes back to the configured settings unless the operator puts the new lists there too.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping

from seispick.models.inference import OnnxModel
from seispick.service.errors import ModelNotFound, ServiceError
from seispick.service.settings import Settings
from seispick.service.stream.association import LiveEvents
from seispick.service.stream.job import RealtimeJob
from seispick.service.stream.shadow import SETTING, ShadowAgreement, ShadowConfigError, shadow_models

log = logging.getLogger(__name__)


class NoStream(ServiceError):
    """Nothing to promote in: no real-time stream runs."""

    status = 409
    kind = "conflict"


def promoted_roles(settings: Settings, models: Mapping[str, OnnxModel], name: str) -> tuple[str, list, list]:
    """(the live picker ``name`` replaces, the live models after, the shadow models after); 404 when ``name``
    is not a shadow model of the stream."""
    config = settings.streaming
    shadows = list(dict.fromkeys(config.shadow_models))
    if name not in shadows:
        raise ModelNotFound(
            f"{name!r} is not a shadow model of the stream ({SETTING}: {', '.join(shadows) or 'none'}); "
            "only a shadow model can be promoted"
        )
    try:
        old, _ = shadow_models(settings, models)
    except ShadowConfigError as exc:
        raise NoStream(str(exc)) from None
    live = config.live_models(settings.default_model)
    return old, [name if m == old else m for m in live], [old if m == name else m for m in shadows]


async def promote(
    settings: Settings,
    job: RealtimeJob | None,
    models: Mapping[str, OnnxModel],
    name: str,
    shadows: ShadowAgreement | None = None,
    events: LiveEvents | None = None,
) -> dict:
    """Make shadow model ``name`` the first live picker and the live picker it replaces a shadow model (see
    the module docstring); the new roles, for the operator."""
    if job is None:
        raise NoStream(
            "no real-time stream runs (no SeedLink server, watched folder or --demo): nothing to promote"
        )
    old, live, shadow = promoted_roles(settings, models, name)
    follows = events is not None and not settings.events.model  # the association follows the live picker
    lock = events.lock if events is not None else contextlib.nullcontext()
    async with lock:  # not while an association step runs in its thread; no await from here on
        if events is not None:
            events.drain()
        if shadows is not None:
            shadows.drain()
        rejected = job.publisher.set_shadow_models(shadow)
        if events is not None:
            events.drain()  # the rejected updates, under the old roles
            if follows:
                events.follow(name)
        if shadows is not None:
            shadows.switch(name, shadow)
        config = settings.streaming
        config.shadow_models = [m for m in shadow if m != old]  # each step valid: a model is live or shadow
        config.models = live
        config.shadow_models = shadow
        job.set_roles(shadow)
    log.warning(
        "promoted %s to live in place of %s (now a shadow model): live %s, shadow %s; %d open preliminary "
        "pick(s) of %s rejected; in memory only: set SEISPICK_STREAMING__MODELS=%s and "
        "SEISPICK_STREAMING__SHADOW_MODELS=%s to keep it after a restart",
        name, old, ",".join(live), ",".join(shadow), rejected, old, ",".join(live), ",".join(shadow),
    )  # fmt: skip
    notes = []
    if settings.events.model == old:
        notes.append(
            f"events.model is {old}, now a shadow model: the live association gets no more picks until it "
            "names a live model (and a restart)"
        )
    return {
        "promoted": name,
        "demoted": old,
        "live_models": live,
        "shadow_models": shadow,
        "associated_model": events.model if events is not None else None,
        "rejected_preliminary_picks": rejected,
        "persist": (
            "in memory only: a restart goes back to the configured models; to keep this, set "
            f"SEISPICK_STREAMING__MODELS={','.join(live)} and "
            f"SEISPICK_STREAMING__SHADOW_MODELS={','.join(shadow)} (streaming.models, streaming.shadow_models)"
        ),
        "notes": notes,
    }
