"""The stream's pickers against analyst picks, as the analysts' picks come (``streaming.analyst_picks_key``).

An observatory's analysts review events minutes to hours after the data; their picks, written to a Redis
stream (one entry per pick: ``waveform_id`` NET.STA.LOC.CHA, ``phase`` as a phase hint, P, Pg, Sn..., ``time``
ISO or epoch seconds; ``scripts/analyst_picks_to_redis.py`` writes them from a QuakeML or SCML catalogue), are
matched with every picker of the stream, live and shadow (the publisher's ``pick`` and ``shadow_pick``
records), per instrument (NET.STA.LOC plus the band and instrument code) and phase within 0.1 s, one to one,
as ``seispick evaluate --catalog`` matches; each pair is counted once no pick still to come can change it
(``AgreementTracker``, ``streaming.analyst_hold_s``) as ``matched``, ``only_analyst`` or ``only_model`` in
``seispick_analyst_agreement_total{model,network,phase,outcome}`` and on ``GET /v1/models/{name}/agreement``.
A malformed entry is skipped and counted; a Redis outage is retried from the last entry read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import weakref
from collections.abc import Mapping

from obspy import UTCDateTime
from prometheus_client import CollectorRegistry, Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from seispick.events.catalog_evaluation import phase_of
from seispick.models.inference import OnnxModel
from seispick.picking.agreement import TOLERANCE_S, Counts, Mark
from seispick.service.publish.publisher import PickPublisher, Record
from seispick.service.settings import Settings
from seispick.service.stream.followed_agreement import FollowedAgreement

log = logging.getLogger(__name__)

SETTING = "streaming.analyst_picks_key (SEISPICK_STREAMING__ANALYST_PICKS_KEY)"
READ_COUNT = 1000  # entries per XREAD
BLOCK_MS = 1000  # an XREAD waits this long for new entries
OUTCOMES = {"matched": "matched", "only_live": "only_analyst", "only_shadow": "only_model"}
_WAVEFORM_ID = re.compile(r"^[A-Za-z0-9]{1,8}\.[A-Za-z0-9]{1,8}\.[A-Za-z0-9-]{0,8}\.[A-Za-z0-9]{3}$")
_COUNTERS: weakref.WeakKeyDictionary[CollectorRegistry, tuple[Counter, Counter]] = weakref.WeakKeyDictionary()


class AnalystConfigError(ValueError):
    """Analyst picks cannot be followed as configured (the message names the setting)."""


def counters(registry: CollectorRegistry) -> tuple[Counter, Counter]:
    found = _COUNTERS.get(registry)
    if found is None:
        found = _COUNTERS[registry] = (
            Counter(
                "seispick_analyst_agreement",
                f"Picks of each stream picker compared with analyst picks (same instrument and phase, within "
                f"{TOLERANCE_S} s, one to one): matched pairs, picks only the analysts or only the model made",
                ["model", "network", "phase", "outcome"],
                registry=registry,
            ),
            Counter(
                "seispick_analyst_picks",
                "Entries read from streaming.analyst_picks_key: accepted, or skipped (not a P or S pick with a "
                "waveform id and a time)",
                ["result"],
                registry=registry,
            ),
        )
    return found


def analyst_mark(fields: Mapping[bytes | str, bytes | str]) -> Mark | None:
    """An analyst pick from a stream entry's fields, on the instrument id the pickers use (NET.STA.LOC plus
    band and instrument code); None for an entry that is not a usable P or S pick."""

    def text(key: str) -> str:
        value = fields.get(key, fields.get(key.encode(), b""))
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

    waveform_id, phase, when = text("waveform_id").strip(), phase_of(text("phase")), text("time").strip()
    if not _WAVEFORM_ID.match(waveform_id) or phase is None or not when:
        return None
    try:
        t = float(when) if re.fullmatch(r"-?\d+(\.\d+)?", when) else UTCDateTime(when).timestamp
    except (ValueError, TypeError):
        return None
    if not 0 < t < 4.1e9:
        return None
    return Mark(waveform_id[:-1], phase, t)


class AnalystAgreement(FollowedAgreement):
    """Follows the analyst stream in Redis and the publisher's picks; counts each picker against the analysts."""

    outcomes = OUTCOMES

    def __init__(
        self,
        publisher: PickPublisher,
        redis: Redis,
        key: str,
        models: list[str],
        registry: CollectorRegistry,
        hold_s: float = 3600.0,
        tolerance: float = TOLERANCE_S,
    ) -> None:
        counter, self.entries = counters(registry)
        super().__init__(publisher, models, counter, hold_s, tolerance)
        self.redis = redis
        self.key = key
        self.last_id: bytes | str = "0-0"
        self.read_errors = 0

    async def start(self) -> None:
        """Subscribe to the publisher and read the analyst stream from its current end (picks of earlier
        data would find no model picks to match)."""
        try:
            newest = await self.redis.xrevrange(self.key, count=1)
            self.last_id = newest[0][0] if newest else "0-0"
        except (RedisError, OSError) as exc:  # not fatal: read from the start of the stream once it answers
            log.warning("analyst picks: %s unreadable at start (%s); retrying", self.key, exc)
        self._follow(self._read_analysts())
        log.info("analyst picks from %s: %s counted against them", self.key, ", ".join(self.trackers))

    async def stop(self) -> None:
        await super().stop()
        with contextlib.suppress(RedisError, OSError):
            await self.redis.aclose()

    def add(self, record: Record, now: float | None = None) -> None:
        """A published pick (live or shadow) of a tracked model."""
        tracker = self.trackers.get(record.fields.get("model", ""))
        if tracker is None:
            return
        tracker.add("shadow", self.mark(record), time.time() if now is None else now)

    def add_analyst(self, fields: Mapping[bytes | str, bytes | str], now: float | None = None) -> bool:
        """One analyst stream entry: to every tracker; False (and counted) when skipped."""
        mark = analyst_mark(fields)
        self.entries.labels("skipped" if mark is None else "accepted").inc()
        if mark is None:
            return False
        now = time.time() if now is None else now
        for tracker in self.trackers.values():
            tracker.add("live", mark, now)
        return True

    def report(self, model: str) -> dict | None:
        """``model``'s counts against the analysts per network and phase, per phase and in all, with
        ``recall`` = matched / (matched + only_analyst) and ``precision`` = matched / (matched + only_model);
        None for a model not tracked."""
        tracker = self.trackers.get(model)
        if tracker is None:
            return None
        self.settle()
        counts: Counts = tracker.counts

        def row(keys) -> dict:
            out = dict.fromkeys(OUTCOMES.values(), 0)
            for key in keys:
                for outcome, n in counts[key].items():
                    out[OUTCOMES[outcome]] += n
            m, a, o = out["matched"], out["only_analyst"], out["only_model"]
            out["recall"] = m / (m + a) if m + a else None
            out["precision"] = m / (m + o) if m + o else None
            return out

        phases = sorted({phase for _, phase in counts})
        return {
            "key": self.key,
            "since": UTCDateTime(self.since).isoformat() + "Z",
            "tolerance_s": self.tolerance,
            "hold_s": self.hold_s,
            "held": tracker.held,
            "read_errors": self.read_errors,
            "total": row(list(counts)),
            "phases": {p: row([k for k in counts if k[1] == p]) for p in phases},
            "networks": [{"network": n, "phase": p, **row([(n, p)])} for n, p in sorted(counts)],
        }

    async def _read_analysts(self) -> None:
        delay = 0.5
        while True:
            try:
                found = await self.redis.xread({self.key: self.last_id}, count=READ_COUNT, block=BLOCK_MS)
                delay = 0.5
            except (RedisError, OSError) as exc:
                self.read_errors += 1
                if self.read_errors in (1, 10) or self.read_errors % 100 == 0:
                    log.warning("analyst picks: reading %s failed (%s); retrying", self.key, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            for _, entries in found or []:
                for entry_id, fields in entries:
                    self.last_id = entry_id
                    self.add_analyst(fields)


async def start_analysts(
    settings: Settings,
    publisher: PickPublisher,
    registry: CollectorRegistry,
    models: Mapping[str, OnnxModel],
) -> AnalystAgreement | None:
    """The analyst-pick agreement when ``streaming.analyst_picks_key`` is set, started (subscribed before any
    source runs) with a Redis connection of its own (its reads block up to a second); refuses it without
    ``redis_url``."""
    config = settings.streaming
    if not config.analyst_picks_key:
        return None
    if not settings.redis_url:
        raise AnalystConfigError(
            f"{SETTING} needs redis_url (SEISPICK_REDIS_URL): the analyst picks are read there"
        )
    timeout = settings.redis_timeout_s
    redis = Redis.from_url(
        settings.redis_url, socket_connect_timeout=timeout, socket_timeout=timeout + BLOCK_MS / 1000
    )
    names = [
        name
        for name in config.stream_models(settings.default_model)
        if name in models and models[name].card.task == "picker"
    ]
    agreement = AnalystAgreement(
        publisher, redis, config.analyst_picks_key, names, registry, config.analyst_hold_s
    )
    await agreement.start()
    return agreement
