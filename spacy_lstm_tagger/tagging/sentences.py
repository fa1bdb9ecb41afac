"""What a line of text becomes: one sentence, or the sentences spaCy's
rule-based ``sentencizer`` finds in it.

A tagging pipeline (lstm_tagger alone) sets no sentence boundaries, so a
text line holding two sentences would be one CoNLL-U sentence. With
``"sentencizer"`` (the default) a pipeline without a component that sets
them (a parser, a senter) gets spaCy's ``sentencizer`` as its last
component: it runs after the tagger, so the tags are unchanged, and it keeps
the boundaries a Doc already has (CoNLL-U input keeps its sentences).
"""
from spacy.language import Language

SENTENCE_MODES = ("sentencizer", "line")
SENTENCE_SETTERS = ("token.is_sent_start", "doc.sents")


def sentence_setters(nlp: Language) -> list:
    """The names of the enabled components that set sentence boundaries."""
    return [name for name in nlp.pipe_names
            if any(attr in nlp.get_pipe_meta(name).assigns for attr in SENTENCE_SETTERS)]


def apply_sentence_mode(nlp: Language, mode: str) -> Language:
    """``"sentencizer"``: add spaCy's sentencizer last unless a component
    sets sentence boundaries; ``"line"``: leave the pipeline as it is (a
    line or record is one sentence unless the pipeline splits it)."""
    if mode not in SENTENCE_MODES:
        raise ValueError(f"Unknown sentence mode {mode!r}: expected {' or '.join(SENTENCE_MODES)}")
    if mode == "sentencizer" and not sentence_setters(nlp):
        nlp.add_pipe("sentencizer", name="sentencizer", last=True)
    return nlp
