"""Service configuration: one pydantic-settings class read from ``SEISPICK_*`` environment variables.

Lists (model dirs, API keys, CORS origins, models) accept a JSON list or a comma-separated string; model dirs
also accept the ``os.pathsep``-separated form the model registry reads from the same variable. Nested groups
use ``__``: ``SEISPICK_BATCHING__MAX_BATCH=128``. Later issues add their groups as further nested models.

``Settings()`` alone ignores names it does not know (library use). The commands that start something
(``seispick serve``, ``seispick config``) go through :func:`load_settings`, which refuses an unknown
``SEISPICK_*`` variable with the nearest valid name, and names every bad value as it was given: the
environment variable or the command-line flag. :func:`masked` gives the effective settings with secrets
(API keys, passwords in URLs) hidden.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import zlib
from collections.abc import Callable, Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any, get_origin
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as PydanticSettingsError

from seispick.events.associate import AssociationConfig, AssociationConfigError
from seispick.events.stations import StationFileError, StationTable, read_stations
from seispick.events.velocity import Homogeneous, VelocityModel, VelocityModelError, read_velocity_model
from seispick.models.inference import Backend
from seispick.models.registry import DEFAULT_MODEL
from seispick.picking.incremental import LATE_COMPONENT_MAX_BYTES
from seispick.seedlink.client.source_config import SeedLinkSourceConfig
from seispick.service.ingest.folder import DirectorySourceConfig
from seispick.service.ingest.manager import SourceConfig

Threshold = Annotated[float, Field(gt=0, le=1)]


class BatchingSettings(BaseModel):
    """The cross-request micro-batcher."""

    enabled: bool = Field(default=True, description="Merge windows of concurrent requests into one call")
    max_batch: int = Field(default=64, ge=1, le=4096, description="Most windows in one onnxruntime call")
    max_wait_ms: float = Field(default=5.0, ge=0, le=1000, description="Longest wait for a batch to fill")
    max_queue_windows: int = Field(
        default=20_000, ge=1, description="Windows waiting beyond which requests get 503 (backpressure)"
    )


# ----------------------------------------------------------------------------------- sources
# SeedLinkSourceConfig fields that each shorthand server (``seedlink``: HOST:PORT) sets itself; every other field
# is a knob of all shorthand servers, a StreamingSettings field of its own (see ``seedlink_shorthand``).
SEEDLINK_PER_SERVER = ("kind", "name", "host", "port")
# Knobs whose shorthand predates ``sources`` keep their old names; any other knob is ``seedlink_<knob>``.
SEEDLINK_OLD_NAMES = {
    "selectors": "selectors",
    "station_file": "station_file",
    "begin_time": "begin_time",
    "reconnect_max_s": "reconnect_max_s",
    "protocol": "protocol_version",
    "relist_s": "station_relist_s",
}
SEEDLINK_SHORTHAND_DEFAULTS = {"reconnect_max_s": 30.0}  # the service's default, not the client's 60 s


def seedlink_shorthand(knob: str) -> str:
    """The StreamingSettings field of a SeedLinkSourceConfig knob (``keepalive_s`` -> ``seedlink_keepalive_s``)."""
    return SEEDLINK_OLD_NAMES.get(knob, f"seedlink_{knob}")


def seedlink_knobs() -> dict[str, str]:
    """Every SeedLink knob: its StreamingSettings shorthand field -> its SeedLinkSourceConfig field."""
    fields = SeedLinkSourceConfig.model_fields
    return {seedlink_shorthand(knob): knob for knob in fields if knob not in SEEDLINK_PER_SERVER}


def _shorthand_field(knob: str) -> tuple[Any, Any]:
    """The StreamingSettings field of a knob: the SeedLinkSourceConfig field's type, constraints and help."""
    field = SeedLinkSourceConfig.model_fields[knob]
    extra: list[Any] = [NoDecode] if get_origin(field.annotation) is list else []  # comma-separated in env
    metadata = [*field.metadata, *extra]
    annotation = Annotated[(field.annotation, *metadata)] if metadata else field.annotation
    description = f"{field.description or knob}; for every seedlink server"
    if field.default_factory is not None:
        return annotation, Field(default_factory=field.default_factory, description=description)
    return annotation, Field(
        default=SEEDLINK_SHORTHAND_DEFAULTS.get(knob, field.default), description=description
    )


def settings_error(template: str, *fields: str) -> PydanticCustomError:
    """A check across fields of one group: ``template`` names them as ``{field}``; :func:`load_settings` names
    each as it was given (variable or flag)."""
    return PydanticCustomError("settings", template, {"template": template, **{f: f for f in fields}})


