"""Operating the service: metrics that move, health and readiness (with the real Redis), settings, CORS, uvicorn."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from service_harness import ServiceHarness, event_bytes, metric

from seispick.models.registry import DEFAULT_MODEL
from seispick.service.api.app import create_app
from seispick.service.settings import Settings

MODEL = DEFAULT_MODEL
REDIS_URL = "redis://127.0.0.1:6379/0"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_is_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def service():
    with ServiceHarness(Settings()) as harness:
        yield harness


def test_metrics_move_as_requests_are_served(service):
    before = service.metrics()
    response = service.post_mseed(event_bytes(0))
    assert response.status_code == 200
    n_picks = {phase: sum(p["phase"] == phase for p in response.json()["picks"]) for phase in ("P", "S")}
    service.get(f"/v1/models/{MODEL}")
    service.get("/no/such/path")
    after = service.metrics()

    def delta(metric_name, /, **labels):
        return metric(after, metric_name, **labels) - metric(before, metric_name, **labels)

    assert delta("seispick_http_requests_total", route="/v1/picks", method="POST", status="200") == 1
    assert delta("seispick_http_request_duration_seconds_count", route="/v1/picks", method="POST") == 1
    assert delta("seispick_http_requests_total", route="/v1/models/{name}", method="GET", status="200") == 1
    assert delta("seispick_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert not any(
        "phasenet-original" in dict(labels).get("route", "") for _, labels in after
    )  # templates only
    assert delta("seispick_inference_calls_total", model=MODEL) >= 1
    assert delta("seispick_inference_batch_size_count", model=MODEL) >= 1
    assert delta("seispick_inference_duration_seconds_count", model=MODEL) >= 1
    assert delta("seispick_windows_processed_total", model=MODEL) >= 3
    for phase, count in n_picks.items():
        assert delta("seispick_picks_total", phase=phase, model=MODEL) == count
    assert metric(after, "seispick_batcher_queue_depth", model=MODEL) == 0
    card = service.state.models[MODEL].card
    assert (
        metric(after, "seispick_model_info", name=MODEL, version=card.version, sha256=card.onnx_sha256) == 1
    )


def test_metrics_exposition_format(service):
    response = service.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    for name in (
        "seispick_http_requests_total",
        "seispick_http_request_duration_seconds",
        "seispick_inference_batch_size",
        "seispick_inference_duration_seconds",
        "seispick_inference_calls_total",
        "seispick_batcher_queue_depth",
        "seispick_windows_processed_total",
        "seispick_picks_total",
        "seispick_input_errors_total",
        "seispick_model_info",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in response.text, name


def test_fastapi_own_routes_are_labelled_and_process_metrics_exported(service):
    """/openapi.json and the docs' assets were counted as route="unmatched"; no process_* metrics; a tenth of
    /metrics was _created series."""
    before = service.metrics()
    for path in ("/openapi.json", "/docs", "/redoc", "/static/docs/swagger-ui.css"):
        assert service.get(path).status_code == 200, path
    service.get("/static/docs/no-such-file")
    after = service.metrics()

    def delta(route: str, status: str = "200") -> float:
        key = {"route": route, "method": "GET", "status": status}
        return metric(after, "seispick_http_requests_total", **key) - metric(
            before, "seispick_http_requests_total", **key
        )

    for route in ("/openapi.json", "/docs", "/redoc", "/static/docs/{path}"):
        assert delta(route) == 1, route
    assert delta("/static/docs/{path}", "404") == 1
    assert delta("unmatched") == 0 and delta("unmatched", "404") == 0
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds"):
        assert metric(after, name) > 0, name
    assert any(name == "python_info" for name, _ in after)
    text = service.get("/metrics").text
    assert not [line for line in text.splitlines() if "_created" in line]


def test_two_apps_keep_separate_metrics(service):
    with ServiceHarness(Settings()) as other:
        other.get("/healthz")
        assert (
            metric(
                other.metrics(), "seispick_http_requests_total", route="/healthz", method="GET", status="200"
            )
            == 1
        )


def test_healthz(service):
    assert service.get("/healthz").json() == {"status": "ok"}


def test_readyz_without_redis(service):
    response = service.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"ready": True, "checks": {"models": "ok"}}


@pytest.mark.skipif(not redis_is_up(), reason="no Redis on 127.0.0.1:6379")
def test_readyz_with_reachable_redis():
    with ServiceHarness(Settings(redis_url=REDIS_URL)) as service:
        response = service.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"models": "ok", "redis": "ok"}


def test_readyz_with_unreachable_redis():
    settings = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout_s=0.3)
    with ServiceHarness(settings) as service:
        started = time.perf_counter()
        response = service.get("/readyz")
        assert time.perf_counter() - started < 2
        assert service.get("/healthz").status_code == 200  # alive, just not ready
    assert response.status_code == 503
    body = response.json()
    assert body["ready"] is False and body["checks"]["redis"].startswith("unreachable")


def test_readyz_before_start_up():
    app = create_app(Settings())

    async def ask() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return await client.get("/readyz")

    response = asyncio.run(ask())
    assert response.status_code == 503 and "not loaded" in response.json()["checks"]["models"]


def test_shutdown_stops_the_batcher():
    harness = ServiceHarness(Settings())
    with harness:
        assert harness.state.batcher.running
    assert not harness.state.batcher.running and harness.state.models == {}


def test_settings_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SEISPICK_PORT", "9100")
    monkeypatch.setenv("SEISPICK_API_KEYS", "alpha, beta")
    monkeypatch.setenv("SEISPICK_CORS_ORIGINS", '["https://a.example", "https://b.example"]')
    monkeypatch.setenv("SEISPICK_MODEL_DIRS", os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))
    monkeypatch.setenv("SEISPICK_BATCHING__MAX_BATCH", "16")
    monkeypatch.setenv("SEISPICK_BATCHING__ENABLED", "false")
    monkeypatch.setenv("SEISPICK_P_THRESHOLD", "0.5")
    monkeypatch.setenv("SEISPICK_SOME_LATER_FIELD", "ignored")
    settings = Settings()
    assert settings.port == 9100
    assert [k.get_secret_value() for k in settings.api_keys] == ["alpha", "beta"]
    assert "alpha" not in repr(settings)
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.model_dirs == [tmp_path / "a", tmp_path / "b"]
    assert settings.batching.max_batch == 16 and settings.batching.enabled is False
    assert settings.thresholds() == {"P": 0.5}


def test_settings_reject_nonsense():
    with pytest.raises(ValueError):
        Settings(p_threshold=1.5)
    with pytest.raises(ValueError):
        Settings(batching={"max_batch": 0})


def test_operator_thresholds_apply(service):
    with ServiceHarness(Settings(p_threshold=0.99, s_threshold=0.99)) as strict:
        picks = strict.post_mseed(event_bytes(0)).json()["picks"]
    assert len(picks) < len(service.post_mseed(event_bytes(0)).json()["picks"])


def test_cors_from_settings():
    with ServiceHarness(Settings(cors_origins=["https://ui.example"])) as service:
        preflight = {"access-control-request-method": "POST", "access-control-request-headers": "x-api-key"}
        allowed = service.request(
            "OPTIONS", "/v1/picks", headers={"origin": "https://ui.example", **preflight}
        )
        denied = service.request(
            "OPTIONS", "/v1/picks", headers={"origin": "https://evil.example", **preflight}
        )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://ui.example"
    assert "access-control-allow-origin" not in denied.headers


def test_run_server_serves_over_http():
    """``run_server`` (what ``seispick serve`` calls) under real uvicorn, then a clean SIGTERM shutdown."""
    port = free_port()
    code = (
        "from seispick.service.api.app import run_server; from seispick.service.settings import Settings; "
        f"run_server(Settings(port={port}, log_level='info', max_body_bytes=200000))"
    )
    server = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        response = httpx.post(
            f"{base}/v1/picks", content=event_bytes(0), headers={"content-type": "application/vnd.fdsn.mseed"}
        )
        assert response.status_code == 200 and response.json()["picks"]
        too_big = httpx.post(
            f"{base}/v1/picks",
            content=b"\0" * 300_000,
            headers={"content-type": "application/vnd.fdsn.mseed"},
        )
        assert too_big.status_code == 413 and "200000 bytes" in too_big.json()["detail"]
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=20)[0].decode()
    assert server.returncode in (0, -signal.SIGTERM), output  # uvicorn re-raises SIGTERM after shutting down
    assert "Application shutdown complete" in output, output
    assert "Traceback" not in output, output


def test_the_service_never_imports_torch_or_training():
    code = (
        "import sys; import seispick.service.api.app; "
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'seispick.training'))]; "
        "assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
