"""The lstm_tagger component: learning, spaCy Tagger behaviour, serialization,
batching, averaging and dropout (issue: core component)."""
import json
import subprocess
import sys
import textwrap

import numpy
import pytest
import spacy
import torch
from spacy.tokens import Doc
from spacy.training import Example
from thinc.api import Adam

from conftest import TINY_MODEL, TRAIN_DATA, train_tiny
from spacy_lstm_tagger.model import get_torch_module

TEST_TEXTS = [text for text, _ in TRAIN_DATA] + ["", "green ham", "I", "They ate the blue eggs quickly"]


def tags(nlp, texts=TEST_TEXTS):
    return [[t.tag_ for t in doc] for doc in nlp.pipe(texts)]


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_overfitting_learns_training_tags_exactly(trained_nlp):
    for text, annots in TRAIN_DATA:
        assert [t.tag_ for t in trained_nlp(text)] == annots["tags"]


@pytest.mark.parametrize("crf", [False, True])
def test_overfitting_IO(new_tagger, crf):
    """spaCy's test_overfitting_IO: the loss goes to ~0, unseen sentences made
    of seen words are tagged right, and a negative label unlearns a tag."""
    setup = new_tagger(crf=crf)
    nlp, examples = setup.nlp, setup.examples
    optimizer = Adam(0.01)
    for _ in range(50):
        losses = {}
        nlp.update(examples, sgd=optimizer, losses=losses)
    # 16 tokens: at the start the loss is ~35 (16 * ln 9)
    assert losses["lstm_tagger"] < 0.05
    unseen = {"I like blue eggs": ["PRP", "VBP", "JJ", "NNS"], "They ate green ham": ["PRP", "VBD", "JJ", "NN"]}
    for text, gold in unseen.items():
        assert [t.tag_ for t in nlp(text)] == gold
    negative = Example.from_dict(nlp.make_doc("I like blue eggs"), {"tags": ["!PRP", "VBP", "JJ", "NNS"]})
    for _ in range(20):
        nlp.update([negative], sgd=optimizer)
    tags = [t.tag_ for t in nlp("I like blue eggs")]
    assert tags[0] != "PRP"
    assert tags[1:] == ["VBP", "JJ", "NNS"]


def test_factory_meta():
    nlp = spacy.blank("en")
    tagger = nlp.add_pipe("lstm_tagger")
    meta = nlp.get_pipe_meta("lstm_tagger")
    assert meta.assigns == ["token.tag"]
    assert meta.default_score_weights == {"tag_acc": 1.0}
    assert isinstance(tagger, spacy.pipeline.Tagger)


def test_entry_point_without_import():
    out = run_python(
        """
        import spacy  # and nothing of ours: spaCy finds us through entry points
        nlp = spacy.blank("en")
        pipe = nlp.add_pipe("lstm_tagger")
        print(type(pipe).__module__)
        print(spacy.registry.architectures.get("spacy_lstm_tagger.WordCharBiLSTM.v1").__name__)
        """
    )
    assert out.split() == ["spacy_lstm_tagger.component", "build_wordchar_bilstm_tagger"]


def test_roundtrip_disk_and_bytes_in_fresh_process(trained_nlp, tmp_path):
    expected = tags(trained_nlp)
    trained_nlp.to_disk(tmp_path / "pipeline")
    (tmp_path / "pipeline.bin").write_bytes(trained_nlp.get_pipe("lstm_tagger").to_bytes())
    out = run_python(
        f"""
        import json, spacy
        texts = {TEST_TEXTS!r}
        nlp = spacy.load({str(tmp_path / "pipeline")!r})
        from_disk = [[t.tag_ for t in d] for d in nlp.pipe(texts)]
        nlp2 = spacy.blank("en")
        nlp2.add_pipe("lstm_tagger", config={{"model": {TINY_MODEL!r}}})
        nlp2.get_pipe("lstm_tagger").from_bytes(open({str(tmp_path / "pipeline.bin")!r}, "rb").read())
        from_bytes = [[t.tag_ for t in d] for d in nlp2.pipe(texts)]
        print(json.dumps([from_disk, from_bytes]))
        """
    )
    import json

    from_disk, from_bytes = json.loads(out)
    assert from_disk == expected
    assert from_bytes == expected


