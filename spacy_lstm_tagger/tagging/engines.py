"""Tag a corpus partition by partition, on one machine or on Dask.

* ``local``: one process (``n_process=1``), or ``nlp.pipe(n_process=N)``;
  the component uses one torch thread in each worker process.
* ``dask``: one task per partition on a ``distributed`` cluster (a
  ``LocalCluster`` of single-threaded worker processes, or any cluster given
  its scheduler address). Each worker loads the model once (a worker plugin
  sets torch to one thread and preloads it; tasks use a per-process cache).

Both engines write every partition with the same atomic writer, so they
produce identical files, a re-run skips the partitions already written, and
a killed worker (whose tasks Dask reschedules) loses and duplicates nothing.
Input files, the model and the output directory must be at the same paths
on every worker (a shared filesystem) when the cluster spans machines.
"""
import json
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc

from ..loading import check_model as _check_model, enable_probabilities, extension_attrs, load_pipeline
from .readers import Partition, Record, plan_partitions, read_partition
from .writers import count_words, is_done, parse_formats, remove_stale_tmp_files, write_partition

ENGINES = ("local", "dask")
MANIFEST = "manifest.json"


class OutputMismatchError(ValueError):
    """The output directory holds partitions of a different run."""


class TaggingError(RuntimeError):
    """A partition failed to tag."""


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
    skipped: List[str] = field(default_factory=list)

    @property
    def docs_per_s(self) -> float:
        """Documents per second of the whole run (setup included)."""
        return self.n_docs / self.seconds if self.seconds else 0.0

    @property
    def words_per_s(self) -> float:
        return self.n_words / self.seconds if self.seconds else 0.0

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        data.pop("skipped")
        data.update(docs_per_s=round(self.docs_per_s, 1), words_per_s=round(self.words_per_s, 1))
        return data


# --- tagging one partition (shared by every engine) --------------------------

_NLP_CACHE: Dict[Tuple[str, bool], Language] = {}
_NLP_LOCK = threading.Lock()


def load_model(model: str, probabilities: bool = False) -> Language:
    """``spacy.load(model)``, once per process (a pipeline without a tagger
    is an error); ``probabilities`` turns on ``store_probabilities``."""
    with _NLP_LOCK:
        if (model, probabilities) not in _NLP_CACHE:
            nlp = load_pipeline(model)
            if probabilities:
                enable_probabilities(nlp, model)
            _NLP_CACHE[(model, probabilities)] = nlp
        return _NLP_CACHE[(model, probabilities)]


def model_id(model: Union[str, Path]) -> str:
    """An existing path → its absolute path (workers may run elsewhere); a package name stays."""
    path = Path(model)
    return str(path.resolve()) if path.exists() else str(model)


def check_model(model: str) -> None:
    """Fail before any work starts if the model is neither a pipeline directory nor a package."""
    _check_model(model)


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
    """Tag ``records``; ``on_batch(n)`` is called after every batch (progress)."""
    inputs = (record_input(nlp, r) for r in records)
    docs = []
    for doc, r in zip(nlp.pipe(inputs, batch_size=batch_size), records):
        docs.append(attach_info(doc, r))
        if on_batch is not None and len(docs) % batch_size == 0:
            on_batch(batch_size)
    if on_batch is not None and len(docs) % batch_size:
        on_batch(len(docs) % batch_size)
    return docs


def tag_partition(partition: Partition, model: str, output: str, formats: Sequence[str],
                  batch_size: int, probabilities: bool = False,
                  on_batch: Optional[Callable[[int], Any]] = None) -> Dict[str, Any]:
    """Tag one partition and write it atomically (the Dask task). A partition
    whose files already exist (e.g. a rescheduled task) is not redone."""
    result = {"index": partition.index, "name": partition.name, "n_docs": partition.n_docs,
              "n_words": 0, "status": "exists", "pid": os.getpid()}
    if is_done(output, partition.name, formats):
        result["n_words"] = count_words(output, partition.name, formats)
        return result
    nlp = load_model(model, probabilities)
    docs = tag_records(nlp, read_partition(partition), batch_size, on_batch)
    write_partition(docs, output, partition.name, formats, extension_attrs(nlp))
    result.update(n_words=sum(len(d) for d in docs), status="written")
    return result


# --- the run ------------------------------------------------------------------

def check_manifest(output: Path, manifest: Dict[str, Any]) -> None:
    """Write the run's manifest, or check that an existing one describes the
    same model, inputs and partitioning (otherwise skipping would be wrong)."""
    path = output / MANIFEST
    # (a manifest without any finished partition, e.g. from a run whose model
    # failed to load, is simply replaced)
    if path.exists() and any(output.glob("part-*")):
        old = json.loads(path.read_text(encoding="utf8"))
        for key in ("model", "partition_size", "conllu_unit", "inputs", "probabilities"):
            if old.get(key, False if key == "probabilities" else None) != manifest[key]:
                raise OutputMismatchError(
                    f"{output} holds the output of a different run ({key}: {old.get(key)!r} there, "
                    f"{manifest[key]!r} now): re-run with the same arguments to resume, or use a new --output"
                )
        return
    tmp = path.with_name(f".{MANIFEST}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf8")
    os.replace(tmp, path)


def _progress(total: int, progress: Optional[bool], desc: str):
    from tqdm import tqdm

    return tqdm(total=total, unit="doc", desc=desc, dynamic_ncols=True, smoothing=0.1,
                disable=None if progress is None else not progress)


