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
