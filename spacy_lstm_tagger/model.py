"""Thinc glue: wraps the torch module so spaCy sees a ``Model[List[Doc], List[Floats2d]]``.

The registered architectures (``spacy_lstm_tagger.WordCharBiLSTM.v1`` and
``.v2``) return a small Thinc model whose only layer (ref ``"torch"``) wraps
the torch module. Its ``convert_inputs`` featurizes Docs into integer tensors
on the shim's device (no gradients for ids); ``convert_outputs`` cuts the
padded scores back into one array per Doc, softmax-normalized per head like
spaCy's ``Softmax`` output layer, so spaCy's ``Tagger`` loss and prediction
code work unchanged.

The component never touches torch: what it needs from the model (the columns
of each head, CRF decoding, marginals and loss, thread setup) is the small API
at the end of this module.
"""
import contextlib
import os
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union, cast

import numpy
import torch
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import ArgsKwargs, Model, torch2xp, xp2torch
from thinc.types import Floats2d

from . import crf as crf_ops
from .char_cache import CharEncodingCache
from . import weights
from .config_checks import check_architecture_args
from .featurize import (
    Window, cluster_table, doc_windows, featurize, n_affix_features, plan_windows, static_vectors_width,
)
from .pytorch_model import HEADS, CharBiLSTMEncoder, WordCharBiLSTMTagger
from .quantize import AutoBFloat16Inference, BFloat16Inference, QuantizedInference
from .shim import pytorch_wrapper
from .weights import MODEL_FORMAT, MODEL_FORMAT_VERSION, deserialize_torch_module, serialize_torch_module  # noqa: F401
from .upstream import pad_into_windows, unpad_from_windows

HEAD_DIMS = {"tag": "nO", "pos": "nP", "morph": "nM"}
"""The model's heads (in the order of their columns) and the dim holding each one's size."""


@dataclass(frozen=True)
class FeatureConfig:
    """The featurization settings shared by ``convert_inputs`` and ``convert_outputs``."""

    word_attr: str
    n_word_rows: int
    n_word_hashes: int
    n_chars: int
    max_word_chars: int
    max_window: int
    window_context: int
    include_static_vectors: bool = False
    n_prefixes: int = 0
    n_suffixes: int = 0
    use_shape: bool = False
    n_affix_rows: int = 1
    n_cluster_rows: int = 0
    sentence_windows: bool = False

    def windows(self, docs: Sequence[Doc]) -> List[Window]:
        """The windows the LSTM reads for ``docs`` (``featurize.doc_windows``)."""
        return doc_windows(docs, self.max_window, self.window_context, self.sentence_windows)


