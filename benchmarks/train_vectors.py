"""Train floret static vectors on the training corpus's own text.

The static-vectors feature measured without any pretrained data: vectors
learned from EWT train itself with floret (fastText with
hashed subwords, the format of spaCy's own ``--mode floret`` vectors) over
the gold-tokenized training sentences. The result is a spaCy pipeline
directory usable as ``[initialize] vectors``.

    python benchmarks/train_vectors.py corpus/en_ewt-ud-train.spacy benchmarks/work/floret_vectors
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path


def write_sentences(corpus: Path, out_path: Path) -> int:
    """One gold-tokenized sentence per line; returns the number of tokens."""
    import spacy
    from spacy.tokens import DocBin

    nlp = spacy.blank("en")
    n_tokens = 0
    with out_path.open("w", encoding="utf8") as out:
        for doc in DocBin().from_disk(corpus).get_docs(nlp.vocab):
            for sent in (doc.sents if doc.has_annotation("SENT_START") else [doc]):
                out.write(" ".join(t.text for t in sent) + "\n")
                n_tokens += len(sent)
    return n_tokens


def train_vectors(corpus: Path, output: Path, dim: int = 100, epochs: int = 20, seed_threads: int = 1) -> None:
    import floret

    with tempfile.TemporaryDirectory() as tmp:
        text = Path(tmp) / "train.txt"
        n_tokens = write_sentences(corpus, text)
        print(f"[vectors] training floret on {n_tokens:,} tokens of {corpus}", flush=True)
        # the settings of spaCy's floret demo project, scaled to a small corpus
        model = floret.train_unsupervised(
            str(text), model="cbow", mode="floret", hashCount=2, bucket=50000,
            minn=3, maxn=5, minCount=2, dim=dim, epoch=epochs, thread=seed_threads,
        )
        vectors_file = Path(tmp) / "vectors.floret"
        model.save_floret_vectors(str(vectors_file))
        subprocess.run([
            sys.executable, "-m", "spacy", "init", "vectors", "en", str(vectors_file), str(output),
            "--mode", "floret",
        ], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path, help="training corpus (.spacy)")
    parser.add_argument("output", type=Path, help="spaCy pipeline directory to write")
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    train_vectors(args.corpus, args.output, args.dim, args.epochs)


if __name__ == "__main__":
    main()
