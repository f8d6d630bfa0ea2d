"""A Stream through a picker or detector with the batcher: prepare and finish off the event loop, batched inference."""

from __future__ import annotations

import asyncio

import numpy as np
import obspy

from seispick.models.inference import OnnxModel
from seispick.picking.annotate import AnnotationJob, AnnotationResult, finish, prepare
from seispick.service.batcher import MicroBatcher
from seispick.service.errors import InvalidInput


def _prepare(stream: obspy.Stream, model: OnnxModel) -> tuple[AnnotationJob, np.ndarray]:
    job = prepare(stream, model.card)
    return job, job.windows()


async def pick_stream(
    stream: obspy.Stream, model: OnnxModel, batcher: MicroBatcher, thresholds: dict[str, float]
) -> AnnotationResult:
    """What ``annotate.annotate(stream, model, thresholds)`` returns for a picker, and
    ``detect.detect_result`` for a detector, with inference through ``batcher``.

    Raises ``NoUsableDataError`` when nothing in the stream suits the model.
    """
    if model.card.task not in ("picker", "detector"):
        raise InvalidInput(
            f"model {model.name} is a {model.card.task}, not a picker or detector", kind="model_task"
        )
    with batcher.incoming(model.name):
        job, windows = await asyncio.to_thread(_prepare, stream, model)
    outputs = await batcher.predict(model.name, windows)
    if not np.isfinite(outputs).all():
        raise InvalidInput(
            "the model output is not finite for these samples; check their values", kind="samples"
        )
    return await asyncio.to_thread(
        finish, job, outputs, model.name, model.sha256, thresholds=thresholds or None
    )
