"""Request bodies to ObsPy Streams: waveform bytes, multipart file uploads and JSON samples.

Waveform bytes (the body, or each multipart part) go through the one input path the CLI uses,
``seispick.picking.waveforms.read_waveform_bytes``: gzip/bzip2/xz unpacked, the format sniffed with ObsPy's own
checks and read by name, so miniSEED, SAC and the other formats ObsPy reads are accepted in every
waveform content type. Anything else is a 4xx that says what the body looks like and what is accepted.

Everything here is blocking and CPU-bound; the router calls ``decode_body`` through ``asyncio.to_thread``.
Clients never name files: only bytes from the body are read.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import replace

import numpy as np
import obspy
from obspy.core.util.base import ENTRY_POINTS
from pydantic import ValidationError
from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header

from seispick.picking.waveforms import (
    FORMAT_LABELS,
    InputLimits,
    LimitExceededError,
    WaveformFormatError,
    compression_of,
    describe_bytes,
    read_waveform_bytes,
    sniff_format,
)
from seispick.service.api.schemas import WaveformJsonBody
from seispick.service.errors import BadBody, InvalidInput, TooLarge, UnsupportedMediaType

FILES_FIELD = "files"
# Waveform bytes: each of these is read by sniffing (miniSEED, SAC, ... plain or compressed).
WAVEFORM_TYPES = frozenset(
    {
        "application/vnd.fdsn.mseed",
        "application/octet-stream",
        "application/x-sac",
        "application/gzip",
        "application/x-gzip",
        "application/x-bzip2",
        "application/x-xz",
    }
)
JSON_TYPES = frozenset({"application/json"})
MULTIPART_TYPE = "multipart/form-data"
ACCEPTED = sorted(WAVEFORM_TYPES | JSON_TYPES | {MULTIPART_TYPE})
# curl's Content-Type for --data-binary without -H: read as waveforms when the body is waveform bytes (a note says so).
FORM_TYPE = "application/x-www-form-urlencoded"
EMPTY_BODY = (
    "the request body is empty: send miniSEED/SAC/... with --data-binary @file (curl), or JSON samples as "
    "application/json"
)
# Compressed waveform bodies may unpack to this many times the body limit (the duration limit still applies).
UNPACK_FACTOR = 8
WHAT_TO_SEND = (
    "send waveforms (miniSEED, SAC or another format ObsPy reads, plain or gzip/bzip2/xz-compressed) as "
    "application/vnd.fdsn.mseed or application/octet-stream, several files as multipart/form-data "
    f"(field '{FILES_FIELD}'), or JSON samples as application/json"
)
# Beyond this the float32 normalisation overflows (squares in the std) into inf/NaN; real counts stay far below.
MAX_ABS_SAMPLE = 1e15
# Codes are joined with "." into ids downstream, so a "." (or a space / control byte) cannot be accepted.
_CODE = re.compile(r"[!-\-/-~]*")


def bare_media_type(content_type: str | None) -> str:
    """The bare, lower-case media type of a Content-Type header ('' when missing)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def media_type(content_type: str | None) -> str:
    """The bare media type of a Content-Type header; 415 unless it is one the service reads."""
    kind = bare_media_type(content_type)
    if kind not in ACCEPTED:
        raise unsupported_media_type(kind)
    return kind


def unsupported_media_type(kind: str, body: bytes | None = None) -> UnsupportedMediaType:
    """The 415 for ``kind``, saying what ``body`` (when read) looks like and what to send."""
    shown = f"content type {kind!r}" if kind else "a missing content type (no Content-Type header)"
    looks = f"; the body looks like {describe_bytes(body)}" if body is not None else ""
    return UnsupportedMediaType(f"unsupported {shown}{looks}; {WHAT_TO_SEND} ({', '.join(ACCEPTED)})")


def waveform_look(body: bytes) -> str | None:
    """What waveform format ``body`` holds (``miniSEED``, ``gzip-compressed SAC``...), None when it holds none."""
    looks = describe_bytes(body)
    inner = looks
    while inner.split(" ", 1)[0] in {"gzip-compressed", "bzip2-compressed", "xz-compressed"}:
        inner = inner.split(" ", 1)[1]
    return looks if inner in _WAVEFORM_LABELS else None


_WAVEFORM_LABELS = frozenset(FORMAT_LABELS.get(name, name) for name in [*ENTRY_POINTS["waveform"], "MSEED3"])