@registry.architectures("spacy_lstm_tagger.WordCharBiLSTM.v1")
def build_wordchar_bilstm_tagger(
    word_embed_size: int = 100,
    n_word_rows: int = 50000,
    n_word_hashes: int = 2,
    word_attr: str = "NORM",
    char_embed_size: int = 32,
    char_hidden_size: int = 64,
    n_chars: int = 1024,
    max_word_chars: int = 24,
    hidden_size: int = 200,
    depth: int = 2,
    lstm_input_size: int = 0,
    dropout: float = 0.33,
    word_dropout: float = 0.1,
    max_window: int = 256,
    window_context: int = 24,
    sentence_windows: bool = True,
    joint_pos: Union[bool, str] = False,
    crf: bool = False,
    include_static_vectors: bool = False,
    char_cache_size: int = 20000,
    quantize: bool = False,
    bfloat16: Union[bool, str] = False,
    nO: Optional[int] = None,
) -> Model[List[Doc], List[Floats2d]]:
    """Build the word + character BiLSTM tagger model (version 1: no affix
    features, no FEATS head; kept so saved pipelines load unchanged).

    word_embed_size, n_word_rows, n_word_hashes, word_attr: a hashed embedding of
        the token attribute ``word_attr``; each word sums ``n_word_hashes`` rows
        of a table of ``n_word_rows``. Hashing needs no vocabulary file and keeps
        the model size fixed by the config.
    char_embed_size, char_hidden_size, n_chars, max_word_chars: the character
        BiLSTM (output ``2 * char_hidden_size``); words longer than
        ``max_word_chars`` keep their first and last characters.
    hidden_size, depth, dropout: the sentence BiLSTM (per direction); dropout is
        applied to its input, between its layers and to its output.
    lstm_input_size: project each token's input (word, characters and any
        further features) linearly to this width before the sentence BiLSTM;
        0 (the default): no projection. Its input product is most of the
        BiLSTM's work, so a narrow input makes inference faster (the word-type
        part is projected once per type).
    word_dropout: training-time probability of replacing a word's embedding
        with the unknown-word row, so rare words lean on their characters.
    max_window, window_context: Docs longer than ``max_window`` tokens are
        tagged in overlapping windows with ``window_context`` tokens of context.
    sentence_windows: where a Doc has sentence boundaries (a parser, senter
        or sentencizer before the tagger set them), the sentence BiLSTM reads
        each sentence on its own, in training too: a model trained on one
        sentence per Doc (``gold_preproc``) then tags a whole document as it
        tags its sentences. A Doc without boundaries is one sequence.
        false: every Doc is one sequence.
    joint_pos: add a second linear head for UPOS (``Token.pos_``); each
        output row is then the tag probabilities followed by the POS ones.
        ``lstm_joint_tagger`` writes its predictions; on ``lstm_tagger`` it is
        an auxiliary head: trained on the gold UPOS, skipped at inference.
        ``"auto"``: on when the training data has UPOS (decided by the
        component at ``initialize``, printed, and saved with the weights).
    crf: decode tags with a linear-chain CRF (Viterbi) trained with the
        sequence log-likelihood; the tag columns of the output are then raw
        emission scores, not probabilities.
    include_static_vectors: concatenate the pipeline's static vectors
        (``[initialize] vectors``, frozen, read from the vocab like spaCy's
        ``StaticVectors``) through a trainable projection to ``word_embed_size``.
    char_cache_size: at inference, keep the character encodings of up to this
        many word types (the most frequent) per process instead of re-running
        the character BiLSTM on them; emptied when the weights change. 0: off.
    quantize: at inference on CPU, run an int8 copy of the LSTMs and linear
        layers (dynamic quantization, quantize.py); training and the saved
        weights stay float.
    bfloat16: at inference, run a bfloat16 copy of the whole module
        (quantize.py); training and the saved weights stay float32. A tagging
        pass was 1.2-1.9x faster on a CPU with native bf16 (avx512_bf16, AMX;
        docs/speed-and-hardware.md); without native bf16 (no avx512_bf16 or AMX) it
        is slower than float32 and warns. ``"auto"``: bfloat16 only on a CPU
        that runs it natively, float32 elsewhere (GPUs too), so one config is
        safe on every machine (the shipped configs' and ``add_pipe``'s
        default). Not ``true`` together with ``quantize``; ``quantize`` wins
        over ``"auto"``.
    nO: number of tags; inferred at initialize when not given. The number of
        POS classes is the dim ``nP``, set by the component at initialize.
    """
    check_architecture_args(
        "spacy_lstm_tagger.WordCharBiLSTM.v1",
        word_embed_size=word_embed_size, n_word_rows=n_word_rows, n_word_hashes=n_word_hashes,
        word_attr=word_attr, char_embed_size=char_embed_size, char_hidden_size=char_hidden_size,
        n_chars=n_chars, max_word_chars=max_word_chars, hidden_size=hidden_size, depth=depth,
        lstm_input_size=lstm_input_size,
        dropout=dropout, word_dropout=word_dropout, max_window=max_window,
        window_context=window_context, sentence_windows=sentence_windows, joint_pos=joint_pos, crf=crf,
        include_static_vectors=include_static_vectors, char_cache_size=char_cache_size,
        quantize=quantize, bfloat16=bfloat16, nO=nO,
    )
    return _build(
        word_embed_size=word_embed_size, n_word_rows=n_word_rows, n_word_hashes=n_word_hashes,
        word_attr=word_attr, char_embed_size=char_embed_size, char_hidden_size=char_hidden_size,
        n_chars=n_chars, max_word_chars=max_word_chars, hidden_size=hidden_size, depth=depth,
        lstm_input_size=lstm_input_size,
        dropout=dropout, word_dropout=word_dropout, max_window=max_window,
        window_context=window_context, sentence_windows=sentence_windows, joint_pos=joint_pos, joint_morph=False, crf=crf,
        include_static_vectors=include_static_vectors, n_prefixes=0, n_suffixes=0,
        use_shape=False, n_affix_rows=1, affix_embed_size=0,
        char_cache_size=char_cache_size, quantize=quantize, bfloat16=bfloat16, nO=nO,
    )


