"""The default-model rule (seispick.models.registry.choose_default) and model cards validated on load and write."""

from __future__ import annotations

import json

import pytest

from seispick.models.card import CardError, HeldOutScores, ModelCard
from seispick.models.registry import (
    DEFAULT_MODEL,
    ModelLoadError,
    ModelRegistry,
    choose_default,
    shipped_cards,
)


def scores(p1: float, p5: float, s1: float, s5: float, stations=("NC.AAA", "NC.BBB")) -> HeldOutScores:
    return HeldOutScores(
        description="test stations",
        dataset="net",
        stations=list(stations),
        n_records=10,
        f1={"P@0.1s": p1, "P@0.5s": p5, "S@0.1s": s1, "S@0.5s": s5},
    )


def card(name: str, scope: str = "general", trained_on=(), **held) -> ModelCard:
    base = ModelRegistry([]).get("phasenet-original").card
    split = {"net": {"train": {"stations": list(trained_on)}, "val": {"stations": []}}} if trained_on else {}
    return base.model_copy(update={"name": name, "scope": scope, "held_out": held, "split": split})


REFERENCE = dict(a=scores(0.80, 0.90, 0.60, 0.85), b=scores(0.70, 0.85, 0.50, 0.80, ("XX.CCC",)))


def test_the_shipped_default_is_what_the_rule_picks():
    choice = choose_default(shipped_cards())
    assert choice.name == DEFAULT_MODEL
    assert choice.sets, "the shipped cards name held-out sets"
    cards = {c.name: c for c in shipped_cards()}
    assert cards[DEFAULT_MODEL].scope == "general"
    assert cards["phasenet-ta109c"].scope == "station"


def test_a_general_model_better_everywhere_becomes_the_default():
    better = card("better", a=scores(0.85, 0.92, 0.66, 0.86), b=scores(0.70, 0.88, 0.55, 0.80, ("XX.CCC",)))
    choice = choose_default([card("phasenet-original", **REFERENCE), better])
    assert choice.name == "better" and set(choice.sets) == {"a", "b"}


def test_the_best_of_several_qualifying_models_wins():
    good = card("good", a=scores(0.81, 0.90, 0.61, 0.85), b=scores(0.71, 0.85, 0.50, 0.80, ("XX.CCC",)))
    best = card("best", a=scores(0.90, 0.95, 0.70, 0.90), b=scores(0.80, 0.90, 0.60, 0.85, ("XX.CCC",)))
    assert choose_default([card("phasenet-original", **REFERENCE), good, best]).name == "best"


def test_worse_anywhere_keeps_the_original():
    # much better on average, but S within 0.1 s drops on set b
    mixed = card("mixed", a=scores(0.95, 0.99, 0.90, 0.99), b=scores(0.90, 0.95, 0.49, 0.90, ("XX.CCC",)))
    choice = choose_default([card("phasenet-original", **REFERENCE), mixed])
    assert choice.name == "phasenet-original" and "no general model beats" in choice.reason


def test_a_station_or_regional_model_is_never_the_default():
    for scope in ("station", "regional"):
        strong = card(
            "local", scope=scope, a=scores(0.99, 0.99, 0.99, 0.99), b=scores(0.99, 0.99, 0.99, 0.99)
        )
        assert choose_default([card("phasenet-original", **REFERENCE), strong]).name == "phasenet-original"


def test_a_model_without_figures_on_every_set_cannot_win():
    partial = card("partial", a=scores(0.99, 0.99, 0.99, 0.99))
    assert choose_default([card("phasenet-original", **REFERENCE), partial]).name == "phasenet-original"


def test_sets_a_candidate_trained_on_are_not_held_out():
    # 'better' wins on both sets, but it was trained on a station of set a: only set b counts, where it is worse
    better = card(
        "better",
        trained_on=["NC.AAA"],
        a=scores(0.99, 0.99, 0.99, 0.99),
        b=scores(0.69, 0.85, 0.50, 0.80, ("XX.CCC",)),
    )
    choice = choose_default([card("phasenet-original", **REFERENCE), better])
    assert choice.name == "phasenet-original"
    assert choice.excluded_sets == ("a",) and choice.sets == ("b",)


def test_the_reference_must_be_there():
    with pytest.raises(ValueError, match="reference"):
        choose_default([card("other", **REFERENCE)])


def test_cards_validate_when_written(tmp_path):
    good = ModelRegistry([]).get("phasenet-original").card
    with pytest.raises(CardError, match="sampling_rate"):
        good.model_copy(update={"sampling_rate": 0}).write(tmp_path)
    with pytest.raises(CardError, match="noise class N"):
        good.model_copy(update={"labels": ["P", "S"]}).write(tmp_path)
    with pytest.raises(CardError, match="f1 lacks"):
        good.model_copy(
            update={"held_out": {"x": scores(0.5, 0.5, 0.5, 0.5).model_copy(update={"f1": {}})}}
        ).write(tmp_path)
    assert not (tmp_path / "card.json").exists()
    assert ModelCard.read(good.write(tmp_path)) == good


def test_cards_validate_when_loaded_and_the_file_is_named(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    data = json.loads((ModelRegistry([]).get("phasenet-original").folder / "card.json").read_text())
    data["window_samples"] = -3
    data["name"] = "broken"
    (folder / "card.json").write_text(json.dumps(data))
    with pytest.raises(CardError, match=r"broken/card.json: invalid model card: window_samples"):
        ModelCard.read(folder)
    with pytest.raises(ModelLoadError, match="broken/card.json"):
        ModelRegistry([tmp_path])
    with pytest.raises(ModelLoadError, match="broken/card.json"):
        ModelRegistry([]).get(str(folder))
