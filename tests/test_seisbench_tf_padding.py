"""`seispick models import-seisbench --tf-padding`: TensorFlow-trained weights held in SeisBench's 3001-sample layout
(the original PhaseNet's) run as TensorFlow ran them, on 3000-sample windows with "same" padding, and pick as the
shipped phasenet-original does; without the flag the import keeps SeisBench's layout (test_seisbench_parity), whose
paddings put these weights' picks tens of milliseconds late."""

from __future__ import annotations

import numpy as np
import obspy
import pytest

torch = pytest.importorskip("torch")
sbm = pytest.importorskip("seisbench.models")

from click.testing import CliRunner  # noqa: E402

from seispick.cli.main import cli  # noqa: E402
from seispick.models.inference import load_model_dir  # noqa: E402
from seispick.models.registry import ModelRegistry  # noqa: E402
from seispick.picking.annotate import annotate  # noqa: E402
from seispick.training.export.convert import state_dict_from_tf  # noqa: E402
from tests.streams import DATA, REAL  # noqa: E402

FILES = sorted(REAL.glob("*.mseed"))[:6]


def imported(tmp_path, *flags: str):
    sb_model = sbm.PhaseNet(component_order="ENZ").eval()
    sb_model.load_state_dict(state_dict_from_tf(dict(np.load(DATA / "phasenet_original" / "weights.npz"))))
    sb_model.save(str(tmp_path / "original"), version_str="1")
    out = tmp_path / ("tf" if flags else "sb")
    result = CliRunner().invoke(
        cli,
        ["models", "import-seisbench", f"{tmp_path / 'original'}.pt.v1", f"{tmp_path / 'original'}.json.v1"]
        + ["--name", out.name, "--out", str(out), *flags],
    )
    assert result.exit_code == 0, result.output
    return load_model_dir(out)


def peak_times(model) -> list[tuple[str, str, float]]:
    out = []
    for path in FILES:
        result = annotate(obspy.read(str(path)), model, thresholds={"P": 0.3, "S": 0.3})
        out += [(p.trace_id, p.phase, p.peak_time.timestamp) for p in result.picks]
    return sorted(out)


def test_tf_padding_import_picks_as_the_shipped_original(tmp_path):
    ours = imported(tmp_path, "--tf-padding")
    assert ours.card.window_samples == 3000 and "--tf-padding" in ours.card.provenance
    shipped = ModelRegistry().load("phasenet-original", prefer_gpu=False)
    mine, reference = peak_times(ours), peak_times(shipped)
    assert len(mine) == len(reference) > 6
    for (ta, pa, a), (tb, pb, b) in zip(mine, reference):
        assert (ta, pa) == (tb, pb) and abs(a - b) <= 0.011


def test_seisbench_layout_import_of_tf_weights_moves_the_picks(tmp_path):
    """The default import (SeisBench parity) gives the same weights other picks: what --tf-padding is for."""
    sb = imported(tmp_path)
    assert sb.card.window_samples == 3001
    shipped = ModelRegistry().load("phasenet-original", prefer_gpu=False)
    assert peak_times(sb) != peak_times(shipped)
