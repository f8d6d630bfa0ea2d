"""Real-time picking: records from any source in, picks and detections out, through the shared micro-batcher.

Each record (an ObsPy Trace) goes to the ``InstrumentPicker`` of its instrument (NET.STA.LOC + band/instrument
code) for every model the stream runs (pickers and detectors side by side, each with its own window, channel
order and rate); the windows it completes go through ``predict`` (the service's micro-batcher, shared with
HTTP requests, one lane per model) and their outputs back to the picker, which emits picks and detections once
final. Instruments that go silent are closed after ``silence_timeout_s`` so the picks at the end of their
data come out too. A component that lags the others is waited for (up to ``late_component_max_bytes`` of
samples per instrument and model), one that stops is zero-filled after ``lag_tolerance_s`` of real-time
streaming (see ``InstrumentPicker``); both with a note in the station's state.

With ``on_update`` every picker also hands out pick updates (``results.PickUpdate``): a ``preliminary`` pick as
soon as the partly stacked probabilities cross the threshold, then ``confirmed`` (the final pick, the same
one ``emit`` gets) or ``rejected``. ``emit`` still gets exactly the final picks and detections. With
``first_look_stride_s`` as well, pickers also run first-look windows ending at the newest data every that many
seconds (on the absolute sample grid, through the same ``predict``), whose outputs feed the preliminary picks
only (see ``picking.segment``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field

import numpy as np
import obspy

from seispick.miniseed.decode import plausible_rate
from seispick.models.inference import OnnxModel
from seispick.picking.grouping import component_index
from seispick.picking.incremental import LATE_COMPONENT_MAX_BYTES, InstrumentPicker, WindowRequest
from seispick.picking.notes import InstrumentNotes, Notes, zero_filled_note
from seispick.picking.results import Detection, Pick, PickUpdate
from seispick.service.stream.overload import BehindMonitor, Lag

log = logging.getLogger(__name__)

Predict = Callable[[str, np.ndarray], Awaitable[np.ndarray]]  # model name, windows -> the model's outputs
EmitCallback = Callable[[Pick | Detection, float], None]  # each final pick or detection, its latency in s
RecordCallback = Callable[[obspy.Trace, float], None]  # each record taken, its data latency in seconds
UpdateCallback = Callable[[PickUpdate, float], None]  # each pick update, its latency in s


@dataclass
class RecordProblems:
    """Records refused, by reason (bounded label set for metrics)."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1


@dataclass
class _Instrument:
    pickers: dict[str, InstrumentPicker]  # model name -> its picker (the first model first)
    rate: float
    last_arrival: float = 0.0  # wall clock (time.time) of the last record
    last_end: float = 0.0  # epoch seconds of the last sample received
    last_latency: float = 0.0  # arrival minus record end, seconds
    best_latency: float = math.inf  # the lowest data latency seen (lag = growth over it)
    rate_changes: int = 0
    notes: InstrumentNotes | None = None  # missing components, gaps, resampling, constant data, clipping

    @property
    def picker(self) -> InstrumentPicker:
        """The first model's picker (its segment and counters describe the instrument)."""
        return next(iter(self.pickers.values()))

    @property
    def open(self) -> bool:
        """Whether some model's picker has an open segment (not closed by a gap or silence)."""
        return any(p.current is not None for p in self.pickers.values())

    @property
    def pending(self) -> int:
        return sum(p.pending for p in self.pickers.values())


def first_look_samples(model: OnnxModel, seconds: float | None) -> int:
    """``streaming.first_look_stride_s`` in ``model``'s samples (0: off); refuses one not below its stride."""
    if not seconds:
        return 0
    card = model.card
    stride = card.window_samples - card.overlap_samples
    samples = int(round(seconds * card.sampling_rate))
    if not 0 < samples < stride:
        raise ValueError(
            f"streaming.first_look_stride_s (--first-look-stride-s, SEISPICK_STREAMING__FIRST_LOOK_STRIDE_S) "
            f"{seconds:g} s must be above 0 and below the stride of model {model.name} "
            f"({stride / card.sampling_rate:g} s), at least one sample ({1 / card.sampling_rate:g} s)"
        )
    return samples


