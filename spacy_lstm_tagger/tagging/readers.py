"""Input readers and deterministic partitioning.

Three formats, all read as a stream of *records* (one record = one Doc):

* ``txt``: one document per line; blank lines are skipped;
* ``jsonl``: one JSON object per line with a string ``"text"``; the other
  fields are kept and written back as ``"meta"``;
* ``conllu``: one document per sentence (or per ``# newdoc``), with the gold
  tokenization: words from column 2, spaces from ``SpaceAfter=No``; the
  input lines of each sentence are kept in ``meta["conllu"]`` (the CoNLL-U
  writer keeps their columns).

Partitions are ranges of ``partition_size`` consecutive records of one input
file. :func:`plan_partitions` scans every file once (validating it, so bad
input fails before any tagging starts) and remembers the byte offset and line
number where each partition starts, so a worker reads only its own slice.
"""
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

INPUT_FORMATS = ("txt", "jsonl", "conllu")
EXTENSIONS = {
    ".txt": "txt", ".text": "txt",
    ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".conllu": "conllu", ".conll": "conllu",
}
CONLLU_UNITS = ("sentence", "newdoc")


class InputError(ValueError):
    """Bad or missing input, with the file (and line) at fault."""


@dataclass
class Record:
    """One input document. ``text`` for txt/jsonl; ``words``/``spaces``/
    ``sent_starts`` (gold tokenization) for CoNLL-U."""

    source: str
    line: int
    offset: int
    text: Optional[str] = None
    words: Optional[List[str]] = None
    spaces: Optional[List[bool]] = None
    sent_starts: Optional[List[bool]] = None
    meta: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Partition:
    """Records ``first_doc`` .. ``first_doc + n_docs - 1`` of one input file,
    starting at byte ``offset`` (line ``line``)."""

    index: int
    path: str  # absolute path the workers read
    source: str  # the path as the user gave it (written into the output)
    input_format: str
    first_doc: int
    n_docs: int
    offset: int
    line: int
    conllu_unit: str = "sentence"

    @property
    def name(self) -> str:
        return f"part-{self.index:05d}"


def detect_format(path: Path, input_format: str = "auto") -> str:
    if input_format != "auto":
        if input_format not in INPUT_FORMATS:
            raise InputError(f"Unknown input format {input_format!r}: expected auto, {', '.join(INPUT_FORMATS)}")
        return input_format
    fmt = EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(
            f"Can't tell the format of {path} from its extension: use --input-format "
            f"({', '.join(INPUT_FORMATS)}) or name it {', '.join(sorted(EXTENSIONS))}"
        )
    return fmt


def expand_inputs(inputs: Sequence[Union[str, Path]]) -> List[Path]:
    """The input files: files as given, directories expanded to their files
    with a known extension (sorted). Missing paths are an error."""
    files: List[Path] = []
    if not inputs:
        raise InputError("No input files given")
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)
            if not found:
                raise InputError(f"Input directory {path} has no {', '.join(sorted(EXTENSIONS))} files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(f"Input file not found: {path}")
    return files


def _lines(path: Path, offset: int = 0, line: int = 1) -> Iterator[Tuple[int, int, str]]:
    """(byte offset, line number, text without line terminator) from ``offset``."""
    with path.open("rb") as f:
        f.seek(offset)
        pos = offset
        for raw in f:
            try:
                text = raw.decode("utf8")
            except UnicodeDecodeError as err:
                raise InputError(f"{path}:{line}: not valid UTF-8 ({err})") from None
            if pos == 0 and text.startswith("\ufeff"):
                text = text[1:]
            yield pos, line, text.rstrip("\r\n")
            pos += len(raw)
            line += 1


def _read_txt(path: Path, source: str, offset: int, line: int) -> Iterator[Record]:
    for pos, n, text in _lines(path, offset, line):
        if text.strip():
            yield Record(source=source, line=n, offset=pos, text=text)


def _read_jsonl(path: Path, source: str, offset: int, line: int) -> Iterator[Record]:
    for pos, n, text in _lines(path, offset, line):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}:{n}: invalid JSON ({err.msg} at column {err.colno})") from None
        if not isinstance(obj, dict):
            raise InputError(f"{path}:{n}: expected a JSON object with a \"text\" field, got {type(obj).__name__}")
        if "text" not in obj:
            raise InputError(f"{path}:{n}: the JSON object has no \"text\" field (keys: {', '.join(obj) or 'none'})")
        if not isinstance(obj["text"], str):
            raise InputError(f"{path}:{n}: \"text\" must be a string, got {type(obj['text']).__name__}")
        meta = {k: v for k, v in obj.items() if k != "text"}
        yield Record(source=source, line=n, offset=pos, text=obj["text"], meta=meta)


