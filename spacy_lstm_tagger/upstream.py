"""Pretrained inputs that reach the tagger from outside its own weights.

* Upstream features: the output of a Thinc ``Model[List[Doc], List[Floats2d]]``
  (``spacy.Tok2VecListener.v1``, spacy-transformers' ``TransformerListener``,
  or an inline tok2vec) padded into the tagger's windows as one float input
  per token, and the torch gradient of that input cut back into one array per
  Doc, so the tok2vec trains through the tagger as in spaCy's
  ``chain(tok2vec, ...)`` (or not at all when its component is frozen).
* Brown clusters: a ``Lookups`` object with spaCy's ``lexeme_cluster`` table,
  read from ``en_lexeme_cluster.json.gz`` of spacy-lookups-data, for
  ``[initialize.lookups]`` (the pipeline's vocab then saves it).
"""
import gzip
from pathlib import Path
from typing import List, Sequence, Union

import numpy
import srsly
from spacy.lookups import Lookups
from spacy.util import registry
from thinc.types import Floats2d

from .assets import require_prepared
from .featurize import CLUSTER_TABLE, Window


@registry.misc("spacy_lstm_tagger.ClusterLookups.v1")
def create_cluster_lookups(path: Union[str, Path]) -> Lookups:
    """Brown clusters (word -> bit-reversed cluster path, spaCy's encoding) from
    a JSON file, optionally gzipped, such as spacy-lookups-data's
    ``en_lexeme_cluster.json.gz``, as the vocab's ``lexeme_cluster`` table."""
    try:
        path = require_prepared(path, "Brown cluster file")
    except FileNotFoundError as err:
        raise ValueError(str(err)) from None
    raw = path.read_bytes()
    data = srsly.json_loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)
    if not isinstance(data, dict) or not all(isinstance(v, int) for v in list(data.values())[:100]):
        raise ValueError(f"{path} is not a JSON object mapping words to integer cluster ids")
    lookups = Lookups()
    lookups.add_table(CLUSTER_TABLE, data)
    return lookups


def pad_into_windows(tokvecs: Sequence[Floats2d], windows: Sequence[Window], max_len: int) -> numpy.ndarray:
    """Per-Doc features -> ``(n_windows, max_len, width)``, zeros past each window's end."""
    widths = {t.shape[1] for t in tokvecs if len(t)}
    if len(widths) > 1:
        raise ValueError(f"The upstream tok2vec gave features of different widths in one batch: {sorted(widths)}")
    width = widths.pop() if widths else (tokvecs[0].shape[1] if len(tokvecs) else 0)
    padded = numpy.zeros((len(windows), max_len, width), dtype="float32")
    for w, win in enumerate(windows):
        source = tokvecs[win.doc_index]
        if len(source) < win.end:
            raise ValueError(
                f"The upstream tok2vec gave {len(source)} rows for a Doc of at least {win.end} tokens"
            )
        padded[w, : win.end - win.start] = _to_numpy(source[win.start : win.end])
    return padded


def unpad_from_windows(d_padded: numpy.ndarray, windows: Sequence[Window], tokvecs: Sequence[Floats2d], ops) -> List[Floats2d]:
    """The gradient of the padded input -> one array per Doc. A token seen by
    several overlapping windows gets the sum (its feature fed each of them)."""
    d_tokvecs = [numpy.zeros(t.shape, dtype="float32") for t in tokvecs]
    for w, win in enumerate(windows):
        d_tokvecs[win.doc_index][win.start : win.end] += d_padded[w, : win.end - win.start]
    return [ops.asarray2f(d) for d in d_tokvecs]


def _to_numpy(array) -> numpy.ndarray:
    return array.get() if hasattr(array, "get") else numpy.asarray(array)
