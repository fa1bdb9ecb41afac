"""Make DIR a training corpus of several .spacy files (``spacy.Corpus.v1``
reads every .spacy file of a directory): link each FILE into it.

    python scripts/link_corpora.py training/distillation_corpus corpus/train.spacy assets/pretrained/gutenberg.spacy
"""
import sys
from pathlib import Path


def link_corpora(directory: Path, files) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.spacy"):
        stale.unlink()
    for file in map(Path, files):
        if not file.is_file() or file.suffix != ".spacy":
            raise SystemExit(f"link_corpora: {file} is not a .spacy file")
        (directory / file.name).symlink_to(file.resolve())


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    link_corpora(Path(sys.argv[1]), sys.argv[2:])
