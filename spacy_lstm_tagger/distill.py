"""Knowledge distillation: train a small ``lstm_tagger`` (the student) on a
trained tagger's (the teacher's) tag probabilities.

spaCy 3.8 has no distillation API (``TrainablePipe.distill`` and
``get_teacher_student_loss`` exist only in spaCy v4's development
branch), so this module follows their shape: the student's scores are
pulled towards the teacher's probabilities with the cross-entropy to soft
targets (Thinc's ``SequenceCategoricalCrossentropy``, whose gradient for
float targets is ``student - teacher``), mixed with the usual gold loss.

It runs inside ``spacy train``: the ``[initialize.after_init]`` callback
``spacy_lstm_tagger.attach_teacher.v1`` loads the teacher pipeline and
attaches it to the student component, whose ``update`` then calls
:func:`distill_update`. ``paths.teacher`` may also be a list of trained
pipelines: an ensemble, whose mean probabilities teach. The teacher may be any trained pipeline whose
``lstm_tagger`` reads a transformer, a tok2vec or static vectors of its own
(e.g. a frozen-transformer tagger distilled into a fast student with static
vectors). The teacher is not saved with the student: the trained student is
a plain ``lstm_tagger``.
"""
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy
from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example, validate_examples
from spacy.util import registry
from thinc.api import Optimizer, SequenceCategoricalCrossentropy, get_array_module, set_dropout_rate
from thinc.types import Floats2d

from .loading import load_naming_files
from .model import crf_marginals, join_heads, split_heads


def renormalize_rows(rows: numpy.ndarray) -> numpy.ndarray:
    """Each row divided by its sum, so it is a distribution again after
    columns were dropped (an all-zero row stays zero)."""
    total = rows.sum(axis=1, keepdims=True)
    return rows / numpy.where(total > 0, total, 1.0)


@dataclass
class TeacherMember:
    """One trained tagger of a teacher and the pipeline it belongs to.

    It tags its own copies of the student's docs (same words and spaces, its
    own vocab), after running the components that precede it in its
    pipeline: a teacher with a transformer or tok2vec upstream, or with
    static vectors of its own, sees what it saw in training, whatever the
    student's pipeline has."""

    nlp: Language
    pipe: "spacy.pipeline.Tagger"

    @property
    def upstream(self) -> List[str]:
        """The names of the pipeline's (enabled) components before the tagger."""
        index = next(i for i, (_, proc) in enumerate(self.nlp.pipeline) if proc is self.pipe)
        return self.nlp.pipe_names[:index]

    def probabilities(self, texts: List[Tuple[Tuple[str, ...], Tuple[bool, ...]]],
                      student_labels: Tuple[str, ...]) -> List[Floats2d]:
        """Tag probabilities for ``texts`` (words, spaces) as columns of the
        student's labels (a label this tagger lacks gets 0; its other labels
        are dropped and each row renormalized)."""
        docs = [Doc(self.nlp.vocab, words=list(words), spaces=list(spaces)) for words, spaces in texts]
        upstream = self.upstream
        docs = list(self.nlp.pipe(docs, disable=[name for name in self.nlp.pipe_names if name not in upstream]))
        tag_scores = split_heads(self.pipe.model, self.pipe.model.predict(docs), predicting=True)["tag"]
        if self.pipe.use_crf:
            tag_scores = crf_marginals(self.pipe.model, tag_scores)
        index = {label: i for i, label in enumerate(self.pipe.labels)}
        columns = numpy.array([index.get(label, -1) for label in student_labels])
        ops = self.pipe.model.ops
        out = []
        for probs in tag_scores:
            probs = ops.to_numpy(probs)
            mapped = numpy.where(columns >= 0, probs[:, numpy.maximum(columns, 0)], 0.0).astype("float32")
            out.append(renormalize_rows(mapped))
        return out


