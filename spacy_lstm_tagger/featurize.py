"""Turn a batch of spaCy Docs into the integer arrays the torch module reads.

Everything here is numpy and independent of torch, so it is cheap to test.
Two ideas keep it fast and bounded:

* characters are encoded once per unique word *type* in the batch, and long
  words keep only their first and last characters;
* long Docs are cut into overlapping windows, so a 20,000-token Doc without
  sentence boundaries costs memory proportional to the window, and every token
  is scored from a window where it has ``context`` tokens on each side;
* with ``sentence_windows`` on, no window crosses a sentence boundary the
  Doc has (a parser, senter or sentencizer ran before the tagger), so a
  document is tagged as a model trained on one sentence at a time
  (``gold_preproc``) saw its training data.
"""
from dataclasses import dataclass
from functools import lru_cache
from typing import List, Optional, Sequence, Tuple

import numpy
from spacy.attrs import IDS as SPACY_ATTR_IDS
from spacy.attrs import ORTH, SENT_START, SHAPE
from spacy.lang.lex_attrs import word_shape
from spacy.strings import hash_string
from spacy.symbols import NAMES as SYMBOL_NAMES
from spacy.tokens import Doc
from spacy.vectors import Mode, Vectors
from thinc.api import NumpyOps

from .constants import PAD_CHAR_ID, UNKNOWN_WORD_ID

_NUMPY_OPS = NumpyOps()
_N_DIRECT_CHARS = 256  # code points below this get their own row
_GOLDEN = numpy.uint64(2654435761)
# words whose affix hashes are kept (an LRU cache of at most ~13 MB), and the
# longest word kept (longer ones are rare and would hold their copy in memory)
AFFIX_KEY_CACHE_SIZE = 20_000
AFFIX_KEY_CACHE_MAX_CHARS = 64


@dataclass(frozen=True)
class Window:
    """A slice ``[start, end)`` of Doc ``doc_index`` fed to the LSTM, whose
    tokens ``[keep_start, keep_end)`` (Doc offsets) are scored from it."""

    doc_index: int
    start: int
    end: int
    keep_start: int
    keep_end: int


@dataclass
class Features:
    word_ids: numpy.ndarray  # (n_windows, max_len, n_hashes) int64
    char_ids: numpy.ndarray  # (n_types, max_chars) int64
    char_lengths: numpy.ndarray  # (n_types,) int64
    token_types: numpy.ndarray  # (n_windows, max_len) int64
    lengths: numpy.ndarray  # (n_windows,) int64
    windows: List[Window]
    vectors: Optional[numpy.ndarray] = None  # (n_windows, max_len, width) float32
    affix_ids: Optional[numpy.ndarray] = None  # (n_types, n_affix_features) int64
    clusters: Optional[numpy.ndarray] = None  # (n_windows, max_len, n_cluster_prefixes) int64


def plan_windows(
    doc_lengths: Sequence[int], max_window: int, context: int,
    segments: Optional[Sequence[Optional[Sequence[Tuple[int, int]]]]] = None,
) -> List[Window]:
    """Cut each Doc into windows of at most ``max_window`` tokens.

    ``segments`` (optional, per Doc: ``(start, end)`` spans that partition it,
    in order, e.g. its sentences; ``None`` for a Doc: the whole Doc) are cut
    on their own, so no window crosses a segment's edge. Empty Docs get no
    window. A segment that fits is one window. Otherwise it is split into
    cores of ``max_window - 2 * context`` tokens, each widened by up to
    ``context`` tokens on both sides within the segment; only the core is kept.
    """
    if context < 0 or max_window - 2 * context < 1:
        raise ValueError(
            f"max_window ({max_window}) must exceed 2 * window_context ({context})"
        )
    stride = max_window - 2 * context
    windows = []
    for i, n in enumerate(doc_lengths):
        spans = segments[i] if segments is not None and segments[i] is not None else ((0, n),)
        for first, last in spans:
            if last - first <= max_window:
                if last > first:
                    windows.append(Window(i, first, last, first, last))
                continue
            for core_start in range(first, last, stride):
                core_end = min(last, core_start + stride)
                windows.append(Window(
                    i, max(first, core_start - context), min(last, core_end + context), core_start, core_end))
    return windows


def sentence_spans(doc: Doc) -> Optional[List[Tuple[int, int]]]:
    """The ``(start, end)`` token spans of ``doc``'s sentences where something
    set sentence boundaries (``Doc.has_annotation("SENT_START")``: a parser,
    senter or sentencizer before the tagger), else ``None`` (the Doc is one
    sequence). Read from one array, not from ``Doc.sents``."""
    if len(doc) < 2 or not doc.has_annotation("SENT_START"):
        return None
    starts = numpy.flatnonzero(doc.to_array(SENT_START)[1:] == 1) + 1
    if not len(starts):
        return None
    bounds = [0, *starts.tolist(), len(doc)]
    return list(zip(bounds[:-1], bounds[1:]))


