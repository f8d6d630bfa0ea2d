"""Configuration that cannot silently do nothing: unknown SEISPICK_* names refuse start-up with the nearest
valid name, errors name the setting as it was given, ``seispick config`` shows the effective settings with
secrets masked, and selectors or model patterns that match nothing are warnings and a state."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import obspy
import pytest
import yaml
from click.testing import CliRunner

from seispick.cli.main import cli
from seispick.replay.server import ThreadedReplayServer
from seispick.service.settings import (
    Settings,
    SettingsError,
    StreamingSettings,
    check_environment,
    env_variables,
    load_settings,
    mask_url,
    nearest_variable,
)
from seispick.service.stream.runtime import DEMO_DIR
from tests.service_harness import ServiceHarness


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No SEISPICK_* variable of the machine running the tests leaks in."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("SEISPICK_"):
            monkeypatch.delenv(name)


def run_cli(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env or {})


# The names the old Kubernetes manifest set: each ignored before, so 4 replicas picked nothing.
OLD_MANIFEST = {
    "SEISPICK_SEEDLINK_HOST": "SEISPICK_STREAMING__SEEDLINK",
    "SEISPICK_SEEDLINK_PORT": "SEISPICK_STREAMING__SEEDLINK",
    "SEISPICK_SEEDLINK_SELECTORS": "SEISPICK_STREAMING__SELECTORS",
    "SEISPICK_SHARD_COUNT": "SEISPICK_STREAMING__SHARD_COUNT",
    "SEISPICK_SHARD_INDEX": "SEISPICK_STREAMING__SHARD_INDEX",
    "SEISPICK_PROT": "SEISPICK_PORT",
    "SEISPICK_REDIS_ULR": "SEISPICK_REDIS_URL",
    "seispick_streaming__watchdirs": "SEISPICK_STREAMING__WATCH_DIRS",
}


@pytest.mark.parametrize("given, nearest", OLD_MANIFEST.items())
def test_unknown_variable_names_its_nearest_valid_name(given: str, nearest: str) -> None:
    assert nearest_variable(given) == nearest
    with pytest.raises(SettingsError) as caught:
        check_environment({given: "1", "SEISPICK_PORT": "8000", "PATH": "/bin"})
    assert given in str(caught.value) and f"did you mean {nearest}?" in str(caught.value)
    assert "SEISPICK_PORT:" not in str(caught.value)  # valid names are not reported


def test_serve_refuses_to_start_on_an_unknown_variable() -> None:
    result = run_cli("serve", env={"SEISPICK_SHARD_COUNT": "4", "SEISPICK_STREAMING__SEEDLINK": "h:18000"})
    assert result.exit_code == 1
    assert (
        "SEISPICK_SHARD_COUNT: no such setting; did you mean SEISPICK_STREAMING__SHARD_COUNT?"
        in result.output
    )
    assert "serving on" not in result.output


def test_every_valid_name_loads_and_the_other_readers_are_known() -> None:
    names = env_variables()
    assert names["SEISPICK_STREAMING__SHARD_INDEX"] == ("streaming", "shard_index")
    assert names["SEISPICK_BATCHING__MAX_BATCH"] == ("batching", "max_batch")
    check_environment(
        {"SEISPICK_USER_MODEL_DIR": "/m", "SEISPICK_INFERENCE_THREADS": "2", **dict.fromkeys(names, "")}
    )
    listed = run_cli("config", "--names")
    assert listed.exit_code == 0 and "SEISPICK_STREAMING__SPILL_DIR\tstreaming.spill_dir" in listed.output


@pytest.mark.parametrize(
    "args, env, named",
    [
        ((), {"SEISPICK_PORT": "70000"}, "SEISPICK_PORT='70000'"),
        (("--port", "70000"), {}, "--port=70000"),
        (("--port", "70000"), {"SEISPICK_PORT": "9000"}, "--port=70000"),  # the flag wins and is named
        ((), {"SEISPICK_STREAMING__SILENCE_TIMEOUT_S": "-1"}, "SEISPICK_STREAMING__SILENCE_TIMEOUT_S='-1'"),
        ((), {"SEISPICK_STREAMING": '{"shard_count": 0}'}, "SEISPICK_STREAMING (its shard_count)"),
        ((), {"SEISPICK_STREAMING": "{not json"}, "SEISPICK_STREAMING: not a JSON object"),
        (("--shard-index", "3", "--shard-count", "3"), {}, "--shard-index 3 must be below --shard-count 3"),
        (
            (),
            {"SEISPICK_STREAMING__SHARD_INDEX": "4", "SEISPICK_STREAMING__SHARD_COUNT": "4"},
            "SEISPICK_STREAMING__SHARD_INDEX 4 must be below SEISPICK_STREAMING__SHARD_COUNT 4",
        ),
        (
            (),
            {"SEISPICK_STREAMING__SEEDLINK": "h:18000"},
            "SEISPICK_STREAMING__SEEDLINK needs stream selectors",
        ),
        (("--seedlink", "h:18000"), {}, "--seedlink needs stream selectors"),
        ((), {"SEISPICK_DEFAULT_MODEL": "nope"}, "SEISPICK_DEFAULT_MODEL: unknown model 'nope'"),
        (("--model", "nope"), {}, "--model: unknown model 'nope'"),
        ((), {"SEISPICK_STREAMING__MODEL": "nope"}, "SEISPICK_STREAMING__MODEL: unknown model 'nope'"),
        (
            (),
            {"SEISPICK_STREAMING__STATION_FILE": "/no/such/file"},
            "SEISPICK_STREAMING__STATION_FILE: /no/such",
        ),
    ],
)
def test_errors_name_the_setting_as_it_was_given(args: tuple, env: dict, named: str) -> None:
    for command in ("serve", "config"):
        result = run_cli(command, *args, env=env)
        assert result.exit_code == 1, result.output
        assert named in result.output, result.output
        assert "Traceback" not in result.output


def test_a_secret_value_is_not_repeated_in_an_error(monkeypatch) -> None:
    monkeypatch.setenv("SEISPICK_API_KEYS", '["s3cret", 5')
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "SEISPICK_API_KEYS" in str(caught.value) and "s3cret" not in str(caught.value)


def test_config_prints_the_effective_settings_with_secrets_masked(tmp_path) -> None:
    env = {
        "SEISPICK_REDIS_URL": "redis://seispick:hunter2@redis.example:6379/0",
        "SEISPICK_API_KEYS": "key-one,key-two",
        "SEISPICK_STREAMING__SHARD_COUNT": "4",
        "SEISPICK_STREAMING__SHARD_INDEX": "1",
        "SEISPICK_STREAMING__SEEDLINK": "seedlink.example:18000",
        "SEISPICK_STREAMING__SELECTORS": "GE_*:BH?,IU_ANMO:BH?",
        "SEISPICK_PORT": "9000",
    }
    result = run_cli("config", "--port", "9100", "--spill-dir", str(tmp_path), env=env)
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.stdout)
    for secret in ("hunter2", "key-one", "key-two"):
        assert secret not in result.output
    assert shown["redis_url"] == "redis://seispick:****@redis.example:6379/0"
    assert shown["api_keys"] == ["****", "****"]
    assert shown["port"] == 9100  # the flag over the variable
    assert shown["streaming"]["shard_index"] == 1 and shown["streaming"]["shard_count"] == 4
    assert shown["streaming"]["selectors"] == ["GE_*:BH?", "IU_ANMO:BH?"]
    assert shown["streaming"]["spill_dir"] == str(tmp_path)
    as_json = run_cli("config", "--format", "json", env=env)
    assert json.loads(as_json.stdout)["streaming"] == {**shown["streaming"], "spill_dir": None}
    assert Settings.model_validate(json.loads(as_json.stdout) | {"api_keys": []}).port == 9000


def test_mask_url_keeps_everything_but_the_password() -> None:
    assert mask_url("redis://:pw@h:1/2") == "redis://:****@h:1/2"
    assert (
        mask_url("rediss://user:p%40ss@h/0?ssl_cert_reqs=none") == "rediss://user:****@h/0?ssl_cert_reqs=none"
    )
    assert mask_url("redis://h:6379/0") == "redis://h:6379/0"


def test_a_model_pattern_that_matches_nothing_is_a_warning() -> None:
    settings = Settings(models=["phasenet-*", "eqt-*"])
    selected, unmatched = settings.select_models(
        ["phasenet-original", "phasenet-ta109c", "convnetquake-ta109c"]
    )
    assert selected == ["phasenet-original", "phasenet-ta109c"] and unmatched == ["eqt-*"]
    result = CliRunner().invoke(cli, ["config"], env={"SEISPICK_MODELS": "phasenet-*,eqt-*"})
    assert result.exit_code == 0
    assert "warning: SEISPICK_MODELS: 'eqt-*' matches no installed model" in result.stderr


def test_a_selector_that_matches_nothing_is_a_warning_and_a_state(caplog) -> None:
    files = sorted(DEMO_DIR.glob("*.mseed"))
    start = min(tr.stats.starttime for f in files for tr in obspy.read(str(f), headonly=True))
    with ThreadedReplayServer(files, port=0, speed=20.0) as replay:
        settings = Settings(
            models=["phasenet-original", "eqt-*"],
            default_model="phasenet-original",
            streaming=StreamingSettings(
                seedlink=[f"127.0.0.1:{replay.port}"],
                selectors=["SP_DEMO*:HH?", "XX_NONE:BH?"],
                begin_time=datetime.fromtimestamp(start.timestamp, tz=timezone.utc),
                selector_grace_s=3.0,
                reconnect_max_s=1.0,
            ),
        )
        with caplog.at_level("WARNING"), ServiceHarness(settings) as service:
            early = service.get("/v1/stations").json()["selection"]
            deadline = time.time() + 30
            while time.time() < deadline:
                selection = service.get("/v1/stations").json()["selection"]
                states = {row["selector"]: row["state"] for row in selection["selectors"]}
                if states.get("XX_NONE:BH?") == "no_match" and states.get("SP_DEMO*:HH?") == "matched":
                    break
                time.sleep(0.3)
    assert {row["selector"]: row["state"] for row in early["selectors"]}["XX_NONE:BH?"] == "waiting"
    assert states == {"SP_DEMO*:HH?": "matched", "XX_NONE:BH?": "no_match"}, selection
    matched = next(r for r in selection["selectors"] if r["selector"] == "SP_DEMO*:HH?")
    assert matched["stations"] == 3 and matched["records"] > 0
    assert "selector XX_NONE:BH? matched no record in 3 s" in selection["warnings"]
    assert "SEISPICK_MODELS: 'eqt-*' matches no installed model" in selection["warnings"]
    logged = [r.getMessage() for r in caplog.records]
    assert any("XX_NONE:BH? matched no record" in m for m in logged)
    assert any("'eqt-*' matches no installed model" in m for m in logged)


# -- one schema: a SeedLink knob is declared once, in SeedLinkSourceConfig
def _other_value(knob: str, tmp_path) -> tuple[str, object]:
    """A value of the knob other than its default, as typed (variable or flag) and as `config` shows it."""
    from typing import Literal, get_args, get_origin

    from seispick.seedlink.client.source_config import SeedLinkSourceConfig

    field = SeedLinkSourceConfig.model_fields[knob]
    kind = field.annotation
    if type(None) in get_args(kind):  # X | None
        (kind,) = (a for a in get_args(kind) if a is not type(None))
    if knob == "selectors":
        return "GE_APE:BH?,IU_ANMO", ["GE_APE:BH?", "IU_ANMO"]
    if knob == "station_file":
        path = tmp_path / "stations.txt"
        path.write_text("GE_WLF:BH?\n")
        return str(path), str(path)
    if kind is datetime:
        return "2024-03-01T12:00:00Z", "2024-03-01T12:00:00Z"
    if get_origin(kind) is Literal:
        choice = [c for c in get_args(kind) if c != field.default][-1]
        return str(choice), choice
    if kind is bool:
        return str(not field.default).lower(), not field.default
    if kind in (int, float):
        value = kind(field.default * 2 + 61)  # above the defaults (the reconnect bounds keep their order)
        return str(value), value
    if kind is str:
        return "other", "other"
    raise AssertionError(f"SeedLinkSourceConfig.{knob}: give this test a value of {field.annotation}")


def test_every_seedlink_knob_is_a_variable_a_flag_shown_by_config_and_reaches_the_client(tmp_path) -> None:
    """A field added to SeedLinkSourceConfig is settable by SEISPICK_*, offered by serve, shown by config and
    handed to the client, with no other file touched: this fails for a knob that is not wired."""
    from seispick.seedlink.client.source import SeedLinkSource
    from seispick.seedlink.client.source_config import SeedLinkSourceConfig
    from seispick.service.settings import seedlink_knobs
    from seispick.service.stream.runtime import source_configs

    per_server = ("kind", "name", "host", "port")  # each --seedlink HOST:PORT sets these
    knobs = [k for k in SeedLinkSourceConfig.model_fields if k not in per_server]
    assert sorted(seedlink_knobs().values()) == sorted(knobs) and len(knobs) >= 10
    values = {knob: _other_value(knob, tmp_path) for knob in knobs}
    variables = {name: f"SEISPICK_STREAMING__{name.upper()}" for name in seedlink_knobs()}
    listed = run_cli("config", "--names").output
    help_text = "".join(run_cli("serve", "--help").output.split())  # long names are wrapped
    flags = {"selectors": "--select", "station_file": "--station-file"}
    for name, knob in seedlink_knobs().items():
        assert f"{variables[name]}\tstreaming.{name}" in listed
        assert (
            flags.get(knob, f"--seedlink-{knob.replace('_', '-')}") in help_text
            and variables[name] in help_text
        )
    by_env = {variables[name]: values[knob][0] for name, knob in seedlink_knobs().items()}
    by_flag = [
        arg
        for name, knob in seedlink_knobs().items()
        for typed in (values[knob][0].split(",") if knob == "selectors" else [values[knob][0]])
        for arg in (flags.get(knob, f"--seedlink-{knob.replace('_', '-')}"), typed)
    ]
    for args, env in (((), by_env), (tuple(by_flag), {})):
        result = run_cli("config", "--format", "json", "--seedlink", "h:18000", *args, env=env)
        assert result.exit_code == 0, result.output
        (source,) = json.loads(result.stdout)["streaming"]["sources"]
        for knob, (_, shown) in values.items():
            assert source[knob] == shown, (knob, args or env)
    settings = Settings.model_validate({"streaming": json.loads(result.stdout)["streaming"]})
    (config,) = source_configs(settings, demo_port=None)
    client = SeedLinkSource(config, on_trace=lambda trace: None)
    assert client.config.model_dump(mode="json") == source


def test_sources_are_given_as_json_and_the_shorthands_add_to_them(tmp_path) -> None:
    sources = [
        {"kind": "seedlink", "host": "a.example", "port": 18001, "selectors": ["GE_*:BH?"], "keepalive_s": 5},
        {"kind": "directory", "path": str(tmp_path), "poll_s": 0.5},
    ]
    env = {
        "SEISPICK_STREAMING__SOURCES": json.dumps(sources),
        "SEISPICK_STREAMING__SEEDLINK": "b.example:18002",
        "SEISPICK_STREAMING__SELECTORS": "IU_ANMO",
        "SEISPICK_STREAMING__SEEDLINK_IDLE_TIMEOUT_S": "60",
    }
    result = run_cli("config", "--format", "json", env=env)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)["streaming"]["sources"]
    assert [(s["kind"], s.get("host"), s.get("keepalive_s"), s.get("idle_timeout_s")) for s in shown] == [
        ("seedlink", "b.example", 30.0, 60.0),  # the shorthand server, with the shorthand knobs
        ("seedlink", "a.example", 5.0, 120.0),  # a listed source keeps its own knobs
        ("directory", None, None, None),
    ]
    settings = Settings.model_validate({"streaming": json.loads(result.stdout)["streaming"]})
    assert len(settings.streaming.sources) == 3, "settings read back from config are the same sources"
    settings.streaming.seedlink = ["c.example:18003"]  # assigning a shorthand replaces its sources
    assert [getattr(s, "host", None) for s in settings.streaming.sources] == ["c.example", "a.example", None]
    bad = run_cli("config", env={"SEISPICK_STREAMING__SOURCES": '[{"kind": "seedlink", "host": "a"}]'})
    assert (
        bad.exit_code == 1 and "SEISPICK_STREAMING__SOURCES" in bad.output and "give selectors" in bad.output
    )
