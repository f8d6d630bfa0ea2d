"""Whether the configured station selectors select anything: a selector that matches nothing is a warning.

Every record received (before the shard filter) is matched once per stream against the ``NET_STA[:CHA]``
selectors of the SeedLink sources; a record skipped undecoded (another shard's station) counts by its station.
With ``serve --workers N`` the workers count and the API process judges their summed counts (``set_counts``). At start-up a replica whose concrete selectors all belong to other
shards (and that has no wildcard selector) is warned about; ``grace_s`` after start, a selector that
has matched no record is logged once and shown as ``no_match`` in ``/v1/stations`` (``selection``).
Other start-up warnings (model patterns that match no model) are kept here too, for the same view.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import obspy

from seispick.seedlink.protocol import Selector, selection_matches
from seispick.seedlink.stream_specs import StreamSpec

log = logging.getLogger(__name__)


@dataclass
class _SelectorState:
    spec: StreamSpec
    selectors: tuple[Selector, ...]
    records: int = 0
    stations: set[str] = field(default_factory=set)
    stations_elsewhere: int = 0  # stations counted by other processes (set_counts)

    def matches(self, network: str, station: str, location: str, channel: str) -> bool:
        return self.spec.matches(network, station) and selection_matches(self.selectors, location, channel)


class SelectionWatch:
    """Per station selector: records and stations it matched; the warnings an operator should see."""

    def __init__(
        self,
        specs: Iterable[StreamSpec],
        owns: Callable[[str, str], bool],
        grace_s: float,
        warnings: Iterable[str] = (),
    ) -> None:
        unique = list(dict.fromkeys(specs))
        self.selectors = [_SelectorState(s, tuple(Selector.parse(x) for x in s.selectors)) for s in unique]
        self.owns = owns
        self.grace_s = grace_s
        self.warnings: list[str] = list(warnings)
        self.started: float | None = None
        self._by_stream: dict[tuple[str, str, str, str], list[_SelectorState]] = {}
        self._by_station: dict[tuple[str, str], list[_SelectorState]] = {}  # concrete selectors
        self._patterns = [s for s in self.selectors if s.spec.wildcard]
        for state in self.selectors:
            if not state.spec.wildcard:
                self._by_station.setdefault((state.spec.network, state.spec.station), []).append(state)
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Log the start-up warnings and check again ``grace_s`` from now."""
        self.started = time.time()
        concrete = [s for s in self.selectors if not s.spec.wildcard]
        if concrete and len(concrete) == len(self.selectors):
            mine = [s for s in concrete if self.owns(s.spec.network, s.spec.station)]
            if not mine:
                self.warnings.append(
                    f"none of the {len(concrete)} selected stations falls in this replica's shard: "
                    "it picks nothing (check streaming.shard_index / shard_count)"
                )
        for warning in self.warnings:
            log.warning("configuration: %s", warning)
        try:
            self._timer = asyncio.get_running_loop().call_later(self.grace_s, self.check)
        except RuntimeError:  # no loop (synchronous use): check() is called by hand
            self._timer = None

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def observe(self, trace: obspy.Trace) -> None:
        """Count a received record for every selector it matches (one lookup per record)."""
        if not self.selectors:
            return
        stats = trace.stats
        key = (stats.network, stats.station, stats.location, stats.channel)
        hits = self._by_stream.get(key)
        if hits is None:
            hits = self._by_stream[key] = [s for s in self._candidates(*key[:2]) if s.matches(*key)]
        for state in hits:
            state.records += 1
            state.stations.add(f"{stats.network}.{stats.station}")

    def observe_station(self, network: str, station: str) -> None:
        """Count a record known only by its station (skipped undecoded): station patterns decide."""
        if not self.selectors:
            return
        key = (network, station, "", None)
        hits = self._by_stream.get(key)
        if hits is None:
            hits = self._by_stream[key] = [
                s for s in self._candidates(network, station) if s.spec.matches(network, station)
            ]
        for state in hits:
            state.records += 1
            state.stations.add(f"{network}.{station}")

    def _candidates(self, network: str, station: str) -> list[_SelectorState]:
        """The selectors that can match NET.STA: its own concrete ones and the patterns."""
        return self._by_station.get((network.upper(), station.upper()), []) + self._patterns

    def counts(self) -> list[tuple[int, int]]:
        """Records and stations each selector matched here, in selector order (for :meth:`set_counts`)."""
        return [(state.records, len(state.stations)) for state in self.selectors]

    def set_counts(self, counts: list[tuple[int, int]]) -> None:
        """Take records and stations observed by other processes (a replica's workers, summed; each counts
        stations disjoint from the others') for the same selectors, in the same order."""
        for state, (records, stations) in zip(self.selectors, counts):
            state.records, state.stations_elsewhere = records, stations

    def check(self) -> list[str]:
        """Warn (once each) about selectors that have matched no record since start."""
        new = []
        for state in self.selectors:
            message = f"selector {state.spec} matched no record in {self.grace_s:g} s"
            if state.records == 0 and self._expected_here(state) and message not in self.warnings:
                new.append(message)
                log.warning("configuration: %s", message)
        self.warnings += new
        return new

    def _expected_here(self, state: _SelectorState) -> bool:
        return state.spec.wildcard or self.owns(state.spec.network, state.spec.station)

    def state(self, now: float | None = None) -> dict:
        """JSON-ready: each selector's state (matched, waiting, no_match, other_shard) and the warnings."""
        now = time.time() if now is None else now
        waited = self.started is not None and now - self.started >= self.grace_s
        rows = []
        for state in self.selectors:
            if state.records:
                status = "matched"
            elif not self._expected_here(state):
                status = "other_shard"
            else:
                status = "no_match" if waited else "waiting"
            rows.append(
                {"selector": str(state.spec), "state": status, "records": state.records,
                 "stations": len(state.stations) + state.stations_elsewhere}
            )  # fmt: skip
        return {"selectors": rows, "warnings": list(self.warnings)}