@dataclass
class Teacher:
    """One trained tagger or an ensemble of several, and how much its soft
    tags weigh.

    An ensemble's probabilities are the mean of its members' (each mapped to
    the student's labels): taggers trained apart make partly independent
    errors, so their mean is a better teacher than any one of them (on EWT
    dev the accuracy and efficiency models, 94.73 and 94.74 alone, score
    95.04 together: ``benchmarks/results/ensemble.json``). The probabilities are cached
    per text, up to ``cache_mb`` megabytes of float32 rows (0 = no cache): a
    teacher in inference mode is deterministic and ``spacy train`` shows
    every training doc once per epoch, so later epochs cost the student no
    teacher forward pass (EWT's 12.5k training sentences x 50 tags take
    ~40 MB, whatever the number of members).
    """

    members: List[TeacherMember]
    weight: float
    cache_mb: float = 256.0
    _cache: Dict[Tuple[Tuple[str, ...], Tuple[bool, ...]], Floats2d] = field(default_factory=dict, repr=False)
    _cache_labels: Optional[Tuple[str, ...]] = field(default=None, repr=False)
    _cache_bytes: int = field(default=0, repr=False)

    def probabilities(self, docs: List[Doc], student_labels: Tuple[str, ...]) -> List[Floats2d]:
        """The teacher's tag probabilities for ``docs``, as columns of the
        student's labels."""
        if self._cache_labels != student_labels:
            self._cache.clear()
            self._cache_bytes = 0
            self._cache_labels = student_labels
        keys = [(tuple(t.text for t in doc), tuple(bool(t.whitespace_) for t in doc)) for doc in docs]
        missing = list(dict.fromkeys(k for k in keys if k not in self._cache))
        fresh = dict(zip(missing, self._predict(missing, student_labels))) if missing else {}
        for key, probs in fresh.items():
            if self._cache_bytes + probs.nbytes > self.cache_mb * 2**20:
                break
            self._cache[key] = probs
            self._cache_bytes += probs.nbytes
        return [fresh[k] if k in fresh else self._cache[k] for k in keys]

    def _predict(self, texts: List[Tuple[Tuple[str, ...], Tuple[bool, ...]]],
                 student_labels: Tuple[str, ...]) -> List[Floats2d]:
        per_member = [member.probabilities(texts, student_labels) for member in self.members]
        if len(per_member) == 1:
            return per_member[0]
        out = []
        for rows in zip(*per_member):
            mean = numpy.mean(rows, axis=0, dtype="float32")
            # a member with none of a token's mass on the student's labels gives
            # a zero row: renormalize so that every row stays a distribution
            out.append(renormalize_rows(mean))
        return out


def get_teacher_student_loss(
    teacher_probs: List[Floats2d], student_probs: List[Floats2d]
) -> Tuple[float, List[Floats2d]]:
    """Cross-entropy of the student's tag distribution to the teacher's, and
    its gradient w.r.t. the student's logits (Thinc's loss with soft targets,
    as spaCy v4's tagger uses it; Thinc reports a squared error for soft
    targets, so the cross-entropy itself is computed here). A token whose
    teacher row is all zeros (its mass lay on labels the student lacks)
    teaches nothing: its gradient is zero, not a push down on every tag."""
    loss_func = SequenceCategoricalCrossentropy(normalize=False)
    d_scores, _ = loss_func(student_probs, teacher_probs)
    d_scores = [d * get_array_module(d).asarray(numpy.asarray(t).sum(axis=1, keepdims=True) > 0)
                for d, t in zip(d_scores, teacher_probs)]
    loss = sum(
        -float((numpy.asarray(t) * numpy.log(numpy.maximum(numpy.asarray(s), 1e-12))).sum())
        for t, s in zip(teacher_probs, student_probs)
    )
    return loss, d_scores


def distill_update(
    student, examples: Iterable[Example], *, drop: float = 0.0,
    sgd: Optional[Optimizer] = None, losses: Optional[Dict[str, float]] = None,
) -> Dict[str, float]:
    """One training step of ``student`` (an ``lstm_tagger`` with ``student.teacher``
    set): ``teacher.weight`` x soft-target loss + (1 - weight) x gold loss on the
    tag columns (other heads, e.g. joint POS, keep their gold loss)."""
    teacher: Teacher = student.teacher
    if losses is None:
        losses = {}
    losses.setdefault(student.name, 0.0)
    examples = list(examples)
    validate_examples(examples, "LSTMTagger.update")
    if not any(len(eg.predicted) if eg.predicted else 0 for eg in examples):
        return losses
    docs = [eg.predicted for eg in examples]
    set_dropout_rate(student.model, drop)
    scores, backprop = student.model.begin_update(docs)
    soft_loss, d_soft = get_teacher_student_loss(
        teacher.probabilities(docs, tuple(student.labels)), split_heads(student.model, scores)["tag"]
    )
    gold_loss, d_gold = student.get_loss(examples, scores)
    gradients = split_heads(student.model, d_gold)
    gradients["tag"] = [teacher.weight * d_s + (1.0 - teacher.weight) * d_g for d_s, d_g in zip(d_soft, gradients["tag"])]
    backprop(join_heads(student.model, gradients))
    if sgd not in (None, False):
        student.finish_update(sgd)
    # the gold loss includes the other heads' (unweighted) losses
    losses[student.name] += teacher.weight * soft_loss + (1.0 - teacher.weight) * gold_loss
    return losses


