"""Distillation: a student trained on a teacher's soft tags learns the
teacher's tags (even against its own gold), in Python and through the
config's [initialize.after_init] callback as `spacy train` runs it."""
from pathlib import Path

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


@pytest.mark.parametrize("weight,learns", [(1.0, "teacher"), (0.0, "gold")])
def test_student_learns_the_teachers_tags(teacher, weight, learns):
    assert tags(teacher) == [a["tags"] for _, a in TRAIN_DATA]
    fix_random_seed(1)
    student = spacy.blank("en")
    student.add_pipe("lstm_tagger", config={"model": dict(TINY_MODEL)})
    examples = make_examples(student, wrong_gold())
    optimizer = student.initialize(lambda: examples)
    attach(student.get_pipe("lstm_tagger"), teacher.get_pipe("lstm_tagger"), weight)
    for _ in range(80):
        losses = student.update(examples, sgd=optimizer)
    assert losses["lstm_tagger"] >= 0
    expected = [a["tags"] for _, a in (TRAIN_DATA if learns == "teacher" else wrong_gold())]
    assert tags(student) == expected


def distilled_nlp(teacher_path, teacher_weight=1.0):
    """The distilled config with the tiny model, built as `spacy train` builds it."""
    overrides = {} if teacher_path is None else {"paths.teacher": str(teacher_path)}
    config = load_config(CONFIG, overrides=overrides)
    config["components"]["lstm_tagger"]["model"].update(TINY_MODEL)
    config["initialize"]["after_init"]["teacher_weight"] = teacher_weight
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
        attach(student.get_pipe("lstm_tagger"), teacher.get_pipe("lstm_tagger"), 0.5)
    for path, message in ((tmp_path / "missing", "teacher pipeline"), (None, "paths.teacher")):
        nlp = distilled_nlp(path)
        examples = make_examples(nlp)
        with pytest.raises(ValueError, match=message):
            nlp.initialize(lambda: examples)


def test_teacher_student_loss_is_the_cross_entropy_with_its_gradient():
    import numpy

    from spacy_lstm_tagger.distill import get_teacher_student_loss

    teacher = [numpy.array([[0.6, 0.3, 0.1], [0.0, 0.0, 1.0]], dtype="f")]
    student = [numpy.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype="f")]
    loss, d_scores = get_teacher_student_loss(teacher, student)
    expected = -(0.6 * numpy.log(0.7) + 0.3 * numpy.log(0.2) + 0.1 * numpy.log(0.1) + numpy.log(0.8))
    assert abs(loss - expected) < 1e-5
    numpy.testing.assert_allclose(d_scores[0], student[0] - teacher[0], atol=1e-6)