@registry.architectures("spacy_lstm_tagger.WordCharBiLSTM.v2")
def build_wordchar_bilstm_tagger_v2(
    word_embed_size: int = 64,
    n_word_rows: int = 50000,
    n_word_hashes: int = 2,
    word_attr: str = "NORM",
    char_embed_size: int = 24,
    char_hidden_size: int = 32,
    n_chars: int = 8192,
    max_word_chars: int = 16,
    n_prefixes: int = 3,
    n_suffixes: int = 4,
    use_shape: bool = True,
    n_affix_rows: int = 20000,
    affix_embed_size: int = 16,
    hidden_size: int = 128,
    depth: int = 1,
    lstm_input_size: int = 64,
    dropout: float = 0.5,
    word_dropout: float = 0.1,
    max_window: int = 256,
    window_context: int = 24,
    sentence_windows: bool = True,
    joint_pos: Union[bool, str] = False,
    joint_morph: Union[bool, str] = False,
    crf: bool = False,
    include_static_vectors: bool = False,
    char_cache_size: int = 20000,
    quantize: bool = False,
    bfloat16: Union[bool, str] = False,
    cluster_embed_size: int = 0,
    n_cluster_rows: int = 4096,
    tok2vec: Optional[Model[List[Doc], List[Floats2d]]] = None,
    tok2vec_proj_size: int = 128,
    nO: Optional[int] = None,
) -> Model[List[Doc], List[Floats2d]]:
    """Build the word + character BiLSTM tagger model, version 2.

    As version 1 (see there for the shared arguments), with the default
    recipe's settings as defaults (``configs/lstm_tagger_small.cfg``, for any
    language and small or mid-size corpora; ``lstm_tagger_efficiency.cfg`` is
    faster on large ones), and ``n_chars`` 8192 so that non-Latin scripts (every code point from 256
    up is hashed) share far fewer character rows. Plus:

    n_prefixes, n_suffixes, use_shape, n_affix_rows, affix_embed_size: each
        word type's lowercase prefixes of 1 to ``n_prefixes`` characters,
        suffixes of 1 to ``n_suffixes`` characters and (``use_shape``) word
        shape, each hashed into a shared table of ``n_affix_rows`` rows of
        ``affix_embed_size``, concatenated beside the character encoding.
        These are the features spaCy's own tagger lives on; a small corpus
        learns them faster than the character BiLSTM. 0/false turns them off.
    lstm_input_size: 64 (v1: 0, no projection): the sentence BiLSTM reads a
        64-d projection of each token's input: tagging about 1.15x as fast,
        training in about half the time, accuracy the same within half a
        point (``docs/treebanks.md``).
    dropout, word_dropout: 0.5 and 0.1 (v1: 0.33 and 0.1): strong dropout on
        the sentence BiLSTM for corpora of a few hundred sentences; word
        dropout 0.1 rather than 0.25 lets the model learn more of the words
        seen once in training (``docs/treebanks.md``).
    joint_morph: add a head for UD FEATS (``Token.morph``): each FEATS string
        seen in training is one class, like spaCy's ``morphologizer``. Its
        columns come after the tag (and POS) columns; the number of classes
        is the dim ``nM``, set by the component at initialize. Written by
        ``lstm_joint_tagger``, auxiliary on ``lstm_tagger``, ``"auto"``: on
        when the training data has FEATS, all as ``joint_pos``.
    cluster_embed_size, n_cluster_rows: Brown cluster features (0: off). Each
        token's cluster path prefixes (4, 6, 10, 20 bits) are hashed into a
        table of ``n_cluster_rows`` rows of ``cluster_embed_size``, summed and
        concatenated to the word representation. The clusters are the vocab's
        ``lexeme_cluster`` lookups table (``[initialize.lookups]``, e.g.
        ``spacy_lstm_tagger.ClusterLookups.v1``), saved with the pipeline.
    tok2vec, tok2vec_proj_size: an upstream ``Model[List[Doc], List[Floats2d]]``
        (``spacy.Tok2VecListener.v1``, spacy-transformers'
        ``TransformerListener.v1`` or an inline tok2vec) whose output, through a
        trainable projection to ``tok2vec_proj_size``, is concatenated to each
        token's input of the sentence BiLSTM. Gradients flow back into it
        (into the shared component through a listener) unless that component
        is frozen, as with spaCy's tagger.
    """
    check_architecture_args(
        "spacy_lstm_tagger.WordCharBiLSTM.v2",
        word_embed_size=word_embed_size, n_word_rows=n_word_rows, n_word_hashes=n_word_hashes,
        word_attr=word_attr, char_embed_size=char_embed_size, char_hidden_size=char_hidden_size,
        n_chars=n_chars, max_word_chars=max_word_chars, n_prefixes=n_prefixes, n_suffixes=n_suffixes,
        use_shape=use_shape, n_affix_rows=n_affix_rows, affix_embed_size=affix_embed_size,
        hidden_size=hidden_size, depth=depth, lstm_input_size=lstm_input_size, dropout=dropout,
        word_dropout=word_dropout, max_window=max_window, window_context=window_context, sentence_windows=sentence_windows, joint_pos=joint_pos,
        joint_morph=joint_morph, crf=crf, include_static_vectors=include_static_vectors, nO=nO,
        cluster_embed_size=cluster_embed_size, n_cluster_rows=n_cluster_rows, tok2vec=tok2vec,
        tok2vec_proj_size=tok2vec_proj_size, char_cache_size=char_cache_size, quantize=quantize,
        bfloat16=bfloat16,
    )
    return _build(
        word_embed_size=word_embed_size, n_word_rows=n_word_rows, n_word_hashes=n_word_hashes,
        word_attr=word_attr, char_embed_size=char_embed_size, char_hidden_size=char_hidden_size,
        n_chars=n_chars, max_word_chars=max_word_chars, hidden_size=hidden_size, depth=depth,
        lstm_input_size=lstm_input_size,
        dropout=dropout, word_dropout=word_dropout, max_window=max_window,
        window_context=window_context, sentence_windows=sentence_windows, joint_pos=joint_pos, joint_morph=joint_morph, crf=crf,
        include_static_vectors=include_static_vectors, n_prefixes=n_prefixes,
        n_suffixes=n_suffixes, use_shape=use_shape, n_affix_rows=n_affix_rows,
        affix_embed_size=affix_embed_size, cluster_embed_size=cluster_embed_size,
        n_cluster_rows=n_cluster_rows, tok2vec=tok2vec, tok2vec_proj_size=tok2vec_proj_size,
        char_cache_size=char_cache_size, quantize=quantize, bfloat16=bfloat16, nO=nO,
    )


