"""`seispick models import-seisbench` on every published SeisBench PhaseNet form: today's layout at any width,
the early layout (filters 8, 11, 16, 22, 32), and whole pickled modules of early SeisBench versions; component
and phase order from the JSON, thresholds from its default_args, a clear message for anything else. Checkpoints
are built here from seeded random weights (non-trivial batch-norm statistics, so every layer matters)."""

from __future__ import annotations

import json
import pickle
import sys
import types

import numpy as np
import obspy
import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from seispick.cli.main import cli  # noqa: E402
from seispick.models.inference import load_model_dir  # noqa: E402
from seispick.picking.annotate import annotate  # noqa: E402
from seispick.picking.preprocess import normalise_windows  # noqa: E402
from seispick.training.networks.phasenet import PhaseNet  # noqa: E402
from seispick.training.networks.phasenet_light import EARLY_WIDTHS, PhaseNetLight  # noqa: E402
from tests.streams import noise_stream  # noqa: E402


def seeded(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights and batch-norm statistics from ``seed``, eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            values = torch.rand(tensor.shape, generator=gen)
            if name.endswith("running_var"):
                tensor.copy_(0.5 + values)
            elif name.endswith(("bn.weight", "running_mean")) or ".weight" in name and tensor.dim() == 1:
                tensor.copy_(values - 0.5 + (1.0 if "weight" in name else 0.0))
            else:
                tensor.copy_((values - 0.5) * 2.0 / max(1, tensor[0].numel()) ** 0.5)
    return model.eval()


def write_json(path, **model_args) -> None:
    default_args = model_args.pop("default_args", {})
    path.write_text(json.dumps({"docstring": "test", "model_args": model_args, "default_args": default_args}))


def run_import(*args: str):
    return CliRunner().invoke(cli, ["models", "import-seisbench", *map(str, args)])


def windows(n: int, channels: int = 3, seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, channels, 3001)).cumsum(axis=-1) * rng.uniform(0.1, 50, (n, channels, 1))
    x[0, 1:] = 0.0  # a vertical-only window
    return x


def assert_same_probabilities(model: torch.nn.Module, folder) -> float:
    onnx = load_model_dir(folder)
    x = normalise_windows(windows(6, model.in_channels), onnx.card.normalisation)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    diff = float(np.abs(onnx.predict(x) - expected).max())
    assert diff <= 1e-5, diff
    return diff


def test_early_layout_matches_seisbench_phasenetlight_layer_for_layer():
    sbm = pytest.importorskip("seisbench.models")
    ours = seeded(PhaseNetLight(), 3)
    theirs = sbm.PhaseNetLight(phases="PSN").eval()
    theirs.load_state_dict(ours.state_dict())
    x = torch.from_numpy(normalise_windows(windows(3), load_card_norm()))
    with torch.no_grad():
        assert torch.abs(ours(x) - theirs(x)).max() <= 1e-6
    assert [ours.inc.out_channels] + [
        getattr(ours, f"conv{i}").conv.out_channels for i in range(1, 5)
    ] == list(EARLY_WIDTHS)


def load_card_norm():
    from seispick.models.card import Normalisation

    return Normalisation(ddof=1)


def test_early_layout_state_dict_imports_with_json_orders_and_thresholds(tmp_path):
    model = seeded(PhaseNetLight(), 11)
    torch.save(model.state_dict(), tmp_path / "ethz.pt.v1")
    write_json(
        tmp_path / "ethz.json.v1",
        component_order="ZNE",
        phases="PSN",
        norm="peak",
        default_args={"P_threshold": 0.44, "S_threshold": 0.45},
    )
    out = tmp_path / "imported"
    result = run_import(tmp_path / "ethz.pt.v1", tmp_path / "ethz.json.v1", "--out", out, "--name", "early")
    assert result.exit_code == 0, result.output
    card = load_model_dir(out).card
    assert (card.channel_order, card.labels, card.window_samples) == ("ZNE", ["P", "S", "N"], 3001)
    assert card.default_thresholds["P"] == 0.44 and card.default_thresholds["S"] == 0.45
    assert card.normalisation.scale == "peak" and "phasenet-early" in card.provenance
    assert "8, 11, 16, 22, 32" in card.provenance
    assert (out / "LICENSE").is_file()
    assert_same_probabilities(model, out)
    # and the runtime picks with it: S is the second output column here
    stream = noise_stream(obspy.UTCDateTime(2024, 1, 1), 120.0, components="ZNE")
    annotated = annotate(stream, load_model_dir(out))
    assert {a.probabilities.shape[0] for a in annotated.annotations} == {3}