class StreamPicker:
    """Continuous picking for every instrument seen; see the module docstring."""

    def __init__(
        self,
        model: OnnxModel | Sequence[OnnxModel],
        predict: Predict,
        emit: EmitCallback,
        thresholds: dict[str, float] | None = None,
        silence_timeout_s: float = 60.0,
        lag_tolerance_s: float = 60.0,
        on_record: RecordCallback | None = None,
        behind_s: float = 30.0,
        behind_timeout_s: float = 300.0,
        max_in_flight: int = 10_000,
        late_component_max_bytes: int = LATE_COMPONENT_MAX_BYTES,
        on_update: UpdateCallback | None = None,
        first_look_stride_s: float | None = None,
        quiet: Collection[str] = (),
    ) -> None:
        self.models = [model] if isinstance(model, OnnxModel) else list(model)
        if not self.models:
            raise ValueError("the stream needs at least one model")
        self.model = self.models[0]
        self.card = self.model.card
        self.predict = predict
        self.emit = emit
        self.thresholds = thresholds or {}
        self.silence_timeout_s = silence_timeout_s
        self.lag_tolerance_s = lag_tolerance_s
        self.late_component_max_bytes = late_component_max_bytes
        self.on_record = on_record
        self.on_update = on_update
        self.quiet = frozenset(quiet)  # models without pick updates (the shadow models)
        self.first_look = {m.name: first_look_samples(m, first_look_stride_s) for m in self.models}
        self.instruments: dict[str, _Instrument] = {}
        self._components: dict[str, list[int | None]] = {}  # channel letter -> its component in each model
        self.problems = RecordProblems()
        # (instrument, model, start, first look) -> arrival
        self._window_arrival: dict[tuple[str, str, int, bool], float] = {}
        self._tasks: set[asyncio.Task] = set()
        self._watchdog: asyncio.Task | None = None
        self.monitor = BehindMonitor(behind_s=behind_s, timeout_s=behind_timeout_s)
        self.max_in_flight = max_in_flight  # windows in flight beyond which ingest waits (backpressure)
        self.in_flight = 0
        self.held_s = 0.0  # seconds ingest waited for room
        self.dropped_windows = 0  # windows never run (cancelled at stop, inference still failing)
        self._room = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._watchdog = asyncio.create_task(self._close_silent_loop())

    async def stop(self, flush: bool = True, timeout_s: float = 30.0) -> None:
        """Stop; with ``flush`` close every instrument and wait (up to ``timeout_s``) for its last picks."""
        if self._watchdog:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        if flush:
            for name in list(self.instruments):
                self._close(name)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.drain(), timeout_s)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.dropped_windows:
            log.error("stopped with %d window(s) never run (inference still failing)", self.dropped_windows)

    async def drain(self) -> None:
        """Wait until no window is in flight."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- records in --------------------------------------------------------------------------------------------
    async def wait_for_room(self) -> None:
        """Wait while ``max_in_flight`` windows wait for the model: ingest slows down instead of piling up."""
        if self.in_flight < self.max_in_flight:
            return
        start = time.monotonic()
        while self.in_flight >= self.max_in_flight:
            self._room.clear()
            await self._room.wait()
        self.held_s += time.monotonic() - start

    def add_trace(self, trace: obspy.Trace, now: float | None = None) -> None:
        """Take one record (non-blocking): bad records are counted and dropped, never raised."""
        arrival = time.time() if now is None else now
        stats = trace.stats
        rate = float(stats.sampling_rate)
        if not plausible_rate(rate):
            self.problems.add("bad_sampling_rate")
            log.warning("%s: impossible sampling rate %r Hz, record dropped", trace.id, rate)
            return
        channel = stats.channel
        comps = self._components.get(channel[-1:])
        if comps is None:
            letter = channel[-1:].upper()
            comps = self._components[channel[-1:]] = [
                component_index(letter, m.card.channel_order) for m in self.models
            ]
        if all(c is None for c in comps):
            self.problems.add("unknown_component")
            return
        raw = np.asarray(trace.data, dtype=np.float32)
        if raw.size == 0:
            return
        if trace.data.dtype.kind == "f" and not np.isfinite(raw).all():  # integers are always finite
            self.problems.add("non_finite_samples")
            return
        instrument = f"{stats.network}.{stats.station}.{stats.location}.{stats.channel[:-1]}"
        state = self.instruments.get(instrument)
        start_time = stats.starttime.timestamp
        if state is None:
            notes = InstrumentNotes(instrument, self.card.channel_order, self.card.sampling_rate)
            state = self.instruments[instrument] = _Instrument(
                pickers=self._pickers(instrument, start_time), rate=rate, notes=notes
            )
        elif rate != state.rate:
            state.rate_changes += 1
            log.info("%s: sampling rate changed from %g to %g Hz", instrument, state.rate, rate)
            state.rate = rate
        end_time = start_time + (len(raw) - 1) / rate
        state.last_arrival = arrival
        state.last_end = max(state.last_end, end_time)
        state.last_latency = arrival - end_time
        state.best_latency = min(state.best_latency, state.last_latency)
        if state.notes is not None and comps[0] is not None:
            order = self.card.channel_order
            state.notes.observe(order[comps[0]], stats.channel, start_time, rate, np.asarray(trace.data))
        if self.on_record:
            self.on_record(trace, state.last_latency)
        resampled: dict[float, np.ndarray] = {rate: raw}
        for model, comp in zip(self.models, comps):
            if comp is None:
                continue
            model_rate = model.card.sampling_rate
            if model_rate not in resampled:
                resampled[model_rate] = self._resample(trace, raw, model_rate)
            index = int(round(start_time * model_rate))
            picker = state.pickers[model.name]
            requests, emitted = picker.add(comp, index, resampled[model_rate], arrival)
            self._emit(emitted, arrival)
            self._updates(picker, arrival)
            self._submit(instrument, model.name, requests, arrival)

    def _pickers(self, instrument: str, start_time: float) -> dict[str, InstrumentPicker]:
        """One ``InstrumentPicker`` per model, on its model's sample grid."""
        pickers = {}
        for model in self.models:
            rate = model.card.sampling_rate
            pickers[model.name] = InstrumentPicker(
                instrument,
                model.card,
                model.name,
                model.sha256,
                thresholds=self.thresholds,
                time_offset=start_time - int(round(start_time * rate)) / rate,
                lag_tolerance_s=self.lag_tolerance_s,
                max_wait_bytes=self.late_component_max_bytes,
                preliminary=self.on_update is not None and model.name not in self.quiet,
                first_look=self.first_look[model.name]
                if self.on_update is not None and model.name not in self.quiet
                else 0,
            )
        return pickers

    def set_quiet(self, quiet: Collection[str]) -> None:
        """Change which models publish no pick updates (the shadow models, after a promotion): from now on,
        in every instrument's open segments too; nothing else of a picker's state changes."""
        quiet = frozenset(quiet)
        changed, self.quiet = quiet ^ self.quiet, quiet
        if self.on_update is None or not changed:
            return
        for state in self.instruments.values():
            for name, picker in state.pickers.items():
                if name in changed:
                    loud = name not in quiet
                    picker.set_preliminary(loud, self.first_look[name] if loud else 0)

    def _resample(self, trace: obspy.Trace, data: np.ndarray, rate: float) -> np.ndarray:
        self.problems.add("resampled")
        tr = trace.copy()
        tr.data = data.astype(np.float64)
        tr.resample(rate, no_filter=False)
        return tr.data.astype(np.float32)

    # -- windows through the batcher ---------------------------------------------------------------------------
    def _submit(self, instrument: str, model: str, requests: list[WindowRequest], arrival: float) -> None:
        if not requests:
            return
        for r in requests:
            self._window_arrival[(instrument, model, r.start, r.first_look)] = arrival
        self.in_flight += len(requests)
        task = asyncio.create_task(self._run(instrument, model, requests))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, instrument: str, model: str, requests: list[WindowRequest]) -> None:
        try:
            await self._infer(instrument, model, requests)
        except asyncio.CancelledError:  # only stop() cancels: these windows are lost
            self.dropped_windows += len(requests)
            raise
        finally:
            self.in_flight -= len(requests)
            self._room.set()

    async def _infer(self, instrument: str, model: str, requests: list[WindowRequest]) -> None:
        windows = np.stack([r.window for r in requests])
        delay = 0.5
        while True:  # a failing inference loses no window: it waits and is retried (stop() cancels)
            try:
                outputs = await self.predict(model, windows)
                break
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep the stream alive
                log.exception(
                    "%s: inference failed for %d window(s); retrying in %.1f s",
                    instrument,
                    len(windows),
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        picker = self.instruments[instrument].pickers[model]
        for request, output in zip(requests, outputs):
            key = (instrument, model, request.start, request.first_look)
            arrival = self._window_arrival.pop(key, time.time())
            self._emit(picker.result(request.start, output, request.first_look), arrival)
            self._updates(picker, arrival)

    def _emit(self, items: list, arrival: float) -> None:
        if not items:
            return
        latency = time.time() - arrival
        for item in items:
            self.emit(item, latency)

    def _updates(self, picker: InstrumentPicker, arrival: float) -> None:
        """Hand the picker's pick updates to ``on_update`` (when set)."""
        if self.on_update is None:
            return
        updates = picker.take_updates()
        latency = time.time() - arrival
        for update in updates:
            self.on_update(update, latency)

    # -- silence -----------------------------------------------------------------------------------------------
    def _close(self, instrument: str) -> None:
        state = self.instruments[instrument]
        now = time.time()
        for model, picker in state.pickers.items():
            requests, emitted = picker.close()
            self._emit(emitted, now)
            self._updates(picker, now)
            self._submit(instrument, model, requests, now)

    async def _close_silent_loop(self) -> None:
        period = max(min(self.silence_timeout_s / 4, 5.0), 0.05)
        while True:
            await asyncio.sleep(period)
            self.check_behind()
            self.close_silent()

    def close_silent(self, now: float | None = None) -> list[str]:
        """Close instruments whose last record arrived more than ``silence_timeout_s`` ago.

        Not while the job is behind or ingest is held for room: the silence may be our own backlog.
        """
        now = time.time() if now is None else now
        closed: list[str] = []
        if self.monitor.behind or self.in_flight >= self.max_in_flight:
            return closed
        for name, state in self.instruments.items():
            if state.open and now - state.last_arrival > self.silence_timeout_s:
                self._close(name)
                closed.append(name)
        return closed

    # -- overload ----------------------------------------------------------------------------------------------
    def lags(self, now: float | None = None) -> dict[str, Lag]:
        """Lag of every open instrument (see :mod:`seispick.service.stream.overload`)."""
        now = time.time() if now is None else now
        oldest: dict[str, float] = {}
        for (instrument, *_), arrival in self._window_arrival.items():
            oldest[instrument] = min(arrival, oldest.get(instrument, arrival))
        return {
            name: Lag(
                latency_growth=state.last_latency - state.best_latency,
                inference_wait=now - oldest[name] if name in oldest else 0.0,
            )
            for name, state in self.instruments.items()
            if state.open
        }

    def oldest_window_s(self, now: float | None = None) -> float:
        """Seconds the oldest window in flight has waited for the model (0 when none)."""
        now = time.time() if now is None else now
        return max(now - min(self._window_arrival.values()), 0.0) if self._window_arrival else 0.0

    def check_behind(self, now: float | None = None) -> None:
        """Re-judge whether the job is behind (the watchdog does, every few seconds)."""
        now = time.time() if now is None else now
        self.monitor.update(self.lags(now), self.in_flight, self.oldest_window_s(now), now)

    def _state(self, state: _Instrument, lag: Lag | None, now: float) -> str:
        if lag is None:  # closed
            return "silent"
        if self.monitor.is_behind(lag):
            return "behind"
        if now - state.last_arrival <= self.silence_timeout_s:
            return "streaming"
        return "behind" if self.monitor.behind else "silent"

    # -- operator view -----------------------------------------------------------------------------------------
    def station_states(self, now: float | None = None) -> list[dict]:
        """Per instrument: last sample time, data latency, lag, gaps, counters and state."""
        now = time.time() if now is None else now
        lags = self.lags(now)
        out = []
        for name, state in sorted(self.instruments.items()):
            stats = state.picker.stats
            every = [p.stats for p in state.pickers.values()]
            lag = lags.get(name)
            out.append(
                {
                    "trace_id": name,
                    "network": name.split(".")[0],
                    "state": self._state(state, lag, now),
                    "last_sample_time": obspy.UTCDateTime(state.last_end).isoformat() + "Z"
                    if state.last_end
                    else None,
                    "data_latency_s": round(state.last_latency, 3),
                    "lag_s": round(lag.seconds, 3) if lag else 0.0,
                    "seconds_since_last_record": round(now - state.last_arrival, 3),
                    "sampling_rate": state.rate,
                    "sampling_rate_changes": state.rate_changes,
                    "records": stats.records,
                    "samples": stats.samples,
                    "gaps": stats.gaps,
                    "late_records": stats.late_records,
                    "duplicate_records": stats.duplicate_records,
                    "windows": sum(s.windows for s in every),
                    "picks": sum(s.picks for s in every),
                    "detections": sum(s.detections for s in every),
                    "windows_in_flight": state.pending,
                    "late_component_bound_reached": sum(s.late_component_bound_reached for s in every),
                    "notes": self._notes(name, state),
                }
            )
        return out

    @staticmethod
    def _notes(name: str, state: _Instrument) -> list[str]:
        """The instrument's notes on its records, then on the components zero-filled for being late."""
        notes = Notes(list(state.notes.messages) if state.notes is not None else [])
        channels = state.notes.channels if state.notes is not None else {}
        band = name.rsplit(".", 1)[-1]
        for picker in state.pickers.values():
            order = picker.card.channel_order
            for fill in picker.zero_fills:
                letters = [order[c] for c in fill.components]
                codes = [channels[x].code if x in channels else band + x for x in letters]
                notes.add(
                    zero_filled_note(name, codes, fill.time, picker.max_wait_bytes if fill.bound else None)
                )
        return notes.messages

    def final_until(self, instrument: str) -> float | None:
        """Epoch seconds before which every pick and detection of ``instrument`` was emitted, over its
        models; None when it is unknown or none of its segments is open or closing."""
        state = self.instruments.get(instrument)
        times = [] if state is None else [p.final_until() for p in state.pickers.values()]
        known = [t for t in times if t is not None]
        return min(known) if known else None

    def buffer_bytes(self) -> int:
        """Bytes held in sample and stacking buffers across instruments."""
        return sum(p.buffer_bytes() for state in self.instruments.values() for p in state.pickers.values())
