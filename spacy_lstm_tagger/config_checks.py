"""Bounds for the architecture's arguments, checked when the model is built.

A value outside them would otherwise fail late and obscurely (``n_word_hashes
= 5`` at the first update, with a broadcast error) or never finish
(``depth = 1000000`` hangs ``spacy.load`` allocating layers). One table,
:data:`ARCHITECTURE_BOUNDS`, and one function, :func:`check_architecture_args`,
shared by every version of the registered architecture: a new argument gets
a line in the table (an argument without one is refused, so none is missed).
The bounds are generous; they exist to turn typos and absurd values into a
clear error at build time, not to tune anything.
"""
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from spacy.attrs import IDS as SPACY_ATTR_IDS

MAX_PARAMETERS = 500_000_000
"""Largest model the config may describe (2 GB of float32 weights, before
the optimizer's copies): bigger is a typo, and would exhaust memory."""

N_THINC_HASHES = 4
"""``Ops.hash`` gives four 32-bit hashes per key: a word can use at most four rows."""


@dataclass(frozen=True)
class Bound:
    """What an argument may be: ``kind`` is ``int``, ``float``, ``bool`` or
    ``str``; numbers lie in ``[low, high]`` (``high_open``: ``[low, high)``);
    ``also``: values allowed besides those of ``kind`` (e.g. ``"auto"``)."""

    kind: type
    low: Optional[float] = None
    high: Optional[float] = None
    meaning: str = ""
    optional: bool = False
    high_open: bool = False
    also: Tuple[Any, ...] = ()


ARCHITECTURE_BOUNDS: Dict[str, Bound] = {
    "word_embed_size": Bound(int, 1, 4096, "width of the word embedding"),
    "n_word_rows": Bound(int, 2, 2**32, "rows of the hashed word table"),
    "n_word_hashes": Bound(int, 1, N_THINC_HASHES, "hashed rows summed per word (Thinc gives 4 hashes)"),
    "word_attr": Bound(str, meaning="token attribute hashed for the word embedding (e.g. NORM, LOWER, ORTH)"),
    "char_embed_size": Bound(int, 1, 1024, "width of the character embedding"),
    "char_hidden_size": Bound(int, 1, 2048, "character BiLSTM size per direction"),
    "n_chars": Bound(int, 258, 2_000_000, "character table rows (256 direct code points + pad + hashed)"),
    "max_word_chars": Bound(int, 1, 1024, "characters kept per word"),
    "n_prefixes": Bound(int, 0, 20, "prefix features per word (lengths 1 to n)"),
    "n_suffixes": Bound(int, 0, 20, "suffix features per word (lengths 1 to n)"),
    "use_shape": Bound(bool, meaning="word shape feature on/off"),
    "n_affix_rows": Bound(int, 1, 2**32, "rows of the hashed affix table"),
    "affix_embed_size": Bound(int, 0, 1024, "width of the affix embedding"),
    "hidden_size": Bound(int, 1, 4096, "sentence BiLSTM size per direction"),
    "lstm_input_size": Bound(int, 0, 4096, "width of the projection of each token's input to the sentence BiLSTM (0 = none)"),
    "depth": Bound(int, 1, 16, "layers of the sentence BiLSTM"),
    "dropout": Bound(float, 0.0, 1.0, "dropout rate", high_open=True),
    "word_dropout": Bound(float, 0.0, 1.0, "word dropout rate", high_open=True),
    "max_window": Bound(int, 1, 1_000_000, "tokens per window for long Docs"),
    "window_context": Bound(int, 0, 500_000, "context tokens on each side of a window"),
    "sentence_windows": Bound(bool, meaning="tag each sentence of a Doc with sentence boundaries on its own on/off"),
    "joint_pos": Bound(bool, meaning='UPOS head on/off, or "auto": on when the training data has UPOS',
                       also=("auto",)),
    "joint_morph": Bound(bool, meaning='FEATS head on/off, or "auto": on when the training data has FEATS',
                         also=("auto",)),
    "crf": Bound(bool, meaning="CRF decoding on/off"),
    "include_static_vectors": Bound(bool, meaning="static vectors input on/off"),
    "cluster_embed_size": Bound(int, 0, 1024, "width of the Brown-cluster embedding (0 = off)"),
    "n_cluster_rows": Bound(int, 0, 2**32, "rows of the hashed cluster table"),
    "tok2vec": Bound(object, meaning="upstream Thinc model (its type is checked by the builder)", optional=True),
    "tok2vec_proj_size": Bound(int, 0, 4096, "projection width of the upstream tok2vec"),
    "char_cache_size": Bound(int, 0, 10_000_000, "word types whose character encodings are cached (0 = off)"),
    "quantize": Bound(bool, meaning="int8 inference on/off"),
    "bfloat16": Bound(bool, meaning='bfloat16 inference on/off, or "auto": on where the CPU runs bf16 natively',
                      also=("auto",)),
    "nO": Bound(int, 1, 1_000_000, "number of tags", optional=True),
}


