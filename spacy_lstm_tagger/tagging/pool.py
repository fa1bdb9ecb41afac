"""The local multi-process engine: a pool of worker processes, one partition
per task, each worker writing its own partitions.

Why not ``nlp.pipe(n_process=N)``: it streams every Doc back to the main
process (a msgpack round trip per Doc), its batches run across partition
boundaries (so a partition's numbers depend on its neighbours), and on an
interrupt its workers stay blocked on a pipe and the main process hangs in
``Process.join``. Here the main process only hands out partitions; on an
error or a signal it terminates and joins the workers, and a worker whose
main process dies (even by SIGKILL) exits on its own within a second.
"""
import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from typing import Any, List, Optional

from .core import TaggingError, TagJob, TagStats, load_model, tag_partition
from .readers import Partition

PARENT_POLL_SECONDS = 0.2  # how often a worker checks that its main process is alive
JOIN_TIMEOUT_SECONDS = 5.0  # after SIGTERM, before SIGKILL


def _exit_with_parent(parent_pid: int) -> None:
    """Exit (without cleanup) as soon as the main process is gone: a daemon
    thread notices the re-parenting, whatever killed the parent."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _worker_main(conn: Connection, job: TagJob, parent_pid: int) -> None:
    """Receive partitions, tag and write each, send back its result; stop at ``None``."""
    # The main process coordinates interrupts: a Ctrl-C reaches the whole
    # process group, but only the main process acts on it (it terminates us).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _exit_with_parent(parent_pid)
    import torch

    torch.set_num_threads(job.threads or 1)
    start = time.perf_counter()
    load_error: Optional[str] = None
    try:
        load_model(job.model, job.probabilities, job.sentences)  # (inherited, already loaded, when forked)
    except Exception as err:  # reported with the first partition
        load_error = f"loading the model failed: {type(err).__name__}: {err}"
    conn.send(("ready", time.perf_counter() - start))
    while True:
        try:
            partition = conn.recv()
        except (EOFError, OSError):
            return
        if partition is None:
            return
        if load_error is not None:
            conn.send(("error", load_error))
            return
        try:
            conn.send(("done", tag_partition(partition, job, on_batch=lambda n: conn.send(("batch", n)))))
        except Exception as err:
            conn.send(("error", f"{type(err).__name__}: {err}"))
            return


@dataclass
class _Worker:
    process: Any
    conn: Connection
    task: Optional[Partition] = None
    finished: bool = False  # sent the final ``None``: exits by itself

    def give(self, partition: Optional[Partition]) -> None:
        self.task = partition
        self.finished = partition is None
        self.conn.send(partition)


def run_pool(stats: TagStats, pending: List[Partition], job: TagJob, n_process: int, bar) -> None:
    """Tag ``pending`` on ``n_process`` worker processes. Any error or signal
    (raised here as an exception) terminates and joins every worker."""
    ctx = get_context()
    workers: List[_Worker] = []
    queue = deque(pending)
    setup_start = time.perf_counter()
    try:
        for _ in range(min(n_process, len(pending))):
            parent_conn, child_conn = ctx.Pipe()
            process = ctx.Process(target=_worker_main, args=(child_conn, job, os.getpid()), daemon=True,
                                  name="spacy-lstm-tagger-worker")
            process.start()
            child_conn.close()
            workers.append(_Worker(process, parent_conn))
        stats.workers = len(workers)
        for worker in workers:
            worker.give(queue.popleft())
        busy = list(workers)
        while busy:
            ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
            for worker in list(busy):
                if worker.conn in ready or worker.conn.poll():
                    try:
                        kind, payload = worker.conn.recv()
                    except (EOFError, OSError):
                        kind, payload = "died", None
                elif worker.process.sentinel in ready:
                    kind, payload = "died", None
                else:
                    continue
                name = worker.task.name if worker.task is not None else "none"
                if kind == "ready":
                    stats.setup_seconds = max(stats.setup_seconds, time.perf_counter() - setup_start)
                    continue
                if kind == "batch":  # (progress, per batch)
                    bar.update(payload)
                    continue
                if kind == "died":
                    worker.process.join(1)
                    raise TaggingError(
                        f"Worker process {worker.process.pid} died (exit code {worker.process.exitcode}) while "
                        f"tagging partition {name}. Finished partitions are kept: re-run the same command to resume."
                    )
                if kind == "error":
                    raise TaggingError(
                        f"Partition {name} failed: {payload}. Finished partitions are kept: fix the cause and "
                        "re-run the same command to resume."
                    )
                stats.add(payload)
                if payload["status"] == "exists":
                    bar.update(payload["n_docs"])
                if queue:
                    worker.give(queue.popleft())
                else:
                    worker.give(None)
                    busy.remove(worker)
    finally:
        _stop(workers)


def _stop(workers: List[_Worker]) -> None:
    """Join finished workers; terminate (then kill) any still running."""
    for worker in workers:
        if not worker.finished and worker.process.is_alive():
            worker.process.terminate()
    deadline = time.monotonic() + JOIN_TIMEOUT_SECONDS
    for worker in workers:
        worker.process.join(max(0.0, deadline - time.monotonic()))
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        worker.conn.close()
