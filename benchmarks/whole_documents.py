"""Tag accuracy on whole documents, with and without sentence boundaries.

The benchmarks score one sentence per Doc on gold tokens (``gold_preproc``,
the UD standard). A user's ``nlp(text)`` tags a document of many sentences in
one Doc. A sentence BiLSTM trained on single sentences reads such a Doc as one
long sequence unless it knows where the sentences end: with boundaries set by
a ``sentencizer``, ``senter`` or parser ahead of it, ``lstm_tagger`` tags each
sentence on its own (the model setting ``sentence_windows``, on by default).
This scores each pipeline four ways on the same gold tokens:

* ``sentences``: one gold sentence per Doc (what ``spacy evaluate
  --gold-preproc`` and the benchmarks report);
* ``documents``: each whole document (the corpus' Docs) in one Doc, no
  sentence boundaries;
* ``documents_gold_sentences``: each whole document with its gold sentence
  boundaries set (what a perfect ``senter`` or parser ahead of the tagger
  would give);
* ``documents_sentencizer``: each whole document with spaCy's rule-based
  ``sentencizer`` added before the tagger (sentence-final punctuation).

    python benchmarks/whole_documents.py CORPUS.spacy spacy_tagger=DIR lstm_tagger=DIR \\
        --output benchmarks/results/whole_documents.json

Prints a table and writes JSON (one entry per system, accuracies in percent).
"""
import argparse
import sys
from pathlib import Path
from typing import Dict, List

import srsly

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_info import machine_info  # noqa: E402

WAYS = ("sentences", "documents", "documents_gold_sentences", "documents_sentencizer")


def tag_accuracy(nlp, examples: List) -> float:
    """Percent of gold-tagged tokens whose predicted tag is right."""
    correct = total = 0
    for eg, doc in zip(examples, nlp.pipe(eg.predicted for eg in examples)):
        for gold, guess in zip(eg.reference, doc):
            if gold.tag_:
                total += 1
                correct += gold.tag_ == guess.tag_
    return round(100 * correct / max(1, total), 2)


def score_ways(model: Path, corpus: Path) -> Dict[str, float]:
    """The accuracies of one pipeline, one per way (one torch thread)."""
    import spacy
    import torch
    from spacy.tokens import Doc
    from spacy.training import Corpus, Example

    torch.set_num_threads(1)
    nlp = spacy.load(model)

    def documents(gold_sentences: bool = False) -> List:
        # fresh untagged Docs each time: a tagger leaves tags it finds alone (overwrite = false)
        return [Example(Doc(nlp.vocab, words=[t.text for t in eg.reference],
                            spaces=[bool(t.whitespace_) for t in eg.reference],
                            sent_starts=[bool(t.is_sent_start) for t in eg.reference] if gold_sentences else None),
                        eg.reference)
                for eg in Corpus(str(corpus))(nlp)]

    sentences = list(Corpus(str(corpus), gold_preproc=True)(nlp))
    whole = documents()
    scores = {"sentences": tag_accuracy(nlp, sentences), "documents": tag_accuracy(nlp, whole),
              "documents_gold_sentences": tag_accuracy(nlp, documents(gold_sentences=True))}
    taggers = [name for name, _pipe in nlp.pipeline if "token.tag" in nlp.get_pipe_meta(name).assigns]
    nlp.add_pipe("sentencizer", before=taggers[0] if taggers else None)
    scores["documents_sentencizer"] = tag_accuracy(nlp, documents())
    scores["n_documents"], scores["n_sentences"] = len(whole), len(sentences)
    return scores


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path, help="a .spacy file of gold documents (several sentences each)")
    parser.add_argument("systems", nargs="+", help="NAME=PIPELINE_DIR")
    parser.add_argument("--output", type=Path, default=None, help="JSON file to write")
    args = parser.parse_args(argv)
    pairs = [s.split("=", 1) for s in args.systems]
    if any(len(p) != 2 or not p[0] or not p[1] for p in pairs):
        raise SystemExit("whole_documents: give systems as NAME=PIPELINE_DIR")
    missing = [str(p) for p in (args.corpus, *(path for _name, path in pairs)) if not Path(p).exists()]
    if missing:
        raise SystemExit(f"whole_documents: not found: {', '.join(missing)}")
    results = {name: score_ways(Path(path), args.corpus) for name, path in pairs}
    width = max(len(name) for name in results)
    print(f"{'system':<{width}}  " + "  ".join(f"{w:>24}" for w in WAYS))
    for name, row in results.items():
        print(f"{name:<{width}}  " + "  ".join(f"{row[w]:>24.2f}" for w in WAYS))
    if args.output:
        srsly.write_json(args.output, {"corpus": str(args.corpus), "machine": machine_info(),
                                       "systems": {name: {"pipeline": path, **results[name]} for name, path in pairs}})
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
