"""``seispick pick``: waveform files in (miniSEED, SAC, compressed...), P/S picks out as CSV, JSON or QuakeML.

Files are read through ``seispick.picking.waveforms`` (the HTTP API's input path too); notes on the input (missing
components, gaps, resampling, constant or clipped data) are printed and go into the JSON output. With a
detector (``--model convnetquake-ta109c``) the output is its detections, as CSV or JSON.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import numpy as np
from tqdm import tqdm

from seispick.cli.output_options import output_options
from seispick.models.inference import BACKENDS, ModelLoadError
from seispick.models.registry import ModelRegistry, UnknownModelError
from seispick.picking.annotate import AnnotationJob, AnnotationResult, NoUsableDataError, annotate
from seispick.picking.formats import FORMATS, render, render_detections
from seispick.picking.waveforms import WaveformReadError, read_waveforms


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--model", "-m", default=None, help="Model name or model folder (default: the shipped default)."
)
@click.option("--p-threshold", type=click.FloatRange(0, 1), default=None, help="P probability threshold.")
@click.option("--s-threshold", type=click.FloatRange(0, 1), default=None, help="S probability threshold.")
@click.option(
    "--detection-threshold",
    type=click.FloatRange(0, 1),
    default=None,
    help="Event probability threshold of detections (a detector's, or a picker's 1 - noise in JSON).",
)
@output_options(FORMATS)
@click.option(
    "--plot",
    type=click.Path(path_type=Path),
    default=None,
    help="PNG (or PDF) of waveforms, probabilities and picks, one panel per instrument and stretch; "
    "more pages as NAME-2.png, NAME-3.png, ...",
)
@click.option(
    "--overlap", type=int, default=None, help="Window overlap in samples (default: the model card's)."
)
@click.option(
    "--stacking", type=click.Choice(["avg", "max"]), default=None, help="Stacking of overlapping windows."
)
@click.option("--batch-size", type=click.IntRange(1, 4096), default=32, show_default=True)
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="onnxruntime intra-op threads.")
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="onnxruntime",
    show_default=True,
    help="Inference engine: onnxruntime (the reference) or OpenVINO's CPU plugin in fp32 (pip install "
    "'seispick[openvino]'; the same picks, faster on some CPUs: bench/offline.py).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")
def pick(
    paths: tuple[Path, ...],
    model: str | None,
    p_threshold: float | None,
    s_threshold: float | None,
    detection_threshold: float | None,
    fmt: str,
    output: Path | None,
    plot: Path | None,
    overlap: int | None,
    stacking: str | None,
    batch_size: int,
    threads: int | None,
    backend: str,
    quiet: bool,
) -> None:
    """Pick P and S arrivals in waveform FILES or folders (searched recursively).

    miniSEED, SAC and the other formats ObsPy reads, plain or gzip/bzip2/xz-compressed: the format is
    recognised from the bytes, not the file name. With a detector model (ConvNetQuake) the output is its
    detections: start, end, probability and, where the model has location cells, the cell and its probability.
    """
    try:
        loaded = ModelRegistry().load(model, threads=threads, backend=backend)
    except (UnknownModelError, ModelLoadError) as exc:
        raise click.ClickException(str(exc)) from exc
    detector = loaded.card.task == "detector"
    if detector:
        _check_detector_options(loaded.name, fmt, p_threshold, s_threshold, stacking, plot)
    elif loaded.card.task != "picker":
        raise click.ClickException(f"model {loaded.name} is a {loaded.card.task}, not a picker or detector")
    try:
        read = read_waveforms(list(paths))
    except WaveformReadError as exc:
        raise click.ClickException(str(exc)) from exc
    for problem in read.problems:
        click.echo(f"warning: {problem}", err=True)

    given = {"P": p_threshold, "S": s_threshold, "detection": detection_threshold}
    thresholds = {k: v for k, v in given.items() if v is not None}
    bar = _StationProgress(disable=quiet)
    try:
        if detector:
            from seispick.picking.detect import detect_result

            result = detect_result(
                read.stream, loaded, detection_threshold, batch_size, overlap, progress=bar.update
            )
        else:
            result = annotate(
                read.stream,
                loaded,
                thresholds=thresholds,
                batch_size=batch_size,
                overlap=overlap,
                stacking=stacking,
                progress=bar.update,
            )
    except (NoUsableDataError, ValueError, ArithmeticError, MemoryError) as exc:
        # Data no header check caught (times, rates, sizes): a message naming what failed, not a traceback.
        reason = str(exc) or type(exc).__name__
        raise click.ClickException(
            reason if isinstance(exc, ValueError) else f"cannot pick: {reason}"
        ) from exc
    finally:
        bar.close()
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    if detector:
        extra = {"model": loaded.name, "model_sha256": loaded.sha256, "notes": result.notes}
        _write(render_detections(fmt, result.detections, **extra), output)
        if not quiet:
            _detections_summary(result, len(read.files), output)
        return

    text = render(
        fmt,
        result.picks,
        result.detections,
        segments=[a.segment for a in result.annotations],
        model=loaded.name,
        model_sha256=loaded.sha256,
        notes=result.notes,
    )
    _write(text, output)
    if plot:
        from seispick.cli.pick_plot import plot_annotations

        drawn = plot_annotations(result, loaded.card.labels, plot)
        for note in drawn.notes:
            click.echo(f"note: {note}", err=True)
        if not quiet:
            shown = ", ".join(map(str, drawn.paths[:3])) + (", ..." if len(drawn.paths) > 3 else "")
            click.echo(f"plot: {len(drawn.paths)} file(s): {shown}", err=True)
    if not quiet:
        counts = {phase: sum(p.phase == phase for p in result.picks) for phase in loaded.card.phases}
        summary = ", ".join(f"{phase}: {n}" for phase, n in counts.items())
        stations = len({a.segment.instrument for a in result.annotations})
        click.echo(
            f"{len(result.picks)} picks ({summary}) on {stations} instrument(s) from {len(read.files)} file(s)"
            f" with {loaded.name}" + (f"; wrote {output}" if output else ""),
            err=True,
        )
        if not result.picks:
            click.echo("no probability reached the thresholds: no picks", err=True)
        if result.notes:
            click.echo(f"{len(result.notes)} note(s) on the input above (also in --format json)", err=True)


def _check_detector_options(
    name: str,
    fmt: str,
    p_threshold: float | None,
    s_threshold: float | None,
    stacking: str | None,
    plot: Path | None,
) -> None:
    """Refuse the options that have no meaning for a detector, naming them."""
    if fmt in ("quakeml", "scml"):
        raise click.UsageError(
            f"model {name} is a detector: its detections have no {'QuakeML' if fmt == 'quakeml' else 'SCML'} "
            "form; use --format csv or json"
        )
    if p_threshold is not None or s_threshold is not None:
        raise click.UsageError(
            f"model {name} is a detector: it has no P/S thresholds; use --detection-threshold"
        )
    if stacking is not None:
        raise click.UsageError(f"model {name} is a detector: its windows are classified, not stacked")
    if plot is not None:
        raise click.UsageError(f"model {name} is a detector: --plot draws a picker's probabilities")


def _write(text: str, output: Path | None) -> None:
    if output:
        output.write_text(text)
    else:
        sys.stdout.write(text)


def _detections_summary(result: AnnotationResult, files: int, output: Path | None) -> None:
    instruments = {d.trace_id for d in result.detections}
    click.echo(
        f"{len(result.detections)} detection(s) on {len(instruments)} instrument(s) from {files} file(s) "
        f"with {result.model}" + (f"; wrote {output}" if output else ""),
        err=True,
    )
    if not result.detections:
        click.echo("no window reached the detection threshold: no detections", err=True)


class _StationProgress:
    """A tqdm bar over instruments, advanced as their windows finish."""

    def __init__(self, disable: bool) -> None:
        self.disable = disable
        self.bar: tqdm | None = None
        self.ends: np.ndarray | None = None

    def update(self, job: AnnotationJob, windows_done: int) -> None:
        if self.bar is None:
            instruments = [s.instrument for s in job.segments]
            # last window index of each instrument (segments of one instrument are consecutive)
            last = {}
            for idx, (name, end) in enumerate(zip(instruments, np.cumsum(job.segment_window_counts()))):
                last[name] = (idx, int(end))
            self.ends = np.sort(np.array([end for _, end in last.values()]))
            self.bar = tqdm(
                total=len(last), unit="station", desc="picking", disable=self.disable, file=sys.stderr
            )
        done = int(np.searchsorted(self.ends, windows_done, side="right"))
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
