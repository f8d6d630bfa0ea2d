"""Annotation results as HTTP responses: the JSON document, or CSV / QuakeML text via ``formats.render``."""

from __future__ import annotations

import numpy as np
from starlette.responses import Response

from seispick.models.annotate import AnnotationResult
from seispick.models.formats import render
from seispick.models.picks import iso
from seispick.service.api.schemas import PicksQuery, PicksResponse, ProbabilityTrace

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


def text_response(fmt: str, result: AnnotationResult) -> Response:
    """CSV or QuakeML, exactly as ``seispick pick`` writes them."""
    segments = [a.segment for a in result.annotations]
    body = render(fmt, result.picks, result.detections, segments=segments)
    return Response(content=body, media_type=TEXT_MEDIA_TYPES[fmt])