class _StreamingSettings(BaseModel):
    """Real-time picking: where records come from, how picks are published, how the network is sharded.

    ``sources`` lists every source (JSON in ``SEISPICK_STREAMING__SOURCES``); the shorthands ``seedlink``
    (servers as HOST:PORT, each with the SeedLink knobs ``selectors``, ``seedlink_keepalive_s``...) and
    ``watch_dirs`` are added to it when the settings are validated, so ``sources`` is the whole list.
    """

    model_config = ConfigDict(validate_assignment=True)  # assigning a shorthand updates sources

    model: str | None = Field(default=None, description="Model for the stream (default: the default model)")
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Models run side by side on the stream, pickers and detectors, comma-separated (e.g. "
        "phasenet-ta109c,convnetquake-ta109c); each with its own window, through the shared batcher. "
        "Overrides model",
    )
    sources: Annotated[list[SourceConfig], NoDecode] = Field(
        default_factory=list,
        description='Every source, as a JSON list: [{"kind": "seedlink", "host": ..., "port": ..., '
        '"selectors": [...]}, {"kind": "directory", "path": ...}, {"kind": "files", "paths": [...]}]; '
        "the seedlink and watch_dirs shorthands are added to it",
    )
    seedlink: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="SeedLink servers as host:port, comma-separated"
    )
    watch_dirs: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Folders watched for new or growing miniSEED files (complete SAC or compressed files too)",
    )
    silence_timeout_s: float = Field(
        default=30.0, gt=0, description="Close an instrument's data after this silence"
    )
    lag_tolerance_s: float = Field(
        default=30.0,
        ge=0,
        description="Seconds a component that stopped delivering (or has not delivered yet) is waited for while "
        "the other components of its instrument stream at about real time, before windows use zeros for it "
        "(a note); while they come faster (a backlog, a ring filled channel after channel) the wait is bounded by "
        "late_component_max_bytes instead",
    )
    late_component_max_bytes: int = Field(
        default=LATE_COMPONENT_MAX_BYTES,
        gt=0,
        description="Bytes of samples an instrument may keep (per model) while its windows wait for a component "
        "that lags the others, so that the picks stay those of seispick pick (8 MiB: an hour of three 100 Hz "
        "components); once reached, the lagging component is zero-filled from there (a note, "
        "seispick_late_component_bound_reached_total)",
    )
    behind_s: float = Field(
        default=30.0, gt=0, description="Lag (latency growth or inference wait) that makes a station behind"
    )
    behind_timeout_s: float = Field(
        default=300.0, gt=0, description="/readyz answers 503 once the stream has been behind this long"
    )
    selector_grace_s: float = Field(
        default=120.0, gt=0, description="A station selector that matched no record this long is a warning"
    )
    shard_index: int = Field(default=0, ge=0, description="This replica's shard of the station network")
    shard_count: int = Field(default=1, ge=1, description="Number of replicas sharing the network")
    workers: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Picking processes of this replica, each with a part of its shard (default: one per CPU "
        "core available to the process; 1 picks in the API process itself)",
    )
    shadow_models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Pickers run beside the stream's models on the same records, windows and batcher, whose "
        "picks go to shadow_key only (record kind shadow_pick: never the pick stream, no pick updates, not "
        "associated), counted against the first live picker's (GET /v1/models/{name}/agreement, "
        "seispick_shadow_agreement_total); promote one at run time with POST /v1/models/{name}/promote (in "
        "memory), or for good by moving it to models",
    )
    shadow_key: str = Field(
        default="seispick:picks:shadow", description="Redis stream of the shadow models' picks"
    )
    shadow_channel: str = "seispick:picks:shadow:live"
    shadow_hold_s: float = Field(
        default=120.0,
        gt=0,
        description="A shadow or live pick without a counterpart is counted as only_shadow / only_live once it "
        "has waited this long (wall clock), or once both models' picks of its instrument are this far past it",
    )
    analyst_picks_key: str = Field(
        default="",
        description="Redis stream of analyst picks (fields waveform_id NET.STA.LOC.CHA, phase, time; e.g. written "
        "by scripts/analyst_picks_to_redis.py from a QuakeML or SCML catalogue): when set (with redis_url), every "
        "picker of the stream, live and shadow, is counted against them (GET /v1/models/{name}/agreement, "
        "seispick_analyst_agreement_total)",
    )
    analyst_hold_s: float = Field(
        default=3600.0,
        gt=0,
        description="An analyst or model pick without a counterpart is counted as only_analyst / only_model "
        "once it has waited this long (wall clock: analysts pick minutes to hours after the data)",
    )
    stream_key: str = Field(default="seispick:picks", description="Redis stream of the picks")
    detections_key: str = "seispick:detections"
    channel: str = "seispick:picks:live"
    preliminary_picks: bool = Field(
        default=True,
        description="Also publish each pick as soon as partly stacked windows cross the threshold (status "
        "preliminary), then confirmed or rejected once final, on preliminary_key; stream_key keeps only the "
        "final picks",
    )
    preliminary_key: str = Field(
        default="seispick:picks:preliminary",
        description="Redis stream of pick updates (preliminary, confirmed, rejected)",
    )
    preliminary_channel: str = "seispick:picks:preliminary:live"
    first_look_stride_s: float | None = Field(
        default=None,
        ge=0,
        description="With preliminary_picks: also run an extra window ending at the newest data every this many "
        "seconds (on the absolute sample grid, through the same batcher), for the preliminary picks only (the "
        "final picks stay those of seispick pick); above 0 and below the model's stride (15 s for "
        "phasenet-original); costs up to stride/first_look_stride_s - 1 extra windows per stride. "
        "Unset or 0: off",
    )
    maxlen: int = Field(default=100_000, ge=1, description="Approximate length cap of the Redis streams")
    spill_dir: Path | None = Field(default=None, description="Outbox spill folder while Redis is down")
    keep_positions: bool = Field(
        default=False,
        description="Keep each station's SeedLink position (and each watched file's offset) up to where every "
        "pick is published, and resume there after a restart or SIGKILL: in Redis when redis_url is set, "
        "else in state_dir",
    )
    state_dir: Path | None = Field(
        default=None, description="Folder of the kept positions (positions.json) when no Redis is set"
    )
    positions_key: str = Field(
        default="seispick:positions",
        description="Redis hash of the kept positions (one field per source and station or file)",
    )
    positions_every_s: float = Field(
        default=5.0, gt=0, le=3600, description="How often kept positions are written, s"
    )
    resume_margin_s: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="How far a kept position stays behind the data whose picks are final, beyond one model "
        "window, s (longer than the longest trigger)",
    )
    _folded: list[Any] = PrivateAttr(default_factory=list)  # the sources the shorthands added

    @field_validator("*", mode="before")
    @classmethod
    def _split_list(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        return _split(value, ",") if field is not None and get_origin(field.annotation) is list else value

    def stream_models(self, default_model: str) -> list[str]:
        """The models the stream runs: the live ones (:meth:`live_models`), then the ``shadow_models``."""
        live = self.live_models(default_model)
        return live + [name for name in dict.fromkeys(self.shadow_models) if name not in live]

    def live_models(self, default_model: str) -> list[str]:
        """The models whose picks are published: ``models``, else ``model``, else the service's default model."""
        return list(dict.fromkeys(self.models)) or [self.model or default_model]

    @model_validator(mode="after")
    def _shadows_not_live(self) -> _StreamingSettings:
        both = [name for name in self.shadow_models if name in (self.models or [self.model])]
        if both:
            raise settings_error(
                "{shadow_models}: " + ", ".join(both) + " is also in {models} (a model is live or shadow)",
                "shadow_models",
                "models",
            )
        return self

    @model_validator(mode="after")
    def _shard_in_range(self) -> _StreamingSettings:
        if self.shard_index >= self.shard_count:
            raise settings_error(
                "{shard_index} "
                + str(self.shard_index)
                + " must be below {shard_count} "
                + str(self.shard_count)
                + " (0-based)",
                "shard_index",
                "shard_count",
            )
        return self

    @model_validator(mode="after")
    def _fold_shorthands(self) -> _StreamingSettings:
        """``sources`` = the shorthands' sources (replacing those of an earlier validation), then the listed
        ones; a listed source equal to a shorthand one is the shorthand's (settings read back from
        ``seispick config`` list them both)."""
        self._folded, earlier = self._shorthand_sources(), self._folded
        listed = [s for s in self.sources if not any(s is f for f in earlier) and s not in self._folded]
        self.__dict__["sources"] = self._folded + listed  # not setattr: that would validate again
        return self

    def _shorthand_sources(self) -> list[Any]:
        out: list[Any] = []
        knobs = {knob: getattr(self, name) for name, knob in seedlink_knobs().items()}
        if self.seedlink and not (knobs["selectors"] or knobs["station_file"]):
            raise settings_error(
                "{seedlink} needs stream selectors: set {selectors} or {station_file}",
                "seedlink",
                "selectors",
                "station_file",
            )
        for server in self.seedlink:
            host, colon, port = server.rpartition(":")
            if not colon or not port.isdigit():
                raise settings_error("{seedlink}: " + f"{server!r} is not HOST:PORT", "seedlink")
            try:
                out.append(
                    SeedLinkSourceConfig(name=server, host=host or "127.0.0.1", port=int(port), **knobs)
                )
            except ValidationError as exc:  # name the shorthand fields, not the client's
                names = seedlink_knobs()
                problems = []
                for error in exc.errors():
                    where = [seedlink_shorthand(str(part)) for part in error["loc"]][:1] or ["seedlink"]
                    message = error["msg"].removeprefix("Value error, ")
                    for name, knob in names.items():
                        message = re.sub(rf"\b{knob}\b", "{" + name + "}", message)
                    problems.append(f"{{{where[0]}}}: {message}")
                raise settings_error("; ".join(problems), *names, "seedlink") from None
        out += [DirectorySourceConfig(name=str(folder), path=folder) for folder in self.watch_dirs]
        return out

    def owns(self, network: str, station: str) -> bool:
        """Whether this replica's shard holds NET.STA (a stable hash, the same in every replica)."""
        return zlib.crc32(f"{network}.{station}".encode()) % self.shard_count == self.shard_index

    def worker_of(self, network: str, station: str, workers: int) -> int:
        """Which of this replica's ``workers`` processes picks NET.STA (meaningful for stations it owns).

        The replica's shard is divided further by the same hash (``crc32 // shard_count % workers``), so a
        replica keeps exactly its stations whatever its number of workers: replicas on machines with
        different core counts still cover every station once.
        """
        return zlib.crc32(f"{network}.{station}".encode()) // self.shard_count % workers

    def worker_count(self) -> int:
        """``workers``, or the CPU cores this process may run on."""
        return self.workers or available_cores()


# The SeedLink knobs of the shorthand servers are fields of their own, derived from SeedLinkSourceConfig: a
# field added there is a setting here (SEISPICK_STREAMING__SEEDLINK_<KNOB>), shown and offered by the CLI.
StreamingSettings = create_model(  # type: ignore[call-overload]
    "StreamingSettings",
    __base__=_StreamingSettings,
    __module__=__name__,
    __doc__=_StreamingSettings.__doc__,
    **{name: _shorthand_field(knob) for name, knob in seedlink_knobs().items()},
)


class EventsConfigError(ValueError):
    """Association settings that cannot work; ``field`` names the ``events`` setting at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def stations_path(settings: Settings) -> Path:
    """The station file: ``events.stations``, else (``--demo``) the demo's bundled coordinates."""
    return settings.events.stations or DEMO_STATIONS


def velocity_model(config: EventsSettings) -> VelocityModel:
    """The 1D model file, or a homogeneous model (6.0 / 3.5 km/s unless ``vp``/``vs`` are set)."""
    try:
        if config.velocity_file is not None:
            return read_velocity_model(config.velocity_file)
        return Homogeneous(config.vp, config.vs) if config.vp is not None else Homogeneous()
    except VelocityModelError as exc:
        raise EventsConfigError("velocity_file" if config.velocity_file else "vp", str(exc)) from None


def association_config(config: EventsSettings) -> AssociationConfig:
    """``AssociationConfig`` of the ``events`` settings (reads the velocity model file)."""
    out = AssociationConfig(
        velocity=velocity_model(config),
        tolerance_s=config.tolerance_s,
        min_picks=config.min_picks,
        min_p=config.min_p,
        min_s=config.min_s,
        min_p_and_s=config.min_p_and_s,
        margin_km=config.margin_km,
        cutoff_km=config.cutoff_km,
        depth_km=(0.0, config.depth_max_km) if config.depth_max_km else None,
    )
    try:
        out.check()
    except AssociationConfigError as exc:
        raise EventsConfigError("min_picks", str(exc)) from None
    return out


def check_events(settings: Settings) -> tuple[StationTable, AssociationConfig]:
    """Read the station and velocity files and check the association settings (start-up refuses on error)."""
    streaming = settings.streaming
    if not (settings.demo or streaming.sources):
        raise EventsConfigError(
            "stations",
            "association needs the stream's picks: give a real-time source too (--seedlink, --watch or "
            "--demo), or associate a Redis pick stream with `seispick associate --follow REDIS_URL`",
        )
    try:
        stations = read_stations(stations_path(settings))
    except StationFileError as exc:
        raise EventsConfigError("stations", str(exc)) from None
    return stations, association_config(settings.events)


def available_cores() -> int:
    """CPU cores this process may run on (its affinity on Linux, else every core)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1


DEMO_STATIONS = Path(__file__).resolve().parent / "stream" / "demo" / "stations.xml"


class EventsSettings(BaseModel):
    """Live association of the stream's picks into located events (on when ``stations`` is set, or ``--demo``).

    With sharded replicas leave it off in the replicas and run one ``seispick associate --follow REDIS_URL``.
    """

    stations: Path | None = Field(
        default=None,
        description="StationXML or CSV (network,station,latitude,longitude,elevation_m); turns association on",
    )
    vp: float | None = Field(
        default=None, gt=0, description="P velocity of a homogeneous model, km/s (default 6.0)"
    )
    vs: float | None = Field(
        default=None, gt=0, description="S velocity of a homogeneous model, km/s (default 3.5)"
    )
    velocity_file: Path | None = Field(default=None, description="1D velocity model CSV: depth_km,vp,vs")
    tolerance_s: float = Field(default=1.5, gt=0, description="Travel-time tolerance of the association, s")
    min_picks: int = Field(default=8, ge=3, description="Picks an event needs")
    min_p: int = Field(default=4, ge=0, description="P picks an event needs")
    min_s: int = Field(default=2, ge=0, description="S picks an event needs")
    min_p_and_s: int = Field(default=1, ge=0, description="Stations with both P and S an event needs")
    depth_max_km: float | None = Field(
        default=None,
        gt=0,
        description="Deepest hypocentre, km (default a third of the stations' extent, 30-100)",
    )
    margin_km: float | None = Field(
        default=None,
        ge=0,
        description="Search area beyond the stations, km (default max(10 km, 10 % of their extent))",
    )
    cutoff_km: float | None = Field(
        default=None,
        gt=0,
        description="Count only stations within this distance of a candidate hypocentre (default: max(100 km, "
        "twice the median distance from a station to its min_picks-th nearest); inf: every station)",
    )
    window_s: float = Field(default=300.0, ge=10, description="Pick times associated together, s")
    delay_s: float = Field(
        default=2.0,
        ge=0,
        description="How long a pick waits for the others before association, s (with settle an event found "
        "early grows as picks join; longer delays declare events later but more complete)",
    )
    preliminary: bool = Field(
        default=True,
        description="Associate the preliminary picks (streaming.preliminary_picks) as they come: events declared "
        "seconds after their picks, which are later confirmed, moved or withdrawn (only with settle: without it final picks only); "
        "off: final picks only",
    )
    min_version_interval_s: float = Field(
        default=10.0,
        ge=0,
        description="An open event's versions at least this far apart, s (changes in between are published "
        "together; the first and the final version are not held back)",
    )
    step_s: float = Field(default=1.0, gt=0, le=60, description="Association interval, s")
    settle: bool = Field(
        default=True,
        description="Versions only for states an event never had; picks stay with their event unless another "
        "takes them; duplicate ids merged (superseded_by); a last version with evaluation_status final",
    )
    min_move_km: float = Field(
        default=0.5, ge=0, description="A hypocentre moved beyond this is a new version, km"
    )
    min_time_change_s: float = Field(
        default=0.1, ge=0, description="An origin time changed beyond this is a new version, s"
    )
    merge_km: float = Field(
        default=5.0, ge=0, description="Two events with hypocentres this close (and merge_s) are one, km"
    )
    merge_s: float = Field(
        default=1.0, ge=0, description="Two events with origin times this close (and merge_km) are one, s"
    )
    model: str | None = Field(
        default=None, description="Picks of this model are associated (default: the stream's first picker)"
    )
    magnitudes: bool = Field(
        default=True,
        description="Live ML of each event version from a per-station waveform ring (stations with responses "
        "in a StationXML; without responses events carry a note instead)",
    )
    # 360 s: the association's default window (300 s) and delay (2 s; up to 10 s) plus the 31 s before P that ML
    # reads (1 s and 30 s for its filters), rounded up: an event is measured while open and at its final version.
    magnitude_ring_s: float = Field(
        default=360.0,
        gt=0,
        description="Waveform kept per channel for live ML, s (horizontals of stations with responses): the "
        "earliest sample an open event's magnitude can use; at least window_s + delay_s + 31",
    )
    # 2 horizontals x 100 Hz x 4 bytes x 360 s = 288,000 bytes a station: 512 MiB holds 1,864 such stations.
    magnitude_ring_max_bytes: int = Field(
        default=512 * 1024 * 1024,
        ge=1024 * 1024,
        description="Most bytes of samples the live-ML waveform ring holds in all; past it the oldest data of "
        "the stations holding the most is dropped (their magnitudes then lack those stations)",
    )
    stream_key: str = "seispick:events"
    channel: str = "seispick:events:live"
    keep: int = Field(default=10_000, ge=1, description="Latest versions of events kept for GET /v1/events")

    @model_validator(mode="after")
    def _one_velocity_model(self) -> EventsSettings:
        if self.velocity_file is not None and (self.vp is not None or self.vs is not None):
            raise settings_error(
                "give either {vp} and {vs} or {velocity_file}, not both", "vp", "vs", "velocity_file"
            )
        if (self.vp is None) != (self.vs is None):
            raise settings_error("give both {vp} and {vs} (or neither, for 6.0 and 3.5 km/s)", "vp", "vs")
        return self

    def active(self, demo: bool) -> bool:
        """Whether the service associates: stations given, or the demo (which bundles its stations)."""
        return self.stations is not None or demo


class Settings(BaseSettings):
    """Everything ``seispick serve`` can be told, from arguments or ``SEISPICK_*`` variables."""

    model_config = SettingsConfigDict(
        env_prefix="SEISPICK_", env_nested_delimiter="__", extra="ignore", validate_default=True
    )

    host: str = Field(default="127.0.0.1", description="Address to listen on")
    port: int = Field(default=8000, ge=0, le=65535, description="Port to listen on")
    log_level: str = "info"
    access_log: bool = Field(
        default=False,
        description="uvicorn's per-request log lines (off: requests are counted and timed in /metrics)",
    )
    keep_alive_s: int = Field(
        default=5, ge=1, description="Close an idle keep-alive HTTP connection after it, s"
    )
    request_header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Close a connection whose request line and headers are not complete this long after they "
        "began (or after it opened), s: clients that never finish a request",
    )
    max_header_bytes: int = Field(
        default=16384, ge=1024, description="Longest request line and headers, bytes (longer: 400)"
    )
    ws_ping_s: float = Field(
        default=20.0,
        gt=0,
        description="Ping WebSocket clients this often, s; one that does not answer within as long is "
        "disconnected (and unsubscribed)",
    )

    model_dirs: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="Extra model folders (besides the shipped ones)"
    )
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Models to load at start-up; empty loads every model found"
    )
    default_model: str = Field(default=DEFAULT_MODEL, description="Model of requests that name none")
    p_threshold: Threshold | None = Field(default=None, description="Overrides the card's P threshold")
    s_threshold: Threshold | None = Field(default=None, description="Overrides the card's S threshold")
    inference_threads: int | None = Field(default=None, ge=1, description="onnxruntime intra-op threads")
    inference_backend: Backend = Field(
        default="onnxruntime",
        description="Inference engine: onnxruntime (the reference) or openvino (OpenVINO's CPU plugin, fp32: the same picks; "
        "needs seispick[openvino])",
    )

    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1)
    max_duration_s: float = Field(
        default=3600.0, gt=0, description="Most seconds of waveform per request, summed over instruments"
    )
    request_timeout_s: float = Field(default=60.0, gt=0)
    # Work per POST /v1/picks, each checked before the work it bounds (413 naming the variable).
    max_samples: int = Field(
        default=10_000_000,
        ge=1,
        description="Most samples per request (all channels), from the record headers before decoding",
    )
    max_segments: int = Field(
        default=1_000, ge=1, description="Most gap-free segments per request (a gap or NaN run starts one)"
    )
    max_windows: int = Field(default=3_000, ge=1, description="Most model windows per request")
    max_compressed_members: int = Field(
        default=10_000, ge=1, description="Most gzip/bzip2/xz members in a compressed body or part"
    )

    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Accepted X-API-Key values; empty turns authentication off"
    )
    metrics_public: bool = Field(
        default=False,
        description="Serve /metrics without a key when api_keys are set (otherwise it takes the key as "
        "X-API-Key or Authorization: Bearer, as Prometheus sends it)",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    redis_url: str | None = Field(
        default=None,
        description="Publish picks to this Redis (e.g. redis://127.0.0.1:6379/0); checked by /readyz when set",
    )
    redis_timeout_s: float = Field(default=0.5, gt=0)

    batching: BatchingSettings = Field(default_factory=BatchingSettings)
    streaming: StreamingSettings = Field(default_factory=StreamingSettings)
    events: EventsSettings = Field(default_factory=EventsSettings)
    demo: bool = Field(
        default=False, description="Replay the bundled demo archive as a live SeedLink stream and pick it"
    )

    @field_validator("models", "api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        return _split(value, ",")

    @field_validator("model_dirs", mode="before")
    @classmethod
    def _split_dirs(cls, value: Any) -> Any:
        return _split(value, os.pathsep)

    @model_validator(mode="after")
    def _analysts_need_redis(self) -> Settings:
        if self.streaming.analyst_picks_key and not self.redis_url:
            raise ValueError(
                "streaming.analyst_picks_key (SEISPICK_STREAMING__ANALYST_PICKS_KEY) is read from Redis: set "
                "redis_url too (SEISPICK_REDIS_URL, --redis-url)"
            )
        return self

    def select_models(self, available: list[str]) -> tuple[list[str], list[str]]:
        """Model names to load from ``models`` (names, or patterns such as ``phasenet-*``) and the patterns
        that matched no available model; an empty ``models`` selects every available one."""
        if not self.models:
            return list(available), []
        selected, unmatched = [], []
        for entry in self.models:
            if not any(c in entry for c in "*?["):
                selected.append(entry)  # a plain name: loading it reports it if it is missing
                continue
            found = [name for name in available if fnmatchcase(name, entry)]
            selected += found
            if not found:
                unmatched.append(entry)
        return list(dict.fromkeys(selected)), unmatched

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


# ------------------------------------------------------------------------------- start-up loading
ENV_PREFIX = "SEISPICK_"
# Variables read outside Settings (not service settings, but not typos either).
OTHER_VARIABLES = {
    "SEISPICK_USER_MODEL_DIR": "default folder of imported and trained models (seispick.models.registry)",
    "SEISPICK_ORIGINAL_WEIGHTS": "the original PhaseNet weights.npz, for training (seispick.training)",
    "SEISPICK_FUZZ_EXAMPLES": "hypothesis examples per fuzz test (the test suite)",
}
FieldPath = tuple[str, ...]


class SettingsError(ValueError):
    """Settings that cannot be used; the message names each setting as it was given."""


def env_variables() -> dict[str, FieldPath]:
    """Every ``SEISPICK_*`` variable Settings reads (upper case) and the field it sets."""
    names: dict[str, FieldPath] = {}
    for name, field in Settings.model_fields.items():
        names[f"{ENV_PREFIX}{name.upper()}"] = (name,)
        group = field.annotation
        if isinstance(group, type) and issubclass(group, BaseModel):
            for sub in group.model_fields:
                names[f"{ENV_PREFIX}{name.upper()}__{sub.upper()}"] = (name, sub)
    return names


def nearest_variable(name: str, valid: list[str] | None = None) -> str | None:
    """The valid variable most like ``name`` (difflib), comparing whole names and the part after the group
    (``SEISPICK_SHARD_COUNT`` -> ``SEISPICK_STREAMING__SHARD_COUNT``); None when nothing is close."""
    valid = valid if valid is not None else [*env_variables(), *OTHER_VARIABLES]
    upper = name.upper()
    leaf = upper.removeprefix(ENV_PREFIX)

    def score(candidate: str) -> float:
        whole = difflib.SequenceMatcher(None, upper, candidate).ratio()
        tail = difflib.SequenceMatcher(None, leaf, candidate.rpartition("__")[2].removeprefix(ENV_PREFIX))
        return max(whole, tail.ratio())

    best = max(valid, key=score, default=None)
    return best if best is not None and score(best) >= 0.6 else None


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """Refuse ``SEISPICK_*`` variables that no setting reads (a typo or an old name silently does nothing)."""
    environ = os.environ if environ is None else environ
    known = env_variables()
    valid = [*known, *OTHER_VARIABLES]
    problems = []
    for name in sorted(environ):
        upper = name.upper()
        if upper.startswith(ENV_PREFIX) and upper not in known and upper not in OTHER_VARIABLES:
            near = nearest_variable(upper, valid)
            problems.append(f"{name}: no such setting" + (f"; did you mean {near}?" if near else ""))
    if problems:
        raise SettingsError(
            "unknown SEISPICK_* environment variable(s):\n  "
            + "\n  ".join(problems)
            + "\n(`seispick config --names` lists every valid name)"
        )


class GivenNames:
    """How each setting was given, for error messages: a command-line flag, an environment variable, or
    nothing (its default)."""

    def __init__(self, flags: Mapping[FieldPath, str], environ: Mapping[str, str]) -> None:
        self.flags = dict(flags)
        self.env = {name.upper(): name for name in environ}

    def name(self, path: FieldPath) -> str:
        if path in self.flags:
            return self.flags[path]
        variable = f"{ENV_PREFIX}{'__'.join(part.upper() for part in path)}"
        if variable in self.env:
            return self.env[variable]
        group = f"{ENV_PREFIX}{path[0].upper()}"
        if len(path) > 1 and group in self.env:
            return f"{self.env[group]} (its {path[1]})"
        return variable


def load_settings(
    overrides: Mapping[FieldPath, tuple[str, Any]] | None = None,
    installed_models: Callable[[Settings], list[str]] | None = None,
) -> Settings:
    """Settings for a command that starts something: ``overrides`` maps a field path (``("port",)``,
    ``("streaming", "seedlink")``) to (the flag it came from, its value) and wins over the environment
    (``os.environ``, which pydantic-settings reads);
    ``installed_models(settings)`` lists the models there are, to refuse a default or stream model that
    is not one of them.

    Raises :class:`SettingsError` for unknown ``SEISPICK_*`` variables, invalid values and inconsistent
    combinations, naming each setting as it was given.
    """
    environ = os.environ
    overrides = dict(overrides or {})
    check_environment(environ)
    given = GivenNames({path: flag for path, (flag, _) in overrides.items()}, environ)
    init: dict[str, Any] = {}
    for path, (_, value) in overrides.items():
        target = init
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
    try:
        settings = Settings(**init)
    except ValidationError as exc:
        raise SettingsError(_describe(exc, given)) from None
    except PydanticSettingsError as exc:  # a group variable that is not JSON
        field = re.search(r'field "(\w+)"', str(exc))
        name = given.name((field.group(1),)) if field else "a SEISPICK_* variable"
        raise SettingsError(f"{name}: not a JSON object ({exc.__cause__ or exc})") from None
    streaming = settings.streaming
    if streaming.station_file is not None and not streaming.station_file.is_file():
        raise SettingsError(
            f"{given.name(('streaming', 'station_file'))}: {streaming.station_file} is not a file"
        )
    if installed_models is not None:
        names = installed_models(settings)
        for path, name in (
            (("default_model",), settings.default_model),
            (("streaming", "model"), streaming.model),
            *((("streaming", "models"), name) for name in streaming.models),
            *((("streaming", "shadow_models"), name) for name in streaming.shadow_models),
            (("events", "model"), settings.events.model),
        ):
            if name is not None and name not in names:
                raise SettingsError(
                    f"{given.name(path)}: unknown model {name!r}; installed: {', '.join(names) or 'none'}"
                )
    if settings.events.active(settings.demo):
        try:
            check_events(settings)  # reads the station and velocity files: a bad one refuses start-up
        except EventsConfigError as exc:
            raise SettingsError(f"{given.name(('events', exc.field))}: {exc}") from None
    return settings


def model_warnings(settings: Settings, available: list[str]) -> list[str]:
    """One line per ``models`` pattern that matches no available model."""
    _, unmatched = settings.select_models(available)
    return [f"SEISPICK_MODELS: {pattern!r} matches no installed model" for pattern in unmatched]


def _describe(exc: ValidationError, given: GivenNames) -> str:
    """A pydantic error as lines naming the variable or flag; secret values are not repeated."""
    lines = []
    for error in exc.errors():
        path = tuple(str(part) for part in error["loc"] if isinstance(part, str))[:2]
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "settings":  # a check across fields (settings_error): name each as given
            message = error["ctx"]["template"]
            for field in set(error["ctx"]) - {"template"}:
                message = message.replace(f"{{{field}}}", given.name((*path, field)))
            lines.append(message)
            continue
        name = given.name(path) if path else "settings"
        secret = path and path[0] in SECRET_FIELDS
        value = "" if secret or "input" not in error else f"={_short(error['input'])}"
        lines.append(f"{name}{value}: {message}")
    return "invalid settings:\n  " + "\n  ".join(lines)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# ---------------------------------------------------------------------------------- display
SECRET_FIELDS = frozenset({"api_keys"})
MASK = "****"


def mask_url(url: str) -> str:
    """``redis://user:secret@host:6379/0`` -> ``redis://user:****@host:6379/0`` (URLs without one unchanged)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}"))


def masked(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain JSON-ready values, with API keys and URL passwords hidden."""
    data = settings.model_dump(mode="json")
    data["api_keys"] = [MASK for _ in settings.api_keys]
    if settings.redis_url:
        data["redis_url"] = mask_url(settings.redis_url)
    return data
