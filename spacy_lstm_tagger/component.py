"""The spaCy pipeline component ``lstm_tagger``.

It is spaCy's own :class:`spacy.pipeline.Tagger` with a different default
model, so labels, ``spacy init labels``, ``overwrite``, ``neg_prefix``,
``label_smoothing``, the loss (missing tags ignored), scoring and
serialization behave exactly as users know them. What it adds: torch
threads in worker processes, clear errors for unknown labels and bad saved
weights, and three opt-in features: tag probabilities
(``store_probabilities``), CRF decoding and a joint UPOS head (model
settings ``crf`` and ``joint_pos``).
"""
import os
import warnings
import weakref
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy
import torch
from spacy.language import Language
from spacy.pipeline import Tagger
from spacy.scorer import Scorer
from spacy.tokens import Doc, Token
from spacy.training import Example
from spacy.vocab import Vocab
from thinc.api import Config, Model, SequenceCategoricalCrossentropy
from thinc.types import Floats2d

from .crf import crf_loss, crf_marginals, viterbi_decode
from .model import get_torch_module

DEFAULT_MODEL_CONFIG = """
[model]
@architectures = "spacy_lstm_tagger.WordCharBiLSTM.v1"
"""
DEFAULT_MODEL = Config().from_str(DEFAULT_MODEL_CONFIG)["model"]

# Written only when the component runs with store_probabilities = true.
for _name in ("tag_prob", "tag_alternatives"):
    if not Token.has_extension(_name):
        Token.set_extension(_name, default=None)


@dataclass
class TagPredictions:
    """What ``predict`` returns when probabilities are stored or the joint POS
    head is on: the argmax tag ids (what spaCy's Tagger returns), plus the tag
    probabilities and/or the POS ids."""

    guesses: List[numpy.ndarray]
    probabilities: Optional[List[Floats2d]] = None
    pos_guesses: Optional[List[numpy.ndarray]] = None


@Language.factory(
    "lstm_tagger",
    assigns=["token.tag"],
    default_config={
        "model": DEFAULT_MODEL,
        "overwrite": False,
        "scorer": {"@scorers": "spacy.tagger_scorer.v1"},
        "neg_prefix": "!",
        "label_smoothing": 0.0,
        "store_probabilities": False,
        "n_alternatives": 3,
    },
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
) -> "LSTMTagger":
    """Create an ``lstm_tagger``: a part-of-speech tagger powered by a word +
    character BiLSTM written in PyTorch. Predicted tags go to ``Token.tag_``.

    store_probabilities: also write ``token._.tag_prob`` (probability of the
        token's tag) and ``token._.tag_alternatives`` (the ``n_alternatives``
        most probable ``(tag, probability)`` pairs). Off by default: costs nothing then.
    """
    tagger = LSTMTagger(
        nlp.vocab, model, name, overwrite=overwrite, scorer=scorer,
        neg_prefix=neg_prefix, label_smoothing=label_smoothing,
        store_probabilities=store_probabilities, n_alternatives=n_alternatives,
    )
    tagger._nlp_ref = _PipelineRef(nlp)
    return tagger


