"""Stored teacher outputs: written once (resumably, in several processes),
read back as the live teacher gives them (top-k, renormalized), refused when
another teacher made them or when a training sentence is missing; a student
trained on them plus unlabeled text learns the teacher's tags through the
student config's [initialize.after_init] callback, as `spacy train` runs it."""
from pathlib import Path

import numpy
import pytest
import spacy
import srsly
from spacy.tokens import Doc, DocBin
from spacy.util import load_config
from thinc.api import fix_random_seed

from spacy_lstm_tagger.distill import Teacher, TeacherMember
from spacy_lstm_tagger.presets import preset_config
from spacy_lstm_tagger.teacher_outputs import (
    StoredTeacher, read_texts, teacher_fingerprint, write_teacher_outputs,
)

from conftest import TINY_MODEL, TRAIN_DATA, make_examples, train_tiny

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
UNLABELED = ["Eat green eggs", "She likes ham", "They ate blue eggs quickly"]


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("teacher") / "teacher"
    train_tiny(n_iter=300).to_disk(path)
    return path


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    """The tiny training data (tagged, one doc of two sentences) and unlabeled text."""
    path = tmp_path_factory.mktemp("corpus")
    nlp = spacy.blank("en")
    labelled = [eg.reference for eg in make_examples(nlp, TRAIN_DATA)]
    joined = Doc.from_docs(labelled)
    starts = set(numpy.cumsum([0] + [len(doc) for doc in labelled[:-1]]))
    for token in joined:
        token.is_sent_start = token.i in starts
    DocBin(docs=[joined]).to_disk(path / "train.spacy")
    unlabeled = []
    for text in UNLABELED:
        doc = nlp.make_doc(text)
        doc[0].is_sent_start = True
        unlabeled.append(doc)
    DocBin(docs=unlabeled, attrs=["ORTH", "SENT_START"]).to_disk(path / "unlabeled.spacy")
    return path


