"""The deployment files say what the service reads: every SEISPICK_* name in compose, deploy/ and the
images is a real setting and loads through Settings; every metric the Grafana dashboard and the alert rules
query exists in /metrics of a running app; rule files and manifests validate (promtool, the compose spec,
Kubernetes schemas) where those tools are installed. No Docker engine or cluster runs here."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from seispick.service.settings import (
    EventsSettings,
    Settings,
    StreamingSettings,
    check_environment,
    load_settings,
)
from seispick.service.stream.runtime import DEMO_DIR
from tests.service_harness import ServiceHarness

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = sorted(ROOT.glob("docker-compose*.yml"))
DEPLOY = sorted(p for p in (ROOT / "deploy").rglob("*") if p.is_file())
DOCKERFILES = sorted((ROOT / "docker").glob("Dockerfile*"))
K8S = ROOT / "deploy" / "k8s" / "seispick.yaml"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "seispick.json"
NAME = re.compile(r"\bSEISPICK_[A-Z0-9_]+\b")
# a metric name in a query: the service's own metrics and prometheus-client's process_*
METRIC = r"\b((?:seispick|process)_[a-z0-9_]+)\b"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    import os

    for name in list(os.environ):
        if name.upper().startswith("SEISPICK_"):
            monkeypatch.delenv(name)


def test_the_files_exist() -> None:
    assert len(COMPOSE) == 2 and len(DOCKERFILES) == 2 and K8S.is_file() and ALERTS.is_file()
    assert DASHBOARD.is_file()


@pytest.mark.parametrize("path", COMPOSE + DEPLOY + DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_seispick_name_in_the_deployment_files_is_a_setting(path: Path) -> None:
    names = set(NAME.findall(path.read_text()))
    check_environment(dict.fromkeys(names, "x"))  # raises naming the unknown one and its nearest name


def compose_environments() -> dict[str, dict[str, str]]:
    """The seispick service's environment in each compose setup (the GPU file overrides the base)."""
    base = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["seispick"]["environment"]
    gpu = yaml.safe_load((ROOT / "docker-compose.gpu.yml").read_text())["services"]["seispick"]["environment"]
    return {"cpu": dict(base), "gpu": {**base, **gpu}}


def k8s_documents() -> dict[str, dict]:
    return {doc["kind"] + "/" + doc["metadata"]["name"]: doc for doc in yaml.safe_load_all(K8S.read_text())}


def k8s_environment(index: int) -> dict[str, str]:
    """What a replica's container gets: the ConfigMap, then its env (pod index and the Redis Secret)."""
    docs = k8s_documents()
    env = dict(docs["ConfigMap/seispick"]["data"])
    container = docs["StatefulSet/seispick"]["spec"]["template"]["spec"]["containers"][0]
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "pod-index" in json.dumps(item["valueFrom"]):
            env[item["name"]] = str(index)
        else:
            env[item["name"]] = "redis://:secret@redis.example:6379/0"  # from the Secret
    return env


def load(monkeypatch, env: dict[str, str], args: dict | None = None) -> Settings:
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    return load_settings(args)


@pytest.mark.parametrize("setup", ["cpu", "gpu"])
def test_compose_environment_loads_through_settings(monkeypatch, setup: str) -> None:
    env = compose_environments()[setup]
    settings = load(monkeypatch, env, {("demo",): ("--demo", True)})  # the command is `serve --demo`
    assert settings.host == "0.0.0.0" and settings.redis_url == "redis://redis:6379/0"
    assert settings.streaming.spill_dir == Path("/var/lib/seispick/spill")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["seispick"]["volumes"]
    assert any(m.endswith(":" + str(settings.streaming.spill_dir)) for m in mounts), (
        "the spill folder is a volume"
    )
    if setup == "gpu":
        assert settings.batching.max_batch == 512


