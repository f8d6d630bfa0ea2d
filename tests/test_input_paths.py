"""One input path and one pick identity: the same data as SAC, gzip'ed miniSEED and plain miniSEED give the
same picks with the same ids through ``seispick pick``, ``POST /v1/picks`` and the stream (a watched folder);
bodies that are no waveforms get a 4xx saying what they look like and what is accepted.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import shutil
import time
from pathlib import Path

import numpy as np
import obspy
import pytest
from click.testing import CliRunner
from obspy.core.inventory import Inventory

from seispick.cli.pick_cmd import pick as pick_command
from seispick.models.registry import DEFAULT_MODEL
from seispick.picking.results import centis
from seispick.picking.waveforms import (
    WaveformFormatError,
    describe_bytes,
    read_waveform_bytes,
    read_waveforms,
    sniff_format,
)
from seispick.service.api.responses import record_json
from seispick.service.publish.publisher import Record
from seispick.service.settings import Settings, StreamingSettings
from tests.service_harness import DATA, EVENTS, ServiceHarness
from tests.test_stream_picker import chop

MSEED = "application/vnd.fdsn.mseed"


@pytest.fixture(scope="module")
def event_files(tmp_path_factory) -> dict[str, list[Path]]:
    """Two real 3-component events (two stations) as plain miniSEED, gzip'ed miniSEED and six SAC files."""
    folder = tmp_path_factory.mktemp("formats")
    stream = obspy.Stream()
    for name in EVENTS:
        stream += obspy.read(str(DATA / f"{name}.mseed"))
    plain = folder / "events.mseed"
    stream.write(str(plain), format="MSEED")
    packed = folder / "events.mseed.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    sac = []
    for trace in stream:
        path = folder / f"{trace.id}.sac"
        trace.write(str(path), format="SAC")
        sac.append(path)
    return {"mseed": [plain], "mseed.gz": [packed], "sac": sac}


