"""Distillation: a student trained on a teacher's soft tags learns the
teacher's tags (even against its own gold), in Python and through the
config's [initialize.after_init] callback as `spacy train` runs it; a
teacher with an upstream component runs it on its own copies of the docs;
the teacher's probabilities are cached per text, within a bound."""
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.util import load_config
from thinc.api import fix_random_seed

from spacy_lstm_tagger.distill import attach

from conftest import TINY_MODEL, TRAIN_DATA, make_examples, train_tiny

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "lstm_tagger_distilled.cfg"


def wrong_gold(data=TRAIN_DATA):
    """The same texts with every tag replaced by the next label: what the
    student would learn from gold alone."""
    labels = sorted({tag for _, annots in data for tag in annots["tags"]})
    shift = {label: labels[(i + 1) % len(labels)] for i, label in enumerate(labels)}
    return [(text, {"tags": [shift[t] for t in annots["tags"]]}) for text, annots in data]


def tags(nlp, data=TRAIN_DATA):
    return [[t.tag_ for t in nlp(text)] for text, _ in data]


@pytest.fixture(scope="module")
def teacher():
    # trained long enough to be confident: soft targets near a tie would make
    # the student's argmax a coin toss
    return train_tiny(n_iter=300)


def distill_student(teacher, weight, n_iter=80):
    """A tiny student trained on wrong gold tags and ``weight`` x the teacher's."""
    fix_random_seed(1)
    student = spacy.blank("en")
    student.add_pipe("lstm_tagger", config={"model": dict(TINY_MODEL)})
    examples = make_examples(student, wrong_gold())
    optimizer = student.initialize(lambda: examples)
    attach(student.get_pipe("lstm_tagger"), teacher, weight)
    for _ in range(n_iter):
        losses = student.update(examples, sgd=optimizer)
    return student, losses


@pytest.mark.parametrize("weight,learns", [(1.0, "teacher"), (0.0, "gold")])
def test_student_learns_the_teachers_tags(teacher, weight, learns):
    assert tags(teacher) == [a["tags"] for _, a in TRAIN_DATA]
    student, losses = distill_student(teacher, weight)
    assert losses["lstm_tagger"] >= 0
    expected = [a["tags"] for _, a in (TRAIN_DATA if learns == "teacher" else wrong_gold())]
    assert tags(student) == expected


def distilled_nlp(teacher_path, teacher_weight=1.0):
    """The distilled config with the tiny model, built as `spacy train` builds it."""
    if teacher_path is None:
        overrides = {}
    elif isinstance(teacher_path, list):  # an ensemble, as `--paths.teacher '["a","b"]'` gives it
        overrides = {"paths.teacher": [str(path) for path in teacher_path]}
    else:
        overrides = {"paths.teacher": str(teacher_path)}
    config = load_config(CONFIG, overrides=overrides)
    config["components"]["lstm_tagger"]["model"].update(TINY_MODEL)
    config["initialize"]["after_init"]["teacher_weight"] = teacher_weight
    # a constant rate: the config's schedule is still warming up after the tests' 80 updates
    config["training"]["optimizer"]["learn_rate"] = 0.002
    return spacy.util.load_model_from_config(config, auto_fill=True, validate=True)


def test_distilled_config_trains_from_the_teacher_path(teacher, tmp_path):
    teacher.to_disk(tmp_path / "teacher")
    nlp = distilled_nlp(tmp_path / "teacher")
    examples = make_examples(nlp, wrong_gold())
    fix_random_seed(1)
    optimizer = nlp.initialize(lambda: examples)  # runs [initialize.after_init]
    student = nlp.get_pipe("lstm_tagger")
    assert student.teacher is not None and student.teacher.weight == 1.0
    for _ in range(80):
        nlp.update(examples, sgd=optimizer)
    assert tags(nlp) == [a["tags"] for _, a in TRAIN_DATA]
    nlp.to_disk(tmp_path / "student")
    loaded = spacy.load(tmp_path / "student")
    assert loaded.get_pipe("lstm_tagger").teacher is None  # the teacher is not part of the student
    assert tags(loaded) == tags(nlp)


