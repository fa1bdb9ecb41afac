"""Dev accuracy of trained taggers alone and of their ensembles (mean tag
probabilities), as a distillation teacher sees them.

    python benchmarks/ensemble_score.py \
        accuracy=benchmarks/work/lstm_tagger_accuracy/model/model-best \
        efficiency=benchmarks/work/lstm_tagger_efficiency/model/model-best \
        --output benchmarks/results/ensemble.json

Each model tags the dev sentences (gold tokens, one sentence per doc, as
`spacy train` evaluates) through ``spacy_lstm_tagger.distill``'s teacher
code, so an ensemble's score is exactly that of the teacher
``--paths.teacher '["A","B"]'`` gives a student. tag_acc is the share of
tokens with a gold tag whose most probable tag is the gold one (spaCy's
``tag_acc`` on gold tokens). Prints a table and writes JSON.
"""
import argparse
import itertools
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy
import spacy
import srsly
from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Corpus

from spacy_lstm_tagger.distill import Teacher, TeacherMember

ROOT = Path(__file__).resolve().parent.parent


def dev_sentences(nlp: Language, dev: str) -> List[Doc]:
    """The dev sentences' reference docs (gold tokens and tags), read with ``nlp``'s vocab."""
    return [eg.reference for eg in Corpus(dev, gold_preproc=True)(nlp)]


def gold_ids(docs: List[Doc], labels: Tuple[str, ...]) -> numpy.ndarray:
    """The gold tag of each token that has one, as an index of ``labels`` (-1: not a label)."""
    index = {label: i for i, label in enumerate(labels)}
    return numpy.array([index.get(t.tag_, -1) for doc in docs for t in doc if t.tag_], dtype="int64")


def member_probabilities(nlp: Language, docs: List[Doc], labels: Optional[Tuple[str, ...]]) -> Tuple[numpy.ndarray, Tuple[str, ...]]:
    """(probabilities as columns of ``labels``, labels) of one trained pipeline
    on the tokens of ``docs`` that have a gold tag; ``labels`` None = its own."""
    pipe = nlp.get_pipe("lstm_tagger")
    labels = tuple(pipe.labels) if labels is None else labels
    has_tag = numpy.array([bool(t.tag_) for doc in docs for t in doc])
    teacher = Teacher([TeacherMember(nlp, pipe)], 1.0, cache_mb=0)
    return numpy.concatenate(teacher.probabilities(docs, labels))[has_tag], labels


def score(models: Dict[str, str], dev: str) -> Dict:
    """Every model alone and every ensemble of two or more."""
    docs: Optional[List[Doc]] = None
    labels = None
    probs: Dict[str, numpy.ndarray] = {}
    for name, path in models.items():
        nlp = spacy.load(path)
        if docs is None:
            docs = dev_sentences(nlp, dev)
        probs[name], labels = member_probabilities(nlp, docs, labels)
        print(f"[ensemble] {name}: tagged", flush=True)
    gold = gold_ids(docs, labels)
    rows = []
    for size in range(1, len(models) + 1):
        for combo in itertools.combinations(models, size):
            mean = numpy.mean([probs[name] for name in combo], axis=0)
            accuracy = float((mean.argmax(axis=1) == gold).mean())
            rows.append({"members": list(combo), "tag_acc": round(100 * accuracy, 2)})
    return {"dev": dev, "n_tokens": int(len(gold)), "models": models, "ensembles": rows}


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", metavar="NAME=PATH", help="trained pipelines with an lstm_tagger")
    parser.add_argument("--dev", default=str(ROOT / "corpus" / "en_ewt-ud-dev.spacy"))
    parser.add_argument("--output", default=None, help="JSON file to write")
    args = parser.parse_args(argv)
    models = {}
    for item in args.models:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            parser.error(f"expected NAME=PATH, got {item!r}")
        models[name] = path
    result = score(models, args.dev)
    width = max(len(" + ".join(r["members"])) for r in result["ensembles"])
    for row in result["ensembles"]:
        print(f"{' + '.join(row['members']):<{width}}  {row['tag_acc']:6.2f}")
    if args.output:
        srsly.write_json(args.output, result)
        print(f"[ensemble] wrote {args.output}")


if __name__ == "__main__":
    main(sys.argv[1:])
