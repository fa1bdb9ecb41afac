"""The Dask ``distributed`` engine: one task per partition (needs the
``scale`` extra: ``pip install "spacy-lstm-tagger[scale]"``)."""
import os
import threading
import time
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any, Dict, List, Optional

from distributed import Client, LocalCluster, WorkerPlugin, as_completed, get_worker

from .core import TaggingError, TagJob, TagStats, load_model, tag_partition
from .core import progress_bar as _progress  # (a module attribute: tests replace it)
from .readers import Partition


class TaggerWorkerPlugin(WorkerPlugin):
    """On every worker (also one that joins or restarts later): use ``threads``
    torch threads and load the model once."""

    def __init__(self, model: str, threads: int = 1, probabilities: bool = False, sentences: str = "sentencizer"):
        self.model = model
        self.threads = threads
        self.probabilities = probabilities
        self.sentences = sentences
        self.name = f"spacy-lstm-tagger:{model}"

    def setup(self, worker) -> None:
        import torch

        torch.set_num_threads(self.threads)
        try:
            load_model(self.model, self.probabilities, self.sentences)
        except Exception:
            pass  # the first task raises the error again, with a traceback the client sees


def tag_partition_reporting(partition: Partition, topic: str, job: TagJob) -> Dict[str, Any]:
    """The Dask task: :func:`tag_partition`, telling the client after every
    batch how many of the partition's docs are tagged (an event on
    ``topic``), so the progress bar moves per batch, not per partition."""
    worker = get_worker()
    done = 0

    def on_batch(n: int) -> None:
        nonlocal done
        done += n
        worker.log_event(topic, {"name": partition.name, "done": done})

    return tag_partition(partition, job, on_batch=on_batch)


class _BatchProgress:
    """Client side of :func:`tag_partition_reporting`: moves the bar by each
    partition's progress, counting a partition at most once (a rescheduled
    task starts again from 0: only what goes beyond the best count so far)."""

    def __init__(self, bar) -> None:
        self.bar = bar
        self.counted: Dict[str, int] = {}
        self.finished: set = set()
        self.lock = threading.Lock()

    def on_event(self, event) -> None:
        data = event[1]
        self._advance(data["name"], data["done"])

    def finish(self, name: str, n_docs: int) -> None:
        self._advance(name, n_docs)
        with self.lock:
            self.finished.add(name)

    def _advance(self, name: str, done: int) -> None:
        with self.lock:
            if name in self.finished or done <= self.counted.get(name, 0):
                return
            self.bar.update(done - self.counted.get(name, 0))
            self.counted[name] = done


def start_local_cluster(n_workers: Optional[int] = None) -> LocalCluster:
    """Single-threaded worker processes, one per core by default (no oversubscription)."""
    return LocalCluster(n_workers=n_workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                        dashboard_address=None)


@dataclass
class DaskOptions:
    """Where to run: an existing ``client``, else a ``scheduler`` address,
    else a new ``LocalCluster`` of ``n_workers`` processes."""

    client: Any = None  # a distributed.Client
    scheduler: Optional[str] = None
    n_workers: Optional[int] = None


def run_dask(stats: TagStats, pending: List[Partition], job: TagJob, options: DaskOptions,
             progress: Optional[bool]) -> None:
    """One task per partition; workers write their partitions themselves."""
    client = options.client
    own_cluster = own_client = None
    setup_start = time.perf_counter()
    try:
        if client is None:
            if options.scheduler:
                client = own_client = Client(options.scheduler)
            else:
                own_cluster = start_local_cluster(options.n_workers)
                client = own_client = Client(own_cluster)
        client.register_plugin(TaggerWorkerPlugin(job.model, job.threads or 1, job.probabilities,
                                                  job.sentences))
        stats.workers = len(client.nthreads())
        stats.setup_seconds = time.perf_counter() - setup_start
        token = uuid.uuid4().hex[:8]
        topic = f"spacy-lstm-tagger-progress-{token}"
        # (a partial: client.map has its own batch_size argument)
        task = partial(tag_partition_reporting, topic=topic, job=job)
        names = {f"tag-{p.name}-{token}": p.name for p in pending}
        desc = f"tagging (dask, {stats.workers} workers)"
        with _progress(sum(p.n_docs for p in pending), progress, desc) as bar:
            batches = _BatchProgress(bar)
            client.subscribe_topic(topic, batches.on_event)
            futures = client.map(task, pending, pure=False, key=list(names))
            try:
                for future in as_completed(futures):
                    try:
                        result = future.result()
                    except Exception as err:
                        raise TaggingError(
                            f"Partition {names[future.key]} failed: {type(err).__name__}: {err}. Finished "
                            "partitions are kept: fix the cause and re-run the same command to resume."
                        ) from err
                    stats.add(result)
                    batches.finish(result["name"], result["n_docs"])
            finally:
                client.cancel([f for f in futures if not f.done()])
                client.unsubscribe_topic(topic)
    finally:
        if own_client is not None:
            own_client.close()
        if own_cluster is not None:
            own_cluster.close()