def test_distillation_errors_are_clear(teacher, tmp_path):
    student = train_tiny(n_iter=0, crf=True)
    with pytest.raises(ValueError, match="CRF student"):
        attach(student.get_pipe("lstm_tagger"), teacher, 0.5)
    with pytest.raises(ValueError, match="must be a trained pipeline"):
        attach(train_tiny(n_iter=0).get_pipe("lstm_tagger"), teacher.get_pipe("lstm_tagger"), 0.5)
    with pytest.raises(ValueError, match="no \\(enabled\\) component 'tagger'"):
        attach(train_tiny(n_iter=0).get_pipe("lstm_tagger"), teacher, 0.5, teacher_component="tagger")
    with pytest.raises(ValueError, match="ensemble is empty"):
        attach(train_tiny(n_iter=0).get_pipe("lstm_tagger"), [], 0.5)
    for path, message in ((tmp_path / "missing", "Could not load the distillation teacher"), (None, "paths.teacher"), ([], "paths.teacher"),
                          ([tmp_path / "missing"], "Could not load the distillation teacher")):
        nlp = distilled_nlp(path)
        examples = make_examples(nlp)
        with pytest.raises(ValueError, match=message):
            nlp.initialize(lambda: examples)


def test_teacher_student_loss_is_the_cross_entropy_with_its_gradient():

    from spacy_lstm_tagger.distill import get_teacher_student_loss

    teacher = [numpy.array([[0.6, 0.3, 0.1], [0.0, 0.0, 1.0]], dtype="f")]
    student = [numpy.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype="f")]
    loss, d_scores = get_teacher_student_loss(teacher, student)
    expected = -(0.6 * numpy.log(0.7) + 0.3 * numpy.log(0.2) + 0.1 * numpy.log(0.1) + numpy.log(0.8))
    assert abs(loss - expected) < 1e-5
    numpy.testing.assert_allclose(d_scores[0], student[0] - teacher[0], atol=1e-6)


def test_a_token_the_teacher_knows_nothing_of_gets_no_soft_gradient():
    """A zero teacher row (its top-k lay on labels the student lacks) must not
    push every one of the student's tags down."""
    from spacy_lstm_tagger.distill import get_teacher_student_loss

    teacher = [numpy.array([[0.6, 0.3, 0.1], [0.0, 0.0, 0.0]], dtype="f")]
    student = [numpy.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype="f")]
    loss, d_scores = get_teacher_student_loss(teacher, student)
    numpy.testing.assert_allclose(d_scores[0][0], student[0][0] - teacher[0][0], atol=1e-6)
    assert not d_scores[0][1].any()
    assert abs(loss + (0.6 * numpy.log(0.7) + 0.3 * numpy.log(0.2) + 0.1 * numpy.log(0.1))) < 1e-5


def test_a_teacher_with_an_upstream_tok2vec_tags_its_own_copies_of_the_docs():
    """The teacher's lstm_tagger listens to a tok2vec of its own pipeline; the
    student (no tok2vec, another vocab) still learns the teacher's tags."""
    from test_upstream import listener_nlp, train

    teacher = train(listener_nlp(), n_iter=120)
    assert tags(teacher) == [a["tags"] for _, a in TRAIN_DATA]
    student, _ = distill_student(teacher, 1.0)
    assert student.get_pipe("lstm_tagger").teacher.members[0].upstream == ["tok2vec"]
    # the probabilities are the teacher's own, with its tok2vec run first
    from spacy_lstm_tagger.model import split_heads

    pipe = teacher.get_pipe("lstm_tagger")
    texts = [text for text, _ in TRAIN_DATA]
    got = student.get_pipe("lstm_tagger").teacher.probabilities([student.make_doc(t) for t in texts], tuple(pipe.labels))
    own = split_heads(pipe.model, pipe.model.predict(list(teacher.pipe(texts, disable=["lstm_tagger"]))))["tag"]
    for a, b in zip(got, own):
        numpy.testing.assert_allclose(a, pipe.model.ops.to_numpy(b), atol=1e-5)
    assert tags(student) == [a["tags"] for _, a in TRAIN_DATA]


def test_an_ensemble_teaches_the_mean_of_its_members_probabilities(teacher, tmp_path):
    """A list of teacher paths in the config loads each pipeline; the
    student's targets are the mean of the members' probabilities."""
    from spacy_lstm_tagger.distill import Teacher

    fix_random_seed(2)
    other = train_tiny(n_iter=30)  # a weaker, different teacher
    teacher.to_disk(tmp_path / "a")
    other.to_disk(tmp_path / "b")
    nlp = distilled_nlp([tmp_path / "a", tmp_path / "b"])
    examples = make_examples(nlp, wrong_gold())
    optimizer = nlp.initialize(lambda: examples)
    ensemble = nlp.get_pipe("lstm_tagger").teacher
    assert len(ensemble.members) == 2
    labels = tuple(nlp.get_pipe("lstm_tagger").labels)
    docs = [nlp.make_doc(text) for text, _ in TRAIN_DATA]
    alone = [Teacher([member], 1.0, 0).probabilities(docs, labels) for member in ensemble.members]
    assert not all(numpy.allclose(a, b, atol=1e-3) for a, b in zip(*alone))  # the members differ
    for mean, a, b in zip(ensemble.probabilities(docs, labels), *alone):
        numpy.testing.assert_allclose(mean, (a + b) / 2, atol=1e-6)
        numpy.testing.assert_allclose(mean.sum(axis=1), 1.0, atol=1e-5)
    for _ in range(80):
        nlp.update(examples, sgd=optimizer)
    assert tags(nlp) == tags(teacher)  # the confident teacher outweighs the weak one


