"""The batched encode_chars gives exactly what encoding each word on its own gives."""
from typing import List, Sequence

import numpy
from hypothesis import given, settings
from hypothesis import strategies as st

from spacy_lstm_tagger.featurize import encode_chars


def encode_one_by_one(words: Sequence[str], n_chars: int, max_chars: int):
    """Reference: each word separately (the per-word loop encode_chars replaced)."""
    rows: List[numpy.ndarray] = []
    for word in words:
        ids, _ = encode_chars([word], n_chars, max_chars)
        rows.append(ids[0])
    width = max([1] + [len(r) for r in rows])
    out = numpy.zeros((len(words), width), dtype="int64")
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def reference_codes(word: str, max_chars: int) -> List[int]:
    cps = [ord(c) for c in word]
    if len(cps) > max_chars:
        cps = cps[: max_chars - max_chars // 2] + cps[len(cps) - max_chars // 2 :]
    return cps


@settings(max_examples=60, deadline=None)
@given(
    words=st.lists(st.text(alphabet=st.characters(blacklist_categories=()), max_size=30), max_size=12),
    max_chars=st.integers(1, 9),
)
def test_batched_encoding_equals_per_word_encoding(words, max_chars):
    ids, lengths = encode_chars(words, 300, max_chars)
    assert ids.shape[0] == len(words)
    for i, word in enumerate(words):
        codes = reference_codes(word, max_chars)
        assert lengths[i] == max(1, len(codes))
        direct = [c + 1 for c in codes if c < 256]
        assert [v for v, c in zip(ids[i], codes) if c < 256] == direct
        assert all(257 <= v < 300 for v, c in zip(ids[i], codes) if c >= 256)
        assert (ids[i, len(codes):] == 0).all()
    numpy.testing.assert_array_equal(ids[:, : max(1, ids.shape[1])], encode_one_by_one(words, 300, max_chars)[:, : ids.shape[1]])


def test_long_words_keep_head_and_tail_and_lone_surrogates_are_valid():
    ids, lengths = encode_chars(["abcdefghij", "\ud800x", ""], 300, 4)
    assert lengths.tolist() == [4, 2, 1]
    assert ids[0].tolist() == [ord(c) + 1 for c in "abij"]
    assert ids[1, 1] == ord("x") + 1 and ids[1, 0] >= 257
    assert ids[2].tolist() == [0, 0, 0, 0]
