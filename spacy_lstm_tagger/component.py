"""The spaCy pipeline component ``lstm_tagger``.

It is spaCy's own :class:`spacy.pipeline.Tagger` with a different default
model, so labels, ``spacy init labels``, ``overwrite``, ``neg_prefix``,
``label_smoothing``, the loss (missing tags ignored), scoring and
serialization behave exactly as users know them. What it adds is what a
torch-backed model needs: torch threads in worker processes and clear
errors for unknown tags and bad saved weights.
"""
import os
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional, Tuple, Union

import torch
from spacy.language import Language
from spacy.pipeline import Tagger
from spacy.tokens import Doc
from spacy.training import Example
from spacy.vocab import Vocab
from thinc.api import Config, Model
from thinc.types import Floats2d

DEFAULT_MODEL_CONFIG = """
[model]
@architectures = "spacy_lstm_tagger.WordCharBiLSTM.v1"
"""
DEFAULT_MODEL = Config().from_str(DEFAULT_MODEL_CONFIG)["model"]


@Language.factory(
    "lstm_tagger",
    assigns=["token.tag"],
    default_config={
        "model": DEFAULT_MODEL,
        "overwrite": False,
        "scorer": {"@scorers": "spacy.tagger_scorer.v1"},
        "neg_prefix": "!",
        "label_smoothing": 0.0,
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
) -> "LSTMTagger":
    """Create an ``lstm_tagger``: a part-of-speech tagger powered by a word +
    character BiLSTM written in PyTorch. Predicted tags go to ``Token.tag_``."""
    return LSTMTagger(
        nlp.vocab, model, name, overwrite=overwrite, scorer=scorer,
        neg_prefix=neg_prefix, label_smoothing=label_smoothing,
    )


class LSTMTagger(Tagger):
    """spaCy's Tagger, driven by a PyTorch word + char BiLSTM."""

    def __init__(self, vocab: Vocab, model: Model, name: str = "lstm_tagger", **kwargs) -> None:
        super().__init__(vocab, model, name, **kwargs)
        self._pid = os.getpid()

    def predict(self, docs: Iterable[Doc]):
        self._limit_threads_in_worker()
        return super().predict(list(docs))

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
