"""``sentence_windows``: a Doc with sentence boundaries is read one sentence
at a time (inference and training), so a whole document gets the tags its
sentences get alone; without boundaries, or with the setting off, a Doc is
one sequence."""
import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from spacy.tokens import Doc
from spacy.training import Example

from conftest import TRAIN_DATA, new_pipeline, record_torch_inputs
from spacy_lstm_tagger.featurize import plan_windows, sentence_spans
from spacy_lstm_tagger.model import kept_rows

SENTENCES = [text.split() for text, _ in TRAIN_DATA]


def doc_of(vocab, sentences, boundaries=True) -> Doc:
    words = [w for s in sentences for w in s]
    starts = [i == 0 for s in sentences for i in range(len(s))] if boundaries else None
    return Doc(vocab, words=words, sent_starts=starts)


def with_setting(trained_nlp, **model_settings):
    """The trained tagger's weights in a pipeline with other model settings."""
    setup = new_pipeline(initialize=False, **model_settings)
    setup.tagger.from_bytes(trained_nlp.get_pipe("lstm_tagger").to_bytes())
    return setup.nlp, setup.tagger


def test_sentence_spans_read_the_docs_boundaries(trained_nlp):
    vocab = trained_nlp.vocab
    assert sentence_spans(doc_of(vocab, SENTENCES[:3])) == [
        (0, len(SENTENCES[0])), (len(SENTENCES[0]), len(SENTENCES[0]) + len(SENTENCES[1])),
        (len(SENTENCES[0]) + len(SENTENCES[1]), sum(len(s) for s in SENTENCES[:3]))]
    assert sentence_spans(doc_of(vocab, SENTENCES[:3], boundaries=False)) is None
    assert sentence_spans(doc_of(vocab, SENTENCES[:1])) is None  # one sentence: the Doc
    assert sentence_spans(Doc(vocab, words=["one"])) is None


def test_a_document_with_boundaries_is_tagged_as_its_sentences(trained_nlp):
    """Scores of a 4-sentence Doc with boundaries == each sentence's scores as
    its own Doc; without boundaries (or sentence_windows = false) the
    sentences read each other and the scores differ."""
    tagger = trained_nlp.get_pipe("lstm_tagger")
    sentences = SENTENCES[:4]
    alone = numpy.concatenate(tagger.model.predict([doc_of(trained_nlp.vocab, [s]) for s in sentences]))
    with record_torch_inputs(tagger) as calls:
        together = tagger.model.predict([doc_of(trained_nlp.vocab, sentences)])[0]
    assert calls[0]["lengths"].tolist() == [len(s) for s in sentences]
    numpy.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)
    one_sequence = tagger.model.predict([doc_of(trained_nlp.vocab, sentences, boundaries=False)])[0]
    assert not numpy.allclose(one_sequence, alone, atol=1e-4)
    _, off = with_setting(trained_nlp, sentence_windows=False)
    numpy.testing.assert_allclose(
        off.model.predict([doc_of(trained_nlp.vocab, sentences)])[0], one_sequence, rtol=1e-5, atol=1e-6)


def test_sentencizer_before_the_tagger_gives_the_sentences_tags(trained_nlp):
    nlp, _ = with_setting(trained_nlp)
    text = " ".join(" ".join(s) + " ." for s in SENTENCES[:3])
    alone = [t.tag_ for s in SENTENCES[:3] for t in nlp(Doc(nlp.vocab, words=s + ["."]))]
    nlp.add_pipe("sentencizer", before="lstm_tagger")
    doc = nlp(text)
    assert len(list(doc.sents)) == 3
    assert [t.tag_ for t in doc] == alone


def test_a_sentence_longer_than_the_window_is_windowed_within_itself(trained_nlp):
    _, tagger = with_setting(trained_nlp, max_window=8, window_context=2)
    long_sentence = ([w for s in SENTENCES for w in s] * 3)[:20]
    sentences = [SENTENCES[0], long_sentence, SENTENCES[1]]
    with record_torch_inputs(tagger) as calls:
        scores = tagger.model.predict([doc_of(trained_nlp.vocab, sentences)])[0]
    assert scores.shape[0] == sum(len(s) for s in sentences)
    assert max(calls[0]["lengths"].tolist()) <= 8
    middle = tagger.model.predict([doc_of(trained_nlp.vocab, [long_sentence])])[0]
    numpy.testing.assert_allclose(scores[len(SENTENCES[0]): len(SENTENCES[0]) + 20], middle, rtol=1e-5, atol=1e-6)


def test_training_reads_sentences_too():
    """An update on a Doc with boundaries runs the torch module on its sentences."""
    setup = new_pipeline()
    sentences, tags = SENTENCES[:3], [t for _, ann in TRAIN_DATA[:3] for t in ann["tags"]]
    doc = doc_of(setup.nlp.vocab, sentences)
    example = Example.from_dict(doc, {"tags": tags})
    with record_torch_inputs(setup.tagger) as calls:
        setup.nlp.update([example], sgd=setup.nlp.create_optimizer())
    assert calls[0]["lengths"].tolist() == [len(s) for s in sentences]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(st.integers(1, 15), max_size=5), max_size=4), st.integers(3, 10), st.integers(0, 3))
def test_sentence_windows_cover_every_token_once_and_never_cross_a_boundary(sentence_lengths, max_window, context):
    if max_window - 2 * context < 1:
        return
    doc_lengths = [sum(lengths) for lengths in sentence_lengths]
    segments = []
    for lengths in sentence_lengths:
        bounds = numpy.cumsum([0, *lengths]).tolist()
        segments.append(list(zip(bounds[:-1], bounds[1:])) if lengths else None)
    windows = plan_windows(doc_lengths, max_window, context, segments)
    max_len = max((w.end - w.start for w in windows), default=1)
    marks = numpy.full((len(windows), max_len), -1, dtype="int64")
    for w, win in enumerate(windows):
        assert win.end - win.start <= max_window
        spans = segments[win.doc_index] or [(0, doc_lengths[win.doc_index])]
        assert any(first <= win.start and win.end <= last for first, last in spans)  # inside one sentence
        marks[w, : win.end - win.start] = [1000 * win.doc_index + i for i in range(win.start, win.end)]
    picked = marks.reshape(-1)[kept_rows(windows, max_len)]
    assert picked.tolist() == [1000 * d + i for d, n in enumerate(doc_lengths) for i in range(n)]


@pytest.mark.parametrize("value", ["yes", 1.5])
def test_sentence_windows_must_be_a_bool(value):
    with pytest.raises(ValueError, match="sentence_windows"):
        new_pipeline(sentence_windows=value)
