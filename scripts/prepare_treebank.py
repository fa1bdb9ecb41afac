"""Convert a UD treebank's CoNLL-U files into the corpus the workflow trains on
(the `convert` step).

    python scripts/prepare_treebank.py --assets assets --corpus corpus --treebank fi_tdt \
        --train-split dev --dev-split dev --test-split test --heldout 0.1 -n 10 --tags xpos

Files follow the UD naming pattern, ``{treebank}-ud-{split}.conllu``. Writes
``corpus/{treebank}-ud-{train,dev,test}.spacy`` (named by role):

* train: the ``--train-split`` file (required);
* dev: the ``--dev-split`` file; when it is absent, or is the training file
  (e.g. small treebanks trained on the UD dev file), the last ``--heldout``
  fraction of the training file's sentences, which train then leaves out;
* test: the ``--test-split`` file when present (else any old test corpus is
  removed, so `evaluate` never scores a stale split and scores dev instead).

Conversion is spaCy's own CoNLL-U converter (``spacy convert --converter
conllu -n 10``), with one correction: a token whose XPOS is ``_`` gets a
missing tag (ignored by the loss and the scorer), not its UPOS as spaCy's
converter writes, which would mix UPOS labels into the XPOS tag set. A
training file without any XPOS is a one-line error (lstm_tagger would have
nothing to learn) that names the way out: ``--tags upos`` (project var
``tags``) makes ``Token.tag_`` the UPOS column for every word, so the tag head
learns (and ``tag_acc`` scores) UPOS, as many UD treebanks have no XPOS.
Every failure is one line on stderr and exit status 1.
"""
import argparse
import sys
from pathlib import Path
from typing import List, Optional, Tuple

XPOS_MISSING_HINT = (
    "lstm_tagger's tag head learns Token.tag_ from that column; to learn UPOS (column 4) as the tags "
    "instead, convert with --vars.tags upos (scripts/prepare_treebank.py --tags upos)."
)
TAG_COLUMNS = {"xpos": 4, "upos": 3}


class TreebankError(Exception):
    pass


def info(text: str) -> None:
    print(f"[convert] {text}", flush=True)


def conllu_name(treebank: str, split: str) -> str:
    return f"{treebank}-ud-{split}.conllu"


def read_sentences(path: Path) -> List[str]:
    """The file's sentence blocks (comment and token lines), in order."""
    text = path.read_text(encoding="utf8")
    blocks = [block.strip("\n") for block in text.replace("\r\n", "\n").split("\n\n")]
    return [block for block in blocks if any(line and not line.startswith("#") for line in block.split("\n"))]


def tag_column(block: str, path: Path, tags_from: str = "xpos") -> List[str]:
    """XPOS (or, ``tags_from="upos"``, UPOS) of each word line (ids 1, 2, ...: no
    multiword ranges or empty nodes, which spaCy's converter skips too)."""
    tags: List[str] = []
    for line in block.split("\n"):
        if not line or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) != 10:
            raise TreebankError(f"{path}: a line with {len(cols)} columns, not CoNLL-U's 10: {line[:80]!r}")
        if cols[0].isdigit():
            tags.append(cols[TAG_COLUMNS[tags_from]])
    return tags


def to_docs(blocks: List[str], path: Path, n_sents: int, tags: str = "xpos"):
    """spaCy's CoNLL-U converter, with ``Token.tag_`` from the ``tags`` column
    (XPOS or UPOS); a ``_`` there is a missing tag."""
    from spacy.training.converters import conllu_to_docs

    docs = list(conllu_to_docs("\n\n".join(blocks) + "\n\n", n_sents=n_sents, no_print=True))
    column = [tag for block in blocks for tag in tag_column(block, path, tags)]
    tokens = [token for doc in docs for token in doc]
    if len(tokens) != len(column):
        raise TreebankError(f"{path}: spaCy's converter read {len(tokens)} words, the file has {len(column)}")
    for token, tag in zip(tokens, column):
        token.tag_ = "" if tag == "_" else tag
    return docs


def check_tags(blocks: List[str], path: Path, role: str, tags: str = "xpos") -> None:
    column = [tag for block in blocks for tag in tag_column(block, path, tags)]
    n_missing = sum(tag == "_" for tag in column)
    name = tags.upper()
    if column and n_missing == len(column):
        hint = XPOS_MISSING_HINT if tags == "xpos" else "lstm_tagger would have nothing to learn."
        raise TreebankError(f"{path} ({role}) has no {name} tags: column {TAG_COLUMNS[tags] + 1} is '_' on all "
                            f"{len(column)} words. {hint}")
    if n_missing:
        info(f"{path.name}: {n_missing} of {len(column)} words have {name} '_': their tags are missing (ignored)")


