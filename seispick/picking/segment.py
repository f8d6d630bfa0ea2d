"""The picking core: windows, stacking and triggers over one gap-free segment on the absolute sample grid.

A ``SegmentPicker`` is told how far data reach (``extend``) and where the segment ends (``close``) and answers
with the windows to run (``WindowPlacement``: head, grid and tail windows). Window outputs come back in any
order (``result``/``results``). A picker's per-sample outputs are stacked (``Stack``); a detector's per-window
outputs are kept as they are. Samples are final once no window that could still cover them is missing; final
samples run through the triggers (``TriggerSet``) and final windows through ``WindowRuns``, in order, so
every pick and detection is emitted exactly once, when nothing can change it any more.

With ``preliminary`` the stream also gets a first look (``take_updates``): after each output the samples
stacked so far past the final ones (partly stacked: not every window covering them is back yet) run
through a copy of the triggers; a phase trigger there that overlaps no earlier preliminary pick is a
``preliminary`` pick. Once final, each pick is ``confirmed`` (naming the preliminary ids it supersedes
when its peak moved) and a preliminary pick no final pick overlaps is ``rejected``. This reads the stack
the core holds anyway (no extra inference) and leaves the final picks unchanged.

With ``first_look`` (samples, below the stride; ``preliminary`` only) the stream also runs extra windows
ending at the newest data: whenever the ready data pass a multiple of ``first_look`` (absolute samples) that no
window cut so far reaches, ``first_look_window`` names one window ending there. Its output (``look_result``)
goes to a stack of its own that only the first look reads (added to the partial stack, so samples no regular
window covered yet are looked at too); the stack of the final picks never sees it.

Batch annotation (``annotate``) drives it with a whole segment: close at its end, all outputs, one ``advance``.
The stream (``records.InstrumentPicker``) drives it record by record. Indices are absolute samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from seispick.models.card import ModelCard
from seispick.picking.results import (
    CONFIRMED,
    PRELIMINARY,
    REJECTED,
    Detection,
    Pick,
    PickContext,
    PickUpdate,
)
from seispick.picking.stacking import Stack
from seispick.picking.trigger import EVENT, Triggered, TriggerSet, WindowRun, WindowRuns
from seispick.picking.windowing import WindowPlacement

NOISE = 0  # a detector's noise class (column 0 of its output)


def grid_clock(sampling_rate: float, time_offset: float = 0.0) -> Callable[[int], float]:
    """Epoch seconds of absolute sample index ``i``: ``i / sampling_rate + time_offset``."""
    return lambda index: index / sampling_rate + time_offset


@dataclass(frozen=True)
class CoreSettings:
    """How a model's windows are placed, combined and triggered, and the names its picks carry."""

    card: ModelCard
    model: str
    model_sha256: str = ""
    thresholds: dict[str, float] = field(default_factory=dict)
    stacking: str = "avg"
    stride: int = 0
    # for instruments that recorded no horizontal component (the card's vertical_only_thresholds)
    vertical_only_thresholds: dict[str, float] = field(default_factory=dict)
    off_ratios: dict[str, float] = field(default_factory=dict)  # per phase; the card's trigger_off_ratios

    @classmethod
    def of(
        cls,
        card: ModelCard,
        model: str,
        model_sha256: str = "",
        thresholds: dict[str, float] | None = None,
        stacking: str | None = None,
        overlap: int | None = None,
        off_ratios: dict[str, float] | None = None,
    ) -> CoreSettings:
        """The card's defaults, overridden by what is given; refuses an overlap that leaves no stride."""
        overlap = card.overlap_samples if overlap is None else overlap
        if not 0 <= overlap < card.window_samples:
            raise ValueError(
                f"overlap must be between 0 and {card.window_samples - 1} samples, got {overlap}"
            )
        return cls(
            card=card,
            model=model,
            model_sha256=model_sha256,
            thresholds={**card.default_thresholds, **(thresholds or {})},
            stacking=stacking or card.stacking,
            stride=card.window_samples - overlap,
            # thresholds given explicitly apply to every instrument
            vertical_only_thresholds={
                **card.default_thresholds,
                **card.vertical_only_thresholds,
                **(thresholds or {}),
            },
            off_ratios={**card.trigger_off_ratios, **(off_ratios or {})},
        )

    def thresholds_for(self, vertical_only: bool) -> dict[str, float]:
        """The thresholds of an instrument with (or, ``vertical_only``, without) horizontal components."""
        return (
            self.vertical_only_thresholds
            if vertical_only and self.vertical_only_thresholds
            else self.thresholds
        )

    @property
    def window(self) -> int:
        return self.card.window_samples

    @property
    def per_window(self) -> bool:
        """Whether the model answers one class vector per window (a detector) instead of per-sample traces."""
        return self.card.task == "detector"


