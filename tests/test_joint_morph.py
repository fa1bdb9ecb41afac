"""The joint tagger: one model writes Token.tag_, Token.pos_ and Token.morph
(FEATS), scored like spaCy's tagger and morphologizer."""
import pytest
import spacy
from spacy.tokens import Doc, DocBin
from spacy.training import Example

from conftest import TINY_MODEL

FEATS_DATA = [
    (["I", "like", "green", "eggs"], ["PRP", "VBP", "JJ", "NNS"], ["PRON", "VERB", "ADJ", "NOUN"],
     ["Case=Nom|Number=Sing|Person=1", "Tense=Pres", "Degree=Pos", "Number=Plur"]),
    (["Eat", "blue", "ham"], ["VB", "JJ", "NN"], ["VERB", "ADJ", "NOUN"], ["Mood=Imp", "Degree=Pos", "Number=Sing"]),
    (["She", "ate", "the", "ham", "."], ["PRP", "VBD", "DT", "NN", "."], ["PRON", "VERB", "DET", "NOUN", "PUNCT"],
     ["Case=Nom|Gender=Fem", "Tense=Past", "Definite=Def", "Number=Sing", ""]),
]


def gold_examples(nlp, data=FEATS_DATA):
    return [
        Example(Doc(nlp.vocab, words=w), Doc(nlp.vocab, words=w, tags=t, pos=p, morphs=m))
        for w, t, p, m in data
    ]


def train_joint(n_iter: int = 150, data=FEATS_DATA) -> spacy.Language:
    from thinc.api import fix_random_seed

    fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("lstm_joint_tagger", config={"model": dict(TINY_MODEL)})
    examples = gold_examples(nlp, data)
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(n_iter):
        losses = {}
        nlp.update(examples, sgd=optimizer, losses=losses)
    nlp.meta["final_loss"] = losses["lstm_joint_tagger"]
    return nlp


@pytest.fixture(scope="module")
def joint_nlp():
    return train_joint()


def test_joint_tagger_overfits_tags_pos_and_feats(joint_nlp):
    tagger = joint_nlp.get_pipe("lstm_joint_tagger")
    assert joint_nlp.meta["final_loss"] < 2.0
    assert "_" in tagger.morph_labels and "Tense=Past" in tagger.morph_labels
    for words, tags, pos, morphs in FEATS_DATA:
        doc = joint_nlp(Doc(joint_nlp.vocab, words=words))
        assert [t.tag_ for t in doc] == tags
        assert [t.pos_ for t in doc] == pos
        assert [str(t.morph) for t in doc] == morphs


def test_joint_tagger_scores_like_spacy_morphologizer(joint_nlp):
    scores = joint_nlp.evaluate(gold_examples(joint_nlp))
    assert scores["tag_acc"] == scores["pos_acc"] == scores["morph_acc"] == 1.0
    assert scores["morph_per_feat"]["Tense"]["f"] == 1.0


def test_joint_tagger_roundtrip_and_meta(joint_nlp, tmp_path):
    joint_nlp.to_disk(tmp_path)
    loaded = spacy.load(tmp_path)
    assert loaded.get_pipe_meta("lstm_joint_tagger").assigns == ["token.tag", "token.pos", "token.morph"]
    assert loaded.analyze_pipes()["attrs"]["token.morph"]["assigns"] == ["lstm_joint_tagger"]
    for words, *_ in FEATS_DATA:
        a = joint_nlp(Doc(joint_nlp.vocab, words=words))
        b = loaded(Doc(loaded.vocab, words=words))
        assert [(t.tag_, t.pos_, str(t.morph)) for t in a] == [(t.tag_, t.pos_, str(t.morph)) for t in b]


def test_joint_tagger_respects_overwrite(joint_nlp):
    doc = Doc(joint_nlp.vocab, words=["Eat", "blue", "ham"])
    doc[0].set_morph("Foo=Bar")
    doc = joint_nlp(doc)
    assert str(doc[0].morph) == "Foo=Bar" and str(doc[2].morph) == "Number=Sing"


