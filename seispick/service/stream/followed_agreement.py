"""What the shadow-model and the analyst-pick comparisons share: one :class:`AgreementTracker` per model,
fed from a subscription to the publisher's picks, settled periodically into a Prometheus counter.

:class:`~.shadow.ShadowAgreement` compares shadow models with the live model, :class:`~.analyst.AnalystAgreement`
every picker with analyst picks; each says what a published record (``add``) means for its trackers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine, Mapping
from typing import Any

from obspy import UTCDateTime
from prometheus_client import Counter

from seispick.picking.agreement import TOLERANCE_S, AgreementTracker, Mark
from seispick.service.publish.publisher import PickPublisher, Record, Subscription

log = logging.getLogger(__name__)

SUBSCRIPTION_SIZE = 100_000  # picks waiting to be compared before the oldest are lost (``dropped``)


class FollowedAgreement:
    """Trackers per model over the publisher's ``pick`` and ``shadow_pick`` records; subclasses ``add``."""

    outcomes: Mapping[str, str] = {
        "matched": "matched",
        "only_live": "only_live",
        "only_shadow": "only_shadow",
    }

    def __init__(
        self,
        publisher: PickPublisher,
        models: list[str],
        counter: Counter,
        hold_s: float,
        tolerance: float = TOLERANCE_S,
    ) -> None:
        self.publisher = publisher
        self.hold_s = hold_s
        self.tolerance = tolerance
        self.trackers = {name: AgreementTracker(hold_s, tolerance) for name in models}
        self.counter = counter
        self.since = time.time()  # when the counts on the route began
        self._subscription: Subscription | None = None
        self._tasks: list[asyncio.Task] = []

    def add(self, record: Record, now: float | None = None) -> None:
        raise NotImplementedError

    @staticmethod
    def mark(record: Record) -> Mark:
        """A published pick as matching sees it."""
        f = record.fields
        return Mark(f["trace_id"], f["phase"], UTCDateTime(f["peak_time"]).timestamp)

    def _follow(self, *more: Coroutine[Any, Any, None]) -> None:
        """Subscribe to the publisher (before any source runs) and start reading, settling and ``more``."""
        self._subscription = self.publisher.subscribe(kind=("pick", "shadow_pick"), maxsize=SUBSCRIPTION_SIZE)
        loops = (self._read(), self._settle_loop(), *more)
        self._tasks = [asyncio.create_task(c) for c in loops]

    async def stop(self) -> None:
        if self._subscription is not None:
            self._subscription.close(drop=True)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def settle(self, now: float | None = None, flush: bool = False) -> None:
        """Count what is final (see ``AgreementTracker``) into the counter."""
        now = time.time() if now is None else now
        for model, tracker in self.trackers.items():
            for (network, phase), row in tracker.settle(now, flush).items():
                for outcome, n in row.items():
                    if n:
                        self.counter.labels(model, network, phase, self.outcomes[outcome]).inc(n)

    @property
    def dropped(self) -> int:
        """Picks lost because the comparison fell behind (its counts are then short of them)."""
        return self._subscription.dropped if self._subscription is not None else 0

    async def _read(self) -> None:
        assert self._subscription is not None
        async for record in self._subscription:
            self._add_logged(record)

    def _add_logged(self, record: Record) -> None:
        try:
            self.add(record)
        except (KeyError, ValueError, TypeError):  # a malformed record: skipped, never fatal
            log.exception("%s: record %s skipped", type(self).__name__, record.fields.get("id"))

    async def _settle_loop(self) -> None:
        period = min(max(self.hold_s / 4, 0.5), 10.0)
        while True:
            await asyncio.sleep(period)
            self.settle()
