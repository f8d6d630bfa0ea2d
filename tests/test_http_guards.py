"""The HTTP/1.1 guards of ``seispick serve`` on its httptools protocol (uvicorn under ``run_server``): request
line and headers over ``max_header_bytes`` get a 400 (also a header line that never ends), headers not complete
within ``request_header_timeout_s`` close the connection, while keep-alive and pipelined requests still work."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from seispick.service.api.app import create_app  # noqa: F401  (the app imports: fail here, not in the server)
from seispick.service.api.server import GuardedHttpToolsProtocol, guarded_http
from tests.service_harness import event_bytes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def base():
    port = free_port()
    env = {
        **os.environ,
        "SEISPICK_PORT": str(port),
        "SEISPICK_LOG_LEVEL": "warning",
        "SEISPICK_REQUEST_HEADER_TIMEOUT_S": "1",
        "SEISPICK_MAX_HEADER_BYTES": "4096",
    }
    code = "from seispick.service.api.app import run_server; run_server()"
    server = subprocess.Popen([sys.executable, "-c", code], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url, port
    finally:
        server.terminate()
        server.wait(20)


def test_serve_uses_the_guarded_httptools_protocol():
    protocol = guarded_http(2.5, 8192)
    assert issubclass(protocol, GuardedHttpToolsProtocol)
    assert (protocol.header_timeout_s, protocol.max_header_bytes) == (2.5, 8192)


def test_picks_and_keep_alive(base):
    url, _ = base
    with httpx.Client(base_url=url) as client:
        for _ in range(2):
            response = client.post(
                "/v1/picks", content=event_bytes(0), headers={"content-type": "application/vnd.fdsn.mseed"}
            )
            assert response.status_code == 200 and response.json()["picks"]
        time.sleep(1.3)  # an idle keep-alive connection is not cut by the header deadline
        assert client.get("/healthz").status_code == 200


def test_headers_over_the_limit_get_400(base):
    url, port = base
    assert httpx.get(f"{url}/healthz", headers={"x-pad": "a" * 3000}).status_code == 200
    assert httpx.get(f"{url}/healthz", headers={"x-pad": "a" * 5000}).status_code == 400
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:  # a header line that never ends
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 200_000)
        assert sock.recv(64).startswith(b"HTTP/1.1 400")


def test_slow_headers_are_cut_and_pipelined_requests_answered(base):
    _, port = base
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never ends its headers
        started = time.time()
        assert sock.recv(100) == b""
        assert 0.8 < time.time() - started < 3
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
        answer = b""
        while answer.count(b"HTTP/1.1 200") < 2 or not answer.endswith(b'"ok"}'):
            answer += sock.recv(10000)
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # a second request on the connection, never finished
        started = time.time()
        assert sock.recv(100) == b""
        assert time.time() - started < 3
