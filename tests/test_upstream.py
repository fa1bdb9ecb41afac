"""Pretrained inputs of architecture v2: an upstream tok2vec (listener or
inline) and Brown cluster features, tried on tiny pipelines."""
import gzip
import json

import numpy
import pytest
import spacy
from spacy.tokens import Doc
from thinc.api import NumpyOps, fix_random_seed

from conftest import TINY_MODEL, TRAIN_DATA, make_examples
from spacy_lstm_tagger.featurize import CLUSTER_PREFIXES, Window, cluster_rows, featurize
from spacy_lstm_tagger.model import get_torch_module
from spacy_lstm_tagger.upstream import create_cluster_lookups, pad_into_windows, unpad_from_windows

V2 = "spacy_lstm_tagger.WordCharBiLSTM.v2"
TOK2VEC_WIDTH = 24
TOK2VEC = {
    "@architectures": "spacy.HashEmbedCNN.v2", "width": TOK2VEC_WIDTH, "depth": 1, "embed_size": 300,
    "window_size": 1, "maxout_pieces": 2, "subword_features": True, "pretrained_vectors": None,
}
LISTENER = {"@architectures": "spacy.Tok2VecListener.v1", "width": TOK2VEC_WIDTH, "upstream": "*"}
TEXTS = [text for text, _ in TRAIN_DATA] + ["", "zebra eggs", "Ham ate she"]
FEATURES = dict(word_attr="NORM", n_word_rows=100, n_word_hashes=2, n_chars=300, max_word_chars=10)


def listener_nlp(frozen_tok2vec: bool = False, **model_overrides):
    nlp = spacy.blank("en")
    nlp.add_pipe("tok2vec", config={"model": TOK2VEC})
    model = {**TINY_MODEL, "@architectures": V2, "tok2vec": LISTENER, "tok2vec_proj_size": 8, **model_overrides}
    nlp.add_pipe("lstm_tagger", config={"model": model})
    return nlp


def train(nlp, n_iter=60, exclude=()):
    fix_random_seed(0)
    examples = make_examples(nlp)
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(n_iter):
        nlp.update(examples, sgd=optimizer, exclude=exclude)
    return nlp


def tags(nlp, texts=TEXTS):
    return [[t.tag_ for t in doc] for doc in nlp.pipe(texts)]


def tok2vec_weights(nlp):
    return [p.copy() for node in nlp.get_pipe("tok2vec").model.walk()
            for name in node.param_names if node.has_param(name) for p in [node.get_param(name)]]


@pytest.fixture(scope="module")
def trained_listener_nlp():
    return train(listener_nlp())


def test_listener_pipeline_overfits_and_trains_the_shared_tok2vec(trained_listener_nlp):
    nlp = trained_listener_nlp
    for text, annots in TRAIN_DATA:
        assert [t.tag_ for t in nlp(text)] == annots["tags"]
    assert nlp.get_pipe("tok2vec").listener_map == {"lstm_tagger": [nlp.get_pipe("lstm_tagger").model.get_ref("tok2vec")]}
    assert get_torch_module(nlp.get_pipe("lstm_tagger").model).upstream_proj.in_features == TOK2VEC_WIDTH


def test_gradient_reaches_the_listened_tok2vec():
    """The shared tok2vec's only gradient is the tagger's (its loss is the
    gradient's squared norm); two updates (Thinc's Adam leaves weights as
    they are on the first, for spaCy's tagger too) move its weights."""
    nlp = listener_nlp()
    examples = make_examples(nlp)
    optimizer = nlp.initialize(lambda: examples)
    before = tok2vec_weights(nlp)
    losses = {}
    for _ in range(2):
        nlp.update(examples, sgd=optimizer, losses=losses)
    after = tok2vec_weights(nlp)
    assert losses["tok2vec"] > 0
    assert any(not numpy.array_equal(b, a) for b, a in zip(before, after))


def test_frozen_tok2vec_is_not_updated_but_the_tagger_still_learns():
    nlp = listener_nlp()
    examples = make_examples(nlp)
    optimizer = nlp.initialize(lambda: examples)
    before = tok2vec_weights(nlp)
    fix_random_seed(0)
    for _ in range(60):
        # what `spacy train` does with frozen_components + annotating_components
        docs = [eg.predicted for eg in examples]
        for doc in nlp.get_pipe("tok2vec").pipe(docs):
            pass
        nlp.update(examples, sgd=optimizer, exclude=["tok2vec"])
    for b, a in zip(before, tok2vec_weights(nlp)):
        numpy.testing.assert_array_equal(b, a)
    for text, annots in TRAIN_DATA:
        assert [t.tag_ for t in nlp(text)] == annots["tags"]