def test_kubernetes_replicas_each_load_one_shard(monkeypatch) -> None:
    docs = k8s_documents()
    replicas = docs["StatefulSet/seispick"]["spec"]["replicas"]
    owners = {}
    for index in range(replicas):
        with monkeypatch.context() as m:
            settings = load(m, k8s_environment(index))
        streaming = settings.streaming
        assert streaming.shard_count == replicas, "SEISPICK_STREAMING__SHARD_COUNT must equal replicas"
        assert streaming.shard_index == index and streaming.seedlink and streaming.selectors
        assert settings.redis_url and settings.host == "0.0.0.0"
        owners[index] = sum(streaming.owns("XX", f"S{k:04d}") for k in range(4000))
    assert sum(owners.values()) == 4000 and min(owners.values()) > 800  # every station once, shards balanced
    spec = docs["StatefulSet/seispick"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in spec["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert mounts[str(settings.streaming.spill_dir)] == "spill"
    assert [t["metadata"]["name"] for t in spec["volumeClaimTemplates"]] == ["spill"]
    assert "/var/lib/seispick/cache" in mounts  # HOME's caches stay writable with a read-only root


def test_kubernetes_associates_once_with_the_station_file_of_a_configmap(monkeypatch, tmp_path) -> None:
    """Sharded replicas must not associate; one associator follows the merged pick stream (README "Events")."""
    from click.testing import CliRunner

    from seispick.cli.associate_cmd import associate
    from seispick.events.stations import read_stations

    docs = k8s_documents()
    for index in (0, 1):
        with monkeypatch.context() as m:
            assert not load(m, k8s_environment(index)).events.active(demo=False), "replicas: events off"
    deployment = docs["Deployment/seispick-associator"]["spec"]
    assert deployment["replicas"] == 1 and deployment["strategy"] == {"type": "Recreate"}
    pod = deployment["template"]["spec"]
    container = pod["containers"][0]
    args = container["args"]
    assert args[:3] == ["associate", "--follow", "$(SEISPICK_REDIS_URL)"]
    assert any(
        e["name"] == "SEISPICK_REDIS_URL" and "secretKeyRef" in e["valueFrom"] for e in container["env"]
    )
    # the station file is the ConfigMap's, mounted where --stations names it
    stations_path = Path(args[args.index("--stations") + 1])
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    (volume,) = [name for name, path in mounts.items() if Path(path) == stations_path.parent]
    configmap = docs["ConfigMap/" + volumes[volume]["configMap"]["name"]]
    csv = tmp_path / stations_path.name
    csv.write_text(configmap["data"][stations_path.name])
    assert len(read_stations(csv)) >= 1
    # the arguments are the command's own (parsed, not run), the metrics port is the one scraped
    resolved = [a.replace("$(SEISPICK_REDIS_URL)", "redis://redis:6379/0") for a in args]
    resolved[resolved.index("--stations") + 1] = str(csv)
    ctx = associate.make_context("associate", resolved)
    assert ctx.params["follow_url"] == "redis://redis:6379/0"
    annotations = deployment["template"]["metadata"]["annotations"]
    assert str(ctx.params["metrics_port"]) == annotations["prometheus.io/port"]
    assert CliRunner().invoke(associate, ["--help"]).exit_code == 0
    for doc in docs.values():  # every container says when to pull its image
        for c in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            assert c.get("imagePullPolicy") in ("Always", "IfNotPresent"), c["name"]


def test_the_images_have_writable_caches_and_one_python() -> None:
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        for variable in ("HOME=/var/lib/seispick", "XDG_CACHE_HOME=", "MPLCONFIGDIR="):
            assert variable in text, (dockerfile.name, variable)
        assert "USER 10001" in text and "chown -R 10001" in text and "HEALTHCHECK" in text
    lines = (ROOT / "docker" / "Dockerfile.gpu").read_text().splitlines()
    gpu = "\n".join(line for line in lines if not line.lstrip().startswith("#"))  # instructions only
    assert "python3-pip" not in gpu and "python3.11 -m venv" in gpu
    assert not re.search(r"python3\.(?!11)\d+", gpu), "one Python version in the GPU image"


def test_compose_has_healthchecks_persistence_and_provisioned_grafana() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert all("healthcheck" in service for service in services.values())
    assert "--appendonly" in services["redis"]["command"] and services["redis"]["volumes"]
    grafana = " ".join(services["grafana"]["volumes"])
    assert "deploy/grafana/provisioning" in grafana and "deploy/grafana/dashboards" in grafana
    datasource = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    dashboard = json.loads(DASHBOARD.read_text())
    assert all(panel["datasource"]["uid"] == uid for panel in dashboard["panels"])
    gpu = yaml.safe_load((ROOT / "docker-compose.gpu.yml").read_text())["services"]["seispick"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


# ------------------------------------------------------------------------------------ metrics
def queried_expressions() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for row in dashboard["panels"] for p in [row, *row.get("panels", [])]]  # collapsed rows too
    exprs += [target["expr"] for panel in panels for target in panel.get("targets", [])]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"]]
    return exprs


@pytest.fixture(scope="module")
def live_metrics(tmp_path_factory) -> str:
    """/metrics of an app that picked the demo stations from a watched folder."""
    folder = tmp_path_factory.mktemp("watched")
    for path in DEMO_DIR.glob("*.mseed"):
        shutil.copy(path, folder / path.name)
    settings = Settings(
        models=["phasenet-original"],
        default_model="phasenet-original",
        streaming=StreamingSettings(watch_dirs=[folder], silence_timeout_s=2.0),
        events=EventsSettings(
            stations=DEMO_DIR / "stations.csv"
        ),  # association on: its metrics exported (DEMO1-3 have no coordinates: counts stay 0)
    )
    with ServiceHarness(settings, timeout=120) as service:
        deadline = time.time() + 90
        while time.time() < deadline:
            rows = service.get("/v1/stations").json()["stations"]
            if rows and sum(r["picks"] for r in rows) > 0 and all(r["state"] == "silent" for r in rows):
                break
            time.sleep(0.5)
        return service.get("/metrics").text


def test_every_metric_of_the_dashboard_and_the_alerts_exists(live_metrics: str) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(live_metrics):
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
    exprs = queried_expressions()
    used = {name for expr in exprs for name in re.findall(METRIC, expr)}
    assert len(used) >= 20 and {"process_resident_memory_bytes", "process_cpu_seconds_total"} <= used
    missing = sorted(used - set(labels))
    assert not missing, f"queried but not exported: {missing}"
    for expr in exprs:  # label matchers name labels the metric has (instance/job come from Prometheus)
        for name, matchers in re.findall(METRIC + r"\{([^}]*)\}", expr):
            for label in re.findall(r"(\w+)\s*[=!]~?", matchers):
                assert label in labels[name] | {"instance", "job"}, (name, label, expr)
    assert not [name for name in labels if name.endswith("_created")], "no _created series"
    published = {(s["kind"], s["status"]) for s in _samples(live_metrics, "seispick_published_total")}
    assert {("pick", "final"), ("detection", "final"), ("pick_update", "confirmed")} <= published
    histograms = {n.removesuffix("_bucket") for n in used if n.endswith("_bucket")}
    assert {"seispick_data_latency_seconds", "seispick_pick_latency_seconds",
            "seispick_inference_duration_seconds", "seispick_inference_batch_size"} <= histograms  # fmt: skip


def _samples(text: str, name: str) -> list[dict]:
    from prometheus_client.parser import text_string_to_metric_families

    families = text_string_to_metric_families(text)
    return [s.labels for family in families for s in family.samples if s.name == name]


def test_the_dashboard_has_rows_for_events_http_and_process() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows[0].startswith("Latency budget") and len(rows) == 4
    assert rows[1].startswith("Events and association") and rows[2:] == ["HTTP", "Process"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


# ------------------------------------------------------------------------- rules and manifests
def test_alert_rules_are_valid_and_their_unit_tests_pass() -> None:
    rules = yaml.safe_load(ALERTS.read_text())
    names = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert {"SeispickStationSilent", "SeispickDataLatencyHigh", "SeispickOutboxGrowing",
            "SeispickInferenceSlow", "SeispickNoPicks", "SeispickNoEvents", "SeispickAssociationOverflow",
            "SeispickAssociationSlow"} <= names  # fmt: skip
    tests = yaml.safe_load((ALERTS.parent / "alerts_test.yml").read_text())
    tested = {t["alertname"] for case in tests["tests"] for t in case["alert_rule_test"]}
    assert tested <= names and {"SeispickNoEvents", "SeispickAssociationOverflow",
                                "SeispickAssociationSlow"} <= tested  # fmt: skip
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus): rules only parsed as YAML")
    folder = ALERTS.parent
    for args in (["check", "rules", "alerts.yml"], ["check", "config", "prometheus.yml"],
                 ["test", "rules", "alerts_test.yml"]):  # fmt: skip
        done = subprocess.run([promtool, *args], cwd=folder, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr


def test_compose_files_follow_the_compose_spec() -> None:
    tool = shutil.which("check-jsonschema")
    if tool is None:
        pytest.skip("check-jsonschema not installed (dev extra)")
    done = subprocess.run([tool, "--builtin-schema", "vendor.compose-spec", *map(str, COMPOSE)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_kubernetes_manifest_validates_against_the_api_schemas() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for doc in yaml.safe_load_all(K8S.read_text()):
        kubernetes_validate.validate(doc, "1.30.0", strict=True)