def test_roundtrip_bytes_is_bit_identical(trained_nlp, new_tagger):
    data = trained_nlp.to_bytes()
    nlp = new_tagger(initialize=False).nlp
    nlp.from_bytes(data)
    assert nlp.to_bytes() == data
    assert tags(nlp) == tags(trained_nlp)


def test_roundtrip_disk_same_process(trained_nlp, tmp_path):
    trained_nlp.to_disk(tmp_path)
    nlp = spacy.load(tmp_path)
    assert tags(nlp) == tags(trained_nlp)
    assert nlp.get_pipe("lstm_tagger").labels == trained_nlp.get_pipe("lstm_tagger").labels


def test_mixed_batch_with_empty_docs(trained_nlp):
    texts = ["", "I like green eggs", "", "", "Eat blue ham", ""]
    docs = list(trained_nlp.pipe(texts, batch_size=6))
    assert [len(d) for d in docs] == [0, 4, 0, 0, 3, 0]
    assert [t.tag_ for t in docs[1]] == TRAIN_DATA[0][1]["tags"]
    assert list(trained_nlp.pipe(["", ""])) and all(len(d) == 0 for d in trained_nlp.pipe(["", ""]))


def test_pipe_equals_call_and_batch_size_invariance(trained_nlp):
    one_by_one = [[t.tag_ for t in trained_nlp(text)] for text in TEST_TEXTS]
    for batch_size in (1, 2, 3, 100):
        assert [[t.tag_ for t in d] for d in trained_nlp.pipe(TEST_TEXTS, batch_size=batch_size)] == one_by_one


def test_scores_batch_size_invariant(trained_nlp):
    model = trained_nlp.get_pipe("lstm_tagger").model
    docs = [trained_nlp.make_doc(t) for t in TEST_TEXTS]
    together = model.predict(docs)
    for doc, scores in zip(docs, together):
        alone = model.predict([doc])[0]
        numpy.testing.assert_allclose(alone, scores, rtol=1e-5, atol=1e-6)
        if len(doc):
            numpy.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)


def test_partial_annotation_missing_tags_are_ignored(new_tagger):
    setup = new_tagger(TRAIN_DATA[:1])
    nlp, tagger = setup.nlp, setup.tagger
    partial = Example.from_dict(nlp.make_doc("I like green eggs"), {"tags": ["PRP", "", "JJ", ""]})
    scores = tagger.model.predict([partial.predicted])
    loss, d_scores = tagger.get_loss([partial], scores)
    assert not d_scores[0][1].any() and not d_scores[0][3].any()
    assert d_scores[0][0].any() and d_scores[0][2].any()
    # and training on partial data works end to end
    optimizer = nlp.resume_training()
    nlp.update([partial], sgd=optimizer)


def test_no_labels_gives_clear_error(new_tagger):
    with pytest.raises(ValueError, match="no labels|E143"):
        new_tagger([("a b", {})])


def test_explicit_labels_and_add_label(new_tagger):
    setup = new_tagger(initialize=False)
    nlp, tagger, examples = setup.nlp, setup.tagger, setup.examples
    labels = ["DT", "JJ", "NN", "NNS", "PRP", "RB", "VB", "VBD", "VBP", "XX"]
    # what `spacy init labels` + [initialize.components.lstm_tagger] labels do
    nlp.config["initialize"]["components"]["lstm_tagger"] = {"labels": labels}
    nlp.initialize(lambda: examples)
    assert tagger.labels == tuple(labels)
    assert tagger.model.get_dim("nO") == len(labels)
    with pytest.raises(ValueError):
        tagger.add_label("NEW")  # the output layer is sized: like spaCy's tagger
    assert tagger.add_label("JJ") == 0


