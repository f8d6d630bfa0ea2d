"""The picking core: windows, stacking and triggers over one gap-free segment on the absolute sample grid.

A ``SegmentPicker`` is told how far data reach (``extend``) and where the segment ends (``close``) and answers
with the windows to run (``WindowPlacement``: head, grid and tail windows). Window outputs come back in any
order (``result``/``results``). A picker's per-sample outputs are stacked (``Stack``); a detector's per-window
outputs are kept as they are. Samples are final once no window that could still cover them is missing; final
samples run through the triggers (``TriggerSet``) and final windows through ``WindowRuns``, in order, so
every pick and detection is emitted exactly once, when nothing can change it any more.

Batch annotation (``annotate``) drives it with a whole segment: close at its end, all outputs, one ``advance``.
The stream (``records.InstrumentPicker``) drives it record by record. Indices are absolute samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from seispick.models.card import ModelCard
from seispick.picking.results import Detection, Pick, PickContext
from seispick.picking.stacking import Stack
from seispick.picking.trigger import TriggerSet, WindowRun, WindowRuns
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

    @classmethod
    def of(
        cls,
        card: ModelCard,
        model: str,
        model_sha256: str = "",
        thresholds: dict[str, float] | None = None,
        stacking: str | None = None,
        overlap: int | None = None,
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
        )

    @property
    def window(self) -> int:
        return self.card.window_samples

    @property
    def per_window(self) -> bool:
        """Whether the model answers one class vector per window (a detector) instead of per-sample traces."""
        return self.card.task == "detector"


class SegmentPicker:
    """Windows, stacking and triggers over one segment starting at absolute sample ``start``.

    ``time_of(i)`` gives the epoch seconds of absolute sample ``i``. With ``keep`` a picker's final stacked
    probabilities are kept for ``probabilities``; without it they are dropped once triggered, so the memory
    held is about one window plus one stride. A detector's window outputs are dropped once merged.
    """

    def __init__(
        self,
        settings: CoreSettings,
        trace_id: str,
        start: int,
        time_of: Callable[[int], float],
        keep: bool = False,
        capacity: int = 0,
    ) -> None:
        self.settings = settings
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
            self.triggers = TriggerSet(card.labels, thresholds)
            self.kept: list[np.ndarray] = []

    # -- windows -----------------------------------------------------------------------------------------------
    def extend(self, ready_end: int, any_end: int | None = None) -> np.ndarray:
        """Data of every awaited component reach ``ready_end`` and of some component ``any_end`` (default the
        same): absolute starts of the windows now to run."""
        self.any_end = max(self.any_end, ready_end if any_end is None else any_end)
        return self._formed(self.placement.extend(ready_end))

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
        return self.any_end if earliest is None else earliest

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
                emitted += self.context.emit(self.triggers.feed(values, self.final_until))
                if self.keep:
                    self.kept.append(values)
                else:
                    self.stack.drop(limit)
            self.final_until = limit
        if self.done:
            if self.settings.per_window:
                run = self.runs.close()
                emitted += [self._detection(run)] if run else []
            else:
                emitted += self.context.emit(self.triggers.close())
        return emitted

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
