"""Ensembles (spacy_lstm_tagger/ensemble.py): several trained taggers in one
component, tagging with the mean of their probabilities."""
import numpy
import pytest
import spacy
from spacy.training import Example
from typer.testing import CliRunner

from conftest import TINY_MODEL, TRAIN_DATA, new_pipeline, train_tiny
from spacy_lstm_tagger import assemble_ensemble
from spacy_lstm_tagger.cli import app
from spacy_lstm_tagger.ensemble import build_ensemble
from spacy_lstm_tagger.model import build_wordchar_bilstm_tagger_v2, clear_char_caches

TEXTS = [text for text, _ in TRAIN_DATA] + ["Completely unseen words , here", ""]
POS_DATA = [
    ("I like green eggs", {"tags": ["PRP", "VBP", "JJ", "NNS"], "pos": ["PRON", "VERB", "ADJ", "NOUN"]}),
    ("Eat blue ham", {"tags": ["VB", "JJ", "NN"], "pos": ["VERB", "ADJ", "NOUN"]}),
]


@pytest.fixture(scope="module")
def member_dirs(tmp_path_factory):
    """Two tiny taggers trained on the same data with different seeds, on disk
    (a few steps only: their probabilities must differ for the mean to show)."""
    root = tmp_path_factory.mktemp("members")
    paths = []
    for seed in (0, 1):
        path = root / f"seed{seed}"
        train_tiny(n_iter=8, seed=seed).to_disk(path)
        paths.append(path)
    return paths


def probabilities(nlp, texts=TEXTS):
    return nlp.get_pipe("lstm_tagger").tag_probabilities(nlp.pipe(texts))


def test_an_ensemble_tags_with_the_mean_of_its_members_probabilities(member_dirs, tmp_path):
    members = [spacy.load(path) for path in member_dirs]
    per_member = [probabilities(nlp) for nlp in members]
    assert not numpy.allclose(per_member[0][0], per_member[1][0], atol=1e-3)  # the mean is not trivial
    assemble_ensemble(member_dirs).to_disk(tmp_path / "ensemble")
    ensemble = spacy.load(tmp_path / "ensemble")
    labels = ensemble.get_pipe("lstm_tagger").labels
    for text, mine, a, b in zip(TEXTS, probabilities(ensemble), *per_member):
        assert mine.shape == (len(ensemble.make_doc(text)), len(labels))
        numpy.testing.assert_allclose(mine, (a + b) / 2, atol=1e-6)
        assert [t.tag_ for t in ensemble(text)] == [labels[i] for i in mine.argmax(axis=1)]
    assert [m["source"] for m in ensemble.meta["lstm_tagger_ensemble"]["members"]] == [str(p) for p in member_dirs]
    # bytes round trip, and both members' caches are found and emptied
    again = spacy.blank("en").from_config(ensemble.config).from_bytes(ensemble.to_bytes())
    for mine, theirs in zip(probabilities(again), probabilities(ensemble)):
        numpy.testing.assert_array_equal(mine, theirs)
    assert clear_char_caches(ensemble.get_pipe("lstm_tagger").model) == 2


def test_an_ensemble_stores_probabilities_and_averages_the_joint_pos_head(tmp_path):
    members = [train_tiny(n_iter=8, data=POS_DATA, seed=seed, factory="lstm_joint_tagger", joint_morph="auto")
               for seed in (0, 1)]
    nlp = assemble_ensemble(members)
    nlp.get_pipe("lstm_tagger").store_probabilities = True
    doc = nlp("I like ham")
    assert [t.pos_ for t in doc] and all(t.pos_ for t in doc)
    assert all(0.0 < t._.tag_prob <= 1.0 for t in doc)
    pipe = nlp.get_pipe("lstm_tagger")
    scores = pipe.model.predict([nlp.make_doc("I like ham")])[0]
    singles = [m.get_pipe("lstm_tagger").model.predict([m.make_doc("I like ham")])[0] for m in members]
    numpy.testing.assert_allclose(scores, (singles[0] + singles[1]) / 2, atol=1e-6)
    n_tags = len(pipe.labels)
    numpy.testing.assert_allclose(scores[:, :n_tags].sum(axis=1), 1.0, atol=1e-5)
    numpy.testing.assert_allclose(scores[:, n_tags:].sum(axis=1), 1.0, atol=1e-5)
    nlp.to_disk(tmp_path / "joint")
    assert [t.pos_ for t in spacy.load(tmp_path / "joint")("I like ham")] == [t.pos_ for t in doc]


