"""spacy-lstm-tagger: a PyTorch word + character BiLSTM part-of-speech tagger for spaCy."""
from .component import LSTMTagger, make_lstm_tagger
from .distill import make_attach_teacher  # registers spacy_lstm_tagger.attach_teacher.v1
from .model import build_wordchar_bilstm_tagger

__version__ = "0.1.0"
__all__ = ["LSTMTagger", "make_lstm_tagger", "build_wordchar_bilstm_tagger", "__version__"]