@pytest.fixture(scope="module")
def outputs_dir(teacher_dir, corpus_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("outputs") / "outputs"
    write_teacher_outputs(teacher_dir, path, [corpus_dir], top_k=3, shard_size=2)
    return path


def test_read_texts_gives_each_sentence_once(corpus_dir):
    texts = read_texts([corpus_dir, corpus_dir / "train.spacy"])
    words = [" ".join(w) for w, _ in texts]
    assert len(words) == len(set(words)) == len(TRAIN_DATA) + len(UNLABELED)
    assert "I like green eggs" in words


def test_stored_outputs_are_the_teachers_top_k(teacher_dir, outputs_dir):
    meta = srsly.read_json(outputs_dir / "meta.json")
    assert meta["fingerprint"] == teacher_fingerprint(teacher_dir)
    assert meta["n_shards"] == 4 and meta["top_k"] == 3
    nlp = spacy.load(teacher_dir)
    pipe = nlp.get_pipe("lstm_tagger")
    labels = tuple(pipe.labels)
    stored = StoredTeacher(outputs_dir, 1.0, teacher=teacher_dir)
    live = Teacher([TeacherMember(nlp, pipe)], 1.0)
    docs = [nlp.make_doc(text) for text, _ in TRAIN_DATA] + [nlp.make_doc(t) for t in UNLABELED]
    for got, want in zip(stored.probabilities(docs, labels), live.probabilities(docs, labels)):
        assert got.shape == want.shape
        numpy.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
        # the top-3 of the live distribution, renormalized, to float16 precision
        top = numpy.argsort(-want, axis=1)[:, :3]
        kept = numpy.zeros_like(want)
        numpy.put_along_axis(kept, top, numpy.take_along_axis(want, top, axis=1), axis=1)
        numpy.testing.assert_allclose(got, kept / kept.sum(axis=1, keepdims=True), atol=2e-3)
        assert (got.argmax(axis=1) == want.argmax(axis=1)).all()


def test_sentences_tagged_in_length_order_are_stored_in_corpus_order(teacher_dir, corpus_dir, outputs_dir, tmp_path):
    """One shard of every sentence, tagged two at a time shortest first
    (a transformer teacher pads less): each sentence keeps its own rows."""
    texts = read_texts([corpus_dir])
    assert sorted(texts, key=lambda t: len(t[0])) != texts  # the order changes
    path = tmp_path / "one_shard"
    write_teacher_outputs(teacher_dir, path, [corpus_dir], top_k=3, shard_size=len(texts), batch_size=2)
    nlp = spacy.load(teacher_dir)
    labels = tuple(nlp.get_pipe("lstm_tagger").labels)
    docs = [Doc(nlp.vocab, words=list(words), spaces=list(spaces)) for words, spaces in texts]
    one_shard = StoredTeacher(path, 1.0, teacher=teacher_dir).probabilities(docs, labels)
    small_shards = StoredTeacher(outputs_dir, 1.0, teacher=teacher_dir).probabilities(docs, labels)
    for got, want in zip(one_shard, small_shards):
        numpy.testing.assert_allclose(got, want, atol=2e-3)


def test_outputs_map_to_the_students_labels(outputs_dir):
    stored = StoredTeacher(outputs_dir, 1.0)
    doc = spacy.blank("en").make_doc(TRAIN_DATA[0][0])
    student_labels = ("ZZZ",) + tuple(reversed(stored.labels))[:-1]  # one label unknown, one dropped
    (rows,) = stored.probabilities([doc], student_labels)
    assert rows.shape == (len(doc), len(student_labels))
    assert (rows[:, 0] == 0).all()
    numpy.testing.assert_allclose(rows.sum(axis=1)[rows.sum(axis=1) > 0], 1.0, atol=1e-5)


def test_outputs_of_another_teacher_are_refused(outputs_dir, tmp_path):
    other = train_tiny(n_iter=5, seed=3)
    other.to_disk(tmp_path / "other")
    with pytest.raises(ValueError, match="another teacher.*stale"):
        StoredTeacher(outputs_dir, 1.0, teacher=tmp_path / "other")


def test_a_sentence_not_stored_is_a_clear_error(outputs_dir):
    stored = StoredTeacher(outputs_dir, 1.0)
    doc = spacy.blank("en").make_doc("Nobody stored this sentence")
    with pytest.raises(ValueError, match="not in the teacher outputs"):
        stored.probabilities([doc], stored.labels)


def test_incomplete_outputs_are_refused_and_a_rerun_resumes(teacher_dir, corpus_dir, tmp_path, capsys):
    path = tmp_path / "outputs"
    write_teacher_outputs(teacher_dir, path, [corpus_dir], top_k=3, shard_size=2)
    first = (path / "shard-00000.msgpack.gz").stat().st_mtime_ns
    (path / "shard-00002.msgpack.gz").unlink()
    with pytest.raises(ValueError, match="incomplete"):
        StoredTeacher(path, 1.0)
    capsys.readouterr()
    write_teacher_outputs(teacher_dir, path, [corpus_dir], top_k=3, shard_size=2)
    assert "1 of 4 shards to tag" in capsys.readouterr().out
    assert (path / "shard-00000.msgpack.gz").stat().st_mtime_ns == first
    assert len(StoredTeacher(path, 1.0)) == len(TRAIN_DATA) + len(UNLABELED)


def test_a_moved_teacher_resumes_and_other_sentences_start_again(teacher_dir, corpus_dir, tmp_path, capsys):
    """The fingerprint and the sentences make the outputs, not the paths."""
    import shutil

    path = tmp_path / "outputs"
    write_teacher_outputs(teacher_dir, path, [corpus_dir], top_k=3, shard_size=2)
    moved = shutil.copytree(teacher_dir, tmp_path / "moved_teacher")
    capsys.readouterr()
    write_teacher_outputs(moved, path, [corpus_dir], top_k=3, shard_size=2)
    assert "0 of 4 shards to tag" in capsys.readouterr().out
    # the same number of sentences and tokens, other words: only the sentences' digest tells
    other = tmp_path / "other_corpus"
    other.mkdir()
    vocab = spacy.blank("en").vocab
    DocBin(docs=[Doc(vocab, words=[w.upper() for w in words], spaces=list(spaces))
                 for words, spaces in read_texts([corpus_dir])]).to_disk(other / "other.spacy")
    first = srsly.read_json(path / "meta.json")
    write_teacher_outputs(moved, path, [other], top_k=3, shard_size=2)
    assert "4 of 4 shards to tag" in capsys.readouterr().out
    again = srsly.read_json(path / "meta.json")
    assert (again["n_sentences"], again["n_tokens"]) == (first["n_sentences"], first["n_tokens"])


def test_two_processes_write_the_same_outputs(teacher_dir, corpus_dir, outputs_dir, tmp_path):
    path = tmp_path / "outputs"
    write_teacher_outputs(teacher_dir, path, [corpus_dir], top_k=3, shard_size=2, processes=2)
    assert srsly.read_json(path / "meta.json") == srsly.read_json(outputs_dir / "meta.json")
    for one, two in zip(sorted(path.glob("shard-*")), sorted(outputs_dir.glob("shard-*"))):
        a, b = (srsly.msgpack_loads(__import__("gzip").decompress(p.read_bytes())) for p in (one, two))
        assert a["words"] == b["words"]
        numpy.testing.assert_array_equal(a["indices"], b["indices"])


def test_no_outputs_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="teacher-outputs"):
        StoredTeacher(tmp_path, 1.0)


@pytest.mark.parametrize("name", ["student", "student_fast"])
def test_student_config_learns_the_stored_teachers_tags(name, teacher_dir, corpus_dir, outputs_dir):
    """The student config, built as `spacy train` builds it, with the tiny
    model, gold tags all wrong and teacher_weight 1: it tags as the teacher."""
    fix_random_seed(0)
    config = preset_config(name, overrides={
        "paths.teacher_outputs": str(outputs_dir), "paths.teacher": str(teacher_dir)}).interpolate()
    config["components"]["lstm_tagger"]["model"].update(TINY_MODEL)
    config["initialize"]["after_init"]["teacher_weight"] = 1.0
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    labels = sorted({t for _, a in TRAIN_DATA for t in a["tags"]})
    shift = {label: labels[(i + 1) % len(labels)] for i, label in enumerate(labels)}
    examples = make_examples(nlp, [(text, {"tags": [shift[t] for t in a["tags"]]}) for text, a in TRAIN_DATA])
    examples += [eg for eg in make_examples(nlp, [(t, {}) for t in UNLABELED])]
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 0.002
    assert isinstance(nlp.get_pipe("lstm_tagger").teacher, StoredTeacher)
    for _ in range(80):
        nlp.update(examples, sgd=optimizer)
    teacher = spacy.load(teacher_dir)
    for text, _ in TRAIN_DATA:
        assert [t.tag_ for t in nlp(text)] == [t.tag_ for t in teacher(text)]


def test_student_config_without_outputs_says_what_to_set():
    config = load_config(CONFIGS / "lstm_tagger_student.cfg")
    config["components"]["lstm_tagger"]["model"].update(TINY_MODEL)
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    examples = make_examples(nlp, TRAIN_DATA)
    with pytest.raises(ValueError, match="paths.teacher_outputs"):
        nlp.initialize(lambda: examples)
