"""The character-encoding cache: same output as no cache, bounded, and emptied
whenever the weights change (training step, use_params, loading)."""
import numpy
import pytest
import torch
from thinc.api import Adam

import spacy_lstm_tagger.char_cache as char_cache
from spacy_lstm_tagger.char_cache import CharEncodingCache
from spacy_lstm_tagger.featurize import encode_chars
from spacy_lstm_tagger.model import get_torch_module
from spacy_lstm_tagger.pytorch_model import CharBiLSTMEncoder

from conftest import make_examples, train_tiny

WORDS = ["the", "ham", "eggs", "quickly", "Supercalifragilistic", "é", "日本", "a", "The", "ham."]


def encoder_and_inputs(words, cache_size=None, seed=0):
    torch.manual_seed(seed)
    encoder = CharBiLSTMEncoder(300, 8, 6).eval()
    if cache_size:
        encoder.cache = CharEncodingCache(cache_size)
    ids, lengths = encode_chars(words, 300, 12)
    return encoder, torch.from_numpy(ids), torch.from_numpy(lengths)


def test_cached_encodings_equal_uncached():
    encoder, ids, lengths = encoder_and_inputs(WORDS, cache_size=100)
    with torch.inference_mode():
        reference = encoder._encode_by_length(ids, lengths)
        first = encoder(ids, lengths)
        assert len(encoder.cache) == len(WORDS)
        # a second batch: some types seen, some new, in another order and width
        more = ["new", "quickly", "the", "Supercalifragilistic", "zz"]
        more_ids, more_lengths = encode_chars(more, 300, 12)
        second = encoder(torch.from_numpy(more_ids), torch.from_numpy(more_lengths))
        more_reference = encoder._encode_by_length(torch.from_numpy(more_ids), torch.from_numpy(more_lengths))
    torch.testing.assert_close(first, reference)
    torch.testing.assert_close(second, more_reference)
    assert len(encoder.cache) == len(WORDS) + 2


def test_key_collisions_never_return_another_words_encoding(monkeypatch):
    # every row hashes to the same key: only the id comparison tells them apart
    monkeypatch.setattr(char_cache, "row_keys", lambda ids, lengths: numpy.zeros(len(ids), dtype=numpy.uint64))
    encoder, ids, lengths = encoder_and_inputs(WORDS, cache_size=100)
    with torch.inference_mode():
        encoder(ids, lengths)
        cached = encoder(ids, lengths)
        reference = encoder._encode_by_length(ids, lengths)
    torch.testing.assert_close(cached, reference)


def test_cache_is_bounded_and_keeps_frequent_types():
    encoder, _, _ = encoder_and_inputs([], cache_size=4)
    with torch.inference_mode():
        for _ in range(3):
            frequent_ids, frequent_lengths = encode_chars(["the", "a"], 300, 12)
            encoder(torch.from_numpy(frequent_ids), torch.from_numpy(frequent_lengths))
        for batch in (["x1", "x2", "x3"], ["y1", "y2", "y3"], ["z1", "z2"]):
            batch_ids, batch_lengths = encode_chars(batch, 300, 12)
            encoder(torch.from_numpy(batch_ids), torch.from_numpy(batch_lengths))
            assert len(encoder.cache) <= 4
        keys = char_cache.row_keys(frequent_ids, frequent_lengths)
    assert numpy.isin(keys, encoder.cache._sorted_keys).all()


def test_cache_size_must_not_be_negative():
    with pytest.raises(ValueError, match="char_cache_size"):
        train_tiny(n_iter=0, char_cache_size=-1)


def predict_without_cache(nlp, docs):
    encoder = get_torch_module(nlp.get_pipe("lstm_tagger").model).char_encoder
    cache, encoder.cache = encoder.cache, None
    try:
        return nlp.get_pipe("lstm_tagger").model.predict(docs)
    finally:
        encoder.cache = cache


def assert_predictions_equal_uncached(nlp, docs):
    tagger = nlp.get_pipe("lstm_tagger")
    cached = tagger.model.predict(docs)
    assert len(get_torch_module(tagger.model).char_encoder.cache) > 0
    for a, b in zip(cached, predict_without_cache(nlp, docs)):
        numpy.testing.assert_allclose(a, b, atol=1e-6)


def test_training_step_empties_the_cache():
    nlp = train_tiny(n_iter=2)
    examples = make_examples(nlp)
    docs = [eg.predicted for eg in examples]
    assert_predictions_equal_uncached(nlp, docs)  # fills the cache
    optimizer = nlp.resume_training()
    nlp.update(examples, sgd=optimizer)  # the shim's finish_update writes the weights
    assert_predictions_equal_uncached(nlp, docs)


def test_use_params_empties_the_cache_on_entry_and_exit():
    nlp = train_tiny(n_iter=0)
    examples = make_examples(nlp)
    docs = [eg.predicted for eg in examples]
    optimizer = Adam(0.01, use_averages=True)
    for _ in range(3):
        nlp.update(examples, sgd=optimizer)
    assert_predictions_equal_uncached(nlp, docs)
    with nlp.use_params(optimizer.averages):
        assert_predictions_equal_uncached(nlp, docs)
    assert_predictions_equal_uncached(nlp, docs)


def test_loading_weights_empties_the_cache():
    source = train_tiny(n_iter=20)
    target = train_tiny(n_iter=2, seed=1)
    docs = [eg.predicted for eg in make_examples(target)]
    target.get_pipe("lstm_tagger").model.predict(docs)  # fills target's cache
    target.from_bytes(source.to_bytes())
    assert_predictions_equal_uncached(target, docs)
    for a, b in zip(target.get_pipe("lstm_tagger").model.predict(docs), source.get_pipe("lstm_tagger").model.predict(docs)):
        numpy.testing.assert_allclose(a, b, atol=1e-6)