def _build(
    *, word_embed_size: int, n_word_rows: int, n_word_hashes: int, word_attr: str,
    char_embed_size: int, char_hidden_size: int, n_chars: int, max_word_chars: int,
    hidden_size: int, depth: int, lstm_input_size: int, dropout: float, word_dropout: float, max_window: int,
    window_context: int, sentence_windows: bool, joint_pos: Union[bool, str], joint_morph: Union[bool, str], crf: bool,
    include_static_vectors: bool, n_prefixes: int, n_suffixes: int, use_shape: bool,
    n_affix_rows: int, affix_embed_size: int, char_cache_size: int, quantize: bool, bfloat16: Union[bool, str],
    cluster_embed_size: int = 0, n_cluster_rows: int = 0,
    tok2vec: Optional[Model[List[Doc], List[Floats2d]]] = None, tok2vec_proj_size: int = 0,
    nO: Optional[int],
) -> Model[List[Doc], List[Floats2d]]:
    if cluster_embed_size < 0 or (cluster_embed_size and n_cluster_rows < 1):
        raise ValueError(
            f"cluster_embed_size must be >= 0 (got {cluster_embed_size}) and, with clusters, "
            f"n_cluster_rows at least 1 (got {n_cluster_rows})"
        )
    if tok2vec is not None and tok2vec_proj_size < 1:
        raise ValueError(f"tok2vec_proj_size must be a positive integer with a tok2vec, got {tok2vec_proj_size}")
    if tok2vec is not None and not isinstance(tok2vec, Model):
        raise ValueError(f"tok2vec must be a Thinc Model[List[Doc], List[Floats2d]], got {type(tok2vec).__name__}")
    # each argument's bounds: config_checks.check_architecture_args, called by the builders
    if char_cache_size < 0:
        raise ValueError(f"char_cache_size must be 0 (off) or a number of word types, got {char_cache_size}")
    if quantize and bfloat16 is True:
        raise ValueError(
            "quantize (int8) and bfloat16 = true are two ways to run inference: set at most one of them "
            '(with bfloat16 = "auto", the shipped configs\' default, quantize = true runs int8)'
        )
    n_affixes = n_affix_features(n_prefixes, n_suffixes, use_shape)
    if n_affixes and (n_affix_rows < 2 or affix_embed_size < 1):
        raise ValueError(
            f"With affix features, n_affix_rows must be at least 2 (got {n_affix_rows}) and "
            f"affix_embed_size at least 1 (got {affix_embed_size})"
        )
    features = FeatureConfig(
        word_attr=word_attr.upper(), n_word_rows=n_word_rows, n_word_hashes=n_word_hashes,
        n_chars=n_chars, max_word_chars=max_word_chars, max_window=max_window,
        window_context=window_context, sentence_windows=sentence_windows, include_static_vectors=include_static_vectors,
        n_prefixes=n_prefixes, n_suffixes=n_suffixes, use_shape=use_shape,
        n_affix_rows=n_affix_rows,
        n_cluster_rows=n_cluster_rows if cluster_embed_size else 0,
    )
    plan_windows([], max_window, window_context)  # validates the window settings
    module = WordCharBiLSTMTagger(
        n_word_rows=n_word_rows, n_word_hashes=n_word_hashes, word_embed_size=word_embed_size,
        n_chars=n_chars, char_embed_size=char_embed_size, char_hidden_size=char_hidden_size,
        hidden_size=hidden_size, depth=depth, dropout=dropout, word_dropout=word_dropout,
        crf=crf, include_static_vectors=include_static_vectors, n_affix_features=n_affixes,
        n_affix_rows=n_affix_rows if n_affixes else 1, affix_embed_size=affix_embed_size if n_affixes else 0,
        n_labels=nO, n_cluster_rows=n_cluster_rows if cluster_embed_size else 0,
        cluster_embed_size=cluster_embed_size, upstream_size=tok2vec_proj_size if tok2vec is not None else 0,
        lstm_input_size=lstm_input_size,
    )
    if char_cache_size:
        module.char_encoder.cache = CharEncodingCache(char_cache_size)
    wrapper = pytorch_wrapper(
        module,
        convert_inputs=partial(convert_inputs, features=features),
        convert_outputs=partial(convert_outputs, features=features),
        serialize_model=serialize_torch_module,
        deserialize_model=deserialize_torch_module,
    )
    if quantize:
        wrapper.shims[0].predict_module = QuantizedInference()
    elif bfloat16 == "auto":
        wrapper.shims[0].predict_module = AutoBFloat16Inference()
    elif bfloat16:
        wrapper.shims[0].predict_module = BFloat16Inference()
    model: Model[List[Doc], List[Floats2d]] = Model(
        "wordchar_bilstm_tagger",
        forward,
        init=init,
        layers=[wrapper] if tok2vec is None else [wrapper, tok2vec],
        refs={"torch": wrapper} if tok2vec is None else {"torch": wrapper, "tok2vec": tok2vec},
        dims={"nO": nO, "nP": None if joint_pos else 0, "nM": None if joint_morph else 0},
        # "auto" heads: decided by the component at initialize, where joint_pos /
        # joint_morph become true or false (and are saved so); auto_heads keeps
        # which were "auto", so a new initialize decides again
        attrs={"joint_pos": joint_pos, "joint_morph": joint_morph, "crf": crf,
               "auto_heads": [name for name, value in (("joint_pos", joint_pos), ("joint_morph", joint_morph))
                              if value == "auto"]},
    )
    return model


