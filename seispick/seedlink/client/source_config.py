"""Settings of the SeedLink client: the server, the streams and every knob of its sessions.

The service's settings schema embeds this model (``streaming.sources``): a field added here is settable by
``SEISPICK_*``, shown by ``seispick config`` and offered by ``seispick serve``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from seispick.feed import SourceConfigBase
from seispick.seedlink.client.connection import Limits
from seispick.seedlink.stream_specs import StreamSpec, parse_stream_spec, read_station_file


class SeedLinkSourceConfig(SourceConfigBase):
    """A SeedLink server (protocol 4.0 or 3.1) and the streams to subscribe to."""

    kind: Literal["seedlink"] = "seedlink"
    host: str = "127.0.0.1"
    port: int = Field(default=18000, ge=1, le=65535)
    selectors: list[str] = Field(default_factory=list, description="NET_STA[:CHA] lines, e.g. GE_APE:BH?")
    station_file: Path | None = Field(default=None, description="A file of NET_STA[:CHA] lines")
    begin_time: datetime | None = Field(
        default=None, description="First connection starts at this time (ISO 8601); otherwise at the live end"
    )
    reconnect_min_s: float = Field(
        default=1.0, gt=0, description="First wait before reconnecting, s (doubles)"
    )
    reconnect_max_s: float = Field(default=60.0, gt=0, description="Longest wait before reconnecting, s")
    timeout_s: float = Field(default=10.0, gt=0, description="Connect and command-reply timeout, s")
    keepalive_s: float = Field(
        default=30.0, gt=0, description="Send INFO ID after this many seconds without data"
    )
    idle_timeout_s: float = Field(
        default=120.0, gt=0, description="Reconnect after this many seconds without data"
    )
    protocol: Literal["auto", "4.0", "3.1"] = Field(
        default="auto", description="SeedLink version: auto uses 4.0 when the server offers it"
    )
    relist_s: float = Field(
        default=300.0,
        ge=0,
        description="Re-list the server's stations this often when station wildcards had to be expanded "
        "by the client (no native wildcards), to subscribe new matches; 0: never",
    )

    max_record_bytes: int = Field(
        default=Limits.max_record_bytes,
        ge=512,
        description="Longest record a packet may declare (SeedLink 3 record, SeedLink 4 payload), bytes; a "
        "longer one is refused unread and the client reconnects",
    )
    max_listing_bytes: int = Field(
        default=Limits.max_listing_bytes,
        ge=1024,
        description="Longest CAT or INFO answer, bytes; a longer one is refused (the listing is skipped from "
        "then on) and the client reconnects",
    )
    listing_timeout_s: float = Field(
        default=Limits.listing_timeout_s,
        gt=0,
        description="Longest CAT or INFO STATIONS answer, s; a longer one is refused like an oversized one",
    )
    handshake_timeout_s: float = Field(
        default=Limits.handshake_timeout_s,
        ge=0,
        description="Longest handshake, from connecting to END (HELLO, listings, the commands of every "
        "station), s; then the client reconnects; 0: no limit",
    )

    @field_validator("selectors")
    @classmethod
    def _valid_selectors(cls, value: list[str]) -> list[str]:
        for text in value:
            parse_stream_spec(text)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SeedLinkSourceConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        if not self.selectors and self.station_file is None:
            raise ValueError("give selectors or a station_file")
        return self

    def limits(self) -> Limits:
        """The connection's bounds against broken or hostile servers."""
        return Limits(
            self.max_record_bytes, self.max_listing_bytes, self.listing_timeout_s, self.handshake_timeout_s
        )

    def stream_specs(self) -> list[StreamSpec]:
        """Selectors from the settings, then from the station file (read now)."""
        specs = [parse_stream_spec(text) for text in self.selectors]
        if self.station_file is not None:
            specs += read_station_file(self.station_file)
        return specs
