"""spacy-lstm-tagger: a PyTorch word + character BiLSTM part-of-speech tagger for spaCy."""
from .component import LSTMTagger, make_lstm_tagger
from .model import build_wordchar_bilstm_tagger

__version__ = "0.1.0"
__all__ = ["LSTMTagger", "make_lstm_tagger", "build_wordchar_bilstm_tagger", "__version__"]
