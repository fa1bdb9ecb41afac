"""An ensemble of trained ``lstm_tagger`` models inside one component.

Taggers trained apart (another seed, another size) make partly independent
errors, so the mean of their tag probabilities is more accurate than any one
of them: on EWT dev two efficiency-config models of 94.74 and 94.72 score
95.01 together (``benchmarks/results/ensemble.json``), at the cost of running both. The
ensemble is a Thinc model (``spacy_lstm_tagger.Ensemble.v1``) whose layers
are the members' own ``WordCharBiLSTM`` models, so the component, its
labels, ``store_probabilities``, the joint heads, saving and loading all
work as for one tagger; each member keeps its own caches and its own
``bfloat16`` / ``quantize`` setting.

An ensemble is assembled from trained pipelines (:func:`assemble`, the CLI's
``ensemble`` command), not trained: members trained together on their mean
would learn to cover for each other instead of each being a good tagger.
Train each member with ``spacy train`` (e.g. the same config with another
``system.seed``), then assemble them.
"""
import copy
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model
from thinc.types import Floats2d

from .loading import load_naming_files
from .model import HEAD_DIMS, record_labels_with_weights

ENSEMBLE_ARCHITECTURE = "spacy_lstm_tagger.Ensemble.v1"
# the inference settings the CLI can set on every member (model settings of WordCharBiLSTM)
INFERENCE_SETTINGS = ("bfloat16", "quantize")
NOT_TRAINABLE = (
    "An lstm_tagger ensemble (spacy_lstm_tagger.Ensemble.v1) is assembled from trained taggers and "
    "cannot be trained: train each member on its own (e.g. one config with several system.seed values), "
    "then combine them with `python -m spacy_lstm_tagger ensemble MEMBER1 MEMBER2 ... --output DIR`, "
    "or list the ensemble's component in [training] frozen_components."
)


@registry.architectures(ENSEMBLE_ARCHITECTURE)
def build_ensemble(*members: Model[List[Doc], List[Floats2d]]) -> Model[List[Doc], List[Floats2d]]:
    """The mean of the tag (and joint-head) probabilities of ``members``,
    ``WordCharBiLSTM`` models with the same heads (given in the config as
    ``[components.NAME.model.*.member0]``, ``...member1``, ...). Inference only."""
    if len(members) < 2:
        raise ValueError(f"An lstm_tagger ensemble needs at least two member models, got {len(members)}")
    for i, member in enumerate(members):
        if not isinstance(member, Model) or not member.has_ref("torch"):
            raise ValueError(
                f"Ensemble member {i} must be a spacy_lstm_tagger.WordCharBiLSTM model, got "
                f"{getattr(member, 'name', type(member).__name__)!r}"
            )
        if member.attrs.get("crf"):
            raise ValueError(f"Ensemble member {i} has crf = true: a CRF's emission scores are not "
                             "probabilities and cannot be averaged; use members without a CRF")
        if member.has_ref("tok2vec"):
            raise ValueError(f"Ensemble member {i} reads an upstream tok2vec or transformer: an ensemble's "
                             "members must read only the Doc (words, static vectors, clusters)")
    attrs = {"joint_pos": bool(members[0].attrs.get("joint_pos")),
             "joint_morph": bool(members[0].attrs.get("joint_morph")), "crf": False}
    for i, member in enumerate(members[1:], 1):
        for name, value in attrs.items():
            if name != "crf" and bool(member.attrs.get(name)) != value:
                raise ValueError(f"Ensemble member {i} has {name} = {not value} but member 0 has {value}: "
                                 "every member must have the same heads")
    dims = {}
    for dim in HEAD_DIMS.values():
        values = {m.get_dim(dim) for m in members if m.has_dim(dim) and m.get_dim(dim) is not None}
        if len(values) > 1:
            raise ValueError(f"The ensemble's members have different numbers of labels ({dim}: {sorted(values)})")
        dims[dim] = values.pop() if values else None
    return Model("lstm_tagger_ensemble", forward, init=init, layers=list(members), dims=dims, attrs=attrs)


