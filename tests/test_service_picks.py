"""POST /v1/picks returns what ``seispick pick`` (annotate.annotate) finds, for every body type and format."""

from __future__ import annotations

import csv
import io

import obspy
import pytest
from service_harness import MSEED, ServiceHarness, event_bytes, event_stream, to_json_body, to_mseed, variant

from seispick.models.registry import ModelRegistry
from seispick.picking.annotate import annotate
from seispick.picking.formats import render
from seispick.service.settings import Settings


@pytest.fixture(scope="module")
def service():
    with ServiceHarness(Settings()) as harness:
        yield harness


@pytest.fixture(scope="module")
def model():
    return ModelRegistry().load()


def expected(stream: obspy.Stream, model, **thresholds):
    return annotate(stream, model, thresholds=thresholds or None)


def dicts(items) -> list[dict]:
    return [item.as_dict() for item in items]


@pytest.mark.parametrize("content_type", [MSEED, "application/octet-stream"])
def test_mseed_body_gives_the_cli_picks(service, model, content_type):
    response = service.post("/v1/picks", content=event_bytes(0), headers={"content-type": content_type})
    assert response.status_code == 200, response.text
    body = response.json()
    truth = expected(event_stream(0), model)
    assert body["model"] == model.name and body["model_sha256"] == model.sha256
    assert body["picks"] == dicts(truth.picks)
    assert body["detections"] == dicts(truth.detections)
    assert body["covered"] == truth.covered_intervals()
    assert body["notes"] == truth.notes
    assert {p["phase"] for p in body["picks"]} == {"P", "S"}  # a real event: both phases found
    assert "probabilities" not in body


def test_pick_times_match_the_catalogue(service):
    """The analyst picks of BG.AL4 lie at samples 3000 (P) and 3062 (S) of the 100 Hz file."""
    start = event_stream(0)[0].stats.starttime
    picks = service.post_mseed(event_bytes(0)).json()["picks"]
    best = {p["phase"]: p for p in sorted(picks, key=lambda p: p["probability"])}
    assert abs(obspy.UTCDateTime(best["P"]["peak_time"]) - (start + 30.00)) < 0.1
    assert abs(obspy.UTCDateTime(best["S"]["peak_time"]) - (start + 30.62)) < 0.1


def test_multipart_upload_of_two_files(service, model):
    files = [("files", (f"event{i}.mseed", event_bytes(i), MSEED)) for i in range(2)]
    response = service.post("/v1/picks", files=files)
    assert response.status_code == 200, response.text
    truth = expected(event_stream(0) + event_stream(1), model)
    assert response.json()["picks"] == dicts(truth.picks)
    assert {p["trace_id"] for p in response.json()["picks"]} == {"BG.AL4..DP", "BG.ACR..DP"}


def test_json_body_single_and_list(service, model):
    one = service.post("/v1/picks", json=to_json_body(event_stream(0)))
    assert one.status_code == 200, one.text
    assert one.json()["picks"] == dicts(expected(event_stream(0), model).picks)
    both = service.post("/v1/picks", json=[to_json_body(event_stream(i)) for i in range(2)])
    assert both.status_code == 200, both.text
    assert both.json()["picks"] == dicts(expected(event_stream(0) + event_stream(1), model).picks)


def test_csv_is_what_the_cli_writes(service, model):
    response = service.post_mseed(event_bytes(1), params={"format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    truth = expected(event_stream(1), model)
    assert response.text == render("csv", truth.picks)
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["peak_time"] for r in rows] == [p["peak_time"] for p in dicts(truth.picks)]


def test_quakeml_parses_with_obspy(service, model):
    response = service.post_mseed(event_bytes(0), params={"format": "quakeml"})
    assert response.status_code == 200
    catalog = obspy.read_events(io.BytesIO(response.content), format="QUAKEML")
    truth = expected(event_stream(0), model)
    picks = catalog[0].picks
    assert sorted((p.time, p.phase_hint) for p in picks) == sorted(
        (p.peak_time, p.phase) for p in truth.picks
    )
    assert {p.waveform_id.channel_code for p in picks if p.phase_hint == "P"} == {"DPZ"}


def test_thresholds_from_the_query(service, model):
    strict = service.post_mseed(event_bytes(0), params={"p_threshold": 0.95, "s_threshold": 0.99}).json()
    truth = expected(event_stream(0), model, P=0.95, S=0.99)
    assert strict["picks"] == dicts(truth.picks)
    assert len(strict["picks"]) < len(service.post_mseed(event_bytes(0)).json()["picks"])


def test_probability_traces_with_decimation(service, model):
    body = service.post_mseed(event_bytes(0), params={"probabilities": "true", "decimate": 10}).json()
    (trace,) = body["probabilities"]
    assert trace["trace_id"] == "BG.AL4..DP" and trace["sampling_rate"] == 10.0
    assert set(trace["data"]) == set(model.card.labels)
    truth = expected(event_stream(0), model).annotations[0].probabilities
    assert len(trace["data"]["P"]) == len(truth[1][::10])
    assert max(abs(a - b) for a, b in zip(trace["data"]["P"], truth[1][::10])) < 1e-4


def test_variant_streams_keep_their_identity(service, model):
    stream = variant(1, "XYZ", 1234.56)
    body = service.post_mseed(to_mseed(stream)).json()
    assert body["picks"] == dicts(expected(stream, model).picks)
    assert {p["trace_id"] for p in body["picks"]} == {"BG.XYZ..DP"}


def test_models_endpoints(service, model):
    listing = service.get("/v1/models").json()
    assert listing["default"] == model.name
    (entry,) = [m for m in listing["models"] if m["name"] == model.name]
    assert entry["loaded"] and entry["default"] and entry["sha256"] == model.sha256
    card = service.get(f"/v1/models/{model.name}").json()
    assert card == model.card.model_dump(mode="json")


def test_openapi_documents_the_bodies(service):
    schema = service.get("/openapi.json").json()
    content = schema["paths"]["/v1/picks"]["post"]["requestBody"]["content"]
    assert {"application/vnd.fdsn.mseed", "multipart/form-data", "application/json"} <= set(content)
    assert "WaveformJson" in schema["components"]["schemas"]
