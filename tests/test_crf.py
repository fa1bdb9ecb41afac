"""CRF layer: exact against brute force on tiny problems, and end to end."""
import itertools

import numpy
import pytest
import spacy
import torch
from spacy.training import Example

from conftest import TINY_MODEL, TRAIN_DATA, train_tiny
from spacy_lstm_tagger.model import get_torch_module, split_heads
from spacy_lstm_tagger.pytorch_model import LinearChainCRF


def brute_force(crf, emissions):
    """Every path of one sequence, enumerated: (log Z, best path, marginals,
    paths, path scores)."""
    T, L = emissions.shape
    paths = torch.tensor(list(itertools.product(range(L), repeat=T)))  # (L**T, T)
    scores = (
        crf.start_transitions[paths[:, 0]]
        + crf.end_transitions[paths[:, -1]]
        + emissions[torch.arange(T), paths].sum(dim=1)
        + crf.transitions[paths[:, :-1], paths[:, 1:]].sum(dim=1)
    )
    log_z = torch.logsumexp(scores, 0)
    best = paths[scores.argmax()].tolist()
    probs = torch.exp(scores - log_z)
    marg = torch.stack([torch.zeros(L).index_add_(0, paths[:, t], probs) for t in range(T)])
    return log_z, best, marg, paths, scores


def consistent_scores(paths, scores, gold):
    """Scores of the paths that agree with ``gold`` (None: any tag)."""
    keep = torch.ones(len(paths), dtype=torch.bool)
    for t, tag in enumerate(gold):
        if tag is not None:
            keep &= paths[:, t] == tag
    return scores[keep]


@pytest.fixture
def crf_and_batch():
    torch.manual_seed(0)
    crf = LinearChainCRF(3)
    crf.reset_parameters()
    with torch.no_grad():
        crf.transitions.normal_()
    lengths = [4, 1, 3]
    emissions = torch.randn(3, 4, 3)
    mask = torch.arange(4).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    return crf, emissions, mask, lengths


def test_partition_viterbi_and_marginals_match_brute_force(crf_and_batch):
    crf, emissions, mask, lengths = crf_and_batch
    log_z = crf.log_partition(emissions, mask)
    paths = crf.viterbi(emissions, mask)
    marginals = crf.marginals(emissions, mask)
    for row, n in enumerate(lengths):
        bf_z, bf_best, bf_marg, _, _ = brute_force(crf, emissions[row, :n])
        assert torch.allclose(log_z[row], bf_z, atol=1e-5)
        assert paths[row, :n].tolist() == bf_best
        assert torch.allclose(marginals[row, :n], bf_marg, atol=1e-5)


def test_nll_with_known_and_missing_tags_matches_brute_force(crf_and_batch):
    crf, emissions, mask, lengths = crf_and_batch
    row, n = 0, lengths[0]
    gold = [2, None, 0, 1]  # one missing tag: marginalize over it
    allowed = torch.ones(1, 4, 3, dtype=torch.bool)
    for t, tag in enumerate(gold):
        if tag is not None:
            allowed[0, t] = False
            allowed[0, t, tag] = True
    nll = crf.negative_log_likelihood(emissions[:1], allowed, mask[:1])
    bf_z, _, _, paths, scores = brute_force(crf, emissions[row, :n])
    expected = bf_z - torch.logsumexp(consistent_scores(paths, scores, gold), 0)
    assert torch.allclose(nll, expected, atol=1e-4)


def test_nll_of_fully_and_partly_annotated_rows_in_one_batch(crf_and_batch):
    """Fully annotated rows take the path-score shortcut; mixed batches and
    padding still give the brute-force likelihood, and the gradient flows."""
    crf, emissions, mask, lengths = crf_and_batch
    golds = [[2, None, 0, 1], [1], [0, 2, 2]]
    allowed = torch.ones(3, 4, 3, dtype=torch.bool)
    for row, gold in enumerate(golds):
        for t, tag in enumerate(gold):
            if tag is not None:
                allowed[row, t] = False
                allowed[row, t, tag] = True
    emissions = emissions.clone().requires_grad_(True)
    nll = crf.negative_log_likelihood(emissions, allowed, mask)
    expected = 0.0
    for row, gold in enumerate(golds):
        bf_z, _, _, paths, scores = brute_force(crf, emissions[row, : lengths[row]].detach())
        expected = expected + bf_z - torch.logsumexp(consistent_scores(paths, scores, gold), 0)
    assert torch.allclose(nll, expected, atol=1e-4)
    nll.backward()
    assert emissions.grad[1, 0].abs().sum() > 0 and not emissions.grad[1, 1:].any()
    assert crf.transitions.grad is not None and crf.transitions.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def crf_nlp():
    return train_tiny(n_iter=60, crf=True)


