"""The pure torch module: the fast inference path computes what training computes."""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from spacy_lstm_tagger.pytorch_model import CharBiLSTMEncoder, bilstm_by_length


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
