"""The pretrained assets a shipped config may name, each prepared by
``scripts/prepare_pretrained.py``, and the one-line error for one that has
not been prepared: it names the path and the command that prepares it."""
from pathlib import Path
from typing import Optional, Union

PREPARE_SCRIPT = "scripts/prepare_pretrained.py"
PREPARED = {
    "en_core_web_md_vectors": "md",
    "glove_6b_50d": "glove",
    "en_lexeme_cluster.json.gz": "clusters",
    "all-MiniLM-L6-v2": "minilm",
    "all-MiniLM-L6-v2-spacy": "minilm-pipeline",
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