class _PipelineRef:
    """A weak reference to the pipeline that owns a component; it pickles
    (for ``nlp.pipe(n_process=N)`` with spawn) as a dead reference."""

    def __init__(self, nlp: Optional[Language] = None) -> None:
        self._ref = None if nlp is None else weakref.ref(nlp)

    def __call__(self) -> Optional[Language]:
        return None if self._ref is None else self._ref()

    def __reduce__(self):
        return (_PipelineRef, ())


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
        **kwargs,
    ) -> None:
        super().__init__(vocab, model, name, **kwargs)
        if n_alternatives < 1:
            raise ValueError(f"n_alternatives must be at least 1, got {n_alternatives}")
        if self.use_crf and self.cfg["label_smoothing"]:
            raise ValueError(f"[{name}] label_smoothing is not supported with crf = true: set it to 0")
        self.store_probabilities = store_probabilities
        self.n_alternatives = n_alternatives
        self._pid = os.getpid()
        self._nlp_ref = _PipelineRef()

    @property
    def joint_pos(self) -> bool:
        """Whether the model has the second (UPOS) head writing ``Token.pos_``."""
        return bool(self.model.attrs.get("joint_pos", False))

    @property
    def use_crf(self) -> bool:
        """Whether tags are decoded by the model's linear-chain CRF (Viterbi)."""
        return bool(self.model.attrs.get("crf", False))

    @property
    def pos_labels(self) -> Tuple[str, ...]:
        return tuple(self.cfg.get("pos_labels", ()))

    def initialize(self, get_examples: Callable[[], Iterable[Example]], *, nlp: Optional[Language] = None,
                   labels: Optional[Sequence[str]] = None, pos_labels: Optional[Sequence[str]] = None) -> None:
        """spaCy's Tagger initialize; with ``joint_pos`` the POS labels are
        read from the data's ``Token.pos_`` (or given as ``pos_labels``)."""
        if self.joint_pos:
            if pos_labels is None:
                pos_labels = sorted({t.pos_ for eg in get_examples() for t in eg.reference if t.pos_})
            if not pos_labels:
                raise ValueError(
                    f"[{self.name}] joint_pos is on but the training data has no POS "
                    "annotation (Token.pos_): add it or set joint_pos = false."
                )
            self.cfg["pos_labels"] = list(pos_labels)
            self.model.set_dim("nP", len(pos_labels), force=True)
        super().initialize(get_examples, nlp=nlp, labels=labels)
        self._declare_pos_assignment(nlp)

    def _declare_pos_assignment(self, nlp: Optional[Language] = None) -> None:
        """With ``joint_pos``, record in the pipeline that this component also
        assigns ``token.pos`` (what ``nlp.analyze_pipes`` reads). spaCy keeps
        that meta per factory, so it is replaced for this one component once
        the pipeline is initialized or loaded."""
        if nlp is None:
            nlp = self._nlp_ref()
        pipe_meta = getattr(nlp, "_pipe_meta", None)
        if not self.joint_pos or not isinstance(pipe_meta, dict) or self.name not in pipe_meta:
            return
        meta = pipe_meta[self.name]
        if "token.pos" not in meta.assigns:
            pipe_meta[self.name] = replace(meta, assigns=[*meta.assigns, "token.pos"])

    def predict(self, docs: Iterable[Doc]):
        self._limit_threads_in_worker()
        docs = list(docs)
        if not self.store_probabilities and not self.joint_pos and not self.use_crf:
            return super().predict(docs)
        scores = self.model.predict(docs)
        n_tags = len(self.labels)
        tag_scores = [s[:, :n_tags] for s in scores]
        if self.use_crf:
            crf = get_torch_module(self.model).crf
            guesses = viterbi_decode(crf, tag_scores)
            probabilities = crf_marginals(self.model.ops, crf, tag_scores) if self.store_probabilities else None
        else:
            guesses = self._scores2guesses(tag_scores)
            probabilities = tag_scores if self.store_probabilities else None
        return TagPredictions(
            guesses=guesses,
            probabilities=probabilities,
            pos_guesses=self._scores2guesses([s[:, n_tags:] for s in scores]) if self.joint_pos else None,
        )

    def set_annotations(self, docs: Sequence[Doc], predictions) -> None:
        if isinstance(docs, Doc):
            docs = [docs]
        if not isinstance(predictions, TagPredictions):
            return super().set_annotations(docs, predictions)
        super().set_annotations(docs, predictions.guesses)
        if predictions.pos_guesses is not None:
            self._set_pos(docs, predictions.pos_guesses)
        if predictions.probabilities is not None:
            self._set_probabilities(docs, predictions.probabilities)

    def _set_pos(self, docs: Sequence[Doc], pos_guesses: List[numpy.ndarray]) -> None:
        overwrite = self.cfg["overwrite"]
        pos_labels = self.pos_labels
        for doc, guesses in zip(docs, pos_guesses):
            for token, i in zip(doc, guesses):
                if overwrite or not token.pos:
                    token.pos_ = pos_labels[i]

    def _set_probabilities(self, docs: Sequence[Doc], probabilities: List[Floats2d]) -> None:
        labels = self.labels
        label_index = {label: i for i, label in enumerate(labels)}
        k = min(self.n_alternatives, len(labels))
        for doc, probs in zip(docs, probabilities):
            probs = self.model.ops.to_numpy(probs)
            if not len(probs):
                continue
            top = numpy.argsort(-probs, axis=1, kind="stable")[:, :k]
            for token, row, best in zip(doc, probs, top):
                i = label_index.get(token.tag_)
                token._.tag_prob = None if i is None else float(row[i])
                token._.tag_alternatives = [(labels[j], float(row[j])) for j in best]

    def _limit_threads_in_worker(self) -> None:
        """In a process forked or spawned by ``nlp.pipe(n_process=N)`` use one
        torch thread, so N workers don't oversubscribe the cores (or deadlock
        on a thread pool inherited through fork)."""
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            torch.set_num_threads(1)

    _warned_dropout = False

    def update(self, examples: Iterable[Example], *, drop: float = 0.0, sgd=None,
               losses: Optional[Dict[str, float]] = None) -> Dict[str, float]:
        """spaCy's Tagger update. Thinc's dropout rate (``[training] dropout``,
        ``nlp.update(drop=...)``) does not reach the torch module, so a non-zero
        ``drop`` gets one warning per component. (Not at ``initialize``: every
        pipeline's config has spaCy's default ``[training] dropout = 0.1``, used
        only if ``spacy train`` runs it.)"""
        if drop and not self._warned_dropout:
            self._warned_dropout = True
            warnings.warn(
                f"[{self.name}] dropout {drop} ([training] dropout or nlp.update(drop=...)) does not "
                "reach the torch model and is ignored: lstm_tagger's dropout is its model's `dropout` "
                "and `word_dropout` settings. Set [training] dropout = 0 to silence this.",
                stacklevel=2,
            )
        return super().update(examples, drop=drop, sgd=sgd, losses=losses)

    def get_loss(self, examples: Iterable[Example], scores) -> Tuple[float, List[Floats2d]]:
        """spaCy's tagger loss (plus the POS loss with ``joint_pos``), after
        checking that every gold label is known (spaCy would fail with a bare
        ``KeyError``)."""
        examples = list(examples)
        self._check_gold_labels(examples, "TAG", self.labels, "tag", self.cfg["neg_prefix"])
        n_tags = len(self.labels)
        tag_scores = [s[:, :n_tags] for s in scores] if self.joint_pos else scores
        if self.use_crf:
            tag_loss, d_tags = self._crf_loss(examples, tag_scores)
        else:
            tag_loss, d_tags = super().get_loss(examples, tag_scores)
        if not self.joint_pos:
            return tag_loss, d_tags
        self._check_gold_labels(examples, "POS", self.pos_labels, "POS", None)
        pos_loss_func = SequenceCategoricalCrossentropy(
            names=self.pos_labels, normalize=False, label_smoothing=self.cfg["label_smoothing"]
        )
        truths = [[pos or None for pos in eg.get_aligned("POS", as_string=True)] for eg in examples]
        d_pos, pos_loss = pos_loss_func([s[:, n_tags:] for s in scores], truths)
        xp = self.model.ops.xp
        return tag_loss + float(pos_loss), [xp.hstack([t, p]) for t, p in zip(d_tags, d_pos)]

    def _crf_loss(self, examples: List[Example], tag_scores: List[Floats2d]) -> Tuple[float, List[Floats2d]]:
        """CRF sequence loss. Missing tags allow every tag (marginalized);
        ``neg_prefix`` labels forbid one."""
        index = {label: i for i, label in enumerate(self.labels)}
        neg_prefix = self.cfg["neg_prefix"]
        allowed = []
        for eg in examples:
            tags = eg.get_aligned("TAG", as_string=True)
            mask = numpy.ones((len(tags), len(index)), dtype=bool)
            for k, tag in enumerate(tags):
                if not tag:
                    continue
                if tag not in index and tag.startswith(neg_prefix):
                    if tag[len(neg_prefix):] in index:
                        mask[k, index[tag[len(neg_prefix):]]] = False
                    continue
                mask[k] = False
                mask[k, index[tag]] = True
            allowed.append(mask)
        loss, d_scores = crf_loss(self.model.ops, get_torch_module(self.model).crf, tag_scores, allowed)
        if numpy.isnan(loss):
            raise ValueError(f"[{self.name}] The CRF loss is NaN: training diverged (try a lower learn_rate)")
        return loss, d_scores

    def _check_gold_labels(self, examples: List[Example], attr: str, labels: Sequence[str],
                           what: str, neg_prefix: Optional[str]) -> None:
        known = set(labels)
        for eg in examples:
            for label in eg.get_aligned(attr, as_string=True):
                if label and label not in known and not (neg_prefix and label.startswith(neg_prefix)):
                    raise ValueError(
                        f"[{self.name}] The training data has the {what} {label!r}, which is not "
                        f"among the component's {len(known)} {what} labels. Initialize the pipeline "
                        "on data that contains every label (or pass the full label set, e.g. "
                        "from `spacy init labels`)."
                    )

    def score(self, examples: Iterable[Example], **kwargs) -> Dict:
        """``tag_acc`` as spaCy's tagger scores it, plus ``pos_acc`` with ``joint_pos``."""
        examples = list(examples)
        scores = super().score(examples, **kwargs)
        if self.joint_pos:
            scores.update(Scorer.score_token_attr(examples, "pos"))
        return scores

    def from_bytes(self, bytes_data: bytes, *, exclude=tuple()) -> "LSTMTagger":
        try:
            super().from_bytes(bytes_data, exclude=exclude)
        except Exception as err:
            raise _load_error(self.name, "bytes", err) from err
        self._declare_pos_assignment()
        return self

    def from_disk(self, path: Union[str, Path], *, exclude=tuple()) -> "LSTMTagger":
        try:
            super().from_disk(path, exclude=exclude)
        except Exception as err:
            raise _load_error(self.name, str(path), err) from err
        self._declare_pos_assignment()
        return self


def _load_error(name: str, source: str, err: Exception) -> ValueError:
    return ValueError(
        f"Could not load the '{name}' component (lstm_tagger) from {source}: {err}. "
        "The saved pipeline may be truncated or corrupted, its config.cfg may not "
        "match its weights, or it was saved with an incompatible spacy-lstm-tagger."
    )
