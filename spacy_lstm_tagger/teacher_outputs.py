"""A teacher's tag distributions, computed once and stored, so that students
train at student speed and can be trained again without the teacher.

``write_teacher_outputs`` runs a trained pipeline's tagger over the sentences
of ``.spacy`` corpora (labelled or not) and stores, per sentence, its words
and spaces and each token's ``top_k`` most probable tags (label indices as
uint16, probabilities as float16), in gzip'ed msgpack shards of
``shard_size`` sentences. ``meta.json`` holds the teacher's labels and its
*fingerprint*: the SHA-256 of the pipeline's files, so outputs made by
another (e.g. retrained) teacher are refused. A shard already written for
the same fingerprint, settings and sentences (their SHA-256) is kept: an
interrupted run resumes, wherever the teacher and the corpora now lie.

``StoredTeacher`` reads them back for ``spacy_lstm_tagger.distill``: it has
the live teacher's interface (``weight``, ``probabilities``), finds each
training sentence by its words and spaces, and fails clearly on one the
outputs do not cover.
"""
import gzip
import hashlib
import multiprocessing
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy
import srsly
from spacy.language import Language
from spacy.tokens import Doc, DocBin
from spacy.util import registry
from thinc.types import Floats2d

from .distill import TeacherMember, renormalize_rows

META_FILE = "meta.json"
FORMAT = "spacy_lstm_tagger.teacher_outputs.v1"
Text = Tuple[Tuple[str, ...], Tuple[bool, ...]]


def text_key(words: Sequence[str], spaces: Sequence[bool]) -> Text:
    """A sentence's key: its words and the spaces between them (whether its
    last token is followed by a space depends on how it was cut from its
    document, so that one is ignored)."""
    spaces = tuple(bool(s) for s in spaces)
    return tuple(words), spaces[:-1] + (False,) if spaces else spaces


def teacher_fingerprint(path: Union[str, Path]) -> str:
    """SHA-256 over a trained pipeline directory's files (names and bytes)."""
    path = Path(path)
    if not (path / "config.cfg").exists():
        raise ValueError(f"The teacher {path} is not a trained pipeline directory (no config.cfg)")
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode("utf8") + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def read_texts(corpora: Sequence[Union[str, Path]]) -> List[Text]:
    """The sentences (words, spaces) of ``.spacy`` files or directories of
    them, in order: a doc with sentence boundaries gives one text per
    sentence, as ``spacy.Corpus.v1`` with ``gold_preproc = true`` does;
    repeated sentences are kept once."""
    from spacy.training.corpus import walk_corpus
    from spacy.vocab import Vocab

    vocab = Vocab()
    texts: Dict[Text, None] = {}
    for corpus in corpora:
        files = walk_corpus(corpus, ".spacy")
        if not files:
            raise ValueError(f"No .spacy files at {corpus}")
        for file in files:
            for doc in DocBin().from_disk(file).get_docs(vocab):
                sents = list(doc.sents) if doc.has_annotation("SENT_START") else [doc[:]]
                for sent in sents:
                    if len(sent):
                        texts[text_key([t.text for t in sent], [bool(t.whitespace_) for t in sent])] = None
    return list(texts)


def _top_k(probs: numpy.ndarray, k: int) -> Tuple[numpy.ndarray, numpy.ndarray]:
    k = min(k, probs.shape[1])
    index = numpy.argpartition(-probs, k - 1, axis=1)[:, :k]
    top = numpy.take_along_axis(probs, index, axis=1)
    order = numpy.argsort(-top, axis=1)
    return numpy.take_along_axis(index, order, axis=1).astype("uint16"), numpy.take_along_axis(top, order, axis=1)


def _shard_path(output: Path, i: int) -> Path:
    return output / f"shard-{i:05d}.msgpack.gz"


