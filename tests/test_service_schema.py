"""Schemathesis against the app's own OpenAPI document, over real HTTP: no 5xx, responses as documented.

Skipped where schemathesis (a dev-only dependency) is not installed.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

schemathesis = pytest.importorskip("schemathesis")

import uvicorn  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis.checks import positive_data_acceptance  # noqa: E402
from service_harness import event_bytes  # noqa: E402

from seispick.service.api.app import create_app  # noqa: E402
from seispick.service.settings import Settings  # noqa: E402

app = create_app(Settings())
schema = schemathesis.openapi.from_dict(app.openapi())


@st.composite
def mseed_payloads(draw) -> bytes:
    """Real miniSEED, cut and with a few bytes changed (mostly in the first record header), or noise."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=2000))
    data = bytearray(event_bytes(draw(st.integers(0, 1)))[: draw(st.integers(64, 3 * 4096))])
    for _ in range(draw(st.integers(0, 6))):
        data[draw(st.integers(0, min(len(data), 64) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


schemathesis.openapi.media_type("application/vnd.fdsn.mseed", mseed_payloads())


@pytest.fixture(scope="module")
def base_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and thread.is_alive() and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_keeps_its_schema(case, base_url):
    # Any bytes are "schema-valid" miniSEED, so the positive-data check cannot apply; every other check does,
    # among them: no 5xx, documented status codes and content types, responses matching their schemas.
    case.call_and_validate(base_url=base_url, excluded_checks=[positive_data_acceptance])
