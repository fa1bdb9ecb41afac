"""The shipped configs' learning-rate schedule follows the run's length."""
import itertools

import pytest
from spacy.util import load_config, load_model_from_config
from thinc.api import registry
from thinc.schedules import warmup_linear

from spacy_lstm_tagger import presets
from spacy_lstm_tagger.schedules import warmup_linear_capped

SCHEDULED = [name for name in presets.preset_names()
             if "schedules" in str(presets.base_config(name)["training"]["optimizer"].get("learn_rate"))]


def rates(config, n: int):
    schedule = registry.resolve({"s": config.interpolate()["training"]["optimizer"]["learn_rate"]})["s"]
    return list(itertools.islice(schedule, n))


def test_some_presets_are_scheduled():
    assert {"efficiency", "accuracy"} <= set(SCHEDULED)


@pytest.mark.parametrize("name", SCHEDULED)
def test_short_run_leaves_warmup_and_decays_to_zero(name):
    """``--training.max_steps 200`` (the project's demo, a quick try): warm-up
    ends at 10% of the run and the rate reaches 0 at its last step."""
    config = load_config(presets.preset_path(name), overrides={"training.max_steps": 200}, interpolate=False)
    lr = rates(config, 201)
    peak = config["training"]["optimizer"]["learn_rate"]["initial_rate"]
    assert lr[20] == pytest.approx(peak)
    assert max(lr) == pytest.approx(peak)
    assert lr[200] == 0.0 and lr[100] < lr[50] < lr[20]


@pytest.mark.parametrize("name", SCHEDULED)
def test_shipped_length_is_thincs_warmup_linear(name):
    """At the shipped run length the cap does not bind: the schedule is
    exactly thinc's warmup_linear.v1 (what the published figures used)."""
    config = presets.base_config(name)
    block = config["training"]["optimizer"]["learn_rate"]
    total = config["training"]["max_steps"]
    expected = list(itertools.islice(warmup_linear(block["initial_rate"], block["warmup_steps"], total), total + 1))
    assert rates(config, total + 1) == expected


def test_uninterpolated_optimizer_holds_the_rate():
    """nlp.create_optimizer() does not interpolate: a constant rate and a
    warning that says why, not a config error."""
    nlp = load_model_from_config(load_config(presets.preset_path("efficiency"), interpolate=False), auto_fill=True)
    with pytest.warns(UserWarning, match="not interpolated"):
        optimizer = nlp.create_optimizer()
    assert optimizer.learn_rate == 0.002


@pytest.mark.parametrize("kwargs, message", [
    ({"total_steps": 0}, "at least 1"),
    ({"total_steps": "many"}, "number of steps"),
    ({"total_steps": 100, "max_warmup_fraction": 2.0}, "between 0 and 1"),
])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        warmup_linear_capped(0.002, 250, **kwargs)
