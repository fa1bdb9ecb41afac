"""spacy-lstm-tagger: a PyTorch word + character BiLSTM part-of-speech tagger for spaCy."""
from .component import LSTMTagger, make_lstm_joint_tagger, make_lstm_tagger
from .model import build_wordchar_bilstm_tagger, build_wordchar_bilstm_tagger_v2

__version__ = "0.1.0"
__all__ = [
    "LSTMTagger",
    "make_lstm_tagger",
    "make_lstm_joint_tagger",
    "build_wordchar_bilstm_tagger",
    "build_wordchar_bilstm_tagger_v2",
    "__version__",
]
