"""The project's evaluate step (scripts/evaluate.py) gives the comparable
number: `spacy evaluate --gold-preproc`'s tag_acc (gold tokens, one
sentence per Doc, as the configs train); test_confusion.py checks that the
`confusion` command agrees."""
import importlib.util
from pathlib import Path

import pytest
import srsly
from spacy.cli.evaluate import evaluate
from spacy.tokens import Doc, DocBin

from conftest import train_tiny

ROOT = Path(__file__).resolve().parent.parent
WORDS = "I like ham . She ate green eggs quickly . They eat blue ham".split()
TAGS = "PRP VBP NN . PRP VBD JJ NNS RB . PRP VBP JJ NN".split()


def load_evaluate_script():
    spec = importlib.util.spec_from_file_location("evaluate_script", ROOT / "scripts" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_evaluate_step_scores_with_gold_preproc(tmp_path: Path, capsys):
    nlp = train_tiny(n_iter=8)  # imperfect, so the ways of scoring can differ
    nlp.to_disk(tmp_path / "model")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    db = DocBin()
    for _ in range(3):  # multi-sentence Docs, as `convert` writes them
        db.add(Doc(nlp.vocab, words=WORDS, tags=TAGS, sent_starts=[w in ("I", "She", "They") for w in WORDS]))
    db.to_disk(corpus / "xx-ud-dev.spacy")
    metrics_path = tmp_path / "metrics.json"
    assert load_evaluate_script().main([str(tmp_path / "model"), str(corpus), str(metrics_path),
                                        "--treebank", "xx"]) == 0
    metrics = srsly.read_json(metrics_path)
    assert metrics["gold_preproc"] is True and metrics["split"] == "dev"
    assert "as `spacy evaluate --gold-preproc`" in capsys.readouterr().out
    gold_preproc = evaluate(str(tmp_path / "model"), corpus / "xx-ud-dev.spacy", gold_preproc=True, silent=True)
    assert 0 < metrics["tag_acc"] < 1
    assert metrics["tag_acc"] == pytest.approx(gold_preproc["tag_acc"], abs=1e-9)  # (JSON keeps 10 digits)
