"""Atomic partition output: ``part-00000.spacy`` (DocBin), ``part-00000.jsonl``
(tokens, offsets and tags) and/or ``part-00000.conllu`` (CoNLL-U).

Each file is written to a temporary name in the output directory, flushed to
disk, then ``os.replace``d to its final name, so a partition's file is either
complete or absent: a killed worker leaves at most a temporary file (removed
by the next run), and a re-run skips partitions whose files all exist.
"""
import json
import os
import re
import uuid
from pathlib import Path
from typing import Any, Dict, Iterable, List, Sequence, Tuple, Union

import srsly
from spacy.tokens import Doc, DocBin, Span

OUTPUT_FORMATS = ("spacy", "jsonl", "conllu")
TEXT_FORMATS = ("jsonl", "conllu")  # the formats that can stream to stdout
TMP_MARK = ".tmp-"


def parse_formats(fmt: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    """``"spacy"``, ``"jsonl"``, ``"conllu"`` or ``"both"`` (spacy and jsonl),
    or a list of them → a tuple of output formats."""
    names = [fmt] if isinstance(fmt, str) else list(fmt)
    out: List[str] = []
    for name in names:
        for part in ("spacy", "jsonl") if name == "both" else (name,):
            if part not in OUTPUT_FORMATS:
                raise ValueError(f"Unknown output format {part!r}: expected spacy, jsonl, conllu or both")
            if part not in out:
                out.append(part)
    if not out:
        raise ValueError("No output format given")
    return tuple(out)


def partition_paths(output: Union[str, Path], name: str, formats: Sequence[str]) -> List[Path]:
    return [Path(output) / f"{name}.{fmt}" for fmt in formats]


def is_done(output: Union[str, Path], name: str, formats: Sequence[str]) -> bool:
    """Whether every requested output file of the partition exists (final names only)."""
    return all(p.exists() for p in partition_paths(output, name, formats))


def count_words(output: Union[str, Path], name: str, formats: Sequence[str]) -> int:
    """Tokens in a finished partition (read back from its files; CoNLL-U
    counts its word lines, without whitespace tokens)."""
    fmt = next(f for f in OUTPUT_FORMATS if f in formats)
    path = Path(output) / f"{name}.{fmt}"
    if fmt == "spacy":
        return sum(len(tokens) for tokens in DocBin().from_disk(path).tokens)
    with path.open(encoding="utf8") as f:
        if fmt == "conllu":
            return sum(1 for line in f if line.split("\t", 1)[0].isdigit())
        return sum(len(json.loads(line)["tokens"]) for line in f if line.strip())


def doc_record(doc: Doc, extension_attrs: Sequence[str] = ()) -> Dict[str, Any]:
    """The JSONL line of a tagged Doc: ``offsets`` are each token's
    ``[start, end)`` character offsets in ``text``; ``extension_attrs`` are
    ``Token._`` attributes written as one list per attribute (e.g. the
    ``tag_prob`` and ``tag_alternatives`` of ``--probabilities``)."""
    info = doc.user_data.get("input", {})
    record: Dict[str, Any] = {"source": info.get("source"), "line": info.get("line")}
    for key in ("sent_id", "newdoc_id"):
        if key in info:
            record[key] = info[key]
    record["text"] = doc.text
    record["tokens"] = [t.text for t in doc]
    record["offsets"] = [[t.idx, t.idx + len(t)] for t in doc]
    record["tags"] = [t.tag_ for t in doc]
    if any(t.pos for t in doc):
        record["pos"] = [t.pos_ for t in doc]
    if any(t.morph for t in doc):
        record["morphs"] = [str(t.morph) for t in doc]
    if doc.has_annotation("SENT_START") and len(doc):
        record["sent_starts"] = [s.start for s in doc.sents]
    for attr in extension_attrs:
        record[attr] = [t._.get(attr) for t in doc]
    if info.get("meta"):
        record["meta"] = info["meta"]
    return record


# --- CoNLL-U ------------------------------------------------------------------

_MISC_ESCAPES = {"\\": "\\\\", " ": "\\s", "\t": "\\t", "\n": "\\n", "\r": "\\r", "|": "\\p"}


def _escape_spaces(text: str) -> str:
    """UD's escaping of whitespace in ``SpacesAfter``/``SpacesBefore``."""
    return "".join(_MISC_ESCAPES.get(c, c) for c in text)


def _comment_key(line: str) -> str:
    return line[1:].partition("=")[0].strip()


def _unique_id(text: str) -> str:
    return re.sub(r"\s+", "_", text)


def _predicted_columns(token, cols: List[str]) -> List[str]:
    """Columns 3-6 from what the pipeline predicted: LEMMA and UPOS only
    when set (e.g. the joint POS head), XPOS always, FEATS when
    ``Token.morph`` is set; the other columns are kept."""
    if token.lemma:
        cols[2] = token.lemma_
    if token.pos:
        cols[3] = token.pos_
    cols[4] = token.tag_ or "_"
    if token.morph:
        cols[5] = str(token.morph)
    return cols


def _block_text(rows: List[List[str]]) -> str:
    """``# text`` of a CoNLL-U sentence from its surface tokens (multiword
    token lines, not their words) and ``SpaceAfter=No``."""
    parts, range_end = [], 0
    for cols in rows:
        if "." in cols[0] or (range_end and "-" not in cols[0] and int(cols[0]) <= range_end):
            continue
        if "-" in cols[0]:
            range_end = int(cols[0].split("-")[1])
        parts.append(cols[1] + ("" if "SpaceAfter=No" in cols[9].split("|") else " "))
    return "".join(parts).rstrip(" ")


def _merge_conllu(doc: Doc, blocks: List[List[str]], doc_id: str) -> List[str]:
    """The input sentences with the predicted columns replaced (multiword
    tokens, empty nodes, comments and every other column kept)."""
    tokens = iter(doc)
    out: List[str] = []
    for k, block in enumerate(blocks):
        n_comments = next((i for i, text in enumerate(block) if not text.startswith("#")), len(block))
        comments, rows = block[:n_comments], [text.split("\t") for text in block[n_comments:]]
        keys = {_comment_key(c) for c in comments}
        out.extend(comments)
        if "sent_id" not in keys:
            out.append(f"# sent_id = {doc_id}" + (f"-{k + 1}" if len(blocks) > 1 else ""))
        if "text" not in keys:
            out.append(f"# text = {_block_text(rows)}")
        for cols in rows:
            if cols[0].isdigit():
                cols = _predicted_columns(next(tokens), cols)
            out.append("\t".join(cols))
        out.append("")
    return out


def _sentence_conllu(sent: Span, sent_id: str, leading: str) -> List[str]:
    """One sentence of a Doc made by the tokenizer. Whitespace tokens are
    not words in CoNLL-U: they go to the previous word's ``SpacesAfter``
    (or the first word's ``SpacesBefore``)."""
    words: List[List[Any]] = []  # [token, whitespace after it]
    for token in sent:
        if token.is_space:
            if words:
                words[-1][1] += token.text_with_ws
            else:
                leading += token.text_with_ws
        else:
            words.append([token, token.whitespace_])
    if not words:
        return []
    ids = {token.i: n for n, (token, _) in enumerate(words, 1)}
    has_dep = sent.doc.has_annotation("DEP")
    text = "".join(re.sub(r"\s+", " ", t.text) + (" " if ws else "") for t, ws in words).rstrip(" ")
    lines = [f"# sent_id = {sent_id}", f"# text = {text}"]
    for n, (token, ws) in enumerate(words, 1):
        misc = []
        if n == 1 and leading:
            misc.append(f"SpacesBefore={_escape_spaces(leading)}")
        if ws == "":
            misc.append("SpaceAfter=No")
        elif ws != " ":
            misc.append(f"SpacesAfter={_escape_spaces(ws)}")
        head = deprel = "_"
        if has_dep and (token.head.i == token.i or token.head.i in ids):
            head = "0" if token.head.i == token.i else str(ids[token.head.i])
            deprel = "root" if head == "0" else (token.dep_ or "dep")
        form = re.sub(r"\s", " ", token.text)
        cols = _predicted_columns(token, [str(n), form, "_", "_", "_", "_", head, deprel, "_", "|".join(misc) or "_"])
        lines.append("\t".join(cols))
    return lines + [""]


def doc_conllu(doc: Doc) -> str:
    """A tagged Doc in CoNLL-U: XPOS (column 5) from ``Token.tag_``, UPOS
    (column 4) when the pipeline sets ``Token.pos_`` (joint POS head),
    FEATS (column 6) when it sets ``Token.morph``. A Doc read from CoNLL-U
    keeps its input lines and columns; any other Doc is written one sentence
    per ``doc.sents`` (the whole Doc when nothing set sentence boundaries),
    with ``# sent_id`` and ``# text``. An empty Doc writes nothing."""
    info = doc.user_data.get("input", {})
    name = _unique_id(Path(str(info.get("source"))).name) if info.get("source") else "doc"
    doc_id = f"{name}:{info.get('line')}"  # unique in a partition (one input file's lines)
    blocks = info.get("conllu")
    n_words = sum(text.split("\t", 1)[0].isdigit() for block in blocks or () for text in block)
    if blocks and n_words == len(doc):  # (a pipeline that retokenized gets new lines)
        lines = _merge_conllu(doc, blocks, doc_id)
    else:
        sents = list(doc.sents) if doc.has_annotation("SENT_START") and len(doc) else [doc[:]]
        lines, leading = [], ""
        for k, sent in enumerate(sents):
            sent_id = doc_id + (f"-{k + 1}" if len(sents) > 1 else "")
            block = _sentence_conllu(sent, sent_id, leading)
            leading = "" if block else leading + sent.text_with_ws
            if block and not lines:
                block.insert(0, f"# newdoc id = {doc_id}")
            lines.extend(block)
    return "".join(text + "\n" for text in lines)


def _docbin_user_data(doc: Doc) -> Dict:
    """The user data stored in the DocBin, without the CoNLL-U input lines
    (only the CoNLL-U writer needs them)."""
    info = doc.user_data.get("input")
    if not isinstance(info, dict) or "conllu" not in info:
        return doc.user_data
    user_data = dict(doc.user_data)
    user_data["input"] = {k: v for k, v in info.items() if k != "conllu"}
    return user_data


def docbin_bytes(docs: Iterable[Doc]) -> bytes:
    """``DocBin(store_user_data=True)`` bytes of ``docs``, the same bytes as
    ``DocBin.add`` would give, but with one msgpack Packer for all the Docs'
    user data: ``srsly.msgpack_dumps`` builds a Packer per call from a scan of
    the installed entry points (about 1 ms each, more than tagging a short Doc)."""
    docs = list(docs)
    docbin = DocBin(store_user_data=False)
    for doc in docs:
        docbin.add(doc)
    packer = srsly.msgpack.Packer(use_bin_type=True)
    docbin.store_user_data = True
    docbin.user_data = [packer.pack(_docbin_user_data(doc)) for doc in docs]
    return docbin.to_bytes()


def docs_to_text(docs: Iterable[Doc], fmt: str, extension_attrs: Sequence[str] = ()) -> str:
    """JSONL or CoNLL-U text of ``docs`` (also what ``-o -`` streams)."""
    if fmt == "jsonl":
        return "".join(json.dumps(doc_record(doc, extension_attrs), ensure_ascii=False) + "\n" for doc in docs)
    if fmt == "conllu":
        return "".join(doc_conllu(doc) for doc in docs)
    raise ValueError(f"Unknown text output format {fmt!r}: expected {' or '.join(TEXT_FORMATS)}")


def docs_to_bytes(docs: Iterable[Doc], fmt: str, extension_attrs: Sequence[str] = ()) -> bytes:
    if fmt == "spacy":
        return docbin_bytes(docs)
    if fmt in TEXT_FORMATS:
        return docs_to_text(docs, fmt, extension_attrs).encode("utf8")
    raise ValueError(f"Unknown output format {fmt!r}")


def _write_atomic_tmp(final: Path, data: bytes) -> Path:
    tmp = final.with_name(f".{final.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return tmp


def write_partition(docs: Sequence[Doc], output: Union[str, Path], name: str, formats: Sequence[str],
                    extension_attrs: Sequence[str] = ()) -> List[Path]:
    """Write one partition's Docs in every format, each file atomically
    (``extension_attrs``: ``Token._`` attributes the JSONL also holds)."""
    output = Path(output)
    finals = partition_paths(output, name, formats)
    tmps = []
    try:
        for fmt, final in zip(formats, finals):
            tmps.append(_write_atomic_tmp(final, docs_to_bytes(docs, fmt, extension_attrs)))
    except BaseException:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, final in zip(tmps, finals):
        os.replace(tmp, final)
    _fsync_dir(output)
    return finals


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_tmp_files(output: Union[str, Path]) -> int:
    """Remove temporary files left by killed writers; returns how many."""
    n = 0
    for path in Path(output).glob(f".part-*{TMP_MARK}*"):
        path.unlink(missing_ok=True)
        n += 1
    return n


def _part_index(path: Path) -> int:
    return int(path.name.split(".")[0].split("-")[1])


def read_output_docs(output: Union[str, Path], vocab) -> List[Doc]:
    """All Docs of a finished ``.spacy`` output, in partition order (for checks)."""
    docs = []
    for path in sorted(Path(output).glob("part-*.spacy"), key=_part_index):
        docs.extend(DocBin().from_disk(path).get_docs(vocab))
    return docs


def read_output_records(output: Union[str, Path]) -> List[Dict[str, Any]]:
    """All JSONL records of a finished output, in partition order."""
    records = []
    for path in sorted(Path(output).glob("part-*.jsonl"), key=_part_index):
        with path.open(encoding="utf8") as f:
            records.extend(json.loads(line) for line in f if line.strip())
    return records
