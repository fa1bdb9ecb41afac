"""The spaCy pipeline component ``lstm_tagger``.

It is spaCy's own :class:`spacy.pipeline.Tagger` with a different default
model, so labels, ``spacy init labels``, ``overwrite``, ``neg_prefix``,
``label_smoothing``, the loss (missing tags ignored), scoring and
serialization behave exactly as users know them. What it adds is what a
torch-backed model needs: torch threads in worker processes and clear
errors for unknown tags and bad saved weights.
"""
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy
import torch
from spacy.language import Language
from spacy.pipeline import Tagger
from spacy.tokens import Doc, Token
from spacy.training import Example
from spacy.vocab import Vocab
from thinc.api import Config, Model
from thinc.types import Floats2d

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
    """What ``predict`` returns when probabilities are stored: the argmax
    tag ids (as spaCy's Tagger returns) plus the per-token probabilities."""

    guesses: List[numpy.ndarray]
    probabilities: List[Floats2d]

    def __len__(self) -> int:
        return len(self.guesses)

    def __getitem__(self, i: int) -> numpy.ndarray:
        return self.guesses[i]


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
    return LSTMTagger(
        nlp.vocab, model, name, overwrite=overwrite, scorer=scorer,
        neg_prefix=neg_prefix, label_smoothing=label_smoothing,
        store_probabilities=store_probabilities, n_alternatives=n_alternatives,
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
        **kwargs,
    ) -> None:
        super().__init__(vocab, model, name, **kwargs)
        if n_alternatives < 1:
            raise ValueError(f"n_alternatives must be at least 1, got {n_alternatives}")
        self.store_probabilities = store_probabilities
        self.n_alternatives = n_alternatives
        self._pid = os.getpid()

    def predict(self, docs: Iterable[Doc]):
        self._limit_threads_in_worker()
        docs = list(docs)
        if not self.store_probabilities:
            return super().predict(docs)
        if not any(len(doc) for doc in docs):
            probabilities = [self.model.ops.alloc2f(0, len(self.labels)) for _ in docs]
        else:
            probabilities = self.model.predict(docs)
        return TagPredictions(self._scores2guesses(probabilities), probabilities)

    def set_annotations(self, docs: Sequence[Doc], predictions) -> None:
        if isinstance(docs, Doc):
            docs = [docs]
        if not isinstance(predictions, TagPredictions):
            return super().set_annotations(docs, predictions)
        super().set_annotations(docs, predictions.guesses)
        labels = self.labels
        label_index = {label: i for i, label in enumerate(labels)}
        k = min(self.n_alternatives, len(labels))
        for doc, probs in zip(docs, predictions.probabilities):
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

    def __getstate__(self) -> Dict:
        # With the spawn start method the pipe is pickled; the new process
        # must count as a worker.
        state = self.__dict__.copy()
        state["_pid"] = None
        return state

    def get_loss(self, examples: Iterable[Example], scores) -> Tuple[float, Floats2d]:
        """spaCy's tagger loss, after checking that every gold tag is a known
        label (spaCy would fail with a bare ``KeyError``)."""
        examples = list(examples)
        known = set(self.labels)
        neg_prefix = self.cfg["neg_prefix"]
        for eg in examples:
            for tag in eg.get_aligned("TAG", as_string=True):
                if tag and tag not in known and not tag.startswith(neg_prefix):
                    raise ValueError(
                        f"[{self.name}] The training data has the tag {tag!r}, which is not "
                        f"among the component's {len(known)} labels. Initialize the pipeline "
                        "on data that contains every tag (or pass the full label set, e.g. "
                        "from `spacy init labels`)."
                    )
        return super().get_loss(examples, scores)

    def from_bytes(self, bytes_data: bytes, *, exclude=tuple()) -> "LSTMTagger":
        try:
            return super().from_bytes(bytes_data, exclude=exclude)
        except Exception as err:
            raise _load_error(self.name, "bytes", err) from err

    def from_disk(self, path: Union[str, Path], *, exclude=tuple()) -> "LSTMTagger":
        try:
            return super().from_disk(path, exclude=exclude)
        except Exception as err:
            raise _load_error(self.name, str(path), err) from err


def _load_error(name: str, source: str, err: Exception) -> ValueError:
    return ValueError(
        f"Could not load the '{name}' component (lstm_tagger) from {source}: {err}. "
        "The saved pipeline may be truncated or corrupted, its config.cfg may not "
        "match its weights, or it was saved with an incompatible spacy-lstm-tagger."
    )
