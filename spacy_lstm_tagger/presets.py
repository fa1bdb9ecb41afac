"""The tuned training configs, shipped with the package as presets.

``python -m spacy_lstm_tagger init-config OUTPUT.cfg --preset efficiency``
writes one of them, so a pip user gets the documented recipe (model sizes,
optimizer, batching, step budget) instead of ``spacy init config``'s generic
training block.

There is one copy of each file: the repository's ``configs/`` directory.
pyproject.toml maps it to the package directory ``spacy_lstm_tagger/configs``,
so a wheel carries the files there; a source checkout (editable install or
``PYTHONPATH``) reads them from ``configs/`` itself. Every ``configs/lstm_*.cfg``
is a preset, named without the prefix (``lstm_tagger_efficiency.cfg`` is
``efficiency``, a future ``lstm_crf.cfg`` would be ``crf``): adding a file
adds a preset, nothing is listed by hand. (``spacy_tagger.cfg``, the baseline,
is not shipped.)
"""
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Union

if TYPE_CHECKING:
    from thinc.api import Config

PRESET_GLOB = "lstm_*.cfg"
_NAME_PREFIXES = ("lstm_tagger_", "lstm_")
DEFAULT_PRESET = "small"
_PACKAGE_DIR = Path(__file__).resolve().parent


def configs_dir() -> Path:
    """Where the shipped configs are: package data when installed from a wheel,
    the repository's ``configs/`` in a source checkout."""
    for candidate in (_PACKAGE_DIR / "configs", _PACKAGE_DIR.parent / "configs"):
        if any(candidate.glob(PRESET_GLOB)):
            return candidate
    raise FileNotFoundError(
        f"No {PRESET_GLOB} configs found in {_PACKAGE_DIR / 'configs'} or "
        f"{_PACKAGE_DIR.parent / 'configs'}: the spacy-lstm-tagger installation is incomplete"
    )


def preset_name(path: Path) -> str:
    """``lstm_tagger_efficiency.cfg`` -> ``efficiency``; ``lstm_crf.cfg`` would be ``crf``."""
    prefix = next(p for p in _NAME_PREFIXES if path.stem.startswith(p))
    return path.stem[len(prefix):]


def preset_paths() -> Dict[str, Path]:
    """Preset name -> config file, sorted by name."""
    return dict(sorted((preset_name(path), path) for path in configs_dir().glob(PRESET_GLOB)))


def preset_names() -> List[str]:
    return list(preset_paths())


def preset_path(name: str) -> Path:
    paths = preset_paths()
    if name not in paths:
        raise ValueError(f"Unknown preset {name!r}: choose one of {', '.join(paths)}")
    return paths[name]


def _header(path: Path) -> List[str]:
    """The config file's leading comment lines (what the preset is for)."""
    lines = []
    for line in path.read_text(encoding="utf8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return lines


def preset_config(name: str, *, lang: Optional[str] = None, overrides: Optional[Dict[str, Any]] = None) -> "Config":
    """The preset's config (not interpolated) with ``[nlp] lang`` and any
    ``section.key`` overrides applied. Raises ``ValueError`` for an unknown
    preset or language and for a setting the config does not have (thinc
    would silently add it)."""
    from spacy.util import get_lang_class, load_config

    path = preset_path(name)
    overrides = dict(overrides or {})
    if lang is not None:
        try:
            get_lang_class(lang)
        except ImportError:
            raise ValueError(f"Unknown language code {lang!r}: use one spaCy supports (e.g. en, fi, nl, zh)") from None
        overrides["nlp.lang"] = lang
    base = load_config(path, interpolate=False)
    for key in overrides:
        section = base
        for part in key.split("."):
            if not isinstance(section, dict) or part not in section:
                raise ValueError(f"The preset {name!r} has no setting {key!r} to override (a typo?)")
            section = section[part]
    return load_config(path, overrides=overrides, interpolate=False)


def validate_config(config: "Config") -> None:
    """Build the pipeline the config describes (no training), so a bad value
    fails here, naming the setting, rather than at ``spacy train``."""
    from spacy.schemas import ConfigSchemaTraining
    from spacy.util import load_model_from_config, registry

    load_model_from_config(config, auto_fill=True, validate=True)
    registry.resolve(config.interpolate()["training"], schema=ConfigSchemaTraining, validate=True)


def init_config(name: str, output: Union[str, Path], *, lang: Optional[str] = None,
                overrides: Optional[Dict[str, Any]] = None) -> str:
    """Write preset ``name`` to ``output`` ("-" = return only, for stdout);
    returns the text written."""
    from . import __version__

    config = preset_config(name, lang=lang, overrides=overrides)
    validate_config(config)
    header = [
        f"# spacy-lstm-tagger {__version__}, preset {name!r} "
        f"(python -m spacy_lstm_tagger init-config --preset {name}).",
        *_header(preset_path(name)),
        "# Train: python -m spacy train THIS.cfg --paths.train TRAIN.spacy --paths.dev DEV.spacy [--gpu-id 0]",
    ]
    text = "\n".join(header) + "\n" + config.to_str()
    if str(output) != "-":
        Path(output).write_text(text, encoding="utf8")
    return text
