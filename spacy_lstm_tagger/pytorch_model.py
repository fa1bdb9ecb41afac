"""The pure PyTorch part of the tagger: a word + character BiLSTM.

This module knows nothing about spaCy or Thinc. It takes integer tensors
(built by ``featurize.py``) and returns unnormalized scores, so it can be
tested, profiled and reused on its own.
"""
from functools import partial
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .char_cache import CharEncodingCache
from .constants import INFERENCE_CHUNK_TOKENS, PAD_CHAR_ID, UNKNOWN_WORD_ID

HEADS = ("output", "pos_output", "morph_output")
"""The module's linear heads, in the order of their columns in the scores:
the tags, then UPOS (joint_pos), then FEATS (joint_morph)."""


class CharBiLSTMEncoder(nn.Module):
    """Encode each word *type* from its characters: a BiLSTM whose final
    forward and backward states are concatenated. Runs once per unique word in
    a batch, not once per token."""

    def __init__(self, n_chars: int, char_embed_size: int, hidden_size: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(n_chars, char_embed_size, padding_idx=PAD_CHAR_ID)
        self.lstm = nn.LSTM(
            char_embed_size, hidden_size, batch_first=True, bidirectional=True
        )
        self.output_size = 2 * hidden_size
        self.chunk_tokens = INFERENCE_CHUNK_TOKENS
        # inference-only cache of encodings by character ids (char_cache.py)
        self.cache: Optional[CharEncodingCache] = None

    def forward(self, char_ids: torch.Tensor, char_lengths: torch.Tensor) -> torch.Tensor:
        # char_ids: (n_types, max_chars); char_lengths: (n_types,) on CPU, all >= 1
        if not self.training:
            if self.cache is not None and char_ids.device.type == "cpu":
                return self.cache(self._encode_by_length, self.parameters(), char_ids, char_lengths)
            return self._encode_by_length(char_ids, char_lengths)
        packed = pack_padded_sequence(
            self.embed(char_ids), char_lengths, batch_first=True, enforce_sorted=False
        )
        _, (h_n, _) = self.lstm(packed)
        # h_n: (2, n_types, hidden) -> (n_types, 2 * hidden)
        return torch.cat([h_n[0], h_n[1]], dim=-1)

    def _encode_by_length(self, char_ids: torch.Tensor, char_lengths: torch.Tensor) -> torch.Tensor:
        """Inference: final states (forward at each word's last character,
        backward at its first) from length-sorted padded chunks."""
        hidden = self.lstm.hidden_size

        def encode(ids: torch.Tensor, length: int) -> torch.Tensor:
            chunk_lengths = char_lengths[ids.cpu()]
            # time-major: (length, n_types, char_embed_size)
            forward, backward, _ = bilstm_directions(self.lstm, self.embed(char_ids[ids, :length].t()), chunk_lengths)
            # both final states sit at each word's last step: the backward
            # outputs are still in reversed order (its first character last)
            last, rows = (chunk_lengths - 1).to(forward.device), torch.arange(len(ids), device=forward.device)
            return torch.cat([forward[last, rows], backward[last, rows]], dim=-1)

        encoded = self.embed.weight.new_empty(len(char_ids), 2 * hidden)
        return fill_by_length(encoded, char_lengths, encode, self.chunk_tokens)


class WordCharBiLSTMTagger(nn.Module):
    """Hashed word embedding + affix embeddings + character encoding ->
    sentence BiLSTM -> one linear layer per head (tags, optionally UPOS and
    FEATS).

    The heads are created by :meth:`resize_head` once the number of labels is
    known (at ``initialize`` or when weights are loaded), so the module can be
    constructed from a config before the labels exist. Training scores every
    head; inference only those in :attr:`predicted_heads` (an auxiliary head
    learns from its annotation and costs nothing at inference).
    """

    def __init__(
        self,
        *,
        n_word_rows: int,
        n_word_hashes: int,
        word_embed_size: int,
        n_chars: int,
        char_embed_size: int,
        char_hidden_size: int,
        hidden_size: int,
        depth: int,
        dropout: float,
        word_dropout: float,
        crf: bool = False,
        include_static_vectors: bool = False,
        n_affix_features: int = 0,
        n_affix_rows: int = 1,
        affix_embed_size: int = 0,
        n_labels: Optional[int] = None,
        n_cluster_rows: int = 0,
        cluster_embed_size: int = 0,
        upstream_size: int = 0,
        lstm_input_size: int = 0,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0 or not 0.0 <= word_dropout < 1.0:
            raise ValueError(
                f"dropout ({dropout}) and word_dropout ({word_dropout}) must be in [0, 1)"
            )
        self.n_word_hashes = n_word_hashes
        self.dropout = dropout
        self.word_dropout = word_dropout
        self.word_embed = nn.Embedding(n_word_rows, word_embed_size)
        self.char_encoder = CharBiLSTMEncoder(n_chars, char_embed_size, char_hidden_size)
        # hashed prefixes/suffixes/shape of each word type: cheap features a
        # small corpus learns fast (what spaCy's tagger relies on)
        self.n_affix_features = n_affix_features
        self.affix_embed = nn.Embedding(n_affix_rows, affix_embed_size) if n_affix_features else None
        affix_size = n_affix_features * affix_embed_size
        self.input_dropout = nn.Dropout(dropout)
        # frozen pretrained vectors (inputs, not weights) -> trainable projection,
        # created by resize_vectors once the vectors' width is known
        self.include_static_vectors = include_static_vectors
        self.word_embed_size = word_embed_size
        self.vectors_proj: Optional[nn.Linear] = None
        vectors_size = word_embed_size if include_static_vectors else 0
        # optional lexical clusters: hashed rows of each token's cluster-path
        # prefixes (featurize.cluster_rows), summed like the word rows
        self.cluster_embed: Optional[nn.Embedding] = (
            nn.Embedding(n_cluster_rows, cluster_embed_size) if cluster_embed_size else None
        )
        # optional upstream features (a Thinc tok2vec's output: inputs, with
        # gradients when the tok2vec trains) -> trainable projection of
        # upstream_size, created by resize_upstream once their width is known
        self.upstream_size = upstream_size
        self.upstream_proj: Optional[nn.Linear] = None
        self.input_size = word_embed_size + vectors_size + affix_size + self.char_encoder.output_size + cluster_embed_size + upstream_size
        # where the word-type inputs (characters, affixes) sit in a token's input
        type_start = word_embed_size + vectors_size
        self.type_columns = slice(type_start, type_start + affix_size + self.char_encoder.output_size)
        # optional linear projection of each token's input to lstm_input_size
        # before the sentence BiLSTM: a rank limit on the BiLSTM's input
        # weights that makes its input product, most of its work, cheaper
        # (at inference the type part is projected once per word type)
        self.input_proj: Optional[nn.Linear] = nn.Linear(self.input_size, lstm_input_size) if lstm_input_size else None
        self.lstm = nn.LSTM(
            lstm_input_size or self.input_size,
            hidden_size,
            num_layers=depth,
            dropout=dropout if depth > 1 else 0.0,
            batch_first=True,
            bidirectional=True,
        )
        self.output_dropout = nn.Dropout(dropout)
        self.chunk_tokens = INFERENCE_CHUNK_TOKENS
        self.encoding_size = 2 * hidden_size
        self.output: Optional[nn.Linear] = None
        self.use_crf = crf
        self.crf: Optional[LinearChainCRF] = None
        # optional further heads (UPOS, FEATS), scored beside the tags
        self.pos_output: Optional[nn.Linear] = None
        self.morph_output: Optional[nn.Linear] = None
        # the heads scored at inference (names of HEADS): not weights, set by
        # the component (an lstm_tagger predicts only its tags)
        self.predicted_heads: Tuple[str, ...] = HEADS
        if n_labels is not None:
            self.resize_output(n_labels)

    def set_dropout(self, rate: Optional[float]) -> None:
        """Use dropout ``rate`` on the sentence BiLSTM's input, between its
        layers and on its output; ``None``: back to the ``dropout`` the module
        was built with. ``word_dropout`` is not changed."""
        rate = self.dropout if rate is None else rate
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {rate}")
        self.input_dropout.p = self.output_dropout.p = rate
        if self.lstm.num_layers > 1:
            self.lstm.dropout = rate

    def head_sizes(self, predicting: bool = False) -> Dict[str, int]:
        """Number of columns of each head, in the order of the scores (0 =
        absent); ``predicting``: of the scores inference returns (0 for a
        head not in :attr:`predicted_heads`)."""
        return {
            name: 0 if getattr(self, name) is None or (predicting and name not in self.predicted_heads)
            else getattr(self, name).out_features
            for name in HEADS
        }

    @property
    def n_labels(self) -> Optional[int]:
        return None if self.output is None else self.output.out_features

    @property
    def n_pos_labels(self) -> int:
        return self.head_sizes()["pos_output"]

    def resize_head(self, name: str, n_labels: int) -> None:
        """(Re)create head ``name`` (one of :data:`HEADS`) for ``n_labels``
        classes; 0 removes a further head. The tag head needs at least one."""
        if name not in HEADS:
            raise ValueError(f"Unknown head {name!r}; the heads are {HEADS}")
        if name == "output" and n_labels < 1:
            raise ValueError(f"The tagger needs at least one label, got {n_labels}")
        if self.head_sizes()[name] == n_labels:
            return
        device = self.word_embed.weight.device
        setattr(self, name, nn.Linear(self.encoding_size, n_labels).to(device) if n_labels else None)
        if name == "output" and self.use_crf:
            self.crf = LinearChainCRF(n_labels).to(device)

    def resize_output(self, n_labels: int) -> None:
        """(Re)create the tag head for ``n_labels`` tags."""
        self.resize_head("output", n_labels)

    def resize_pos_output(self, n_pos_labels: int) -> None:
        """(Re)create the UPOS head for ``n_pos_labels`` classes (0 removes it)."""
        self.resize_head("pos_output", n_pos_labels)

    def resize_vectors(self, width: int) -> None:
        """(Re)create the projection of static vectors of ``width`` dimensions."""
        if self.vectors_proj is not None and self.vectors_proj.in_features == width:
            return
        device = self.word_embed.weight.device
        self.vectors_proj = nn.Linear(width, self.word_embed_size).to(device)

    def resize_upstream(self, width: int) -> None:
        """(Re)create the projection of upstream features of ``width`` dimensions."""
        if not self.upstream_size:
            raise ValueError("This tagger was built without an upstream (tok2vec) input")
        if self.upstream_proj is not None and self.upstream_proj.in_features == width:
            return
        device = self.word_embed.weight.device
        self.upstream_proj = nn.Linear(width, self.upstream_size).to(device)

    def forward(
        self,
        word_ids: torch.Tensor,
        char_ids: torch.Tensor,
        char_lengths: torch.Tensor,
        token_types: torch.Tensor,
        lengths: torch.Tensor,
        vectors: Optional[torch.Tensor] = None,
        affix_ids: Optional[torch.Tensor] = None,
        clusters: Optional[torch.Tensor] = None,
        upstream: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Return scores of shape (n_sequences, max_len, n_columns): the
        columns of each present head, in the order of :data:`HEADS` (in
        eval mode: of each present head among :attr:`predicted_heads`).

        word_ids: (n_seqs, max_len, n_word_hashes) rows of the word table
        char_ids, char_lengths: characters of each unique word type
        token_types: (n_seqs, max_len) index of each token's word type
        lengths: (n_seqs,) sequence lengths, all >= 1, on CPU
        vectors: (n_seqs, max_len, width) static vectors, with include_static_vectors
        affix_ids: (n_types, n_affix_features) rows of the affix table per word type
        clusters: (n_seqs, max_len, n_prefixes) rows of the cluster table, with cluster_embed_size
        upstream: (n_seqs, max_len, width) upstream (tok2vec) features, with upstream_size
        """
        if self.output is None:
            raise ValueError(
                "The tagger's output layer has no size yet: initialize the "
                "component (nlp.initialize) or load trained weights first."
            )
        types = self._type_inputs(char_ids, char_lengths, affix_ids)
        if self.include_static_vectors:
            _check_projected_input("include_static_vectors", "the pipeline's static vectors", vectors, self.vectors_proj)
        self._check_extra_inputs(clusters, upstream)
        extra = (clusters, upstream)
        if not self.training:
            return self._predict_by_length(word_ids, types, token_types, lengths, vectors, *extra)
        if self.word_dropout > 0:
            drop = torch.rand(word_ids.shape[:2], device=word_ids.device) < self.word_dropout
            word_ids = word_ids.masked_fill(drop.unsqueeze(-1), UNKNOWN_WORD_ID)
        tokens = self.input_dropout(self._token_inputs(word_ids, types, token_types, vectors, *extra))
        if self.input_proj is not None:
            tokens = self.input_proj(tokens)
        packed = pack_padded_sequence(tokens, lengths, batch_first=True, enforce_sorted=False)
        encoded, _ = self.lstm(packed)
        encoded, _ = pad_packed_sequence(encoded, batch_first=True, total_length=tokens.shape[1])
        return self._heads(self.output_dropout(encoded))

    def _check_extra_inputs(self, clusters: Optional[torch.Tensor], upstream: Optional[torch.Tensor]) -> None:
        if (self.cluster_embed is not None) != (clusters is not None):
            raise ValueError("cluster_embed_size and the cluster input must be given together")
        if self.upstream_size:
            _check_projected_input("the upstream tok2vec", "the upstream tok2vec's features", upstream, self.upstream_proj)

    def _type_inputs(
        self, char_ids: torch.Tensor, char_lengths: torch.Tensor, affix_ids: Optional[torch.Tensor]
    ) -> torch.Tensor:
        """What each word type contributes, whatever its context: [chars; affixes]."""
        chars = self.char_encoder(char_ids, char_lengths)
        if self.affix_embed is None:
            return chars
        if affix_ids is None or affix_ids.shape != (len(char_ids), self.n_affix_features):
            raise ValueError(
                f"The tagger expects {self.n_affix_features} affix features per word type, "
                f"got {None if affix_ids is None else tuple(affix_ids.shape)}"
            )
        return torch.cat([chars, self.affix_embed(affix_ids).flatten(1)], dim=-1)

    def _token_inputs(
        self, word_ids: torch.Tensor, types: torch.Tensor, token_types: torch.Tensor, vectors: Optional[torch.Tensor],
        clusters: Optional[torch.Tensor] = None, upstream: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Each token's input to the sentence BiLSTM: [word; vectors; type inputs; clusters; upstream]."""
        before, after = self._token_parts(word_ids, vectors, clusters, upstream)
        return torch.cat(before + [self._per_token(types, token_types)] + after, dim=-1)

    def _token_parts(
        self, word_ids: torch.Tensor, vectors: Optional[torch.Tensor],
        clusters: Optional[torch.Tensor], upstream: Optional[torch.Tensor],
    ) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """The token inputs that are not the type inputs: those before them
        (word, vectors) and those after them (clusters, upstream)."""
        before = [summed_rows(self.word_embed, word_ids)]
        if self.include_static_vectors:
            before.append(self.vectors_proj(vectors))
        after = []
        if self.cluster_embed is not None:
            after.append(summed_rows(self.cluster_embed, clusters))
        if self.upstream_size:
            after.append(self.upstream_proj(upstream))
        return before, after

    @staticmethod
    def _per_token(types: torch.Tensor, token_types: torch.Tensor) -> torch.Tensor:
        # index_select, not types[token_types]: on CPU advanced indexing is
        # several times slower (benchmarks/microbench.py)
        return types.index_select(0, token_types.reshape(-1)).view(*token_types.shape, -1)

    def _projected_inference_inputs(
        self, others_weight: torch.Tensor, word_ids: torch.Tensor, projected_types: torch.Tensor,
        token_types: torch.Tensor, vectors: Optional[torch.Tensor], clusters: Optional[torch.Tensor],
        upstream: Optional[torch.Tensor],
    ) -> torch.Tensor:
        """``input_proj(_token_inputs(...))`` at inference, given the type
        inputs already projected by :meth:`_project_types`: the other parts
        go through their columns of the projection (``others_weight``, from
        :meth:`_other_columns`) per token."""
        before, after = self._token_parts(word_ids, vectors, clusters, upstream)
        others = torch.cat(before + after, dim=-1) if len(before) + len(after) > 1 else before[0]
        return torch.addmm(
            self._per_token(projected_types, token_types).reshape(-1, others_weight.shape[1]),
            others.reshape(-1, others.shape[-1]), others_weight,
        ).view(*token_types.shape, -1)

    def _project_types(self, types: torch.Tensor) -> torch.Tensor:
        """The type inputs times their columns of the projection, plus its
        bias: once per word type instead of once per token."""
        return F.linear(types, self.input_proj.weight[:, self.type_columns], self.input_proj.bias)

    def _other_columns(self) -> torch.Tensor:
        """The projection's columns for the per-token inputs (all but the
        type inputs), transposed for ``addmm``."""
        weight, columns = self.input_proj.weight, self.type_columns
        return torch.cat([weight[:, : columns.start], weight[:, columns.stop :]], dim=1).t()

    def _heads(self, encoded: torch.Tensor, names: Tuple[str, ...] = HEADS) -> torch.Tensor:
        heads = [getattr(self, name) for name in names if getattr(self, name) is not None]
        if len(heads) == 1:
            return heads[0](encoded)
        return torch.cat([head(encoded) for head in heads], dim=-1)

    def _heads_of_directions(self, forward: torch.Tensor, backward: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The heads' scores from :func:`bilstm_directions`' output: each
        direction times its half of the (float) head weights, the backward
        part put in order afterwards, on n_columns instead of 2 x hidden
        values per position, and no concatenation of the directions."""
        names = tuple(name for name in HEADS if name in self.predicted_heads)
        heads = [getattr(self, name) for name in names if getattr(self, name) is not None]
        if not all(type(head) is nn.Linear for head in heads):  # e.g. int8 heads (quantize.py)
            return self._heads(torch.cat([forward, take_rows(backward, rows)], dim=-1), names)
        weight = heads[0].weight if len(heads) == 1 else torch.cat([head.weight for head in heads])
        bias = heads[0].bias if len(heads) == 1 else torch.cat([head.bias for head in heads])
        hidden = forward.shape[-1]
        return F.linear(forward, weight[:, :hidden], bias) + take_rows(F.linear(backward, weight[:, hidden:]), rows)

    def _predict_by_length(
        self, word_ids: torch.Tensor, types: torch.Tensor, token_types: torch.Tensor,
        lengths: torch.Tensor, vectors: Optional[torch.Tensor],
        clusters: Optional[torch.Tensor] = None, upstream: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """The inference path: the same scores as training computes without
        dropout (for the :attr:`predicted_heads`), run on chunks of sequences of similar length. Each chunk goes
        from ids to scores on its own, so no (n_seqs, max_len, hidden) tensor
        is ever built: big fresh buffers cost a page fault per 4 KiB, a third
        of inference time with one such tensor (``benchmarks/microbench.py chunks``). Positions past
        a sequence's length are zero."""
        n_seqs, max_len = token_types.shape

        inputs = self._token_inputs
        if self.input_proj is not None:
            types = self._project_types(types)
            inputs = partial(self._projected_inference_inputs, self._other_columns())

        def score(ids: torch.Tensor, length: int) -> torch.Tensor:
            # time-major (length, n_seqs, ...): the LSTM kernel's own layout
            step_major = lambda t: None if t is None else t[ids, :length].transpose(0, 1)  # noqa: E731
            tokens = inputs(
                step_major(word_ids), types, step_major(token_types),
                step_major(vectors), step_major(clusters), step_major(upstream),
            )
            chunk_lengths = lengths[ids.cpu()]
            scores = self._heads_of_directions(*bilstm_directions(self.lstm, tokens, chunk_lengths))
            inside = (torch.arange(length).unsqueeze(1) < chunk_lengths.unsqueeze(0)).unsqueeze(-1).to(scores.device)
            return (scores * inside).transpose(0, 1)

        scores = types.new_zeros(n_seqs, max_len, sum(self.head_sizes(predicting=True).values()))
        return fill_by_length(scores, lengths, score, self.chunk_tokens)


def summed_rows(embedding: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
    """``embedding(ids).sum(dim=-2)`` in one fused lookup (``embedding_bag``):
    the same values, without the (..., n_ids, width) intermediate and its
    strided reduction: 5x faster in float32 and 17x in bfloat16 on CPU
    (``benchmarks/microbench.py``)."""
    flat = F.embedding_bag(ids.reshape(-1, ids.shape[-1]), embedding.weight, mode="sum")
    return flat.view(*ids.shape[:-1], flat.shape[-1])


def _check_projected_input(
    setting: str, what: str, values: Optional[torch.Tensor], projection: Optional[nn.Linear]
) -> None:
    """A float input the module projects (static vectors, tok2vec features)
    must be given, and as wide as the projection it was trained with."""
    if values is None or projection is None:
        raise ValueError(f"{setting} is on, but {what} (or their projection) were not given")
    if values.shape[-1] != projection.in_features:
        raise ValueError(
            f"{what} have width {values.shape[-1]}, but the tagger was trained with width "
            f"{projection.in_features}"
        )


def length_chunks(lengths: torch.Tensor, chunk_tokens: int = INFERENCE_CHUNK_TOKENS) -> Iterator[Tuple[torch.Tensor, int]]:
    """Split sequence indices, longest first, into chunks of similar length
    holding about ``chunk_tokens`` padded positions each; yield each chunk's
    indices (on the CPU) and its longest length. Big enough that the LSTM's
    per-step overhead is amortized, small enough to stay in cache
    (``benchmarks/microbench.py chunks``)."""
    lengths = lengths.cpu()
    order = torch.argsort(lengths, descending=True)
    sorted_lengths = lengths[order].tolist()
    start = 0
    while start < len(order):
        length = sorted_lengths[start]
        end = min(len(order), start + max(1, chunk_tokens // max(1, length)))
        yield order[start:end], length
        start = end


def fill_by_length(
    out: torch.Tensor, lengths: torch.Tensor, compute: Callable[[torch.Tensor, int], torch.Tensor],
    chunk_tokens: int = INFERENCE_CHUNK_TOKENS,
) -> torch.Tensor:
    """The one chunk runner of the inference path: for each chunk of
    :func:`length_chunks`, ``compute(ids, length)`` (ids on ``out``'s device)
    returns the chunk's rows, written into ``out[ids]`` (their first
    ``length`` positions when the rows are sequences). Returns ``out``."""
    for ids, length in length_chunks(lengths, chunk_tokens):
        ids = ids.to(out.device)
        rows = compute(ids, length)
        if rows.dim() == 2:
            out[ids] = rows
        else:
            out[ids, : rows.shape[1]] = rows
    return out


def reversal_rows(lengths: torch.Tensor, length: int) -> torch.Tensor:
    """Row indices into the ``(length * n_seqs)`` rows of a time-major padded
    batch that reverse each sequence within its length (padding stays where
    it is). Applying them twice is the identity."""
    steps = torch.arange(length).unsqueeze(1)
    ends = lengths.cpu().unsqueeze(0)
    within = torch.where(steps < ends, ends - 1 - steps, steps)
    return (within * len(lengths) + torch.arange(len(lengths)).unsqueeze(0)).reshape(-1)


def take_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``x`` (length, n_seqs, width) with its positions reordered by the flat
    ``rows`` of :func:`reversal_rows`. One row copy per position
    (``index_select``): on CPU over 10x faster than the element-wise
    ``gather``, which would be a tenth of inference time
    (``benchmarks/microbench.py``)."""
    length, n_seqs, width = x.shape
    return x.reshape(length * n_seqs, width).index_select(0, rows).view(length, n_seqs, width)


def bilstm_directions(lstm: nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A bidirectional ``lstm`` on a padded, **time-major** batch ``x``
    (length, n_seqs, width), for inference (no inter-layer dropout).

    Returns the top layer's forward outputs, its backward outputs *in
    reversed order* (step ``t`` of sequence ``i`` holds the backward state of
    step ``length_i - 1 - t``) and the rows (:func:`reversal_rows`) that put
    them in order: a caller that applies a linear layer next can do so
    before reordering, on fewer columns, and skip the concatenation.

    The backward direction runs on each sequence reversed within its length,
    so padding never reaches a real position; outputs past a sequence's
    length are unspecified. Each direction is one call of PyTorch's fused
    LSTM kernel (oneDNN on CPU), which packed sequences don't take; time-major
    is the kernel's own layout, so no input or output is transposed.
    ``lstm`` is an ``nn.LSTM`` or has ``direction(layer, reverse, x)``
    (``quantize.DynamicInt8BiLSTM``)."""
    rows = reversal_rows(lengths, x.shape[0]).to(x.device)
    run = getattr(lstm, "direction", None) or partial(_lstm_direction, lstm)
    for layer in range(lstm.num_layers):
        forward = run(layer, False, x)
        backward = run(layer, True, take_rows(x, rows))
        if layer + 1 < lstm.num_layers:
            x = torch.cat([forward, take_rows(backward, rows)], dim=-1)
    return forward, backward, rows


def _lstm_direction(lstm: nn.LSTM, layer: int, reverse: bool, x: torch.Tensor) -> torch.Tensor:
    """One direction of one layer of ``lstm`` over time-major ``x``, from zero states."""
    suffix = "_reverse" if reverse else ""
    weights = [getattr(lstm, f"{name}_l{layer}{suffix}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    zeros = x.new_zeros(1, x.shape[1], lstm.hidden_size)
    return torch.lstm(x, (zeros, zeros), weights, True, 1, 0.0, False, False, False)[0]


def bilstm_padded(lstm: nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """:func:`bilstm_directions` on a batch-first ``x`` (n_seqs, length,
    width), both directions in order and concatenated as
    ``pad_packed_sequence`` gives them: positions past a sequence's length
    are zero."""
    forward, backward, rows = bilstm_directions(lstm, x.transpose(0, 1), lengths)
    out = torch.cat([forward, take_rows(backward, rows)], dim=-1).transpose(0, 1)
    inside = torch.arange(x.shape[1]).unsqueeze(0) < lengths.cpu().unsqueeze(1)
    return out * inside.unsqueeze(-1).to(out.device)


class LinearChainCRF(nn.Module):
    """A linear-chain CRF over tag transitions, batched over sequences and
    vectorized over tags (the only Python loop is over time steps).

    ``transitions[i, j]`` scores tag ``i`` followed by tag ``j``. All methods
    take emissions of shape (batch, time, n_tags) and a boolean mask (batch,
    time) whose rows are prefixes (True for the first ``length`` steps,
    length >= 1).
    """

    def __init__(self, n_tags: int) -> None:
        super().__init__()
        self.transitions = nn.Parameter(torch.zeros(n_tags, n_tags))
        self.start_transitions = nn.Parameter(torch.zeros(n_tags))
        self.end_transitions = nn.Parameter(torch.zeros(n_tags))

    def reset_parameters(self) -> None:
        for param in (self.transitions, self.start_transitions, self.end_transitions):
            nn.init.uniform_(param, -0.1, 0.1)

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log Z per sequence (the forward algorithm), shape (batch,)."""
        score = self.start_transitions + emissions[:, 0]
        for t in range(1, emissions.shape[1]):
            step = torch.logsumexp(
                score.unsqueeze(2) + self.transitions + emissions[:, t].unsqueeze(1), dim=1
            )
            score = torch.where(mask[:, t].unsqueeze(1), step, score)
        return torch.logsumexp(score + self.end_transitions, dim=1)

    def negative_log_likelihood(
        self, emissions: torch.Tensor, allowed: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Sum over sequences of -log P(gold | x).

        ``allowed`` (batch, time, n_tags) is True for the tags the annotation
        allows at each step: one tag where it is known, all where it is
        missing (partial annotation marginalizes over them), all but one for a
        negative label. Then log P = log Z(allowed paths) - log Z(all paths).
        """
        log_z = self.log_partition(emissions, mask)
        # Fully annotated rows have one allowed path: its score is log Z(allowed),
        # with no forward pass (the usual case in training; ~6x faster, see
        # benchmarks/microbench.py crf-loss).
        single = ((allowed.sum(dim=-1) == 1) | ~mask).all(dim=1)
        allowed_log_z = torch.empty_like(log_z)
        if single.any():
            allowed_log_z[single] = self.path_score(
                emissions[single], allowed[single].float().argmax(dim=-1), mask[single]
            )
        if not single.all():
            constrained = emissions[~single].masked_fill(~allowed[~single], -1e4)
            allowed_log_z[~single] = self.log_partition(constrained, mask[~single])
        return (log_z - allowed_log_z).sum()

    def path_score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Score of the tag sequence ``tags`` (batch, time) per row, shape (batch,)."""
        emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)
        transitions = self.transitions[tags[:, :-1], tags[:, 1:]]
        last = tags.gather(1, (mask.sum(dim=1) - 1).unsqueeze(1)).squeeze(1)
        return (
            self.start_transitions[tags[:, 0]]
            + torch.where(mask, emitted, torch.zeros_like(emitted)).sum(dim=1)
            + torch.where(mask[:, 1:], transitions, torch.zeros_like(transitions)).sum(dim=1)
            + self.end_transitions[last]
        )

    def marginals(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """P(tag_t = j | x) for every step, via forward-backward (the gradient
        of log Z with respect to the emissions)."""
        with torch.enable_grad():
            emissions = emissions.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.log_partition(emissions, mask).sum(), emissions)
        return grad

    def viterbi(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The best tag sequence for each row, shape (batch, time)."""
        score = self.start_transitions + emissions[:, 0]
        history = []
        for t in range(1, emissions.shape[1]):
            best, best_prev = (score.unsqueeze(2) + self.transitions).max(dim=1)
            score = torch.where(mask[:, t].unsqueeze(1), best + emissions[:, t], score)
            history.append(best_prev)
        current = (score + self.end_transitions).argmax(dim=1)
        path = [current]
        for t in range(emissions.shape[1] - 1, 0, -1):
            previous = history[t - 1].gather(1, current.unsqueeze(1)).squeeze(1)
            current = torch.where(mask[:, t], previous, current)
            path.append(current)
        return torch.stack(path[::-1], dim=1)
