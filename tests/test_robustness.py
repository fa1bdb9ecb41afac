"""Hostile input, bad training data, corrupted files and invariants under load
(issue: reliability)."""
import math
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Callable

import numpy
import psutil
import pytest
import spacy
import srsly
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spacy.tokens import Doc
from spacy.training import Example

from conftest import TINY_MODEL, TRAIN_DATA, new_pipeline, record_torch_inputs
from spacy_lstm_tagger.featurize import encode_chars, plan_windows
from spacy_lstm_tagger.model import get_torch_module

UNICODE_TEXTS = [
    "I ❤️ 🍕 and 𝕏 𓀀",  # emoji, ZWJ-free astral plane
    "東京は日本の首都です。",  # CJK
    "مرحبا بالعالم שלום עולם",  # right-to-left
    "e\u0301 n\u0303 a\u0308\u0308\u0308",  # combining marks
    "zero\u200bwidth\u200d joiner\ufeff bom",
    "control\x00nul\x07bell\x1b esc\x7f",
    "👩‍👩‍👧‍👦 family",
]


TRAIN_WORDS = sorted({word for text, _ in TRAIN_DATA for word in text.split()})


def assert_valid(nlp, doc):
    labels = set(nlp.get_pipe("lstm_tagger").labels)
    assert all(token.tag_ in labels for token in doc), [t.tag_ for t in doc]


def assert_tagged_as_alone(nlp, make_doc: Callable[[], Doc]) -> None:
    """Tagged in a batch between the training sentences, the Doc gets the
    scores it gets alone and the tags those scores give, and the training
    sentences keep their gold tags: a tagger that mixes up rows, lengths or
    labels in a batch fails this."""
    tagger = nlp.get_pipe("lstm_tagger")
    texts = [text for text, _ in TRAIN_DATA]
    make_batch = lambda: [nlp.make_doc(t) for t in texts[:2]] + [make_doc()] + [nlp.make_doc(t) for t in texts[2:]]  # noqa: E731
    alone = tagger.model.predict([make_doc()])[0]
    numpy.testing.assert_allclose(tagger.model.predict(make_batch())[2], alone, rtol=1e-5, atol=1e-6)
    docs = list(nlp.pipe(make_batch()))
    assert [t.tag_ for t in docs[2]] == [tagger.labels[i] for i in alone.argmax(axis=1)]
    for doc, (_, annots) in zip(docs[:2] + docs[3:], TRAIN_DATA):
        assert [t.tag_ for t in doc] == annots["tags"]


def with_windows(trained_nlp, max_window: int, window_context: int):
    """The trained tagger's weights in a pipeline with other window settings."""
    setup = new_pipeline(initialize=False, max_window=max_window, window_context=window_context)
    setup.tagger.from_bytes(trained_nlp.get_pipe("lstm_tagger").to_bytes())
    return setup.nlp, setup.tagger


@pytest.mark.parametrize("text", ["", " ", "   \n\t  ", "word", "\n"])
def test_empty_whitespace_and_single_token(trained_nlp, text):
    doc = trained_nlp(text)
    assert len(doc) == len(trained_nlp.make_doc(text))
    assert_valid(trained_nlp, doc)


def test_docs_of_only_space_tokens(trained_nlp):
    doc = Doc(trained_nlp.vocab, words=[" ", "\n", "\t\t"], spaces=[False, False, False])
    doc = trained_nlp(doc)
    assert_valid(trained_nlp, doc)


@pytest.mark.parametrize("position", [0, 1, 2])
def test_empty_doc_at_any_position_in_batch(trained_nlp, position):
    texts = ["I like green eggs", "Eat blue ham"]
    texts.insert(position, "")
    docs = list(trained_nlp.pipe(texts, batch_size=3))
    assert [t.tag_ for t in docs[texts.index("I like green eggs")]] == TRAIN_DATA[0][1]["tags"]
    assert len(docs[position]) == 0


def test_empty_string_encodes_as_one_padding_char():
    # spaCy refuses empty words (E031), but packing would crash on length 0
    char_ids, lengths = encode_chars(["", "ab"], n_chars=300, max_chars=8)
    assert lengths.tolist() == [1, 2] and char_ids[0].tolist() == [0, 0]


