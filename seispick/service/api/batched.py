"""A request's body through a picker or detector with the batcher, in as few thread hops as the work allows.

Everything but the batched inference is CPU-bound Python (decoding, windows, stacking, serialising), and each
hop to a worker thread costs the event loop a wake-up and a GIL hand-over, so a request takes:

* with batching: one hop to decode the body and cut its windows, the shared inference call (the batcher's
  thread), one hop to pick and render the answer;
* without batching: one hop for all of it (``MicroBatcher.predict_here`` runs the model on that thread).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from seispick.models.inference import OnnxModel
from seispick.picking.annotate import AnnotationJob, AnnotationResult, finish, prepare
from seispick.picking.waveforms import InputLimits
from seispick.service.api.bodies import decode_body
from seispick.service.batcher import MicroBatcher
from seispick.service.errors import InvalidInput

Answer = TypeVar("Answer")


@dataclass
class BodyPicking(Generic[Answer]):
    """How one request's body becomes its answer: decoded within ``limits``, run through ``model`` with
    ``thresholds``, the result handed to ``render`` (on the same worker thread: serialised off the loop)."""

    model: OnnxModel
    content_type: str
    max_duration_s: float
    max_body_bytes: int | None
    limits: InputLimits
    thresholds: dict[str, float]
    render: Callable[[AnnotationResult], Answer]

    body: bytes | None = None  # when already read; dropped once decoded

    async def run(
        self, read: Callable[[], Awaitable[bytes]], batcher: MicroBatcher
    ) -> tuple[AnnotationResult, Answer]:
        """The result and its rendered answer for the body (``read()`` reads it unless given); the hops: see the
        module docstring. Raises the service's 4xx errors for the body, ``NoUsableDataError`` when nothing in it
        suits the model."""
        name = self.model.name
        with batcher.incoming(name):  # the batcher waits for these windows while they are read and cut
            if self.body is None:
                self.body = await read()
            if not batcher.batching(name):
                return await asyncio.to_thread(self._whole, batcher)
            job, windows = await asyncio.to_thread(self._prepare)
        outputs = await batcher.predict(name, windows)
        return await asyncio.to_thread(self._finish, job, outputs)

    def _prepare(self) -> tuple[AnnotationJob, np.ndarray]:
        if self.model.card.task not in ("picker", "detector"):
            raise InvalidInput(
                f"model {self.model.name} is a {self.model.card.task}, not a picker or detector",
                kind="model_task",
            )
        body, self.body = self.body or b"", None
        stream = decode_body(body, self.content_type, self.max_duration_s, self.max_body_bytes, self.limits)
        del body
        # segments and windows checked against the limits before any window is cut
        job = prepare(stream, self.model.card, limits=self.limits)
        return job, job.windows()

    def _finish(self, job: AnnotationJob, outputs: np.ndarray) -> tuple[AnnotationResult, Answer]:
        """What ``annotate.annotate`` returns for a picker (``detect.detect_result`` for a detector), rendered."""
        if not np.isfinite(outputs).all():
            raise InvalidInput(
                "the model output is not finite for these samples; check their values", kind="samples"
            )
        model = self.model
        result = finish(job, outputs, model.name, model.sha256, thresholds=self.thresholds or None)
        return result, self.render(result)

    def _whole(self, batcher: MicroBatcher) -> tuple[AnnotationResult, Answer]:
        job, windows = self._prepare()
        return self._finish(job, batcher.predict_here(self.model.name, windows))