def test_crf_tagger_overfits_and_roundtrips(crf_nlp, tmp_path):
    for text, annots in TRAIN_DATA:
        assert [t.tag_ for t in crf_nlp(text)] == annots["tags"]
    crf_nlp.to_disk(tmp_path)
    loaded = spacy.load(tmp_path)
    texts = [t for t, _ in TRAIN_DATA] + ["", "eggs eggs green"]
    assert [[t.tag_ for t in d] for d in loaded.pipe(texts)] == [[t.tag_ for t in d] for d in crf_nlp.pipe(texts)]


def test_crf_training_updates_transitions():
    nlp = train_tiny(n_iter=0, crf=True)
    crf = get_torch_module(nlp.get_pipe("lstm_tagger").model).crf
    before = crf.transitions.detach().clone()
    optimizer = nlp.resume_training()
    examples = [Example.from_dict(nlp.make_doc(t), a) for t, a in TRAIN_DATA]
    nlp.update(examples, sgd=optimizer)
    assert not torch.equal(before, crf.transitions.detach())


def test_crf_probabilities_are_marginals(crf_nlp, tmp_path):
    """With crf = true, tag_prob / tag_alternatives are the CRF's posterior
    marginals P(tag_t | sentence), checked against all 9**4 paths, and the
    tags are the best path. Strong random transitions make the marginals far
    from a per-token softmax of the emissions (asserted, so the check bites)."""
    crf_nlp.to_disk(tmp_path)
    nlp = spacy.load(tmp_path, config={"components": {"lstm_tagger": {"store_probabilities": True, "n_alternatives": 100}}})
    tagger = nlp.get_pipe("lstm_tagger")
    crf = get_torch_module(tagger.model).crf
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in (crf.transitions, crf.start_transitions, crf.end_transitions):
            param.copy_(3 * torch.randn(param.shape, generator=generator))
    text = "I like green eggs"
    labels = tagger.labels
    # the model's tag columns are the CRF's emission scores
    [tag_scores] = split_heads(tagger.model, tagger.model.predict([nlp.make_doc(text)]))["tag"]
    emissions = torch.from_numpy(tag_scores)
    with torch.no_grad():
        _, best, expected, _, _ = brute_force(crf, emissions)
    doc = nlp(text)
    assert [t.tag_ for t in doc] == [labels[i] for i in best]
    stored = numpy.zeros((len(doc), len(labels)))
    for i, token in enumerate(doc):
        for tag, prob in token._.tag_alternatives:
            stored[i, labels.index(tag)] = prob
        assert token._.tag_prob == pytest.approx(expected[i, labels.index(token.tag_)].item(), abs=1e-5)
    numpy.testing.assert_allclose(stored, expected.numpy(), atol=1e-5)
    assert numpy.abs(torch.softmax(emissions, dim=-1).numpy() - expected.numpy()).max() > 0.1


def test_crf_partial_annotation_gradient_and_label_smoothing_error():
    nlp = train_tiny(n_iter=0, crf=True)
    tagger = nlp.get_pipe("lstm_tagger")
    partial = Example.from_dict(nlp.make_doc("Eat blue ham"), {"tags": ["VB", "", "NN"]})
    loss, d = tagger.get_loss([partial], tagger.model.predict([partial.predicted]))
    assert loss > 0 and d[0].shape == (3, len(tagger.labels))
    numpy.testing.assert_allclose(d[0].sum(axis=1), 0.0, atol=1e-5)  # marginals minus constrained marginals
    blank = spacy.blank("en")
    with pytest.raises(ValueError, match="label_smoothing"):
        blank.add_pipe("lstm_tagger", config={"model": {**TINY_MODEL, "crf": True}, "label_smoothing": 0.1})


# --- decoding per length bucket ---------------------------------


def padded_positions_seen(monkeypatch, crf):
    """Record the (batch x time) size of every padded batch the CRF computes on."""
    from spacy_lstm_tagger import crf as crf_module

    seen = []

    def counting(fn):
        def wrapper(emissions, *args, **kwargs):
            seen.append(emissions.shape[0] * emissions.shape[1])
            return fn(emissions, *args, **kwargs)
        return wrapper

    for name in ("viterbi", "marginals", "negative_log_likelihood"):
        monkeypatch.setattr(crf, name, counting(getattr(crf, name)))
    if hasattr(crf_module, "forward_backward"):
        fb = crf_module.forward_backward
        monkeypatch.setattr(crf_module, "forward_backward", lambda c, e, m: counting(lambda e2, m2: fb(c, e2, m2))(e, m))
    return seen