def test_an_ensemble_is_not_trained_but_says_how_to_build_one(member_dirs):
    nlp = assemble_ensemble(member_dirs)
    examples = [Example.from_dict(nlp.make_doc(t), a) for t, a in TRAIN_DATA]
    with pytest.raises(ValueError, match="cannot be trained.*spacy_lstm_tagger ensemble"):
        nlp.update(examples, sgd=nlp.create_optimizer())
    # evaluating (what spacy train does with a frozen ensemble) works
    assert nlp.evaluate(examples)["tag_acc"] is not None


def test_an_ensemble_config_builds_initializes_and_tags_untrained():
    member = {"@architectures": "spacy_lstm_tagger.WordCharBiLSTM.v2", **TINY_MODEL}
    nlp = spacy.blank("en")
    nlp.add_pipe("lstm_tagger", config={"model": {
        "@architectures": "spacy_lstm_tagger.Ensemble.v1", "*": {"member0": member, "member1": dict(member)}}})
    examples = [Example.from_dict(nlp.make_doc(t), a) for t, a in TRAIN_DATA]
    nlp.initialize(lambda: examples)
    labels = nlp.get_pipe("lstm_tagger").labels
    for layer in nlp.get_pipe("lstm_tagger").model.layers:
        assert layer.get_dim("nO") == len(labels)
    assert all(t.tag_ in labels for t in nlp("She ate green ham"))
    assert len(nlp("")) == 0


def test_ensemble_members_must_agree(member_dirs, tmp_path):
    with pytest.raises(ValueError, match="at least two"):
        assemble_ensemble(member_dirs[:1])
    other_labels = train_tiny(n_iter=1, data=TRAIN_DATA[:2])
    with pytest.raises(ValueError, match="other tag labels"):
        assemble_ensemble([member_dirs[0], other_labels])
    crf = train_tiny(n_iter=1, crf=True)
    with pytest.raises(ValueError, match="crf = true"):
        assemble_ensemble([member_dirs[0], crf])
    with pytest.raises(ValueError, match="not a trained spaCy pipeline directory"):
        assemble_ensemble([member_dirs[0], tmp_path / "missing"])
    dutch = spacy.blank("nl")
    dutch.add_pipe("lstm_tagger", config={"model": TINY_MODEL})
    dutch.initialize(lambda: [Example.from_dict(dutch.make_doc(t), a) for t, a in TRAIN_DATA])
    with pytest.raises(ValueError, match="language 'nl'"):
        assemble_ensemble([member_dirs[0], dutch])
    nested = assemble_ensemble(member_dirs)
    with pytest.raises(ValueError, match="itself an ensemble"):
        assemble_ensemble([member_dirs[0], nested])
    no_tagger = spacy.blank("en")
    with pytest.raises(ValueError, match="no component 'lstm_tagger'"):
        assemble_ensemble([member_dirs[0], no_tagger])
    with pytest.raises(ValueError, match="Unknown ensemble member settings"):
        assemble_ensemble(member_dirs, settings={"dropout": 0.1})
    with pytest.raises(ValueError, match="at most one"):
        assemble_ensemble(member_dirs, settings={"bfloat16": True, "quantize": True})


