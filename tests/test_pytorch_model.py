"""The pure torch module: the fast inference path computes what training computes."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from spacy_lstm_tagger.pytorch_model import CharBiLSTMEncoder, WordCharBiLSTMTagger, bilstm_padded, fill_by_length


def bilstm_by_length(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor, chunk_tokens: int) -> torch.Tensor:
    """The sentence BiLSTM as the inference path runs it: length-sorted chunks
    (the one chunk runner) of padded sequences."""
    out = x.new_zeros(x.shape[0], x.shape[1], 2 * lstm.hidden_size)
    return fill_by_length(out, lengths, lambda ids, n: bilstm_padded(lstm, x[ids, :n], lengths[ids]), chunk_tokens)


def packed_bilstm(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, _ = lstm(packed)
    return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


@settings(max_examples=25, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 30), min_size=1, max_size=40),
    depth=st.integers(1, 2),
    chunk_tokens=st.integers(1, 64),
    seed=st.integers(0, 2**16),
)
def test_bilstm_by_length_equals_packed_lstm(lengths, depth, chunk_tokens, seed):
    torch.manual_seed(seed)
    lstm = nn.LSTM(5, 7, num_layers=depth, batch_first=True, bidirectional=True).eval()
    lengths_t = torch.tensor(lengths)
    x = torch.randn(len(lengths), max(lengths), 5)
    with torch.no_grad():
        expected = packed_bilstm(lstm, x, lengths_t)
        got = bilstm_by_length(lstm, x, lengths_t, chunk_tokens=chunk_tokens)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # padding positions are zero, as pad_packed_sequence leaves them
    for i, n in enumerate(lengths):
        assert not got[i, n:].any()


def test_char_encoder_inference_equals_training_path():
    torch.manual_seed(0)
    encoder = CharBiLSTMEncoder(n_chars=50, char_embed_size=6, hidden_size=4)
    lengths = torch.tensor([1, 5, 3, 8, 2, 8])
    char_ids = torch.randint(1, 50, (6, 8)) * (torch.arange(8) < lengths.unsqueeze(1))
    with torch.no_grad():
        encoder.train()  # the packed path (no dropout inside the char encoder)
        expected = encoder(char_ids, lengths)
        encoder.eval()
        got = encoder(char_ids, lengths)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@settings(max_examples=20, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 40), min_size=1, max_size=12),
    depth=st.integers(1, 2),
    joint_pos=st.booleans(),
    vectors=st.booleans(),
    affixes=st.booleans(),
    joint_morph=st.booleans(),
    clusters=st.booleans(),
    lstm_input_size=st.sampled_from([0, 5]),
    chunk_tokens=st.integers(1, 100),
    seed=st.integers(0, 2**16),
)
def test_tagger_inference_path_equals_training_path(
    lengths, depth, joint_pos, vectors, affixes, joint_morph, clusters, lstm_input_size, chunk_tokens, seed
):
    """The chunk-by-chunk inference path gives the scores of the training path
    (without dropout) at every real position, and zeros past each length,
    however the sequences and word types fall into chunks; with an input
    projection too (projected per word type at inference, per token in
    training)."""
    torch.manual_seed(seed)
    module = WordCharBiLSTMTagger(
        n_word_rows=30, n_word_hashes=2, word_embed_size=6, n_chars=40, char_embed_size=5,
        char_hidden_size=4, hidden_size=7, depth=depth, dropout=0.0, word_dropout=0.0,
        include_static_vectors=vectors, n_labels=5,
        n_affix_features=3 if affixes else 0, n_affix_rows=17, affix_embed_size=2 if affixes else 0,
        n_cluster_rows=11 if clusters else 0, cluster_embed_size=3 if clusters else 0,
        lstm_input_size=lstm_input_size,
    )
    assert (module.input_proj is None) == (lstm_input_size == 0)
    module.chunk_tokens = module.char_encoder.chunk_tokens = chunk_tokens
    module.resize_pos_output(3 if joint_pos else 0)
    module.resize_head("morph_output", 4 if joint_morph else 0)
    if vectors:
        module.resize_vectors(4)
    n_seqs, max_len, n_types = len(lengths), max(lengths), 9
    lengths_t = torch.tensor(lengths)
    char_lengths = torch.randint(1, 7, (n_types,))
    inputs = (
        torch.randint(1, 30, (n_seqs, max_len, 2)),
        torch.randint(1, 40, (n_types, 6)) * (torch.arange(6) < char_lengths.unsqueeze(1)),
        char_lengths,
        torch.randint(0, n_types, (n_seqs, max_len)),
        lengths_t,
        torch.randn(n_seqs, max_len, 4) if vectors else None,
        torch.randint(1, 17, (n_types, 3)) if affixes else None,
        torch.randint(0, 11, (n_seqs, max_len, 4)) if clusters else None,
    )
    with torch.no_grad():
        expected = module.train()(*inputs)
        got = module.eval()(*inputs)
    assert got.shape == expected.shape == (n_seqs, max_len, 5 + (3 if joint_pos else 0) + (4 if joint_morph else 0))
    inside = (torch.arange(max_len) < lengths_t.unsqueeze(1)).unsqueeze(-1)
    torch.testing.assert_close(got * inside, expected * inside, rtol=1e-5, atol=1e-5)
    assert not (got * ~inside).any()


@pytest.mark.parametrize("shape", [(3, 5, 2), (4, 1), (0, 0, 2), (2, 3, 4)])
def test_summed_rows_is_the_embeddings_sum_with_its_gradient(shape):
    from spacy_lstm_tagger.pytorch_model import summed_rows

    torch.manual_seed(0)
    embedding = torch.nn.Embedding(11, 6)
    ids = torch.randint(0, 11, shape)
    fused = summed_rows(embedding, ids)
    reference = embedding(ids).sum(dim=-2)
    assert fused.shape == reference.shape == (*shape[:-1], 6)
    torch.testing.assert_close(fused, reference)
    if fused.numel():
        (grad_fused,) = torch.autograd.grad((fused * fused).sum(), embedding.weight)
        (grad_reference,) = torch.autograd.grad((reference * reference).sum(), embedding.weight)
        torch.testing.assert_close(grad_fused, grad_reference)
