"""The operator page at ``/``: served from the package (HTML, one JavaScript file, one CSS file, right content
types, nothing loaded from another host), the station coordinates it draws, the JSON index for JSON clients,
and in a real headless Chromium against ``seispick serve --demo``: the demo's twelve instruments, nine of them
drawn from their coordinates, then the demo's first earthquake arriving over the live event feed.

The browser is Debian's ``chromium`` driven over its DevTools protocol (``--remote-debugging-port``, one
WebSocket, no extra package): ``--dump-dom`` alone dumps the page at its load event, before the page's own
requests have answered, and ``--virtual-time-budget`` never ends while the page holds its SSE connections
open. Without a Chromium on the PATH the browser test skips with that reason. With
``OPERATOR_PAGE_SCREENSHOT=docs/operator_page.png`` it also saves the screenshot the README shows.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fnmatch
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import tomllib
from websockets.sync.client import connect

from seispick.events.stations import read_stations
from seispick.service.api.app import create_app
from seispick.service.api.routers.operator import ASSETS, PAGE_DIR
from seispick.service.settings import Settings
from seispick.service.stream.runtime import DEMO_DIR
from tests.test_clean_stop import Serve  # `seispick serve --port 0` in a subprocess, its URL from the banner

ROOT = Path(__file__).resolve().parent.parent
DEMO_STATIONS = [f"EV0{i}" for i in range(1, 10)] + ["DEMO1", "DEMO2", "DEMO3"]


def call(app, method: str, path: str, **kwargs) -> httpx.Response:
    """One request to ``app`` without its lifespan (the page and its assets need no models)."""

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def test_page_and_assets_are_served_with_their_content_types():
    app = create_app(Settings())
    page = call(app, "GET", "/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script src="operator/operator.js">' in page.text
    assert '<link rel="stylesheet" href="operator/operator.css">' in page.text
    assert call(app, "GET", "/").headers["content-type"].startswith("text/html")  # curl's */*
    for name, media_type in [("operator.js", "text/javascript"), ("operator.css", "text/css")]:
        response = call(app, "GET", f"/operator/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"] == f"{media_type}; charset=utf-8"
        assert response.text == (PAGE_DIR / name).read_text()
    assert call(app, "GET", "/operator/index.html").status_code == 404  # only the listed assets
    assert call(app, "GET", "/operator/..%2Foperator.py").status_code == 404


def test_nothing_is_loaded_from_another_host():
    html = (PAGE_DIR / "index.html").read_text()
    js = (PAGE_DIR / "operator.js").read_text()
    css = (PAGE_DIR / "operator.css").read_text()
    for name, text in [("index.html", html), ("operator.js", js), ("operator.css", css)]:
        assert "http://" not in text and "https://" not in text, name
        assert not re.search(r"[\"'(]//", text), name  # nor a protocol-relative address
    for attribute in re.findall(r'(?:src|href)="([^"]*)"', html):  # relative: works behind a path prefix too
        assert not attribute.startswith(("/", "http", "//")), attribute
    # the script asks only for the service's own routes, by relative address
    requested = set(re.findall(r'"(v1/[a-z/]+|metrics)', js))
    assert requested == {
        "v1/stations",
        "v1/stations/coordinates",
        "v1/picks",
        "v1/events",
        "v1/stream/picks",
        "v1/stream/events",
        "v1/ws/picks",
        "v1/ws/events",
        "metrics",
    }
    assert "url(" not in css and "@import" not in css


def test_the_assets_are_package_data():
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = globs["seispick.service.api"]
    for name in ["index.html", *ASSETS]:
        assert any(fnmatch.fnmatch(f"operator_page/{name}", g) for g in shipped), name


def test_json_clients_get_an_index():
    app = create_app(Settings())
    response = call(app, "GET", "/", headers={"Accept": "application/json"})
    assert response.status_code == 200
    body = response.json()
    assert body["service"] == "seispick"
    assert body["routes"]["operator_page"] == "/"
    assert body["routes"]["station_coordinates"] == "/v1/stations/coordinates"


def test_station_coordinates():
    app = create_app(Settings())
    empty = call(app, "GET", "/v1/stations/coordinates").json()
    assert empty == {"stations": [], "count": 0, "source": None, "without_coordinates": []}
    app.state.seispick.events = SimpleNamespace(stations=read_stations(DEMO_DIR / "stations.csv"))
    body = call(app, "GET", "/v1/stations/coordinates").json()
    assert body["count"] == 9 and body["source"] == "stations.csv"
    first = body["stations"][0]
    assert first == {
        "key": "SP.EV01",
        "network": "SP",
        "station": "EV01",
        "latitude": 37.56331,
        "longitude": -121.9,
        "elevation_m": 0.0,
    }


def test_with_api_keys_the_page_is_open_and_its_data_are_not():
    app = create_app(Settings(api_keys=["k3y-operator"]))
    assert call(app, "GET", "/").status_code == 200
    assert call(app, "GET", "/operator/operator.js").status_code == 200
    assert call(app, "GET", "/v1/stations/coordinates").status_code == 401
    keyed = call(app, "GET", "/v1/stations/coordinates", headers={"X-API-Key": "k3y-operator"})
    assert keyed.status_code == 200


# -- a real browser ------------------------------------------------------------------------------------------


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Chromium:
    """Headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self, binary: str, width: int = 1400, height: int = 900) -> None:
        self.profile = tempfile.TemporaryDirectory(prefix="seispick-chromium-")
        self.process = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",  # root in a container
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                f"--window-size={width},{height}",
                f"--user-data-dir={self.profile.name}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._id = 0
        self._stack = contextlib.ExitStack()  # the DevTools WebSocket, closed by close()
        try:
            port = self._port()
            targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
            page = next(t for t in targets if t["type"] == "page")
            self.ws = self._stack.enter_context(
                connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
            )
            self.send(
                "Emulation.setDeviceMetricsOverride",
                width=width,
                height=height,
                deviceScaleFactor=1,
                mobile=False,
            )
        except BaseException:
            self.close()
            raise

    def _port(self) -> int:
        marker = Path(self.profile.name) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if marker.is_file() and marker.read_text().strip():
                return int(marker.read_text().split()[0])
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.process.returncode}")
            time.sleep(0.1)
        raise RuntimeError("chromium did not open its DevTools port within 60 s")

    def send(self, method: str, **params) -> dict:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.5)
        raise AssertionError(f"{what} not on the page within {timeout:.0f} s:\n{self.dom()[:4000]}")

    def dom(self) -> str:
        return self.evaluate("document.documentElement.outerHTML") or ""

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        self._stack.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.profile.cleanup()