def test_build_ensemble_refuses_what_cannot_be_averaged():
    member = lambda **kw: build_wordchar_bilstm_tagger_v2(**{**TINY_MODEL, **kw})  # noqa: E731
    with pytest.raises(ValueError, match="at least two member models"):
        build_ensemble(member())
    with pytest.raises(ValueError, match="member 1 must be a spacy_lstm_tagger.WordCharBiLSTM"):
        from thinc.api import Linear

        build_ensemble(member(), Linear())
    with pytest.raises(ValueError, match="member 1 has crf = true"):
        build_ensemble(member(), member(crf=True))
    with pytest.raises(ValueError, match="same heads"):
        build_ensemble(member(), member(joint_pos=True))
    with pytest.raises(ValueError, match="different numbers of labels"):
        build_ensemble(member(nO=3), member(nO=4))


def test_an_edited_label_list_is_caught_for_every_member(member_dirs, tmp_path):
    import srsly

    assemble_ensemble(member_dirs).to_disk(tmp_path / "ensemble")
    cfg_path = tmp_path / "ensemble" / "lstm_tagger" / "cfg"
    cfg = srsly.read_json(cfg_path)
    cfg["labels"] = cfg["labels"][1:] + cfg["labels"][:1]
    srsly.write_json(cfg_path, cfg)
    with pytest.raises(ValueError, match="not the ones the weights were trained with"):
        spacy.load(tmp_path / "ensemble")


def test_the_ensemble_command_writes_a_pipeline_and_sets_the_members_precision(member_dirs, tmp_path):
    out = tmp_path / "nested" / "ensemble"
    result = CliRunner().invoke(app, ["ensemble", *map(str, member_dirs), "--output", str(out), "--precision", "bfloat16"])
    assert result.exit_code == 0, result.output
    nlp = spacy.load(out)
    members = nlp.config["components"]["lstm_tagger"]["model"]["*"]
    assert [m["bfloat16"] for m in members.values()] == [True, True]
    assert all(t.tag_ for t in nlp("She ate green ham"))
    result = CliRunner().invoke(app, ["ensemble", str(member_dirs[0]), "--output", str(tmp_path / "one")])
    assert result.exit_code == 1 and "at least two" in result.output


def test_members_keep_their_own_sizes(member_dirs):
    """Members may differ in size (e.g. the efficiency and accuracy configs)."""
    bigger = new_pipeline(hidden_size=24)
    for _ in range(8):
        bigger.nlp.update(bigger.examples, sgd=bigger.optimizer)
    nlp = assemble_ensemble([member_dirs[0], bigger.nlp])
    sizes = [m["hidden_size"] for m in nlp.config["components"]["lstm_tagger"]["model"]["*"].values()]
    assert sizes == [TINY_MODEL["hidden_size"], 24]
    expected = (probabilities(spacy.load(member_dirs[0]))[0] + probabilities(bigger.nlp)[0]) / 2
    numpy.testing.assert_allclose(probabilities(nlp)[0], expected, atol=1e-6)


def test_members_that_read_static_vectors_must_share_them():
    """The ensemble keeps one vocab (the first member's): a member trained on
    other vectors would silently read the wrong ones."""
    from conftest import train_pipeline

    def with_vectors(seed: int):
        nlp = spacy.blank("en")
        rng = numpy.random.default_rng(seed)
        for word in ["I", "like", "green", "eggs", "ham"]:
            nlp.vocab.set_vector(word, rng.normal(size=4).astype("float32"))
        nlp.add_pipe("lstm_tagger", config={"model": {**TINY_MODEL, "include_static_vectors": True}})
        return train_pipeline(nlp, 2)

    same_a, same_b, other = with_vectors(0), with_vectors(0), with_vectors(1)
    nlp = assemble_ensemble([same_a, same_b])
    numpy.testing.assert_array_equal(nlp.vocab.vectors.data, same_a.vocab.vectors.data)
    assert all(t.tag_ for t in nlp("I like green ham"))
    with pytest.raises(ValueError, match="static vectors that differ"):
        assemble_ensemble([same_a, other])