def test_early_layout_imported_probabilities_equal_seisbench_annotate(tmp_path):
    """A real peer: SeisBench's own PhaseNetLight.annotate on the same data and weights."""
    sbm = pytest.importorskip("seisbench.models")
    theirs = sbm.PhaseNetLight(phases="PSN")
    theirs.load_state_dict(seeded(PhaseNetLight(), 21).state_dict())
    theirs.eval()
    theirs.save(str(tmp_path / "light"), version_str="1")
    out = tmp_path / "light-onnx"
    result = run_import(tmp_path / "light.pt.v1", tmp_path / "light.json.v1", "--out", out, "--name", "light")
    assert result.exit_code == 0, result.output
    ours = load_model_dir(out)
    start = obspy.UTCDateTime((-(-int(obspy.UTCDateTime(2024, 3, 1).timestamp * 100) // 1501)) * 1501 / 100)
    stream = noise_stream(start, 600.0, components="ZNE", seed=4)
    expected = theirs.annotate(stream.copy(), overlap=1500, stacking="avg")
    mine = annotate(stream, ours).probability_stream(ours.card.labels)
    for label in "PSN":
        a = expected.select(channel=f"PhaseNetLight_{label}")[0]
        b = mine.select(channel=f"light_{label}")[0]
        assert abs(b.stats.starttime - a.stats.starttime) < 0.005
        n = min(a.stats.npts, b.stats.npts)
        valid = ~np.isnan(a.data[:n])
        assert valid.sum() > 50_000
        assert np.abs(a.data[:n][valid] - b.data[:n][valid]).max() <= 1e-4


@pytest.fixture
def early_seisbench_modules(monkeypatch):
    """Stand-ins for an early SeisBench's modules, only while the checkpoint is pickled."""
    names = ["seisbench", "seisbench.models", "seisbench.models.phasenet"]
    fake = {n: types.ModuleType(n) for n in names}

    class PhaseNet(PhaseNetLight):  # what torch.save(model) of SeisBench 0.1 pickled
        pass

    PhaseNet.__module__ = "seisbench.models.phasenet"
    PhaseNet.__qualname__ = "PhaseNet"
    fake["seisbench.models.phasenet"].PhaseNet = PhaseNet
    for name, module in fake.items():
        monkeypatch.setitem(sys.modules, name, module)
    return PhaseNet, monkeypatch


def test_whole_pickled_early_module_imports_without_its_classes(tmp_path, early_seisbench_modules):
    cls, monkeypatch = early_seisbench_modules
    model = seeded(cls(in_channels=3, classes=3), 7)
    model._component_order = "ZNE"
    model.labels = "PSN"
    model.sampling_rate = 100
    model.activation = torch.relu  # a function reference, as SeisBench kept one
    torch.save(model, tmp_path / "instance.pt.v1")
    monkeypatch.undo()  # the early classes are gone again, as on a user's machine
    assert (
        "seisbench.models.phasenet" not in sys.modules
        or not hasattr(sys.modules["seisbench.models.phasenet"], "PhaseNetLight")
        or sys.modules["seisbench.models.phasenet"].PhaseNet is not cls
    )
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / "instance.pt.v1", weights_only=True)
    out = tmp_path / "pickled"
    result = run_import(tmp_path / "instance.pt.v1", "--out", out, "--name", "pickled")  # no JSON at all
    assert result.exit_code == 0, result.output
    card = load_model_dir(out).card
    assert (card.channel_order, card.labels) == ("ZNE", ["P", "S", "N"])
    assert "pickled module seisbench.models.phasenet.PhaseNet" in card.provenance
    plain = PhaseNetLight()
    plain.load_state_dict(model.state_dict())
    assert_same_probabilities(plain.eval(), out)


def test_pickled_module_widths_and_depth_come_from_the_weights(tmp_path, early_seisbench_modules):
    cls, monkeypatch = early_seisbench_modules
    model = seeded(cls(widths=(6, 10, 14, 20)), 9)  # three levels, other widths
    torch.save(model, tmp_path / "odd.pt")
    monkeypatch.undo()
    write_json(tmp_path / "odd.json", component_order="ZNE", phases="NPS")
    out = tmp_path / "odd"
    result = run_import(tmp_path / "odd.pt", tmp_path / "odd.json", "--out", out, "--name", "odd")
    assert result.exit_code == 0, result.output
    assert "widths [6, 10, 14, 20]" in load_model_dir(out).card.provenance
    plain = PhaseNetLight(widths=(6, 10, 14, 20))
    plain.load_state_dict(model.state_dict())
    assert_same_probabilities(plain.eval(), out)


def test_todays_layout_with_a_filter_factor(tmp_path):
    model = seeded(PhaseNet(variant="seisbench", widths=[16, 32, 64, 128, 256]), 5)
    torch.save(model.state_dict(), tmp_path / "wide.pt.v1")
    write_json(tmp_path / "wide.json.v1", component_order="ZNE", phases="NPS", filter_factor=2)
    out = tmp_path / "wide"
    result = run_import(tmp_path / "wide.pt.v1", tmp_path / "wide.json.v1", "--out", out, "--name", "wide")
    assert result.exit_code == 0, result.output
    assert load_model_dir(out).card.labels == ["N", "P", "S"]
    assert_same_probabilities(model, out)


@pytest.mark.parametrize(
    "weights, model_args, message",
    [
        (b"not a checkpoint", {}, "not a torch checkpoint"),
        ({"encoder.weight": torch.zeros(3, 3)}, {}, "not a SeisBench PhaseNet (no inc/down_branch"),
        ("early", {"component_order": "ZNEH"}, "the weights take 3 channels"),
        ("early", {"phases": "PS"}, "the weights give 3 classes"),
        ("early", {"phases": "PSD"}, "no noise class N"),
        ("early", {"filter_args": ["bandpass"], "filter_kwargs": {"freqmin": 1}}, "filters its input"),
        ("early", {"norm_detrend": True}, "PickBlue"),
        ("early", {"something_new": 1}, "['something_new'] are not supported"),
        ("modern", {"filter_factor": 2}, "filter_factor 2 but the weights start with 8 filters"),
        ("modern", {"in_samples": 6001}, "in_samples 6001"),
    ],
)
def test_anything_else_gets_a_clear_message(tmp_path, weights, model_args, message):
    path = tmp_path / "w.pt"
    if isinstance(weights, bytes):
        path.write_bytes(weights)
    elif weights == "early":
        torch.save(PhaseNetLight().state_dict(), path)
    elif weights == "modern":
        torch.save(PhaseNet(variant="seisbench").state_dict(), path)
    else:
        torch.save(weights, path)
    write_json(tmp_path / "w.json", **model_args)
    result = run_import(path, tmp_path / "w.json", "--out", tmp_path / "out")
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_unreadable_json_is_named(tmp_path):
    torch.save(PhaseNetLight().state_dict(), tmp_path / "w.pt")
    (tmp_path / "w.json").write_text("{ not json")
    result = run_import(tmp_path / "w.pt", tmp_path / "w.json", "--out", tmp_path / "out")
    assert result.exit_code != 0 and "w.json: not a readable SeisBench JSON" in result.output
