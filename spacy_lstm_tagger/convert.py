"""CoNLL-U -> the ``.spacy`` corpus lstm_tagger trains on: one route for pip
users (``python -m spacy_lstm_tagger convert IN.conllu OUT.spacy``) and for
the project's ``convert`` step (the directory form on a UD treebank), so both
give the same data.

Conversion is spaCy's own CoNLL-U converter (``spacy convert --converter
conllu -n 10``), with one correction: a word whose XPOS is ``_`` gets a
missing tag (ignored by the loss and the scorer), not its UPOS as spaCy's
converter writes, which would mix UPOS labels into the XPOS tag set.
``tags="upos"`` reads ``Token.tag_`` from the UPOS column instead, for the
many UD treebanks without XPOS.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from spacy.tokens import Doc, DocBin

TAG_COLUMNS = {"xpos": 4, "upos": 3}  # 0-based CoNLL-U columns
XPOS_MISSING_HINT = (
    "lstm_tagger's tag head learns Token.tag_ from that column; to learn UPOS (column 4) as the tags "
    "instead, convert with --tags upos (in the spaCy project: --vars.tags upos)."
)
ROLES = ("train", "dev", "test")

Log = Callable[[str], None]


class ConvertError(ValueError):
    """The input can't be converted (missing file, malformed CoNLL-U, no tags)."""


def _silent(text: str) -> None:
    pass


def read_sentences(path: Path) -> List[str]:
    """The file's sentence blocks (comment and word lines), in order."""
    if not path.is_file():
        raise ConvertError(f"{path} not found")
    text = path.read_text(encoding="utf8")
    blocks = [block.strip("\n") for block in text.replace("\r\n", "\n").split("\n\n")]
    return [block for block in blocks if any(line and not line.startswith("#") for line in block.split("\n"))]


def tag_column(block: str, path: Path, tags: str = "xpos") -> List[str]:
    """XPOS (or UPOS) of each word line: ids 1, 2, ..., not multiword ranges
    or empty nodes, which spaCy's converter skips too."""
    column = TAG_COLUMNS[tags]
    out: List[str] = []
    for line in block.split("\n"):
        if not line or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) != 10:
            raise ConvertError(f"{path}: a line with {len(cols)} columns, not CoNLL-U's 10: {line[:80]!r}")
        if cols[0].isdigit():
            out.append(cols[column])
    return out


def _sentence_name(block: str, number: int) -> str:
    sent_id = next((line.split("=", 1)[1].strip() for line in block.split("\n")
                    if line.startswith("# sent_id") and "=" in line), None)
    return f"sentence {number}" + (f" ({sent_id})" if sent_id else "")


def check_sentence(block: str, number: int, path: Path) -> None:
    """Word ids 1..n in order and heads within the sentence: what spaCy's
    converter assumes and, when it does not hold, fails on deep inside
    ``Doc.from_array`` (e.g. a sentence cut off mid-way)."""
    ids, heads = [], []
    for line in block.split("\n"):
        cols = line.split("\t")
        if line.startswith("#") or len(cols) != 10 or not cols[0].isdigit():
            continue
        ids.append(int(cols[0]))
        heads.append(cols[6])
    where = f"{path}: {_sentence_name(block, number)}"
    if ids != list(range(1, len(ids) + 1)):
        raise ConvertError(f"{where}: word ids are not 1, 2, ..., {len(ids)} (a sentence cut short or two run together?)")
    for word_id, head in zip(ids, heads):
        if head != "_" and not (head.isdigit() and int(head) <= len(ids)):
            raise ConvertError(f"{where}: word {word_id} has head {head!r}, not a word of the sentence (0-{len(ids)})")


