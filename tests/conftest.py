"""Shared fixtures: a tiny model config and a tiny hand-made corpus, so the
default test suite trains in seconds and needs no downloaded data."""
import inspect
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest
import spacy
import torch
from spacy.language import Language
from spacy.training import Example
from thinc.api import Optimizer, fix_random_seed

from spacy_lstm_tagger.model import get_torch_module

# One torch thread: tests are tiny, and several threads on a busy 2-core
# machine spin-wait far more than they compute.
torch.set_num_threads(1)

# Small sizes: every test model trains in a second or two on a CPU.
TINY_MODEL = {
    "word_embed_size": 16,
    "n_word_rows": 1000,
    "char_embed_size": 8,
    "char_hidden_size": 8,
    "hidden_size": 16,
    "depth": 1,
    # no projection ahead of the sentence BiLSTM (the factory default is 64):
    # tests/test_input_projection.py turns it on
    "lstm_input_size": 0,
    "dropout": 0.0,
    "word_dropout": 0.0,
    # float32 on every machine (add_pipe's default, "auto", is bf16 where the CPU
    # runs it natively), so exact comparisons hold wherever the tests run;
    # test_quantize.py tests "auto" and bf16
    "bfloat16": False,
}

TRAIN_DATA = [
    ("I like green eggs", {"tags": ["PRP", "VBP", "JJ", "NNS"]}),
    ("Eat blue ham", {"tags": ["VB", "JJ", "NN"]}),
    ("She ate the ham quickly", {"tags": ["PRP", "VBD", "DT", "NN", "RB"]}),
    ("They like eggs", {"tags": ["PRP", "VBP", "NNS"]}),
]

SHARED_EWT = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "ud-english-ewt"
EWT_DIR = Path(os.environ.get("SPACY_LSTM_TAGGER_EWT_DIR", SHARED_EWT))


def make_examples(nlp: Language, data=TRAIN_DATA) -> List[Example]:
    return [Example.from_dict(nlp.make_doc(text), annots) for text, annots in data]


@dataclass
class TaggerSetup:
    nlp: Language
    tagger: Any  # the LSTMTagger component
    examples: List[Example]
    optimizer: Optional[Optimizer]


def new_pipeline(
    data=TRAIN_DATA, *, initialize: bool = True, seed: int = 0, component: Optional[dict] = None,
    factory: str = "lstm_tagger", **model_overrides
) -> TaggerSetup:
    """A blank English pipeline with a tiny tagger named ``lstm_tagger``
    (made by ``factory``, with ``component`` settings, model settings
    overriding TINY_MODEL), initialized on ``data`` unless ``initialize`` is false."""
    fix_random_seed(seed)
    nlp = spacy.blank("en")
    config = {**(component or {}), "model": {**TINY_MODEL, **model_overrides}}
    tagger = nlp.add_pipe(factory, name="lstm_tagger", config=config)
    examples = make_examples(nlp, data)
    optimizer = nlp.initialize(lambda: examples) if initialize else None
    return TaggerSetup(nlp, tagger, examples, optimizer)


@pytest.fixture
def new_tagger() -> Callable[..., TaggerSetup]:
    """The blank-pipeline / add_pipe / initialize setup most tests start from
    (see :func:`new_pipeline`); call it with the settings the test needs."""
    return new_pipeline


def train_tiny(n_iter: int = 60, data=TRAIN_DATA, seed: int = 0, factory: str = "lstm_tagger",
               **model_overrides) -> Language:
    """A blank English pipeline with a tiny tagger (``factory``) trained on ``data``."""
    setup = new_pipeline(data, seed=seed, factory=factory, **model_overrides)
    for _ in range(n_iter):
        setup.nlp.update(setup.examples, sgd=setup.optimizer)
    return setup.nlp


def train_pipeline(nlp: Language, n_iter: int, data=TRAIN_DATA) -> Language:
    """Initialize an assembled pipeline (several taggers, other factories,
    vectors) on ``data`` and update it ``n_iter`` times."""
    examples = make_examples(nlp, data)
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(n_iter):
        nlp.update(examples, sgd=optimizer)
    return nlp


@contextmanager
def record_torch_inputs(tagger) -> Iterator[List[Dict[str, Any]]]:
    """Record the inputs of every call of the tagger's torch module, by
    parameter name (``word_ids``, ``char_ids``, ``lengths``...), through a
    forward pre-hook: what the model really computed on, not a recomputation."""
    module = get_torch_module(tagger.model)
    signature = inspect.signature(module.forward)
    calls: List[Dict[str, Any]] = []

    def hook(_module, args, kwargs):
        calls.append(dict(signature.bind(*args, **kwargs).arguments))

    handle = module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()


@pytest.fixture(scope="session")
def trained_nlp() -> Language:
    """A tiny tagger that has overfit TRAIN_DATA (treat as read-only)."""
    return train_tiny()


@pytest.fixture(scope="session")
def trained_model_dir(trained_nlp: Language, tmp_path_factory) -> Path:
    """``trained_nlp`` saved to disk once for the whole session (read-only),
    for the tests that load a pipeline by path (``tag`` CLI, reliability)."""
    path = tmp_path_factory.mktemp("trained") / "model"
    trained_nlp.to_disk(path)
    return path


@pytest.fixture
def ewt_dir() -> Path:
    if not (EWT_DIR / "en_ewt-ud-train.conllu").exists():
        pytest.skip(f"UD English EWT not found at {EWT_DIR} (set SPACY_LSTM_TAGGER_EWT_DIR)")
    return EWT_DIR


@pytest.fixture
def tiny_model_config() -> dict:
    return dict(TINY_MODEL)
