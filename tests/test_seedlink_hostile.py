"""The SeedLink client against a hostile server (tests/hostile_seedlink.py): garbage, a record declaring
256 MiB, endless CAT and INFO answers, a flood of empty lines, a handshake that never answers. Each is refused
within its bound (the refusal names the setting), the client keeps its memory and the event loop, reconnects,
and ``stop()`` returns at once."""

from __future__ import annotations

import asyncio
import contextlib
import time
import tracemalloc
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest

from seispick.seedlink.client.connection import Limits, SeedLinkConnection
from seispick.seedlink.client.source import SeedLinkSource
from seispick.seedlink.client.source_config import SeedLinkSourceConfig
from tests.hostile_seedlink import HostileSeedLink

STOP_S = 1.0  # stop() must return within this
MiB = 1 << 20


def run(coroutine: Coroutine[Any, Any, None], timeout: float = 60.0) -> None:
    asyncio.run(asyncio.wait_for(coroutine, timeout))


def config(port: int, selectors: list[str], **extra: Any) -> SeedLinkSourceConfig:
    settings: dict[str, Any] = dict(port=port, selectors=selectors, reconnect_min_s=0.05, reconnect_max_s=0.1,
                                    timeout_s=1.0)  # fmt: skip
    return SeedLinkSourceConfig(**(settings | extra))


class LoopWatch:
    """The longest the event loop went without running a 10 ms ticker: a client parsing without yielding
    shows up here (and a stop could not land)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            self.longest = max(self.longest, now - last)
            last = now

    def __enter__(self) -> LoopWatch:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def until(condition, timeout: float) -> float:
    """Seconds until ``condition()``; AssertionError after ``timeout``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def timed_stop(source: SeedLinkSource) -> float:
    start = time.monotonic()
    await source.stop()
    return time.monotonic() - start


async def nothing(trace) -> None:
    raise AssertionError("a hostile server delivered a trace")


@contextlib.asynccontextmanager
async def hostile_source(
    mode: str, selectors: list[str], **extra: Any
) -> AsyncIterator[tuple[HostileSeedLink, SeedLinkSource]]:
    """A running source against a running hostile server (both stopped at the end)."""
    server = HostileSeedLink(mode)
    await server.start()
    source = SeedLinkSource(config(server.port, selectors, **extra), nothing)
    try:
        await source.start()
        yield server, source
    finally:
        await source.stop()
        await server.stop()


def test_a_record_declaring_256_mib_is_refused_unread_in_bounded_memory() -> None:
    async def main() -> None:
        tracemalloc.start()
        try:
            async with hostile_source("huge_record", ["XX_STA"], max_record_bytes=MiB) as (server, source):
                await until(lambda: server.connections >= 3, 20)  # refused, and reconnected (twice)
                peak = tracemalloc.get_traced_memory()[1]
                assert "max_record_bytes" in (source.last_error or ""), source.last_error
                assert "268435" in source.last_error  # the declared length is named
                assert peak < 32 * MiB, f"client buffered {peak / MiB:.0f} MiB"
                assert await timed_stop(source) < STOP_S
        finally:
            tracemalloc.stop()

    run(main())


def test_an_endless_cat_is_refused_after_listing_timeout_s_and_skipped_after_reconnecting() -> None:
    async def main() -> None:
        limits = dict(listing_timeout_s=1.0, max_listing_bytes=64 * MiB)
        with LoopWatch() as watch:
            async with hostile_source("endless_cat", ["XX_*"], **limits) as (server, source):
                took = await until(lambda: "CAT" in source.refusals, 10)
                assert "listing_timeout_s" in source.refusals["CAT"], source.refusals
                assert took < 3.0, took  # bounded time, not the length of an endless answer
                await until(lambda: server.connections >= 2 and "INFO STATIONS" in source.refusals, 10)
                assert server.commands.count("CAT") == 1, server.commands  # not asked again
                assert await timed_stop(source) < STOP_S
        assert watch.longest < 0.5, f"event loop held {watch.longest:.2f} s"

    run(main())


def test_a_huge_info_stations_answer_is_refused_at_max_listing_bytes() -> None:
    async def main() -> None:
        limits = dict(max_listing_bytes=256 * 1024, listing_timeout_s=30.0)
        with LoopWatch() as watch:
            async with hostile_source("huge_info", ["XX_*"], **limits) as (server, source):
                took = await until(lambda: "INFO STATIONS" in source.refusals, 20)
                assert "max_listing_bytes" in source.refusals["INFO STATIONS"], source.refusals
                assert took < 10.0, took
                await until(lambda: server.connections >= 2, 10)  # reconnected after abandoning it
                assert await timed_stop(source) < STOP_S
        assert watch.longest < 0.5, f"event loop held {watch.longest:.2f} s"
        assert server.sent < 64 * MiB  # the client stopped reading long before 100 MB

    run(main())


def test_a_flood_of_empty_lines_ends_the_handshake_at_handshake_timeout_s() -> None:
    async def main() -> None:
        with LoopWatch() as watch:
            async with hostile_source("blank_lines", ["XX_STA"], handshake_timeout_s=1.0) as (server, source):
                took = await until(lambda: "handshake_timeout_s" in (source.last_error or ""), 10)
                assert took < 4.0, took
                await until(lambda: server.connections >= 2, 10)
                assert await timed_stop(source) < STOP_S
        assert watch.longest < 0.5, f"event loop held {watch.longest:.2f} s"

    run(main())


@pytest.mark.parametrize("mode", ["silent", "garbage"])
def test_a_hanging_or_garbage_handshake_reconnects_and_stops_at_once(mode: str) -> None:
    async def main() -> None:
        tracemalloc.start()
        try:
            async with hostile_source(mode, ["XX_STA"]) as (server, source):
                await until(lambda: server.connections >= 2, 10)  # refused (timeout or garbage), reconnected
                assert source.last_error, source.state()
                assert tracemalloc.get_traced_memory()[1] < 32 * MiB
                await asyncio.sleep(0.3)  # in the middle of the next (hanging or flooded) handshake
                assert await timed_stop(source) < STOP_S
        finally:
            tracemalloc.stop()

    run(main())


def test_limits_come_from_the_settings() -> None:
    cfg = config(
        1,
        ["XX_STA"],
        max_record_bytes=4096,
        max_listing_bytes=2048,
        listing_timeout_s=3,
        handshake_timeout_s=0,
    )
    assert cfg.limits() == Limits(4096, 2048, 3.0, 0.0)
    with pytest.raises(ValueError, match="max_record_bytes"):
        config(1, ["XX_STA"], max_record_bytes=10)


def test_no_handshake_deadline_when_handshake_timeout_s_is_0() -> None:
    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        unlimited = await SeedLinkConnection.open("127.0.0.1", port, 1.0, Limits(handshake_timeout_s=0))
        limited = await SeedLinkConnection.open("127.0.0.1", port, 1.0, Limits(handshake_timeout_s=5))
        try:
            assert not unlimited._deadlines and "handshake_timeout_s" in limited._deadlines
            await limited.send("END")  # the data phase has no handshake deadline
            assert not limited._deadlines
        finally:
            await unlimited.close()
            await limited.close()
            server.close()

    run(main())