def tag_corpus(
    model: Union[str, Path],
    inputs: Sequence[Union[str, Path]],
    output: Union[str, Path],
    *,
    formats: Union[str, Sequence[str]] = "spacy",
    input_format: str = "auto",
    conllu_unit: str = "sentence",
    batch_size: int = 256,
    partition_size: int = 5000,
    engine: str = "local",
    n_process: int = 1,
    scheduler: Optional[str] = None,
    n_workers: Optional[int] = None,
    client: Any = None,
    threads: Optional[int] = None,
    progress: Optional[bool] = None,
    probabilities: bool = False,
) -> TagStats:
    """Tag ``inputs`` with ``model`` into ``output``/part-NNNNN.{spacy,jsonl}.

    engine "local": ``n_process`` processes (``nlp.pipe``); ``threads`` sets
    torch's threads in the single process (default: torch's default).
    engine "dask": ``client`` (an existing ``distributed.Client``), else
    ``scheduler`` (an address), else a new ``LocalCluster`` of ``n_workers``
    single-threaded processes (default: one per CPU); ``threads`` torch
    threads per worker (default 1). ``probabilities``: every lstm_tagger
    stores its tag probabilities (in the DocBin's user data and the JSONL).
    """
    if engine not in ENGINES:
        raise ValueError(f"Unknown engine {engine!r}: expected {' or '.join(ENGINES)}")
    if batch_size < 1 or n_process < 1:
        raise ValueError("batch_size and n_process must be at least 1")
    if engine == "dask" and n_process != 1:
        raise ValueError("--n-process is for the local engine; with Dask use --n-workers (one process each)")
    formats = parse_formats(formats)
    model = model_id(model)
    if engine == "local" or (client is None and scheduler is None):
        check_model(model)
    output = Path(output)
    partitions, described = plan_partitions(inputs, partition_size, input_format, conllu_unit)
    preload_seconds = 0.0
    if engine == "local":  # a model that fails to load fails before anything is written
        preload_start = time.perf_counter()
        load_model(model, probabilities)
        preload_seconds = time.perf_counter() - preload_start
    output.mkdir(parents=True, exist_ok=True)
    for item in described:
        item["resolved"] = str(Path(item["path"]).resolve())
    check_manifest(output, {
        "model": model, "partition_size": partition_size, "conllu_unit": conllu_unit, "probabilities": probabilities,
        "inputs": [{k: d[k] for k in ("resolved", "format", "bytes", "n_docs")} for d in described],
        "partitions": [{"name": p.name, "source": p.source, "first_doc": p.first_doc, "n_docs": p.n_docs,
                        "line": p.line} for p in partitions],
    })
    stats = TagStats(engine=engine if engine == "dask" else f"local(n_process={n_process})", output=str(output))
    stats.removed_tmp_files = remove_stale_tmp_files(output)
    stats.n_partitions = len(partitions)
    pending = [p for p in partitions if not is_done(output, p.name, formats)]
    pending_names = {p.name for p in pending}
    stats.skipped = [p.name for p in partitions if p.name not in pending_names]
    stats.n_skipped = len(stats.skipped)
    stats.n_submitted = len(pending)
    start = time.perf_counter()
    if pending:
        if engine == "local":
            _run_local(stats, pending, model, output, formats, batch_size, n_process, threads, progress,
                       probabilities)
        else:
            _run_dask(stats, pending, model, output, formats, batch_size, client, scheduler, n_workers,
                      threads, progress, probabilities=probabilities)
    stats.setup_seconds += preload_seconds
    stats.seconds = time.perf_counter() - start + preload_seconds
    stats.removed_tmp_files += remove_stale_tmp_files(output)
    return stats


def _run_local(stats: TagStats, pending: List[Partition], model: str, output: Path, formats: Sequence[str],
               batch_size: int, n_process: int, threads: Optional[int], progress: Optional[bool],
               probabilities: bool = False) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)
    setup_start = time.perf_counter()
    nlp = load_model(model, probabilities)
    attrs = extension_attrs(nlp)
    stats.setup_seconds = time.perf_counter() - setup_start
    stats.workers = n_process
    with _progress(sum(p.n_docs for p in pending), progress, "tagging") as bar:
        if n_process == 1:
            for part in pending:
                result = tag_partition(part, model, str(output), formats, batch_size, probabilities,
                                       on_batch=bar.update)
                stats.n_docs += result["n_docs"]
                stats.n_words += result["n_words"]
                if result["status"] == "exists":
                    bar.update(result["n_docs"])
            return
        # One pool of processes for the whole run; Docs come back in order and
        # are regrouped into their partitions.
        def inputs() -> Iterator[Tuple[Union[str, Doc], Tuple[Partition, Record]]]:
            for part in pending:
                for record in read_partition(part):
                    yield record_input(nlp, record), (part, record)

        buffer: List[Doc] = []
        for doc, (part, record) in nlp.pipe(inputs(), as_tuples=True, batch_size=batch_size, n_process=n_process):
            buffer.append(attach_info(doc, record))
            bar.update(1)
            if len(buffer) == part.n_docs:
                write_partition(buffer, output, part.name, formats, attrs)
                stats.n_docs += len(buffer)
                stats.n_words += sum(len(d) for d in buffer)
                buffer = []


def _run_dask(*args, **kwargs) -> None:
    from .dask_engine import run_dask  # needs the optional `distributed` package

    run_dask(*args, **kwargs)
