"""Pydantic models at the HTTP edge: the JSON waveform body, query parameters and responses."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import numpy as np
import obspy
from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator, model_validator

# SEED-like codes; a "." would break NET.STA.LOC.CHA ids downstream.
NetworkCode = Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,8}$", examples=["NC"])]
StationCode = Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,8}$", examples=["MEM"])]
LocationCode = Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{0,8}$", examples=["", "00"])]
ChannelPrefix = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9]{2}$", description="Band and instrument code", examples=["HH"])
]
Component = Annotated[str, Field(pattern=r"^[A-Za-z0-9]$")]
Sample = Annotated[float, Field(allow_inf_nan=False, strict=True)]
# ObsPy's time arithmetic overflows for rates near zero; 1e-4 Hz is below any seismic channel (UH is 0.01 Hz).
MIN_SAMPLING_RATE = 1e-4
MAX_JSON_SAMPLING_RATE = 100_000.0


class WaveformJson(BaseModel):
    """One station's channels as JSON: samples per component letter, all of equal length."""

    model_config = ConfigDict(extra="forbid")

    network: NetworkCode
    station: StationCode
    location: LocationCode = ""
    channel_prefix: ChannelPrefix = "HH"
    starttime: str | float = Field(description="UTC start, ISO 8601 (or epoch seconds)")
    sampling_rate: float = Field(ge=MIN_SAMPLING_RATE, le=MAX_JSON_SAMPLING_RATE, allow_inf_nan=False)
    data: dict[Component, list[Sample]] = Field(
        min_length=1, max_length=6, description="Samples per component letter, e.g. Z, N, E (or 1, 2)"
    )

    @field_validator("starttime")
    @classmethod
    def _parsable_time(cls, value: str | float) -> str | float:
        try:
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError
            obspy.UTCDateTime(value)
        except Exception:
            raise ValueError(
                f"unparsable start time {value!r}; use ISO 8601 like 2020-01-01T00:00:00Z"
            ) from None
        return value

    @model_validator(mode="after")
    def _equal_lengths(self) -> WaveformJson:
        lengths = {component: len(samples) for component, samples in self.data.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"channels have unequal lengths: {lengths}")
        if not any(lengths.values()):
            raise ValueError("channels hold no samples")
        return self

    def to_stream(self) -> obspy.Stream:
        start = obspy.UTCDateTime(self.starttime)
        return obspy.Stream(
            [
                obspy.Trace(
                    np.asarray(samples, dtype=np.float64),
                    header={
                        "network": self.network,
                        "station": self.station,
                        "location": self.location,
                        "channel": f"{self.channel_prefix}{component}",
                        "starttime": start,
                        "sampling_rate": self.sampling_rate,
                    },
                )
                for component, samples in self.data.items()
            ]
        )


class WaveformJsonBody(RootModel[WaveformJson | list[WaveformJson]]):
    """A station object or a list of them."""

    def stations(self) -> list[WaveformJson]:
        return self.root if isinstance(self.root, list) else [self.root]


OutputFormat = Literal["json", "csv", "quakeml"]


class PicksQuery(BaseModel):
    """Query parameters of ``POST /v1/picks``."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(
        default=None, max_length=128, description="Model name; the default model if unset"
    )
    p_threshold: float | None = Field(default=None, gt=0, le=1, allow_inf_nan=False)
    s_threshold: float | None = Field(default=None, gt=0, le=1, allow_inf_nan=False)
    detection_threshold: float | None = Field(
        default=None,
        gt=0,
        le=1,
        allow_inf_nan=False,
        description="Event probability threshold of detections (a detector's, or a picker's 1 - noise)",
    )
    format: OutputFormat = "json"
    probabilities: bool = Field(default=False, description="Also return probability traces (JSON only)")
    decimate: int = Field(default=1, ge=1, le=10_000, description="Keep every n-th probability sample")


class PickOut(BaseModel):
    id: str = Field(
        description="The pick's identity (Pick.id): the same in CSV, QuakeML, SSE, WebSocket, Redis"
    )
    trace_id: str
    phase: str
    peak_time: str
    probability: float
    start_time: str
    end_time: str
    model: str
    model_sha256: str


class DetectionOut(BaseModel):
    id: str
    trace_id: str
    start_time: str
    end_time: str
    probability: float
    model: str
    model_sha256: str
    cell: int | None = None
    cell_probability: float | None = None


class Interval(BaseModel):
    trace_id: str
    start_time: str
    end_time: str


class ProbabilityTrace(BaseModel):
    """Model output of one segment; sample i lies at ``start_time + i / sampling_rate``."""

    trace_id: str
    start_time: str
    sampling_rate: float
    data: dict[str, list[float]]


class PicksResponse(BaseModel):
    model: str
    model_sha256: str
    picks: list[PickOut]
    detections: list[DetectionOut]
    notes: list[str]
    covered: list[Interval]
    probabilities: list[ProbabilityTrace] | None = None


class PublishedPick(PickOut):
    """A pick of the real-time job as ``GET /v1/picks``, SSE and the WebSocket give it (numbers as numbers)."""

    network: str
    station: str
    location: str
    published_at: str
    status: Literal["preliminary", "confirmed", "rejected"] | None = Field(
        default=None,
        description="Pick updates only (status=...): QuakeML evaluationStatus; absent on final picks",
    )
    evaluation_mode: Literal["automatic"] | None = Field(default=None, description="Pick updates only")
    supersedes: list[str] | None = Field(
        default=None, description="Pick updates only: preliminary pick ids a confirmed pick replaces"
    )


class RecentPicksResponse(BaseModel):
    picks: list[PublishedPick]
    count: int


class ModelSummary(BaseModel):
    name: str
    version: str
    description: str
    architecture: str
    task: str
    sampling_rate: float
    window_samples: int
    channel_order: str
    labels: list[str]
    default_thresholds: dict[str, float]
    sha256: str
    shipped: bool
    loaded: bool
    default: bool
    stream_role: Literal["live", "shadow"] | None = None  # on the real-time stream (after any promotion)


class ModelsResponse(BaseModel):
    default: str
    models: list[ModelSummary]


class ErrorResponse(BaseModel):
    detail: str | list[Any]


class ReadyResponse(BaseModel):
    ready: bool
    checks: dict[str, str]