CHROMIUM = find_chromium()
EVENT_WAIT_S = (
    480.0  # the demo runs in real time: its first earthquake is at 2:00, its first version ~45 s on
)


@pytest.mark.slow
@pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium on the PATH (chromium, chromium-browser, google-chrome): `apt-get install chromium`",
)
def test_the_page_in_a_headless_browser_shows_the_demo(tmp_path):

    serve = Serve("--demo")
    browser = None
    try:
        browser = Chromium(CHROMIUM)
        browser.send("Page.enable")
        browser.send("Page.navigate", url=serve.url + "/")
        browser.wait_for("document.body && document.body.dataset.ready === 'true'", 60, "the page's start")
        browser.evaluate("window.__loadedOnce = true")  # gone if the page were reloaded
        events_at_load = httpx.get(f"{serve.url}/v1/events", timeout=10).json()["count"]

        # every instrument of the demo in the table, the nine with coordinates drawn on the plot
        table = "document.querySelector('#stations tbody').innerText"
        browser.wait_for(
            f"{DEMO_STATIONS!r}.every(s => {table}.includes('SP.' + s + '..HH'))", 60, "the 12 instruments"
        )
        drawn = browser.evaluate(
            "[...document.querySelectorAll('#map .station text')].map(t => t.textContent).sort()"
        )
        assert drawn == DEMO_STATIONS[:9]
        note = browser.evaluate("document.getElementById('map-note').textContent")
        assert all(s in note for s in ("SP.DEMO1", "SP.DEMO2", "SP.DEMO3")), note
        browser.wait_for(
            "document.querySelectorAll('#map .station.streaming, #map .station.late').length === 9",
            60,
            "nine streaming stations on the plot",
        )
        assert browser.evaluate("document.getElementById('feeds').className") == "feeds ok"

        # the demo's first earthquake: wait for it at the API, then on the page that was already open
        deadline = time.monotonic() + EVENT_WAIT_S
        events: list = []
        while time.monotonic() < deadline and not events:
            events = httpx.get(f"{serve.url}/v1/events", timeout=10).json()["events"]
            time.sleep(2.0)
        assert events, f"no event within {EVENT_WAIT_S:.0f} s"
        event_id = events[0]["id"]
        browser.wait_for(
            f"document.querySelector('#events tbody').innerText.includes({event_id!r})", 30, event_id
        )
        assert browser.evaluate("window.__loadedOnce === true")  # it came over the live feed
        status = browser.evaluate("document.querySelector('#events td.status').textContent")
        assert status.split()[0] in ("preliminary", "final"), status  # SSE versions carry it
        if events_at_load == 0:
            print(f"{event_id}: not there at load, arrived over /v1/stream/events")
        browser.wait_for(
            "document.querySelectorAll('#map .epicentre').length >= 1", 10, "the epicentre on the plot"
        )
        browser.wait_for("document.querySelectorAll('#picks tbody tr').length > 0", 30, "the last picks")
        statuses = browser.evaluate(
            "[...document.querySelectorAll('#picks td.status')].map(t => t.textContent)"
        )
        assert set(statuses) <= {"final", "preliminary", "confirmed", "rejected", "superseded"}, statuses
        assert {"preliminary", "confirmed"} & set(statuses), statuses  # the pick updates' feed too
        budget = browser.evaluate(
            "Object.fromEntries([...document.querySelectorAll('#budget tbody tr')]"
            ".map(r => [r.cells[0].textContent, r.cells[1].textContent]))"
        )
        assert budget["record"] and float(budget["record"]) < 5.0, budget
        assert any(budget[s] not in ("", "\u2013") for s in ("window", "first_look")), budget

        dom = browser.dom()
        for station in DEMO_STATIONS:
            assert station in dom
        assert event_id in dom
        shot = tmp_path / "operator_page.png"
        browser.screenshot(shot)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        wanted = os.environ.get("OPERATOR_PAGE_SCREENSHOT")
        if wanted:
            shutil.copyfile(shot, ROOT / wanted)
    finally:
        if browser is not None:
            browser.close()
        serve.stop(signal.SIGTERM)
