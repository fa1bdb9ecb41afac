"""Bridge between the component's per-Doc score arrays and the torch CRF.

The model outputs raw tag scores (emissions) per Doc when ``crf = true``; the
component uses these helpers to decode (Viterbi), to get per-token marginal
probabilities (forward-backward) and to compute the sequence loss, whose
gradient flows back to the emissions (through Thinc) and into the CRF's
transition weights (their ``.grad``, applied by the shim's ``finish_update``).
"""
from typing import List, Sequence, Tuple

import numpy
import torch
from thinc.api import Ops, torch2xp, xp2torch
from thinc.types import Floats2d

from .pytorch_model import LinearChainCRF


def _pad(crf: LinearChainCRF, scores: Sequence[Floats2d], requires_grad: bool = False) -> Tuple[torch.Tensor, torch.Tensor, List[int]]:
    """Stack the non-empty Docs' scores into (batch, time, n_tags) + mask."""
    device = crf.transitions.device
    present = [i for i, s in enumerate(scores) if len(s)]
    lengths = [len(scores[i]) for i in present]
    n_tags = crf.transitions.shape[0]
    emissions = torch.zeros((len(present), max(lengths, default=0), n_tags), device=device)
    mask = torch.zeros(emissions.shape[:2], dtype=torch.bool, device=device)
    for row, i in enumerate(present):
        emissions[row, : lengths[row]] = xp2torch(scores[i], device=device)
        mask[row, : lengths[row]] = True
    if requires_grad:
        emissions.requires_grad_(True)
    return emissions, mask, present


def viterbi_decode(crf: LinearChainCRF, scores: Sequence[Floats2d]) -> List[numpy.ndarray]:
    """Best tag ids per Doc."""
    guesses = [numpy.zeros((0,), dtype="int64") for _ in scores]
    emissions, mask, present = _pad(crf, scores)
    if present:
        with torch.no_grad():
            paths = crf.viterbi(emissions, mask).cpu().numpy()
        for row, i in enumerate(present):
            guesses[i] = paths[row, : len(scores[i])]
    return guesses


def crf_marginals(ops: Ops, crf: LinearChainCRF, scores: Sequence[Floats2d]) -> List[Floats2d]:
    """P(tag | sentence) per token, per Doc."""
    out = [ops.alloc2f(0, crf.transitions.shape[0]) if not len(s) else None for s in scores]
    emissions, mask, present = _pad(crf, scores)
    if present:
        marginals = torch2xp(crf.marginals(emissions, mask), ops=ops)
        for row, i in enumerate(present):
            out[i] = ops.xp.ascontiguousarray(marginals[row, : len(scores[i])])
    return out


def crf_loss(ops: Ops, crf: LinearChainCRF, scores: Sequence[Floats2d], allowed: Sequence[numpy.ndarray]) -> Tuple[float, List[Floats2d]]:
    """Sequence negative log-likelihood and its gradient per Doc.

    ``allowed[i]`` is a (n_tokens, n_tags) boolean array of the tags the
    annotation permits. Also accumulates the transition gradients."""
    d_scores = [ops.alloc2f(*s.shape) for s in scores]
    emissions, mask, present = _pad(crf, scores, requires_grad=True)
    if not present:
        return 0.0, d_scores
    allowed_t = torch.ones(emissions.shape, dtype=torch.bool, device=emissions.device)
    for row, i in enumerate(present):
        allowed_t[row, : len(scores[i])] = torch.from_numpy(numpy.asarray(allowed[i], dtype=bool)).to(emissions.device)
    loss = crf.negative_log_likelihood(emissions, allowed_t, mask)
    loss.backward()
    grads = torch2xp(emissions.grad, ops=ops)
    for row, i in enumerate(present):
        d_scores[i] = ops.xp.ascontiguousarray(grads[row, : len(scores[i])])
    return float(loss.detach()), d_scores
