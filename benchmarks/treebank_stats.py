"""What makes a small treebank easy or hard for a tagger, from the data alone.

For each treebank in ``--data-dir``, split as ``multilingual.py`` splits it
(train = ``*-ud-dev.conllu`` minus its last 10% of sentences; scored on
``*-ud-test.conllu``), prints and writes (``--output``, JSON) the facts that
bound what any tagger can gain over another: the size of the tag set, the
share of test tokens unseen in training (where a character model wins), the
share that are seen but ambiguous (seen with more than one tag: context
decides), the accuracy of tagging every seen word with its most frequent
training tag (the floor a model starts from), empty XPOS, sentence length.

    python benchmarks/treebank_stats.py                # the four ud-small treebanks
    python benchmarks/treebank_stats.py --treebanks ga_idt --output stats.json
"""
import argparse
import statistics
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import srsly

sys.path.insert(0, str(Path(__file__).resolve().parent))
from multilingual import DEFAULT_DATA_DIR, TREEBANKS, find_treebank_files, read_sentences, split_train_dev  # noqa: E402


def words_and_tags(sentences: List[str]) -> List[List[Tuple[str, str]]]:
    """(form, XPOS) of each word of each sentence (multiword-token and empty-node lines skipped)."""
    out = []
    for block in sentences:
        rows = [line.split("\t") for line in block.split("\n")]
        out.append([(cols[1], cols[4]) for cols in rows if len(cols) == 10 and cols[0].isdigit()])
    return out


def treebank_facts(train: List[List[Tuple[str, str]]], test: List[List[Tuple[str, str]]]) -> Dict:
    """The facts of the module docstring, in percent of test tokens where a share."""
    seen: Dict[str, Counter] = defaultdict(Counter)
    for sentence in train:
        for form, tag in sentence:
            if tag != "_":
                seen[form][tag] += 1
    tokens = [(form, tag) for sentence in test for form, tag in sentence if tag != "_"]
    unseen = sum(form not in seen for form, _ in tokens)
    ambiguous = sum(form in seen and len(seen[form]) > 1 for form, _ in tokens)
    majority_right = sum(form in seen and seen[form].most_common(1)[0][0] == tag for form, tag in tokens)
    n = max(len(tokens), 1)
    all_train = [tag for sentence in train for _, tag in sentence]
    return {
        "train_sentences": len(train), "train_words": len(all_train), "test_words": len(tokens),
        "xpos_tags": len({tag for tag in all_train if tag != "_"}),
        "empty_xpos_train_pct": round(100 * all_train.count("_") / max(len(all_train), 1), 2),
        "test_unseen_pct": round(100 * unseen / n, 2),
        "test_seen_ambiguous_pct": round(100 * ambiguous / n, 2),
        "majority_tag_acc_seen": round(100 * majority_right / max(n - unseen, 1), 2),
        "majority_tag_acc_all": round(100 * majority_right / n, 2),
        "mean_sentence_words": round(statistics.mean(len(s) for s in test), 1) if test else 0.0,
    }


def main(argv: Optional[List[str]] = None) -> Dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    parser.add_argument("--treebanks", nargs="*", default=list(TREEBANKS))
    parser.add_argument("--output", default=None, help="also write the facts to this JSON file")
    args = parser.parse_args(argv)
    facts = {}
    for treebank in args.treebanks:
        train_path, test_path = find_treebank_files(Path(args.data_dir), treebank)
        train, _ = split_train_dev(read_sentences(train_path))
        facts[treebank] = treebank_facts(words_and_tags(train), words_and_tags(read_sentences(test_path)))
    keys = list(next(iter(facts.values()))) if facts else []
    print("\t".join(["treebank", *keys]))
    for treebank, row in facts.items():
        print("\t".join([treebank, *(str(row[k]) for k in keys)]))
    if args.output:
        srsly.write_json(args.output, facts)
    return facts


if __name__ == "__main__":
    main()