def _read_conllu(path: Path, source: str, offset: int, line: int, unit: str) -> Iterator[Record]:
    """Sentences (or ``# newdoc`` documents) with their gold tokenization.
    Multiword-token ranges (``3-4``) are skipped but their ``SpaceAfter=No``
    goes to their last word; empty nodes (``3.1``) are skipped."""
    if unit not in CONLLU_UNITS:
        raise InputError(f"Unknown CoNLL-U unit {unit!r}: expected {' or '.join(CONLLU_UNITS)}")
    doc: Optional[Record] = None
    sent: Optional[Dict[str, Any]] = None  # words, spaces, start offset/line, comments
    range_end, range_space = 0, True

    def close_sentence() -> Optional[Record]:
        """Add the finished sentence to the current doc; return a finished doc."""
        nonlocal doc, sent
        finished = None
        if sent is None:
            return None
        if sent["words"]:
            newdoc = "newdoc" in sent["comments"]
            if unit == "sentence" or doc is None or newdoc:
                finished, doc = doc, Record(
                    source=source, line=sent["line"], offset=sent["offset"], words=[], spaces=[],
                    sent_starts=[], meta={},
                )
                if unit == "sentence" and "sent_id" in sent["comments"]:
                    doc.meta["sent_id"] = sent["comments"]["sent_id"]
                if "newdoc" in sent["comments"] and sent["comments"]["newdoc"]:
                    doc.meta["newdoc_id"] = sent["comments"]["newdoc"]
            doc.meta.setdefault("conllu", []).append(sent["lines"])  # for the CoNLL-U writer
            doc.words.extend(sent["words"])
            doc.spaces.extend(sent["spaces"])
            doc.sent_starts.extend([True] + [False] * (len(sent["words"]) - 1))
        elif sent["comments"]:
            pass  # a comment-only block: ignore
        sent = None
        return finished

    for pos, n, text in _lines(path, offset, line):
        if not text.strip():
            finished = close_sentence()
            if finished is not None:
                yield finished
            continue
        if sent is None:
            sent = {"words": [], "spaces": [], "offset": pos, "line": n, "comments": {}, "lines": []}
            range_end, range_space = 0, True
        sent["lines"].append(text)
        if text.startswith("#"):
            key, _, value = text[1:].partition("=")
            key = key.strip()
            if key in ("newdoc", "newdoc id"):
                sent["comments"]["newdoc"] = value.strip()
            elif key == "sent_id":
                sent["comments"]["sent_id"] = value.strip()
            continue
        cols = text.split("\t")
        if len(cols) != 10:
            raise InputError(f"{path}:{n}: expected 10 tab-separated CoNLL-U columns, got {len(cols)}")
        tok_id, form, misc = cols[0], cols[1], cols[9]
        no_space = "SpaceAfter=No" in misc.split("|")
        if "-" in tok_id:
            try:
                range_end = int(tok_id.split("-")[1])
            except ValueError:
                raise InputError(f"{path}:{n}: bad token range {tok_id!r}") from None
            range_space = not no_space
            continue
        if "." in tok_id:
            continue
        try:
            i = int(tok_id)
        except ValueError:
            raise InputError(f"{path}:{n}: bad token id {tok_id!r}") from None
        sent["words"].append(form)
        if range_end and i < range_end:
            sent["spaces"].append(False)
        elif range_end and i == range_end:
            sent["spaces"].append(range_space and not no_space)
            range_end = 0
        else:
            sent["spaces"].append(not no_space)
    finished = close_sentence()
    if finished is not None:
        yield finished
    if doc is not None:
        yield doc


def iter_records(path: Union[str, Path], input_format: str, *, source: Optional[str] = None,
                 offset: int = 0, line: int = 1, conllu_unit: str = "sentence") -> Iterator[Record]:
    """The records of one file, from byte ``offset`` (which must be a record start)."""
    path = Path(path)
    source = str(path) if source is None else source
    if input_format == "txt":
        return _read_txt(path, source, offset, line)
    if input_format == "jsonl":
        return _read_jsonl(path, source, offset, line)
    if input_format == "conllu":
        return _read_conllu(path, source, offset, line, conllu_unit)
    raise InputError(f"Unknown input format {input_format!r}")


def read_partition(partition: Partition) -> List[Record]:
    """The ``n_docs`` records of one partition."""
    records = []
    it = iter_records(partition.path, partition.input_format, source=partition.source,
                      offset=partition.offset, line=partition.line, conllu_unit=partition.conllu_unit)
    for record in it:
        records.append(record)
        if len(records) == partition.n_docs:
            break
    if len(records) != partition.n_docs:
        raise InputError(
            f"{partition.source}: partition {partition.name} expected {partition.n_docs} documents from line "
            f"{partition.line}, found {len(records)}: the file changed since the run was planned"
        )
    return records


def plan_partitions(inputs: Sequence[Union[str, Path]], partition_size: int, input_format: str = "auto",
                    conllu_unit: str = "sentence") -> Tuple[List[Partition], List[Dict[str, Any]]]:
    """Split the inputs into partitions of ``partition_size`` documents (the
    last partition of each file may be smaller). Returns the partitions and a
    description of each input file (for the run manifest)."""
    if partition_size < 1:
        raise InputError(f"partition_size must be at least 1, got {partition_size}")
    partitions: List[Partition] = []
    described = []
    for path in expand_inputs(inputs):
        fmt = detect_format(path, input_format)
        starts = []  # (offset, line, first_doc) of each partition of this file
        n_docs = 0
        for record in iter_records(path, fmt, conllu_unit=conllu_unit):
            if n_docs % partition_size == 0:
                starts.append((record.offset, record.line, n_docs))
            n_docs += 1
        for offset, line, first in starts:
            partitions.append(Partition(
                index=len(partitions), path=str(path.resolve()), source=str(path), input_format=fmt,
                first_doc=first, n_docs=min(partition_size, n_docs - first), offset=offset, line=line,
                conllu_unit=conllu_unit,
            ))
        described.append({"path": str(path), "format": fmt, "bytes": path.stat().st_size, "n_docs": n_docs})
    return partitions, described
