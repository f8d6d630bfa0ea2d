"""Shadow models on the live stream: how far each agrees with the live model, as the picks come.

``streaming.shadow_models`` run beside the published models (the same records, windows and batcher; the
stream runs them after the live ones, :meth:`~seispick.service.settings._StreamingSettings.stream_models`).
The publisher turns their picks into ``shadow_pick`` records on ``streaming.shadow_key``. ``ShadowAgreement``
subscribes to the publisher (so it sees the picks of every picking process with ``--workers N``), feeds the
live model's picks (the stream's first live picker) and each shadow model's to an
:class:`~seispick.picking.agreement.AgreementTracker` and counts what settles into
``seispick_shadow_agreement_total{model,network,phase,outcome}``; ``GET /v1/models/{name}/agreement`` reads
the counts. A promotion (:mod:`.promotion`) switches the live model under it (``drain``, then ``switch``).
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Mapping

from obspy import UTCDateTime
from prometheus_client import CollectorRegistry, Counter

from seispick.models.inference import OnnxModel
from seispick.picking.agreement import TOLERANCE_S, AgreementTracker, Counts, rates
from seispick.service.publish.publisher import PickPublisher, Record
from seispick.service.settings import Settings
from seispick.service.stream.followed_agreement import FollowedAgreement

log = logging.getLogger(__name__)

SETTING = "streaming.shadow_models (SEISPICK_STREAMING__SHADOW_MODELS)"
_COUNTERS: weakref.WeakKeyDictionary[CollectorRegistry, Counter] = weakref.WeakKeyDictionary()


class ShadowConfigError(ValueError):
    """The shadow models cannot run as configured (the message names the setting)."""


def shadow_models(settings: Settings, models: Mapping[str, OnnxModel]) -> tuple[str, list[str]]:
    """(the live picker they are compared with, the shadow models); refuses a shadow model that is not a
    loaded picker, or is also live."""
    config = settings.streaming
    live = config.live_models(settings.default_model)
    names = list(dict.fromkeys(config.shadow_models))
    for name in names:
        if name in live:
            raise ShadowConfigError(
                f"{SETTING}: {name} is also a live model of the stream ({', '.join(live)})"
            )
        model = models.get(name)
        if model is None or model.card.task != "picker":
            what = "not loaded" if model is None else f"a {model.card.task}"
            raise ShadowConfigError(f"{SETTING}: {name} is {what}; only pickers can be shadow models")
    pickers = [name for name in live if name in models and models[name].card.task == "picker"]
    if names and not pickers:
        raise ShadowConfigError(
            f"{SETTING}: the stream runs no live picker ({', '.join(live)}) to compare with"
        )
    return (pickers[0] if pickers else ""), names


def agreement_counter(registry: CollectorRegistry) -> Counter:
    counter = _COUNTERS.get(registry)
    if counter is None:
        counter = _COUNTERS[registry] = Counter(
            "seispick_shadow_agreement",
            "Picks of a shadow model compared with the live model's (same instrument and phase, within "
            f"{TOLERANCE_S} s, one to one): matched pairs, picks only the live or only the shadow model made",
            ["model", "network", "phase", "outcome"],
            registry=registry,
        )
    return counter


class ShadowAgreement(FollowedAgreement):
    """Follows the publisher's live and shadow picks and counts their agreement per shadow model."""

    def __init__(
        self,
        publisher: PickPublisher,
        live_model: str,
        shadows: list[str],
        registry: CollectorRegistry,
        hold_s: float = 120.0,
        tolerance: float = TOLERANCE_S,
    ) -> None:
        super().__init__(publisher, shadows, agreement_counter(registry), hold_s, tolerance)
        self.live_model = live_model  # the pairing began at ``since`` (start, or the latest promotion)

    async def start(self) -> None:
        self._follow()
        log.info(
            "shadow models %s: compared with %s's picks (within %.2f s, held up to %.0f s)",
            ", ".join(self.trackers),
            self.live_model,
            self.tolerance,
            self.hold_s,
        )

    def add(self, record: Record, now: float | None = None) -> None:
        """One published record: the live model's picks go to every tracker, a shadow pick to its model's."""
        fields = record.fields
        model = fields.get("model")
        now = time.time() if now is None else now
        mark = self.mark(record)
        if record.kind == "pick" and model == self.live_model:
            for tracker in self.trackers.values():
                tracker.add("live", mark, now)
        elif record.kind == "shadow_pick" and model in self.trackers:
            self.trackers[model].add("shadow", mark, now)

    def drain(self) -> None:
        """Compare what waits in the subscription now, without awaiting (before a promotion switches roles)."""
        sub = self._subscription
        if sub is None:
            return
        while not sub.queue.empty():
            record = sub.queue.get_nowait()
            if not isinstance(record, Record):  # the subscription's end marker: put back for the reader
                sub.queue.put_nowait(record)
                return
            self._add_logged(record)

    def switch(self, live_model: str, shadows: list[str]) -> None:
        """A promotion: compare ``shadows`` with ``live_model`` from now on. Call ``drain`` first (the records
        published before the switch are compared under the old roles). Every pair starts again from zero on
        the route (the picks still waiting for a counterpart are dropped uncounted); what settled before
        stays in ``seispick_shadow_agreement_total``, labelled by the shadow model only."""
        self.settle()
        self.live_model = live_model
        self.trackers = {name: AgreementTracker(self.hold_s, self.tolerance) for name in shadows}
        self.since = time.time()

    def report(self, model: str) -> dict:
        """The counts of ``model`` per network and phase, per phase and in all, each with its rates."""
        self.settle()
        tracker = self.trackers[model]
        counts: Counts = tracker.counts

        def row(values: dict[str, int]) -> dict:
            return {**values, **rates(values)}

        def total(keys) -> dict[str, int]:
            out = {"matched": 0, "only_live": 0, "only_shadow": 0}
            for key in keys:
                for outcome, n in counts[key].items():
                    out[outcome] += n
            return out

        phases = sorted({phase for _, phase in counts})
        return {
            "model": model,
            "live_model": self.live_model,
            "since": UTCDateTime(self.since).isoformat() + "Z",  # counts since then (start or promotion)
            "tolerance_s": self.tolerance,
            "hold_s": self.hold_s,
            "held": tracker.held,
            "dropped": self.dropped,
            "total": row(total(counts)),
            "phases": {p: row(total([k for k in counts if k[1] == p])) for p in phases},
            "networks": [
                {"network": network, "phase": phase, **row(counts[(network, phase)])}
                for network, phase in sorted(counts)
            ],
        }


async def start_shadows(
    settings: Settings, publisher: PickPublisher, registry: CollectorRegistry, models: Mapping[str, OnnxModel]
) -> ShadowAgreement | None:
    """The shadow models' agreement when ``streaming.shadow_models`` names any, started (subscribed before
    any source runs)."""
    live, shadows = shadow_models(settings, models)
    if not shadows:
        return None
    agreement = ShadowAgreement(publisher, live, shadows, registry, settings.streaming.shadow_hold_s)
    await agreement.start()
    return agreement