def forward(model: Model, docs: List[Doc], is_train: bool) -> Tuple[List[Floats2d], Callable]:
    if is_train:
        raise ValueError(NOT_TRAINABLE)
    per_member = [member.predict(docs) for member in model.layers]
    n = float(len(per_member))
    # each member's heads are softmax-normalized: so is their mean, per head
    mean = [sum(rows) / n for rows in zip(*per_member)]

    def backprop(d_scores: List[Floats2d]) -> List:
        raise ValueError(NOT_TRAINABLE)

    return mean, backprop


def init(model: Model, X: Optional[List[Doc]] = None, Y: Optional[List[Floats2d]] = None) -> None:
    """Set the heads' sizes on every member and initialize them (fresh
    weights: :func:`assemble` then loads the trained ones)."""
    if not model.has_dim("nO") and Y is not None:
        for y in Y:
            if getattr(y, "ndim", 0) == 2:
                model.set_dim("nO", y.shape[1])
                break
    for member in model.layers:
        for dim in HEAD_DIMS.values():
            if model.has_dim(dim) and model.get_dim(dim) is not None:
                member.set_dim(dim, model.get_dim(dim), force=True)
        member.initialize(X=X, Y=Y)


def is_ensemble(model: Model) -> bool:
    return model.name == "lstm_tagger_ensemble"


def assemble(
    members: Sequence[Union[str, Path, Language]], *, component: str = "lstm_tagger",
    settings: Optional[Dict[str, Any]] = None,
) -> Language:
    """One pipeline whose ``component`` is the ensemble of the ``component``
    of each trained pipeline in ``members`` (paths or loaded pipelines).

    The first member's pipeline gives everything else: vocab, tokenizer,
    other components and the component's settings. So every member must be
    an ``lstm_tagger`` without a CRF or an upstream model, trained on the
    same labels in the same language, and members that read static vectors
    or clusters must have the same ones. ``settings`` (``bfloat16``,
    ``quantize``) is set on every member's model.
    """
    import spacy

    if len(members) < 2:
        raise ValueError(f"An ensemble needs at least two trained pipelines, got {len(members)}")
    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(INFERENCE_SETTINGS))
    if unknown:
        raise ValueError(f"Unknown ensemble member settings {unknown}: choose from {list(INFERENCE_SETTINGS)}")
    if settings.get("bfloat16") is True and settings.get("quantize"):
        raise ValueError("quantize (int8) and bfloat16 = true are two ways to run inference: set at most one of them")
    pipelines, sources = [], []
    for member in members:
        if isinstance(member, Language):
            pipelines.append(member)
            sources.append(member.meta.get("name", "pipeline"))
            continue
        path = Path(member)
        if not (path / "config.cfg").exists():
            raise ValueError(f"Ensemble member {member} is not a trained spaCy pipeline directory (no config.cfg)")
        pipelines.append(load_naming_files(path, what="the ensemble member"))
        sources.append(str(member))
    _check_members(pipelines, sources, component)
    first = pipelines[0]
    member_configs = []
    for nlp in pipelines:
        member_config = copy.deepcopy(dict(nlp.config["components"][component]["model"]))
        member_config.update(settings)
        # the one switched on by ``settings`` replaces the member's own other one
        if member_config.get("bfloat16") and member_config.get("quantize"):
            member_config["quantize" if settings.get("bfloat16") else "bfloat16"] = False
        member_configs.append(member_config)
    config = first.config.copy()
    config["components"][component]["model"] = {
        "@architectures": ENSEMBLE_ARCHITECTURE,
        "*": {f"member{i}": member_config for i, member_config in enumerate(member_configs)},
    }
    nlp = spacy.util.load_model_from_config(config, auto_fill=False, validate=True)
    nlp.from_bytes(first.to_bytes(exclude=[component]), exclude=[component])
    pipe = nlp.get_pipe(component)
    first_pipe = first.get_pipe(component)
    pipe.cfg = copy.deepcopy(first_pipe.cfg)
    for dim in HEAD_DIMS.values():
        if first_pipe.model.has_dim(dim):
            pipe.model.set_dim(dim, first_pipe.model.get_dim(dim), force=True)
    for layer, source in zip(pipe.model.layers, pipelines):
        layer.from_bytes(source.get_pipe(component).model.to_bytes())
    record_labels_with_weights(pipe.model, pipe._labels_by_head())
    nlp.meta = copy.deepcopy(first.meta)
    nlp.meta.pop("performance", None)
    nlp.meta["lstm_tagger_ensemble"] = {
        "component": component,
        "members": [
            {"source": source, "name": p.meta.get("name"),
             "tag_acc": (p.meta.get("performance") or {}).get("tag_acc")}
            for source, p in zip(sources, pipelines)
        ],
    }
    return nlp