def to_docs(blocks: Sequence[str], path: Path, n_sents: int = 10, tags: str = "xpos") -> List[Doc]:
    """spaCy's CoNLL-U converter (``n_sents`` sentences per Doc), with
    ``Token.tag_`` from the ``tags`` column; a ``_`` there is a missing tag."""
    from spacy.training.converters import conllu_to_docs

    if not blocks:
        return []
    for number, block in enumerate(blocks, 1):
        check_sentence(block, number, path)
    try:
        docs = list(conllu_to_docs("\n\n".join(blocks) + "\n\n", n_sents=n_sents, no_print=True))
    except (ValueError, KeyError, IndexError) as err:
        raise ConvertError(f"{path}: spaCy's CoNLL-U converter failed: {err}") from None
    column = [tag for block in blocks for tag in tag_column(block, path, tags)]
    tokens = [token for doc in docs for token in doc]
    if len(tokens) != len(column):
        raise ConvertError(f"{path}: spaCy's converter read {len(tokens)} words, the file has {len(column)}")
    for token, tag in zip(tokens, column):
        token.tag_ = "" if tag == "_" else tag
    return docs


def check_tags(blocks: Sequence[str], path: Path, role: str, tags: str = "xpos", log: Log = _silent) -> None:
    """A file without a single tag in the column is an error (lstm_tagger
    would have nothing to learn); some ``_`` tags are reported."""
    column = [tag for block in blocks for tag in tag_column(block, path, tags)]
    n_missing = sum(tag == "_" for tag in column)
    name = tags.upper()
    if column and n_missing == len(column):
        hint = XPOS_MISSING_HINT if tags == "xpos" else "lstm_tagger would have nothing to learn."
        raise ConvertError(f"{path} ({role}) has no {name} tags: column {TAG_COLUMNS[tags] + 1} is '_' on all "
                           f"{len(column)} words. {hint}")
    if n_missing:
        log(f"{path.name}: {n_missing} of {len(column)} words have {name} '_': their tags are missing (ignored)")


def split_heldout(blocks: Sequence[str], fraction: float) -> Tuple[List[str], List[str]]:
    """The first (1 - fraction) of the sentences, and the rest (at least one each)."""
    if len(blocks) < 2:
        raise ConvertError(f"cannot hold out a dev set from {len(blocks)} sentence(s)")
    n_dev = min(len(blocks) - 1, max(1, round(fraction * len(blocks))))
    return list(blocks[:-n_dev]), list(blocks[-n_dev:])


