"""Which streams a client asks for: ``NET_STA[:SELECTORS]`` lines, from settings or a station file."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from seispick.seedlink.protocol import Selector

_CODE = re.compile(r"^[A-Za-z0-9?*]{1,8}$")


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """One ``NET_STA[:SELECTORS]`` line: network and station (``?``/``*`` allowed) and SeedLink selectors."""

    network: str
    station: str
    selectors: tuple[str, ...] = ()  # empty: every stream of the station

    @property
    def wildcard(self) -> bool:
        return any(c in self.network + self.station for c in "*?")

    def matches(self, network: str, station: str) -> bool:
        return fnmatchcase(network.upper(), self.network) and fnmatchcase(station.upper(), self.station)

    def __str__(self) -> str:
        return f"{self.network}_{self.station}" + (":" + " ".join(self.selectors) if self.selectors else "")


def parse_stream_spec(text: str) -> StreamSpec:
    """Parse ``NET_STA[:SEL[ SEL...]]`` (selectors separated by spaces or commas), e.g. ``GE_APE:BH?``.

    Raises ``ValueError`` for malformed codes or selectors a SeedLink server would refuse.
    """
    head, colon, tail = text.strip().partition(":")
    network, sep, station = head.strip().partition("_")
    if not sep or not _CODE.match(network) or not _CODE.match(station):
        raise ValueError(f"expected NET_STA[:CHA], got {text!r}")
    selectors = tuple(s for s in re.split(r"[\s,]+", tail.strip()) if s)
    if colon and not selectors:
        raise ValueError(f"empty selector list in {text!r}")
    for selector in selectors:
        Selector.parse(selector)  # validates; raises ValueError
    return StreamSpec(network.upper(), station.upper(), tuple(s.upper() for s in selectors))


def read_station_file(path: str | Path) -> list[StreamSpec]:
    """Read one ``NET_STA[:CHA]`` per line; ``#`` starts a comment, blank lines are skipped."""
    specs = []
    for number, raw in enumerate(Path(path).read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            specs.append(parse_stream_spec(line))
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: {exc}") from exc
    return specs
