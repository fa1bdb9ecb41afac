"""Re-save a pipeline whose lstm_tagger weights are in an old format, so
that they load with every check of the current one.

Version 1 weights record neither a checksum nor the label order they were
trained with, so loading refuses them (a reordered label list in the cfg
would shift every tag silently). Re-saving trusts the cfg's labels once,
after you have checked them, and writes the current format, which records
the labels and checksums them with the tensors::

    python -m spacy_lstm_tagger.resave PIPELINE_DIR NEW_DIR
"""
import argparse
import sys
from pathlib import Path
from typing import List, Optional

from .weights import accepting_version_1


def resave(pipeline: Path, output: Path) -> List[str]:
    """Load ``pipeline`` (version 1 weights accepted, every other check
    kept) and save it to ``output``; returns its component names."""
    import spacy

    if output.resolve() == pipeline.resolve():
        raise ValueError(f"Re-save to a new directory, not over {pipeline} itself")
    if output.exists() and any(output.iterdir()):
        raise ValueError(f"{output} is not empty: re-save to a new directory")
    with accepting_version_1():
        nlp = spacy.load(pipeline)
    nlp.to_disk(output)
    return nlp.pipe_names


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spacy_lstm_tagger.resave", description=__doc__.split("\n\n")[0])
    parser.add_argument("pipeline", type=Path, help="The pipeline directory to read")
    parser.add_argument("output", type=Path, help="A new directory to write it to")
    args = parser.parse_args(argv)
    try:
        names = resave(args.pipeline, args.output)
    except (OSError, ValueError) as err:
        print(f"Error: {err}", file=sys.stderr)
        return 1
    print(f"Re-saved {args.pipeline} ({', '.join(names)}) to {args.output} in the current weights format")
    return 0


if __name__ == "__main__":
    sys.exit(main())