def test_missing_feats_are_ignored_and_unknown_feats_named(joint_nlp):
    tagger = joint_nlp.get_pipe("lstm_joint_tagger")
    words = ["Eat", "blue", "ham"]
    # a reference without any morph annotation: the FEATS head gets no gradient
    no_morph = Example(Doc(joint_nlp.vocab, words=words), Doc(joint_nlp.vocab, words=words, tags=["VB", "JJ", "NN"]))
    _, d_scores = tagger.get_loss([no_morph], tagger.model.predict([no_morph.predicted]))
    n_first = len(tagger.labels) + len(tagger.pos_labels)
    assert not d_scores[0][:, n_first:].any() and d_scores[0][:, : len(tagger.labels)].any()
    unknown = Example(
        Doc(joint_nlp.vocab, words=words),
        Doc(joint_nlp.vocab, words=words, tags=["VB", "JJ", "NN"], morphs=["Mood=Xyz", "", ""]),
    )
    with pytest.raises(ValueError, match="FEATS 'Mood=Xyz'"):
        tagger.get_loss([unknown], tagger.model.predict([unknown.predicted]))


def test_joint_tagger_without_feats_is_a_clear_error():
    nlp = spacy.blank("en")
    nlp.add_pipe("lstm_joint_tagger", config={"model": dict(TINY_MODEL)})
    examples = [Example.from_dict(nlp.make_doc("Eat blue ham"), {"tags": ["VB", "JJ", "NN"], "pos": ["VERB", "ADJ", "NOUN"]})]
    with pytest.raises(ValueError, match="no morphological annotation"):
        nlp.initialize(lambda: examples)


def test_empty_tags_read_back_from_a_docbin_are_missing(tmp_path):
    """UD tokens without an XPOS can have tag "" in a converted corpus: read
    back from a DocBin they are missing values (no gradient), never a label."""
    nlp = spacy.blank("en")
    nlp.add_pipe("lstm_tagger", config={"model": dict(TINY_MODEL)})
    words = ["Eat", "blue", "ham"]
    DocBin(docs=[Doc(nlp.vocab, words=words, tags=["VB", "", "NN"])]).to_disk(tmp_path / "c.spacy")
    reference = next(iter(DocBin().from_disk(tmp_path / "c.spacy").get_docs(nlp.vocab)))
    assert reference[1].tag_ == ""
    examples = [Example(Doc(nlp.vocab, words=words), reference)]
    optimizer = nlp.initialize(lambda: examples)
    tagger = nlp.get_pipe("lstm_tagger")
    assert tagger.labels == ("NN", "VB")
    _, d_scores = tagger.get_loss(examples, tagger.model.predict([examples[0].predicted]))
    assert not d_scores[0][1].any() and d_scores[0][0].any() and d_scores[0][2].any()
    nlp.update(examples, sgd=optimizer)


@pytest.mark.parametrize("crf", [False, True])
def test_a_tag_that_starts_with_neg_prefix_is_a_label(crf):
    """Irish IDT tags "!" as "!". Thinc's loss reads any truth starting with
    neg_prefix ("!") as a negative, so spaCy's tagger crashes on it with
    KeyError: ''. A known label is always itself; "!X" of a known X that is
    not itself a label still means "not X"."""
    nlp = spacy.blank("en")
    nlp.add_pipe("lstm_tagger", config={"model": {**TINY_MODEL, "crf": crf}})
    words = ["Go", "home", "!"]
    gold = [Example(Doc(nlp.vocab, words=words), Doc(nlp.vocab, words=words, tags=["VB", "NN", "!"]))]
    optimizer = nlp.initialize(lambda: gold)
    tagger = nlp.get_pipe("lstm_tagger")
    assert "!" in tagger.labels
    for _ in range(40):
        nlp.update(gold, sgd=optimizer)
    assert [t.tag_ for t in nlp(Doc(nlp.vocab, words=words))] == ["VB", "NN", "!"]
    if crf:
        return  # the CRF's gradient reaches unannotated tokens through the transitions
    # a negative: "home" is not VB; only that token gets a gradient
    negative = [Example(Doc(nlp.vocab, words=words), Doc(nlp.vocab, words=words, tags=["", "!VB", ""]))]
    _, d_scores = tagger.get_loss(negative, tagger.model.predict([negative[0].predicted]))
    assert not d_scores[0][0].any() and not d_scores[0][2].any() and d_scores[0][1].any()