def test_listener_pipeline_roundtrip_gives_the_same_scores(trained_listener_nlp, tmp_path):
    nlp = trained_listener_nlp
    nlp.to_disk(tmp_path)
    loaded = spacy.load(tmp_path)
    assert tags(loaded) == tags(nlp)
    docs = [nlp.make_doc(t) for t in TEXTS]
    expected = nlp.get_pipe("lstm_tagger").model.predict(list(nlp.get_pipe("tok2vec").pipe([d.copy() for d in docs])))
    got = loaded.get_pipe("lstm_tagger").model.predict(list(loaded.get_pipe("tok2vec").pipe([d.copy() for d in docs])))
    for e, g in zip(expected, got):
        numpy.testing.assert_allclose(e, g, rtol=1e-5, atol=1e-6)
    from_bytes = spacy.blank("en").from_config(nlp.config).from_bytes(nlp.to_bytes())
    assert tags(from_bytes) == tags(nlp)


def test_inline_tok2vec_trains_and_roundtrips(tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("lstm_tagger", config={"model": {**TINY_MODEL, "@architectures": V2, "tok2vec": TOK2VEC,
                                                  "tok2vec_proj_size": 8}})
    train(nlp)
    for text, annots in TRAIN_DATA:
        assert [t.tag_ for t in nlp(text)] == annots["tags"]
    nlp.to_disk(tmp_path)
    assert tags(spacy.load(tmp_path)) == tags(nlp)


def test_v2_without_upstream_inputs_matches_v1_scores():
    """v2 with its new inputs off is the v1 model: same weights, same scores."""
    scores = {}
    same = {"n_chars": 1024, "max_word_chars": 16}  # v1 and v2 default these differently
    no_affixes = {"n_prefixes": 0, "n_suffixes": 0, "use_shape": False}
    for arch, extra in (("spacy_lstm_tagger.WordCharBiLSTM.v1", same), (V2, {**same, **no_affixes})):
        fix_random_seed(0)
        nlp = spacy.blank("en")
        nlp.add_pipe("lstm_tagger", config={"model": {**TINY_MODEL, "@architectures": arch, **extra}})
        nlp.initialize(lambda: make_examples(nlp))
        scores[arch] = nlp.get_pipe("lstm_tagger").model.predict([nlp.make_doc(t) for t in TEXTS if t])
    for a, b in zip(*scores.values()):
        numpy.testing.assert_array_equal(a, b)


def test_spacy_train_with_a_listener_config(tmp_path):
    from spacy.cli.train import train as spacy_train
    from spacy.tokens import DocBin

    nlp = spacy.blank("en")
    DocBin(docs=[eg.reference for eg in make_examples(nlp)]).to_disk(tmp_path / "train.spacy")
    config = listener_nlp().config
    config["paths"]["train"] = config["paths"]["dev"] = str(tmp_path / "train.spacy")
    config["corpora"] = {
        "train": {"@readers": "spacy.Corpus.v1", "path": "${paths.train}"},
        "dev": {"@readers": "spacy.Corpus.v1", "path": "${paths.dev}"},
    }
    config["training"].update({"max_steps": 40, "eval_frequency": 20, "dropout": 0.0,
                               "score_weights": {"tag_acc": 1.0}})
    config.to_disk(tmp_path / "config.cfg")
    spacy_train(tmp_path / "config.cfg", tmp_path / "out", use_gpu=-1)
    loaded = spacy.load(tmp_path / "out" / "model-last")
    assert loaded.pipe_names == ["tok2vec", "lstm_tagger"]
    assert loaded.get_pipe("tok2vec").listener_map["lstm_tagger"]
    assert [t.tag_ for t in loaded(TRAIN_DATA[0][0])] == TRAIN_DATA[0][1]["tags"]


def test_tok2vec_width_mismatch_is_a_clear_error(trained_listener_nlp):
    model = trained_listener_nlp.get_pipe("lstm_tagger").model
    docs = [trained_listener_nlp.make_doc("I like eggs")]
    with pytest.raises(ValueError, match="width 5, but the tagger was trained with width 24"):
        model.get_ref("torch")((docs, [numpy.zeros((3, 5), dtype="float32")]), False)


def test_bad_tok2vec_settings_are_rejected():
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="tok2vec_proj_size"):
        nlp.add_pipe("lstm_tagger", config={"model": {"@architectures": V2, "tok2vec": TOK2VEC, "tok2vec_proj_size": 0}})