def write_docbin(docs: Sequence[Doc], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    DocBin(docs=docs, store_user_data=True).to_disk(path)  # what `spacy convert` writes


def _write(blocks: Sequence[str], source: Path, out: Path, role: str, n_sents: int, tags: str, log: Log) -> int:
    docs = to_docs(blocks, source, n_sents, tags)
    write_docbin(docs, out)
    log(f"{role}: {len(blocks)} sentences -> {len(docs)} docs in {out}")
    return len(docs)


def convert_file(input_path: Path, output: Path, *, n_sents: int = 10, tags: str = "xpos",
                 dev_output: Optional[Path] = None, heldout: float = 0.1, log: Log = _silent) -> Dict[str, int]:
    """One CoNLL-U file -> ``output``; with ``dev_output``, its last
    ``heldout`` fraction of sentences go there instead (a dev set for a
    treebank without one). Returns the sentences written per role."""
    _check_options(n_sents, tags, heldout)
    blocks = read_sentences(input_path)
    if tags != "xpos":
        log(f"tags: Token.tag_ is the {tags.upper()} column (--tags {tags})")
    check_tags(blocks, input_path, "input", tags, log)
    outputs = {"train": blocks}
    if dev_output is not None:
        outputs["train"], outputs["dev"] = split_heldout(blocks, heldout)
        log(f"holding out the last {len(outputs['dev'])} of {len(blocks)} sentences of {input_path.name} "
            f"as dev ({heldout:.0%}); {output.name}: the first {len(outputs['train'])}")
    paths = {"train": output, "dev": dev_output}
    for role, role_blocks in outputs.items():
        _write(role_blocks, input_path, paths[role], role, n_sents, tags, log)
    return {role: len(role_blocks) for role, role_blocks in outputs.items()}


@dataclass(frozen=True)
class TreebankSplits:
    """Which ``{treebank}-ud-{split}.conllu`` file plays which role."""

    treebank: str
    train: str = "train"
    dev: Optional[str] = "dev"
    test: Optional[str] = "test"

    def conllu(self, directory: Path, split: str) -> Path:
        return directory / f"{self.treebank}-ud-{split}.conllu"

    def spacy(self, corpus: Path, role: str) -> Path:
        return corpus / f"{self.treebank}-ud-{role}.spacy"


def find_treebank(directory: Path) -> str:
    """The one UD file prefix of ``directory``'s ``*-ud-*.conllu`` files."""
    if not directory.is_dir():
        raise ConvertError(f"{directory} is not a directory")
    prefixes = sorted({p.name.split("-ud-")[0] for p in directory.glob("*-ud-*.conllu")})
    if len(prefixes) != 1:
        found = f"several: {', '.join(prefixes)}" if prefixes else "none"
        raise ConvertError(f"{directory}: expected the files of one UD treebank ({{treebank}}-ud-{{split}}.conllu), "
                           f"found {found}; name it with --treebank")
    return prefixes[0]


def convert_treebank(directory: Path, corpus: Path, splits: TreebankSplits, *, n_sents: int = 10,
                     tags: str = "xpos", heldout: float = 0.1, log: Log = _silent) -> Dict[str, int]:
    """A UD treebank directory -> ``corpus/{treebank}-ud-{train,dev,test}.spacy``
    (named by role):

    * train: the ``splits.train`` file (required);
    * dev: the ``splits.dev`` file; when it is absent, or is the training file
      (small treebanks trained on the UD dev file), the last ``heldout``
      fraction of the training file's sentences, which train then leaves out;
    * test: the ``splits.test`` file when present; else any old test corpus is
      removed, so an evaluation never scores a stale split.
    """
    _check_options(n_sents, tags, heldout)
    train_file = splits.conllu(directory, splits.train)
    if not train_file.is_file():
        raise ConvertError(f"{train_file} not found: the training file of {splits.treebank} "
                           "(in the spaCy project: run the `fetch` step, or check vars.treebank / vars.train_split)")
    train = read_sentences(train_file)
    if tags != "xpos":
        log(f"tags: Token.tag_ is the {tags.upper()} column (--tags {tags})")
    check_tags(train, train_file, "train", tags, log)
    dev_file = splits.conllu(directory, splits.dev) if splits.dev else None
    if dev_file is not None and splits.dev != splits.train and dev_file.is_file():
        dev = read_sentences(dev_file)
        check_tags(dev, dev_file, "dev", tags, log)
        dev_source = dev_file
        log(f"train: {train_file.name} ({len(train)} sentences); dev: {dev_file.name} ({len(dev)} sentences)")
    else:
        why = "is the training file" if splits.dev == splits.train else "not present"
        train, dev = split_heldout(train, heldout)
        dev_source = train_file
        log(f"dev {dev_file.name if dev_file else '(none)'} {why}: holding out the last {len(dev)} of "
            f"{len(train) + len(dev)} sentences of {train_file.name} as dev ({heldout:.0%}); "
            f"train: the first {len(train)}")
    outputs = {"train": (train, train_file), "dev": (dev, dev_source)}
    test_file = splits.conllu(directory, splits.test) if splits.test else None
    if test_file is not None and splits.test not in (splits.train, splits.dev) and test_file.is_file():
        outputs["test"] = (read_sentences(test_file), test_file)
        log(f"test: {test_file.name} ({len(outputs['test'][0])} sentences)")
    else:
        splits.spacy(corpus, "test").unlink(missing_ok=True)
        log(f"{test_file.name if test_file else 'test'} not present (optional): no test corpus; "
            "an evaluation scores dev")
    for role, (blocks, source) in outputs.items():
        _write(blocks, source, splits.spacy(corpus, role), role, n_sents, tags, log)
    return {role: len(blocks) for role, (blocks, _) in outputs.items()}


def _check_options(n_sents: int, tags: str, heldout: float) -> None:
    if not 0.0 < heldout < 1.0:
        raise ConvertError(f"--heldout must be between 0 and 1, got {heldout}")
    if n_sents < 1:
        raise ConvertError(f"--n-sents must be at least 1, got {n_sents}")
    if tags not in TAG_COLUMNS:
        raise ConvertError(f"--tags must be {' or '.join(TAG_COLUMNS)}, got {tags!r}")