def test_long_doc_without_sentence_boundaries_is_windowed(trained_nlp):
    """A 20,000-token Doc reaches the torch module as overlapping windows of at
    most max_window tokens (observed in the module's inputs), and every token
    is tagged as in the training sentence it repeats."""
    tagger = trained_nlp.get_pipe("lstm_tagger")
    model_cfg = trained_nlp.config["components"]["lstm_tagger"]["model"]
    max_window, context = model_cfg["max_window"], model_cfg["window_context"]
    words = "She ate the ham quickly".split() * 4000  # 5 words: windows shifted by context would show
    with record_torch_inputs(tagger) as calls:
        doc = trained_nlp(Doc(trained_nlp.vocab, words=words))
    [inputs] = calls
    lengths = inputs["lengths"].tolist()
    assert len(lengths) == math.ceil(20000 / (max_window - 2 * context))
    assert max(lengths) <= max_window and inputs["word_ids"].shape[1] <= max_window
    assert 20000 < sum(lengths) <= 20000 + 2 * context * len(lengths)  # overlaps: the context only
    assert [t.tag_ for t in doc] == ["PRP", "VBD", "DT", "NN", "RB"] * 4000


def test_window_plan_covers_every_token_once():
    for n in [0, 1, 7, 8, 9, 31, 100]:
        windows = plan_windows([n], 8, 2)
        kept = [i for w in windows for i in range(w.keep_start, w.keep_end)]
        assert kept == list(range(n))
        for w in windows:
            assert w.end - w.start <= 8
            assert w.start <= w.keep_start < w.keep_end <= w.end
    with pytest.raises(ValueError, match="window_context"):
        plan_windows([5], 8, 4)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=6), st.integers(3, 12), st.integers(0, 3))
def test_kept_rows_pick_every_token_of_every_doc_once_in_order(doc_lengths, max_window, context):
    """The rows convert_outputs reads from the padded window scores: marking
    each padded position with (doc, token) gives back every token in Doc order."""
    from spacy_lstm_tagger.model import kept_rows

    if max_window - 2 * context < 1:
        return
    windows = plan_windows(doc_lengths, max_window, context)
    max_len = max((w.end - w.start for w in windows), default=0)
    marks = numpy.full((len(windows), max(max_len, 1)), -1, dtype="int64")
    for w, win in enumerate(windows):
        marks[w, : win.end - win.start] = [1000 * win.doc_index + i for i in range(win.start, win.end)]
    picked = marks.reshape(-1)[kept_rows(windows, max(max_len, 1))]
    assert picked.tolist() == [1000 * d + i for d, n in enumerate(doc_lengths) for i in range(n)]


@pytest.mark.parametrize(
    "n_words,max_window,context",
    [(12, 12, 3), (13, 12, 3), (40, 12, 3), (37, 9, 0), (25, 5, 2)],
)
def test_each_window_scores_its_core_like_a_doc_of_its_tokens(trained_nlp, n_words, max_window, context):
    """Docs longer than max_window are cut into cores of max_window - 2 *
    context tokens, each read with up to ``context`` tokens on either side:
    every token's scores are those of a Doc made of its window's tokens."""
    nlp, tagger = with_windows(trained_nlp, max_window, context)
    words = random.Random(n_words).choices(TRAIN_WORDS, k=n_words)
    scores = tagger.model.predict([Doc(nlp.vocab, words=words)])[0]
    assert scores.shape[0] == n_words
    stride = max_window - 2 * context if n_words > max_window else n_words
    for core_start in range(0, n_words, stride):
        core_end = min(n_words, core_start + stride)
        start, end = max(0, core_start - context), min(n_words, core_end + context)
        window = tagger.model.predict([Doc(nlp.vocab, words=words[start:end])])[0]
        numpy.testing.assert_allclose(
            scores[core_start:core_end], window[core_start - start : core_end - start], rtol=1e-5, atol=1e-6
        )


def test_windowed_scores_close_to_unwindowed(trained_nlp):
    """A 300-token Doc tagged in windows of 72 (24 of context, the default)
    against the same Doc in one window: the same tags, and probabilities
    within 2e-3 (measured: 5e-5 to 2e-4), at window
    boundaries too."""
    words = [word for text, _ in TRAIN_DATA for word in text.split()] * 20
    _, whole = with_windows(trained_nlp, 1000, 24)
    _, windowed = with_windows(trained_nlp, 72, 24)
    doc = Doc(trained_nlp.vocab, words=words)
    expected = whole.model.predict([doc])[0]
    with record_torch_inputs(windowed) as calls:
        found = windowed.model.predict([doc])[0]
    assert len(calls[0]["lengths"]) == math.ceil(300 / (72 - 2 * 24))  # it really was windowed
    numpy.testing.assert_allclose(found, expected, atol=2e-3)
    assert (found.argmax(axis=1) == expected.argmax(axis=1)).all()


