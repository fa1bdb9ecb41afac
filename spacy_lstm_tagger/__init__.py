"""spacy-lstm-tagger: a PyTorch word + character BiLSTM part-of-speech tagger for spaCy."""
from .assets import make_transformer_assets  # registers spacy_lstm_tagger.transformer_assets.v1
from .component import LSTMTagger, make_lstm_joint_tagger, make_lstm_tagger
from .distill import make_attach_teacher  # registers spacy_lstm_tagger.attach_teacher.v1
from .ensemble import assemble as assemble_ensemble
from .ensemble import build_ensemble
from .model import build_wordchar_bilstm_tagger, build_wordchar_bilstm_tagger_v2
from .teacher_outputs import make_attach_stored_teacher  # registers spacy_lstm_tagger.attach_stored_teacher.v1
from .schedules import warmup_linear_capped  # registers spacy_lstm_tagger.warmup_linear.v1

__version__ = "0.1.0"
__all__ = [
    "LSTMTagger",
    "make_lstm_tagger",
    "make_lstm_joint_tagger",
    "build_wordchar_bilstm_tagger",
    "build_wordchar_bilstm_tagger_v2",
    "build_ensemble",
    "assemble_ensemble",
    "warmup_linear_capped",
    "__version__",
]
