"""Static vectors: the pipeline's vectors table concatenated (frozen, projected)."""
import numpy
import pytest
import spacy
import torch
from spacy.tokens import Doc

from conftest import TINY_MODEL, TRAIN_DATA, make_examples, train_pipeline
from spacy_lstm_tagger.featurize import static_vectors
from spacy_lstm_tagger.model import get_torch_module

WIDTH = 6


def nlp_with_vectors(**model_overrides):
    nlp = spacy.blank("en")
    rng = numpy.random.default_rng(0)
    for word in ["I", "like", "green", "eggs", "Eat", "blue", "ham", "She", "ate", "the"]:
        nlp.vocab.set_vector(word, rng.normal(size=WIDTH).astype("float32"))
    nlp.add_pipe("lstm_tagger", config={"model": {**TINY_MODEL, "include_static_vectors": True, **model_overrides}})
    return nlp


@pytest.fixture(scope="module")
def vectors_nlp():
    from thinc.api import fix_random_seed

    fix_random_seed(0)
    return train_pipeline(nlp_with_vectors(), 60)


def test_vectors_are_read_per_token_with_zeros_for_unknown_words():
    nlp = nlp_with_vectors()
    doc = Doc(nlp.vocab, words=["green", "zebra", "eggs"])
    vectors = static_vectors(doc)
    assert vectors.shape == (3, WIDTH)
    numpy.testing.assert_allclose(vectors[0], nlp.vocab.get_vector("green"))
    assert not vectors[1].any()


def test_tagger_with_vectors_learns_and_roundtrips(vectors_nlp, tmp_path):
    for text, annots in TRAIN_DATA:
        assert [t.tag_ for t in vectors_nlp(text)] == annots["tags"]
    module = get_torch_module(vectors_nlp.get_pipe("lstm_tagger").model)
    assert module.vectors_proj.in_features == WIDTH
    vectors_nlp.to_disk(tmp_path)
    loaded = spacy.load(tmp_path)
    texts = [t for t, _ in TRAIN_DATA] + ["", "zebra green"]
    assert [[t.tag_ for t in d] for d in loaded.pipe(texts)] == [[t.tag_ for t in d] for d in vectors_nlp.pipe(texts)]


def test_vectors_are_frozen_but_projection_trains(vectors_nlp):
    before = vectors_nlp.vocab.vectors.data.copy()
    module = get_torch_module(vectors_nlp.get_pipe("lstm_tagger").model)
    proj = module.vectors_proj.weight.detach().clone()
    optimizer = vectors_nlp.resume_training()
    vectors_nlp.update(make_examples(vectors_nlp), sgd=optimizer)
    numpy.testing.assert_array_equal(vectors_nlp.vocab.vectors.data, before)
    assert not torch.equal(proj, module.vectors_proj.weight.detach())
    assert "vectors" not in dict(module.named_parameters())


def test_vectors_change_the_scores(vectors_nlp):
    tagger = vectors_nlp.get_pipe("lstm_tagger")
    doc = vectors_nlp.make_doc("I like green eggs")
    with_vectors = tagger.model.predict([doc])[0]
    saved = vectors_nlp.vocab.get_vector("green").copy()
    vectors_nlp.vocab.set_vector("green", saved * 0 + 5.0)
    try:
        assert not numpy.allclose(tagger.model.predict([doc])[0], with_vectors)
    finally:
        vectors_nlp.vocab.set_vector("green", saved)


def test_missing_vectors_is_a_clear_error():
    nlp = spacy.blank("en")
    nlp.add_pipe("lstm_tagger", config={"model": {**TINY_MODEL, "include_static_vectors": True}})
    with pytest.raises(ValueError, match="no vectors"):
        nlp.initialize(lambda: make_examples(nlp))


def test_vectors_of_another_width_is_a_clear_error(vectors_nlp, tmp_path):
    vectors_nlp.to_disk(tmp_path)
    loaded = spacy.load(tmp_path)
    loaded.vocab.reset_vectors(width=WIDTH + 1)
    loaded.vocab.set_vector("green", numpy.ones(WIDTH + 1, dtype="float32"))
    with pytest.raises(ValueError, match="width"):
        loaded("green eggs")


def test_bfloat16_inference_takes_the_float_vectors(vectors_nlp, tmp_path):
    """The bfloat16 copy casts the float32 vectors on the way in (no dtype
    error inside torch) and tags as the float32 model does."""
    vectors_nlp.to_disk(tmp_path)
    loaded = spacy.load(tmp_path, config={"components": {"lstm_tagger": {"model": {"bfloat16": True}}}})
    texts = [text for text, _ in TRAIN_DATA]
    assert [[t.tag_ for t in d] for d in loaded.pipe(texts)] == [[t.tag_ for t in d] for d in vectors_nlp.pipe(texts)]
