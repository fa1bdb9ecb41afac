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
import hashlib
import json
import math
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
    end: int = -1  # byte offset after the partition's last record (-1: unknown)
    sha256: str = ""  # of bytes offset..end, checked when the partition is read

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


# spaCy's default ``nlp.max_length`` (not saved with a pipeline): a longer
# text fails in ``nlp.make_doc`` (E088) in the middle of a run.
MAX_TEXT_CHARS = 1_000_000


def _check_length(path: Path, n: int, text: str) -> None:
    if len(text) > MAX_TEXT_CHARS:
        raise InputError(f"{path}:{n}: a text of {len(text):,} characters, more than spaCy's nlp.max_length "
                         f"({MAX_TEXT_CHARS:,}): split it into several documents")


def _read_txt(path: Path, source: str, offset: int, line: int) -> Iterator[Record]:
    for pos, n, text in _lines(path, offset, line):
        if text.strip():
            _check_length(path, n, text)
            yield Record(source=source, line=n, offset=pos, text=text)


# JSON values must survive both outputs: JSONL (no NaN/Infinity) and the
# DocBin's msgpack (64-bit integers, bounded nesting), and be valid Unicode.
INT_MIN, INT_MAX = -(2**63), 2**64 - 1
MAX_META_DEPTH = 100


