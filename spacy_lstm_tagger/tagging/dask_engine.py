"""The Dask ``distributed`` engine: one task per partition (needs the
``scale`` extra: ``pip install "spacy-lstm-tagger[scale]"``)."""
import os
import time
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any, List, Optional

from distributed import Client, LocalCluster, WorkerPlugin, as_completed

from .core import TaggingError, TagJob, TagStats, load_model, progress_bar, tag_partition
from .readers import Partition


class TaggerWorkerPlugin(WorkerPlugin):
    """On every worker (also one that joins or restarts later): use ``threads``
    torch threads and load the model once."""

    def __init__(self, model: str, threads: int = 1):
        self.model = model
        self.threads = threads
        self.name = f"spacy-lstm-tagger:{model}"

    def setup(self, worker) -> None:
        import torch

        torch.set_num_threads(self.threads)
        try:
            load_model(self.model)
        except Exception:
            pass  # the first task raises the error again, with a traceback the client sees


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
        client.register_plugin(TaggerWorkerPlugin(job.model, job.threads or 1))
        stats.workers = len(client.nthreads())
        stats.setup_seconds = time.perf_counter() - setup_start
        token = uuid.uuid4().hex[:8]
        # (a partial: client.map has its own batch_size argument)
        task = partial(tag_partition, job=job)
        futures = client.map(task, pending, pure=False, key=[f"tag-{p.name}-{token}" for p in pending])
        names = {f.key: p.name for f, p in zip(futures, pending)}
        desc = f"tagging (dask, {stats.workers} workers)"
        with progress_bar(sum(p.n_docs for p in pending), progress, desc) as bar:
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
                    bar.update(result["n_docs"])
            finally:
                client.cancel([f for f in futures if not f.done()])
    finally:
        if own_client is not None:
            own_client.close()
        if own_cluster is not None:
            own_cluster.close()
