"""Prometheus metrics of association, on a registry the caller gives (the service registers them on its own)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class EventMetrics:
    """Events declared and updated, picks associated and not (by reason), association latency and step time."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.declared = Counter(
            "seispick_events_declared", "Events declared (first version published)", registry=r
        )
        self.updated = Counter(
            "seispick_events_updated",
            "Event updates published (a later version: picks joined or it moved)",
            registry=r,
        )
        self.picks_associated = Counter(
            "seispick_event_picks_associated",
            "Picks associated: counted once, when a published event version first has them",
            registry=r,
        )
        self.picks_final = Counter(
            "seispick_event_picks_final", "Picks of events that became final (left the window)", registry=r
        )
        self.picks_unassociated = Counter(
            "seispick_event_picks_unassociated",
            "Picks in no event, by reason (no_coordinates, phase, late, no_event, duplicates, overflow)",
            ["reason"],
            registry=r,
        )
        self.latency = Histogram(
            "seispick_association_latency_seconds",
            "From the arrival of an event's last new pick to the publication of the version that first has it",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.step_duration = Histogram(
            "seispick_association_step_duration_seconds",
            "Duration of one live association step",
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.open_events = Gauge(
            "seispick_association_open_events", "Events that may still be updated", registry=r
        )
        self.buffered_picks = Gauge(
            "seispick_association_buffered_picks", "Picks in the association window", registry=r
        )
