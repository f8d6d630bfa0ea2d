"""Agreement of a shadow model with the live model: the same arrivals picked, or only by one of them.

Two pick lists are matched per instrument (``trace_id``) and phase: a live pick and a shadow pick whose peak
times are at most ``tolerance`` (0.1 s) apart can match, each pick at most once, the nearest pairs first
(ties: the earlier live pick, then the earlier shadow pick). Every pick is then one outcome, counted per
(network, phase): ``matched`` (a pair counts once), ``only_live`` or ``only_shadow``.

:func:`compare` does it for two complete lists (offline: ``annotate`` of both models on the same data).
:class:`AgreementTracker` does the same for picks as they come (the service's shadow models): it holds them
until no pick still to come can change their outcome (``settle``), so its counts equal :func:`compare` of the
same picks. Nothing here reads clocks or does I/O; the caller passes the times.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from obspy import UTCDateTime

TOLERANCE_S = 0.1
OUTCOMES = ("matched", "only_live", "only_shadow")
Side = Literal["live", "shadow"]
Counts = dict[tuple[str, str], dict[str, int]]  # (network, phase) -> outcome -> picks (pairs for matched)
_EPS = 1e-9  # peak times are rounded to the sample: 0.1 s apart is within 0.1 s


class PickLike(Protocol):
    trace_id: str
    phase: str
    peak_time: UTCDateTime


@dataclass(frozen=True)
class Mark:
    """A pick as matching sees it: instrument, phase, peak time (epoch s)."""

    trace_id: str
    phase: str
    time: float

    @property
    def network(self) -> str:
        return self.trace_id.split(".", 1)[0]

    @classmethod
    def of(cls, pick: PickLike) -> Mark:
        return cls(pick.trace_id, pick.phase, float(pick.peak_time.timestamp))


def match_times(
    live: Sequence[float], shadow: Sequence[float], tolerance: float = TOLERANCE_S
) -> list[tuple[int, int]]:
    """One-to-one pairs (live index, shadow index) of times at most ``tolerance`` apart, nearest first (ties:
    the earlier live time, then the earlier shadow time), in the order chosen. Also the matching of
    ``events.catalog_evaluation`` (analyst picks against a model's)."""
    order = sorted(range(len(shadow)), key=lambda j: shadow[j])
    times = [shadow[j] for j in order]
    candidates = []
    for i, t in enumerate(live):
        lo, hi = bisect_left(times, t - tolerance - _EPS), bisect_right(times, t + tolerance + _EPS)
        for k in range(lo, hi):
            j = order[k]
            candidates.append((abs(shadow[j] - t), t, shadow[j], i, j))
    candidates.sort()
    used_live: set[int] = set()
    used_shadow: set[int] = set()
    pairs = []
    for _, _, _, i, j in candidates:
        if i not in used_live and j not in used_shadow:
            used_live.add(i)
            used_shadow.add(j)
            pairs.append((i, j))
    return pairs


def _count(counts: Counts, network: str, phase: str, outcome: str, n: int = 1) -> None:
    if n:
        row = counts.setdefault((network, phase), dict.fromkeys(OUTCOMES, 0))
        row[outcome] += n


def _tally(counts: Counts, live: list[Mark], shadow: list[Mark], tolerance: float) -> None:
    """Count the outcomes of one instrument's and phase's picks (``live`` and ``shadow`` of one group)."""
    if not live and not shadow:
        return
    first = (live or shadow)[0]
    pairs = match_times([m.time for m in live], [m.time for m in shadow], tolerance)
    _count(counts, first.network, first.phase, "matched", len(pairs))
    _count(counts, first.network, first.phase, "only_live", len(live) - len(pairs))
    _count(counts, first.network, first.phase, "only_shadow", len(shadow) - len(pairs))


def compare(live: Iterable[PickLike], shadow: Iterable[PickLike], tolerance: float = TOLERANCE_S) -> Counts:
    """The outcome counts of two complete pick lists, per (network, phase)."""
    groups: dict[tuple[str, str], tuple[list[Mark], list[Mark]]] = {}
    for side, picks in ((0, live), (1, shadow)):
        for pick in picks:
            mark = Mark.of(pick)
            groups.setdefault((mark.trace_id, mark.phase), ([], []))[side].append(mark)
    counts: Counts = {}
    for key in sorted(groups):
        _tally(counts, *groups[key], tolerance)
    return counts


def merge(total: Counts, more: Counts) -> Counts:
    """Add ``more`` into ``total`` (returned)."""
    for (network, phase), row in more.items():
        for outcome, n in row.items():
            _count(total, network, phase, outcome, n)
    return total


def rates(row: dict[str, int]) -> dict[str, float | None]:
    """``live_recall`` = matched / (matched + only_live): the share of the live picks the shadow also makes;
    ``shadow_precision`` = matched / (matched + only_shadow): the share of the shadow's picks the live model
    also makes; ``agreement`` = matched / all outcomes. None where nothing was counted."""
    m, live, shadow = row.get("matched", 0), row.get("only_live", 0), row.get("only_shadow", 0)

    def ratio(a: int, b: int) -> float | None:
        return round(a / b, 6) if b else None

    return {
        "live_recall": ratio(m, m + live),
        "shadow_precision": ratio(m, m + shadow),
        "agreement": ratio(m, m + live + shadow),
    }


@dataclass
class _Held:
    side: Side
    time: float
    arrived: float  # when it was added (the caller's clock, e.g. wall clock)


class AgreementTracker:
    """Picks of the live and of one shadow model as they come; ``settle`` counts those whose outcome is final.

    A group's (instrument, phase) held picks fall into clusters (picks chained by gaps of at most
    ``tolerance``); matching never crosses clusters, so a cluster is counted as :func:`compare` would once no
    pick still to come can join it: when its newest pick was added ``hold_s`` ago (the caller's clock), or
    when both models' newest picks of its instrument are ``hold_s`` (data time) past it.
    """

    def __init__(self, hold_s: float = 120.0, tolerance: float = TOLERANCE_S) -> None:
        self.hold_s = hold_s
        self.tolerance = tolerance
        self.counts: Counts = {}
        self._held: dict[tuple[str, str], list[_Held]] = {}
        self._latest: dict[tuple[str, Side], float] = {}  # (trace_id, side) -> newest peak time added

    @property
    def held(self) -> int:
        """Picks added whose outcome is not counted yet."""
        return sum(len(v) for v in self._held.values())

    def add(self, side: Side, mark: Mark, now: float) -> None:
        self._held.setdefault((mark.trace_id, mark.phase), []).append(_Held(side, mark.time, now))
        key = (mark.trace_id, side)
        self._latest[key] = max(self._latest.get(key, mark.time), mark.time)

    def settle(self, now: float, flush: bool = False) -> Counts:
        """Count every cluster that is final (all with ``flush``); returns what was added to ``counts``."""
        added: Counts = {}
        for (trace_id, phase), held in list(self._held.items()):
            moved = min(
                self._latest.get((trace_id, "live"), -1e30), self._latest.get((trace_id, "shadow"), -1e30)
            )
            held.sort(key=lambda h: h.time)
            keep: list[_Held] = []
            for cluster in self._clusters(held):
                final = (
                    flush
                    or max(h.arrived for h in cluster) <= now - self.hold_s
                    or cluster[-1].time + self.tolerance < moved - self.hold_s
                )
                if not final:
                    keep.extend(cluster)
                    continue
                live = [Mark(trace_id, phase, h.time) for h in cluster if h.side == "live"]
                shadow = [Mark(trace_id, phase, h.time) for h in cluster if h.side == "shadow"]
                _tally(added, live, shadow, self.tolerance)
            if keep:
                self._held[(trace_id, phase)] = keep
            else:
                del self._held[(trace_id, phase)]
        merge(self.counts, added)
        return added

    def _clusters(self, held: list[_Held]) -> list[list[_Held]]:
        """``held`` (sorted by time) split where consecutive picks are more than ``tolerance`` apart."""
        out: list[list[_Held]] = []
        for h in held:
            if out and h.time - out[-1][-1].time <= self.tolerance + _EPS:
                out[-1].append(h)
            else:
                out.append([h])
        return out
