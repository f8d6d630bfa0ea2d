"""Live association: picks fed one by one, PyOcto re-run over a sliding window, events versioned.

The clock ``now`` is the newest pick time seen plus the wall time since it arrived (so replays of old data and
quiet periods both move it), or what the caller passes to ``step``. Each step associates the picks with times in
``[now - delay_s - window_s, now - delay_s]``: a pick waits ``delay_s`` for the picks of farther stations before
it is associated. An event found again keeps its id; it gets version + 1 and is emitted again when picks join or
leave it or its origin moves (more than ``min_move_km`` / ``min_shift_s``). An event is final once its first
pick leaves the window: its picks leave the buffer with it (they cannot form a second event) and it is
never emitted again. Events are never retracted.

With ``settle`` (the service's default) events settle instead of following every re-run: a pick stays with its
event unless a re-run assigns it to another event (PyOcto leaving it out is no evidence against it; the event
is relocated with its kept picks), a version is emitted only for a state the event never had (picks, origin
beyond the thresholds, magnitude), a found event without shared picks but within ``merge_km`` / ``merge_s`` of
an open one is that event, two open events with the same picks or such origins become one (the later declared
is emitted once more, ``evaluation_status`` "rejected" and ``superseded_by`` the other's id), and an event
leaving the window is emitted a last time with ``evaluation_status`` "final". Preliminary picks (``update``)
join like any pick; a confirmed pick that moved replaces the ids it supersedes and a rejected one is withdrawn:
its event is relocated with the picks it keeps, or emitted once more as "rejected" when fewer than
``min_picks`` remain. ``min_version_interval_s`` spaces an open event's versions in the associator's clock
(the latest state comes out when due; the first and the final version are not held back), and a
``magnitude`` hook measures each state's magnitude (again every ``magnitude_every_s`` while it is open). Picks older than the window when they arrive are counted as
late; picks that leave the window in no event as ``no_event``.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from seispick.events.associate import Associator
from seispick.events.association_metrics import EventMetrics
from seispick.events.event import Event, Origin
from seispick.events.picksets import PickSet
from seispick.events.stations import station_key
from seispick.picking.results import Pick

log = logging.getLogger(__name__)


@dataclass
class LiveConfig:
    window_s: float = 300.0  # pick times associated together (longer than travel times across the network)
    delay_s: float = 10.0  # how long a pick waits for the others before it is associated
    min_move_km: float = 0.5  # a moved hypocentre is re-published beyond this
    min_shift_s: float = 0.1  # a shifted origin time is re-published beyond this
    remember_final: int = 10_000  # final event ids kept (a pick of a final event arriving again is ignored)
    settle: bool = False  # keep picks, emit only new states, merge duplicates, emit a final version
    merge_km: float = 5.0  # with settle: hypocentres this close ...
    merge_s: float = 1.0  # ... and origin times this close are one event
    min_magnitude_change: float = 0.05  # with settle: a magnitude change re-published beyond this
    # with settle: an open event's versions at least this far apart, in the associator's clock (pick time)
    min_version_interval_s: float = 0.0
    magnitude_every_s: float = (
        10.0  # with a magnitude hook: an unchanged event's magnitude measured again after
    )

    def check(self) -> None:
        if not self.window_s > 0 or self.delay_s < 0:
            raise ValueError("window_s must be positive and delay_s not negative")


@dataclass
class _Buffered:
    pick: Pick
    pick_id: str
    station: str
    time: float
    received: float  # wall clock (time.time()) when it arrived


@dataclass
class _Open:
    event: Event
    pick_ids: frozenset[str]
    first_time: float  # earliest pick time
    last_received: float
    ever: frozenset[str] = frozenset()  # every pick published with the event in some version
    states: list[_State] = field(default_factory=list)  # every state published (settle)
    current: _State | None = None  # the latest state, published or not (settle)
    emitted_at: float = -math.inf  # the associator's clock (window end) at the last version (settle)
    measured_at: float = -math.inf  # the associator's clock at the last magnitude measurement
    pending: bool = False  # the current state is due for a version (settle)


@dataclass(frozen=True)
class _State:
    pick_ids: frozenset[str]
    origin: Origin
    magnitude: float | None


@dataclass
class LiveStats:
    received: int = 0
    duplicates: int = 0
    late: int = 0
    no_coordinates: int = 0
    phase: int = 0
    no_event: int = 0
    associated: int = 0  # picks of final events
    joined: int = 0  # picks in a published (not rejected) event version, counted once, when first in one
    declared: int = 0
    updated: int = 0  # versions after the first (final and superseded ones included)
    superseded: int = 0
    rejected: int = 0  # events whose picks were withdrawn (preliminary picks rejected or moved)
    withdrawn: int = 0  # picks withdrawn (rejected, or superseded by a moved final pick)
    steps: int = 0
    step_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)


class LiveAssociator:
    """Incremental association over a sliding window; ``add`` picks, ``step`` returns new event versions."""

    def __init__(
        self,
        associator: Associator,
        config: LiveConfig | None = None,
        metrics: EventMetrics | None = None,
        wall_clock: Callable[[], float] = time.time,
        magnitude: Callable[[Event], Event] | None = None,
    ) -> None:
        self.associator = associator
        self.magnitude = magnitude  # sets an event's magnitude (events.live_magnitude), or None
        self.config = config or LiveConfig()
        self.config.check()
        if self.config.window_s < associator.time_before_s:
            log.warning(
                "association window %.0f s is shorter than the travel time across the network (%.0f s)",
                self.config.window_s,
                associator.time_before_s,
            )
        self.metrics = metrics
        self.wall = wall_clock
        self.stats = LiveStats()
        self._picks: dict[str, _Buffered] = {}
        self._open: dict[str, _Open] = {}
        self._final: OrderedDict[str, None] = OrderedDict()  # pick ids of final events, bounded
        self._joined: OrderedDict[str, None] = OrderedDict()  # pick ids counted in ``joined``, bounded
        self._superseded: OrderedDict[str, str] = OrderedDict()  # superseded id -> the id it went to, bounded
        self._newest: float = -math.inf  # newest pick time seen
        self._newest_wall: float = 0.0
        self._lo: float = -math.inf  # window start of the last step
        self._hi: float = -math.inf  # window end of the last step

    # -- input

    def add(self, pick: Pick, pick_id: str | None = None) -> bool:
        """Buffer ``pick``; False (and counted) if it is a repeat, too late, of an unknown station or phase."""
        self.stats.received += 1
        pid = pick_id or pick.id
        if pid in self._picks or pid in self._final:
            return self._skip("duplicates")
        key = station_key(pick.trace_id)
        if key not in self.associator.stations:
            return self._skip("no_coordinates")
        if pick.phase.upper() not in ("P", "S"):
            return self._skip("phase")
        t = pick.peak_time.timestamp
        if t < self._lo:
            return self._skip("late")
        now = self.wall()
        self._picks[pid] = _Buffered(pick, pid, key, t, now)
        if t > self._newest:
            self._newest, self._newest_wall = t, now
        return True

    def update(self, status: str, pick: Pick, pick_id: str, supersedes: tuple[str, ...] = ()) -> bool:
        """Take a pick update of the preliminary feed (``PickUpdate``): a ``preliminary`` pick is added, a
        ``confirmed`` one withdraws the preliminary ids it supersedes and is added unless already here (the
        same id), a ``rejected`` one is withdrawn. Whether the associator's picks changed."""
        if status == "rejected":
            return self.withdraw(pick_id)
        changed = False
        for old in supersedes:
            changed |= self.withdraw(old)
        if status == "confirmed" and (pick_id in self._picks or pick_id in self._final):
            return changed
        return self.add(pick, pick_id) or changed

    def withdraw(self, pick_id: str) -> bool:
        """Remove a buffered pick (a preliminary pick rejected or moved); its event loses it at the next
        step (relocated, or rejected without enough picks). False if the pick is not buffered."""
        if self._picks.pop(pick_id, None) is None:
            return False
        self.stats.withdrawn += 1
        return True

    def _skip(self, reason: str) -> bool:
        setattr(self.stats, reason, getattr(self.stats, reason) + 1)
        if self.metrics is not None:
            self.metrics.picks_unassociated.labels(reason).inc()
        return False

    def clock(self) -> float:
        """Newest pick time plus the wall time since it arrived."""
        if self._newest == -math.inf:
            return -math.inf
        return self._newest + max(self.wall() - self._newest_wall, 0.0)

    # -- association

    def step(self, now: float | None = None) -> list[Event]:
        """Associate the window ending ``delay_s`` before ``now``; the events declared or changed, in time order.

        After a jump of the clock (a backlog read at once, a restart) the windows in between are associated
        first, half a window apart, so no buffered pick leaves the window without having been associated.
        """
        started = time.perf_counter()
        now = self.clock() if now is None else now
        if now == -math.inf:
            return []
        target = now - self.config.delay_s
        stride = self.config.window_s / 2
        if self._hi == -math.inf:  # the first step starts at the oldest pick
            self._hi = min((b.time for b in self._picks.values()), default=target)
        emitted: list[Event] = []
        while self._hi + stride < target:
            self._hi += stride
            emitted += self._associate(self._hi)
        self._hi = max(self._hi, target)
        emitted += self._associate(target)
        self._count_joined(emitted)
        self._gauges()
        seconds = time.perf_counter() - started
        self.stats.steps += 1
        self.stats.step_seconds += seconds
        if self.metrics is not None:
            self.metrics.step_duration.observe(seconds)
        return emitted

    def _associate(self, hi: float) -> list[Event]:
        lo = hi - self.config.window_s
        self._lo = max(self._lo, lo)
        emitted = self._close_before(lo)
        window = [b for b in self._picks.values() if b.time <= hi]
        if not window:
            return emitted
        picks = PickSet.from_picks([b.pick for b in window], [b.pick_id for b in window])
        found = self.associator.run_window(picks, np.arange(len(window)))
        if self.config.settle:
            return emitted + self._settle(found, window, picks, hi)
        return emitted + self._merge(found, window)

    def flush(self) -> list[Event]:
        """Associate everything buffered (end of input) and make every event final; the events emitted."""
        emitted = self.step(self._newest + self.config.delay_s + 1.0) if self._picks else []
        closed = self._close_before(math.inf)
        self._count_joined(closed)
        self._gauges()
        return emitted + closed

    @property
    def open_events(self) -> list[Event]:
        return [o.event for o in self._open.values()]

    def _merge(self, found: list[Event], window: list[_Buffered]) -> list[Event]:
        """Match PyOcto's events to the open ones; the new and changed ones, with ids and versions set.

        Latency is observed for versions that bring picks never published with the event before (a new event,
        picks joining for the first time): from the arrival of the newest of those picks to now. A version that
        only moves, or only takes back picks an earlier version had, adds no latency sample.
        """
        emitted = []
        claimed: set[str] = set()
        emit_wall = self.wall()
        received = {b.pick_id: b.received for b in window}
        for event in sorted(found, key=lambda e: e.origin.time):
            ids = frozenset(window[a.row].pick_id for a in event.arrivals)
            match = self._best_match(ids, claimed)
            first_time = min(window[a.row].time for a in event.arrivals)
            if match is None:
                new_picks = ids
                self._open[event.event_id] = _Open(event, ids, first_time, max(received[i] for i in ids), ids)
                claimed.add(event.event_id)
                self.stats.declared += 1
                if self.metrics is not None:
                    self.metrics.declared.inc()
            else:
                old = self._open[match]
                claimed.add(match)
                if ids == old.pick_ids and not self._moved(old.event, event):
                    continue
                new_picks = ids - old.ever  # a pick that left a version and came back was published before
                event.event_id = old.event.event_id
                event.version = old.event.version + 1
                last = max((received[i] for i in new_picks), default=old.last_received)
                self._open[match] = _Open(event, ids, first_time, last, old.ever | ids)
                self.stats.updated += 1
                if self.metrics is not None:
                    self.metrics.updated.inc()
            self._latency(new_picks, received, emit_wall)
            emitted.append(event)
        return emitted

    def _latency(self, new_picks: frozenset[str], received: dict[str, float], emit_wall: float) -> None:
        if new_picks:
            latency = max(emit_wall - max(received[i] for i in new_picks), 0.0)
            self.stats.latencies.append(latency)
            if self.metrics is not None:
                self.metrics.latency.observe(latency)

    def _count(self, declared: bool) -> None:
        if declared:
            self.stats.declared += 1
        else:
            self.stats.updated += 1
        if self.metrics is not None:
            (self.metrics.declared if declared else self.metrics.updated).inc()

    # -- settle: sticky picks, new states only, one id per event

    def _settle(self, found: list[Event], window: list[_Buffered], picks: PickSet, at: float) -> list[Event]:
        """Like ``_merge``, but picks stay with their event unless another event takes them, a version is
        emitted only for a state the event never had (and, with ``min_version_interval_s``, no sooner than that
        after the last), withdrawn picks leave their event, and duplicates are merged (module docstring)."""
        emitted = []
        claimed: set[str] = set()
        now_wall = self.wall()
        row_of = {b.pick_id: i for i, b in enumerate(window)}
        found_ids = [frozenset(window[a.row].pick_id for a in event.arrivals) for event in found]
        taken = frozenset().union(*found_ids)
        for event, ids in sorted(zip(found, found_ids), key=lambda pair: pair[0].origin.time):
            match = self._best_match(ids, claimed) or self._near(event.origin, claimed)
            if match is None and event.event_id in self._superseded:  # a merged id is not declared again
                match = self._superseded[event.event_id]
                if match not in self._open or match in claimed:
                    continue
            if match is None:
                event = self._measure(event, at)
                state = _State(ids, event.origin, _magnitude(event))
                first_time = min(window[row_of[p]].time for p in ids)
                last = max(window[row_of[p]].received for p in ids)
                opened = _Open(event, ids, first_time, last, ids, [state], current=state, emitted_at=at)
                opened.measured_at = at
                self._open[event.event_id] = opened
                claimed.add(event.event_id)
                self._count(declared=True)
                self._latency(ids, {p: window[row_of[p]].received for p in ids}, now_wall)
                emitted.append(replace(event))
                continue
            old = self._open[match]
            claimed.add(match)
            kept = frozenset(p for p in old.pick_ids - ids if p in row_of and p not in taken)
            if kept:  # left out by this run, taken by no other event: they stay
                ids |= kept
                same = ids == old.pick_ids
                event = old.event if same else self._relocate(picks, event.origin, ids, row_of)
            self._revise(match, event, ids, row_of, window, at)
        for key in [k for k in self._open if k not in claimed]:  # not found again: withdrawn picks leave it
            emitted += self._withdrawn(key, picks, row_of, window, at)
        emitted += self._due(at, now_wall)
        return emitted + self._supersede()

    def _relocate(self, picks: PickSet, origin: Origin, ids: frozenset[str], row_of: dict[str, int]) -> Event:
        rows = np.array(sorted(row_of[p] for p in ids))
        o = origin
        return self.associator.describe(picks, o.time, o.x_km, o.y_km, o.depth_km, rows, np.zeros(len(rows)))

    def _measure(self, event: Event, at: float, old: _Open | None = None) -> Event:
        """``event`` with its magnitude (the ``magnitude`` hook): measured again when its picks or origin
        changed, or ``magnitude_every_s`` after the last measurement (more of the waveform has arrived)."""
        if self.magnitude is None:
            return event
        if old is not None and old.current is not None:
            unchanged = old.current.pick_ids == old.pick_ids and not self._moved_origin(
                old.current.origin, event.origin
            )
            if unchanged and at - old.measured_at < self.config.magnitude_every_s:
                event.magnitude = old.event.magnitude
                return event
            old.measured_at = at
        before = event.magnitude if event.magnitude is not None else (old.event.magnitude if old else None)
        try:
            event = self.magnitude(event)
        except Exception:  # noqa: BLE001 - a magnitude must not stop association
            log.exception("live magnitude of %s failed; the event goes on without one", event.event_id)
        if event.magnitude is None and before is not None:  # its waveforms left the ring: the last one stands
            event.magnitude = before
        return event

    def _revise(
        self,
        key: str,
        event: Event,
        ids: frozenset[str],
        row_of: dict[str, int],
        window: list[_Buffered],
        at: float,
    ) -> None:
        """Make ``event`` (with ``ids``) the open event's current state; due for a version if never published."""
        old = self._open[key]
        event = self._measure(event, at, old)
        state = _State(ids, event.origin, _magnitude(event))
        if old.current is not None and self._same(state, old.current):
            return
        event.event_id = old.event.event_id
        event.version = old.event.version
        old.event, old.pick_ids, old.current = event, ids, state
        old.first_time = min(window[row_of[p]].time for p in ids if p in row_of)
        old.pending = not any(self._same(state, had) for had in old.states)

    def _withdrawn(
        self, key: str, picks: PickSet, row_of: dict[str, int], window: list[_Buffered], at: float
    ) -> list[Event]:
        """An open event not found again whose picks were withdrawn: relocated with the picks it keeps, or
        emitted once more as rejected when they no longer make an event (``min_picks``)."""
        old = self._open[key]
        kept = frozenset(p for p in old.pick_ids if p in row_of)
        if kept == old.pick_ids:
            return []
        if len(kept) < self.associator.config.min_picks:
            del self._open[key]
            self.stats.rejected += 1
            self._count(declared=False)
            return [replace(old.event, version=old.event.version + 1, evaluation_status="rejected")]
        event = self._relocate(picks, old.event.origin, kept, row_of)
        self._revise(key, event, kept, row_of, window, at)
        return []

    def _due(self, at: float, now_wall: float) -> list[Event]:
        """Versions of the open events whose current state was never published, ``min_version_interval_s``
        after their last version."""
        emitted = []
        for o in self._open.values():
            if not o.pending or at - o.emitted_at < self.config.min_version_interval_s:
                continue
            o.event.version += 1
            o.pending = False
            o.emitted_at = at
            assert o.current is not None
            o.states.append(o.current)
            new_picks = o.pick_ids - o.ever
            received = {p: self._picks[p].received for p in new_picks if p in self._picks}
            if received:
                o.last_received = max(received.values())
            o.ever |= o.pick_ids
            self._count(declared=False)
            self._latency(frozenset(received), received, now_wall)
            emitted.append(replace(o.event))
        return emitted

    def _near(self, origin: Origin, claimed: set[str]) -> str | None:
        """The open, unclaimed event whose origin is within ``merge_km`` and ``merge_s`` of ``origin``."""
        for key, open_event in self._open.items():
            if key not in claimed and self._close(open_event.event.origin, origin):
                return key
        return None

    def _close(self, a: Origin, b: Origin) -> bool:
        return _distance_km(a, b) <= self.config.merge_km and abs(a.time - b.time) <= self.config.merge_s

    def _same(self, a: _State, b: _State) -> bool:
        """Whether two states are one: the same picks, origins within the thresholds, the same magnitude."""
        if a.pick_ids != b.pick_ids or self._moved_origin(a.origin, b.origin):
            return False
        if (a.magnitude is None) != (b.magnitude is None):
            return False
        return a.magnitude is None or abs(a.magnitude - b.magnitude) <= self.config.min_magnitude_change

    def _supersede(self) -> list[Event]:
        """Merge open events that are one (same picks, or origins within ``merge_km`` / ``merge_s``): the
        earlier declared keeps its id, the other is emitted once more as rejected and superseded by it."""
        emitted = []
        keys = list(self._open)
        for i, winner in enumerate(keys):
            for loser in keys[i + 1 :]:
                if winner not in self._open or loser not in self._open:
                    continue
                w, lost = self._open[winner], self._open[loser]
                if w.pick_ids != lost.pick_ids and not self._close(w.event.origin, lost.event.origin):
                    continue
                del self._open[loser]
                self._superseded[loser] = winner
                while len(self._superseded) > self.config.remember_final:
                    self._superseded.popitem(last=False)
                gone = replace(
                    lost.event,
                    version=lost.event.version + 1,
                    evaluation_status="rejected",
                    superseded_by=w.event.event_id,
                )
                self.stats.superseded += 1
                self._count(declared=False)
                emitted.append(gone)
        return emitted

    def _best_match(self, ids: frozenset[str], claimed: set[str]) -> str | None:
        best, overlap = None, 0
        for key, open_event in self._open.items():
            if key in claimed:
                continue
            shared = len(ids & open_event.pick_ids)
            if shared > overlap:
                best, overlap = key, shared
        return best

    def _moved(self, old: Event, new: Event) -> bool:
        return self._moved_origin(old.origin, new.origin)

    def _moved_origin(self, a: Origin, b: Origin) -> bool:
        return _distance_km(a, b) > self.config.min_move_km or abs(a.time - b.time) > self.config.min_shift_s

    def _close_before(self, lo: float) -> list[Event]:
        """Make final the open events whose first pick is older than ``lo``; expire older loose picks.

        With ``settle`` each is emitted once more, ``evaluation_status`` "final" (the final versions returned).
        """
        emitted = []
        for key in [k for k, o in self._open.items() if o.first_time < lo]:
            final = self._open.pop(key)
            if self.config.settle:
                last = replace(final.event, version=final.event.version + 1, evaluation_status="final")
                if self.magnitude is not None:  # the whole waveform is in by now
                    last = self._measure(last, lo)
                emitted.append(last)
                self._count(declared=False)
            for pid in final.pick_ids:
                self._picks.pop(pid, None)
                self._final[pid] = None
            self.stats.associated += len(final.pick_ids)
            if self.metrics is not None:
                self.metrics.picks_final.inc(len(final.pick_ids))
        while len(self._final) > self.config.remember_final * 50:
            self._final.popitem(last=False)
        in_open = set().union(*(o.pick_ids for o in self._open.values())) if self._open else set()
        expired = [pid for pid, b in self._picks.items() if b.time < lo and pid not in in_open]
        for pid in expired:
            del self._picks[pid]
        if expired:
            self.stats.no_event += len(expired)
            if self.metrics is not None:
                self.metrics.picks_unassociated.labels("no_event").inc(len(expired))
        return emitted

    def _count_joined(self, events: list[Event]) -> None:
        """Count the picks of published versions that were in none before (``seispick_event_picks_associated``):
        association is seen as it happens, not only when events become final."""
        new = 0
        for event in events:
            if event.evaluation_status == "rejected":
                continue
            for arrival in event.arrivals:
                if arrival.pick_id not in self._joined:
                    self._joined[arrival.pick_id] = None
                    new += 1
        while len(self._joined) > self.config.remember_final * 50:
            self._joined.popitem(last=False)
        self.stats.joined += new
        if new and self.metrics is not None:
            self.metrics.picks_associated.inc(new)

    def _gauges(self) -> None:
        if self.metrics is not None:
            self.metrics.open_events.set(len(self._open))
            self.metrics.buffered_picks.set(len(self._picks))


def _distance_km(a: Origin, b: Origin) -> float:
    return math.hypot(a.x_km - b.x_km, a.y_km - b.y_km, a.depth_km - b.depth_km)


def _magnitude(event: Event) -> float | None:
    return event.magnitude.value if event.magnitude is not None else None