def cli_picks(paths: list[Path], *args: str) -> dict:
    result = CliRunner().invoke(pick_command, [*map(str, paths), "--format", "json", "--quiet", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def post_picks(service: ServiceHarness, paths: list[Path]) -> dict:
    if len(paths) == 1:
        kind = "application/gzip" if paths[0].suffix == ".gz" else MSEED
        response = service.post("/v1/picks", content=paths[0].read_bytes(), headers={"content-type": kind})
    else:
        files = [("files", (p.name, p.read_bytes(), "application/x-sac")) for p in paths]
        response = service.post("/v1/picks", files=files)
    assert response.status_code == 200, response.text
    return response.json()


def stream_picks(paths: list[Path], folder: Path) -> tuple[list[dict], list[dict]]:
    """Picks and station states of a service watching ``folder`` after ``paths`` are copied into it."""
    folder.mkdir()
    settings = Settings(
        streaming=StreamingSettings(model=DEFAULT_MODEL, watch_dirs=[folder], silence_timeout_s=1.0)
    )
    with ServiceHarness(settings, timeout=120) as service:
        time.sleep(1.2)  # the empty folder was polled: the files below are new
        for path in paths:
            shutil.copy(path, folder / path.name)
        deadline = time.time() + 60
        while time.time() < deadline:
            rows = service.get("/v1/stations").json()["stations"]
            if len(rows) == 2 and all(r["state"] == "silent" and r["windows_in_flight"] == 0 for r in rows):
                break
            time.sleep(0.3)
        time.sleep(0.5)
        picks = service.get("/v1/picks", params={"limit": 1000}).json()["picks"]
        rows = service.get("/v1/stations").json()["stations"]
    return picks, rows


def key(pick: dict) -> tuple:
    return pick["id"], pick["trace_id"], pick["phase"], pick["peak_time"]


def test_sac_gzip_and_plain_mseed_give_the_same_picks_and_ids_everywhere(event_files, tmp_path):
    first = cli_picks(event_files["mseed"])
    reference, notes = first["picks"], first["notes"]
    assert any("BG.AL4..DPE: constant data" in n for n in notes)  # the last 20 s of that file are flat
    assert len(reference) >= 4 and {p["phase"] for p in reference} == {"P", "S"}
    for pick in reference:  # the id is the documented hash of the pick itself
        assert isinstance(pick["probability"], float)

    with ServiceHarness(Settings()) as service:
        for fmt, paths in event_files.items():
            assert cli_picks(paths)["picks"] == reference, fmt
            assert post_picks(service, paths)["picks"] == reference, fmt

    for fmt, paths in event_files.items():
        got, stations = stream_picks(paths, tmp_path / fmt.replace(".", "_"))
        assert sorted(map(key, got)) == sorted(map(key, reference)), fmt
        by_id = {p["id"]: p for p in got}
        for pick in reference:
            assert isinstance(by_id[pick["id"]]["probability"], float)  # a number, not Redis' string
            assert abs(by_id[pick["id"]]["probability"] - pick["probability"]) < 1e-4
        for row in stations:  # the notes of the batch run, worded the same way
            batch = [n for n in notes if n.startswith(row["trace_id"][:-2])]
            assert sorted(row["notes"]) == sorted(batch), (fmt, row)


def test_pick_id_is_the_documented_hash_and_every_format_carries_it(event_files, tmp_path):
    body = cli_picks(event_files["mseed"])
    pick = body["picks"][0]
    peak = obspy.UTCDateTime(pick["peak_time"])
    expected = hashlib.sha1(
        f"{pick['trace_id']}|{pick['phase']}|{centis(peak)}|{body['model_sha256']}".encode()
    ).hexdigest()[:16]
    assert pick["id"] == f"pick-{expected}"  # the value the stream has always used (Redis dedupe keys)
    assert centis(obspy.UTCDateTime("2020-01-01T00:00:00.005Z")) == 157783680001  # halves round up

    csv_out = tmp_path / "picks.csv"
    result = CliRunner().invoke(pick_command, [*map(str, event_files["sac"]), "-q", "-o", str(csv_out)])
    assert result.exit_code == 0, result.output
    lines = csv_out.read_text().splitlines()
    assert lines[0].startswith("id,trace_id,phase,peak_time")
    assert sorted(line.split(",")[0] for line in lines[1:]) == sorted(p["id"] for p in body["picks"])

    qml = tmp_path / "picks.xml"
    result = CliRunner().invoke(
        pick_command, [*map(str, event_files["mseed"]), "-q", "--format", "quakeml", "-o", str(qml)]
    )
    assert result.exit_code == 0, result.output
    catalog = obspy.read_events(str(qml))
    qml_picks = {p.resource_id.id: p for p in catalog[0].picks}
    assert set(qml_picks) == {f"smi:seispick/pick/{p['id']}" for p in body["picks"]}
    for p in body["picks"]:  # P on the vertical, S on a horizontal
        channel = qml_picks[f"smi:seispick/pick/{p['id']}"].waveform_id.channel_code
        assert channel[-1] in ("Z" if p["phase"] == "P" else "NE"), (p, channel)
    again = CliRunner().invoke(pick_command, [*map(str, event_files["mseed"]), "-q", "--format", "quakeml"])
    assert again.stdout == qml.read_text()  # no random resource ids: the same document every run


def test_quakeml_s_pick_sits_on_the_horizontal_with_the_larger_amplitude(event_files, tmp_path):
    stream = read_waveforms(event_files["mseed"]).stream
    for trace in stream.select(component="N"):
        trace.data = trace.data * 0.01  # E now dominates everywhere
    quiet_n = tmp_path / "quiet_n.mseed"
    stream.write(str(quiet_n), format="MSEED")
    for trace in stream.select(component="N"):
        trace.data = trace.data * 1e4  # and now N does
    loud_n = tmp_path / "loud_n.mseed"
    stream.write(str(loud_n), format="MSEED")
    for path, component in ((quiet_n, "E"), (loud_n, "N")):
        result = CliRunner().invoke(pick_command, [str(path), "-q", "--format", "quakeml"])
        assert result.exit_code == 0, result.output
        s_picks = [
            p for p in obspy.read_events(io.BytesIO(result.stdout.encode()))[0].picks if p.phase_hint == "S"
        ]
        assert s_picks and all(p.waveform_id.channel_code == f"DP{component}" for p in s_picks)


def test_stream_records_are_numbers_in_json(event_files):
    from seispick.models.registry import ModelRegistry
    from seispick.picking.annotate import annotate

    result = annotate(read_waveforms(event_files["mseed"]).stream, ModelRegistry().load(DEFAULT_MODEL))
    record = Record.of(result.picks[0])
    assert record.id == result.picks[0].id and isinstance(record.fields["probability"], str)  # Redis
    message = json.loads(record_json(record.fields))  # SSE data and WebSocket messages
    assert message["probability"] == pytest.approx(result.picks[0].probability, abs=1e-6)
    assert isinstance(message["probability"], float) and message["id"] == result.picks[0].id


# --- bodies that are no waveforms -----------------------------------------------------------------------------


def stationxml() -> bytes:
    buffer = io.BytesIO()
    Inventory(networks=[], source="seispick-test").write(buffer, format="STATIONXML")
    return buffer.getvalue()


def quakeml() -> bytes:
    buffer = io.BytesIO()
    obspy.core.event.Catalog(events=[obspy.core.event.Event()]).write(buffer, format="QUAKEML")
    return buffer.getvalue()


HTML = b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>\n"


@pytest.fixture(scope="module")
def service():
    with ServiceHarness(Settings(max_body_bytes=200_000)) as harness:
        yield harness


def expect(response, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    for word in words:
        assert word.lower() in detail.lower(), (word, detail)
    return detail


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (stationxml(), ["StationXML", "station metadata"]),
        (quakeml(), ["QuakeML"]),
        (HTML, ["an HTML page", "502 bad gateway"]),
        (
            gzip.compress(b"station,channel,value\nAAA,HHZ,1\n" * 20),
            ["gzip-compressed plain text", "station,channel"],
        ),
        (gzip.compress(b"\x00\x01\x02\x03" * 100), ["gzip-compressed binary data"]),
        (gzip.compress(stationxml()), ["gzip-compressed StationXML"]),
        (gzip.compress(np.random.default_rng(0).bytes(5000))[:200], ["gzip data that do not unpack"]),
        (b'{"network": "XX", "station": "A"}', ["JSON", "application/json"]),
        (b"PK\x03\x04" + bytes(200), ["zip archive"]),
        (b"hello, this is not seismic data", ["plain text", "hello, this is not seismic data"]),
    ],
)
def test_non_waveform_bodies_say_what_they_look_like(service, body, words):
    for kind in (MSEED, "application/octet-stream"):
        detail = expect(service.post("/v1/picks", content=body, headers={"content-type": kind}), 400, *words)
        if "do not unpack" not in detail:
            assert "accepted: miniSEED, SAC" in detail
    files = [("files", ("upload.bin", body, "application/octet-stream"))]
    expect(service.post("/v1/picks", files=files), 400, "file 'upload.bin'", *words)


def test_missing_or_wrong_content_type_says_what_the_body_is_and_what_to_send(service, event_files):
    body = event_files["mseed"][0].read_bytes()[:8192]  # whole records
    detail = expect(service.post("/v1/picks", content=body, headers={"content-type": ""}), 415)
    assert "missing content type" in detail and "looks like miniSEED" in detail
    assert "application/vnd.fdsn.mseed" in detail and "application/json" in detail
    detail = expect(service.post("/v1/picks", content=HTML, headers={"content-type": "text/html"}), 415)
    assert "'text/html'" in detail and "an HTML page" in detail
    packed = gzip.compress(body)
    expect(
        service.post("/v1/picks", content=packed, headers={"content-type": "text/plain"}),
        415,
        "gzip-compressed miniSEED",
    )
    sac = event_files["sac"][0].read_bytes()
    expect(
        service.post("/v1/picks", content=sac, headers={"content-type": "audio/x-sac"}), 415, "looks like SAC"
    )
    large = bytes(300_000)  # over the body limit: still the 415, without a look at the body
    detail = expect(service.post("/v1/picks", content=large, headers={"content-type": "text/csv"}), 415)
    assert "looks like" not in detail


def test_curls_default_content_type_is_read_when_the_body_is_waveforms(service, event_files):
    """curl --data-binary @file.mseed sends application/x-www-form-urlencoded: read by the bytes, with a note."""
    form = {"content-type": "application/x-www-form-urlencoded"}
    body = (DATA / f"{EVENTS[0]}.mseed").read_bytes()
    proper = post_picks(service, [DATA / f"{EVENTS[0]}.mseed"])
    response = service.post("/v1/picks", content=body, headers=form)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["picks"] == proper["picks"] and answer["picks"]
    note = answer["notes"][0]
    assert "application/x-www-form-urlencoded" in note and "read as miniSEED" in note
    assert "application/vnd.fdsn.mseed" in note and answer["notes"][1:] == proper["notes"]
    sac = gzip.compress(event_files["sac"][0].read_bytes())
    answer = service.post("/v1/picks", content=sac, headers=form).json()
    assert "read as gzip-compressed SAC" in answer["notes"][0]
    csv = service.post("/v1/picks", params={"format": "csv"}, content=body, headers=form)
    assert csv.status_code == 200 and csv.text.count("\n") == len(proper["picks"]) + 1
    expect(service.post("/v1/picks", content=b"a=1&b=2", headers=form), 415, "urlencoded", "plain text")
    expect(service.post("/v1/picks", content=HTML, headers=form), 415, "an HTML page")


@pytest.mark.parametrize("content_type", [None, "", "application/x-www-form-urlencoded", "text/plain", MSEED])
def test_an_empty_body_is_named_as_such_whatever_its_content_type(service, content_type):
    headers = {} if content_type is None else {"content-type": content_type}
    detail = expect(
        service.post("/v1/picks", content=b"", headers=headers),
        400,
        "the request body is empty",
        "--data-binary @file",
    )
    assert "unsupported" not in detail and "looks like" not in detail


def test_waveforms_sent_as_json_are_named(service, event_files):
    body = event_files["mseed"][0].read_bytes()[:8192]
    response = service.post("/v1/picks", content=body, headers={"content-type": "application/json"})
    expect(response, 400, "not valid JSON", "looks like miniSEED", "application/vnd.fdsn.mseed")


def test_sac_and_every_compression_are_read_in_any_waveform_content_type(service, event_files):
    raw = next(p for p in event_files["sac"] if p.name.endswith("Z.sac")).read_bytes()
    for packer in (lambda b: b, gzip.compress, bz2.compress, lzma.compress):
        for kind in (MSEED, "application/octet-stream", "application/x-sac", "application/gzip"):
            response = service.post("/v1/picks", content=packer(raw), headers={"content-type": kind})
            assert response.status_code == 200, (kind, response.text)
            notes = response.json()["notes"]
            assert any("a single component" in n for n in notes), notes


def test_a_compressed_body_unpacking_past_the_limit_is_413(service):
    bomb = gzip.compress(bytes(4_000_000))  # about 4 kB packed, 4 MB unpacked: over 8 x 200 kB
    assert len(bomb) < 200_000
    expect(
        service.post("/v1/picks", content=bomb, headers={"content-type": MSEED}), 413, "unpack to more than"
    )


# --- the reader itself ----------------------------------------------------------------------------------------


def test_reader_names_the_format_and_never_changes_the_bytes(event_files):
    raw = event_files["mseed"][0].read_bytes()
    assert sniff_format(raw) == "MSEED"
    assert sniff_format(event_files["sac"][0].read_bytes()) == "SAC"
    both = read_waveform_bytes(gzip.compress(raw) + gzip.compress(raw))  # concatenated gzip members
    assert len(both) == 2 * len(read_waveform_bytes(raw))
    garbage = bytes(range(256)) * 8
    before = bytes(garbage)
    with pytest.raises(WaveformFormatError) as error:
        read_waveform_bytes(garbage, "x.bin")
    assert garbage == before  # GCF's C check byte-swaps the buffer it gets: it must get a copy
    assert error.value.kind == "not_waveform" and "binary data beginning 00 01 02 03" in str(error.value)
    with pytest.raises(WaveformFormatError, match="x.mseed is not valid miniSEED: no complete record"):
        read_waveform_bytes(raw[:700], "x.mseed")
    assert describe_bytes(b"") == "empty"
    assert describe_bytes(b"000001V 010009402.3121992,001,00:00:00.0000~").startswith("dataless SEED")


def test_cli_names_the_file_and_what_it_looks_like(tmp_path):
    bad = tmp_path / "stations.xml"
    bad.write_bytes(stationxml())
    result = CliRunner().invoke(pick_command, [str(bad)])
    assert result.exit_code != 0
    assert f"{bad}: not a miniSEED or SAC file" in result.stderr and "StationXML" in result.stderr
    packed = tmp_path / "table.csv.gz"
    packed.write_bytes(gzip.compress(b"a,b,c\n1,2,3\n"))
    result = CliRunner().invoke(pick_command, [str(packed)])
    assert result.exit_code != 0 and "gzip-compressed plain text" in result.stderr


# --- notes everywhere -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def odd_stations() -> obspy.Stream:
    """A single-component station, a station without vertical, and one with a 10 s gap and a dead stretch."""
    one = obspy.read(str(DATA / f"{EVENTS[0]}.mseed"))
    two = obspy.read(str(DATA / f"{EVENTS[1]}.mseed"))
    single = one.select(component="Z").copy()
    for tr in single:
        tr.stats.station = "ONE"
    horizontal = two.select(component="[NE]").copy()
    for tr in horizontal:
        tr.stats.station = "HOR"
    gappy = one.copy()
    for tr in gappy:
        tr.stats.station = "GAP"
    t0 = gappy[0].stats.starttime
    gappy = gappy.cutout(t0 + 40, t0 + 50)
    for tr in gappy.select(component="N"):
        if tr.stats.starttime > t0 + 45:
            tr.data[500:800] = 0.0  # 3 s of constant zeros
    return single + horizontal + gappy


NOTE_WORDS = {
    "BG.ONE..DP": ["a single component (DPZ)"],
    "BG.HOR..DP": ["no vertical component (only DPN, DPE)"],
    "BG.GAP..DP": ["BG.GAP..DP: gap of 9.99 s between", "BG.GAP..DPN: constant data (all 0) for 3.00 s"],
}


def test_notes_in_the_cli_the_json_answer_and_the_stations_states(odd_stations, tmp_path, shipped_model):
    path = tmp_path / "odd.mseed"
    odd_stations.write(str(path), format="MSEED")
    result = CliRunner().invoke(pick_command, [str(path), "-o", str(tmp_path / "p.csv")])
    assert result.exit_code == 0, result.output
    body = cli_picks([path])
    with ServiceHarness(Settings()) as service:
        posted = post_picks(service, [path])
    assert posted["notes"] == body["notes"]
    for instrument, words in NOTE_WORDS.items():
        for word in words:
            assert any(word in note for note in body["notes"]), (word, body["notes"])
            assert f"note: {instrument}" in result.stderr and word in result.stderr

    import asyncio

    from seispick.service.stream.picker import StreamPicker

    async def run() -> list[dict]:
        async def predict(name, windows):
            return shipped_model.predict(windows)

        picker = StreamPicker(shipped_model, predict, lambda item, latency: None, silence_timeout_s=60)
        await picker.start()
        for record in chop(odd_stations, seconds=5.12):
            picker.add_trace(record)
        await picker.drain()
        states = picker.station_states()
        await picker.stop(flush=True)
        return states

    states = {s["trace_id"]: s["notes"] for s in asyncio.run(run())}
    for instrument, words in NOTE_WORDS.items():
        for word in words:
            assert any(word in note for note in states[instrument]), (word, states[instrument])
        batch = [n for n in body["notes"] if n.startswith(instrument[:-2])]
        assert sorted(states[instrument]) == sorted(batch), instrument  # worded the same way


def test_evaluation_datasets_read_sac_and_compressed_files_like_the_cli(event_files, tmp_path):
    from seispick.training.data.datasets import detect_format, read_mseed_picks

    picks = cli_picks(event_files["mseed"])["picks"]
    table = "station,phase,time\n" + "".join(
        f"{p['trace_id'].rsplit('.', 2)[0]},{p['phase']},{p['peak_time']}\n" for p in picks
    )
    samples = {}
    for fmt in ("mseed", "mseed.gz", "sac"):
        folder = tmp_path / fmt.replace(".", "_")
        folder.mkdir()
        for path in event_files[fmt]:
            data = path.read_bytes()
            name = path.name + (".bz2" if fmt == "sac" else "")  # SAC, bzip2-compressed
            (folder / name).write_bytes(bz2.compress(data) if fmt == "sac" else data)
        (folder / "picks.csv").write_text(table)
        assert detect_format(folder)[0] == "mseed"
        samples[fmt] = list(read_mseed_picks(folder, pre_s=5.0, post_s=5.0))
    assert len(samples["mseed"]) == 2
    for fmt in ("mseed.gz", "sac"):
        for a, b in zip(samples["mseed"], samples[fmt]):
            assert (a.station, a.p_index, a.s_index, a.start_time) == (
                b.station,
                b.p_index,
                b.s_index,
                b.start_time,
            )
            assert np.array_equal(a.waveform, b.waveform), fmt
