"""``POST /v1/picks``: waveforms in (miniSEED, SAC, compressed, multipart or JSON), picks out.

The answer is JSON, CSV or QuakeML, as ``seispick pick`` writes them. With a detector (``model=
convnetquake-ta109c``) the same route answers its detections (JSON ``detections``, or CSV), as ``seispick pick
--model convnetquake-ta109c`` writes them.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import sys
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.background import BackgroundTask
from starlette.responses import Response

from seispick.models.inference import OnnxModel
from seispick.picking.annotate import AnnotationResult
from seispick.picking.waveforms import InputLimits
from seispick.service.api.batched import BodyPicking
from seispick.service.api.bodies import (
    ACCEPTED,
    EMPTY_BODY,
    FORM_TYPE,
    bare_media_type,
    form_note,
    unsupported_media_type,
    waveform_look,
)
from seispick.service.api.dependencies import BatcherDep, StateDep
from seispick.service.api.responses import TEXT_MEDIA_TYPES, picks_document, text_response
from seispick.service.api.routers import API_PREFIX
from seispick.service.api.schemas import ErrorResponse, PicksQuery, PicksResponse
from seispick.service.api.state import ServiceState
from seispick.service.batcher import MicroBatcher
from seispick.service.errors import BadBody, InvalidInput, RequestTimeout, TooLarge
from seispick.service.settings import Settings

router = APIRouter(prefix=API_PREFIX, tags=["picks"])
# After a request with this many samples at the model rate, freed memory is handed back (``give_back_memory``).
TRIM_AFTER_SAMPLES = 100_000
_LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if sys.platform.startswith("linux") else None

_BINARY = {"schema": {"type": "string", "format": "binary"}}
REQUEST_BODY = {
    "required": True,
    "description": (
        "Waveform bytes (miniSEED, SAC or another format ObsPy reads, plain or gzip/bzip2/xz-compressed; "
        "the format is sniffed, so every binary type below takes any of them), a multipart upload of such "
        "files (field 'files'), or JSON samples"
    ),
    "content": {
        "application/vnd.fdsn.mseed": _BINARY,
        "application/octet-stream": _BINARY,
        "application/x-sac": _BINARY,
        "application/gzip": _BINARY,
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                "required": ["files"],
            }
        },
        "application/json": {"schema": {"$ref": "#/components/schemas/WaveformJsonBody"}},
    },
}
ERRORS = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "Malformed body (not a waveform format: what it looks like is said; corrupt miniSEED/SAC, "
        "broken JSON or multipart, empty body)",
        401: "API key missing",
        403: "API key wrong",
        404: "Unknown model",
        413: "Body, waveform duration, samples, segments, windows or compressed members over the limit "
        "(the setting is named)",
        415: "Unsupported or missing content type (the answer says what the body looks like); "
        f"{FORM_TYPE} (curl's default for --data-binary) is read when the body is waveform bytes, with a note",
        422: "Unusable content (unequal channel lengths, NaN, bad sampling rate or time, no usable data)",
        503: "Server busy or starting",
        504: "Request took longer than the timeout",
    }.items()
}
SUCCESS = {200: {"content": {media.split(";")[0]: {} for media in TEXT_MEDIA_TYPES.values()}}}


@router.post(
    "/picks",
    response_model=PicksResponse,
    response_model_exclude_none=True,
    summary="Pick P and S arrivals in uploaded waveforms (or detect events, with a detector model)",
    description="A picker (PhaseNet) answers P/S picks and its event detections (1 - noise); a detector "
    "(ConvNetQuake, `model=convnetquake-ta109c`) answers its detections: start, end, probability and, when the "
    "model has location cells, the likeliest cell and its probability (JSON `detections` or CSV; `picks` is "
    "empty). QuakeML, P/S thresholds and probability traces are for pickers.",
    responses={**SUCCESS, **ERRORS},
    openapi_extra={"requestBody": REQUEST_BODY},
)
async def create_picks(
    request: Request, query: Annotated[PicksQuery, Query()], state: StateDep, batcher: BatcherDep
) -> Response | PicksResponse:
    settings = state.settings
    model = state.model(query.model)
    detector = model.card.task == "detector"
    if detector:
        _check_detector_query(model, query)
    elif model.card.task != "picker":
        raise InvalidInput(
            f"model {model.name} is a {model.card.task}, not a picker or detector; see /v1/models",
            kind="query",
        )
    if query.probabilities and query.format != "json":
        raise InvalidInput("probabilities=true needs format=json", kind="query")
    content_type = request.headers.get("content-type", "")
    kind = bare_media_type(content_type)
    body: bytes | None = None
    note = None
    if kind not in ACCEPTED:  # 415, saying what the body looks like (when within the limit) and what to send
        try:
            body = await read_body(request, settings.max_body_bytes)
        except TooLarge:
            raise unsupported_media_type(kind) from None
        if not body:
            raise BadBody(EMPTY_BODY, kind="empty_body")
        looks = await asyncio.to_thread(waveform_look, body) if kind == FORM_TYPE else None
        if looks is None:
            raise unsupported_media_type(kind, body)
        content_type, note = "application/octet-stream", form_note(looks)  # curl's default: read, and say so
    annotating = _annotate(request, content_type, model, batcher, settings, query, body, note)
    del body  # _annotate drops it once decoded
    try:
        result, response = await asyncio.wait_for(annotating, settings.request_timeout_s)
    except asyncio.TimeoutError:
        raise RequestTimeout(
            f"the request took longer than the {settings.request_timeout_s:g} s limit; send less data"
        ) from None
    _count_picks(state, result)
    if sum(a.segment.n_samples for a in result.annotations) >= TRIM_AFTER_SAMPLES:
        # once sent (and this request's arrays freed), free heap pages go back to the system
        response.background = BackgroundTask(give_back_memory)
    return response


def give_back_memory() -> None:
    """Return the allocator's free pages to the system (glibc ``malloc_trim``; a no-op elsewhere): the arrays of
    a large request are freed, but glibc keeps freed heap memory (in every thread's arena) unless asked."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _check_detector_query(model: OnnxModel, query: PicksQuery) -> None:
    """422 for what a detector cannot answer, naming the parameter."""
    if query.format == "quakeml":
        raise InvalidInput(
            f"model {model.name} is a detector: its detections have no QuakeML form; use format=json or csv",
            kind="query",
        )
    if query.p_threshold is not None or query.s_threshold is not None:
        raise InvalidInput(
            f"model {model.name} is a detector: it has no P/S thresholds; use detection_threshold",
            kind="query",
        )
    if query.probabilities:
        raise InvalidInput(
            f"model {model.name} is a detector: probabilities=true gives a picker's probability traces",
            kind="query",
        )


async def _annotate(
    request: Request,
    content_type: str,
    model: OnnxModel,
    batcher: MicroBatcher,
    settings: Settings,
    query: PicksQuery,
    body: bytes | None = None,
    note: str | None = None,
) -> tuple[AnnotationResult, Response]:
    """Picks of the request's body (``body`` when already read) and the answer, serialised once, off the loop
    (the thread hops: :mod:`..batched`)."""
    thresholds = settings.thresholds()
    if query.p_threshold is not None:
        thresholds["P"] = query.p_threshold
    if query.s_threshold is not None:
        thresholds["S"] = query.s_threshold
    if query.detection_threshold is not None:
        thresholds["detection"] = query.detection_threshold

    def render(result: AnnotationResult) -> Response:
        if note:
            result.notes.insert(0, note)
        if query.format != "json":
            return text_response(query.format, result, model.card.task == "detector")
        # serialised once, in pydantic's Rust core (no second response_model pass)
        document = picks_document(result, model.card.labels, query)
        return Response(document.model_dump_json(exclude_none=True), media_type="application/json")

    work = BodyPicking(
        model,
        content_type,
        settings.max_duration_s,
        settings.max_body_bytes,
        request_limits(settings),
        thresholds,
        render,
        body,
    )
    del body
    return await work.run(lambda: read_body(request, settings.max_body_bytes), batcher)


def request_limits(settings: Settings) -> InputLimits:
    """The work one request may ask for, from the ``max_*`` settings."""
    return InputLimits(
        max_samples=settings.max_samples,
        max_segments=settings.max_segments,
        max_windows=settings.max_windows,
        max_compressed_members=settings.max_compressed_members,
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing (413) a declared or actual size over ``limit`` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise BadBody(f"invalid Content-Length header {declared!r}", kind="content_length")
        if int(declared) > limit:
            raise TooLarge(f"the body of {int(declared)} bytes is over the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _count_picks(state: ServiceState, result: AnnotationResult) -> None:
    for pick in result.picks:
        state.metrics.picks.labels(pick.phase, result.model).inc()