def get_torch_module(model: Model) -> WordCharBiLSTMTagger:
    """The torch module inside a model built by this architecture (the one accessor)."""
    return cast(WordCharBiLSTMTagger, model.get_ref("torch").shims[0]._model)


def tagger_models(model: Model) -> List[Model]:
    """The models built by this architecture in a component's model: the
    model itself, or the members of an ensemble (``ensemble.py``)."""
    if model.has_ref("torch"):
        return [model]
    return [layer for layer in model.layers if layer.has_ref("torch")]


def clear_char_caches(model: Model) -> int:
    """Empty the character-encoding caches (char_cache.py) of the model's
    torch modules (an ensemble's: each member's) and of their inference
    copies (``bfloat16``), e.g. to time inference without the benefit of
    words seen before. Returns how many."""
    roots = []
    for tagger in tagger_models(model):
        roots.append(get_torch_module(tagger))
        predict_module = tagger.get_ref("torch").shims[0].predict_module
        if getattr(predict_module, "current", None) is not None:
            roots.append(predict_module.current)
    caches = {id(m.cache): m.cache for root in roots for m in root.modules()
              if isinstance(m, CharBiLSTMEncoder) and m.cache is not None}
    for cache in caches.values():
        cache.clear()
    return len(caches)


def head_sizes(model: Model, predicting: bool = False) -> Dict[str, int]:
    """Columns of each head of the model's output ("tag", "pos", "morph"), in
    order; 0 for an absent head. v1 models saved before the FEATS head have no
    ``nM`` dim: it reads as 0. ``predicting``: of the output at inference,
    where only the :func:`predicted_heads` are scored."""
    sizes = {head: model.get_dim(dim) if model.has_dim(dim) else 0 for head, dim in HEAD_DIMS.items()}
    if predicting:
        predicted = predicted_heads(model)
        sizes = {head: size if head in predicted else 0 for head, size in sizes.items()}
    return sizes


def set_predicted_heads(model: Model, heads: Sequence[str]) -> None:
    """Score only ``heads`` (of :data:`HEAD_DIMS`; the tags always) at
    inference, in the model's torch modules (an ensemble's: each member's).
    The others still train: an ``lstm_tagger``'s joint heads are auxiliary
    targets, which cost nothing at inference. A setting of the component,
    not of the weights: it is not saved."""
    unknown = set(heads) - set(HEAD_DIMS)
    if unknown or "tag" not in heads:
        raise ValueError(f"predicted heads must include 'tag' and be among {tuple(HEAD_DIMS)}, got {tuple(heads)}")
    names = tuple(name for head, name in zip(HEAD_DIMS, HEADS) if head in heads)
    for tagger in tagger_models(model):
        get_torch_module(tagger).predicted_heads = names


def predicted_heads(model: Model) -> Tuple[str, ...]:
    """The heads (of :data:`HEAD_DIMS`) the model scores at inference."""
    names = get_torch_module(tagger_models(model)[0]).predicted_heads
    return tuple(head for head, name in zip(HEAD_DIMS, HEADS) if name in names)


def split_heads(model: Model, scores: Sequence[Floats2d], predicting: bool = False) -> Dict[str, List[Floats2d]]:
    """Cut each Doc's output rows into the columns of each present head
    (``predicting``: of each head scored at inference, for ``model.predict``'s
    output)."""
    sizes = head_sizes(model, predicting)
    out: Dict[str, List[Floats2d]] = {}
    start = 0
    for head, size in sizes.items():
        if size:
            out[head] = [s[:, start : start + size] for s in scores]
            start += size
    return out


def join_heads(model: Model, gradients: Dict[str, List[Floats2d]]) -> List[Floats2d]:
    """The inverse of :func:`split_heads`, for the per-head gradients of a loss."""
    parts = [gradients[head] for head, size in head_sizes(model).items() if size]
    if len(parts) == 1:
        return list(parts[0])
    return [model.ops.xp.hstack(row) for row in zip(*parts)]


