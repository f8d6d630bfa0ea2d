"""Following a Redis pick stream (``seispick:picks``, XREAD) into a ``LiveAssociator``.

With sharded pickers every replica publishes into the same stream, so one follower associates the merged picks
once. Entries are read in order from ``start_id`` (``$``: only new ones; ``0``: the whole stream), each becomes a
``Pick`` with the id it was published under, and ``step`` runs every ``step_s`` seconds; ``publish`` receives
every event version. A malformed entry is logged and counted, a lost connection retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from obspy import UTCDateTime
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from seispick.events.event import Event
from seispick.events.live import LiveAssociator
from seispick.picking.results import Pick

log = logging.getLogger(__name__)


@dataclass
class FollowStats:
    entries: int = 0
    malformed: int = 0
    published: int = 0
    reconnects: int = 0
    last_id: str = ""
    updates: int = 0  # entries of the pick-update stream
    last_update_id: str = ""


def pick_from_fields(fields: dict[str, str]) -> Pick:
    """The ``Pick`` of a published pick record (``pick_schema.json`` fields); ValueError/KeyError if malformed."""
    peak = UTCDateTime(fields["peak_time"])
    return Pick(
        trace_id=fields["trace_id"],
        phase=fields["phase"],
        peak_time=peak,
        probability=float(fields.get("probability") or 1.0),
        start_time=UTCDateTime(fields["start_time"]) if fields.get("start_time") else peak,
        end_time=UTCDateTime(fields["end_time"]) if fields.get("end_time") else peak,
        model=fields.get("model", ""),
        model_sha256=fields.get("model_sha256", ""),
    )


async def follow(
    redis_url: str,
    live: LiveAssociator,
    publish: Callable[[Event], object | Awaitable[object]],
    *,
    stream: str = "seispick:picks",
    start_id: str = "$",
    step_s: float = 1.0,
    block_ms: int = 500,
    count: int = 1000,
    stop: asyncio.Event | None = None,
    max_backoff_s: float = 5.0,
    updates_stream: str | None = None,
) -> FollowStats:
    """Read ``stream`` until ``stop`` is set, feeding ``live`` and publishing its events; flushes at the end.

    With ``updates_stream`` (``seispick:picks:preliminary``) the pick updates are followed too, as the service
    associates them (``LiveAssociator.update``): events are declared from preliminary picks, and a final pick
    whose preliminary pick had its id changes nothing.
    """
    stop = stop or asyncio.Event()
    stats = FollowStats(last_id=start_id, last_update_id=start_id)
    client = Redis.from_url(redis_url, decode_responses=True, socket_timeout=max(block_ms / 1000 + 2, 3))
    backoff = 0.1
    next_step = time.monotonic() + step_s

    async def emit(events: list[Event]) -> None:
        for event in events:
            result = publish(event)
            if inspect.isawaitable(result):
                await result
            stats.published += 1

    try:
        while not stop.is_set():
            try:
                if stats.last_id == "$":  # resolved once, so a reconnect does not skip what arrived meanwhile
                    stats.last_id = await _last_id(client, stream)
                streams = {stream: stats.last_id}
                if updates_stream:
                    if stats.last_update_id == "$":
                        stats.last_update_id = await _last_id(client, updates_stream)
                    streams[updates_stream] = stats.last_update_id
                reply = await client.xread(streams, count=count, block=block_ms)
                backoff = 0.1
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                stats.reconnects += 1
                log.warning("pick stream %s: %s; retrying in %.1f s", stream, exc, backoff)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, max_backoff_s)
                reply = []
            for name, entries in reply or []:
                update = name == updates_stream and name != stream
                for entry_id, fields in entries:
                    if update:
                        stats.last_update_id = entry_id
                        stats.updates += 1
                    else:
                        stats.last_id = entry_id
                        stats.entries += 1
                    try:
                        pick = pick_from_fields(fields)
                        if update:
                            supersedes = tuple(i for i in fields.get("supersedes", "").split(",") if i)
                            live.update(fields["status"], pick, fields["id"], supersedes)
                        elif updates_stream:  # a final pick: already here when its preliminary had its id
                            live.update("confirmed", pick, fields.get("id") or pick.id)
                        else:
                            live.add(pick, fields.get("id") or None)
                    except (KeyError, ValueError, TypeError) as exc:
                        stats.malformed += 1
                        log.warning("pick stream %s entry %s skipped: malformed (%s)", name, entry_id, exc)
            if time.monotonic() >= next_step:
                next_step = time.monotonic() + step_s
                await emit(live.step())
        await emit(live.flush())
    finally:
        await client.aclose()
    return stats


async def _last_id(client: Redis, stream: str) -> str:
    """The stream's newest entry id, or ``0-0`` when the stream does not exist yet."""
    try:
        info = await client.xinfo_stream(stream)
    except ResponseError:  # no such key: every entry, once it appears
        return "0-0"
    return info.get("last-generated-id") or "0-0"