def check_architecture_args(architecture: str = "spacy_lstm_tagger.WordCharBiLSTM", **args: Any) -> None:
    """Raise one ``ValueError`` listing every argument of ``architecture``
    that is of the wrong type or out of bounds (see ARCHITECTURE_BOUNDS),
    then check the sizes together (windows, total parameters)."""
    problems = []
    for name, value in args.items():
        bound = ARCHITECTURE_BOUNDS.get(name)
        if bound is None:
            problems.append(f"{name}: no bounds are declared for this argument (add it to ARCHITECTURE_BOUNDS)")
            continue
        problem = _check_value(bound, value)
        if problem:
            problems.append(f"{name} = {value!r}: {problem}")
    if not problems:
        problems.extend(_check_together(args))
    if problems:
        raise ValueError(f"Invalid {architecture} settings in the [model] config: " + "; ".join(problems))


def _check_value(bound: Bound, value: Any) -> Optional[str]:
    if value is None and bound.optional:
        return None
    if any(value == allowed and type(value) is type(allowed) for allowed in bound.also):
        return None
    what = f" ({bound.meaning})" if bound.meaning else ""
    if bound.kind is object:
        return None
    if bound.kind is bool:
        others = "".join(f' or "{allowed}"' for allowed in bound.also)
        return None if isinstance(value, bool) else f"must be true or false{others}{what}"
    if bound.kind is str:
        if bound is ARCHITECTURE_BOUNDS.get("word_attr"):
            ok = isinstance(value, str) and value and value.upper() in SPACY_ATTR_IDS
            return None if ok else f"must be a spaCy token attribute{what}"
        return None if isinstance(value, str) and value else f"must be a non-empty string{what}"
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if bound.kind is int and not (is_number and isinstance(value, int)):
        return f"must be an integer{what}"
    if not is_number or value != value:  # NaN
        return f"must be a number{what}"
    high_ok = value < bound.high if bound.high_open else value <= bound.high
    if not bound.low <= value or not high_ok:
        closing = ")" if bound.high_open else "]"
        return f"must be in [{bound.low:g}, {bound.high:g}{closing}{what}"
    return None


def _check_together(args: Dict[str, Any]) -> list:
    problems = []
    if "max_window" in args and "window_context" in args and args["max_window"] <= 2 * args["window_context"]:
        problems.append(
            f"max_window ({args['max_window']}) must exceed 2 * window_context ({args['window_context']})"
        )
    n_params = estimated_parameters(args)
    if n_params > MAX_PARAMETERS:
        problems.append(
            f"these sizes give about {n_params:,} parameters, more than the limit of {MAX_PARAMETERS:,} "
            "(check n_word_rows, word_embed_size, hidden_size and depth)"
        )
    return problems


def estimated_parameters(args: Dict[str, Any]) -> int:
    """The parameters of the embeddings and BiLSTMs the sizes describe
    (output heads other than the tags excluded: they depend on the labels)."""
    get = lambda name: int(args.get(name) or 0)  # noqa: E731
    word, chars = get("word_embed_size"), get("char_embed_size")
    char_hidden, hidden, depth = get("char_hidden_size"), get("hidden_size"), get("depth")

    def bilstm(n_in: int, size: int, layers: int) -> int:
        if not layers or not size:
            return 0
        first = 2 * 4 * size * (n_in + size + 2)
        return first + (layers - 1) * 2 * 4 * size * (2 * size + size + 2)

    n_affixes = get("n_prefixes") + get("n_suffixes") + int(bool(args.get("use_shape")))
    affix_size = get("affix_embed_size") if n_affixes else 0
    inputs = word * (2 if args.get("include_static_vectors") else 1) + 2 * char_hidden + n_affixes * affix_size
    return (
        get("n_word_rows") * word
        + get("n_affix_rows") * affix_size
        + get("n_chars") * chars
        + bilstm(chars, char_hidden, 1)
        + (inputs + 1) * get("lstm_input_size")
        + bilstm(get("lstm_input_size") or inputs, hidden, depth)
        + get("nO") * 2 * hidden
    )
