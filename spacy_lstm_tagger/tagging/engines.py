"""Tag a corpus partition by partition, on one machine or on Dask.

* ``local``: one process (``n_process=1``), or a pool of ``N`` worker
  processes of our own (``pool.py``), one torch thread each.
* ``dask``: one task per partition on a ``distributed`` cluster (a
  ``LocalCluster`` of single-threaded worker processes, or any cluster given
  its scheduler address). Each worker loads the model once (a worker plugin
  sets torch to one thread and preloads it; tasks use a per-process cache).

Every engine tags a partition in one piece (batches never span two
partitions) and writes it with the same atomic writer, so they produce
identical files, a re-run skips the partitions already written, and
a killed worker (whose tasks Dask reschedules) loses and duplicates nothing.
Input files, the model and the output directory must be at the same paths
on every worker (a shared filesystem) when the cluster spans machines.
"""
import signal
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Union

from ..loading import check_model
from .core import (
    Interrupted, OutputError, OutputMismatchError, TaggingError, TagJob, TagStats, load_model, tag_partition,
)
from .core import progress_bar as _progress  # (a module attribute: tests replace it)
from .manifest import FinishedLog, check_finished, model_fingerprint, prepare_output, run_id, write_or_verify_manifest
from .readers import Partition, plan_partitions
from .sentences import SENTENCE_MODES
from .writers import is_done, parse_formats, partition_paths, remove_stale_tmp_files

__all__ = ["ENGINES", "Interrupted", "OutputError", "OutputMismatchError", "TaggingError", "TagJob", "TagStats",
           "tag_corpus", "tag_partition"]

ENGINES = ("local", "dask")
SCHEDULER_CONNECT_TIMEOUT = 5.0  # seconds to reach a --scheduler before giving up


def model_id(model: Union[str, Path]) -> str:
    """An existing path → its absolute path (workers may run elsewhere); a package name stays."""
    path = Path(model)
    return str(path.resolve()) if path.exists() else str(model)


def _fingerprint(model: str) -> Optional[str]:
    """The model's fingerprint, or None when only the workers can see it
    (a ``--scheduler`` run whose model path exists on the workers only)."""
    from spacy.util import is_package

    return model_fingerprint(model) if Path(model).exists() or is_package(model) else None


def _at_least_one(**values: Optional[int]) -> None:
    for name, value in values.items():
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def check_scheduler(address: str, timeout: float = SCHEDULER_CONNECT_TIMEOUT) -> None:
    """Fail fast, naming the address, if nothing listens there (Dask's own
    client would retry for its connect timeout, 30 s by default)."""
    scheme, sep, rest = address.rpartition("://")
    if (scheme if sep else "tcp") not in ("tcp", "tls", "ws", "wss"):
        return  # (inproc://, ucx://...: left to Dask)
    rest = rest.split("/")[0]
    host, colon, port = rest.rpartition(":")
    if not colon or host.endswith(":") or "]" in port:  # no port given (or a bare IPv6 address)
        host, port = rest, "8786"
    try:
        port_number = int(port)
    except ValueError:
        raise ValueError(f"Bad --scheduler address {address!r}: expected tcp://HOST:PORT") from None
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", port_number), timeout=timeout):
            pass
    except OSError as err:
        raise TaggingError(f"Can't reach the Dask scheduler at {address}: {err.strerror or err}") from None


