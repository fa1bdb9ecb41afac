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