def _write_shards(teacher: Union[str, Language], component: str, texts: List[Text], shards: List[int],
                  shard_size: int, top_k: int, output: str, batch_size: int) -> None:
    """Tag ``shards`` (indices into ``texts``' shards) with the teacher (a
    loaded pipeline, or its path in a worker process); one process's work."""
    from .loading import load_naming_files

    nlp = teacher if isinstance(teacher, Language) else load_naming_files(teacher, what="the teacher")
    member = TeacherMember(nlp, nlp.get_pipe(component))
    labels = tuple(member.pipe.labels)
    for i in shards:
        chunk = texts[i * shard_size:(i + 1) * shard_size]
        # batches of sentences of similar length: a transformer teacher pads
        # each batch to its longest sentence (several times the work on a
        # corpus order batch); stored back in corpus order
        order = sorted(range(len(chunk)), key=lambda j: len(chunk[j][0]))
        by_sentence: List[Tuple[numpy.ndarray, numpy.ndarray]] = [None] * len(chunk)  # type: ignore[list-item]
        for start in range(0, len(chunk), batch_size):
            batch = order[start:start + batch_size]
            for j, rows in zip(batch, member.probabilities([chunk[j] for j in batch], labels)):
                index, top = _top_k(rows, top_k)
                by_sentence[j] = (index, top.astype("float16"))
        indices = [index for index, _ in by_sentence]
        probs = [top for _, top in by_sentence]
        record = {
            "words": [list(words) for words, _ in chunk],
            "spaces": [list(spaces) for _, spaces in chunk],
            "indices": numpy.concatenate(indices) if indices else numpy.zeros((0, top_k), "uint16"),
            "probs": numpy.concatenate(probs) if probs else numpy.zeros((0, top_k), "float16"),
        }
        path = _shard_path(Path(output), i)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(gzip.compress(srsly.msgpack_dumps(record), compresslevel=6))
        tmp.replace(path)
        print(f"[teacher-outputs] {path.name}: {len(chunk):,} sentences", flush=True)


def write_teacher_outputs(teacher: Union[str, Path], output: Union[str, Path], corpora: Sequence[Union[str, Path]],
                          *, component: str = "lstm_tagger", top_k: int = 8, shard_size: int = 2000,
                          batch_size: int = 64, processes: int = 1) -> Dict:
    """Store ``teacher``'s top-``top_k`` tag distributions for every sentence
    of ``corpora`` in the directory ``output`` (see the module docstring).
    ``processes`` > 1 tags shards in that many processes (1 torch thread
    each). Returns the meta written."""
    from .loading import load_naming_files

    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    output = Path(output)
    fingerprint = teacher_fingerprint(teacher)
    nlp = load_naming_files(str(teacher), what="the teacher")
    if component not in nlp.pipe_names or not hasattr(nlp.get_pipe(component), "use_crf"):
        raise ValueError(f"The teacher {teacher} has no lstm_tagger component {component!r} (it has {nlp.pipe_names})")
    labels = list(nlp.get_pipe(component).labels)
    texts = read_texts(corpora)
    n_shards = (len(texts) + shard_size - 1) // shard_size
    meta = {"format": FORMAT, "teacher": str(teacher), "fingerprint": fingerprint, "component": component,
            "labels": labels, "top_k": min(top_k, len(labels)), "shard_size": shard_size, "n_shards": n_shards,
            "n_sentences": len(texts), "n_tokens": sum(len(words) for words, _ in texts),
            "corpora": [str(c) for c in corpora], "texts_sha256": _texts_digest(texts)}
    output.mkdir(parents=True, exist_ok=True)
    previous = srsly.read_json(output / META_FILE) if (output / META_FILE).exists() else None
    # the teacher's and the corpora's paths are a record, not the identity:
    # the same teacher (fingerprint) over the same sentences, moved, resumes
    if previous is None or _identity(previous) != _identity(meta):
        for stale in output.glob("shard-*.msgpack.gz"):
            stale.unlink()
    srsly.write_json(output / META_FILE, meta)
    todo = [i for i in range(n_shards) if not _shard_path(output, i).exists()]
    print(f"[teacher-outputs] {len(texts):,} sentences, {meta['n_tokens']:,} tokens; "
          f"{len(todo)} of {n_shards} shards to tag", flush=True)
    tail = (shard_size, top_k, str(output), batch_size)
    if processes == 1 or len(todo) <= 1:
        _write_shards(nlp, component, texts, todo, *tail)
    else:
        del nlp  # each worker loads its own
        context = multiprocessing.get_context("spawn")
        workers = [context.Process(target=_write_shards,
                                   args=(str(teacher), component, texts, todo[w::processes], *tail))
                   for w in range(processes)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        failed = [w.exitcode for w in workers if w.exitcode]
        if failed:
            raise RuntimeError(f"{len(failed)} teacher-outputs process(es) failed (exit {failed}); "
                               "run again to resume")
    return meta


def _texts_digest(texts: List[Text]) -> str:
    digest = hashlib.sha256()
    for words, spaces in texts:
        digest.update(srsly.json_dumps([words, spaces]).encode("utf8"))
    return digest.hexdigest()


def _identity(meta: Dict) -> Dict:
    """What makes two runs' outputs the same: all of meta but the paths."""
    return {key: value for key, value in meta.items() if key not in ("teacher", "corpora")}


def read_meta(path: Union[str, Path]) -> Dict:
    """The meta of stored teacher outputs, checked to be complete."""
    path = Path(path)
    if not (path / META_FILE).exists():
        raise ValueError(f"No teacher outputs at {path} (no {META_FILE}): make them with "
                         f"`python -m spacy_lstm_tagger teacher-outputs TEACHER {path} CORPUS...`")
    meta = srsly.read_json(path / META_FILE)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path / META_FILE} is not {FORMAT} (format {meta.get('format')!r})")
    missing = [i for i in range(meta["n_shards"]) if not _shard_path(path, i).exists()]
    if missing:
        raise ValueError(f"The teacher outputs at {path} are incomplete ({len(missing)} of {meta['n_shards']} "
                         f"shards missing): run teacher-outputs again to finish them")
    return meta


