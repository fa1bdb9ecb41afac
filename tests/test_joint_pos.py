"""Joint UPOS head: one lstm_joint_tagger fills Token.tag_ and Token.pos_;
on lstm_tagger the head is auxiliary (trained, not run at inference), and
"auto" (add_pipe's default) turns it on where the training data has UPOS."""
import numpy
import pytest
import spacy
from spacy.training import Example

from conftest import TINY_MODEL, TRAIN_DATA, new_pipeline, train_tiny

JOINT_DATA = [
    ("I like green eggs", {"tags": ["PRP", "VBP", "JJ", "NNS"], "pos": ["PRON", "VERB", "ADJ", "NOUN"]}),
    ("Eat blue ham", {"tags": ["VB", "JJ", "NN"], "pos": ["VERB", "ADJ", "NOUN"]}),
    ("She ate the ham quickly", {"tags": ["PRP", "VBD", "DT", "NN", "RB"], "pos": ["PRON", "VERB", "DET", "NOUN", "ADV"]}),
]


@pytest.fixture(scope="module")
def joint_nlp():
    return train_tiny(n_iter=80, data=JOINT_DATA, factory="lstm_joint_tagger", joint_pos=True, joint_morph="auto")


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


def test_on_lstm_tagger_the_joint_head_is_auxiliary(tmp_path):
    """The lstm_tagger factory declares token.tag only, and writes only that:
    its UPOS head learns from the gold UPOS (its loss is in the update) but is
    not run at inference, before or after a round trip."""
    setup = new_pipeline(JOINT_DATA, joint_pos=True)
    nlp, tagger = setup.nlp, setup.tagger
    assert tagger.joint_pos and not tagger.writes_pos and len(tagger.pos_labels) == 6
    docs = [eg.predicted for eg in setup.examples]
    scores, _ = tagger.model.begin_update(docs)
    n_tags = len(tagger.labels)
    assert scores[0].shape[1] == n_tags + 6  # training scores the UPOS head...
    _, d_scores = tagger.get_loss(setup.examples, scores)
    assert d_scores[0][:, n_tags:].any()  # ...and learns it
    assert tagger.model.predict(docs)[0].shape[1] == n_tags  # inference does not run it
    for _ in range(80):
        nlp.update(setup.examples, sgd=setup.optimizer)
    nlp.to_disk(tmp_path)
    for pipeline in (nlp, spacy.load(tmp_path)):
        for text, annots in JOINT_DATA:
            doc = pipeline(text)
            assert [t.tag_ for t in doc] == annots["tags"] and all(t.pos_ == "" for t in doc)
        scores = pipeline.evaluate([Example.from_dict(pipeline.make_doc(t), a) for t, a in JOINT_DATA])
        assert scores["tag_acc"] == 1.0 and "pos_acc" not in scores
        assert pipeline.get_pipe_meta("lstm_tagger").assigns == ["token.tag"]
        probs = pipeline.get_pipe("lstm_tagger").tag_probabilities([pipeline.make_doc("I like ham")])
        assert probs[0].shape == (3, n_tags)  # probabilities are the tags' alone
    assert spacy.load(tmp_path).get_pipe("lstm_tagger").joint_pos


def test_auto_heads_follow_the_training_data(tmp_path, capsys):
    """add_pipe's default (joint_pos / joint_morph "auto"): a head where the
    data has the annotation, none where it has not; said at initialize, saved
    with the weights, decided again by a new initialize."""
    nlp = spacy.blank("en")
    nlp.add_pipe("lstm_tagger", config={"model": {k: v for k, v in TINY_MODEL.items()}})
    assert nlp.config["components"]["lstm_tagger"]["model"]["joint_pos"] == "auto"
    tagger = nlp.get_pipe("lstm_tagger")
    with_pos = [Example.from_dict(nlp.make_doc(t), a) for t, a in JOINT_DATA]
    nlp.initialize(lambda: with_pos)
    assert tagger.joint_pos and not tagger.joint_morph and len(tagger.pos_labels) == 6
    said = capsys.readouterr().err
    assert "UPOS (6 labels)" in said and "auxiliary" in said and "no FEATS head" in said
    nlp.to_disk(tmp_path / "with_pos")
    loaded = spacy.load(tmp_path / "with_pos").get_pipe("lstm_tagger")
    assert loaded.joint_pos and loaded.pos_labels == tagger.pos_labels
    without = [Example.from_dict(nlp.make_doc(t), a) for t, a in TRAIN_DATA]
    nlp.initialize(lambda: without)
    assert not tagger.joint_pos and "pos_labels" not in tagger.cfg
    assert "no UPOS / FEATS head" in capsys.readouterr().err
    nlp.to_disk(tmp_path / "without")
    reloaded = spacy.load(tmp_path / "without")
    assert not reloaded.get_pipe("lstm_tagger").joint_pos
    assert [t.tag_ for t in reloaded("I like ham")] == [t.tag_ for t in nlp("I like ham")]


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