def form_note(looks: str) -> str:
    """The note of a waveform body sent as ``FORM_TYPE``."""
    return (
        f"the body came as {FORM_TYPE} (curl's default for --data-binary) and was read as {looks}, the format "
        "its bytes hold; send it as application/vnd.fdsn.mseed (-H 'Content-Type: application/vnd.fdsn.mseed')"
    )


def decode_body(
    body: bytes,
    content_type: str,
    max_duration_s: float,
    max_body_bytes: int | None = None,
    limits: InputLimits | None = None,
) -> obspy.Stream:
    """Decode a request body by its content type and check what it holds; raises ``ServiceError``s.

    ``max_body_bytes`` bounds what compressed waveforms may unpack to (``UNPACK_FACTOR`` times it); ``limits``
    the samples (from record headers, before decoding), traces and compressed members (413 naming the setting).
    """
    kind = media_type(content_type)
    if not body:
        raise BadBody(EMPTY_BODY, kind="empty_body")
    max_bytes = max_body_bytes * UNPACK_FACTOR if max_body_bytes else None
    limits = limits or InputLimits()
    if kind in WAVEFORM_TYPES:
        stream = read_waveforms_body(body, "the body", max_bytes, limits)
    elif kind == MULTIPART_TYPE:
        stream = read_multipart(body, content_type, max_bytes, limits)
    else:
        stream = read_json(body)
    check_stream(stream, max_duration_s, limits)
    return stream


def read_waveforms_body(
    data: bytes, name: str, max_bytes: int | None = None, limits: InputLimits | None = None
) -> obspy.Stream:
    """Waveform bytes to a Stream through the one input path; 400 (413 when they unpack too large or pass a
    limit of ``limits``)."""
    try:
        return read_waveform_bytes(data, name, max_bytes=max_bytes, limits=limits)
    except LimitExceededError as error:
        raise TooLarge(str(error), kind=error.limit) from None
    except WaveformFormatError as error:
        if error.kind == "too_large":
            raise TooLarge(str(error), kind="too_large") from None
        raise BadBody(str(error), kind="empty_body" if error.kind == "empty" else error.kind) from None


def read_multipart(
    body: bytes, content_type: str, max_bytes: int | None = None, limits: InputLimits | None = None
) -> obspy.Stream:
    """Every part named ``files`` read as waveform bytes and merged into one Stream (``limits`` count the
    samples of all parts together)."""
    limits = limits or InputLimits()
    stream = obspy.Stream()
    files = parse_multipart(body, content_type)
    uploads = [(filename, data) for field, filename, data in files if field == FILES_FIELD]
    if not uploads:
        fields = sorted({field for field, _, _ in files}) or ["none"]
        raise BadBody(
            f"the multipart body has no '{FILES_FIELD}' part (parts found: {', '.join(fields)})",
            kind="multipart",
        )
    for index, (filename, data) in enumerate(uploads):
        name = f"file {filename!r}" if filename else f"file #{index + 1}"
        if not data:
            raise BadBody(f"{name} is empty", kind="empty_body")
        before = sum(trace.stats.npts for trace in stream)
        stream += read_waveforms_body(data, name, max_bytes, replace(limits, samples_before=before))
    return stream


