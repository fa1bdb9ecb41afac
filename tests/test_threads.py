"""torch's intra-op threads: one per process unless the user chose."""
import subprocess
import sys
import textwrap

import pytest
import torch

from spacy_lstm_tagger import model as model_module
from spacy_lstm_tagger.model import choose_threads


@pytest.fixture
def fresh_default(monkeypatch):
    """A process where torch runs its default of 2 threads and nobody chose:
    no thread variables, no set_num_threads since the import."""
    for var in model_module.THREAD_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(model_module, "_THREADS_AT_IMPORT", 2)
    monkeypatch.setattr(model_module, "_threads_applied", None)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_default_is_one_thread_and_is_printed(fresh_default, new_tagger, capsys):
    new_tagger()  # initialize: where training starts
    assert torch.get_num_threads() == 1
    out = " ".join(capsys.readouterr().err.split())  # on stderr; wasabi wraps lines
    assert "[lstm_tagger] torch intra-op threads: 1 (default;" in out and "threads = N" in out


def test_default_applies_at_first_prediction_of_a_loaded_pipeline(fresh_default, new_tagger):
    setup = new_tagger(initialize=False)
    setup.nlp.initialize(lambda: setup.examples)
    torch.set_num_threads(2)  # as in a fresh process that loads the saved pipeline
    model_module._threads_applied = None
    setup.tagger._threads_pid = None
    list(setup.nlp.pipe(["I like eggs"]))
    assert torch.get_num_threads() == 1


def test_environment_variable_is_the_users_choice(fresh_default, monkeypatch, new_tagger, capsys):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    new_tagger()
    assert torch.get_num_threads() == 2
    assert "torch intra-op threads: 2 (OMP_NUM_THREADS=2;" in " ".join(capsys.readouterr().err.split())


def test_set_num_threads_after_import_is_the_users_choice(fresh_default, new_tagger):
    torch.set_num_threads(3)
    new_tagger()
    assert torch.get_num_threads() == 3


@pytest.mark.parametrize("threads,expected", [(3, 3), (0, 2)])
def test_threads_setting(fresh_default, monkeypatch, new_tagger, threads, expected):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the setting wins over the environment
    new_tagger(component={"threads": threads})
    assert torch.get_num_threads() == expected


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_bad_threads_is_a_clear_error(new_tagger, bad):
    with pytest.raises(Exception, match="threads"):  # spaCy's config check or ours
        new_tagger(component={"threads": bad}, initialize=False)


def test_worker_processes(fresh_default, monkeypatch):
    """A worker (tag -n N, nlp.pipe(n_process=N)) gets 1 thread unless the
    process that started it set a count for it (tag --threads)."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert choose_threads(None, new_process=True, inherited=2).n_threads == 1  # fork: the parent's count
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    assert choose_threads(None, new_process=True, inherited=2).n_threads == 4  # tag --threads 4
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert choose_threads(None, new_process=True, inherited=1).n_threads == 1  # spawn: torch's default


def test_nlp_pipe_workers_use_one_thread_each(tmp_path):
    code = textwrap.dedent(
        """
        import os, spacy, torch
        from spacy.language import Language
        from spacy.training import Example
        os.environ["OMP_NUM_THREADS"] = "2"  # the main process keeps the user's 2

        @Language.component("record_threads")
        def record_threads(doc):
            doc.user_data["threads"] = torch.get_num_threads()
            return doc

        torch.set_num_threads(2)
        nlp = spacy.blank("en")
        nlp.add_pipe("lstm_tagger", config={"model": {"word_embed_size": 8, "hidden_size": 8, "bfloat16": False}})
        nlp.add_pipe("record_threads")
        examples = [Example.from_dict(nlp.make_doc("I like eggs"), {"tags": ["PRP", "VBP", "NNS"]})]
        nlp.initialize(lambda: examples)
        workers = {doc.user_data["threads"] for doc in nlp.pipe(["I like eggs"] * 8, n_process=2, batch_size=2)}
        print(torch.get_num_threads(), sorted(workers))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[-2] == "2 [1]", result.stdout