def doc_windows(docs: Sequence[Doc], max_window: int, context: int, sentence_windows: bool) -> List[Window]:
    """:func:`plan_windows` for ``docs``: within each sentence
    (:func:`sentence_spans`) with ``sentence_windows``, else over whole Docs."""
    segments = [sentence_spans(doc) for doc in docs] if sentence_windows else None
    return plan_windows([len(doc) for doc in docs], max_window, context, segments)


def hash_rows(keys: numpy.ndarray, n_rows: int, n_hashes: int, seed: int = 0) -> numpy.ndarray:
    """Map 64-bit string ids to ``n_hashes`` rows of a table of ``n_rows``.

    Row 0 is reserved for unknown words (word dropout). Summing several hashed
    rows makes two words share their whole representation only if they collide
    in every hash, as in Thinc's HashEmbed."""
    hashed = _NUMPY_OPS.hash(keys.astype("uint64"), seed)[:, :n_hashes].astype("int64")
    return hashed % (n_rows - 1) + 1


def encode_chars(
    words: Sequence[str], n_chars: int, max_chars: int
) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Character ids for each word, padded; words longer than ``max_chars``
    keep their first and last ``max_chars // 2`` characters.

    Code points below 256 get their own row; all others (CJK, emoji, ...) are
    hashed into the remaining rows, so any Unicode string is valid input."""
    head = max_chars - max_chars // 2
    tail = max_chars // 2
    # one encode for the whole batch (a per-word loop costs ~7 us per type);
    # utf-32 gives one unit per code point, as len() counts
    full_lengths = numpy.fromiter(map(len, words), dtype="int64", count=len(words))
    cps = numpy.frombuffer("".join(words).encode("utf-32-le", "surrogatepass"), dtype="<u4")
    if len(cps) and int(full_lengths.max()) > max_chars:
        # keep the first `head` and last `tail` code points of each long word
        word_lengths = numpy.repeat(full_lengths, full_lengths)
        position = numpy.arange(len(cps)) - numpy.repeat(numpy.cumsum(full_lengths) - full_lengths, full_lengths)
        cps = cps[(position < head) | (position >= word_lengths - tail)]
    lengths = numpy.minimum(full_lengths, max_chars)
    flat = cps.astype("uint64")
    hashed = (flat * _GOLDEN) % numpy.uint64(n_chars - 1 - _N_DIRECT_CHARS) + numpy.uint64(1 + _N_DIRECT_CHARS)
    ids = numpy.where(flat < _N_DIRECT_CHARS, flat + 1, hashed).astype("int64")
    width = max(1, int(lengths.max()) if len(lengths) else 1)
    char_ids = numpy.full((len(words), width), PAD_CHAR_ID, dtype="int64")
    mask = numpy.arange(width)[None, :] < lengths[:, None]
    char_ids[mask] = ids
    # An empty string (possible in hand-made Docs) is read as one padding char.
    return char_ids, numpy.maximum(lengths, 1)


def n_affix_features(n_prefixes: int, n_suffixes: int, use_shape: bool) -> int:
    """How many affix features :func:`encode_affixes` gives each word."""
    return n_prefixes + n_suffixes + int(use_shape)


def encode_affixes(
    words: Sequence[str], n_prefixes: int, n_suffixes: int, use_shape: bool, n_rows: int,
    shape_keys: Optional[numpy.ndarray] = None,
) -> numpy.ndarray:
    """Rows of the affix table for each word: its lowercase prefixes of 1 to
    ``n_prefixes`` characters, suffixes of 1 to ``n_suffixes`` characters and
    (with ``use_shape``) spaCy's word shape, each feature hashed with its own
    seed into rows 1 to ``n_rows - 1``. Shape (n_words, n_features).

    ``shape_keys``: the words' shape hashes when they are already known
    (spaCy computes ``word_shape`` once per lexeme: ``Token.shape``), so only
    the affixes are hashed here; the same keys as without it."""
    n_features = n_affix_features(n_prefixes, n_suffixes, use_shape)
    hash_shapes = use_shape and shape_keys is None
    n_hashed = n_affix_features(n_prefixes, n_suffixes, hash_shapes)
    keys = numpy.empty((len(words), n_features), dtype="uint64")
    keys[:, :n_hashed] = numpy.array(
        [affix_keys(word, n_prefixes, n_suffixes, hash_shapes) for word in words], dtype="uint64"
    ).reshape(len(words), n_hashed)
    if n_hashed < n_features:
        keys[:, -1] = shape_keys
    rows = numpy.empty(keys.shape, dtype="int64")
    for f in range(n_features):
        rows[:, f] = hash_rows(keys[:, f], n_rows, 1, seed=f + 1)[:, 0]
    return rows


def affix_keys(word: str, n_prefixes: int, n_suffixes: int, use_shape: bool) -> Tuple[int, ...]:
    """The 64-bit string hashes of one word's affix features. Computing them is
    per-word Python (spaCy's ``word_shape`` is a loop over the characters), a
    fifth of a batch's inference time without a cache: a word's keys depend
    only on its string, so words of up to ``AFFIX_KEY_CACHE_MAX_CHARS``
    characters are hashed once per process (an LRU cache, ``_cached_affix_keys``)."""
    if len(word) > AFFIX_KEY_CACHE_MAX_CHARS:
        return _affix_keys(word, n_prefixes, n_suffixes, use_shape)
    return _cached_affix_keys(word, n_prefixes, n_suffixes, use_shape)


def _affix_keys(word: str, n_prefixes: int, n_suffixes: int, use_shape: bool) -> Tuple[int, ...]:
    lower = word.lower()
    row = [hash_string(lower[:k]) for k in range(1, n_prefixes + 1)]
    row += [hash_string(lower[-k:]) for k in range(1, n_suffixes + 1)]
    if use_shape:
        row.append(hash_string(word_shape(word)))
    return tuple(row)


_cached_affix_keys = lru_cache(maxsize=AFFIX_KEY_CACHE_SIZE)(_affix_keys)
_SYMBOL_HASHES = numpy.array([hash_string(name) for name in SYMBOL_NAMES], dtype="uint64")


def clear_affix_key_cache() -> None:
    """Forget every cached word's affix hashes (e.g. to time a cold pass)."""
    _cached_affix_keys.cache_clear()


def affix_key_cache_size() -> int:
    """How many words' affix hashes are cached now."""
    return _cached_affix_keys.cache_info().currsize


def string_hashes(keys: numpy.ndarray) -> numpy.ndarray:
    """``hash_string`` of the strings behind StringStore ``keys``: the store
    gives spaCy's symbols (e.g. the shape "X", a POS name) their small symbol
    ids instead of their hashes."""
    symbols = keys < len(_SYMBOL_HASHES)
    if not symbols.any():
        return keys
    return numpy.where(symbols, _SYMBOL_HASHES[numpy.minimum(keys, len(_SYMBOL_HASHES) - 1).astype("int64")], keys)


def static_vectors_width(vocab) -> int:
    """Width of the pipeline's vectors; a clear error when it has none."""
    vectors = vocab.vectors
    is_floret = isinstance(vectors, Vectors) and vectors.mode == Mode.floret
    if vectors is None or not vectors.shape[1] or not (vectors.shape[0] or is_floret):
        raise ValueError(
            "include_static_vectors is on, but the pipeline has no vectors: set "
            "[initialize] vectors in the config (e.g. a pipeline with vectors such as en_core_web_md)."
        )
    return vectors.shape[1]


def static_vectors(doc: Doc) -> numpy.ndarray:
    """The pipeline's static vectors for each token of ``doc`` (zeros for
    tokens without one), read like spaCy's ``StaticVectors`` does."""
    static_vectors_width(doc.vocab)
    vectors = doc.vocab.vectors
    keys = doc.to_array(getattr(vectors, "attr", ORTH))
    if isinstance(vectors, Vectors) and vectors.mode == Mode.default:
        rows = vectors.find(keys=keys)
        found = numpy.asarray(vectors.data)[rows]
        found[rows < 0] = 0
        return found.astype("float32", copy=False)
    return numpy.asarray(vectors.get_batch(keys), dtype="float32")


CLUSTER_TABLE = "lexeme_cluster"
CLUSTER_PREFIXES = (4, 6, 10, 20)
"""Bits of the Brown cluster path used as features (Koo et al. 2008 use 4, 6
and the full path); spaCy stores paths bit-reversed, so a prefix is a mask."""


def cluster_table(vocab):
    """The vocab's Brown cluster table; a clear error when it has none."""
    if not vocab.lookups.has_table(CLUSTER_TABLE):
        raise ValueError(
            f"cluster_embed_size is set, but the pipeline's vocab has no '{CLUSTER_TABLE}' lookups "
            "table: set [initialize.lookups] in the config, e.g. "
            '@misc = "spacy_lstm_tagger.ClusterLookups.v1" with the path of en_lexeme_cluster.json.gz '
            "(python scripts/prepare_pretrained.py assets/pretrained clusters)."
        )
    return vocab.lookups.get_table(CLUSTER_TABLE)


def cluster_rows(words: Sequence[str], table, n_rows: int) -> numpy.ndarray:
    """Rows of the cluster table for each word: one hashed row per path prefix
    (``CLUSTER_PREFIXES``). A word without a cluster is looked up lowercased;
    if still missing, its cluster is 0 (its own rows, shared by all unknowns)."""
    clusters = numpy.fromiter(
        (table.get(w, 0) or table.get(w.lower(), 0) for w in words), dtype="uint64", count=len(words)
    )
    keys = numpy.stack(
        [(clusters & numpy.uint64((1 << k) - 1)) * numpy.uint64(32) + numpy.uint64(k) for k in CLUSTER_PREFIXES],
        axis=1,
    )
    hashed = _NUMPY_OPS.hash(keys.reshape(-1), 7)[:, 0].astype("int64").reshape(keys.shape)
    return hashed % n_rows


def featurize(
    docs: Sequence[Doc],
    *,
    include_static_vectors: bool = False,
    n_cluster_rows: int = 0,
    word_attr: str,
    n_word_rows: int,
    n_word_hashes: int,
    n_chars: int,
    max_word_chars: int,
    max_window: int,
    window_context: int,
    n_prefixes: int = 0,
    n_suffixes: int = 0,
    use_shape: bool = False,
    n_affix_rows: int = 1,
    sentence_windows: bool = False,
) -> Features:
    """Build the integer inputs of the torch module for ``docs``."""
    attr_id = SPACY_ATTR_IDS[word_attr.upper()]
    windows = doc_windows(docs, max_window, window_context, sentence_windows)
    n_win = len(windows)
    max_len = max((w.end - w.start for w in windows), default=0)
    word_ids = numpy.full((n_win, max_len, n_word_hashes), UNKNOWN_WORD_ID, dtype="int64")
    token_types = numpy.zeros((n_win, max_len), dtype="int64")
    lengths = numpy.zeros((n_win,), dtype="int64")
    # the word shape as spaCy computed it for each lexeme, where the vocab's
    # shape is spaCy's word_shape (every language's default; not a bare Vocab())
    lexeme_shapes = use_shape and bool(docs) and docs[0].vocab.lex_attr_getters.get(SHAPE) is word_shape
    columns = [attr_id, ORTH, SHAPE] if lexeme_shapes else [attr_id, ORTH]
    arrays = [doc.to_array(columns) if len(doc) else numpy.zeros((0, len(columns)), "uint64") for doc in docs]
    shape_keys = None
    if windows:
        # all tokens of the batch in one array; doc d starts at starts[d]
        flat = numpy.concatenate(arrays)
        starts = numpy.cumsum([0] + [len(a) for a in arrays])
        types, first, type_index = numpy.unique(flat[:, 1], return_index=True, return_inverse=True)
        if lexeme_shapes:
            shape_keys = string_hashes(flat[first, 2])
        strings = docs[0].vocab.strings
        type_strings = [strings[int(t)] for t in types]
        char_ids, char_lengths = encode_chars(type_strings, n_chars, max_word_chars)
        rows = hash_rows(flat[:, 0], n_word_rows, n_word_hashes)
        for w, win in enumerate(windows):
            begin, end = starts[win.doc_index] + win.start, starts[win.doc_index] + win.end
            lengths[w] = end - begin
            word_ids[w, : end - begin] = rows[begin:end]
            token_types[w, : end - begin] = type_index[begin:end]
    else:
        type_strings = []
        char_ids = numpy.zeros((0, 1), dtype="int64")
        char_lengths = numpy.zeros((0,), dtype="int64")
    affix_ids = None
    if n_affix_features(n_prefixes, n_suffixes, use_shape):
        affix_ids = encode_affixes(type_strings, n_prefixes, n_suffixes, use_shape, n_affix_rows, shape_keys)
    clusters = None
    if n_cluster_rows:
        table = cluster_table(docs[0].vocab) if docs else None
        clusters = numpy.zeros((n_win, max_len, len(CLUSTER_PREFIXES)), dtype="int64")
        if windows:
            type_rows = cluster_rows(type_strings, table, n_cluster_rows)[type_index]
            for w, win in enumerate(windows):
                begin = starts[win.doc_index] + win.start
                clusters[w, : lengths[w]] = type_rows[begin : begin + lengths[w]]
    vectors = None
    if include_static_vectors and windows:
        per_doc = {w.doc_index: static_vectors(docs[w.doc_index]) for w in windows}
        width = next(iter(per_doc.values())).shape[1]
        vectors = numpy.zeros((n_win, max_len, width), dtype="float32")
        for w, win in enumerate(windows):
            vectors[w, : win.end - win.start] = per_doc[win.doc_index][win.start : win.end]
    return Features(word_ids, char_ids, char_lengths, token_types, lengths, windows, vectors, affix_ids, clusters)
