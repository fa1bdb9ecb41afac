"""The spaCy pipeline components ``lstm_tagger`` and ``lstm_joint_tagger``.

Both are spaCy's own :class:`spacy.pipeline.Tagger` with a different default
model, so labels, ``spacy init labels``, ``overwrite``, ``neg_prefix``,
``label_smoothing``, the loss (missing tags ignored), scoring and
serialization behave exactly as users know them. What they add: empty tags
read as missing, one torch thread per process by default (``threads``),
``[training] dropout`` read without discarding the model's own, clear errors for unknown
labels and bad saved weights, auxiliary UPOS / FEATS heads (model settings
``joint_pos``, ``joint_morph``; ``"auto"`` by default: trained on the gold
UPOS and FEATS wherever the training data has them, skipped at inference),
and opt-in features: tag probabilities (``store_probabilities``) and CRF
decoding (``crf``). ``lstm_joint_tagger`` is the same component that also
writes what its joint heads predict, declared as assigning ``token.pos`` and
``token.morph`` too (what ``nlp.analyze_pipes`` reads).

The component only sees a Thinc ``Model``; everything torch is behind the
small API of :mod:`spacy_lstm_tagger.model`.
"""
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy
from spacy.attrs import POS, TAG
from spacy.errors import Errors
from spacy.language import DEFAULT_CONFIG, Language
from spacy.parts_of_speech import IDS as UPOS_IDS
from spacy.pipeline import Tagger
from spacy.scorer import Scorer
from spacy.tokens import Doc, Token
from spacy.training import Example, validate_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer, SequenceCategoricalCrossentropy
from thinc.types import Floats2d
from wasabi import Printer

from .distill import Teacher, distill_update
from .model import (
    HEAD_DIMS, ThreadChoice, apply_threads, built_attrs, check_loaded_weights, choose_threads, configured_dropout,
    crf_decode, crf_loss, crf_marginals, current_threads, dropout_override, join_heads, record_labels_with_weights,
    set_predicted_heads, split_heads,
)

# v2's defaults, with the auxiliary UPOS and FEATS heads wherever the training
# data has that annotation (docs/treebanks.md: they help most on small
# corpora, and cost nothing at inference), inference in bfloat16 where the
# hardware runs it natively (float32 elsewhere), as the shipped configs.
DEFAULT_MODEL_CONFIG = """
[model]
@architectures = "spacy_lstm_tagger.WordCharBiLSTM.v2"
joint_pos = "auto"
joint_morph = "auto"
bfloat16 = "auto"
"""
DEFAULT_MODEL = Config().from_str(DEFAULT_MODEL_CONFIG)["model"]
# v2's defaults with the UPOS and FEATS heads and bfloat16 inference as
# above, but word dropout 0.25 and no projection ahead of the sentence
# BiLSTM (as configs/lstm_tagger_joint.cfg): the settings the joint model's
# benchmark rows were measured with (docs/treebanks.md).
DEFAULT_JOINT_MODEL_CONFIG = """
[model]
@architectures = "spacy_lstm_tagger.WordCharBiLSTM.v2"
lstm_input_size = 0
word_dropout = 0.25
joint_pos = true
joint_morph = true
bfloat16 = "auto"
"""
DEFAULT_JOINT_MODEL = Config().from_str(DEFAULT_JOINT_MODEL_CONFIG)["model"]

# Default names of the extensions written with store_probabilities = true
# (each component registers its own names, see ``prob_attr``).
DEFAULT_PROB_ATTR = "tag_prob"
DEFAULT_ALTERNATIVES_ATTR = "tag_alternatives"