@pytest.mark.parametrize("fits", [0, 2, 100])
def test_teacher_probabilities_are_cached_per_text_within_the_bound(teacher, fits):
    student = train_tiny(n_iter=0)
    labels = tuple(student.get_pipe("lstm_tagger").labels)
    docs = [student.make_doc(text) for text, _ in TRAIN_DATA]
    doc_mb = max(len(doc) for doc in docs) * len(labels) * 4 / 2**20  # float32 rows of the longest doc
    attach(student.get_pipe("lstm_tagger"), teacher, 0.5, cache_mb=fits * doc_mb)
    t = student.get_pipe("lstm_tagger").teacher
    calls = []
    predict = t._predict
    t._predict = lambda texts, labels: calls.append(len(texts)) or predict(texts, labels)
    first = t.probabilities(docs, labels)
    # the same texts again, as new Doc objects (as each epoch of `spacy train` makes them)
    second = t.probabilities([student.make_doc(text) for text, _ in TRAIN_DATA], labels)
    cached = len(t._cache)
    assert min(fits, len(docs)) <= cached <= len(docs) if fits else cached == 0
    assert t._cache_bytes <= t.cache_mb * 2**20
    assert calls == [len(docs)] + ([len(docs) - cached] if cached < len(docs) else [])
    for a, b, doc in zip(first, second, docs):
        assert a.shape == (len(doc), len(labels))
        numpy.testing.assert_allclose(a, b, atol=1e-6)
        numpy.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-5)
    # other student labels (another column order): the cache starts again
    t.probabilities(docs, labels[::-1])
    assert len(t._cache) == cached and t._cache_labels == labels[::-1]


def test_a_teacher_with_static_vectors_reads_its_own_vectors_not_the_students():
    from test_static_vectors import nlp_with_vectors

    from conftest import train_pipeline
    from spacy_lstm_tagger.model import split_heads

    fix_random_seed(0)
    teacher = train_pipeline(nlp_with_vectors(), 60)
    student = train_tiny(n_iter=0)  # no vectors in its vocab
    assert not len(student.vocab.vectors)
    attach(student.get_pipe("lstm_tagger"), teacher, 0.5, cache_mb=0)
    pipe = teacher.get_pipe("lstm_tagger")
    labels = tuple(pipe.labels)
    texts = [text for text, _ in TRAIN_DATA]
    got = student.get_pipe("lstm_tagger").teacher.probabilities([student.make_doc(t) for t in texts], labels)
    own = split_heads(pipe.model, pipe.model.predict([teacher.make_doc(t) for t in texts]))["tag"]
    for a, b in zip(got, own):
        numpy.testing.assert_allclose(a, pipe.model.ops.to_numpy(b), atol=1e-5)


def test_an_ensembles_rows_stay_distributions_when_a_member_has_no_mass_on_the_students_labels():
    from types import SimpleNamespace

    from spacy_lstm_tagger.distill import Teacher

    full = SimpleNamespace(probabilities=lambda texts, labels: [numpy.array([[0.25, 0.75], [0.5, 0.5]], dtype="f")])
    # e.g. a member whose only tag for the second token is one the student lacks
    partial = SimpleNamespace(probabilities=lambda texts, labels: [numpy.array([[1.0, 0.0], [0.0, 0.0]], dtype="f")])
    (probs,) = Teacher([full, partial], 1.0, cache_mb=0)._predict([(("a", "b"), (True, False))], ("X", "Y"))
    numpy.testing.assert_allclose(probs, [[0.625, 0.375], [0.5, 0.5]], atol=1e-6)


def test_distilled_learn_rate_decays_to_zero_at_the_configs_last_step():
    """The student ends its budget on fully decayed weights: the schedule's
    total_steps is the config's max_steps (interpolated, as spacy train
    resolves it)."""
    from itertools import islice

    from thinc.api import registry

    config = load_config(CONFIG, interpolate=True)
    max_steps = config["training"]["max_steps"]
    schedule = registry.resolve({"lr": config["training"]["optimizer"]["learn_rate"]})["lr"]
    rates = list(islice(schedule, max_steps + 1))
    assert rates[0] == 0.0 and max(rates) == pytest.approx(0.002)
    assert rates[max_steps - 1] < 1e-5 and rates[max_steps] == 0.0
    assert registry.resolve({"optimizer": config["training"]["optimizer"]})["optimizer"] is not None
