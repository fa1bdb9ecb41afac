"""benchmarks/oov_split.py: accuracy on words seen / unseen in training, on a
tiny treebank folder laid out like multilingual.py's."""
import importlib.util
import json
from pathlib import Path

from spacy.tokens import Doc, DocBin

from conftest import TRAIN_DATA

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("oov_split", ROOT / "benchmarks" / "oov_split.py")
oov_split = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(oov_split)


def test_split_counts_seen_and_unseen_words_and_skips_missing_tags(trained_nlp, tmp_path, capsys):
    folder = tmp_path / "xx_tiny"
    (folder / "data").mkdir(parents=True)
    vocab = trained_nlp.vocab
    train = [Doc(vocab, words=text.split(), tags=ann["tags"]) for text, ann in TRAIN_DATA]
    DocBin(docs=train).to_disk(folder / "data" / "train.spacy")
    # "I", "like", "ham" are training words; "purple", "cheese" are not; "Oops" has no gold tag
    gold = Doc(vocab, words=["I", "like", "purple", "ham", "cheese", "Oops"],
               tags=["PRP", "VBP", "JJ", "NN", "NN", ""])
    DocBin(docs=[gold]).to_disk(folder / "data" / "eval.spacy")
    model = tmp_path / "model"
    trained_nlp.to_disk(model)

    oov_split.main([str(folder), str(model)])
    row = json.loads(capsys.readouterr().out.strip())

    guesses = [t.tag_ for t in trained_nlp(Doc(vocab, words=[t.text for t in gold]))]
    right = [g == t.tag_ for g, t in zip(guesses, gold)]
    assert row["iv"]["words"] == 3 and row["oov"]["words"] == 2 and row["all"]["words"] == 5
    assert row["iv"]["tag_acc"] == round(100 * sum(right[i] for i in (0, 1, 3)) / 3, 2)
    assert row["oov"]["tag_acc"] == round(100 * sum(right[i] for i in (2, 4)) / 2, 2)
    assert row["all"]["tag_acc"] == round(100 * sum(right[:5]) / 5, 2)
    # the seen words by how training saw them: "I" once; "like" and "ham" twice, each with one tag
    assert [sum(t.text == w for doc in train for t in doc) for w in ("I", "like", "ham")] == [1, 2, 2]
    assert row["iv_once"] == {"words": 1, "tag_acc": 100.0 * right[0]}
    assert row["iv_one_tag"] == {"words": 2, "tag_acc": round(100 * (right[1] + right[3]) / 2, 2)}
    assert "iv_ambiguous" not in row
