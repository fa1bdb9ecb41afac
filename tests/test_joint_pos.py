"""Joint UPOS head: one lstm_tagger fills Token.tag_ and Token.pos_."""
import numpy
import pytest
import spacy
from spacy.training import Example

from conftest import TINY_MODEL, train_tiny

JOINT_DATA = [
    ("I like green eggs", {"tags": ["PRP", "VBP", "JJ", "NNS"], "pos": ["PRON", "VERB", "ADJ", "NOUN"]}),
    ("Eat blue ham", {"tags": ["VB", "JJ", "NN"], "pos": ["VERB", "ADJ", "NOUN"]}),
    ("She ate the ham quickly", {"tags": ["PRP", "VBD", "DT", "NN", "RB"], "pos": ["PRON", "VERB", "DET", "NOUN", "ADV"]}),
]


@pytest.fixture(scope="module")
def joint_nlp():
    return train_tiny(n_iter=80, data=JOINT_DATA, joint_pos=True)


def test_joint_head_learns_tags_and_pos(joint_nlp):
    tagger = joint_nlp.get_pipe("lstm_tagger")
    assert tagger.joint_pos and tagger.pos_labels == ("ADJ", "ADV", "DET", "NOUN", "PRON", "VERB")
    for text, annots in JOINT_DATA:
        doc = joint_nlp(text)
        assert [t.tag_ for t in doc] == annots["tags"]
        assert [t.pos_ for t in doc] == annots["pos"]


def test_joint_scores_report_pos_acc(joint_nlp):
    examples = [Example.from_dict(joint_nlp.make_doc(t), a) for t, a in JOINT_DATA]
    scores = joint_nlp.evaluate(examples)
    assert scores["tag_acc"] == 1.0 and scores["pos_acc"] == 1.0


def test_joint_roundtrip(joint_nlp, tmp_path):
    joint_nlp.to_disk(tmp_path)
    loaded = spacy.load(tmp_path)
    for text, _ in JOINT_DATA:
        a, b = joint_nlp(text), loaded(text)
        assert [(t.tag_, t.pos_) for t in a] == [(t.tag_, t.pos_) for t in b]


def test_joint_head_on_the_plain_factory_warns_and_keeps_its_meta(trained_nlp):
    """The lstm_tagger factory declares token.tag only: a joint head on it says
    which factory declares token.pos, and no pipeline meta is edited behind
    spaCy's back."""
    with pytest.warns(UserWarning, match="lstm_joint_tagger"):
        nlp = train_tiny(n_iter=1, data=JOINT_DATA, joint_pos=True)
    assert nlp.get_pipe_meta("lstm_tagger").assigns == ["token.tag"]
    assert trained_nlp.get_pipe_meta("lstm_tagger").assigns == ["token.tag"]
    assert spacy.blank("en").get_factory_meta("lstm_tagger").assigns == ["token.tag"]


def test_joint_output_rows_are_two_distributions(joint_nlp):
    tagger = joint_nlp.get_pipe("lstm_tagger")
    scores = tagger.model.predict([joint_nlp.make_doc("I like ham"), joint_nlp.make_doc("")])
    n_tags, n_pos = len(tagger.labels), len(tagger.pos_labels)
    assert scores[0].shape == (3, n_tags + n_pos) and scores[1].shape == (0, n_tags + n_pos)
    numpy.testing.assert_allclose(scores[0][:, :n_tags].sum(axis=1), 1.0, rtol=1e-5)
    numpy.testing.assert_allclose(scores[0][:, n_tags:].sum(axis=1), 1.0, rtol=1e-5)


def test_joint_with_probabilities(joint_nlp, tmp_path):
    joint_nlp.to_disk(tmp_path)
    nlp = spacy.load(tmp_path, config={"components": {"lstm_tagger": {"store_probabilities": True}}})
    doc = nlp("I like green eggs")
    assert [t.pos_ for t in doc] == JOINT_DATA[0][1]["pos"]
    assert all(t._.tag_alternatives[0][0] == t.tag_ for t in doc)


def test_missing_pos_is_ignored_and_unknown_pos_is_named(joint_nlp):
    tagger = joint_nlp.get_pipe("lstm_tagger")
    partial = Example.from_dict(joint_nlp.make_doc("Eat blue ham"), {"tags": ["VB", "JJ", "NN"], "pos": ["VERB", "", "NOUN"]})
    _, d_scores = tagger.get_loss([partial], tagger.model.predict([partial.predicted]))
    n_tags = len(tagger.labels)
    assert not d_scores[0][1, n_tags:].any() and d_scores[0][0, n_tags:].any()
    unknown = Example.from_dict(joint_nlp.make_doc("Eat blue ham"), {"tags": ["VB", "JJ", "NN"], "pos": ["VERB", "X", "NOUN"]})
    with pytest.raises(ValueError, match="POS 'X'"):
        tagger.get_loss([unknown], tagger.model.predict([unknown.predicted]))


def test_joint_without_pos_annotation_is_a_clear_error():
    nlp = spacy.blank("en")
    nlp.add_pipe("lstm_tagger", config={"model": {**TINY_MODEL, "joint_pos": True}})
    examples = [Example.from_dict(nlp.make_doc("Eat blue ham"), {"tags": ["VB", "JJ", "NN"]})]
    with pytest.raises(ValueError, match="no POS annotation"):
        nlp.initialize(lambda: examples)


def test_pos_untouched_without_joint_head(trained_nlp):
    doc = trained_nlp("I like green eggs")
    assert all(t.pos_ == "" for t in doc)


@pytest.mark.parametrize("overwrite", [False, True])
def test_pos_writer_equals_setting_token_pos(joint_nlp, overwrite):
    """The one-array-per-Doc UPOS writer against ``token.pos_ = label`` per
    token (what it replaced), with a preset UPOS and an empty Doc."""
    tagger = joint_nlp.get_pipe("lstm_tagger")
    old = tagger.cfg["overwrite"]
    tagger.cfg["overwrite"] = overwrite
    rng = numpy.random.default_rng(1)
    texts = ["I like green eggs", "", "Eat blue ham"]
    guesses = [rng.integers(0, len(tagger.pos_labels), len(text.split())) for text in texts]

    def annotated():
        docs = [joint_nlp.make_doc(text) for text in texts]
        docs[0][2].pos_ = "PROPN"
        return docs

    try:
        docs = annotated()
        tagger._set_pos(docs, guesses)
        expected = annotated()
        for doc, doc_guesses in zip(expected, guesses):
            for token, i in zip(doc, doc_guesses):
                if overwrite or not token.pos:
                    token.pos_ = tagger.pos_labels[i]
        assert [[t.pos_ for t in d] for d in docs] == [[t.pos_ for t in d] for d in expected]
        assert "PROPN" not in tagger.pos_labels and (docs[0][2].pos_ == "PROPN") != overwrite
    finally:
        tagger.cfg["overwrite"] = old


def test_pos_writer_names_a_label_that_is_not_upos(joint_nlp):
    tagger = joint_nlp.get_pipe("lstm_tagger")
    labels = tagger.cfg["pos_labels"]
    tagger.cfg["pos_labels"] = [*labels[:-1], "NOTAPOS"]
    try:
        with pytest.raises(ValueError, match="NOTAPOS"):
            tagger._set_pos([joint_nlp.make_doc("Eat blue ham")], [numpy.zeros(3, dtype="int64")])
    finally:
        tagger.cfg["pos_labels"] = labels
