"""encode_affixes (whose per-word hashes are cached per process) gives what
hashing each word's affixes from scratch gives, and its cache is bounded."""
import numpy
from hypothesis import given, settings
from hypothesis import strategies as st
from spacy.lang.lex_attrs import word_shape
from spacy.strings import hash_string

from spacy_lstm_tagger.featurize import (
    AFFIX_KEY_CACHE_MAX_CHARS, AFFIX_KEY_CACHE_SIZE, affix_key_cache_size, clear_affix_key_cache, encode_affixes, hash_rows,
)


def reference_rows(word: str, n_prefixes: int, n_suffixes: int, use_shape: bool, n_rows: int):
    lower = word.lower()
    strings = [lower[:k] for k in range(1, n_prefixes + 1)] + [lower[-k:] for k in range(1, n_suffixes + 1)]
    strings += [word_shape(word)] if use_shape else []
    keys = numpy.array([hash_string(s) for s in strings], dtype="uint64")
    return [int(hash_rows(keys[f : f + 1], n_rows, 1, seed=f + 1)[0, 0]) for f in range(len(strings))]


@settings(max_examples=60, deadline=None)
@given(
    words=st.lists(st.text(max_size=12) | st.text(min_size=60, max_size=80), max_size=10),
    n_prefixes=st.integers(0, 3), n_suffixes=st.integers(0, 4), use_shape=st.booleans(),
    n_rows=st.integers(2, 50),
)
def test_batched_affix_rows_equal_reference(words, n_prefixes, n_suffixes, use_shape, n_rows):
    for _ in range(2):  # the second call reads the cache
        rows = encode_affixes(words, n_prefixes, n_suffixes, use_shape, n_rows)
        assert rows.shape == (len(words), n_prefixes + n_suffixes + int(use_shape))
        assert rows.dtype == numpy.int64
        for i, word in enumerate(words):
            assert rows[i].tolist() == reference_rows(word, n_prefixes, n_suffixes, use_shape, n_rows)
        assert ((rows >= 1) & (rows < n_rows)).all()


def test_affix_cache_is_bounded_and_skips_long_words():
    clear_affix_key_cache()
    encode_affixes(["x" * (AFFIX_KEY_CACHE_MAX_CHARS + 1)], 3, 4, True, 100)
    assert affix_key_cache_size() == 0
    encode_affixes([f"w{i}" for i in range(AFFIX_KEY_CACHE_SIZE + 10)], 3, 4, True, 100)
    assert affix_key_cache_size() == AFFIX_KEY_CACHE_SIZE
    clear_affix_key_cache()
    assert affix_key_cache_size() == 0


@settings(max_examples=40, deadline=None)
@given(words=st.lists(st.text(max_size=12), max_size=10), n_prefixes=st.integers(0, 3), n_suffixes=st.integers(0, 4))
def test_known_shape_keys_give_the_same_rows(words, n_prefixes, n_suffixes):
    shape_keys = numpy.array([hash_string(word_shape(word)) for word in words], dtype="uint64")
    known = encode_affixes(words, n_prefixes, n_suffixes, True, 50, shape_keys)
    assert known.tolist() == encode_affixes(words, n_prefixes, n_suffixes, True, 50).tolist()


def _affix_ids(vocab, words):
    from spacy.tokens import Doc
    from spacy_lstm_tagger.featurize import featurize

    docs = [Doc(vocab, words=words[:3]), Doc(vocab, words=words[3:])]
    features = featurize(
        docs, word_attr="NORM", n_word_rows=100, n_word_hashes=2, n_chars=300, max_word_chars=16,
        max_window=256, window_context=24, n_prefixes=3, n_suffixes=4, use_shape=True, n_affix_rows=1000,
    )
    strings = docs[0].vocab.strings
    types = sorted({strings[w] for w in words})  # featurize's type order: by ORTH hash
    return dict(zip(types, features.affix_ids.tolist()))


def test_featurize_reads_shapes_from_lexemes_only_when_spacy_computed_them():
    """spaCy's languages store word_shape per lexeme (read from Token.shape);
    a bare Vocab() has none and a custom shape getter is not word_shape: both
    are recomputed, and all three give the same affix rows. ("X" and "_" are
    shapes the StringStore keys by symbol id, not by hash.)"""
    import spacy
    from spacy.attrs import SHAPE
    from spacy.vocab import Vocab

    words = ["Hello", "world", "1984", "Hello", "X", "x-ray", "_", "ÉCOLE", "aaaaaaa", "I"]
    english = spacy.blank("en").vocab
    assert english.lex_attr_getters.get(SHAPE) is word_shape
    custom = Vocab(lex_attr_getters={SHAPE: lambda string: "same"})
    from_lexemes, bare, overridden = _affix_ids(english, words), _affix_ids(Vocab(), words), _affix_ids(custom, words)
    assert from_lexemes.keys() == bare.keys()
    assert from_lexemes == bare == overridden