def test_windows_pad_and_unpad_sum_the_gradient_of_overlapping_windows():
    windows = [Window(0, 0, 4, 0, 2), Window(0, 1, 5, 2, 5), Window(1, 0, 2, 0, 2)]
    tokvecs = [numpy.arange(10, dtype="float32").reshape(5, 2), numpy.ones((2, 2), dtype="float32")]
    padded = pad_into_windows(tokvecs, windows, 4)
    numpy.testing.assert_array_equal(padded[1, :4], tokvecs[0][1:5])
    assert not padded[2, 2:].any()
    d_tokvecs = unpad_from_windows(numpy.ones_like(padded), windows, tokvecs, NumpyOps())
    numpy.testing.assert_array_equal(d_tokvecs[0][:, 0], [1, 2, 2, 2, 1])
    numpy.testing.assert_array_equal(d_tokvecs[1], numpy.ones((2, 2)))


def test_short_tok2vec_output_is_a_clear_error():
    with pytest.raises(ValueError, match="gave 2 rows for a Doc of at least 3 tokens"):
        pad_into_windows([numpy.zeros((2, 4), dtype="float32")], [Window(0, 0, 3, 0, 3)], 3)


# Brown clusters

CLUSTERS = {"the": 11, "The": 30, "eggs": 37, "ham": 37 | (1 << 12), "like": 5, "ate": 6}


@pytest.fixture
def cluster_file(tmp_path):
    path = tmp_path / "en_lexeme_cluster.json.gz"
    path.write_bytes(gzip.compress(json.dumps(CLUSTERS).encode("utf8")))
    return path


def test_cluster_lookups_read_spacy_lookups_data_files(cluster_file):
    table = create_cluster_lookups(cluster_file).get_table("lexeme_cluster")
    assert table["eggs"] == 37
    nlp = spacy.blank("en")
    nlp.vocab.lookups = create_cluster_lookups(cluster_file)
    assert nlp("eggs")[0].cluster == 37  # spaCy's own Token.cluster reads the same table


def test_cluster_rows_share_prefixes_and_fall_back_to_lowercase(cluster_file):
    table = create_cluster_lookups(cluster_file).get_table("lexeme_cluster")
    rows = cluster_rows(["eggs", "ham", "EGGS", "zebra", "The", "the"], table, 4096)
    assert rows.shape == (6, len(CLUSTER_PREFIXES))
    # ham's path differs from eggs' only in bit 12: same 4-, 6-, 10-bit prefixes
    assert (rows[0, :3] == rows[1, :3]).all() and rows[0, 3] != rows[1, 3]
    assert (rows[2] == rows[0]).all()  # unknown casing -> lowercase form's cluster
    assert not (rows[4] == rows[5]).all()  # a cased entry wins over the lowercase one


def test_missing_cluster_table_is_a_clear_error():
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="no 'lexeme_cluster' lookups table"):
        featurize([nlp("eggs")], n_cluster_rows=16, max_window=8, window_context=2, **FEATURES)
    nlp.add_pipe("lstm_tagger", config={"model": {**TINY_MODEL, "@architectures": V2, "cluster_embed_size": 4}})
    with pytest.raises(ValueError, match="initialize.lookups"):
        nlp.initialize(lambda: make_examples(nlp))


def test_missing_cluster_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="prepare_pretrained.py"):
        create_cluster_lookups(tmp_path / "nope.json.gz")


def test_tagger_with_clusters_learns_and_keeps_the_table_when_saved(cluster_file, tmp_path):
    fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.vocab.lookups = create_cluster_lookups(cluster_file)
    nlp.add_pipe("lstm_tagger", config={"model": {**TINY_MODEL, "@architectures": V2, "cluster_embed_size": 4,
                                                  "n_cluster_rows": 64}})
    train(nlp)
    module = get_torch_module(nlp.get_pipe("lstm_tagger").model)
    assert module.cluster_embed.weight.shape == (64, 4)
    for text, annots in TRAIN_DATA:
        assert [t.tag_ for t in nlp(text)] == annots["tags"]
    nlp.to_disk(tmp_path)
    loaded = spacy.load(tmp_path)
    assert loaded.vocab.lookups.get_table("lexeme_cluster")["eggs"] == 37
    docs = [Doc(nlp.vocab, words=["ham", "eggs"])]
    numpy.testing.assert_allclose(
        loaded.get_pipe("lstm_tagger").model.predict([Doc(loaded.vocab, words=["ham", "eggs"])])[0],
        nlp.get_pipe("lstm_tagger").model.predict(docs)[0], rtol=1e-5, atol=1e-6,
    )
