"""Results as HTTP answers: the JSON document or CSV / QuakeML text of a POST, and published records as JSON.

Published records keep string fields in Redis (documented in ``pick_schema.json``); every JSON answer
(``GET /v1/picks``, Server-Sent Events, the WebSocket) turns the numeric ones back into numbers.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import numpy as np
from starlette.responses import Response

from seispick.picking.annotate import AnnotationResult
from seispick.picking.formats import render, render_detections
from seispick.picking.results import iso
from seispick.service.api.schemas import PicksQuery, PicksResponse, ProbabilityTrace

NUMERIC_FIELDS = {"probability": float, "cell_probability": float, "cell": int}
TEXT_MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "quakeml": "application/xml"}
PROBABILITY_DECIMALS = 4


def picks_document(result: AnnotationResult, labels: list[str], query: PicksQuery) -> PicksResponse:
    """The JSON response: model identity, picks, detections, notes, covered intervals, optional traces."""
    return PicksResponse(
        model=result.model,
        model_sha256=result.model_sha256,
        picks=[p.as_dict() for p in result.picks],
        detections=[d.as_dict() for d in result.detections],
        notes=result.notes,
        covered=result.covered_intervals(),
        probabilities=probability_traces(result, labels, query.decimate) if query.probabilities else None,
    )


def probability_traces(result: AnnotationResult, labels: list[str], decimate: int) -> list[ProbabilityTrace]:
    """Every ``decimate``-th sample of each segment's output, rounded to 4 decimals."""
    traces = []
    for annotation in result.annotations:
        segment = annotation.segment
        kept = np.round(annotation.probabilities[:, ::decimate].astype(np.float64), PROBABILITY_DECIMALS)
        traces.append(
            ProbabilityTrace(
                trace_id=segment.instrument,
                start_time=iso(segment.starttime),
                sampling_rate=segment.sampling_rate / decimate,
                data={label: kept[i].tolist() for i, label in enumerate(labels)},
            )
        )
    return traces


def text_response(fmt: str, result: AnnotationResult, detector: bool = False) -> Response:
    """CSV or QuakeML (a detector's detections: CSV), exactly as ``seispick pick`` writes them."""
    if detector:
        body = render_detections(fmt, result.detections)
    else:
        body = render(fmt, result.picks, result.detections, segments=[a.segment for a in result.annotations])
    return Response(content=body, media_type=TEXT_MEDIA_TYPES[fmt])


def record_document(fields: dict[str, str]) -> dict[str, Any]:
    """A published record's fields for a JSON answer: probabilities (and cells) as numbers, a pick update's
    ``supersedes`` as a list, the rest as is."""
    out: dict[str, Any] = dict(fields)
    for name, kind in NUMERIC_FIELDS.items():
        value = out.get(name)
        if isinstance(value, str) and value not in ("", "None"):
            with contextlib.suppress(ValueError):  # not a number: left as the string it is
                out[name] = kind(value)
    if isinstance(out.get("supersedes"), str):  # a pick update's superseded ids, comma-separated in Redis
        out["supersedes"] = [i for i in out["supersedes"].split(",") if i]
    return out


def record_json(fields: dict[str, str]) -> str:
    """``record_document`` as compact JSON text (SSE data lines, WebSocket messages)."""
    return json.dumps(record_document(fields), separators=(",", ":"))
