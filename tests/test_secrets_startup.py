"""No secret in the logs and ``/metrics`` behind its own setting; start-up errors in one line naming the
option, the banner only once the port is bound."""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from seispick.service.api.server import RedactSecrets, redact
from seispick.service.settings import Settings
from tests.service_harness import ServiceHarness
from tests.test_clean_stop import Serve

KEY = "sekrit-4711"
STATION_XML = """<?xml version="1.0" encoding="UTF-8"?>
<FDSNStationXML xmlns="http://www.fdsn.org/xml/station/1" schemaVersion="1.1">
  <Source>test</Source>
  <Network code="XX"><Station code="STA"><Latitude>0</Latitude><Longitude>0</Longitude>
  <Elevation>0</Elevation></Station></Network>
</FDSNStationXML>
"""


def serve_fails(*args: str) -> tuple[int, str, float]:
    """``seispick serve ARGS``, expected to fail: exit code, stderr and seconds taken."""
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "seispick.cli.main", "serve", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.returncode, result.stderr + result.stdout, time.monotonic() - start


def test_redact_masks_secret_query_values_only() -> None:
    assert redact("GET /v1/ws/picks?network=XX&api_key=s3cr%20et&phase=P") == (
        "GET /v1/ws/picks?network=XX&api_key=****&phase=P"
    )
    assert redact("/x?API-KEY=a&token=b") == "/x?API-KEY=****&token=****"
    assert redact("/v1/picks?station=APIKEY") == "/v1/picks?station=APIKEY"


def test_the_log_filter_masks_uvicorns_access_arguments_in_place() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", f"/v1/ws/picks?api_key={KEY}", "1.1", 200), None,
    )  # fmt: skip
    assert RedactSecrets().filter(record)
    assert KEY not in record.getMessage() and "api_key=****" in record.getMessage()
    assert isinstance(record.args, tuple) and len(record.args) == 5  # uvicorn's formatter unpacks them


def test_no_key_reaches_the_logs_and_metrics_take_the_key() -> None:
    serve = Serve("--demo", "--workers", "1", env={"SEISPICK_API_KEYS": KEY, "SEISPICK_ACCESS_LOG": "true"})
    try:
        with connect(f"ws://127.0.0.1:{serve.port}/v1/ws/picks?api_key={KEY}", open_timeout=10) as ws:
            ws.ping().wait(5)
        with pytest.raises(InvalidStatus):  # a wrong key is refused (and logged masked too)
            connect(f"ws://127.0.0.1:{serve.port}/v1/ws/picks?api_key=wrong-{KEY}", open_timeout=10)
        assert httpx.get(f"{serve.url}/v1/models?api_key={KEY}", timeout=10).status_code == 401
        assert httpx.get(f"{serve.url}/metrics", timeout=10).status_code == 401
        bearer = {"Authorization": f"Bearer {KEY}"}
        assert httpx.get(f"{serve.url}/metrics", headers=bearer, timeout=10).status_code == 200
        assert httpx.get(f"{serve.url}/metrics", headers={"X-API-Key": KEY}, timeout=10).status_code == 200
        serve.stop(signal.SIGTERM)
    finally:
        serve.kill()
    output = serve.output
    assert "api_key=****" in output, output  # the lines are there, masked
    assert KEY not in output, output


def test_metrics_public_opens_metrics_without_a_key() -> None:
    with ServiceHarness(Settings(api_keys=[KEY])) as locked:
        assert locked.get("/metrics").status_code == 401
        assert locked.get("/metrics", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        assert locked.get("/metrics", headers={"X-API-Key": "wrong"}).status_code == 403
    with ServiceHarness(Settings(api_keys=[KEY], metrics_public=True)) as public:
        assert public.get("/metrics").status_code == 200
        assert public.get("/v1/models").status_code == 401  # the rest of the API still takes the key


def test_a_stationxml_station_file_is_one_line_naming_the_option(tmp_path: Path) -> None:
    stations = tmp_path / "stations.xml"
    stations.write_text(STATION_XML)
    code, output, _ = serve_fails("--seedlink", "127.0.0.1:1", "--station-file", str(stations))
    assert code != 0, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert "--station-file" in lines[0] and "StationXML" in lines[0] and "NET_STA" in lines[0], output


def test_a_port_in_use_is_one_line_naming_the_option_and_no_banner() -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    try:
        code, output, took = serve_fails("--port", str(port))
    finally:
        taken.close()
    assert code != 0, output
    assert "Traceback" not in output and "seispick serving on" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and "--port" in lines[0] and "in use" in lines[0], output
    print(f"\nport in use refused in {took:.2f} s")


def test_a_failed_start_up_is_one_line_and_exits_non_zero() -> None:
    code, output, _ = serve_fails("--port", "0", "--redis-url", "nonsense://nowhere")
    assert code != 0, output
    assert "Traceback" not in output and "seispick serving on" not in output, output
    assert "start-up failed" in output and "SEISPICK_REDIS_URL" in output, output


def test_a_station_file_without_a_seedlink_server_is_warned_about(tmp_path: Path, capsys) -> None:
    from seispick.cli.serve_cmd import check_station_files

    stations = tmp_path / "stations.txt"
    stations.write_text("XX_STA\n")
    check_station_files(Settings(streaming={"station_file": stations}))
    assert "--station-file" in capsys.readouterr().err