class StoredTeacher:
    """The teacher of a distillation, read from stored outputs."""

    def __init__(self, path: Union[str, Path], weight: float, *, teacher: Optional[Union[str, Path]] = None) -> None:
        """teacher: the pipeline the outputs are said to come from; when
        given, outputs made by another teacher (fingerprints differ) are
        refused."""
        self.path = Path(path)
        self.weight = weight
        self.meta = read_meta(self.path)
        if teacher is not None and teacher_fingerprint(teacher) != self.meta["fingerprint"]:
            raise ValueError(f"The teacher outputs at {self.path} were made by another teacher than {teacher} "
                             f"(fingerprint {self.meta['fingerprint'][:12]}): they are stale; make them again "
                             f"with `python -m spacy_lstm_tagger teacher-outputs {teacher} {self.path} CORPUS...`")
        self.labels: Tuple[str, ...] = tuple(self.meta["labels"])
        self._rows: Dict[Text, Tuple[numpy.ndarray, numpy.ndarray]] = {}
        for i in range(self.meta["n_shards"]):
            record = srsly.msgpack_loads(gzip.decompress(_shard_path(self.path, i).read_bytes()))
            start = 0
            for words, spaces in zip(record["words"], record["spaces"]):
                end = start + len(words)
                self._rows[text_key(words, spaces)] = (
                    record["indices"][start:end], record["probs"][start:end])
                start = end
        self._columns: Optional[numpy.ndarray] = None
        self._columns_for: Optional[Tuple[str, ...]] = None

    def __len__(self) -> int:
        return len(self._rows)

    def probabilities(self, docs: Iterable[Doc], student_labels: Tuple[str, ...]) -> List[Floats2d]:
        """Each doc's stored distributions as dense rows over the student's
        labels (the top-k mass renormalized; a tag the student lacks is dropped)."""
        if self._columns_for != student_labels:
            index = {label: i for i, label in enumerate(student_labels)}
            self._columns = numpy.array([index.get(label, -1) for label in self.labels] + [-1])
            self._columns_for = student_labels
        out = []
        for doc in docs:
            key = text_key([t.text for t in doc], [bool(t.whitespace_) for t in doc])
            if key not in self._rows:
                raise ValueError(f"A training sentence is not in the teacher outputs at {self.path} "
                                 f"({' '.join(key[0])[:80]!r}): they were made for another corpus; make them "
                                 "for this one (teacher-outputs TEACHER OUTPUT CORPUS...)")
            indices, probs = self._rows[key]
            rows = numpy.zeros((len(doc), len(student_labels) + 1), dtype="float32")
            columns = self._columns[indices.astype("int64")]
            numpy.put_along_axis(rows, numpy.where(columns >= 0, columns, len(student_labels)),
                                 probs.astype("float32"), axis=1)
            out.append(renormalize_rows(rows[:, :-1]))
        return out


@registry.callbacks("spacy_lstm_tagger.attach_stored_teacher.v1")
def make_attach_stored_teacher(outputs: Optional[str], teacher: Optional[str] = None, component: str = "lstm_tagger",
                               teacher_weight: float = 0.5):
    """``[initialize.after_init]`` callback: train ``component`` on
    ``teacher_weight`` x the stored teacher distributions at ``outputs`` +
    (1 - ``teacher_weight``) x the gold tags (sentences without gold tags,
    e.g. unlabeled text, learn from the teacher alone). ``teacher``
    (optional): the teacher pipeline, to refuse stale outputs."""
    if not 0.0 <= teacher_weight <= 1.0:
        raise ValueError(f"teacher_weight must be in [0, 1], got {teacher_weight}")

    def attach_stored_teacher(nlp):
        if not outputs:
            raise ValueError("Distillation from stored outputs needs paths.teacher_outputs: the directory "
                             "`python -m spacy_lstm_tagger teacher-outputs` wrote")
        student = nlp.get_pipe(component)
        if getattr(student, "use_crf", True):
            raise ValueError(f"Distillation needs an lstm_tagger without CRF as the student ({component!r})")
        stored = StoredTeacher(outputs, teacher_weight, teacher=teacher or None)
        if not set(stored.labels) & set(student.labels):
            raise ValueError(f"The teacher's tags ({len(stored.labels)}) share no label with the student's")
        student.teacher = stored
        return nlp

    return attach_stored_teacher

