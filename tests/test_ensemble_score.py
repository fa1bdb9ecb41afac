"""benchmarks/ensemble_score.py: each model's score equals spaCy's tag_acc on
the same dev file, and an ensemble's is that of its mean probabilities."""
import sys
from pathlib import Path

import numpy
import pytest
import spacy
import srsly
from spacy.tokens import DocBin
from spacy.training import Corpus

from conftest import make_examples, train_tiny

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import ensemble_score  # noqa: E402


def test_scores_alone_match_spacys_and_the_ensemble_is_the_mean(tmp_path):
    good, weak = train_tiny(n_iter=60), train_tiny(n_iter=4, seed=3)
    dev = tmp_path / "dev.spacy"
    DocBin(docs=[eg.reference for eg in make_examples(good)]).to_disk(dev)
    good.to_disk(tmp_path / "good")
    weak.to_disk(tmp_path / "weak")
    out = tmp_path / "ensemble.json"
    ensemble_score.main([f"good={tmp_path / 'good'}", f"weak={tmp_path / 'weak'}", "--dev", str(dev), "--output", str(out)])
    result = srsly.read_json(out)
    by_members = {tuple(row["members"]): row["tag_acc"] for row in result["ensembles"]}
    assert set(by_members) == {("good",), ("weak",), ("good", "weak")}
    for name, nlp in (("good", good), ("weak", weak)):
        spacy_score = nlp.evaluate(list(Corpus(str(dev), gold_preproc=True)(nlp)))["tag_acc"]
        assert by_members[(name,)] == pytest.approx(round(100 * spacy_score, 2), abs=1e-9)  # srsly reads floats imprecisely
    loaded = {name: spacy.load(tmp_path / name) for name in ("good", "weak")}
    docs = ensemble_score.dev_sentences(loaded["good"], str(dev))
    p_good, labels = ensemble_score.member_probabilities(loaded["good"], docs, None)
    p_weak, _ = ensemble_score.member_probabilities(loaded["weak"], docs, labels)
    gold = ensemble_score.gold_ids(docs, labels)
    mean_acc = 100 * float(((p_good + p_weak).argmax(axis=1) == gold).mean())
    assert by_members[("good", "weak")] == pytest.approx(round(mean_acc, 2), abs=1e-9)
    assert by_members[("good",)] > by_members[("weak",)]  # the two models differ
    assert result["n_tokens"] == len(gold) == sum(len(eg.reference) for eg in make_examples(good))