def test_very_long_token_reaches_the_model_as_max_word_chars_characters(trained_nlp):
    """The character input of a 12,000-character token is max_word_chars
    wide, not 12,000 (seen in the torch module's inputs): its first and last
    max_word_chars // 2 characters, the same rows as a word made of them."""
    tagger = trained_nlp.get_pipe("lstm_tagger")
    max_chars = trained_nlp.config["components"]["lstm_tagger"]["model"]["max_word_chars"]
    word = "a" * 5000 + "🍕" * 5000 + "z" * 2000
    short = word[: max_chars - max_chars // 2] + word[-(max_chars // 2) :]
    with record_torch_inputs(tagger) as calls:
        doc = trained_nlp(Doc(trained_nlp.vocab, words=["I", word, "eggs"]))
        trained_nlp(Doc(trained_nlp.vocab, words=["I", short, "eggs"]))
    assert len(doc) == 3
    assert_valid(trained_nlp, doc)
    long_chars, short_chars = (call["char_ids"] for call in calls)
    assert long_chars.shape == short_chars.shape == (3, max_chars)
    assert sorted(long_chars.tolist()) == sorted(short_chars.tolist())


@pytest.mark.parametrize("text", UNICODE_TEXTS)
def test_unicode_of_every_kind(trained_nlp, text):
    doc = trained_nlp(text)
    assert len(doc) > 0
    assert_valid(trained_nlp, doc)


def test_char_ids_stay_in_table():
    # 0xD800: lone surrogates; spaCy's tokenizer rejects them, hand-made tokens may not
    words = ["".join(chr(c) for c in range(s, s + 50)) for s in (0, 0x300, 0x4E00, 0x1F600, 0x10FF00, 0xD800)]
    char_ids, lengths = encode_chars(words, n_chars=300, max_chars=64)
    assert char_ids.min() >= 0 and char_ids.max() < 300
    assert (lengths == 50).all()


def test_unknown_tag_in_training_data_names_the_tag(new_tagger):
    setup = new_tagger()
    nlp, optimizer = setup.nlp, setup.optimizer
    bad = Example.from_dict(nlp.make_doc("green frogs"), {"tags": ["JJ", "NEWTAG"]})
    with pytest.raises(ValueError, match="'NEWTAG'"):
        nlp.update([bad], sgd=optimizer)


def test_misaligned_tokenization_is_aligned_like_spacy(new_tagger):
    setup = new_tagger(initialize=False)
    nlp, tagger = setup.nlp, setup.tagger
    # gold splits "don't" differently from spaCy's tokenizer output
    predicted = Doc(nlp.vocab, words=["I", "do", "n't", "like", "ham"])
    example = Example.from_dict(predicted, {"words": ["I", "don't", "like", "ham"], "tags": ["PRP", "VBP", "VB", "NN"]})
    optimizer = nlp.initialize(lambda: setup.examples + [example])
    aligned = example.get_aligned("TAG", as_string=True)
    scores = tagger.model.predict([example.predicted])
    _, d_scores = tagger.get_loss([example], scores)
    for i, tag in enumerate(aligned):
        assert bool(d_scores[0][i].any()) == bool(tag)
    nlp.update([example], sgd=optimizer)


def test_nan_weights_give_clear_error(new_tagger):
    setup = new_tagger()
    nlp, tagger, examples, optimizer = setup.nlp, setup.tagger, setup.examples, setup.optimizer
    with torch.no_grad():
        get_torch_module(tagger.model).output.bias.fill_(float("nan"))
    with pytest.raises(ValueError, match="E940|NaN|nan"):
        nlp.update(examples, sgd=optimizer)


def test_truncated_model_file_gives_clear_error(trained_nlp, tmp_path):
    trained_nlp.to_disk(tmp_path)
    model_file = tmp_path / "lstm_tagger" / "model"
    data = model_file.read_bytes()
    model_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        spacy.load(tmp_path)
    model_file.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ValueError, match="lstm_tagger"):
        spacy.load(tmp_path)