class _Signalled(BaseException):
    """Raised by the signal handler; a BaseException (like KeyboardInterrupt)
    so that no ``except Exception`` on the way swallows it."""


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`_Signalled` (in the main thread, the
    only one where handlers can be set), so the engines clean up on the way
    out: workers terminated and joined, temporary files removed. Further
    signals are ignored while that runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGINT, signal.SIGTERM)

    def handler(signum: int, frame: Any) -> None:
        for sig in signals:
            signal.signal(sig, signal.SIG_IGN)
        raise _Signalled(f"Interrupted by {signal.Signals(signum).name}")

    previous = {sig: signal.getsignal(sig) for sig in signals}
    for sig in signals:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


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
    sentences: str = "sentencizer",
) -> TagStats:
    """Tag ``inputs`` with ``model`` into ``output``/part-NNNNN.{spacy,jsonl}.

    engine "local": ``n_process`` processes (a pool of our own when > 1);
    ``threads`` sets torch's threads in the single process or in each worker
    process (default: the lstm_tagger's own choice, 1 per process).
    engine "dask": ``client`` (an existing ``distributed.Client``), else
    ``scheduler`` (an address), else a new ``LocalCluster`` of ``n_workers``
    single-threaded processes (default: one per CPU); ``threads`` torch
    threads per worker (default 1). ``probabilities``: every lstm_tagger
    stores its tag probabilities (in the DocBin's user data and the JSONL).
    ``sentences``: "sentencizer" splits a text line into sentences (spaCy's
    sentencizer, when no component of the pipeline sets them), "line" keeps
    it one sentence (``sentences.py``).

    Every check (arguments, inputs, model, output directory, scheduler)
    runs before anything is written.
    """
    if engine not in ENGINES:
        raise ValueError(f"Unknown engine {engine!r}: expected {' or '.join(ENGINES)}")
    _at_least_one(batch_size=batch_size, n_process=n_process, partition_size=partition_size, threads=threads,
                  n_workers=n_workers)
    if engine == "dask" and n_process != 1:
        raise ValueError("--n-process is for the local engine; with Dask use --n-workers (one process each)")
    formats = parse_formats(formats)
    if sentences not in SENTENCE_MODES:
        raise ValueError(f"Unknown --sentences {sentences!r}: expected {' or '.join(SENTENCE_MODES)}")
    model = model_id(model)
    if engine == "local" or (client is None and scheduler is None):
        check_model(model)
    if engine == "dask" and client is None and scheduler:
        check_scheduler(scheduler)
    output = Path(output)
    partitions, described = plan_partitions(inputs, partition_size, input_format, conllu_unit)
    preload_seconds = 0.0
    if engine == "local":  # a model that fails to load fails before anything is written
        preload_start = time.perf_counter()
        load_model(model, probabilities, sentences)  # (--n-process workers inherit it: they fork)
        preload_seconds = time.perf_counter() - preload_start
    manifest = {
        "model": model, "model_sha256": _fingerprint(model), "partition_size": partition_size,
        "conllu_unit": conllu_unit, "probabilities": probabilities, "sentences": sentences,
        "inputs": [{"resolved": str(Path(d["path"]).resolve()), **{k: d[k] for k in ("format", "bytes", "n_docs",
                                                                                       "sha256")}}
                   for d in described],
        "partitions": [{"name": p.name, "source": p.source, "first_doc": p.first_doc, "n_docs": p.n_docs,
                        "line": p.line, "sha256": p.sha256} for p in partitions],
    }
    prepare_output(output)
    fresh = write_or_verify_manifest(output, manifest)
    finished = FinishedLog(output, run_id(manifest))
    if fresh:  # (no partition there is this run's: its record starts empty)
        finished.reset()
    stats = TagStats(engine=engine if engine == "dask" else f"local(n_process={n_process})", output=str(output))
    stats.removed_tmp_files = remove_stale_tmp_files(output)
    stats.n_partitions = len(partitions)
    pending = _pending(stats, partitions, output, formats, finished, fresh)
    stats.on_finished = finished.record
    stats.n_submitted = len(pending)
    job = TagJob(model=model, output=str(output), formats=formats, batch_size=batch_size, threads=threads,
                 probabilities=probabilities, sentences=sentences)
    start = time.perf_counter()
    try:
        with _signals_interrupt():
            if pending and engine == "local":
                _run_local(stats, pending, job, n_process, progress)
            elif pending:
                from .dask_engine import DaskOptions, run_dask  # needs the optional `distributed` package

                run_dask(stats, pending, job, DaskOptions(client=client, scheduler=scheduler, n_workers=n_workers),
                         progress)
    except _Signalled as err:
        done = sum(is_done(output, p.name, formats) for p in partitions)
        raise Interrupted(
            f"{err}: {done} of {len(partitions)} partitions are written (each complete). Re-run the same "
            "command to resume."
        ) from None
    finally:  # (the workers are stopped by now: what is left of a killed writer goes)
        stats.removed_tmp_files += remove_stale_tmp_files(output)
    stats.setup_seconds += preload_seconds
    stats.seconds = time.perf_counter() - start + preload_seconds
    return stats


def _pending(stats: TagStats, partitions: List[Partition], output: Path, formats: Sequence[str],
             finished: FinishedLog, fresh: bool) -> List[Partition]:
    """The partitions to tag: those not finished, and those whose files are
    not byte for byte what this run recorded writing (their files are
    removed first, and why is kept in ``stats.redone``). The others are
    skipped."""
    recorded = finished.load()
    pending = []
    for part in partitions:
        why = check_finished(output, part.name, formats, recorded.get(part.name))
        if why is None:
            stats.skipped.append(part.name)
            continue
        if why:
            if fresh:
                why = "its files were there before this run's manifest.json, so nothing says which model wrote them"
            for path in partition_paths(output, part.name, formats):
                path.unlink(missing_ok=True)
            stats.redone.append(f"{part.name}: {why}")
        pending.append(part)
    stats.n_skipped, stats.n_redone = len(stats.skipped), len(stats.redone)
    return pending


def _run_local(stats: TagStats, pending: List[Partition], job: TagJob, n_process: int,
               progress: Optional[bool]) -> None:
    with _progress(sum(p.n_docs for p in pending), progress, "tagging") as bar:
        if n_process > 1:
            from .pool import run_pool

            run_pool(stats, pending, job, n_process, bar)
            return
        if job.threads:
            import torch

            torch.set_num_threads(job.threads)
        stats.workers = 1
        for part in pending:
            result = tag_partition(part, job, on_batch=bar.update)
            stats.add(result)
            if result["status"] == "exists":
                bar.update(result["n_docs"])
