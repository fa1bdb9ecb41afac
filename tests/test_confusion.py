"""Tag confusion report."""
import json

import pytest
import spacy
from spacy.tokens import DocBin

from conftest import make_examples
from spacy_lstm_tagger.confusion import confusion_report, per_tag_scores, run_confusion

CONLLU = """# text = I like ham
1	I	I	PRON	PRP	_	2	nsubj	_	_
2	like	like	VERB	VBP	_	0	root	_	_
3	ham	ham	NOUN	NN	_	2	obj	_	SpaceAfter=No

# text = Eat green eggs
1	Eat	eat	VERB	VB	_	0	root	_	_
2	green	green	ADJ	JJ	_	3	amod	_	_
3	eggs	egg	NOUN	NNS	_	1	obj	_	SpaceAfter=No

"""


def test_per_tag_scores_by_hand():
    pairs = [("NN", "NN"), ("NN", "JJ"), ("JJ", "JJ"), ("VB", "NN")]
    scores = per_tag_scores(pairs)
    assert scores["NN"] == {"p": 0.5, "r": 0.5, "f": 0.5, "support": 2}
    assert scores["JJ"] == {"p": 0.5, "r": 1.0, "f": 0.6667, "support": 1}
    assert scores["VB"] == {"p": 0.0, "r": 0.0, "f": 0.0, "support": 1}
    report = confusion_report(pairs)
    assert report["tag_acc"] == 0.5
    assert {(c["gold"], c["predicted"]) for c in report["top_confusions"]} == {("NN", "JJ"), ("VB", "NN")}


@pytest.mark.parametrize("fmt", ["spacy", "conllu"])
def test_run_confusion_writes_json_and_png(trained_nlp, tmp_path, fmt):
    trained_nlp.to_disk(tmp_path / "model")
    if fmt == "spacy":
        db = DocBin()
        for eg in make_examples(trained_nlp):
            db.add(eg.reference)
        data = tmp_path / "gold.spacy"
        db.to_disk(data)
    else:
        data = tmp_path / "gold.conllu"
        data.write_text(CONLLU, encoding="utf8")
    report = run_confusion(tmp_path / "model", data, tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "confusion.json").read_text())
    assert saved["n_tokens"] == report["n_tokens"] == (15 if fmt == "spacy" else 6)
    if fmt == "spacy":
        assert saved["tag_acc"] == 1.0  # the tiny model overfit these sentences
    assert (tmp_path / "out" / "confusion.png").read_bytes()[:4] == b"\x89PNG"


def test_missing_or_unsupported_file(trained_nlp, tmp_path):
    trained_nlp.to_disk(tmp_path / "model")
    with pytest.raises(FileNotFoundError):
        run_confusion(tmp_path / "model", tmp_path / "nope.spacy", tmp_path / "out")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match="expected .spacy or .conllu"):
        run_confusion(tmp_path / "model", tmp_path / "x.txt", tmp_path / "out")


def test_tag_acc_is_spacy_evaluate_gold_preproc(tmp_path):
    """Multi-sentence gold Docs are tagged one sentence at a time, as
    `spacy evaluate --gold-preproc` (and scripts/evaluate.py) tag them, so
    the two tag_acc agree on an imperfect model."""
    from spacy.tokens import Doc
    from spacy.training import Corpus

    from conftest import train_tiny

    nlp = train_tiny(n_iter=8)  # (imperfect: whole Docs would score differently)
    nlp.to_disk(tmp_path / "model")
    words = "I like ham . She ate green eggs quickly . They eat blue ham".split()
    tags = "PRP VBP NN . PRP VBD JJ NNS RB . PRP VBP JJ NN".split()
    sent_starts = [w in ("I", "She", "They") for w in words]
    db = DocBin()
    for _ in range(3):
        db.add(Doc(nlp.vocab, words=words, tags=tags, sent_starts=sent_starts))
    db.to_disk(tmp_path / "gold.spacy")
    report = run_confusion(tmp_path / "model", tmp_path / "gold.spacy", tmp_path / "out", plot=False)
    loaded = spacy.load(tmp_path / "model")
    expected = loaded.evaluate(list(Corpus(str(tmp_path / "gold.spacy"), gold_preproc=True)(loaded)))["tag_acc"]
    assert 0 < report["tag_acc"] < 1
    assert report["tag_acc"] == round(expected, 4)


def test_conllu_xpos_underscore_is_not_scored(trained_nlp, tmp_path):
    """A .conllu is read as `convert` reads it: an XPOS `_` is a missing
    tag (not scored), not its UPOS as spaCy's converter would make it."""
    trained_nlp.to_disk(tmp_path / "model")
    data = tmp_path / "gold.conllu"
    data.write_text(CONLLU.replace("NOUN\tNN\t", "NOUN\t_\t", 1), encoding="utf8")
    report = run_confusion(tmp_path / "model", data, tmp_path / "out", plot=False)
    assert report["n_tokens"] == 5 and "NOUN" not in report["per_tag"]
