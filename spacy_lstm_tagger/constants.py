"""Constants shared by the torch-free featurization and the torch module."""

UNKNOWN_WORD_ID = 0
"""Row of the word table used for word dropout (never produced by hashing)."""
PAD_CHAR_ID = 0
"""Character id of padding (and of the empty string)."""
INFERENCE_CHUNK_TOKENS = 4096
"""Padded positions per chunk at inference (see ``pytorch_model.length_chunks``)."""