def _check_members(pipelines: List[Language], sources: List[str], component: str) -> None:
    """Everything :func:`assemble` needs to be true, as one clear error each."""
    from .component import LSTMTagger

    first, first_source = pipelines[0], sources[0]
    first_pipe = first.get_pipe(component) if component in first.pipe_names else None
    for nlp, source in zip(pipelines, sources):
        if component not in nlp.pipe_names:
            raise ValueError(f"Ensemble member {source} has no component {component!r} (it has {nlp.pipe_names})")
        pipe = nlp.get_pipe(component)
        if not isinstance(pipe, LSTMTagger):
            raise ValueError(f"Ensemble member {source}: {component!r} is a {type(pipe).__name__}, not an lstm_tagger")
        if is_ensemble(pipe.model):
            raise ValueError(f"Ensemble member {source} is itself an ensemble: list its members instead")
        if pipe.use_crf:
            raise ValueError(f"Ensemble member {source} has crf = true: a CRF's emission scores are not "
                             "probabilities and cannot be averaged")
        if pipe.model.has_ref("tok2vec"):
            raise ValueError(f"Ensemble member {source} reads an upstream tok2vec or transformer: "
                             "an ensemble's members must read only the Doc")
        if nlp.lang != first.lang:
            raise ValueError(f"Ensemble member {source} is for language {nlp.lang!r}, "
                             f"{first_source} for {first.lang!r}")
        for what, mine, theirs in (("tag", pipe.labels, first_pipe.labels),
                                   ("POS", pipe.pos_labels, first_pipe.pos_labels),
                                   ("FEATS", pipe.morph_labels, first_pipe.morph_labels)):
            if tuple(mine) != tuple(theirs):
                raise ValueError(
                    f"Ensemble member {source} has other {what} labels than {first_source} "
                    f"({len(mine)} vs {len(theirs)}, or in another order): train every member on the same corpus"
                )
        if (pipe.joint_pos, pipe.joint_morph) != (first_pipe.joint_pos, first_pipe.joint_morph):
            raise ValueError(f"Ensemble member {source} has other heads (joint_pos / joint_morph) than {first_source}")
        model_config = nlp.config["components"][component]["model"]
        if model_config.get("include_static_vectors") and not _same_vectors(nlp, first):
            raise ValueError(f"Ensemble member {source} reads static vectors that differ from {first_source}'s: "
                             "the ensemble has one vocab (the first member's), so members must share their vectors")
        if model_config.get("cluster_embed_size") and not _same_table(nlp, first, "lexeme_cluster"):
            raise ValueError(f"Ensemble member {source} reads Brown clusters that differ from {first_source}'s "
                             "(lookups table lexeme_cluster): members must share them")


def _same_vectors(a: Language, b: Language) -> bool:
    import numpy

    va, vb = a.vocab.vectors, b.vocab.vectors
    if va.shape != vb.shape or va.mode != vb.mode:
        return False
    if va.mode == "default" and sorted(va.key2row.items()) != sorted(vb.key2row.items()):
        return False
    return bool(numpy.array_equal(numpy.asarray(va.data), numpy.asarray(vb.data)))


def _same_table(a: Language, b: Language, name: str) -> bool:
    has_a, has_b = a.vocab.lookups.has_table(name), b.vocab.lookups.has_table(name)
    if has_a != has_b:
        return False
    return not has_a or a.vocab.lookups.get_table(name).to_bytes() == b.vocab.lookups.get_table(name).to_bytes()
