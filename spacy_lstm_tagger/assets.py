"""The pretrained assets a shipped config may name, each prepared by
``scripts/prepare_pretrained.py``, and the one-line error for one that has
not been prepared: it names the path and the command that prepares it."""
from pathlib import Path
from typing import Callable, Optional, Union

from spacy.language import Language
from spacy.util import registry

PREPARE_SCRIPT = "scripts/prepare_pretrained.py"
PREPARED = {
    "en_core_web_md_vectors": "md",
    "glove_6b_50d": "glove",
    "en_lexeme_cluster.json.gz": "clusters",
    "all-MiniLM-L6-v2": "minilm",
    "all-MiniLM-L6-v2-spacy": "minilm-pipeline",
    "gutenberg.spacy": "gutenberg",
    "imdb_reviews.spacy": "imdb",
}
"""The name ``prepare_pretrained.py OUT RESOURCE`` writes under OUT -> RESOURCE."""


def prepare_command(path: Union[str, Path]) -> Optional[str]:
    """The command that writes ``path``, or None for a path that is not
    one of :data:`PREPARED`."""
    path = Path(path)
    resource = PREPARED.get(path.name)
    if resource is None:
        return None
    return f"python {PREPARE_SCRIPT} {path.parent.as_posix()} {resource}"


def require_prepared(path: Union[str, Path], what: str) -> Path:
    """``path`` if it exists; else a ``FileNotFoundError`` in one line,
    with the command preparing it when it is one of :data:`PREPARED`
    (else what the script prepares)."""
    path = Path(path)
    if path.exists():
        return path
    command = prepare_command(path)
    if command:
        raise FileNotFoundError(f"{what} {path} not found: prepare it with `{command}`")
    raise FileNotFoundError(f"{what} {path} not found ({PREPARE_SCRIPT} prepares {', '.join(PREPARED)})")


@registry.callbacks("spacy_lstm_tagger.transformer_assets.v1")
def make_transformer_assets(component: str = "transformer") -> Callable[[Language], Language]:
    """``[initialize] before_init``: before anything else is initialized,
    check that the prepared Hugging Face directory the ``component``
    (spacy-transformers' ``transformer``) loads its weights from exists, so
    a config whose asset is missing fails in one line naming the command
    that prepares it. spaCy initializes only the components it trains: a
    transformer in ``[training] frozen_components`` is initialized here
    (its pretrained weights are all it has)."""

    def check_transformer(nlp: Language) -> Language:
        if component not in nlp.component_names:
            raise ValueError(f"transformer_assets: the pipeline has no component {component!r} "
                             f"(it has {nlp.component_names})")
        pipe = nlp.get_pipe(component)
        name = getattr(pipe, "model", None) and pipe.model.attrs.get("name")
        if not isinstance(name, str):
            raise ValueError(f"transformer_assets: {component!r} is not a spacy-transformers transformer")
        if Path(name).name in PREPARED or Path(name).is_absolute() or name.startswith("."):
            require_prepared(name, f"[{component}] the transformer's weights")
        if component in nlp.config["training"].get("frozen_components", []):
            # spaCy leaves a frozen component out of initialize (and of the
            # listener wiring that comes with it): load its weights and give
            # its listeners their width here
            pipe.initialize(lambda: [])
            names = nlp.component_names
            for name in names[names.index(component) + 1:]:
                pipe.find_listeners(nlp.get_pipe(name))
        return nlp

    return check_transformer