def split_heldout(blocks: List[str], fraction: float) -> Tuple[List[str], List[str]]:
    """The first (1 - fraction) of the sentences, and the rest (at least one each)."""
    if len(blocks) < 2:
        raise TreebankError(f"cannot hold out a dev set from {len(blocks)} sentence(s)")
    n_dev = min(len(blocks) - 1, max(1, round(fraction * len(blocks))))
    return blocks[:-n_dev], blocks[-n_dev:]


def write(docs, path: Path) -> None:
    from spacy.tokens import DocBin

    path.parent.mkdir(parents=True, exist_ok=True)
    DocBin(docs=docs, store_user_data=True).to_disk(path)  # what `spacy convert` writes


def prepare(assets: Path, corpus: Path, treebank: str, train_split: str, dev_split: Optional[str],
            test_split: str, heldout: float, n_sents: int, tags: str = "xpos") -> None:
    train_file = assets / conllu_name(treebank, train_split)
    if not train_file.is_file():
        raise TreebankError(f"{train_file} not found: run the `fetch` step (or check vars.treebank / vars.train_split)")
    train = read_sentences(train_file)
    if tags != "xpos":
        info(f"tags: Token.tag_ is the {tags.upper()} column (--tags {tags})")
    check_tags(train, train_file, "train", tags)
    dev_file = assets / conllu_name(treebank, dev_split) if dev_split else None
    if dev_file is not None and dev_split != train_split and dev_file.is_file():
        dev = read_sentences(dev_file)
        check_tags(dev, dev_file, "dev", tags)
        info(f"train: {train_file.name} ({len(train)} sentences); dev: {dev_file.name} ({len(dev)} sentences)")
    else:
        why = "is the training file" if dev_split == train_split else "not present"
        train, dev = split_heldout(train, heldout)
        info(f"dev {dev_file.name if dev_file else '(none)'} {why}: holding out the last {len(dev)} of "
             f"{len(train) + len(dev)} sentences of {train_file.name} as dev ({heldout:.0%}); train: the first {len(train)}")
    outputs = {"train": (train, train_file), "dev": (dev, dev_file or train_file)}
    test_file = assets / conllu_name(treebank, test_split)
    test_out = corpus / f"{treebank}-ud-test.spacy"
    if test_split and test_split not in (train_split, dev_split) and test_file.is_file():
        outputs["test"] = (read_sentences(test_file), test_file)
        info(f"test: {test_file.name} ({len(outputs['test'][0])} sentences)")
    else:
        if test_out.exists():
            test_out.unlink()
        info(f"{test_file.name} not present (optional): no test corpus; `evaluate` will score dev")
    for role, (blocks, source) in outputs.items():
        out = corpus / f"{treebank}-ud-{role}.spacy"
        docs = to_docs(blocks, source, n_sents, tags)
        write(docs, out)
        info(f"{role}: {len(blocks)} sentences -> {len(docs)} docs in {out}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assets", type=Path, default=Path("assets"), help="directory with the .conllu files")
    parser.add_argument("--corpus", type=Path, default=Path("corpus"), help="where the .spacy files go")
    parser.add_argument("--treebank", default="en_ewt", help="UD file prefix, e.g. en_ewt, fi_tdt")
    parser.add_argument("--train-split", default="train", help="the file to train on: {treebank}-ud-{this}.conllu")
    parser.add_argument("--dev-split", default="dev", help="dev file; absent or the training file = hold out")
    parser.add_argument("--test-split", default="test", help="test file (optional)")
    parser.add_argument("--heldout", type=float, default=0.1, help="fraction of training sentences held out as dev")
    parser.add_argument("-n", "--n-sents", type=int, default=10, help="sentences per doc (spacy convert -n)")
    parser.add_argument("--tags", choices=sorted(TAG_COLUMNS), default="xpos",
                        help="the CoNLL-U column Token.tag_ is read from: xpos (column 5) or upos (column 4), "
                             "for treebanks without XPOS")
    args = parser.parse_args(argv)
    try:
        if not 0.0 < args.heldout < 1.0:
            raise TreebankError(f"--heldout must be between 0 and 1, got {args.heldout}")
        prepare(args.assets, args.corpus, args.treebank, args.train_split, args.dev_split,
                args.test_split, args.heldout, args.n_sents, args.tags)
    except (TreebankError, OSError, UnicodeDecodeError) as err:
        print(f"[convert] ERROR: {err}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