def parse_multipart(body: bytes, content_type: str) -> list[tuple[str, str, bytes]]:
    """(field name, file name, bytes) of each part of a multipart/form-data body."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise BadBody("multipart/form-data without a boundary parameter", kind="multipart")
    parts: list[tuple[str, str, bytes]] = []
    state: dict = {"headers": {}, "field": b"", "value": b"", "chunks": [], "ended": False}

    def on_part_begin() -> None:
        state["headers"], state["chunks"] = {}, []

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["chunks"].append(data[start:end])

    def on_part_end() -> None:
        _, disposition = parse_options_header(state["headers"].get(b"content-disposition", b""))
        field = disposition.get(b"name", b"").decode("utf-8", "replace")
        filename = disposition.get(b"filename", b"").decode("utf-8", "replace")
        parts.append((field, filename, b"".join(state["chunks"])))

    def on_end() -> None:
        state["ended"] = True

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
        "on_end": on_end,
    }
    try:
        parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except (MultipartParseError, ValueError) as error:
        raise BadBody(f"malformed multipart body: {error}", kind="multipart") from None
    if not state["ended"]:
        raise BadBody("malformed multipart body: it ends before the closing boundary", kind="multipart")
    return parts


def read_json(body: bytes) -> obspy.Stream:
    """A station object (or a list of them) with samples per component, as a Stream."""
    try:
        parsed = WaveformJsonBody.model_validate_json(body)
    except ValidationError as error:
        raise _json_error(error, body) from None
    stations = parsed.stations()
    if not stations:
        raise InvalidInput("the JSON body is an empty list; send at least one station object")
    stream = obspy.Stream()
    for station in stations:
        try:
            stream += station.to_stream()
        except (ValueError, OverflowError) as error:  # ObsPy's own checks on times and rates
            raise InvalidInput(f"station {station.network}.{station.station}: {error}") from None
    return stream


def _json_error(error: ValidationError, body: bytes) -> BadBody | InvalidInput:
    """400 for JSON that does not parse (saying what the body looks like), 422 (with the first few problems)
    for JSON that does not validate."""
    problems = error.errors(include_url=False, include_input=False)
    if any(p["type"] == "json_invalid" for p in problems):
        message = next(p["msg"] for p in problems if p["type"] == "json_invalid")
        looks = describe_bytes(body)
        hint = "" if looks.startswith("JSON") else f"; the body looks like {looks}"
        if compression_of(body) or sniff_format(body):
            hint += " (waveform bytes go as application/vnd.fdsn.mseed)"
        return BadBody(f"the body is not valid JSON: {message}{hint}", kind="json")
    # A union of object and list reports both branches; show the object branch's errors first.
    problems.sort(key=lambda p: 0 if p["loc"] and p["loc"][0] == "WaveformJson" else 1)
    shown = []
    for problem in problems[:5]:
        loc = ".".join(str(part) for part in problem["loc"][1:] if part != "WaveformJson") or "body"
        shown.append(f"{loc}: {problem['msg']}")
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return InvalidInput("invalid JSON waveform body: " + "; ".join(shown) + more)


def check_stream(stream: obspy.Stream, max_duration_s: float, limits: InputLimits | None = None) -> None:
    """Reject unusable codes and more data than ``max_duration_s`` (and ``limits``: samples, traces) allows.

    Duration counts, per instrument (network, station, location, band and instrument code), the time its
    traces cover, summed over instruments: 60 s of a 3-component station is 60 s. Channel-seconds may not
    exceed three times the limit, which bounds duplicated or many-component uploads.
    """
    if limits is not None:
        try:
            limits.check("max_samples", sum(trace.stats.npts for trace in stream), "samples in the request")
            limits.check("max_segments", len(stream), "traces in the request")
        except LimitExceededError as error:
            raise TooLarge(str(error), kind=error.limit) from None
    covered: dict[str, list[tuple[float, float]]] = defaultdict(list)
    channel_seconds = 0.0
    for trace in stream:
        stats = trace.stats
        for label, code in (
            ("network", stats.network),
            ("station", stats.station),
            ("location", stats.location),
            ("channel", stats.channel),
        ):
            if not _CODE.fullmatch(code):
                raise InvalidInput(
                    f"trace {trace.id!r}: {label} code {code!r} holds a '.', a space or a non-ASCII character",
                    kind="codes",
                )
        _check_magnitude(trace)
        rate = float(stats.sampling_rate)
        if stats.npts == 0 or not np.isfinite(rate) or rate <= 0:
            continue  # ignored later, with a note
        seconds = stats.npts / rate
        channel_seconds += seconds
        start = stats.starttime.timestamp
        covered[f"{stats.network}.{stats.station}.{stats.location}.{stats.channel[:-1]}"].append(
            (start, start + seconds)
        )
    total = sum(_union_length(spans) for spans in covered.values())
    if total > max_duration_s:
        raise TooLarge(
            f"the request holds {total:.1f} s of waveform (summed over instruments), over the limit of "
            f"{max_duration_s:g} s; split it into several requests",
            kind="duration",
        )
    if channel_seconds > 3 * max_duration_s:
        raise TooLarge(
            f"the request holds {channel_seconds:.1f} channel-seconds, over the limit of "
            f"{3 * max_duration_s:g} (three channels times {max_duration_s:g} s)",
            kind="duration",
        )


def _check_magnitude(trace: obspy.Trace) -> None:
    data = np.asarray(trace.data)
    if data.size == 0 or not np.issubdtype(data.dtype, np.number):
        return
    peak = float(np.max(np.abs(data[np.isfinite(data)]), initial=0.0))
    if peak > MAX_ABS_SAMPLE:
        raise InvalidInput(
            f"trace {trace.id!r}: sample values reach {peak:.3g}; at most {MAX_ABS_SAMPLE:g} in magnitude is accepted",
            kind="sample_range",
        )


def _union_length(spans: list[tuple[float, float]]) -> float:
    total = 0.0
    end = -np.inf
    for start, stop in sorted(spans):
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total