@pytest.mark.parametrize("overwrite", [False, True])
def test_overwrite(trained_nlp, overwrite):
    tagger = trained_nlp.get_pipe("lstm_tagger")
    old = tagger.cfg["overwrite"]
    tagger.cfg["overwrite"] = overwrite
    try:
        doc = trained_nlp.make_doc("I like green eggs")
        doc[0].tag_ = "PRESET"
        doc = tagger(doc)
        assert doc[0].tag_ == ("PRP" if overwrite else "PRESET")
        assert [t.tag_ for t in doc[1:]] == ["VBP", "JJ", "NNS"]
    finally:
        tagger.cfg["overwrite"] = old


@pytest.mark.parametrize("overwrite", [False, True])
def test_set_annotations_writes_what_spacys_tagger_writes(trained_nlp, overwrite):
    """The one-array-per-Doc tag writer against spaCy's own per-token loop,
    with preset tags, an empty Doc and every label."""
    from spacy.pipeline import Tagger

    tagger = trained_nlp.get_pipe("lstm_tagger")
    old = tagger.cfg["overwrite"]
    tagger.cfg["overwrite"] = overwrite
    rng = numpy.random.default_rng(0)
    texts = ["I like green eggs", "", "Eat blue ham now please", "ok"]
    guesses = [rng.integers(0, len(tagger.labels), len(text.split())) for text in texts]

    def annotate(set_annotations):
        docs = [trained_nlp.make_doc(text) for text in texts]
        docs[0][1].tag_ = "PRESET"
        set_annotations(docs, guesses)
        return [[t.tag_ for t in doc] for doc in docs]

    try:
        ours = annotate(tagger.set_annotations)
        assert ours == annotate(lambda docs, g: Tagger.set_annotations(tagger, docs, g))
        assert (ours[0][1] == "PRESET") != overwrite
        assert ours[2] == [tagger.labels[i] for i in guesses[2]]
    finally:
        tagger.cfg["overwrite"] = old


def test_label_smoothing_and_neg_prefix_reach_the_loss(new_tagger):
    setup = new_tagger(component={"label_smoothing": 0.2, "neg_prefix": "NOT_"})
    nlp, tagger, examples = setup.nlp, setup.tagger, setup.examples
    scores = tagger.model.predict([examples[0].predicted])
    _, d_smooth = tagger.get_loss(examples[:1], scores)
    tagger.cfg["label_smoothing"] = 0.0
    _, d_plain = tagger.get_loss(examples[:1], scores)
    assert not numpy.allclose(d_smooth[0], d_plain[0])
    negative = Example.from_dict(nlp.make_doc("Eat blue ham"), {"tags": ["NOT_NN", "JJ", "NN"]})
    _, d_neg = tagger.get_loss([negative], tagger.model.predict([negative.predicted]))
    nn = tagger.labels.index("NN")
    assert d_neg[0][0][nn] > 0  # pushed away from NN only
    assert numpy.count_nonzero(d_neg[0][0]) == 1


