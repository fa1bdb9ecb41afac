"""``[training] dropout`` and the model's own dropout: spaCy's
standard value keeps the recipe, another value is honoured, nothing warns."""
import warnings

import pytest
import spacy
from spacy.language import DEFAULT_CONFIG

from conftest import TINY_MODEL, make_examples
from spacy_lstm_tagger.model import get_torch_module


def rates_seen(tagger, nlp, examples, optimizer, drop):
    """The dropout rates the sentence BiLSTM's input saw during one update."""
    seen = []
    module = get_torch_module(tagger.model)
    handle = module.input_dropout.register_forward_hook(lambda m, i, o: seen.append(m.p))
    try:
        nlp.update(examples, sgd=optimizer, drop=drop)
    finally:
        handle.remove()
    return seen


@pytest.mark.parametrize("drop,expected", [(0.0, 0.5), (DEFAULT_CONFIG["training"]["dropout"], 0.5), (0.2, 0.2)])
def test_training_dropout_rule(new_tagger, drop, expected):
    setup = new_tagger(dropout=0.5, word_dropout=0.25)
    module = get_torch_module(setup.tagger.model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to act on
        assert rates_seen(setup.tagger, setup.nlp, setup.examples, setup.optimizer, drop) == [expected]
    assert module.input_dropout.p == module.output_dropout.p == 0.5  # back to the model's own
    assert module.word_dropout == 0.25


def test_override_is_said_once(new_tagger, capsys):
    setup = new_tagger(dropout=0.5)
    for _ in range(3):
        setup.nlp.update(setup.examples, sgd=setup.optimizer, drop=0.3)
    out = " ".join(capsys.readouterr().err.split())  # on stderr; wasabi wraps lines
    assert out.count("dropout 0.3 ([training] dropout) replaces the model's dropout 0.5") == 1


def test_deep_model_overrides_between_layers_too(new_tagger):
    setup = new_tagger(dropout=0.5, depth=2)
    module = get_torch_module(setup.tagger.model)
    seen = []
    handle = module.lstm.register_forward_hook(lambda m, i, o: seen.append(m.dropout))
    setup.nlp.update(setup.examples, sgd=setup.optimizer, drop=0.2)
    handle.remove()
    assert seen == [0.2] and module.lstm.dropout == 0.5


def test_bad_dropout_is_a_clear_error(new_tagger):
    setup = new_tagger()
    with pytest.raises(ValueError, match=r"must be in \[0, 1\)"):
        setup.nlp.update(setup.examples, sgd=setup.optimizer, drop=1.0)


def test_spacy_standard_training_block_trains_silently():
    """A pipeline from spaCy's own config (``[training] dropout = 0.1``) under
    spaCy's training loop settings: no warning, the model's dropout."""
    nlp = spacy.blank("en")
    assert nlp.config["training"]["dropout"] == 0.1
    nlp.add_pipe("lstm_tagger", config={"model": {**TINY_MODEL, "dropout": 0.4}})
    examples = make_examples(nlp)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optimizer = nlp.initialize(lambda: examples)
        tagger = nlp.get_pipe("lstm_tagger")
        assert rates_seen(tagger, nlp, examples, optimizer, nlp.config["training"]["dropout"]) == [0.4]
