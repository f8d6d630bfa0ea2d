"""Request bodies to ObsPy Streams: raw miniSEED, multipart miniSEED uploads and JSON samples.

Everything here is blocking and CPU-bound; the router calls ``decode_body`` through ``asyncio.to_thread``.
Clients never name files: only bytes from the body are read.
"""

from __future__ import annotations

import io
import re
from collections import defaultdict

import numpy as np
import obspy
from pydantic import ValidationError
from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header

from seispick.service.api.schemas import WaveformJsonBody
from seispick.service.errors import BadBody, InvalidInput, TooLarge, UnsupportedMediaType

MSEED_TYPES = frozenset({"application/vnd.fdsn.mseed", "application/octet-stream"})
JSON_TYPES = frozenset({"application/json"})
MULTIPART_TYPE = "multipart/form-data"
ACCEPTED = sorted(MSEED_TYPES | JSON_TYPES | {MULTIPART_TYPE})
FILES_FIELD = "files"
# Beyond this the float32 normalisation overflows (squares in the std) into inf/NaN; real counts stay far below.
MAX_ABS_SAMPLE = 1e15
# Codes are joined with "." into ids downstream, so a "." (or a space / control byte) cannot be accepted.
_CODE = re.compile(r"[!-\-/-~]*")


def media_type(content_type: str | None) -> str:
    """The bare media type of a Content-Type header; 415 unless it is one the service reads."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind not in ACCEPTED:
        shown = f"content type {kind!r}" if kind else "a missing content type"
        raise UnsupportedMediaType(f"unsupported {shown}; send one of {', '.join(ACCEPTED)}")
    return kind


def decode_body(body: bytes, content_type: str, max_duration_s: float) -> obspy.Stream:
    """Decode a request body by its content type and check what it holds; raises ``ServiceError``s."""
    kind = media_type(content_type)
    if not body:
        raise BadBody("the request body is empty", kind="empty_body")
    if kind in MSEED_TYPES:
        stream = read_mseed(body, "the body")
    elif kind == MULTIPART_TYPE:
        stream = read_multipart(body, content_type)
    else:
        stream = read_json(body)
    check_stream(stream, max_duration_s)
    return stream


def read_mseed(data: bytes, name: str) -> obspy.Stream:
    """miniSEED bytes to a Stream; 400 with ObsPy's reason when they are not miniSEED."""
    try:
        stream = obspy.read(io.BytesIO(data), format="MSEED")
    except Exception as error:  # ObsPy raises many types for corrupt input
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise BadBody(f"{name} is not valid miniSEED: {reason}", kind="mseed") from None
    if len(stream) == 0:
        raise BadBody(f"{name} holds no miniSEED records", kind="mseed")
    return stream


def read_multipart(body: bytes, content_type: str) -> obspy.Stream:
    """Every part named ``files`` read as miniSEED and merged into one Stream."""
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
        stream += read_mseed(data, name)
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
        raise _json_error(error) from None
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


def _json_error(error: ValidationError) -> BadBody | InvalidInput:
    """400 for JSON that does not parse, 422 (with the first few problems) for JSON that does not validate."""
    problems = error.errors(include_url=False, include_input=False)
    if any(p["type"] == "json_invalid" for p in problems):
        message = next(p["msg"] for p in problems if p["type"] == "json_invalid")
        return BadBody(f"the body is not valid JSON: {message}", kind="json")
    # A union of object and list reports both branches; show the object branch's errors first.
    problems.sort(key=lambda p: 0 if p["loc"] and p["loc"][0] == "WaveformJson" else 1)
    shown = []
    for problem in problems[:5]:
        loc = ".".join(str(part) for part in problem["loc"][1:] if part != "WaveformJson") or "body"
        shown.append(f"{loc}: {problem['msg']}")
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return InvalidInput("invalid JSON waveform body: " + "; ".join(shown) + more)


def check_stream(stream: obspy.Stream, max_duration_s: float) -> None:
    """Reject unusable codes and more data than ``max_duration_s`` allows.

    Duration counts, per instrument (network, station, location, band and instrument code), the time its
    traces cover, summed over instruments: 60 s of a 3-component station is 60 s. Channel-seconds may not
    exceed three times the limit, which bounds duplicated or many-component uploads.
    """
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
