"""Bridge between the component's per-Doc score arrays and the torch CRF.

The model outputs raw tag scores (emissions) per Doc when ``crf = true``; the
component uses these helpers to decode (Viterbi), to get per-token marginal
probabilities (forward-backward) and to compute the sequence loss, whose
gradient flows back to the emissions (through Thinc) and into the CRF's
transition weights (their ``.grad``, applied by the shim's ``finish_update``).
"""
from typing import Iterator, List, Sequence, Tuple

import numpy
import torch
from thinc.api import Ops, torch2xp, xp2torch
from thinc.types import Floats2d

from .constants import INFERENCE_CHUNK_TOKENS
from .pytorch_model import LinearChainCRF


def length_buckets(lengths: Sequence[int], chunk_tokens: int = INFERENCE_CHUNK_TOKENS) -> Iterator[List[int]]:
    """Group sequence indices, longest first, so that each group is padded
    only to its own longest sequence: a group holds sequences at least half
    as long as its first one, and about ``chunk_tokens`` padded positions
    (one sequence if longer). Padded positions are then fewer than twice the
    tokens, so the CRF's cost is linear in tokens, whatever the mix of
    lengths in a batch (one long Doc does not pad every short one)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    group: List[int] = []
    for i in order:
        if group and (2 * lengths[i] < lengths[group[0]] or (len(group) + 1) * lengths[group[0]] > chunk_tokens):
            yield group
            group = []
        group.append(i)
    if group:
        yield group


def _padded_groups(
    crf: LinearChainCRF, scores: Sequence[Floats2d], chunk_tokens: int, requires_grad: bool = False
) -> Iterator[Tuple[List[int], torch.Tensor, torch.Tensor]]:
    """The non-empty Docs' scores, per length bucket: (Doc indices,
    emissions (batch, time, n_tags), mask (batch, time))."""
    device = crf.transitions.device
    n_tags = crf.transitions.shape[0]
    present = [i for i, s in enumerate(scores) if len(s)]
    for bucket in length_buckets([len(scores[i]) for i in present], chunk_tokens):
        rows = [present[k] for k in bucket]
        lengths = [len(scores[i]) for i in rows]
        emissions = torch.zeros((len(rows), lengths[0], n_tags), device=device)
        mask = torch.zeros(emissions.shape[:2], dtype=torch.bool, device=device)
        for row, i in enumerate(rows):
            emissions[row, : lengths[row]] = xp2torch(scores[i], device=device)
            mask[row, : lengths[row]] = True
        if requires_grad:
            emissions.requires_grad_(True)
        yield rows, emissions, mask


def viterbi_decode(
    crf: LinearChainCRF, scores: Sequence[Floats2d], chunk_tokens: int = INFERENCE_CHUNK_TOKENS
) -> List[numpy.ndarray]:
    """Best tag ids per Doc."""
    guesses = [numpy.zeros((0,), dtype="int64") for _ in scores]
    with torch.no_grad():
        for rows, emissions, mask in _padded_groups(crf, scores, chunk_tokens):
            paths = crf.viterbi(emissions, mask).cpu().numpy()
            for row, i in enumerate(rows):
                guesses[i] = paths[row, : len(scores[i])]
    return guesses


def crf_marginals(
    ops: Ops, crf: LinearChainCRF, scores: Sequence[Floats2d], chunk_tokens: int = INFERENCE_CHUNK_TOKENS
) -> List[Floats2d]:
    """P(tag | sentence) per token, per Doc."""
    out = [ops.alloc2f(0, crf.transitions.shape[0]) for _ in scores]
    with torch.no_grad():
        for rows, emissions, mask in _padded_groups(crf, scores, chunk_tokens):
            marginals = torch2xp(forward_backward(crf, emissions, mask), ops=ops)
            for row, i in enumerate(rows):
                out[i] = ops.xp.ascontiguousarray(marginals[row, : len(scores[i])])
    return out


def forward_backward(crf: LinearChainCRF, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """P(tag_t = j | x), as ``LinearChainCRF.marginals`` computes by autograd,
    from explicit forward and backward passes: memory O(time * n_tags) per
    sequence instead of an autograd graph of O(time * n_tags**2). Each step's
    scores are renormalized (marginals need no log Z), so float32 stays
    accurate on Docs of any length."""
    n_seqs, length, n_tags = emissions.shape
    transitions = crf.transitions
    end = _normalized(crf.end_transitions.expand(n_seqs, n_tags))
    alphas = [_normalized(crf.start_transitions + emissions[:, 0])]
    for t in range(1, length):
        step = torch.logsumexp(alphas[-1].unsqueeze(2) + transitions, dim=1) + emissions[:, t]
        alphas.append(torch.where(mask[:, t].unsqueeze(1), _normalized(step), alphas[-1]))
    betas = [end]
    for t in range(length - 2, -1, -1):
        step = torch.logsumexp(transitions + (emissions[:, t + 1] + betas[-1]).unsqueeze(1), dim=2)
        betas.append(torch.where(mask[:, t + 1].unsqueeze(1), _normalized(step), end))
    betas.reverse()
    return torch.softmax(torch.stack(alphas, dim=1) + torch.stack(betas, dim=1), dim=-1)


def _normalized(log_scores: torch.Tensor) -> torch.Tensor:
    return log_scores - torch.logsumexp(log_scores, dim=-1, keepdim=True)


def crf_loss(
    ops: Ops, crf: LinearChainCRF, scores: Sequence[Floats2d], allowed: Sequence[numpy.ndarray],
    chunk_tokens: int = INFERENCE_CHUNK_TOKENS,
) -> Tuple[float, List[Floats2d]]:
    """Sequence negative log-likelihood and its gradient per Doc.

    ``allowed[i]`` is a (n_tokens, n_tags) boolean array of the tags the
    annotation permits. Also accumulates the transition gradients."""
    d_scores = [ops.alloc2f(*s.shape) for s in scores]
    total = 0.0
    for rows, emissions, mask in _padded_groups(crf, scores, chunk_tokens, requires_grad=True):
        allowed_t = torch.ones(emissions.shape, dtype=torch.bool, device=emissions.device)
        for row, i in enumerate(rows):
            allowed_t[row, : len(scores[i])] = torch.from_numpy(numpy.asarray(allowed[i], dtype=bool)).to(emissions.device)
        loss = crf.negative_log_likelihood(emissions, allowed_t, mask)
        loss.backward()
        grads = torch2xp(emissions.grad, ops=ops)
        for row, i in enumerate(rows):
            d_scores[i] = ops.xp.ascontiguousarray(grads[row, : len(scores[i])])
        total += float(loss.detach())
    return total, d_scores
