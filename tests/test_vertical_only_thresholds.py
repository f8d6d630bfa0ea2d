"""A card's ``vertical_only_thresholds``: instruments that recorded no horizontal component are triggered at
their own thresholds, in batch and in the stream alike; thresholds given explicitly apply to every instrument.

(PhaseNet's probabilities are lower without the horizontals: on the shipped data the calibration chose P 0.7 /
S 0.5 for three-component stations and kept 0.3 for vertical-only ones; see the default model's card.)
"""

from __future__ import annotations

import asyncio
import dataclasses

import obspy
import pytest

from seispick.models.card import ModelCard
from seispick.picking.annotate import annotate
from seispick.picking.waveforms import read_waveform_file
from seispick.service.stream.picker import StreamPicker
from tests.streams import REAL, event_hour
from tests.test_stream_picker import chop

VERTICAL_ONLY = ["NC.BVL", "NC.HTU", "NC.MCM", "NN.MGN"]  # the vertical-only recordings of tests/data/real


def _key(picks):
    return sorted((p.trace_id, p.phase, round(p.peak_time.timestamp, 3)) for p in picks)


def _files(vertical: bool):
    files = []
    for path in sorted(REAL.glob("*.mseed")):
        stream = read_waveform_file(path)
        if (len(stream) == 1) == vertical:
            files.append(stream)
    return files


def test_the_default_card_triggers_vertical_only_instruments_at_their_thresholds(shipped_model):
    card = shipped_model.card
    assert card.vertical_only_thresholds and card.vertical_only_thresholds != {
        ph: card.default_thresholds[ph] for ph in card.vertical_only_thresholds
    }
    vertical_files, three_files = _files(True), _files(False)
    assert sorted(".".join(s[0].id.split(".")[:2]) for s in vertical_files) == VERTICAL_ONLY
    vertical_thresholds = {**card.default_thresholds, **card.vertical_only_thresholds}
    default_thresholds = dict(card.default_thresholds)
    differs = 0
    for stream in vertical_files:
        got = _key(annotate(stream, shipped_model).picks)
        assert got == _key(annotate(stream, shipped_model, thresholds=vertical_thresholds).picks)
        differs += got != _key(annotate(stream, shipped_model, thresholds=default_thresholds).picks)
    assert differs  # the thresholds matter on these recordings
    for stream in three_files[:8]:
        got = _key(annotate(stream, shipped_model).picks)
        assert got == _key(annotate(stream, shipped_model, thresholds=default_thresholds).picks)


def _with_thresholds(model, default: dict[str, float], vertical: dict[str, float]):
    card = model.card.model_copy(
        update={
            "default_thresholds": {**model.card.default_thresholds, **default},
            "vertical_only_thresholds": vertical,
        }
    )
    return dataclasses.replace(model, card=card)


def _stream_picks(model, stream: obspy.Stream):
    async def main():
        async def predict(name, windows):
            return await asyncio.to_thread(model.predict, windows)

        got = []
        picker = StreamPicker(model, predict, lambda item, latency: got.append(item), silence_timeout_s=0.2)
        await picker.start()
        for i, record in enumerate(chop(stream)):
            picker.add_trace(record)
            if i % 20 == 0:
                await asyncio.sleep(0)
        await asyncio.sleep(0.6)
        await picker.drain()
        await picker.stop()
        return [p for p in got if hasattr(p, "phase")]

    return asyncio.run(main())


def test_the_stream_uses_the_vertical_only_thresholds_as_batch_does(shipped_model):
    """Thresholds far apart (0.9 with horizontals, 0.2 without) so that the choice shows: a vertical-only
    station and a three-component one in one stream give the batch picks of each."""
    model = _with_thresholds(shipped_model, {"P": 0.9, "S": 0.9}, {"P": 0.2, "S": 0.2})
    start = obspy.UTCDateTime(2024, 6, 1, 0, 0, 3.0)
    three, _ = event_hour(start, station="AAA", seed=8)
    vertical, _ = event_hour(start, station="VVV", seed=9)
    for stream in (three, vertical):
        stream.trim(endtime=start + 900)
    vertical = vertical.select(component="Z")
    both = three + vertical
    expected = annotate(both, model).picks
    at_default = annotate(both, model, thresholds={"P": 0.9, "S": 0.9}).picks
    vertical_picks = [p for p in expected if ".VVV." in p.trace_id]
    assert len(vertical_picks) > len([p for p in at_default if ".VVV." in p.trace_id])
    got = _stream_picks(model, both)
    assert len(got) == len(expected) > 0
    for a, b in zip(sorted(got, key=lambda p: (p.peak_time, p.trace_id, p.phase)), expected):
        assert (a.trace_id, a.phase) == (b.trace_id, b.phase) and abs(a.peak_time - b.peak_time) <= 0.01


@pytest.mark.parametrize(
    "update, message",
    [
        ({"vertical_only_thresholds": {"X": 0.2}}, "vertical_only_thresholds"),
        ({"vertical_only_thresholds": {"N": 0.2}}, "vertical_only_thresholds"),
    ],
)
def test_a_card_refuses_vertical_only_thresholds_of_no_phase(shipped_model, update, message):
    data = shipped_model.card.model_dump(mode="json") | update
    with pytest.raises(ValueError, match=message):
        ModelCard.model_validate(data)


def test_models_list_shows_the_thresholds_each_configuration_gets():
    from click.testing import CliRunner

    from seispick.cli.main import cli

    result = CliRunner().invoke(cli, ["models", "list"])
    assert result.exit_code == 0, result.output
    line = next(row for row in result.output.splitlines() if row.startswith("phasenet-original"))
    assert "P 0.7 S 0.5 (Z only: P 0.3 S 0.3)" in line