def _register_token_extension(name: str, setting: str) -> None:
    """``Token.set_extension(name, default=None)`` unless already there."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"{setting} must be a Python identifier (a Token._ attribute name), got {name!r}")
    if not Token.has_extension(name):
        Token.set_extension(name, default=None)


for _name in (DEFAULT_PROB_ATTR, DEFAULT_ALTERNATIVES_ATTR):
    _register_token_extension(_name, "extension name")


def _say(text: str) -> None:
    """An info line on stderr, where spaCy's logger writes: a user's own stdout stays theirs."""
    print(Printer(no_print=True).info(text), file=sys.stderr)


@dataclass
class TagPredictions:
    """What ``predict`` returns when probabilities are stored or a joint head
    or the CRF is on: the tag ids (what spaCy's Tagger returns), plus the tag
    probabilities and the POS / FEATS ids of the joint heads."""

    guesses: List[numpy.ndarray]
    probabilities: Optional[List[Floats2d]] = None
    pos_guesses: Optional[List[numpy.ndarray]] = None
    morph_guesses: Optional[List[numpy.ndarray]] = None


COMPONENT_SETTINGS = {
    "overwrite": False,
    "scorer": {"@scorers": "spacy.tagger_scorer.v1"},
    "neg_prefix": "!",
    "label_smoothing": 0.0,
    "store_probabilities": False,
    "n_alternatives": 3,
    "prob_attr": DEFAULT_PROB_ATTR,
    "alternatives_attr": DEFAULT_ALTERNATIVES_ATTR,
    "threads": None,
    "learn_rate_scale": 1.0,
}

STANDARD_TRAINING_DROPOUT = float(DEFAULT_CONFIG["training"]["dropout"])
"""spaCy's default ``[training] dropout`` (0.1), in every config ``spacy init
config`` writes: read as "the model's own dropout", like 0."""


def training_dropout_override(drop: float) -> Optional[float]:
    """The dropout rate an update's ``drop`` asks the torch model for, or
    ``None`` for the model's own ``dropout`` / ``word_dropout``: 0 and
    spaCy's default :data:`STANDARD_TRAINING_DROPOUT` are what every config
    has unless its author chose, so they keep the recipe's regularization."""
    if not drop or drop == STANDARD_TRAINING_DROPOUT:
        return None
    if not 0.0 < drop < 1.0:
        raise ValueError(f"dropout ([training] dropout, nlp.update(drop=...)) must be in [0, 1), got {drop}")
    return drop


@Language.factory(
    "lstm_tagger",
    assigns=["token.tag"],
    default_config={"model": DEFAULT_MODEL, **COMPONENT_SETTINGS},
    default_score_weights={"tag_acc": 1.0},
)
def make_lstm_tagger(
    nlp: Language,
    name: str,
    model: Model,
    overwrite: bool,
    scorer: Optional[Callable],
    neg_prefix: str,
    label_smoothing: float,
    store_probabilities: bool,
    n_alternatives: int,
    prob_attr: str = DEFAULT_PROB_ATTR,
    alternatives_attr: str = DEFAULT_ALTERNATIVES_ATTR,
    threads: Optional[int] = None,
    learn_rate_scale: float = 1.0,
) -> "LSTMTagger":
    """Create an ``lstm_tagger``: a part-of-speech tagger powered by a word +
    character BiLSTM written in PyTorch. Predicted tags go to ``Token.tag_``.

    Auxiliary heads: with the model's ``joint_pos`` / ``joint_morph`` on
    (``"auto"``, the default: on when the training data has UPOS / FEATS),
    the model also learns to predict the gold UPOS and FEATS during training,
    which improves the tags on small corpora; at inference those heads are
    not run and nothing but ``Token.tag_`` is written (``lstm_joint_tagger``
    writes them). What ``initialize`` decided is printed there.

    Dropout: the model's ``dropout`` (sentence BiLSTM input, between layers,
    output) and ``word_dropout`` settings are the recipe's regularization.
    ``[training] dropout`` (``nlp.update(drop=...)``) of 0 or spaCy's default
    0.1 (what ``spacy init config`` writes) keeps them; any other value is
    taken as asked for and replaces the model's ``dropout`` for training
    (``word_dropout`` stays), said once when training starts.

    store_probabilities: also write ``token._.tag_prob`` (probability of the
        token's tag) and ``token._.tag_alternatives`` (the ``n_alternatives``
        most probable ``(tag, probability)`` pairs, a tuple of tuples). Off by
        default: costs nothing then.
    prob_attr, alternatives_attr: the names of those two ``Token._``
        extensions, so two lstm_tagger components in one pipeline can each
        keep their own (registered here, when the component is created).
    threads: torch's intra-op threads in the process, set the first time the
        component trains or predicts there (and printed at ``initialize``).
        ``null`` (default): 1, a small LSTM's best on a busy machine and no
        slower on a free one (benchmarks/results/threads.json), unless you
        set ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` or called
        ``torch.set_num_threads`` after importing spacy_lstm_tagger; N: N
        threads; 0: leave torch alone. Worker processes (``nlp.pipe(n_process=N)``,
        ``tag -n N``) get 1 each unless their creator set a count
        (``model.choose_threads``).
    learn_rate_scale: this component's weights update at this multiple of
        ``[training.optimizer] learn_rate``. 1 (default) for a pipeline of
        its own; a fine-tuned transformer upstream wants a rate ~20x smaller
        than a BiLSTM trained from scratch, and spaCy has one optimizer for
        all components: give the optimizer the transformer's rate and this
        component e.g. 20 (configs/lstm_tagger_finetuned.cfg).
    """
    return _make_pipe(
        nlp, name, model, overwrite=overwrite, scorer=scorer, neg_prefix=neg_prefix,
        label_smoothing=label_smoothing, store_probabilities=store_probabilities, n_alternatives=n_alternatives,
        prob_attr=prob_attr, alternatives_attr=alternatives_attr, threads=threads,
        learn_rate_scale=learn_rate_scale, write_joint_heads=False,
    )


def _make_pipe(nlp: Language, name: str, model: Model, *, store_probabilities: bool, prob_attr: str,
               alternatives_attr: str, **settings) -> "LSTMTagger":
    """Both factories: the component, once ``name``'s extensions are its own."""
    for other in nlp.components:
        pipe = other[1]
        if isinstance(pipe, LSTMTagger) and (store_probabilities or pipe.store_probabilities):
            shared = {prob_attr, alternatives_attr} & {pipe.prob_attr, pipe.alternatives_attr}
            if shared:
                raise ValueError(
                    f"[{name}] The component '{other[0]}' already writes token._.{sorted(shared)[0]}: "
                    f"give '{name}' its own prob_attr / alternatives_attr, or the two would overwrite "
                    "each other's probabilities."
                )
    return LSTMTagger(
        nlp.vocab, model, name, store_probabilities=store_probabilities, prob_attr=prob_attr,
        alternatives_attr=alternatives_attr, **settings,
    )


@Language.factory(
    "lstm_joint_tagger",
    assigns=["token.tag", "token.pos", "token.morph"],
    default_config={"model": DEFAULT_JOINT_MODEL, **COMPONENT_SETTINGS},
    default_score_weights={"tag_acc": 0.5, "pos_acc": 0.25, "morph_acc": 0.25},
)
def make_lstm_joint_tagger(
    nlp: Language,
    name: str,
    model: Model,
    overwrite: bool,
    scorer: Optional[Callable],
    neg_prefix: str,
    label_smoothing: float,
    store_probabilities: bool,
    n_alternatives: int,
    prob_attr: str = DEFAULT_PROB_ATTR,
    alternatives_attr: str = DEFAULT_ALTERNATIVES_ATTR,
    threads: Optional[int] = None,
    learn_rate_scale: float = 1.0,
) -> "LSTMTagger":
    """Create an ``lstm_joint_tagger``: the ``lstm_tagger`` with its joint
    heads on, writing ``Token.tag_``, ``Token.pos_`` and ``Token.morph`` from
    one model (what spaCy needs a tagger and a morphologizer for). Dropout,
    ``threads`` and ``learn_rate_scale``: as ``lstm_tagger``."""
    return _make_pipe(
        nlp, name, model, overwrite=overwrite, scorer=scorer, neg_prefix=neg_prefix,
        label_smoothing=label_smoothing, store_probabilities=store_probabilities, n_alternatives=n_alternatives,
        prob_attr=prob_attr, alternatives_attr=alternatives_attr, threads=threads,
        learn_rate_scale=learn_rate_scale, write_joint_heads=True,
    )


class LSTMTagger(Tagger):
    """spaCy's Tagger, driven by a PyTorch word + char BiLSTM."""

    def __init__(
        self,
        vocab: Vocab,
        model: Model,
        name: str = "lstm_tagger",
        *,
        store_probabilities: bool = False,
        n_alternatives: int = 3,
        prob_attr: str = DEFAULT_PROB_ATTR,
        alternatives_attr: str = DEFAULT_ALTERNATIVES_ATTR,
        threads: Optional[int] = None,
        learn_rate_scale: float = 1.0,
        write_joint_heads: bool = True,
        **kwargs,
    ) -> None:
        """write_joint_heads: write what the joint UPOS / FEATS heads predict
        (``lstm_joint_tagger``); false: they are auxiliary, trained but not run
        at inference (``lstm_tagger``)."""
        super().__init__(vocab, model, name, **kwargs)
        if n_alternatives < 1:
            raise ValueError(f"n_alternatives must be at least 1, got {n_alternatives}")
        if self.use_crf and self.cfg["label_smoothing"]:
            raise ValueError(f"[{name}] label_smoothing is not supported with crf = true: set it to 0")
        if prob_attr == alternatives_attr:
            raise ValueError(f"[{name}] prob_attr and alternatives_attr must differ, both are {prob_attr!r}")
        _register_token_extension(prob_attr, "prob_attr")
        _register_token_extension(alternatives_attr, "alternatives_attr")
        self.store_probabilities = store_probabilities
        self.n_alternatives = n_alternatives
        self.prob_attr = prob_attr
        self.alternatives_attr = alternatives_attr
        if not learn_rate_scale > 0:
            raise ValueError(f"[{name}] learn_rate_scale must be > 0, got {learn_rate_scale}")
        self.learn_rate_scale = learn_rate_scale
        self.write_joint_heads = write_joint_heads
        set_predicted_heads(model, tuple(HEAD_DIMS) if write_joint_heads else ("tag",))
        choose_threads(threads)  # a bad value fails here, not at first use
        self.threads = threads
        # the process the component was made in, the one whose torch threads
        # it last set (None: not yet) and torch's count there then
        self._pid = os.getpid()
        self._threads_pid: Optional[int] = None
        self._threads_seen = current_threads()
        self._threads_choice: Optional[ThreadChoice] = None
        self._said_dropout = False
        # set by distill.attach for distillation training; never saved
        self.teacher: Optional[Teacher] = None

    @property
    def joint_pos(self) -> bool:
        """Whether the model has the UPOS head (``"auto"``: not decided until
        ``initialize``, false before)."""
        return self.model.attrs.get("joint_pos", False) is True

    @property
    def joint_morph(self) -> bool:
        """Whether the model has the FEATS head (as :attr:`joint_pos`)."""
        return self.model.attrs.get("joint_morph", False) is True

    @property
    def writes_pos(self) -> bool:
        """Whether predictions write ``Token.pos_`` (the UPOS head, on ``lstm_joint_tagger``)."""
        return self.joint_pos and self.write_joint_heads

    @property
    def writes_morph(self) -> bool:
        """Whether predictions write ``Token.morph`` (the FEATS head, on ``lstm_joint_tagger``)."""
        return self.joint_morph and self.write_joint_heads

    @property
    def use_crf(self) -> bool:
        """Whether tags are decoded by the model's linear-chain CRF (Viterbi)."""
        return bool(self.model.attrs.get("crf", False))

    @property
    def pos_labels(self) -> Tuple[str, ...]:
        return tuple(self.cfg.get("pos_labels", ()))

    @property
    def morph_labels(self) -> Tuple[str, ...]:
        """The FEATS head's classes: UD FEATS strings, ``"_"`` for no features."""
        return tuple(self.cfg.get("morph_labels", ()))

    def initialize(self, get_examples: Callable[[], Iterable[Example]], *, nlp: Optional[Language] = None,
                   labels: Optional[Sequence[str]] = None, pos_labels: Optional[Sequence[str]] = None,
                   morph_labels: Optional[Sequence[str]] = None) -> None:
        """spaCy's Tagger initialize; the joint heads' labels are read from the
        data's ``Token.pos_`` / ``Token.morph`` (or given as ``pos_labels`` /
        ``morph_labels``). A head set to ``"auto"`` is on when there are any."""
        attrs = self.model.attrs
        auto = set(attrs.get("auto_heads") or ())
        if attrs.get("joint_pos") is True or "joint_pos" in auto:
            if pos_labels is None:
                pos_labels = sorted({t.pos_ for eg in get_examples() for t in eg.reference if t.pos_})
            self._set_head("joint_pos", "nP", "pos_labels", pos_labels, "POS annotation (Token.pos_)", auto)
        if attrs.get("joint_morph") is True or "joint_morph" in auto:
            if morph_labels is None:
                # "_" = annotated with no features; "" = no annotation
                morph_labels = sorted({m for eg in get_examples() for m in eg.get_aligned("MORPH", as_string=True) if m})
            self._set_head("joint_morph", "nM", "morph_labels", morph_labels,
                           "morphological annotation (Token.morph)", auto)
        super().initialize(get_examples, nlp=nlp, labels=labels)
        self._threads_pid = None
        choice = self._ensure_threads()
        _say(f"[{self.name}] torch intra-op threads: {choice.n_threads} "
             f"({choice.reason}; set threads = N or OMP_NUM_THREADS to change)")
        heads = self._describe_heads(auto)
        if heads:
            _say(f"[{self.name}] {heads}")
        record_labels_with_weights(self.model, self._labels_by_head())

    def _labels_by_head(self) -> Dict[str, Optional[Sequence[str]]]:
        """The label list of each head (``None``: head off), saved as a
        fingerprint with the weights and checked against them at load."""
        return {
            "tag": self.cfg.get("labels"),
            "pos": self.cfg.get("pos_labels") if self.joint_pos else None,
            "morph": self.cfg.get("morph_labels") if self.joint_morph else None,
        }

    def _set_head(self, setting: str, dim: str, cfg_key: str, labels: Sequence[str], what: str,
                  auto: set) -> None:
        """Turn the joint head ``setting`` on for ``labels``; with none, a
        head set to ``"auto"`` goes off and one set to true is an error. The
        decision is the model's attr from then on (saved with the weights)."""
        if not labels and setting in auto:
            self.cfg.pop(cfg_key, None)
            self.model.set_dim(dim, 0, force=True)
            self.model.attrs[setting] = False
            return
        if not labels:
            raise ValueError(
                f"[{self.name}] {setting} is on but the training data has no {what}: "
                f"add it or set {setting} = false (or \"auto\": on only where the data has it)."
            )
        self.cfg[cfg_key] = list(labels)
        self.model.set_dim(dim, len(labels), force=True)
        self.model.attrs[setting] = True

    def _describe_heads(self, auto: set) -> str:
        """What ``initialize`` printed about the joint heads ("" without any)."""
        on, off = [], []
        heads = (("joint_pos", self.pos_labels, "UPOS"), ("joint_morph", self.morph_labels, "FEATS"))
        for setting, labels, what in heads:
            if self.model.attrs.get(setting) is True:
                on.append(f"{what} ({len(labels)} labels)")
            elif setting in auto:
                off.append(what)
        said = []
        if on:
            role = ("written to Token.pos_ / Token.morph" if self.write_joint_heads
                    else "auxiliary: trained on the gold annotation, not run at inference")
            said.append(f"joint heads {', '.join(on)}, {role}")
        if off:
            said.append(f"no {' / '.join(off)} head: the training data has no {' / '.join(off)} annotation")
        return "; ".join(said)

    def predict(self, docs: Iterable[Doc]):
        self._ensure_threads()
        docs = list(docs)
        if not self.store_probabilities and not self.writes_pos and not self.writes_morph and not self.use_crf:
            return super().predict(docs)  # the model scores only the tags then
        heads = split_heads(self.model, self.model.predict(docs), predicting=True)
        tag_scores = heads["tag"]
        if self.use_crf:
            guesses = crf_decode(self.model, tag_scores)
            probabilities = crf_marginals(self.model, tag_scores) if self.store_probabilities else None
        else:
            guesses = self._scores2guesses(tag_scores)
            probabilities = tag_scores if self.store_probabilities else None
        return TagPredictions(
            guesses=guesses,
            probabilities=probabilities,
            pos_guesses=self._scores2guesses(heads["pos"]) if "pos" in heads else None,
            morph_guesses=self._scores2guesses(heads["morph"]) if "morph" in heads else None,
        )

    def set_annotations(self, docs: Sequence[Doc], predictions) -> None:
        if isinstance(docs, Doc):
            docs = [docs]
        if not isinstance(predictions, TagPredictions):
            return self._set_tags(docs, predictions)
        self._set_tags(docs, predictions.guesses)
        if predictions.pos_guesses is not None:
            self._set_pos(docs, predictions.pos_guesses)
        if predictions.morph_guesses is not None:
            self._set_morph(docs, predictions.morph_guesses)
        if predictions.probabilities is not None:
            self._set_probabilities(docs, predictions.probabilities)

    def _set_tags(self, docs: Sequence[Doc], tag_guesses: Sequence) -> None:
        """What spaCy's ``Tagger.set_annotations`` writes (``overwrite``
        honoured), one array per Doc: spaCy's per-token loop hashes the
        label's string for every token (6 ms against 2.3 ms for the EWT dev
        set). Labels that are spaCy symbols keep their
        symbol ids, as in spaCy's loop."""
        keys = [self.vocab.strings.add(label) for label in self.labels]
        self._write_guesses(docs, tag_guesses, TAG, keys)

    def _set_pos(self, docs: Sequence[Doc], pos_guesses: List[numpy.ndarray]) -> None:
        """``Token.pos_`` from the UPOS head, as :meth:`_set_tags` writes tags
        (the same error as ``Token.pos_`` for a label that is not UPOS)."""
        for label in self.pos_labels:
            if label not in UPOS_IDS:
                raise ValueError(Errors.E1021.format(pp=label))
        self._write_guesses(docs, pos_guesses, POS, [UPOS_IDS[label] for label in self.pos_labels])

    def _write_guesses(self, docs: Sequence[Doc], guesses_per_doc: Sequence, attr: int, keys: Sequence[int]) -> None:
        """Write ``keys[guess]`` as ``attr`` of each token with one
        ``Doc.from_array`` per Doc; without ``overwrite`` only where the
        token has no value yet."""
        overwrite = self.cfg["overwrite"]
        keys = numpy.asarray(keys, dtype="uint64")
        for doc, guesses in zip(docs, guesses_per_doc):
            if not len(doc):
                continue
            values = keys[self.model.ops.to_numpy(guesses)]
            if not overwrite:
                present = doc.to_array(attr)
                values = numpy.where(present == 0, values, present)
            doc.from_array([attr], values)

    def _set_morph(self, docs: Sequence[Doc], morph_guesses: List[numpy.ndarray]) -> None:
        overwrite = self.cfg["overwrite"]
        morph_labels = self.morph_labels
        for doc, guesses in zip(docs, morph_guesses):
            for token, i in zip(doc, guesses):
                if overwrite or not token.morph.key:
                    token.set_morph(morph_labels[i])

    def tag_probabilities(self, docs: Iterable[Doc]) -> List[numpy.ndarray]:
        """The full tag distribution of every token: one ``(len(doc),
        len(self.labels))`` array per Doc, columns in ``self.labels`` order
        (softmax probabilities; the CRF's marginals with ``crf = true``).
        Nothing is written to the Docs."""
        store = self.store_probabilities
        self.store_probabilities = True
        try:
            predictions = self.predict(docs)
        finally:
            self.store_probabilities = store
        return [self.model.ops.to_numpy(p) for p in predictions.probabilities]

    def _set_probabilities(self, docs: Sequence[Doc], probabilities: List[Floats2d]) -> None:
        """Alternatives as a tuple of ``(tag, probability)`` tuples: what
        ``DocBin`` gives back (it reads user data with ``use_list=False``), so
        the values are equal before and after a round trip."""
        labels = self.labels
        prob_attr, alternatives_attr = self.prob_attr, self.alternatives_attr
        label_index = {label: i for i, label in enumerate(labels)}
        k = min(self.n_alternatives, len(labels))
        for doc, probs in zip(docs, probabilities):
            probs = self.model.ops.to_numpy(probs)
            if not len(probs):
                continue
            top = numpy.argsort(-probs, axis=1, kind="stable")[:, :k]
            for token, row, best in zip(doc, probs, top):
                i = label_index.get(token.tag_)
                token._.set(prob_attr, None if i is None else float(row[i]))
                token._.set(alternatives_attr, tuple((labels[j], float(row[j])) for j in best))

    def _ensure_threads(self) -> ThreadChoice:
        """Set torch's intra-op threads (``threads``, model.choose_threads)
        once per process: in the main process at first use, and again in each
        worker process (forked or spawned by ``nlp.pipe(n_process=N)``, or
        ``tag -n N``), so N workers don't oversubscribe the cores (or deadlock
        on a thread pool inherited through fork)."""
        pid = os.getpid()
        if pid == self._threads_pid:
            return self._threads_choice
        new_process = pid != self._pid or self._threads_pid is not None
        choice = apply_threads(self.threads, new_process=new_process, inherited=self._threads_seen)
        self._threads_pid, self._threads_seen, self._threads_choice = pid, choice.n_threads, choice
        return choice

    def update(self, examples: Iterable[Example], *, drop: float = 0.0, sgd=None,
               losses: Optional[Dict[str, float]] = None) -> Dict[str, float]:
        """spaCy's Tagger update, with ``drop`` read as the factory docstring
        says: 0 and spaCy's default 0.1 keep the model's own dropout, another
        rate replaces its ``dropout`` for this update."""
        self._ensure_threads()
        rate = training_dropout_override(drop)
        if rate is not None and not self._said_dropout:
            self._said_dropout = True
            own, word = configured_dropout(self.model)
            _say(f"[{self.name}] dropout {rate} ([training] dropout) replaces the model's dropout {own} "
                 f"for training (word_dropout {word} kept)")
        with dropout_override(self.model, rate):
            if self.teacher is not None:
                return distill_update(self, examples, drop=drop, sgd=sgd, losses=losses)
            return super().update(examples, drop=drop, sgd=sgd, losses=losses)

    def finish_update(self, sgd: Optimizer) -> None:
        """Apply the gradients, at ``learn_rate_scale`` x the optimizer's rate."""
        if self.learn_rate_scale == 1.0:
            self.model.finish_update(sgd)
        else:
            self.model.finish_update(_ScaledOptimizer(sgd, self.learn_rate_scale))

    def get_loss(self, examples: Iterable[Example], scores) -> Tuple[float, List[Floats2d]]:
        """spaCy's tagger loss (or the CRF's), plus the joint heads' losses,
        after checking that every gold label is known (spaCy would fail with a
        bare ``KeyError``). Empty tags are missing values."""
        examples = list(examples)
        validate_examples(examples, "LSTMTagger.get_loss")
        heads = split_heads(self.model, scores)
        neg_prefix = self.cfg["neg_prefix"]
        truths = self._gold(examples, "TAG", self.labels, "tag", neg_prefix)
        if self.use_crf:
            loss, d_tags = self._crf_loss(truths, heads["tag"])
        else:
            loss, d_tags = self._categorical_loss(heads["tag"], truths, self.labels, neg_prefix)
        gradients = {"tag": d_tags}
        for head, attr, labels, what in (("pos", "POS", self.pos_labels, "POS"), ("morph", "MORPH", self.morph_labels, "FEATS")):
            if head in heads:
                truths = self._gold(examples, attr, labels, what)
                head_loss, gradients[head] = self._categorical_loss(heads[head], truths, labels)
                loss += head_loss
        return loss, join_heads(self.model, gradients)

    def _gold(self, examples: List[Example], attr: str, labels: Sequence[str], what: str,
              neg_prefix: Optional[str] = None) -> List[List[Optional[str]]]:
        """Each example's aligned gold ``attr`` (``None`` = missing: unaligned or
        empty), after checking that every label is one the component knows."""
        known = set(labels)
        truths = [[value or None for value in eg.get_aligned(attr, as_string=True)] for eg in examples]
        for row in truths:
            for label in row:
                if label is not None and label not in known and not (neg_prefix and label.startswith(neg_prefix)):
                    raise ValueError(
                        f"[{self.name}] The training data has the {what} {label!r}, which is not "
                        f"among the component's {len(known)} {what} labels. Initialize the pipeline "
                        "on data that contains every label (or pass the full label set, e.g. "
                        "from `spacy init labels`)."
                    )
        return truths

    def _categorical_loss(
        self, scores: List[Floats2d], truths: List[List[Optional[str]]], labels: Sequence[str],
        neg_prefix: Optional[str] = None,
    ) -> Tuple[float, List[Floats2d]]:
        """Thinc's sequence cross-entropy, as spaCy's tagger uses it (``None``
        = missing, ``neg_prefix + label`` = not that label).

        Thinc reads every truth that starts with ``neg_prefix`` as a negative,
        so a real tag such as ``"!"`` (Irish IDT's XPOS for "!") would crash
        its loss with ``KeyError: ''`` (spaCy's tagger does). The loss gets
        label indices as names instead: a known label is always itself, and
        only an unknown ``neg_prefix + label`` is a negative."""
        index = {label: str(i) for i, label in enumerate(labels)}
        coded = [[None if t is None else self._code_truth(t, index, neg_prefix) for t in row] for row in truths]
        loss_func = SequenceCategoricalCrossentropy(
            names=[str(i) for i in range(len(labels))], normalize=False, neg_prefix="!",
            label_smoothing=self.cfg["label_smoothing"],
        )
        d_scores, loss = loss_func(scores, coded)
        if self.model.ops.xp.isnan(loss):
            raise ValueError(f"[{self.name}] The loss is NaN: training diverged (try a lower learn_rate)")
        return float(loss), d_scores

    @staticmethod
    def _code_truth(truth: str, index: Dict[str, str], neg_prefix: Optional[str]) -> Optional[str]:
        if truth in index:
            return index[truth]
        if neg_prefix and truth.startswith(neg_prefix) and truth[len(neg_prefix):] in index:
            return "!" + index[truth[len(neg_prefix):]]
        return None  # a negative of a label the component doesn't have: nothing to learn

    def _crf_loss(self, truths: List[List[Optional[str]]], tag_scores: List[Floats2d]) -> Tuple[float, List[Floats2d]]:
        """CRF sequence loss. Missing tags allow every tag (marginalized);
        ``neg_prefix`` labels forbid one."""
        index = {label: i for i, label in enumerate(self.labels)}
        neg_prefix = self.cfg["neg_prefix"]
        allowed = []
        for tags in truths:
            mask = numpy.ones((len(tags), len(index)), dtype=bool)
            for k, tag in enumerate(tags):
                if tag is None:
                    continue
                if tag not in index and tag.startswith(neg_prefix):
                    if tag[len(neg_prefix):] in index:
                        mask[k, index[tag[len(neg_prefix):]]] = False
                    continue
                mask[k] = False
                mask[k, index[tag]] = True
            allowed.append(mask)
        loss, d_scores = crf_loss(self.model, tag_scores, allowed)
        if numpy.isnan(loss):
            raise ValueError(f"[{self.name}] The CRF loss is NaN: training diverged (try a lower learn_rate)")
        return loss, d_scores

    def score(self, examples: Iterable[Example], **kwargs) -> Dict:
        """``tag_acc`` as spaCy's tagger scores it, plus ``pos_acc`` and
        ``morph_acc`` / ``morph_per_feat`` where the component writes them
        (:attr:`writes_pos`, :attr:`writes_morph`), as spaCy's morphologizer
        scores them."""
        examples = list(examples)
        scores = super().score(examples, **kwargs)
        if self.writes_pos:
            scores.update(Scorer.score_token_attr(examples, "pos"))
        if self.writes_morph:
            scores.update(Scorer.score_token_attr(examples, "morph", getter=_morph_key))
            scores.update(Scorer.score_token_attr_per_feat(examples, "morph", getter=_morph_key))
        return scores

    def to_bytes(self, *, exclude=tuple()) -> bytes:
        record_labels_with_weights(self.model, self._labels_by_head())
        return super().to_bytes(exclude=exclude)

    def to_disk(self, path: Union[str, Path], *, exclude=tuple()) -> None:
        record_labels_with_weights(self.model, self._labels_by_head())
        super().to_disk(path, exclude=exclude)

    def from_bytes(self, bytes_data: bytes, *, exclude=tuple()) -> "LSTMTagger":
        built = built_attrs(self.model)
        try:
            super().from_bytes(bytes_data, exclude=exclude)
            self._check_loaded_weights(built, exclude)
        except Exception as err:
            raise _load_error(self.name, "bytes", err) from err
        return self

    def from_disk(self, path: Union[str, Path], *, exclude=tuple()) -> "LSTMTagger":
        from .weights import check_model_file  # (bounded memory: checked before spaCy reads it whole)

        built = built_attrs(self.model)
        try:
            if "model" not in exclude and (Path(path) / "model").is_file():
                check_model_file(Path(path) / "model")
            super().from_disk(path, exclude=exclude)
            self._check_loaded_weights(built, exclude)
        except Exception as err:
            raise _load_error(self.name, str(path), err) from err
        return self

    def _check_loaded_weights(self, built: List[Dict], exclude) -> None:
        """The loaded cfg labels and model attrs must be the ones the weights were saved with."""
        if "model" not in exclude:
            check_loaded_weights(self.model, self._labels_by_head(), built)


class _ScaledOptimizer:
    """A view of a Thinc optimizer whose steps are ``scale`` x larger. Its
    moments, averages and schedules stay the optimizer's (keyed per
    parameter, so the view shares them with no one else's weights)."""

    def __init__(self, optimizer: Optimizer, scale: float) -> None:
        self._optimizer = optimizer
        self._scale = scale

    def __call__(self, key, weights, gradient, *, lr_scale: float = 1.0):
        return self._optimizer(key, weights, gradient, lr_scale=lr_scale * self._scale)

    def __getattr__(self, name: str):
        return getattr(self._optimizer, name)


def _load_error(name: str, source: str, err: Exception) -> ValueError:
    return ValueError(
        f"Could not load the '{name}' component (lstm_tagger) from {source}: {err}. "
        "The saved pipeline may be truncated or corrupted, its config.cfg may not "
        "match its weights, or it was saved with an incompatible spacy-lstm-tagger."
    )


def _morph_key(token: Token, attr: str) -> int:
    return token.morph.key
