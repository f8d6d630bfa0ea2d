"""ConvNetQuake where PhaseNet is: `seispick pick --model convnetquake-ta109c` and `POST /v1/picks` with the
detector answer its detections (CSV and JSON, equal to ``detect``), refuse what only pickers give with the
reason, and the OpenAPI document lists the detection and event routes."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import obspy
import pytest
from click.testing import CliRunner

from seispick.cli.main import cli
from seispick.models.registry import ModelRegistry
from seispick.picking.detect import detect
from seispick.picking.formats import DETECTION_CSV_COLUMNS
from seispick.service.settings import Settings
from tests.service_harness import MSEED, ServiceHarness, event_bytes, event_stream
from tests.streams import REAL

DETECTOR = "convnetquake-ta109c"
FILES = [REAL / "BK_SCZ_2014011401023067.mseed", REAL / "PG_LM_2004021011380730.mseed"]


@pytest.fixture(scope="module")
def detector():
    return ModelRegistry().load(DETECTOR, prefer_gpu=False)


@pytest.fixture(scope="module")
def expected(detector):
    stream = obspy.Stream()
    for path in FILES:
        stream += obspy.read(str(path))
    found = detect(stream, detector)
    assert len(found) >= 2, "each file holds an event the detector finds"
    return found


def run_pick(*args) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["pick", *map(str, args)])
    return result.exit_code, result.stdout, result.stderr


def same(rows: list[dict], expected) -> None:
    assert [r["id"] for r in rows] == [d.id for d in expected]
    for row, d in zip(rows, expected):
        assert obspy.UTCDateTime(row["start_time"]) == d.start_time
        assert obspy.UTCDateTime(row["end_time"]) == d.end_time
        assert float(row["probability"]) == pytest.approx(d.probability, abs=1e-6)
        assert row["model"] == DETECTOR and row["trace_id"] == d.trace_id
        cell = row.get("cell")
        if d.cell is None:
            assert cell in (None, "")
        else:
            assert int(cell) == d.cell
            assert float(row["cell_probability"]) == pytest.approx(d.cell_probability, abs=1e-6)


def test_pick_with_the_detector_writes_its_detections(tmp_path: Path, expected):
    code, out, err = run_pick(*FILES, "--model", DETECTOR)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == DETECTION_CSV_COLUMNS
    same(rows, expected)
    assert f"{len(expected)} detection(s) on 2 instrument(s) from 2 file(s)" in err

    target = tmp_path / "detections.json"
    code, _, err = run_pick(*FILES, "--model", DETECTOR, "--format", "json", "-o", target, "-q")
    assert code == 0, err
    body = json.loads(target.read_text())
    assert body["model"] == DETECTOR and body["picks"] == [] and len(body["model_sha256"]) == 64
    same(body["detections"], expected)

    code, out, _ = run_pick(*FILES, "--model", DETECTOR, "--detection-threshold", "1.0", "-q")
    assert code == 0 and len(list(csv.DictReader(io.StringIO(out)))) <= len(expected)


@pytest.mark.parametrize(
    "options, message",
    [
        (["--format", "quakeml"], "no QuakeML form"),
        (["--p-threshold", "0.5"], "no P/S thresholds"),
        (["--stacking", "max"], "not stacked"),
        (["--plot", "p.png"], "--plot draws a picker's probabilities"),
    ],
)
def test_pick_with_the_detector_refuses_picker_options(options, message):
    code, out, err = run_pick(FILES[0], "--model", DETECTOR, *options)
    assert code == 2 and message in err, err


def test_post_with_the_detector_answers_its_detections(detector):
    stream = event_stream(0)
    expected = detect(stream, detector)
    assert expected
    with ServiceHarness(Settings(models=["phasenet-original", DETECTOR])) as service:
        answer = service.post_mseed(event_bytes(0), params={"model": DETECTOR})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model"] == DETECTOR and body["picks"] == []
        same(body["detections"], expected)
        text = service.post_mseed(event_bytes(0), params={"model": DETECTOR, "format": "csv"})
        assert text.status_code == 200 and text.headers["content-type"].startswith("text/csv")
        same(list(csv.DictReader(io.StringIO(text.text))), expected)
        strict = service.post_mseed(event_bytes(0), params={"model": DETECTOR, "detection_threshold": 1.0})
        assert strict.status_code == 200 and len(strict.json()["detections"]) <= len(expected)
        assert (
            service.post_mseed(b"", headers={"content-type": MSEED}, params={"model": DETECTOR}).status_code
            == 400
        )
        paths = service.get("/openapi.json").json()["paths"]
    for path in (
        "/v1/detections",
        "/v1/stream/detections",
        "/v1/events",
        "/v1/events/{event_id}",
        "/v1/stream/events",
    ):
        assert path in paths, path
    assert "detector" in paths["/v1/picks"]["post"]["description"]
