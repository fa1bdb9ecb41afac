"""Tag accuracy per EWT genre: the ``sent_id`` prefix of each sentence of a
UD English EWT CoNLL-U file (answers, email, newsgroup, reviews, weblog).

Each trained pipeline tags every sentence on its gold tokens (as ``spacy
evaluate --gold-preproc`` does) and is scored against the XPOS column, per
genre and overall; the table is printed and written as JSON.

    python benchmarks/ewt_genres.py ../shared/data/ud-english-ewt/en_ewt-ud-dev.conllu \\
        spacy_tagger=work/spacy_tagger/model/model-best lstm_tagger_student=work/lstm_tagger_student/model/model-best \\
        --output benchmarks/results/ewt_pretrained_genres.json
"""
import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import srsly

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from spacy_lstm_tagger.convert import read_sentences  # noqa: E402

Sentence = Tuple[str, List[str], List[bool], List[str]]


def genre_sentences(path: Path) -> List[Sentence]:
    """(genre, words, spaces, XPOS tags) of each sentence; multiword-token
    and empty-node lines skipped, as spaCy's converter does."""
    out = []
    for block in read_sentences(path):
        genre, words, spaces, tags = "unknown", [], [], []
        for line in block.splitlines():
            if line.startswith("# sent_id"):
                genre = line.split("=", 1)[1].strip().split("-", 1)[0]
            elif line and not line.startswith("#"):
                cols = line.split("\t")
                if "-" in cols[0] or "." in cols[0]:
                    continue
                words.append(cols[1])
                spaces.append("SpaceAfter=No" not in cols[9])
                tags.append(cols[4])
        out.append((genre, words, spaces, tags))
    return out


def genre_scores(model: str, sentences: List[Sentence], batch_size: int = 256) -> Dict[str, Dict]:
    """Per genre (and ``all``): words and tag accuracy (percent, 2 decimals)."""
    import spacy
    from spacy.tokens import Doc

    nlp = spacy.load(model)
    docs = (Doc(nlp.vocab, words=words, spaces=spaces) for _, words, spaces, _ in sentences)
    right: Dict[str, int] = defaultdict(int)
    total: Dict[str, int] = defaultdict(int)
    for doc, (genre, _, _, gold) in zip(nlp.pipe(docs, batch_size=batch_size), sentences):
        hits = sum(token.tag_ == tag for token, tag in zip(doc, gold) if tag != "_")
        n = sum(tag != "_" for tag in gold)
        for key in (genre, "all"):
            right[key] += hits
            total[key] += n
    return {g: {"words": total[g], "tag_acc": round(100.0 * right[g] / total[g], 2)} for g in sorted(total)}


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("conllu", type=Path, help="an EWT CoNLL-U file (dev)")
    parser.add_argument("models", nargs="+", help="NAME=PIPELINE_DIR")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    sentences = genre_sentences(args.conllu)
    result = {"file": args.conllu.name, "systems": {}}
    for item in args.models:
        name, _, path = item.partition("=")
        if not path:
            parser.error(f"{item!r}: give NAME=PIPELINE_DIR")
        result["systems"][name] = genre_scores(path, sentences)
        print(f"[genres] {name}: " + ", ".join(f"{g} {s['tag_acc']}" for g, s in result["systems"][name].items()),
              flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(args.output, result)
    genres = list(next(iter(result["systems"].values())))
    print("| system | " + " | ".join(genres) + " |")
    print("| --- |" + " ---: |" * len(genres))
    for name, scores in result["systems"].items():
        print(f"| {name} | " + " | ".join(f"{scores[g]['tag_acc']:.2f}" for g in genres) + " |")


if __name__ == "__main__":
    main()
