"""Tag accuracy on words seen and unseen in training, per system.

Where does one tagger beat another: on the words of the training data
(in-vocabulary, "iv") or on new ones ("oov")? Reads a treebank's folder of
``multilingual.py`` (``data/train.spacy``, ``data/eval.spacy`` and each
system's ``model/model-best``), tags the eval file with gold tokens as
``multilingual.py`` scores it, and prints one JSON line per system:

    python benchmarks/oov_split.py benchmarks/work_multilingual/ga_idt spacy_tagger lstm_tagger

A system may also be a path to any trained pipeline. Words are matched by
their exact text; tokens with an empty gold tag are skipped (missing). The
seen words are also split three ways: ``iv_once`` (seen once in training),
``iv_one_tag`` (seen more often, always with the same tag: a lookup gets
them right) and ``iv_ambiguous`` (seen with several tags).
"""
import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, List, Optional


def split_accuracy(treebank_dir: Path, model: Path) -> Dict[str, Dict[str, float]]:
    import spacy
    import torch
    from spacy.tokens import DocBin
    from spacy.training import Corpus

    torch.set_num_threads(1)
    nlp = spacy.load(model)
    train_words: Counter = Counter()
    train_tags: Dict[str, set] = defaultdict(set)
    for doc in DocBin().from_disk(treebank_dir / "data" / "train.spacy").get_docs(nlp.vocab):
        for t in doc:
            train_words[t.text] += 1
            train_tags[t.text].add(t.tag_)
    examples = list(Corpus(str(treebank_dir / "data" / "eval.spacy"), gold_preproc=True)(nlp))
    total: Counter = Counter()
    correct: Counter = Counter()
    for eg, doc in zip(examples, nlp.pipe(eg.predicted for eg in examples)):
        for gold, guess in zip(eg.reference, doc):
            if not gold.tag_:
                continue
            kinds = ["oov"]
            if train_words[gold.text]:
                kinds = ["iv", "iv_once" if train_words[gold.text] == 1
                         else "iv_one_tag" if len(train_tags[gold.text]) == 1 else "iv_ambiguous"]
            for kind in kinds:
                total[kind] += 1
                correct[kind] += gold.tag_ == guess.tag_
    result = {kind: {"words": total[kind], "tag_acc": round(100 * correct[kind] / total[kind], 2)}
              for kind in ("iv", "oov", "iv_once", "iv_one_tag", "iv_ambiguous") if total[kind]}
    words, right = total["iv"] + total["oov"], correct["iv"] + correct["oov"]
    result["all"] = {"words": words, "tag_acc": round(100 * right / words, 2)}
    return result


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("treebank_dir", type=Path, help="a treebank folder of multilingual.py's --work-dir")
    parser.add_argument("systems", nargs="+", help="system folder names in it, or paths to trained pipelines")
    args = parser.parse_args(argv)
    for system in args.systems:
        model = Path(system) if "/" in system else args.treebank_dir / system / "model" / "model-best"
        print(json.dumps({"treebank": args.treebank_dir.name, "system": system, **split_accuracy(args.treebank_dir, model)}),
              flush=True)


if __name__ == "__main__":
    main()