def test_corrupted_torch_state_gives_clear_error(trained_nlp):
    tagger = trained_nlp.get_pipe("lstm_tagger")
    msg = srsly.msgpack_loads(tagger.model.to_bytes())
    shim_msg = srsly.msgpack_loads(msg["shims"][1][0])
    inner = srsly.msgpack_loads(shim_msg["state"])
    inner["state"] = inner["state"][:100]
    shim_msg["state"] = srsly.msgpack_dumps(inner)
    msg["shims"][1][0] = srsly.msgpack_dumps(shim_msg)
    nlp = spacy.blank("en")
    fresh = nlp.add_pipe("lstm_tagger", config={"model": TINY_MODEL})
    with pytest.raises(ValueError, match="truncated or corrupted"):
        fresh.model.from_bytes(srsly.msgpack_dumps(msg))


def test_config_sizes_disagreeing_with_weights(trained_nlp, tmp_path):
    trained_nlp.to_disk(tmp_path)
    config = spacy.util.load_config(tmp_path / "config.cfg")
    config["components"]["lstm_tagger"]["model"]["hidden_size"] = 24
    config.to_disk(tmp_path / "config.cfg")
    with pytest.raises(ValueError, match="does not match the saved weights.*lstm"):
        spacy.load(tmp_path)


def test_other_format_version_is_refused(trained_nlp):
    from spacy_lstm_tagger import weights as model_module

    data = trained_nlp.get_pipe("lstm_tagger").to_bytes()
    nlp = spacy.blank("en")
    fresh = nlp.add_pipe("lstm_tagger", config={"model": TINY_MODEL})
    old = model_module.MODEL_FORMAT_VERSION
    model_module.MODEL_FORMAT_VERSION = old + 1
    try:
        with pytest.raises(ValueError, match="version"):
            fresh.from_bytes(data)
    finally:
        model_module.MODEL_FORMAT_VERSION = old


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_n_process_with_fork_and_spawn(trained_nlp, tmp_path, method):
    trained_nlp.to_disk(tmp_path / "nlp")
    texts = [text for text, _ in TRAIN_DATA] * 25 + ["", "🍕 东京"]
    expected = [[t.tag_ for t in d] for d in trained_nlp.pipe(texts)]
    code = f"""
        import json, multiprocessing, spacy
        if __name__ == "__main__":
            multiprocessing.set_start_method({method!r})
            nlp = spacy.load({str(tmp_path / "nlp")!r})
            docs = nlp.pipe({texts!r}, n_process=2, batch_size=7)
            print(json.dumps([[t.tag_ for t in d] for d in docs]))
    """
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(code))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert srsly.json_loads(result.stdout) == expected


def test_to_disk_roundtrip_is_bit_identical(trained_nlp, tmp_path):
    trained_nlp.to_disk(tmp_path / "a")
    spacy.load(tmp_path / "a").to_disk(tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_memory_stays_flat_while_tagging_many_docs(trained_nlp):
    texts = ["I like green eggs and ham %d" % i for i in range(20000)]
    process = psutil.Process()
    for i, _ in enumerate(trained_nlp.pipe(texts[:2000], batch_size=256)):
        pass
    baseline = process.memory_info().rss
    for _ in trained_nlp.pipe(texts, batch_size=256):
        pass
    growth_mb = (process.memory_info().rss - baseline) / 2**20
    assert growth_mb < 50, f"RSS grew by {growth_mb:.1f} MB over 20,000 docs"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=80))
def test_property_random_text(trained_nlp, text):
    doc = trained_nlp(text)
    assert len(doc) == len(trained_nlp.make_doc(text))
    assert_valid(trained_nlp, doc)
    assert_tagged_as_alone(trained_nlp, lambda: trained_nlp.make_doc(text))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(st.text(min_size=1, max_size=30), max_size=40))
def test_property_random_word_lists(trained_nlp, words):
    doc = trained_nlp(Doc(trained_nlp.vocab, words=words, spaces=[True] * len(words)))
    assert len(doc) == len(words)
    assert_valid(trained_nlp, doc)
    assert_tagged_as_alone(trained_nlp, lambda: Doc(trained_nlp.vocab, words=words, spaces=[True] * len(words)))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(st.text(max_size=40), min_size=1, max_size=8))
def test_property_batches_equal_single_docs(trained_nlp, batch):
    together = [[t.tag_ for t in d] for d in trained_nlp.pipe(batch, batch_size=len(batch))]
    alone = [[t.tag_ for t in trained_nlp(text)] for text in batch]
    assert together == alone
