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
:func:`distill_update`. The teacher is not saved with the student: the
trained student is a plain ``lstm_tagger``.
"""
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

import numpy
import spacy
from spacy.language import Language
from spacy.training import Example, validate_examples
from spacy.util import registry
from thinc.api import Optimizer, SequenceCategoricalCrossentropy, set_dropout_rate
from thinc.types import Floats2d

from .model import crf_marginals, get_torch_module, join_heads, split_heads


@dataclass
class Teacher:
    """A trained tagger component and how much its soft tags weigh."""

    pipe: "spacy.pipeline.Tagger"
    weight: float

    def probabilities(self, docs: List, student_labels: Tuple[str, ...]) -> List[Floats2d]:
        """The teacher's tag probabilities for ``docs``, as columns of the
        student's labels (a label the teacher lacks gets 0; the teacher's
        other labels are dropped and each row renormalized)."""
        teacher_labels = tuple(self.pipe.labels)
        tag_scores = split_heads(self.pipe.model, self.pipe.model.predict(docs))["tag"]
        if self.pipe.use_crf:
            tag_scores = crf_marginals(self.pipe.model, tag_scores)
        index = {label: i for i, label in enumerate(teacher_labels)}
        columns = numpy.array([index.get(label, -1) for label in student_labels])
        ops = self.pipe.model.ops
        out = []
        for probs in tag_scores:
            probs = ops.to_numpy(probs)
            mapped = numpy.where(columns >= 0, probs[:, numpy.maximum(columns, 0)], 0.0).astype("float32")
            total = mapped.sum(axis=1, keepdims=True)
            out.append(mapped / numpy.where(total > 0, total, 1.0))
        return out


def get_teacher_student_loss(
    teacher_probs: List[Floats2d], student_probs: List[Floats2d]
) -> Tuple[float, List[Floats2d]]:
    """Cross-entropy of the student's tag distribution to the teacher's, and
    its gradient w.r.t. the student's logits (Thinc's loss with soft targets,
    as spaCy v4's tagger uses it; Thinc reports a squared error for soft
    targets, so the cross-entropy itself is computed here)."""
    loss_func = SequenceCategoricalCrossentropy(normalize=False)
    d_scores, _ = loss_func(student_probs, teacher_probs)
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
def make_attach_teacher(teacher: Optional[str], component: str = "lstm_tagger", teacher_component: str = "lstm_tagger",
                        teacher_weight: float = 0.5):
    """``[initialize.after_init]`` callback: load the trained pipeline at
    ``teacher`` and train the ``component`` on ``teacher_weight`` x its tag
    probabilities + (1 - teacher_weight) x the gold tags."""
    if not 0.0 <= teacher_weight <= 1.0:
        raise ValueError(f"teacher_weight must be in [0, 1], got {teacher_weight}")

    def attach_teacher(nlp: Language) -> Language:
        if not teacher:
            raise ValueError("Distillation needs a trained teacher pipeline: set paths.teacher (--paths.teacher DIR)")
        try:
            teacher_nlp = spacy.load(teacher)
        except (OSError, IOError) as err:
            raise ValueError(f"Could not load the teacher pipeline {teacher!r} for distillation: {err}") from err
        if teacher_component not in teacher_nlp.pipe_names:
            raise ValueError(f"The teacher pipeline {teacher!r} has no component {teacher_component!r} "
                             f"(it has {teacher_nlp.pipe_names})")
        attach(nlp.get_pipe(component), teacher_nlp.get_pipe(teacher_component), teacher_weight)
        return nlp

    return attach_teacher


def attach(student, teacher_pipe, weight: float) -> None:
    """Make ``student`` learn from ``teacher_pipe``'s tag probabilities (checks both)."""
    for role, pipe in (("student", student), ("teacher", teacher_pipe)):
        if not hasattr(pipe, "use_crf"):
            raise ValueError(f"Distillation needs an lstm_tagger as the {role}, not {type(pipe).__name__}")
    if getattr(student, "use_crf", False):
        raise ValueError("Distillation into a CRF student is not supported: its tag scores are not probabilities")
    if get_torch_module(teacher_pipe.model).include_static_vectors:
        raise ValueError("A teacher with include_static_vectors would read the student's vectors: not supported")
    if not set(teacher_pipe.labels) & set(student.labels):
        raise ValueError(f"The teacher's tags ({len(teacher_pipe.labels)}) share no label with the student's")
    student.teacher = Teacher(teacher_pipe, weight)
