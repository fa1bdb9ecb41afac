"""Probabilities API: per-component extension names, a type that survives a
DocBin round trip, the full distribution, and the settings in the shipped configs."""
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.tokens import DocBin, Token
from thinc.api import Config

from conftest import TINY_MODEL, TRAIN_DATA, train_pipeline

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def two_tagger_nlp(**second):
    """Two tiny lstm_taggers trained on the same data; the second one with
    ``second`` as its component settings."""
    nlp = spacy.blank("en")
    nlp.add_pipe("lstm_tagger", name="a", config={"model": TINY_MODEL, "store_probabilities": True})
    nlp.add_pipe("lstm_tagger", name="b", config={"model": TINY_MODEL, "overwrite": True, **second})
    return train_pipeline(nlp, 40)


def test_two_components_keep_their_own_probabilities():
    nlp = two_tagger_nlp(store_probabilities=True, n_alternatives=1,
                         prob_attr="b_prob", alternatives_attr="b_alternatives")
    assert Token.has_extension("b_prob") and Token.has_extension("b_alternatives")
    doc = nlp("I like green eggs")
    expected = {name: nlp.get_pipe(name).tag_probabilities([nlp.make_doc(doc.text)])[0] for name in ("a", "b")}
    labels = nlp.get_pipe("a").labels
    assert nlp.get_pipe("b").labels == labels
    for i, token in enumerate(doc):
        best_a = int(numpy.argmax(expected["a"][i]))
        assert token._.tag_alternatives[0] == (labels[best_a], pytest.approx(float(expected["a"][i, best_a])))
        assert len(token._.tag_alternatives) == 3 and len(token._.b_alternatives) == 1
        best_b = int(numpy.argmax(expected["b"][i]))
        assert token._.b_alternatives == ((labels[best_b], pytest.approx(float(expected["b"][i, best_b]))),)
        assert token._.b_prob == pytest.approx(float(expected["b"][i, labels.index(token.tag_)]))
    # the two models differ (different random init), so the values are really each component's own
    assert not numpy.allclose(expected["a"], expected["b"])


def test_same_extension_names_on_two_probability_components_is_an_error():
    nlp = spacy.blank("en")
    nlp.add_pipe("lstm_tagger", name="a", config={"store_probabilities": True})
    with pytest.raises(ValueError, match="already writes token._.tag_alternatives"):
        nlp.add_pipe("lstm_tagger", name="b", config={"store_probabilities": True})
    nlp.add_pipe("lstm_tagger", name="c", config={"prob_attr": "c_prob", "alternatives_attr": "c_alt",
                                                  "store_probabilities": True})


@pytest.mark.parametrize("setting,value", [("prob_attr", "not a name"), ("alternatives_attr", "tag_prob")])
def test_bad_extension_names(setting, value):
    with pytest.raises(ValueError, match="identifier|must differ"):
        spacy.blank("en").add_pipe("lstm_tagger", config={setting: value})


def test_alternatives_type_is_the_same_after_a_docbin_round_trip(trained_nlp):
    pipe = trained_nlp.get_pipe("lstm_tagger")
    pipe.store_probabilities = True
    try:
        doc = trained_nlp("She ate the ham quickly")
    finally:
        pipe.store_probabilities = False
    db = DocBin(store_user_data=True)
    db.add(doc)
    restored = list(DocBin().from_bytes(db.to_bytes()).get_docs(trained_nlp.vocab))[0]
    for before, after in zip(doc, restored):
        assert type(before._.tag_alternatives) is type(after._.tag_alternatives) is tuple
        assert type(before._.tag_alternatives[0]) is type(after._.tag_alternatives[0]) is tuple
        assert before._.tag_alternatives == after._.tag_alternatives
        assert before._.tag_prob == after._.tag_prob


def test_full_distribution(trained_nlp):
    pipe = trained_nlp.get_pipe("lstm_tagger")
    docs = [trained_nlp.make_doc(text) for text, _ in TRAIN_DATA] + [trained_nlp.make_doc("")]
    dists = pipe.tag_probabilities(docs)
    assert [d.shape for d in dists] == [(len(doc), len(pipe.labels)) for doc in docs]
    for dist, (_, annots) in zip(dists, TRAIN_DATA):
        numpy.testing.assert_allclose(dist.sum(axis=1), 1.0, rtol=1e-5)
        assert [pipe.labels[i] for i in dist.argmax(axis=1)] == annots["tags"]
    assert not pipe.store_probabilities  # unchanged, and nothing was written
    assert all(t._.tag_prob is None and not t.tag_ for t in docs[0])


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("lstm_*.cfg")))
def test_shipped_configs_show_the_probability_settings(name):
    components = Config().from_disk(CONFIGS / name, interpolate=False)["components"]
    component = components.get("lstm_tagger") or components["lstm_joint_tagger"]
    assert component["store_probabilities"] is False and component["n_alternatives"] == 3
    assert (component["prob_attr"], component["alternatives_attr"]) == ("tag_prob", "tag_alternatives")
