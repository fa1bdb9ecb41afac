"""Make DIR a training corpus of several .spacy files (``spacy.Corpus.v1``
reads every .spacy file of a directory): link each FILE into it.

    python scripts/link_corpora.py training/distillation_corpus corpus/train.spacy assets/pretrained/gutenberg.spacy --gold-share 0.5

``--gold-share S`` links the first FILE (the annotated corpus) as many times
as it takes for it to make about S of the corpus's tokens, so that a small
treebank is not drowned by a large unlabeled text: at 1 copy a 200k-token
treebank is 14% of a student's batches next to 1.2M unlabeled tokens.
"""
import argparse
from pathlib import Path
from typing import Optional, Sequence


def count_tokens(file: Path) -> int:
    from spacy.tokens import DocBin

    return sum(len(tokens) for tokens in DocBin().from_disk(file).tokens)


def gold_copies(files: Sequence[Path], gold_share: Optional[float]) -> int:
    """How many times the first file is linked so it is ~``gold_share`` of the tokens."""
    if gold_share is None or len(files) < 2:
        return 1
    if not 0.0 < gold_share < 1.0:
        raise SystemExit(f"link_corpora: --gold-share must lie between 0 and 1, got {gold_share}")
    gold = count_tokens(files[0])
    rest = sum(count_tokens(f) for f in files[1:])
    if gold == 0:
        raise SystemExit(f"link_corpora: {files[0]} has no tokens")
    return max(1, round(gold_share / (1.0 - gold_share) * rest / gold))


def link_corpora(directory: Path, files: Sequence, gold_share: Optional[float] = None) -> int:
    """Link ``files`` into ``directory`` (its old .spacy files removed);
    returns how many copies of the first file were linked."""
    files = [Path(f) for f in files]
    for file in files:
        if not file.is_file() or file.suffix != ".spacy":
            raise SystemExit(f"link_corpora: {file} is not a .spacy file")
    copies = gold_copies(files, gold_share)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.spacy"):
        stale.unlink()
    for i in range(copies):
        name = files[0].name if i == 0 else f"{files[0].stem}.copy{i + 1}.spacy"
        (directory / name).symlink_to(files[0].resolve())
    for file in files[1:]:
        (directory / file.name).symlink_to(file.resolve())
    return copies


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", type=Path)
    parser.add_argument("files", nargs="+", type=Path, help="the annotated corpus first, then unlabeled text")
    parser.add_argument("--gold-share", type=float, default=None,
                        help="repeat the first file until it is about this share of the tokens (e.g. 0.5)")
    args = parser.parse_args()
    n = link_corpora(args.directory, args.files, args.gold_share)
    print(f"[link_corpora] {args.directory}: {args.files[0].name} x{n} + {', '.join(f.name for f in args.files[1:])}")
