"""Test support for the HTTP service: an app with its lifespan on a background loop, and waveform helpers.

``ServiceHarness`` runs ``create_app(settings)`` on its own event loop thread and talks to it through
httpx's ASGI transport, so tests stay synchronous (and hypothesis-friendly) while requests can still run
concurrently. Exceptions escaping the app are re-raised by the transport, so a 500 fails the test loudly.
"""

from __future__ import annotations

import asyncio
import io
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import obspy
from prometheus_client.parser import text_string_to_metric_families

from seispick.service.api.app import create_app
from seispick.service.settings import Settings

DATA = Path(__file__).parent / "data" / "service"
EVENTS = ["BG_AL4_2011050109272382", "BG_ACR_2012120413330715"]
MSEED = "application/vnd.fdsn.mseed"


class ServiceHarness:
    """``with ServiceHarness(settings) as service: service.post(...)``."""

    def __init__(self, settings: Settings | None = None, timeout: float = 60.0) -> None:
        self.settings = settings or Settings()
        self.app = create_app(self.settings)
        self.timeout = timeout
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="service-harness", daemon=True)

    @property
    def state(self):
        return self.app.state.seispick

    def __enter__(self) -> ServiceHarness:
        self._thread.start()
        try:
            self.run(self._start())
        except BaseException:
            self._close_loop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.run(self._stop())
        self._close_loop()

    def run(self, coroutine) -> Any:
        """Run a coroutine on the app's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(self.timeout)

    def request(self, method: str, url: str, **kwargs) -> httpx.Response:
        return self.run(self.client.request(method, url, **kwargs))

    def get(self, url: str, **kwargs) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def post_mseed(self, data: bytes, url: str = "/v1/picks", **kwargs) -> httpx.Response:
        headers = {"content-type": MSEED, **kwargs.pop("headers", {})}
        return self.post(url, content=data, headers=headers, **kwargs)

    def gather(self, requests: list[dict]) -> list[httpx.Response]:
        """Send all ``requests`` (kwargs of ``client.request``) at once."""

        async def all_of() -> list[httpx.Response]:
            return await asyncio.gather(*(self.client.request(**r) for r in requests))

        return self.run(all_of())

    def metrics(self) -> dict[tuple[str, tuple], float]:
        """Every sample of ``/metrics`` as {(name, sorted label items): value} (with a key when keys are set)."""
        keys = self.settings.api_keys
        headers = {"x-api-key": keys[0].get_secret_value()} if keys else {}
        return parse_metrics(self.get("/metrics", headers=headers).text)

    async def _start(self) -> None:
        self._stopping = asyncio.Event()
        started = asyncio.Event()
        self._serving = asyncio.create_task(self._serve(started))
        waiter = asyncio.create_task(started.wait())
        await asyncio.wait({self._serving, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if self._serving.done():
            waiter.cancel()
            self._serving.result()  # start-up failed: raise its error
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://testserver"
        )

    async def _serve(self, started: asyncio.Event) -> None:
        async with self.app.router.lifespan_context(self.app):
            started.set()
            await self._stopping.wait()

    async def _stop(self) -> None:
        await self.client.aclose()
        self._stopping.set()
        await self._serving
        await self.loop.shutdown_default_executor()

    def _close_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def parse_metrics(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric(samples: dict, metric_name: str, /, **labels: str) -> float:
    """One sample's value (0 when absent)."""
    return samples.get((metric_name, tuple(sorted(labels.items()))), 0.0)


def event_stream(index: int = 0) -> obspy.Stream:
    """One of the two real 90 s 3-component events in tests/data/service."""
    return obspy.read(str(DATA / f"{EVENTS[index]}.mseed"))


def event_bytes(index: int = 0) -> bytes:
    return (DATA / f"{EVENTS[index]}.mseed").read_bytes()


def variant(index: int, station: str, shift_s: float) -> obspy.Stream:
    """An event renamed to ``station`` and moved by ``shift_s`` seconds (distinct picks per request)."""
    stream = event_stream(index % len(EVENTS))
    for trace in stream:
        trace.stats.station = station
        trace.stats.starttime += shift_s
    return stream


def to_mseed(stream: obspy.Stream) -> bytes:
    buffer = io.BytesIO()
    stream.write(buffer, format="MSEED", encoding="FLOAT32", reclen=4096)
    return buffer.getvalue()


def to_json_body(stream: obspy.Stream) -> dict:
    """The JSON body form of a single-instrument stream."""
    first = stream[0].stats
    return {
        "network": first.network,
        "station": first.station,
        "location": first.location,
        "channel_prefix": first.channel[:2],
        "starttime": str(first.starttime),
        "sampling_rate": first.sampling_rate,
        "data": {tr.stats.channel[-1]: np.asarray(tr.data, dtype=np.float64).tolist() for tr in stream},
    }