def forward(model: Model, docs: List[Doc], is_train: bool) -> Tuple[List[Floats2d], Callable]:
    if not any(len(doc) for doc in docs):
        n_columns = sum(head_sizes(model, predicting=not is_train).values())
        return [model.ops.alloc2f(0, n_columns) for _ in docs], lambda dY: []
    if not model.has_ref("tok2vec"):
        return model.get_ref("torch")(docs, is_train)
    # the upstream features are one more input of the torch module; their
    # gradient comes back from convert_inputs' backprop, as in chain(tok2vec, ...)
    tokvecs, backprop_tok2vec = model.get_ref("tok2vec")(docs, is_train)
    scores, backprop_scores = model.get_ref("torch")((docs, tokvecs), is_train)

    def backprop(d_scores: List[Floats2d]) -> List:
        backprop_tok2vec(backprop_scores(d_scores))
        return []

    return scores, backprop


def init(model: Model, X: Optional[List[Doc]] = None, Y: Optional[List[Floats2d]] = None) -> None:
    """Set the number of labels (from ``Y`` if not given) and (re)initialize the weights."""
    if not model.has_dim("nO") and Y is not None:
        for y in Y:
            if getattr(y, "ndim", 0) == 2:
                model.set_dim("nO", y.shape[1])
                break
    if not model.has_dim("nO"):
        raise ValueError(
            "Cannot initialize the lstm_tagger model: the number of labels (nO) is unknown. "
            "Add labels to the component or pass gold examples to initialize."
        )
    for attr, dim in (("joint_pos", "nP"), ("joint_morph", "nM")):
        if model.has_dim(dim):
            continue
        if model.attrs.get(attr) == "auto":
            # no component looked at the data for this annotation: head off
            model.set_dim(dim, 0)
            model.attrs[attr] = False
            continue
        raise ValueError(
            f"Cannot initialize the lstm_tagger model with {attr} = true: the number of its "
            f"labels ({dim}) is unknown. The lstm_tagger component sets it from the data."
        )
    module = get_torch_module(model)
    sizes = head_sizes(model)
    for head_name, size in zip(HEADS, sizes.values()):
        module.resize_head(head_name, size)
    if module.include_static_vectors:
        if not X:
            raise ValueError("Initializing with include_static_vectors needs sample Docs (X) to read the vectors' width")
        module.resize_vectors(static_vectors_width(X[0].vocab))
    if module.cluster_embed is not None:
        if not X:
            raise ValueError("Initializing with cluster features needs sample Docs (X) to check the cluster table")
        cluster_table(X[0].vocab)
    if model.has_ref("tok2vec"):
        module.resize_upstream(_init_tok2vec(model.get_ref("tok2vec"), X))
    for submodule in module.modules():
        if submodule is not module and hasattr(submodule, "reset_parameters"):
            submodule.reset_parameters()
    model.get_ref("torch").set_dim("nO", sum(sizes.values()), force=True)  # (a new initialize may resize a head)


def _init_tok2vec(tok2vec: Model, X: Optional[List[Doc]]) -> int:
    """Initialize the upstream model; return the width of its output."""
    tok2vec.initialize(X=X)
    if tok2vec.has_dim("nO") and tok2vec.get_dim("nO"):
        return tok2vec.get_dim("nO")
    if not X:
        raise ValueError("Initializing with a tok2vec of unknown width needs sample Docs (X)")
    sample = [doc for doc in X if len(doc)][:1]
    outputs = tok2vec.predict(sample) if sample else []
    if not outputs or outputs[0].ndim != 2:
        raise ValueError("Could not infer the width of the tok2vec's output from the sample Docs")
    return outputs[0].shape[1]


def convert_inputs(
    model: Model, docs: Sequence[Doc], is_train: bool, *, features: FeatureConfig
) -> Tuple[ArgsKwargs, Callable[[Any], List]]:
    """Docs (or Docs and their upstream features) -> tensors on the shim's
    device. Ids get no gradient; upstream features do, when training."""
    docs, tokvecs = docs if isinstance(docs, tuple) else (docs, None)
    device = model.shims[0].device
    f = featurize(docs, **features.__dict__)
    as_tensor = lambda a: None if a is None else torch.from_numpy(a).to(device)  # noqa: E731
    args = (
        as_tensor(f.word_ids),
        as_tensor(f.char_ids),
        torch.from_numpy(f.char_lengths),  # packing wants lengths on the CPU
        as_tensor(f.token_types),
        torch.from_numpy(f.lengths),
        as_tensor(f.vectors),
        as_tensor(f.affix_ids),
        as_tensor(f.clusters),
    )
    if tokvecs is None:
        return ArgsKwargs(args=args, kwargs={}), lambda d_inputs: []
    upstream = as_tensor(pad_into_windows(tokvecs, f.windows, f.token_types.shape[1]))
    upstream.requires_grad_(is_train)
    upstream_index = len(args)

    def backprop(d_inputs: ArgsKwargs) -> List[Floats2d]:
        d_upstream = d_inputs.args[upstream_index]
        if d_upstream is None:
            return [model.ops.alloc2f(*t.shape) for t in tokvecs]
        return unpad_from_windows(d_upstream.detach().cpu().numpy(), f.windows, tokvecs, model.ops)

    return ArgsKwargs(args=(*args, upstream), kwargs={}), backprop


