"""What every engine shares: the run's options, its statistics and errors, and
tagging one partition (load the model once per process, tag, write atomically).

The engines (``engines``, ``pool``, ``dask_engine``) import this module; it
imports none of them, so there is no import cycle between the engines.
"""
import os
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, ClassVar, Dict, List, Optional, Sequence, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc

from ..loading import enable_probabilities, extension_attrs, load_pipeline
from .checksums import describe_files
from .readers import Partition, Record, read_partition
from .sentences import apply_sentence_mode
from .writers import count_words, is_done, partition_paths, write_partition


class OutputMismatchError(ValueError):
    """The output directory holds partitions of a different run."""


class OutputError(ValueError):
    """The output directory can't be used (a file, not writable)."""


class TaggingError(RuntimeError):
    """A partition failed to tag."""


class Interrupted(TaggingError):
    """The run was stopped by a signal (SIGINT, SIGTERM)."""


@dataclass(frozen=True)
class TagJob:
    """What a worker needs to tag any partition of the run (picklable: it
    travels to worker processes and Dask tasks)."""

    model: str  # absolute path or package name
    output: str
    formats: Tuple[str, ...]
    batch_size: int
    threads: Optional[int] = None  # torch threads of a worker process (None: 1)
    probabilities: bool = False  # turn on store_probabilities in every lstm_tagger
    sentences: str = "sentencizer"  # what a text line becomes (sentences.py)


@dataclass
class TagStats:
    engine: str
    output: str
    n_partitions: int = 0
    n_skipped: int = 0
    n_submitted: int = 0
    n_docs: int = 0
    n_words: int = 0
    seconds: float = 0.0
    setup_seconds: float = 0.0  # part of ``seconds``: loading the model, starting the cluster
    workers: Optional[int] = None
    removed_tmp_files: int = 0
    n_redone: int = 0  # partitions whose files were there but not the ones this run wrote
    skipped: List[str] = field(default_factory=list)
    redone: List[str] = field(default_factory=list)  # why, per partition
    on_finished: ClassVar[Optional[Callable[[Dict[str, Any]], None]]] = None  # (set per run: not a field)

    @property
    def docs_per_s(self) -> float:
        """Documents per second of the whole run (setup included)."""
        return self.n_docs / self.seconds if self.seconds else 0.0

    @property
    def words_per_s(self) -> float:
        return self.n_words / self.seconds if self.seconds else 0.0

    def add(self, result: Dict[str, Any]) -> None:
        """Count one partition's result (from :func:`tag_partition`), and
        hand it to ``on_finished`` (which records its files' checksums)."""
        self.n_docs += result["n_docs"]
        self.n_words += result["n_words"]
        if self.on_finished is not None:
            self.on_finished(result)

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        data.pop("skipped")
        data.pop("redone")
        data.update(docs_per_s=round(self.docs_per_s, 1), words_per_s=round(self.words_per_s, 1))
        return data


_NLP_CACHE: Dict[Tuple[str, bool, str], Language] = {}
_NLP_LOCK = threading.Lock()


def load_model(model: str, probabilities: bool = False, sentences: str = "sentencizer") -> Language:
    """``spacy.load(model)``, once per process (a pipeline without a tagger
    is an error); ``probabilities`` turns on ``store_probabilities``;
    ``sentences``: "sentencizer" adds spaCy's sentencizer when no component
    sets sentence boundaries, "line" leaves a text line one sentence."""
    key = (model, probabilities, sentences)
    with _NLP_LOCK:
        if key not in _NLP_CACHE:
            nlp = load_pipeline(model)
            if probabilities:
                enable_probabilities(nlp, model)
            _NLP_CACHE[key] = apply_sentence_mode(nlp, sentences)
        return _NLP_CACHE[key]


def record_input(nlp: Language, record: Record) -> Union[str, Doc]:
    if record.text is not None:
        return record.text
    return Doc(nlp.vocab, words=record.words, spaces=record.spaces, sent_starts=record.sent_starts)


def attach_info(doc: Doc, record: Record) -> Doc:
    """Keep where the Doc came from in ``doc.user_data["input"]`` (stored in the DocBin)."""
    info: Dict[str, Any] = {"source": record.source, "line": record.line}
    if record.text is None:
        info.update(record.meta)  # CoNLL-U sent_id / newdoc_id
    elif record.meta:
        info["meta"] = record.meta
    doc.user_data["input"] = info
    return doc


def tag_records(nlp: Language, records: Sequence[Record], batch_size: int,
                on_batch: Optional[Callable[[int], Any]] = None) -> List[Doc]:
    """Tag one partition's records; ``on_batch(n)`` is called after every
    batch (progress). Batches never span two partitions, so a partition's
    Docs are the same whichever engine or process tags it."""
    inputs = (record_input(nlp, r) for r in records)
    docs = []
    for doc, r in zip(nlp.pipe(inputs, batch_size=batch_size), records):
        docs.append(attach_info(doc, r))
        if on_batch is not None and len(docs) % batch_size == 0:
            on_batch(batch_size)
    if on_batch is not None and len(docs) % batch_size:
        on_batch(len(docs) % batch_size)
    return docs


def tag_partition(partition: Partition, job: TagJob,
                  on_batch: Optional[Callable[[int], Any]] = None) -> Dict[str, Any]:
    """Tag one partition and write it atomically (the unit of work of every
    engine). A partition whose files already exist (e.g. a rescheduled Dask
    task of this run) is not redone. The result gives each file's size and
    sha256 (``files``): what the run's record of finished partitions keeps."""
    result = {"index": partition.index, "name": partition.name, "n_docs": partition.n_docs,
              "n_words": 0, "status": "exists", "pid": os.getpid()}
    if is_done(job.output, partition.name, job.formats):
        result["n_words"] = count_words(job.output, partition.name, job.formats)
        result["files"] = describe_files(partition_paths(job.output, partition.name, job.formats))
        return result
    nlp = load_model(job.model, job.probabilities, job.sentences)
    docs = tag_records(nlp, read_partition(partition), job.batch_size, on_batch)
    written = write_partition(docs, job.output, partition.name, job.formats, extension_attrs(nlp))
    result.update(n_words=sum(len(d) for d in docs), status="written", files=describe_files(written))
    return result


def progress_bar(total: int, progress: Optional[bool], desc: str):
    from tqdm import tqdm

    return tqdm(total=total, unit="doc", desc=desc, dynamic_ncols=True, smoothing=0.1,
                disable=None if progress is None else not progress)
