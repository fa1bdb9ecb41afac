"""Loading a pipeline for the command line, with errors that say what is
wrong (instead of spaCy's ``OSError E050/E053`` tracebacks or silently empty
tags), naming the file of the pipeline that failed to read."""
import traceback
from pathlib import Path
from typing import Any, List, Optional, Tuple, Union

from spacy.language import Language


class ModelError(ValueError):
    """The model is missing, is not a spaCy pipeline, or can't tag."""


def check_model(model: Union[str, Path]) -> None:
    """Fail before any work starts if ``model`` is neither a pipeline
    directory (one with a ``config.cfg``) nor an installed package."""
    from spacy.util import is_package

    path = Path(model)
    if path.exists():
        if not path.is_dir():
            raise ModelError(f"Model {model} is a file, not a spaCy pipeline directory (or an installed package)")
        if not (path / "config.cfg").exists():
            hint = ""
            if (path / "model-best" / "config.cfg").exists():
                hint = f": did you mean {path / 'model-best'}?"
            raise ModelError(f"{model} is not a spaCy pipeline directory (it has no config.cfg){hint}")
    elif not is_package(str(model)):
        raise ModelError(f"Model not found: {model} is neither a pipeline directory nor an installed package")


def tagger_names(nlp: Language) -> List[str]:
    """The components that set ``Token.tag_`` (spaCy's metadata ``assigns``)."""
    return [name for name in nlp.pipe_names if "token.tag" in nlp.get_pipe_meta(name).assigns]


def require_tagger(nlp: Language, model: Union[str, Path]) -> None:
    """A pipeline without any tagger would write empty tags: an error."""
    if not tagger_names(nlp):
        raise ModelError(
            f"The pipeline {model} has no tagger: none of its components "
            f"({', '.join(nlp.pipe_names) or 'none'}) sets Token.tag_. Use a pipeline with an "
            "lstm_tagger (or spaCy's tagger)."
        )


def load_pipeline(model: Union[str, Path]) -> Language:
    """``spacy.load(model)`` after :func:`check_model`; a pipeline that
    fails to load, or has no tagger, is a :class:`ModelError`."""
    check_model(model)
    nlp = load_naming_files(model)
    require_tagger(nlp, model)
    return nlp


def load_naming_files(model: Union[str, Path], what: str = "the pipeline", **kwargs: Any) -> Language:
    """``spacy.load(model, **kwargs)``; any error is a :class:`ModelError`
    that names the pipeline and, when it was reading one, the file
    (spaCy's own errors, e.g. a truncated ``vocab/strings.json``'s
    "Expected object or value", name neither)."""
    import spacy

    try:
        return spacy.load(model, **kwargs)
    except Exception as err:
        file = failing_file(err, model)
        where = f" (reading {file})" if file is not None else ""
        raise ModelError(f"Could not load {what} {model}{where}: {err}") from err


def failing_file(err: BaseException, model: Union[str, Path]) -> Optional[Path]:
    """The file of ``model``'s directory that was being read when ``err``
    was raised: the innermost frame (of the error and of its causes) with
    a local naming an existing file inside the directory."""
    root = Path(model)
    if not root.is_dir():
        return None
    root = root.resolve()
    chain: List[BaseException] = []
    while err is not None and err not in chain:
        chain.append(err)
        err = err.__cause__ or err.__context__
    for error in reversed(chain):  # the deepest cause first
        for frame, _ in reversed(list(traceback.walk_tb(error.__traceback__))):
            for value in frame.f_locals.values():
                if isinstance(value, (str, Path)) and len(str(value)) < 4096:
                    path = Path(value)
                    try:
                        if path.is_file() and path.resolve().is_relative_to(root):
                            return path
                    except (OSError, ValueError):
                        continue
    return None


def probability_components(nlp: Language) -> List[Tuple[str, str, str]]:
    """``(name, prob_attr, alternatives_attr)`` of every lstm_tagger."""
    from .component import LSTMTagger

    return [(name, pipe.prob_attr, pipe.alternatives_attr) for name, pipe in nlp.pipeline
            if isinstance(pipe, LSTMTagger)]


def enable_probabilities(nlp: Language, model: Union[str, Path]) -> List[str]:
    """Turn ``store_probabilities`` on in every lstm_tagger; returns the
    ``Token._`` attribute names they write."""
    found = probability_components(nlp)
    if not found:
        raise ModelError(f"--probabilities needs an lstm_tagger component; the pipeline {model} has none "
                         f"(components: {', '.join(nlp.pipe_names) or 'none'})")
    owners = {}
    for name, prob_attr, alternatives_attr in found:
        for attr in (prob_attr, alternatives_attr):
            if attr in owners:
                raise ModelError(
                    f"--probabilities: the lstm_taggers '{owners[attr]}' and '{name}' of {model} would both write "
                    f"token._.{attr}: give them distinct prob_attr / alternatives_attr settings"
                )
            owners[attr] = name
    for name, _, _ in found:
        nlp.get_pipe(name).store_probabilities = True
    return [attr for _, prob_attr, alternatives_attr in found for attr in (prob_attr, alternatives_attr)]


def extension_attrs(nlp: Language) -> List[str]:
    """The ``Token._`` attribute names of the lstm_taggers that store probabilities."""
    return [attr for name, prob_attr, alternatives_attr in probability_components(nlp)
            if nlp.get_pipe(name).store_probabilities for attr in (prob_attr, alternatives_attr)]