def one_padded_batch(scores):
    """The old path: every Doc padded to the longest one."""
    lengths = [len(s) for s in scores]
    emissions = torch.zeros(len(scores), max(lengths), scores[0].shape[1])
    for row, s in enumerate(scores):
        emissions[row, : len(s)] = torch.from_numpy(s)
    return emissions, torch.arange(max(lengths)).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)


@pytest.mark.parametrize("chunk_tokens", [None, 64])
def test_crf_cost_is_linear_in_tokens_and_results_equal_one_padded_batch(monkeypatch, chunk_tokens):
    """One long Doc among many short ones does not pad all of them to its
    length for Viterbi, marginals and the loss (4,590 tokens among 100 Docs
    would be 463k positions), and the results equal one padded batch's."""
    from thinc.api import NumpyOps

    from spacy_lstm_tagger.crf import crf_loss, crf_marginals, viterbi_decode

    torch.manual_seed(0)
    rng = numpy.random.default_rng(0)
    n_tags = 6
    crf = LinearChainCRF(n_tags)
    with torch.no_grad():
        crf.transitions.normal_()
        crf.start_transitions.normal_()
        crf.end_transitions.normal_()
    lengths = [300] + list(rng.integers(1, 30, size=40)) + [0]
    scores = [rng.normal(size=(n, n_tags)).astype("float32") for n in lengths]
    n_tokens = sum(lengths)
    kwargs = {} if chunk_tokens is None else {"chunk_tokens": chunk_tokens}
    ops = NumpyOps()
    allowed = [numpy.eye(n_tags, dtype=bool)[rng.integers(0, n_tags, size=n)] for n in lengths]
    allowed[1][:] = True  # one Doc without annotation: marginalized

    seen = padded_positions_seen(monkeypatch, crf)
    guesses = viterbi_decode(crf, scores, **kwargs)
    assert 0 < sum(seen) <= 2 * n_tokens
    seen.clear()
    marginals = crf_marginals(ops, crf, scores, **kwargs)
    assert 0 < sum(seen) <= 2 * n_tokens
    seen.clear()
    loss, d_scores = crf_loss(ops, crf, scores, allowed, **kwargs)
    assert 0 < sum(seen) <= 2 * n_tokens
    transition_grad = crf.transitions.grad.clone()
    crf.zero_grad()
    monkeypatch.undo()

    present = [i for i, n in enumerate(lengths) if n]
    emissions, mask = one_padded_batch([scores[i] for i in present])
    with torch.no_grad():
        paths = crf.viterbi(emissions, mask)
    old_marginals = crf.marginals(emissions.double(), mask)  # float64: the reference
    emissions.requires_grad_(True)
    allowed_t = torch.ones(emissions.shape, dtype=torch.bool)
    for row, i in enumerate(present):
        allowed_t[row, : lengths[i]] = torch.from_numpy(allowed[i])
    old_loss = crf.negative_log_likelihood(emissions, allowed_t, mask)
    old_loss.backward()
    assert guesses[-1].shape == (0,) and marginals[-1].shape == (0, n_tags) and not d_scores[-1].size
    for row, i in enumerate(present):
        assert guesses[i].tolist() == paths[row, : lengths[i]].tolist()
        numpy.testing.assert_allclose(marginals[i], old_marginals[row, : lengths[i]].numpy(), atol=1e-5)
        numpy.testing.assert_allclose(d_scores[i], emissions.grad[row, : lengths[i]].numpy(), atol=1e-5)
    assert loss == pytest.approx(float(old_loss.detach()), rel=1e-5)
    torch.testing.assert_close(transition_grad, crf.transitions.grad, rtol=1e-4, atol=1e-4)


def test_length_buckets_pad_at_most_twice_the_tokens():
    from spacy_lstm_tagger.crf import length_buckets

    rng = numpy.random.default_rng(1)
    for _ in range(50):
        lengths = list(rng.integers(1, 400, size=int(rng.integers(1, 60))))
        buckets = list(length_buckets(lengths, chunk_tokens=256))
        assert sorted(i for b in buckets for i in b) == list(range(len(lengths)))
        padded = [len(b) * max(lengths[i] for i in b) for b in buckets]
        assert sum(padded) <= 2 * sum(lengths)
        assert all(p <= max(256, max(lengths)) for p in padded)


def test_forward_backward_marginals_match_brute_force(crf_and_batch):
    from spacy_lstm_tagger.crf import forward_backward

    crf, emissions, mask, lengths = crf_and_batch
    with torch.no_grad():
        crf.start_transitions.normal_()
        crf.end_transitions.normal_()
    marginals = forward_backward(crf, emissions, mask)
    for row, n in enumerate(lengths):
        bf_marg = brute_force(crf, emissions[row, :n])[2]
        assert torch.allclose(marginals[row, :n], bf_marg.detach(), atol=1e-5)