@registry.callbacks("spacy_lstm_tagger.attach_teacher.v1")
def make_attach_teacher(teacher: Union[str, List[str], None], component: str = "lstm_tagger",
                        teacher_component: str = "lstm_tagger", teacher_weight: float = 0.5,
                        teacher_cache_mb: float = 256.0):
    """``[initialize.after_init]`` callback: load the trained pipeline at
    ``teacher`` (or each of a list of them: an ensemble, whose mean
    probabilities teach) and train the ``component`` on ``teacher_weight`` x
    its tag probabilities + (1 - teacher_weight) x the gold tags. Up to
    ``teacher_cache_mb`` megabytes of the teacher's probabilities are kept
    in memory (0 = recompute every step)."""
    if not 0.0 <= teacher_weight <= 1.0:
        raise ValueError(f"teacher_weight must be in [0, 1], got {teacher_weight}")
    if teacher_cache_mb < 0:
        raise ValueError(f"teacher_cache_mb must be >= 0, got {teacher_cache_mb}")
    paths = [teacher] if isinstance(teacher, str) else list(teacher or [])

    def attach_teacher(nlp: Language) -> Language:
        if not paths or not all(paths):
            raise ValueError("Distillation needs a trained teacher pipeline: set paths.teacher "
                             "(--paths.teacher DIR, or a list of DIRs for an ensemble: '[\"DIR1\",\"DIR2\"]')")
        teachers = []
        for path in paths:
            teachers.append(load_naming_files(path, what="the distillation teacher"))
        attach(nlp.get_pipe(component), teachers, teacher_weight,
               teacher_component=teacher_component, cache_mb=teacher_cache_mb)
        return nlp

    return attach_teacher


def attach(student, teacher_nlp: Union[Language, Sequence[Language]], weight: float, *,
           teacher_component: str = "lstm_tagger", cache_mb: float = 256.0) -> None:
    """Make ``student`` learn from the tag probabilities of ``teacher_nlp``'s
    ``teacher_component`` (or from their mean over a list of pipelines;
    checks all of them; a teacher's upstream components, e.g. a transformer,
    run on its own copies of the docs)."""
    pipelines = list(teacher_nlp) if isinstance(teacher_nlp, (list, tuple)) else [teacher_nlp]
    if not pipelines:
        raise ValueError("The teacher ensemble is empty: give at least one trained pipeline")
    if getattr(student, "use_crf", False):
        raise ValueError("Distillation into a CRF student is not supported: its tag scores are not probabilities")
    members = []
    for nlp in pipelines:
        if not isinstance(nlp, Language):
            raise ValueError(f"The teacher must be a trained pipeline (a Language, e.g. spacy.load(path)), "
                             f"not {type(nlp).__name__}")
        if teacher_component not in nlp.pipe_names:
            raise ValueError(f"The teacher pipeline has no (enabled) component {teacher_component!r} "
                             f"(it has {nlp.pipe_names})")
        teacher_pipe = nlp.get_pipe(teacher_component)
        for role, pipe in (("student", student), ("teacher", teacher_pipe)):
            if not hasattr(pipe, "use_crf"):
                raise ValueError(f"Distillation needs an lstm_tagger as the {role}, not {type(pipe).__name__}")
        if not set(teacher_pipe.labels) & set(student.labels):
            raise ValueError(f"The teacher's tags ({len(teacher_pipe.labels)}) share no label with the student's")
        members.append(TeacherMember(nlp, teacher_pipe))
    student.teacher = Teacher(members, weight, cache_mb)
