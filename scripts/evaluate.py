"""Score a trained pipeline on the held-out test split, or on dev when there is
no test split (and say so, on the console and in the metrics JSON).

    python scripts/evaluate.py training/en_ewt/lstm_tagger_efficiency/model-best corpus \
        metrics/en_ewt/lstm_tagger_efficiency.json --treebank en_ewt --gpu-id -1

The corpus is the `convert` step's ``{treebank}-ud-{test,dev}.spacy``.

Scores with gold tokenization, one sentence per Doc (gold_preproc), as the
training configs see their data: the number `spacy evaluate MODEL DATA
--gold-preproc` prints, and the one the benchmarks report. (Without
--gold-preproc, spacy evaluate retokenizes the raw text of each 10-sentence
Doc with the pipeline's tokenizer, and its tokenization errors count as tag
errors: a lower number, not comparable.) The JSON has spaCy's metrics
(token_acc, tag_acc, pos_acc, speed, ...) plus `split` ("test" or "dev"),
`data` and `gold_preproc`.
"""
import argparse
import sys
from pathlib import Path

import srsly


def pick_split(corpus_dir: Path, treebank: str = "en_ewt"):
    test = corpus_dir / f"{treebank}-ud-test.spacy"
    dev = corpus_dir / f"{treebank}-ud-dev.spacy"
    if test.exists():
        return "test", test, None
    note = (
        f"No test split ({test} is missing: the treebank directory has no "
        f"{treebank}-ud-test.conllu). Scoring the DEV split instead: these are dev "
        "scores, the same data used to select model-best, not held-out test scores."
    )
    return "dev", dev, note


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="pipeline directory or package name")
    parser.add_argument("corpus_dir", type=Path, help="directory with {treebank}-ud-{test,dev}.spacy")
    parser.add_argument("output", type=Path, help="metrics JSON to write")
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--treebank", default="en_ewt", help="UD file prefix of the corpus files")
    args = parser.parse_args(argv)

    split, data, note = pick_split(args.corpus_dir, args.treebank)
    if not data.exists():
        print(f"[evaluate] ERROR: {data} not found: run the `convert` step first", file=sys.stderr)
        return 1
    if note:
        print(f"[evaluate] WARNING: {note}", flush=True)
    print(f"[evaluate] scoring {args.model} on {split} ({data})", flush=True)

    from spacy.cli.evaluate import evaluate

    scores = evaluate(args.model, data, use_gpu=args.gpu_id, gold_preproc=True, silent=False)
    result = {"split": split, "data": str(data), "model": str(args.model), "gold_preproc": True, **scores}
    if note:
        result["note"] = note
    args.output.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(args.output, result)
    shown = [f"{key} = {100 * scores[key]:.2f}" for key in ("tag_acc", "pos_acc", "morph_acc") if scores.get(key) is not None]
    print(f"[evaluate] {split} {', '.join(shown) or 'tag_acc = n/a'} (gold tokenization, as "
          f"`spacy evaluate --gold-preproc`)  ->  {args.output}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
