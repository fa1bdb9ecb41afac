"""Tag probabilities: token._.tag_prob and token._.tag_alternatives."""
import numpy
import pytest
import spacy
from spacy.tokens import Doc, DocBin

from conftest import TRAIN_DATA
from spacy_lstm_tagger.model import split_heads


@pytest.fixture
def prob_nlp(trained_nlp, tmp_path):
    trained_nlp.to_disk(tmp_path)
    return spacy.load(tmp_path, config={"components": {"lstm_tagger": {"store_probabilities": True, "n_alternatives": 2}}})


def test_probabilities_off_by_default(trained_nlp):
    doc = trained_nlp("I like green eggs")
    assert all(t._.tag_prob is None and t._.tag_alternatives is None for t in doc)


def test_probabilities_are_consistent_with_tags(prob_nlp, trained_nlp):
    tagger = prob_nlp.get_pipe("lstm_tagger")
    labels = tagger.labels
    for text, annots in TRAIN_DATA + [("They ate green ham", None)]:
        doc = prob_nlp(text)
        # the model's own tag probabilities, best two per token
        [rows] = split_heads(tagger.model, tagger.model.predict([prob_nlp.make_doc(text)]))["tag"]
        best = numpy.argsort(-rows, axis=1, kind="stable")[:, :2]
        assert [[tag for tag, _ in t._.tag_alternatives] for t in doc] == [[labels[j] for j in b] for b in best]
        numpy.testing.assert_allclose(
            [[p for _, p in t._.tag_alternatives] for t in doc], numpy.take_along_axis(rows, best, axis=1), rtol=1e-6
        )
        if annots is None:
            continue
        assert [t.tag_ for t in doc] == annots["tags"] == [t.tag_ for t in trained_nlp(text)]
        for token in doc:
            assert 0.0 < token._.tag_prob <= 1.0
            alternatives = token._.tag_alternatives
            assert len(alternatives) == 2
            assert alternatives[0] == (token.tag_, token._.tag_prob)
            assert alternatives[0][1] >= alternatives[1][1]
            assert alternatives[1][0] != token.tag_


def test_probabilities_in_batches_with_empty_docs(prob_nlp):
    docs = list(prob_nlp.pipe(["", "Eat blue ham", ""]))
    assert [len(d) for d in docs] == [0, 3, 0]
    assert all(t._.tag_prob is not None for t in docs[1])


def test_preset_tag_kept_gets_its_own_probability(prob_nlp):
    doc = prob_nlp.make_doc("I like green eggs")
    doc[0].tag_ = "NN"
    doc = prob_nlp.get_pipe("lstm_tagger")(doc)
    assert doc[0].tag_ == "NN"
    assert doc[0]._.tag_prob < 0.5
    assert doc[0]._.tag_alternatives[0][0] == "PRP"


def test_probabilities_survive_docbin_with_user_data(prob_nlp):
    doc = prob_nlp("I like green eggs")
    db = DocBin(store_user_data=True)
    db.add(doc)
    restored = list(DocBin().from_bytes(db.to_bytes()).get_docs(prob_nlp.vocab))[0]
    assert [t._.tag_prob for t in restored] == [t._.tag_prob for t in doc]
    # msgpack turns the (tag, prob) tuples into lists
    as_lists = lambda d: [[list(a) for a in t._.tag_alternatives] for t in d]  # noqa: E731
    assert as_lists(restored) == as_lists(doc)
    # without user data they are not kept (documented)
    plain = DocBin(store_user_data=False)
    plain.add(doc)
    assert all(t._.tag_prob is None for t in list(plain.get_docs(prob_nlp.vocab))[0])


def test_n_alternatives_must_be_positive(new_tagger):
    with pytest.raises(ValueError, match="n_alternatives"):
        new_tagger(initialize=False, component={"n_alternatives": 0})
