"""``seispick serve`` stops at once and cleanly: SIGTERM and SIGINT with live SSE and WebSocket subscribers
(they are told goodbye: the SSE stream ends, the WebSocket closes with 1001), with a SeedLink handshake that
never answers, and with picking workers; exit 0, no traceback, no ERROR line. Clients that vanish are
unsubscribed whatever their filter, and a client that never finishes its request headers is disconnected."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

STOP_BOUND_S = 5.0  # asserted; the goal is under 2 s (each test prints its measured time)
START_S = 120.0


class Serve:
    """``seispick serve ARGS --port 0`` in a subprocess; ``url`` from its start-up banner."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        command = [sys.executable, "-m", "seispick.cli.main", "serve", "--port", "0", *args]
        environment = {**os.environ, "SEISPICK_LOG_LEVEL": "info", **(env or {})}
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment
        )
        self.lines: list[str] = []  # stderr
        self.out: list[str] = []  # stdout (uvicorn's access log)
        self._reader = threading.Thread(
            target=self._read, args=(self.process.stderr, self.lines), daemon=True
        )
        self._reader.start()
        threading.Thread(target=self._read, args=(self.process.stdout, self.out), daemon=True).start()
        self.url = self._wait_for_banner()

    @staticmethod
    def _read(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    @property
    def output(self) -> str:
        """stderr and stdout."""
        return "".join(self.lines + self.out)

    def _wait_for_banner(self) -> str:
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if line.startswith("seispick serving on "):
                    return line.split()[3]
            if self.process.poll() is not None:
                self._reader.join(5)
                raise AssertionError(f"serve exited with {self.process.returncode}:\n{self.stderr}")
            time.sleep(0.05)
        self.process.kill()
        raise AssertionError(f"no banner:\n{self.stderr}")

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self, sig: signal.Signals) -> float:
        """Send ``sig``; seconds until the process exited."""
        start = time.monotonic()
        self.process.send_signal(sig)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        took = time.monotonic() - start
        self._reader.join(5)
        return took

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def subscribers(serve: Serve) -> int:
    state = httpx.get(f"{serve.url}/v1/stations", timeout=10).json()
    return state["publisher"]["subscribers"]


def wait_ready(serve: Serve, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{serve.url}/readyz", timeout=5).status_code == 200:
            return
        time.sleep(0.2)
    raise AssertionError("not ready")


def open_sse(port: int, path: str = "/v1/stream/picks") -> socket.socket:
    """An SSE client on a raw socket, past the response headers and the banner comment."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode())
    received = b""
    while b"\r\n\r\n" not in received or b": seispick" not in received:
        chunk = sock.recv(65536)
        assert chunk, received
        received += chunk
    assert received.startswith(b"HTTP/1.1 200"), received[:200]
    return sock


def open_raw_websocket(port: int, path: str) -> socket.socket:
    """A WebSocket client on a raw socket, past the handshake (to drop it without a close frame)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(4096)
        assert chunk, received
        received += chunk
    assert received.startswith(b"HTTP/1.1 101"), received[:200]
    return sock


def read_to_end(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything until the server closes (AssertionError if it does not within ``timeout``)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        raise AssertionError(f"the server kept the connection open: {data[-200:]!r}") from None
    except ConnectionResetError:
        pass
    return data


def assert_clean(serve: Serve, took: float, what: str) -> None:
    print(f"\n{what}: stopped in {took:.2f} s")
    output = serve.output
    assert serve.process.returncode == 0, (serve.process.returncode, output)
    assert took < STOP_BOUND_S, (took, output)
    assert "Traceback" not in output, output
    assert "ERROR" not in output, output


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_with_live_subscribers_says_goodbye_and_exits_0_at_once(sig: signal.Signals) -> None:
    serve = Serve("--demo")
    try:
        wait_ready(serve)
        sse = [open_sse(serve.port), open_sse(serve.port, "/v1/stream/detections")]
        with connect(f"ws://127.0.0.1:{serve.port}/v1/ws/picks", open_timeout=10) as ws:
            took = serve.stop(sig)
            for sock in sse:
                assert read_to_end(sock).endswith(b"0\r\n\r\n")  # the stream was ended, not cut
                sock.close()
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    ws.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    finally:
        serve.kill()
    assert_clean(serve, took, f"serve --demo, 2 SSE + 1 WebSocket, {sig.name}")


def test_a_stop_during_a_seedlink_handshake_that_never_answers_exits_at_once(tmp_path: Path) -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel does) and never answers
    port = silent.getsockname()[1]
    try:
        serve = Serve(
            "--seedlink", f"127.0.0.1:{port}", "--select", "XX_STA", "--seedlink-timeout-s", "60",
            "--workers", "1",
        )  # fmt: skip
        try:
            time.sleep(1.0)  # the client is inside HELLO, waiting for an answer for up to 60 s
            took = serve.stop(signal.SIGTERM)
        finally:
            serve.kill()
    finally:
        silent.close()
    assert_clean(serve, took, "serve --seedlink (hanging handshake), SIGTERM")


def test_a_stop_with_picking_workers_exits_at_once() -> None:
    serve = Serve("--demo", "--workers", "2")
    try:
        wait_ready(serve, 90)
        sse = open_sse(serve.port)
        took = serve.stop(signal.SIGTERM)
        read_to_end(sse)
        sse.close()
    finally:
        serve.kill()
    assert_clean(serve, took, "serve --demo --workers 2, 1 SSE, SIGTERM")


def test_vanished_clients_are_unsubscribed_whatever_their_filter_and_slow_headers_are_cut() -> None:
    serve = Serve("--demo", env={"SEISPICK_REQUEST_HEADER_TIMEOUT_S": "1"})
    try:
        wait_ready(serve)
        before = subscribers(serve)
        # filters that match nothing the demo publishes: no record would ever reveal that they are gone
        dropped = [open_raw_websocket(serve.port, "/v1/ws/picks?network=ZZ") for _ in range(20)]
        dropped += [open_raw_websocket(serve.port, "/v1/ws/detections?network=ZZ") for _ in range(5)]
        dropped += [open_sse(serve.port, "/v1/stream/picks?network=ZZ") for _ in range(5)]
        assert subscribers(serve) == before + 30
        for sock in dropped:
            sock.close()  # no close frame, no goodbye
        deadline = time.monotonic() + 5
        while subscribers(serve) != before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert subscribers(serve) == before

        idle = socket.create_connection(("127.0.0.1", serve.port), timeout=10)  # never sends a byte
        slow = socket.create_connection(("127.0.0.1", serve.port), timeout=10)
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never ends its headers
        start = time.monotonic()
        assert read_to_end(idle, 5) == b"" and read_to_end(slow, 5) == b""
        assert time.monotonic() - start < 3
        assert httpx.get(f"{serve.url}/healthz", timeout=5).status_code == 200  # others are served
        took = serve.stop(signal.SIGTERM)
    finally:
        serve.kill()
    assert_clean(serve, took, "serve --demo after dropped clients, SIGTERM")