@dataclass
class _Preliminary:
    """A published preliminary pick and the samples its trigger spans so far (absolute, inclusive)."""

    label: str
    on: int
    off: int
    pick: Pick

    def overlaps(self, t: Triggered) -> bool:
        return self.label == t.label and self.on <= t.off and t.on <= self.off


class SegmentPicker:
    """Windows, stacking and triggers over one segment starting at absolute sample ``start``.

    ``time_of(i)`` gives the epoch seconds of absolute sample ``i``. With ``keep`` a picker's final stacked
    probabilities are kept for ``probabilities``; without it they are dropped once triggered, so the memory
    held is about one window plus one stride. A detector's window outputs are dropped once merged.
    With ``preliminary`` (pickers only) the pick updates of the module docstring collect for ``take_updates``;
    ``first_look`` (samples, 0 < first_look < stride) adds the first-look windows of the module docstring.
    """

    def __init__(
        self,
        settings: CoreSettings,
        trace_id: str,
        start: int,
        time_of: Callable[[int], float],
        keep: bool = False,
        capacity: int = 0,
        preliminary: bool = False,
        first_look: int = 0,
        vertical_only: bool | Callable[[], bool] = False,
    ) -> None:
        self.settings = settings
        self._vertical_only = vertical_only  # resolved when the triggers are first needed
        self._triggers: TriggerSet | None = None
        self.preliminary = preliminary and not settings.per_window
        if first_look and not 0 < first_look < settings.stride:
            raise ValueError(
                f"first_look must be between 1 and {settings.stride - 1} samples, got {first_look}"
            )
        self.first_look = first_look if self.preliminary else 0
        self.ready_end = start  # data of every awaited component reach here (exclusive)
        self.look_end = start  # the end of the latest first-look window cut
        self.looking: set[int] = set()  # first-look windows out (absolute starts)
        self.open_preliminary: list[_Preliminary] = []  # published, not yet confirmed or rejected
        self.updates: list[PickUpdate] = []
        self.start = start
        self.keep = keep
        self.context = PickContext(trace_id, settings.model, settings.model_sha256, time_of)
        self.placement = WindowPlacement(start, settings.window, settings.stride)
        self.pending: set[int] = set()
        self.any_end = start  # data of some component reach here (exclusive)
        self.final_until = start  # samples before this are final and triggered
        card, thresholds = settings.card, settings.thresholds
        if settings.per_window:
            self.windows: dict[int, np.ndarray] = {}  # returned window outputs not yet final
            self.runs = WindowRuns(thresholds.get("detection", 0.5), settings.window)
        else:
            self.stack = Stack(len(card.labels), settings.stacking, start, capacity)
            self.kept: list[np.ndarray] = []
            self.looks = Stack(len(card.labels), settings.stacking, start)  # first-look window outputs

    @property
    def triggers(self) -> TriggerSet:
        """The phase triggers, at the thresholds of the card for an instrument with horizontals or, when it
        recorded only a vertical (``vertical_only``, asked once the first samples are triggered: a stream
        knows its components by then), ``vertical_only_thresholds``."""
        if self._triggers is None:
            v = self._vertical_only
            vertical_only = v() if callable(v) else v
            self._triggers = TriggerSet(
                self.settings.card.labels,
                self.settings.thresholds_for(vertical_only),
                self.settings.off_ratios,
            )
        return self._triggers

    # -- windows -----------------------------------------------------------------------------------------------
    def extend(self, ready_end: int, any_end: int | None = None) -> np.ndarray:
        """Data of every awaited component reach ``ready_end`` and of some component ``any_end`` (default the
        same): absolute starts of the windows now to run."""
        self.any_end = max(self.any_end, ready_end if any_end is None else any_end)
        self.ready_end = max(self.ready_end, ready_end)
        return self._formed(self.placement.extend(ready_end))

    def first_look_window(self) -> int | None:
        """The absolute start of the first-look window to run now (``first_look`` only), else None: it ends at
        the last multiple of ``first_look`` the ready data reach, when no window cut so far ends there or later."""
        if not self.first_look or self.closed_end is not None:
            return None
        end = self.ready_end - self.ready_end % self.first_look
        last = self.placement.last
        reached = max(self.look_end, self.start if last is None else last + self.settings.window)
        if end <= reached or end - self.settings.window < self.start:
            return None
        self.look_end = end
        self.looking.add(end - self.settings.window)
        return end - self.settings.window

    def close(self, end: int | None = None) -> np.ndarray:
        """The segment ends at ``end`` (default: where some component's data end): the windows still to run."""
        end = self.any_end if end is None else end
        self.any_end = max(self.any_end, end)
        return self._formed(self.placement.close(end))

    def _formed(self, starts: np.ndarray) -> np.ndarray:
        self.pending.update(starts.tolist())
        return starts

    @property
    def closed_end(self) -> int | None:
        return self.placement.closed_end

    @property
    def done(self) -> bool:
        """Closed, every window back, everything final and triggered."""
        return self.closed_end is not None and not self.pending and self.final_until >= self.closed_end

    def needed_from(self) -> int:
        """The first absolute sample a window still to be formed may need (data before it can be dropped)."""
        earliest = self.placement.earliest_future(self.any_end)
        needed = self.any_end if earliest is None else earliest
        if self.first_look and self.closed_end is None:  # the next first-look window ends here or later
            look = self.ready_end - self.ready_end % self.first_look - self.settings.window
            needed = min(needed, max(look, self.start))
        return needed

    # -- outputs -----------------------------------------------------------------------------------------------
    def result(self, start: int, output: np.ndarray) -> list[Pick | Detection]:
        """One window's output: (classes, window) of a picker or (classes,) of a detector. Returns the picks
        and detections that became final."""
        return self.results([start], [output])

    def results(self, starts, outputs) -> list[Pick | Detection]:
        """Several windows' outputs at once (e.g. all of a segment); returns what became final."""
        for start, output in zip(np.asarray(starts).tolist(), outputs):
            if start not in self.pending:
                continue  # not ours, or already stacked
            self.pending.discard(start)
            if self.settings.per_window:
                self.windows[start] = output
            else:
                self.stack.add(start, output)
        return self.advance()

    def _final_limit(self) -> int:
        earliest = self.placement.earliest_future(self.any_end)
        limit = self.closed_end if earliest is None else earliest
        return min(limit, min(self.pending)) if self.pending else limit

    def advance(self) -> list[Pick | Detection]:
        """Trigger what became final; at the segment's end close the open triggers and runs."""
        limit = self._final_limit()
        emitted: list[Pick | Detection] = []
        if limit > self.final_until:
            if self.settings.per_window:
                emitted += self._advance_windows(limit)
            else:
                values = self.stack.final(self.final_until, limit)
                triggered = self.triggers.feed(values, self.final_until)
                emitted += self._resolved(triggered, self.context.emit(triggered), limit)
                if self.keep:
                    self.kept.append(values)
                else:
                    self.stack.drop(limit)
                self.looks.drop(limit)
            self.final_until = limit
        if self.done:
            if self.settings.per_window:
                run = self.runs.close()
                emitted += [self._detection(run)] if run else []
            else:
                triggered = self.triggers.close()
                emitted += self._resolved(triggered, self.context.emit(triggered), None)
        elif self.preliminary:
            self._look_ahead()
        return emitted

    # -- preliminary picks (stream) ----------------------------------------------------------------------------
    def take_updates(self) -> list[PickUpdate]:
        """The pick updates collected since the last call (``preliminary`` only), in order."""
        updates, self.updates = self.updates, []
        return updates

    def _resolved(
        self, triggered: list[Triggered], emitted: list[Pick | Detection], final_until: int | None
    ) -> list[Pick | Detection]:
        """Confirm the final picks (``emitted``, one per trigger) and reject the preliminary picks whose
        samples are all final (``final_until``; None: the segment ended) with no final pick over them."""
        if not self.preliminary:
            return emitted
        for t, item in zip(triggered, emitted):
            if t.label == EVENT or not isinstance(item, Pick):
                continue
            matched = [p for p in self.open_preliminary if p.overlaps(t)]
            self.open_preliminary = [p for p in self.open_preliminary if p not in matched]
            superseded = tuple(sorted({p.pick.id for p in matched} - {item.id}))
            self.updates.append(PickUpdate(CONFIRMED, item, superseded))
        for p in list(self.open_preliminary):
            on = None if final_until is None else self.triggers.open_on(p.label)
            if final_until is None or (p.off < final_until and (on is None or on > p.off)):
                self.open_preliminary.remove(p)
                self.updates.append(PickUpdate(REJECTED, p.pick))
        return emitted

    def set_preliminary(self, preliminary: bool, first_look: int = 0, look_from: int | None = None) -> None:
        """Turn the pick updates (and first-look windows) on or off mid-segment (a shadow model promoted to
        live, or the live model demoted). On: the next output's look-ahead publishes the triggers stacked past
        the final samples; a pick final before any preliminary one of it is confirmed superseding nothing.
        First-look windows start no earlier than ``look_from`` (the first sample still held). Off: the open
        preliminary picks are forgotten (no confirmed or rejected update for them) and first-look outputs
        still out are ignored."""
        self.preliminary = preliminary and not self.settings.per_window
        self.first_look = first_look if self.preliminary else 0
        if self.first_look:
            self.look_end = max(self.look_end, self.ready_end - self.ready_end % self.first_look)
            if look_from is not None:
                self.look_end = max(self.look_end, look_from + self.settings.window - 1)
        if not self.preliminary:
            self.open_preliminary, self.updates = [], []

    def look_result(self, start: int, output: np.ndarray) -> None:
        """A first-look window's output (``first_look_window``): stacked for the first look only."""
        if start not in self.looking:
            return  # not ours
        self.looking.discard(start)
        if not self.preliminary:
            return  # turned off since (set_preliminary)
        skip = max(self.looks.base - start, 0)  # samples already final
        if self.done or skip >= output.shape[-1]:
            return
        self.looks.add(start + skip, output[:, skip:])
        self._look_ahead()

    def _look_ahead(self) -> None:
        """Trigger a copy over the samples stacked past the final ones, first-look windows included (up to the
        first sample no window covered yet); publish the phase triggers no preliminary pick overlaps yet."""
        stack = self.stack
        a = self.final_until - stack.base
        sums, count = stack.sums[:, a:], stack.count[a:]
        if self.looks.count.size:
            sums, count = self._with_looks(sums, count)
        holes = np.flatnonzero(count == 0)
        n = int(holes[0]) if holes.size else count.size
        if n == 0:
            return
        sums = sums[:, :n]
        values = sums / count[:n] if stack.method == "avg" else sums
        for t in self.triggers.provisional(values, self.final_until):
            matched = [p for p in self.open_preliminary if p.overlaps(t)]
            for p in matched:
                p.on, p.off = min(p.on, t.on), max(p.off, t.off)
            if not matched:
                pick = self.context.pick(t)
                self.open_preliminary.append(_Preliminary(t.label, t.on, t.off, pick))
                self.updates.append(PickUpdate(PRELIMINARY, pick))

    def _with_looks(self, sums: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The partial stack's sums and counts from ``final_until`` on with the first-look windows added."""
        looks = self.looks
        b = self.final_until - looks.base
        extra_sums, extra_count = looks.sums[:, b:], looks.count[b:]
        n = max(count.size, extra_count.size)
        out = np.full((sums.shape[0], n), -np.inf if looks.method == "max" else 0.0, np.float32)
        out[:, : count.size] = sums
        part = out[:, : extra_count.size]
        if looks.method == "max":
            np.maximum(part, extra_sums, out=part)
        else:
            part += extra_sums
        total = np.zeros(n, np.float32)
        total[: count.size] = count
        total[: extra_count.size] += extra_count
        return out, total

    def _advance_windows(self, limit: int) -> list[Detection]:
        starts = sorted(s for s in self.windows if s < limit)
        outputs = [self.windows.pop(s) for s in starts]
        scores = 1.0 - np.asarray([o[NOISE] for o in outputs], dtype=np.float32).reshape(-1)
        return [self._detection(run) for run in self.runs.feed(starts, scores, outputs)]

    def _detection(self, run: WindowRun) -> Detection:
        return self.context.window_detection(run, self.settings.window, self.closed_end)

    # -- kept output (batch) -----------------------------------------------------------------------------------
    @property
    def probabilities(self) -> np.ndarray:
        """Final stacked probabilities (classes, samples) from the segment start (``keep`` only)."""
        if not self.kept:
            return np.zeros((len(self.settings.card.labels), 0), np.float32)
        return self.kept[0] if len(self.kept) == 1 else np.concatenate(self.kept, axis=1)

    @property
    def nbytes(self) -> int:
        """Bytes held in stacking buffers."""
        if self.settings.per_window:
            return sum(o.nbytes for o in self.windows.values())
        return self.stack.nbytes