def test_training_through_config(new_tagger, tmp_path):
    from spacy.tokens import DocBin

    db = DocBin()
    for ex in new_tagger(initialize=False).examples:
        db.add(ex.reference)
    db.to_disk(tmp_path / "train.spacy")
    model_args = [f"--components.lstm_tagger.model.{k}={json.dumps(v)}" for k, v in TINY_MODEL.items()]
    cmd = [
        sys.executable, "-m", "spacy", "train", "configs/lstm_tagger_efficiency.cfg",
        "--output", str(tmp_path / "out"), "--paths.train", str(tmp_path / "train.spacy"),
        "--paths.dev", str(tmp_path / "train.spacy"), "--training.max_steps", "60",
        "--training.eval_frequency", "30", "--training.batcher.size", "100", *model_args,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    nlp = spacy.load(tmp_path / "out" / "model-best")
    assert nlp.pipe_names == ["lstm_tagger"]
    assert tags(nlp, [TRAIN_DATA[0][0]]) == [TRAIN_DATA[0][1]["tags"]]


def test_n_process_2_equals_single_process(trained_nlp):
    texts = TEST_TEXTS * 10
    assert [[t.tag_ for t in d] for d in trained_nlp.pipe(texts, n_process=2, batch_size=4)] == tags(trained_nlp, texts)


def test_averaged_parameters_reach_the_torch_weights(new_tagger):
    setup = new_tagger()
    nlp, tagger, examples = setup.nlp, setup.tagger, setup.examples
    optimizer = Adam(0.01, use_averages=True)
    for _ in range(5):
        nlp.update(examples, sgd=optimizer)
    module = get_torch_module(tagger.model)
    raw = {k: v.clone() for k, v in module.state_dict().items()}
    shim = tagger.model.layers[0].shims[0]
    with nlp.use_params(optimizer.averages):
        for name, value in module.state_dict().items():
            numpy.testing.assert_allclose(value.numpy(), optimizer.averages[(shim.id, name)])
        assert any(not torch.equal(raw[k], v) for k, v in module.state_dict().items())
    for name, value in module.state_dict().items():
        assert torch.equal(value, raw[name])


def test_optimizer_updates_parameters_in_place(new_tagger):
    """No new tensor per step: Thinc's shim rebinding `.data` leaked memory."""
    setup = new_tagger()
    nlp, tagger, examples, optimizer = setup.nlp, setup.tagger, setup.examples, setup.optimizer
    module = get_torch_module(tagger.model)
    before = {n: (p.data_ptr(), p.detach().clone()) for n, p in module.named_parameters()}
    nlp.update(examples, sgd=optimizer)
    for name, param in module.named_parameters():
        assert param.data_ptr() == before[name][0]
    assert any(not torch.equal(p, before[n][1]) for n, p in module.named_parameters())


def test_config_dropout_reaches_torch(new_tagger):
    setup = new_tagger(dropout=0.5)
    tagger, examples = setup.tagger, setup.examples
    module = get_torch_module(tagger.model)
    assert module.input_dropout.p == 0.5 and module.output_dropout.p == 0.5
    docs = [examples[0].predicted]
    a, _ = tagger.model.begin_update(docs)
    b, _ = tagger.model.begin_update(docs)
    assert not numpy.allclose(a[0], b[0])  # dropout active in training
    numpy.testing.assert_array_equal(tagger.model.predict(docs)[0], tagger.model.predict(docs)[0])


def test_model_without_dropout_is_deterministic_in_training_mode(new_tagger):
    setup = new_tagger()
    tagger, examples = setup.tagger, setup.examples
    docs = [examples[0].predicted]
    a, _ = tagger.model.begin_update(docs)
    numpy.testing.assert_allclose(a[0], tagger.model.predict(docs)[0], rtol=1e-6)


def test_same_seed_gives_identical_weights():
    a = train_tiny(n_iter=5, seed=1, dropout=0.2, word_dropout=0.1)
    b = train_tiny(n_iter=5, seed=1, dropout=0.2, word_dropout=0.1)
    c = train_tiny(n_iter=5, seed=2, dropout=0.2, word_dropout=0.1)
    assert a.get_pipe("lstm_tagger").to_bytes() == b.get_pipe("lstm_tagger").to_bytes()
    assert a.get_pipe("lstm_tagger").to_bytes() != c.get_pipe("lstm_tagger").to_bytes()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_training_and_cpu_loading(tmp_path):
    run_python(
        f"""
        import spacy, sys
        sys.path.insert(0, "tests")
        spacy.require_gpu()
        from conftest import train_tiny, TRAIN_DATA
        nlp = train_tiny()
        assert [t.tag_ for t in nlp(TRAIN_DATA[0][0])] == TRAIN_DATA[0][1]["tags"]
        nlp.to_disk({str(tmp_path / "gpu")!r})
        """
    )
    out = run_python(
        f"""
        import spacy
        nlp = spacy.load({str(tmp_path / "gpu")!r})
        print(" ".join(t.tag_ for t in nlp({TRAIN_DATA[0][0]!r})))
        """
    )
    assert out.split() == TRAIN_DATA[0][1]["tags"]
