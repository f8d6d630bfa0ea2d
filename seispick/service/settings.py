"""Service configuration: one pydantic-settings class read from ``SEISPICK_*`` environment variables.

Lists (model dirs, API keys, CORS origins, models) accept a JSON list or a comma-separated string; model dirs
also accept the ``os.pathsep``-separated form the model registry reads from the same variable. Nested groups
use ``__``: ``SEISPICK_BATCHING__MAX_BATCH=128``. Later issues add their groups as further nested models.
"""

from __future__ import annotations

import json
import os
import zlib
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from seispick.models.registry import DEFAULT_MODEL

Threshold = Annotated[float, Field(gt=0, le=1)]


class BatchingSettings(BaseModel):
    """The cross-request micro-batcher."""

    enabled: bool = Field(default=True, description="Merge windows of concurrent requests into one call")
    max_batch: int = Field(default=64, ge=1, le=4096, description="Most windows in one onnxruntime call")
    max_wait_ms: float = Field(default=5.0, ge=0, le=1000, description="Longest wait for a batch to fill")
    max_queue_windows: int = Field(
        default=20_000, ge=1, description="Windows waiting beyond which requests get 503 (backpressure)"
    )


class StreamingSettings(BaseModel):
    """Real-time picking: where records come from, how picks are published, how the network is sharded."""

    model: str | None = Field(default=None, description="Model for the stream (default: the default model)")
    seedlink: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="SeedLink servers as host:port, comma-separated"
    )
    selectors: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Streams as NET_STA:CHA patterns (wildcards allowed), comma-separated",
    )
    station_file: Path | None = Field(default=None, description="One NET_STA[:CHA] per line")
    watch_dirs: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="Folders watched for new or growing miniSEED files"
    )
    silence_timeout_s: float = Field(
        default=30.0, gt=0, description="Close an instrument's data after this silence"
    )
    lag_tolerance_s: float = Field(
        default=30.0,
        ge=0,
        description="Seconds a silent component is waited for before windows use zeros for it",
    )
    behind_s: float = Field(
        default=30.0, gt=0, description="Lag (latency growth or inference wait) that makes a station behind"
    )
    behind_timeout_s: float = Field(
        default=300.0, gt=0, description="/readyz answers 503 once the stream has been behind this long"
    )
    reconnect_max_s: float = Field(default=30.0, gt=0)
    begin_time: datetime | None = Field(
        default=None, description="Ask SeedLink servers for data from this time on first connect (else live)"
    )
    shard_index: int = Field(default=0, ge=0, description="This replica's shard of the station network")
    shard_count: int = Field(default=1, ge=1, description="Number of replicas sharing the network")
    stream_key: str = "seispick:picks"
    detections_key: str = "seispick:detections"
    channel: str = "seispick:picks:live"
    maxlen: int = Field(default=100_000, ge=1, description="Approximate length cap of the Redis streams")
    spill_dir: Path | None = Field(default=None, description="Outbox spill folder while Redis is down")

    @field_validator("seedlink", "selectors", "watch_dirs", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        return _split(value, ",")

    def owns(self, network: str, station: str) -> bool:
        """Whether this replica's shard holds NET.STA (a stable hash, the same in every replica)."""
        return zlib.crc32(f"{network}.{station}".encode()) % self.shard_count == self.shard_index


class Settings(BaseSettings):
    """Everything ``seispick serve`` can be told, from arguments or ``SEISPICK_*`` variables."""

    model_config = SettingsConfigDict(
        env_prefix="SEISPICK_", env_nested_delimiter="__", extra="ignore", validate_default=True
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    log_level: str = "info"
    access_log: bool = Field(default=True, description="uvicorn's per-request log lines")

    model_dirs: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="Extra model folders (besides the shipped ones)"
    )
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Models to load at start-up; empty loads every model found"
    )
    default_model: str = DEFAULT_MODEL
    p_threshold: Threshold | None = Field(default=None, description="Overrides the card's P threshold")
    s_threshold: Threshold | None = Field(default=None, description="Overrides the card's S threshold")
    inference_threads: int | None = Field(default=None, ge=1, description="onnxruntime intra-op threads")

    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1)
    max_duration_s: float = Field(
        default=3600.0, gt=0, description="Most seconds of waveform per request, summed over instruments"
    )
    request_timeout_s: float = Field(default=60.0, gt=0)

    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Accepted X-API-Key values; empty turns authentication off"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    redis_url: str | None = Field(default=None, description="Checked by /readyz when set")
    redis_timeout_s: float = Field(default=0.5, gt=0)

    batching: BatchingSettings = Field(default_factory=BatchingSettings)
    streaming: StreamingSettings = Field(default_factory=StreamingSettings)
    demo: bool = Field(default=False, description="Replay the bundled demo archive and pick it live")

    @field_validator("models", "api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        return _split(value, ",")

    @field_validator("model_dirs", mode="before")
    @classmethod
    def _split_dirs(cls, value: Any) -> Any:
        return _split(value, os.pathsep)

    def thresholds(self) -> dict[str, float]:
        """Threshold overrides set by the operator (the card's defaults fill the rest)."""
        out = {}
        if self.p_threshold is not None:
            out["P"] = self.p_threshold
        if self.s_threshold is not None:
            out["S"] = self.s_threshold
        return out


def _split(value: Any, separator: str) -> Any:
    """A JSON list or a ``separator``-separated string as a list; anything else unchanged."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        return json.loads(text)
    return [part.strip() for part in text.split(separator) if part.strip()]