class _BadJSONValue(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _BadJSONValue(f"{name} is not valid JSON (meta values must be finite numbers)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadJSONValue(f"{text} is beyond the range of a 64-bit float")
    return value


def _surrogate_at(text: str) -> Optional[int]:
    """Index of the first lone surrogate (not encodable as UTF-8), else None."""
    try:
        text.encode("utf8")
    except UnicodeEncodeError as err:
        return err.start
    return None


def _check_meta(meta: Dict[str, Any]) -> Optional[str]:
    """The first problem of a JSONL record's other fields, or None."""
    stack = [(meta, "meta", 1)]
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_META_DEPTH:
            return f"{where} is nested more than {MAX_META_DEPTH} levels deep"
        if isinstance(value, dict):
            for key, item in value.items():
                at = _surrogate_at(key)
                if at is not None:
                    return f"a key of {where} has a lone surrogate {key[at]!r} at character {at}: not valid Unicode"
                stack.append((item, f"{where}[{key!r}]", depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value))
        elif isinstance(value, str):
            at = _surrogate_at(value)
            if at is not None:
                return f"{where} has a lone surrogate {value[at]!r} at character {at}: not valid Unicode"
        elif isinstance(value, int) and not isinstance(value, bool) and not INT_MIN <= value <= INT_MAX:
            return f"{where} is an integer beyond 64 bits ({value}); write it as a string"
    return None


def _read_jsonl(path: Path, source: str, offset: int, line: int) -> Iterator[Record]:
    for pos, n, text in _lines(path, offset, line):
        if not text.strip():
            continue
        try:
            obj = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}:{n}: invalid JSON ({err.msg} at column {err.colno})") from None
        except _BadJSONValue as err:
            raise InputError(f"{path}:{n}: {err}") from None
        except RecursionError:
            raise InputError(f"{path}:{n}: JSON nested more than {MAX_META_DEPTH} levels deep") from None
        if not isinstance(obj, dict):
            raise InputError(f"{path}:{n}: expected a JSON object with a \"text\" field, got {type(obj).__name__}")
        if "text" not in obj:
            raise InputError(f"{path}:{n}: the JSON object has no \"text\" field (keys: {', '.join(obj) or 'none'})")
        if not isinstance(obj["text"], str):
            raise InputError(f"{path}:{n}: \"text\" must be a string, got {type(obj['text']).__name__}")
        at = _surrogate_at(obj["text"])
        if at is not None:
            raise InputError(f"{path}:{n}: \"text\" has a lone surrogate {obj['text'][at]!r} at character {at}: "
                             "not valid Unicode")
        _check_length(path, n, obj["text"])
        meta = {k: v for k, v in obj.items() if k != "text"}
        problem = _check_meta(meta)
        if problem is not None:
            raise InputError(f"{path}:{n}: {problem}")
        yield Record(source=source, line=n, offset=pos, text=obj["text"], meta=meta)


@dataclass
class _Sentence:
    """One CoNLL-U sentence block: its words, the space after each, and the
    comments that name it. Multiword-token ranges (``3-4``) are skipped but
    their ``SpaceAfter=No`` goes to their last word; empty nodes (``3.1``) are
    skipped."""

    offset: int
    line: int
    words: List[str] = field(default_factory=list)
    spaces: List[bool] = field(default_factory=list)
    sent_id: Optional[str] = None
    newdoc: Optional[str] = None  # the id of a ``# newdoc`` ("" without one)
    range_end: int = 0  # last word id of the multiword token being read
    range_space: bool = True  # whether that token is followed by a space
    lines: List[str] = field(default_factory=list)  # the block's lines, for the CoNLL-U writer

    def add_comment(self, text: str) -> None:
        key, _, value = text[1:].partition("=")
        key = key.strip()
        if key in ("newdoc", "newdoc id"):
            self.newdoc = value.strip()
        elif key == "sent_id":
            self.sent_id = value.strip()

    def add_row(self, text: str, path: Path, n: int) -> None:
        cols = text.split("\t")
        if len(cols) != 10:
            raise InputError(f"{path}:{n}: expected 10 tab-separated CoNLL-U columns, got {len(cols)}")
        tok_id, form, misc = cols[0], cols[1], cols[9]
        space = "SpaceAfter=No" not in misc.split("|")
        if "-" in tok_id:
            try:
                self.range_end = int(tok_id.split("-")[1])
            except ValueError:
                raise InputError(f"{path}:{n}: bad token range {tok_id!r}") from None
            self.range_space = space
            return
        if "." in tok_id:
            return
        try:
            i = int(tok_id)
        except ValueError:
            raise InputError(f"{path}:{n}: bad token id {tok_id!r}") from None
        if not form:
            raise InputError(f"{path}:{n}: empty FORM (column 2) of token {tok_id}")
        if self.range_end and i < self.range_end:
            space = False
        elif self.range_end and i == self.range_end:
            space = self.range_space and space
            self.range_end = 0
        self.words.append(form)
        self.spaces.append(space)


def _conllu_sentences(path: Path, offset: int, line: int) -> Iterator[_Sentence]:
    """The sentences with words (comment-only blocks are skipped), from ``offset``."""
    sent: Optional[_Sentence] = None
    for pos, n, text in _lines(path, offset, line):
        if not text.strip():
            if sent is not None and sent.words:
                yield sent
            sent = None
            continue
        if sent is None:
            sent = _Sentence(offset=pos, line=n)
        sent.lines.append(text)
        if text.startswith("#"):
            sent.add_comment(text)
        else:
            sent.add_row(text, path, n)
    if sent is not None and sent.words:
        yield sent


def _read_conllu(path: Path, source: str, offset: int, line: int, unit: str) -> Iterator[Record]:
    """One record per sentence, or per ``# newdoc`` (its sentences joined),
    with the gold tokenization."""
    if unit not in CONLLU_UNITS:
        raise InputError(f"Unknown CoNLL-U unit {unit!r}: expected {' or '.join(CONLLU_UNITS)}")
    doc: Optional[Record] = None
    for sent in _conllu_sentences(path, offset, line):
        if unit == "sentence" or doc is None or sent.newdoc is not None:
            if doc is not None:
                yield doc
            doc = Record(source=source, line=sent.line, offset=sent.offset, words=[], spaces=[], sent_starts=[])
            if unit == "sentence" and sent.sent_id is not None:
                doc.meta["sent_id"] = sent.sent_id
            if sent.newdoc:
                doc.meta["newdoc_id"] = sent.newdoc
        doc.meta.setdefault("conllu", []).append(sent.lines)
        doc.words.extend(sent.words)
        doc.spaces.extend(sent.spaces)
        doc.sent_starts.extend([True] + [False] * (len(sent.words) - 1))
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


def _hash_ranges(path: Path, bounds: Sequence[int]) -> Tuple[str, List[str]]:
    """SHA-256 of the whole file and of each byte range ``bounds[i]..bounds[i+1]``
    (the last range runs to the end of the file), in one pass."""
    whole = hashlib.sha256()
    digests: List[str] = []
    with path.open("rb") as f:
        f.seek(0)
        pos = 0
        ranges = list(zip(bounds, list(bounds[1:]) + [None]))
        if ranges and ranges[0][0] > 0:
            whole.update(f.read(ranges[0][0]))
            pos = ranges[0][0]
        for start, stop in ranges:
            part = hashlib.sha256()
            while stop is None or pos < stop:
                chunk = f.read(1 << 20 if stop is None else min(1 << 20, stop - pos))
                if not chunk:
                    break
                whole.update(chunk)
                part.update(chunk)
                pos += len(chunk)
            digests.append(part.hexdigest())
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            whole.update(chunk)
    return whole.hexdigest(), digests


def _partition_digest(partition: Partition) -> str:
    with open(partition.path, "rb") as f:
        f.seek(partition.offset)
        return hashlib.sha256(f.read(partition.end - partition.offset)).hexdigest()


def read_partition(partition: Partition) -> List[Record]:
    """The ``n_docs`` records of one partition (checked against the bytes
    planned, so a file edited since the run started is an error, not a mix)."""
    changed = (
        f"{partition.source}: partition {partition.name} (from line {partition.line}) changed since the run "
        "was planned"
    )
    if partition.sha256 and _partition_digest(partition) != partition.sha256:
        raise InputError(f"{changed}: its bytes differ")
    records = []
    it = iter_records(partition.path, partition.input_format, source=partition.source,
                      offset=partition.offset, line=partition.line, conllu_unit=partition.conllu_unit)
    for record in it:
        records.append(record)
        if len(records) == partition.n_docs:
            break
    if len(records) != partition.n_docs:
        raise InputError(f"{changed}: expected {partition.n_docs} documents, found {len(records)}")
    return records


def plan_partitions(inputs: Sequence[Union[str, Path]], partition_size: int, input_format: str = "auto",
                    conllu_unit: str = "sentence") -> Tuple[List[Partition], List[Dict[str, Any]]]:
    """Split the inputs into partitions of ``partition_size`` documents (the
    last partition of each file may be smaller). Returns the partitions and a
    description of each input file (for the run manifest), both with SHA-256
    fingerprints of their bytes."""
    if partition_size < 1:
        raise InputError(f"--partition-size must be at least 1, got {partition_size}")
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
        size = path.stat().st_size
        file_digest, digests = _hash_ranges(path, [offset for offset, _, _ in starts])
        ends = [offset for offset, _, _ in starts[1:]] + [size]
        for (offset, line, first), end, digest in zip(starts, ends, digests):
            partitions.append(Partition(
                index=len(partitions), path=str(path.resolve()), source=str(path), input_format=fmt,
                first_doc=first, n_docs=min(partition_size, n_docs - first), offset=offset, line=line,
                conllu_unit=conllu_unit, end=end, sha256=digest,
            ))
        described.append({"path": str(path), "format": fmt, "bytes": size, "n_docs": n_docs,
                          "sha256": file_digest})
    return partitions, described
