"""The Dask ``distributed`` engine: one task per partition (needs the
``scale`` extra: ``pip install "spacy-lstm-tagger[scale]"``)."""
import os
import time
import uuid
from functools import partial
from pathlib import Path
from typing import List, Optional, Sequence

from distributed import Client, LocalCluster, WorkerPlugin, as_completed

from .engines import TaggingError, TagStats, _progress, load_model, tag_partition
from .readers import Partition


class TaggerWorkerPlugin(WorkerPlugin):
    """On every worker (also one that joins or restarts later): use ``threads``
    torch threads and load the model once."""

    def __init__(self, model: str, threads: int = 1, probabilities: bool = False):
        self.model = model
        self.threads = threads
        self.probabilities = probabilities
        self.name = f"spacy-lstm-tagger:{model}"

    def setup(self, worker) -> None:
        import torch

        torch.set_num_threads(self.threads)
        try:
            load_model(self.model, self.probabilities)
        except Exception:
            pass  # the first task raises the error again, with a traceback the client sees


def start_local_cluster(n_workers: Optional[int] = None) -> LocalCluster:
    """Single-threaded worker processes, one per core by default (no oversubscription)."""
    return LocalCluster(n_workers=n_workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                        dashboard_address=None)


def run_dask(stats: TagStats, pending: List[Partition], model: str, output: Path, formats: Sequence[str],
             batch_size: int, client: Optional[Client], scheduler: Optional[str], n_workers: Optional[int],
             threads: Optional[int], progress: Optional[bool], probabilities: bool = False) -> None:
    own_cluster = own_client = None
    setup_start = time.perf_counter()
    try:
        if client is None:
            if scheduler:
                client = own_client = Client(scheduler)
            else:
                own_cluster = start_local_cluster(n_workers)
                client = own_client = Client(own_cluster)
        client.register_plugin(TaggerWorkerPlugin(model, threads or 1, probabilities))
        stats.workers = len(client.nthreads())
        stats.setup_seconds = time.perf_counter() - setup_start
        token = uuid.uuid4().hex[:8]
        # (a partial: client.map has its own batch_size argument)
        task = partial(tag_partition, model=model, output=str(output), formats=list(formats), batch_size=batch_size,
                       probabilities=probabilities)
        futures = client.map(task, pending, pure=False, key=[f"tag-{p.name}-{token}" for p in pending])
        names = {f.key: p.name for f, p in zip(futures, pending)}
        desc = f"tagging (dask, {stats.workers} workers)"
        with _progress(sum(p.n_docs for p in pending), progress, desc) as bar:
            try:
                for future in as_completed(futures):
                    try:
                        result = future.result()
                    except Exception as err:
                        raise TaggingError(
                            f"Partition {names[future.key]} failed: {type(err).__name__}: {err}. Finished "
                            "partitions are kept: fix the cause and re-run the same command to resume."
                        ) from err
                    stats.n_docs += result["n_docs"]
                    stats.n_words += result["n_words"]
                    bar.update(result["n_docs"])
            finally:
                client.cancel([f for f in futures if not f.done()])
    finally:
        if own_client is not None:
            own_client.close()
        if own_cluster is not None:
            own_cluster.close()