def convert_outputs(
    model: Model, docs_and_scores: Tuple[Sequence[Doc], torch.Tensor], is_train: bool,
    *, features: FeatureConfig,
) -> Tuple[List[Floats2d], Callable[[List[Floats2d]], ArgsKwargs]]:
    """Padded window scores -> one (n_tokens, n_columns) array per Doc.

    Each head is softmax-normalized, except the tag head of a CRF model, which
    stays raw emission scores for the CRF. As in Thinc's ``Softmax`` layer, the
    incoming gradient is taken to be the gradient of the loss w.r.t. the
    unnormalized scores (true for spaCy's cross-entropy loss and for the CRF
    loss), so it is passed straight back to the torch logits.
    """
    docs, logits = docs_and_scores
    docs = docs[0] if isinstance(docs, tuple) else docs  # (docs, upstream features)
    ops = model.ops
    windows = features.windows(docs)
    module = model.shims[0]._model
    sizes = [size for size in module.head_sizes(predicting=not is_train).values() if size]
    n_columns = sum(sizes)
    # the scored rows, in Doc order: each window's kept tokens (windows come in
    # Doc order), so padding and window overlaps are never normalized or copied
    rows = torch.from_numpy(kept_rows(windows, logits.shape[1])).to(logits.device)
    with torch.no_grad():
        kept = logits.detach().reshape(-1, n_columns).index_select(0, rows).float()
        # one softmax per head; CRF emissions (the tag head) stay raw
        heads = torch.split(kept, sizes, dim=-1)
        normalized = [
            head if i == 0 and module.use_crf else torch.softmax(head, dim=-1) for i, head in enumerate(heads)
        ]
        probs = torch2xp(normalized[0] if len(normalized) == 1 else torch.cat(normalized, dim=-1), ops=ops)
    ends = numpy.cumsum([len(doc) for doc in docs])
    # a copy per Doc: a view would keep the whole batch's array alive with it
    outputs = [probs[end - len(doc) : end].copy() for doc, end in zip(docs, ends)]

    def backprop(d_outputs: List[Floats2d]) -> ArgsKwargs:
        d_flat = torch.zeros(logits.shape[0] * logits.shape[1], n_columns, device=logits.device)
        if len(rows):
            d_kept = xp2torch(ops.xp.concatenate([ops.asarray2f(d) for d in d_outputs]), device=logits.device)
            d_flat.index_copy_(0, rows, d_kept.float())
        d_logits = d_flat.view(logits.shape).to(logits.dtype)
        return ArgsKwargs(args=(logits,), kwargs={"grad_tensors": (d_logits,)})

    return outputs, backprop


def kept_rows(windows: Sequence[Window], max_len: int) -> numpy.ndarray:
    """Row indices into the flattened ``(n_windows * max_len)`` window
    positions of each window's kept tokens, in window order: every token of
    every Doc exactly once, in Doc order."""
    if not windows:
        return numpy.zeros((0,), dtype="int64")
    return numpy.concatenate([
        numpy.arange(w * max_len + win.keep_start - win.start, w * max_len + win.keep_end - win.start, dtype="int64")
        for w, win in enumerate(windows)
    ])


# --- What the component needs from the model, without touching torch ---

def crf_decode(model: Model, tag_scores: Sequence[Floats2d]) -> List[numpy.ndarray]:
    """Best tag ids per Doc under the model's CRF (Viterbi)."""
    return crf_ops.viterbi_decode(_crf(model), tag_scores)


def crf_marginals(model: Model, tag_scores: Sequence[Floats2d]) -> List[Floats2d]:
    """P(tag | sentence) per token under the model's CRF (forward-backward)."""
    return crf_ops.crf_marginals(model.ops, _crf(model), tag_scores)


def crf_loss(
    model: Model, tag_scores: Sequence[Floats2d], allowed: Sequence[numpy.ndarray]
) -> Tuple[float, List[Floats2d]]:
    """The CRF's sequence loss and its gradient w.r.t. the tag scores.

    The transitions are weights of the model that only the loss sees: like a
    backprop, this accumulates their gradients, which the next
    ``finish_update`` applies with the other weights."""
    return crf_ops.crf_loss(model.ops, _crf(model), tag_scores, allowed)


def _crf(model: Model):
    crf = get_torch_module(model).crf
    if crf is None:
        raise ValueError("This lstm_tagger model has no CRF (crf = false) or no labels yet")
    return crf


def record_labels_with_weights(model: Model, labels_by_head: Dict[str, Optional[Sequence[str]]]) -> None:
    """Have the next save store a fingerprint of each head's labels (by
    :data:`HEAD_DIMS` name; ``None`` = head off) and the model's switches with
    the weights (of every member, for an ensemble)."""
    for tagger in tagger_models(model):
        weights.describe_weights(get_torch_module(tagger), labels_by_head, tagger.attrs)