def test_an_ensemble_pipeline_can_teach_a_student(member_dirs, tmp_path):
    """Saved, an ensemble is one teacher path whose probabilities are its mean."""
    from spacy_lstm_tagger.distill import attach

    assemble_ensemble(member_dirs).to_disk(tmp_path / "ensemble")
    teacher = spacy.load(tmp_path / "ensemble")
    student = new_pipeline()
    attach(student.tagger, teacher, 1.0)
    docs = [student.nlp.make_doc(text) for text, _ in TRAIN_DATA]
    taught = student.tagger.teacher.probabilities(docs, tuple(student.tagger.labels))
    assert tuple(teacher.get_pipe("lstm_tagger").labels) == tuple(student.tagger.labels)
    for mine, expected in zip(taught, probabilities(teacher, [text for text, _ in TRAIN_DATA])):
        numpy.testing.assert_allclose(mine, expected, atol=1e-6)


def test_a_precision_setting_replaces_a_members_own(member_dirs):
    int8_member = spacy.load(member_dirs[1], config={"components": {"lstm_tagger": {"model": {"quantize": True}}}})
    kept = assemble_ensemble([member_dirs[0], int8_member])
    members = list(kept.config["components"]["lstm_tagger"]["model"]["*"].values())
    assert [(m["quantize"], m["bfloat16"]) for m in members] == [(False, False), (True, False)]
    switched = assemble_ensemble([member_dirs[0], int8_member], settings={"bfloat16": "auto"})
    members = list(switched.config["components"]["lstm_tagger"]["model"]["*"].values())
    assert [(m["quantize"], m["bfloat16"]) for m in members] == [(False, "auto"), (False, "auto")]
    assert all(t.tag_ for t in switched("I like green eggs"))


def test_spacy_train_keeps_a_sourced_frozen_ensemble(member_dirs, tmp_path):
    """What the not-trainable error suggests: source the ensemble, freeze
    it, and train other components beside it."""
    from spacy.cli.train import train
    from spacy.tokens import DocBin
    from spacy.util import load_config_from_str

    assemble_ensemble(member_dirs).to_disk(tmp_path / "ensemble")
    nlp = spacy.blank("en")
    docs = DocBin(docs=[Example.from_dict(nlp.make_doc(t), a).reference for t, a in TRAIN_DATA])
    docs.to_disk(tmp_path / "train.spacy")
    config = spacy.util.load_model_from_config(load_config_from_str(f"""
[nlp]
lang = "en"
pipeline = ["lstm_tagger", "senter"]
[components]
[components.lstm_tagger]
source = "{tmp_path / 'ensemble'}"
[components.senter]
factory = "senter"
"""), auto_fill=True).config
    config["components"]["lstm_tagger"] = {"source": str(tmp_path / "ensemble")}
    config["paths"]["train"] = config["paths"]["dev"] = str(tmp_path / "train.spacy")
    config["corpora"] = {name: {"@readers": "spacy.Corpus.v1", "path": "${paths.train}"} for name in ("train", "dev")}
    config["training"].update({"frozen_components": ["lstm_tagger"], "max_steps": 2, "eval_frequency": 1,
                               "score_weights": {"tag_acc": 1.0}})
    config.to_disk(tmp_path / "config.cfg")
    train(tmp_path / "config.cfg", tmp_path / "out")
    trained = spacy.load(tmp_path / "out" / "model-last")
    # the same input for both: without the senter's sentence boundaries, which the tagger reads
    with trained.select_pipes(enable=["lstm_tagger"]):
        mine_all = probabilities(trained)
    for mine, theirs in zip(mine_all, probabilities(spacy.load(tmp_path / "ensemble"))):
        numpy.testing.assert_array_equal(mine, theirs)
