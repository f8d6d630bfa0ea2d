"""Overload made visible: how far the real-time job is behind, per instrument and as a whole.

An instrument's lag is the larger of

* how much its data latency (arrival minus the end of the record) has grown over the best it has had: a
  live feed's latency stays flat, so growth means records waited (in our sockets or event loop, or upstream);
* how long its oldest window has been waiting for inference (the model is the bottleneck).

An instrument is *behind* when its lag exceeds ``behind_s``. The job is behind while its oldest window waits
longer than ``behind_s`` or most of its streaming instruments are behind (one station's slow telemetry is the
station's state, not the job's). :class:`BehindMonitor` keeps since when, logs it at most once per
``log_every_s`` (and once when the job catches up), and gives readiness a reason once it has lasted
``timeout_s``. While the job is behind, silence is not judged: a station that seems silent may be waiting in
our own backlog.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Lag:
    """One instrument's lag components, in seconds."""

    latency_growth: float  # last data latency minus the best seen
    inference_wait: float  # age of its oldest window still waiting for the model

    @property
    def seconds(self) -> float:
        return max(self.latency_growth, self.inference_wait, 0.0)


@dataclass
class BehindMonitor:
    """Whether the job is behind, since when, and the rate-limited log line about it."""

    behind_s: float = 30.0
    timeout_s: float = 300.0
    log_every_s: float = 60.0
    since: float | None = None  # when the job fell behind (None: keeping up)
    episodes: int = 0  # times it fell behind
    summary: str = ""  # why, as last checked
    _last_log: float = field(default=-math.inf, repr=False)

    @property
    def behind(self) -> bool:
        return self.since is not None

    def is_behind(self, lag: Lag) -> bool:
        return lag.seconds > self.behind_s

    def update(self, lags: dict[str, Lag], in_flight: int, oldest_window_s: float, now: float) -> None:
        """Re-judge the job from every streaming instrument's lag; log on change and at most every minute."""
        late = [name for name, lag in lags.items() if self.is_behind(lag)]
        job_behind = oldest_window_s > self.behind_s or (bool(lags) and 2 * len(late) > len(lags))
        if not job_behind:
            if self.since is not None:
                log.info("stream caught up after %.0f s behind", now - self.since)
            self.since, self.summary = None, ""
            return
        worst = max(lags, key=lambda name: lags[name].seconds, default=None)
        self.summary = (
            f"{len(late)} of {len(lags)} instruments behind"
            + (f" (worst {worst}: {lags[worst].seconds:.0f} s)" if worst else "")
            + f", {in_flight} windows waiting for inference (oldest {oldest_window_s:.0f} s)"
        )
        if self.since is None:
            self.since = now
            self.episodes += 1
        if now - self._last_log >= self.log_every_s:
            self._last_log = now
            log.warning(
                "stream behind for %.0f s: %s; silence is not judged until it catches up",
                now - self.since,
                self.summary,
            )

    def behind_for(self, now: float) -> float:
        """Seconds the job has been behind (0 while keeping up)."""
        return 0.0 if self.since is None else max(now - self.since, 0.0)

    def unready_reason(self, now: float) -> str | None:
        """Why readiness fails: behind for longer than ``timeout_s``; None otherwise."""
        seconds = self.behind_for(now)
        if self.since is None or seconds <= self.timeout_s:
            return None
        return f"behind for {seconds:.0f} s (over {self.timeout_s:g} s): {self.summary}"