def built_attrs(model: Model) -> List[Dict[str, Any]]:
    """The attrs of each of :func:`tagger_models` as the config built them,
    taken before loading, for :func:`check_loaded_weights`."""
    return [dict(tagger.attrs) for tagger in tagger_models(model)]


def check_loaded_weights(
    model: Model, labels_by_head: Dict[str, Optional[Sequence[str]]], built: List[Dict[str, Any]]
) -> None:
    """After loading: the component's labels and the model file's attrs must
    agree with the weights of each of :func:`tagger_models` (``built``: the
    attrs before loading, from :func:`built_attrs`). See
    :func:`weights.check_loaded_weights`."""
    for tagger, attrs in zip(tagger_models(model), built):
        weights.check_loaded_weights(
            get_torch_module(tagger), labels_by_head, built_attrs=attrs, loaded_attrs=tagger.attrs
        )


THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
"""Environment variables that set torch's intra-op thread count (torch reads both)."""

_THREADS_AT_IMPORT = torch.get_num_threads()
"""torch's intra-op thread count when this module was imported: a different
count later, not set by :func:`apply_threads`, was set by the user."""
_threads_applied: Optional[int] = None


@dataclass(frozen=True)
class ThreadChoice:
    """The intra-op thread count a process runs with, and why."""

    n_threads: int
    reason: str
    set_here: bool


def choose_threads(threads: Optional[int], *, new_process: bool = False,
                   inherited: Optional[int] = None) -> ThreadChoice:
    """Decide torch's intra-op thread count for this process.

    A small LSTM gains nothing from intra-op threads and loses a lot when the
    cores are busy (benchmarks/results/threads.json), so the default is one
    thread per process. ``threads`` N > 0: N threads; 0: torch is left alone;
    ``None`` (default): 1, unless the user chose a count: ``OMP_NUM_THREADS``
    or ``MKL_NUM_THREADS`` in the environment, or ``torch.set_num_threads``
    called after this module was imported (torch's count then differs from
    its count at import). A call made before the import, or one that sets
    torch's own default count, cannot be told apart from the default: use
    ``threads`` then.

    In a worker process (``new_process``: ``nlp.pipe(n_process=N)``, ``tag
    -n N``) the environment is the parent's, so only a count the worker's
    creator set differently from the parent's (``inherited``) counts as
    chosen (``tag --threads``), and not torch's default count (a spawned
    worker starts with it); otherwise 1, so N workers use N cores.
    """
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 0):
        raise ValueError(f"threads must be null (1 unless you set OMP_NUM_THREADS or torch.set_num_threads), "
                         f"0 (leave torch alone) or a positive number of threads, got {threads!r}")
    current = torch.get_num_threads()
    if threads:
        return ThreadChoice(threads, f"threads = {threads}", set_here=True)
    if threads == 0:
        return ThreadChoice(current, "threads = 0: left to torch", set_here=False)
    if new_process:
        # fork copies the parent's count, spawn starts from torch's default
        if inherited is not None and current != inherited and current != _THREADS_AT_IMPORT:
            return ThreadChoice(current, "set by the worker's parent", set_here=False)
        return ThreadChoice(1, "one per worker process", set_here=True)
    for var in THREAD_ENV_VARS:
        if var in os.environ:
            return ThreadChoice(current, f"{var}={os.environ[var]}", set_here=False)
    if current != _THREADS_AT_IMPORT and current != _threads_applied:
        return ThreadChoice(current, "torch.set_num_threads", set_here=False)
    return ThreadChoice(1, "default", set_here=True)


def current_threads() -> int:
    """torch's intra-op thread count in this process."""
    return torch.get_num_threads()


def apply_threads(threads: Optional[int], *, new_process: bool = False,
                  inherited: Optional[int] = None) -> ThreadChoice:
    """:func:`choose_threads`, and set torch to it. In a new process the
    count is set even when unchanged, so torch builds a fresh thread pool
    instead of using one inherited through fork."""
    global _threads_applied
    choice = choose_threads(threads, new_process=new_process, inherited=inherited)
    if choice.set_here or new_process:
        if new_process or torch.get_num_threads() != choice.n_threads:
            torch.set_num_threads(choice.n_threads)
        if choice.set_here:
            _threads_applied = choice.n_threads
    return choice


@contextlib.contextmanager
def dropout_override(model: Model, rate: Optional[float]) -> Iterator[None]:
    """Within the block, the torch modules of ``model`` (each member of an
    ensemble) use dropout ``rate`` instead of their ``dropout`` setting
    (``word_dropout`` is kept); ``None``: no change."""
    modules = [get_torch_module(tagger) for tagger in tagger_models(model)] if rate is not None else []
    for module in modules:
        module.set_dropout(rate)
    try:
        yield
    finally:
        for module in modules:
            module.set_dropout(None)


def configured_dropout(model: Model) -> Tuple[float, float]:
    """The ``dropout`` and ``word_dropout`` settings of the model (its first member's)."""
    module = get_torch_module(tagger_models(model)[0])
    return module.dropout, module.word_dropout
