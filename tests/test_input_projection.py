"""``lstm_input_size``: a linear projection of each token's input before the
sentence BiLSTM (a narrow input for faster inference). It trains, is saved
and loaded, works with the reduced-precision copies, is 64 wide in the
factory defaults and off with 0.
That inference (the type part projected once per word type) gives the
training path's scores, with vectors, affixes and clusters too, is
``test_pytorch_model.test_tagger_inference_path_equals_training_path``."""
import numpy
import pytest
import spacy

from spacy_lstm_tagger.model import get_torch_module

from conftest import TRAIN_DATA, make_examples, new_pipeline, train_tiny


def test_factory_default_projects_to_64():
    nlp = spacy.blank("en")
    tagger = nlp.add_pipe("lstm_tagger")
    assert nlp.config["components"]["lstm_tagger"]["model"]["lstm_input_size"] == 64
    tagger.add_label("NN")
    nlp.initialize()
    assert get_torch_module(tagger.model).lstm.input_size == 64


def test_projection_is_off_with_zero_and_sizes_the_bilstm_input():
    plain = get_torch_module(new_pipeline(lstm_input_size=0).tagger.model)
    assert plain.input_proj is None and plain.lstm.input_size == plain.input_size
    projected = get_torch_module(new_pipeline(lstm_input_size=6).tagger.model)
    assert projected.lstm.input_size == 6
    assert (projected.input_proj.in_features, projected.input_proj.out_features) == (projected.input_size, 6)


def test_projected_tagger_overfits_and_round_trips(tmp_path):
    nlp = train_tiny(lstm_input_size=12)
    for text, annots in TRAIN_DATA:
        assert [t.tag_ for t in nlp(text)] == annots["tags"]
    docs = [eg.predicted for eg in make_examples(nlp)]
    expected = nlp.get_pipe("lstm_tagger").model.predict(docs)
    nlp.to_disk(tmp_path / "nlp")
    loaded = spacy.load(tmp_path / "nlp")
    assert loaded.config["components"]["lstm_tagger"]["model"]["lstm_input_size"] == 12
    for a, b in zip(expected, loaded.get_pipe("lstm_tagger").model.predict(docs)):
        numpy.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("settings", [{"quantize": True}, {"bfloat16": True}])
def test_projected_tagger_with_reduced_precision(tmp_path, settings):
    nlp = train_tiny(lstm_input_size=12)
    nlp.to_disk(tmp_path / "float")
    reduced = spacy.load(tmp_path / "float", config={"components": {"lstm_tagger": {"model": settings}}})
    texts = [text for text, _ in TRAIN_DATA]
    assert [[t.tag_ for t in doc] for doc in reduced.pipe(texts)] == [[t.tag_ for t in doc] for doc in nlp.pipe(texts)]


def test_invalid_projection_width_is_a_clear_error():
    with pytest.raises(ValueError, match="lstm_input_size"):
        new_pipeline(lstm_input_size=-1, initialize=False)
