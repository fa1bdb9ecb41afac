"""Throughput of `spacy_lstm_tagger tag` on this machine: one process,
--n-process N (a pool of N worker processes) and a Dask LocalCluster of N single-threaded workers,
all tagging the same input into the same partitions.

    python benchmarks/scale_benchmark.py MODEL [--input FILE] [--repeat K] [--workers 2]

Prints a table and writes benchmarks/results/scale.json. Reported per run:
wall seconds (everything: model load, worker/cluster start, tagging,
writing), setup seconds (model load; for Dask the cluster start and the
model load on the workers), and docs/s and words/s over the tagging time
(wall minus setup). The runs' output files are compared: identical=true
means every engine wrote the same bytes as the single process.
"""
import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_INPUT = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "ud-english-ewt" / "en_ewt-ud-dev.conllu"
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "scale.json"


def repeated_input(path: Path, repeat: int, workdir: Path) -> Path:
    """``path`` concatenated ``repeat`` times (a longer run from a small file)."""
    if repeat == 1:
        return path
    text = path.read_text(encoding="utf8").rstrip("\n") + "\n"
    if path.suffix == ".conllu":
        text += "\n"
    target = workdir / f"input-x{repeat}{path.suffix}"
    target.write_text(text * repeat, encoding="utf8")
    return target


def file_bytes(output: Path):
    return {p.name: p.read_bytes() for p in output.glob("part-*")}


def row(name: str, stats, extra_setup: float = 0.0) -> dict:
    wall = stats.seconds + extra_setup
    setup = stats.setup_seconds + extra_setup
    tagging = max(wall - setup, 1e-9)
    return {
        "engine": name, "workers": stats.workers, "docs": stats.n_docs, "words": stats.n_words,
        "wall_s": round(wall, 2), "setup_s": round(setup, 2),
        "docs_per_s": round(stats.n_docs / tagging, 1), "words_per_s": round(stats.n_words / tagging, 1),
        "wall_docs_per_s": round(stats.n_docs / wall, 1), "wall_words_per_s": round(stats.n_words / wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="pipeline directory (e.g. training/lstm_tagger_accuracy/model-best)")
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="txt / jsonl / conllu (default: EWT dev)")
    parser.add_argument("--repeat", type=int, default=1, help="tag the input this many times over")
    parser.add_argument("--workers", type=int, default=2, help="n_process and Dask workers")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the single process")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--partition-size", type=int, default=500)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results file")
    parser.add_argument("--engines", default="single,n_process,dask", help="comma-separated subset to run")
    args = parser.parse_args()

    import torch
    from wasabi import msg

    from spacy_lstm_tagger.tagging import core as tagging_core
    from spacy_lstm_tagger.tagging import tag_corpus

    default_threads = torch.get_num_threads()

    if not args.input.exists():
        msg.fail(f"Input not found: {args.input} (give --input)", exits=1)
    engines = args.engines.split(",")
    workdir = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    results = []
    outputs = {}
    try:
        data = repeated_input(args.input, args.repeat, workdir)
        # each line is one EWT sentence: no sentence splitting, only the engines differ
        common = dict(formats="spacy", partition_size=args.partition_size, batch_size=args.batch_size, progress=None,
                      sentences="line")
        if "single" in engines:
            msg.info(f"1 process ({args.threads} torch thread(s))")
            out = outputs["single"] = workdir / "single"
            stats = tag_corpus(args.model, [data], out, threads=args.threads, **common)
            results.append(row(f"1 process, {args.threads} thread(s)", stats))
        if "n_process" in engines:
            msg.info(f"--n-process {args.workers} (pool of worker processes)")
            tagging_core._NLP_CACHE.clear()  # count this run's model load too
            out = outputs["n_process"] = workdir / "n_process"
            stats = tag_corpus(args.model, [data], out, n_process=args.workers, **common)
            results.append(row(f"n_process={args.workers}", stats))
        if "dask" in engines:
            from distributed import Client

            from spacy_lstm_tagger.tagging.dask_engine import start_local_cluster

            msg.info(f"Dask LocalCluster({args.workers} workers x 1 thread)")
            start = time.perf_counter()
            cluster = start_local_cluster(args.workers)
            client = Client(cluster)
            cluster_start = time.perf_counter() - start
            try:
                out = outputs["dask"] = workdir / "dask"
                stats = tag_corpus(args.model, [data], out, engine="dask", client=client, **common)
            finally:
                client.close()
                cluster.close()
            results.append(row(f"Dask LocalCluster, {args.workers} workers", stats, extra_setup=cluster_start))
        reference = file_bytes(outputs[next(iter(outputs))])
        identical = all(file_bytes(out) == reference for out in outputs.values())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    header = ["engine", "docs", "words", "wall s", "setup s", "docs/s", "words/s"]
    msg.table([[r["engine"], r["docs"], r["words"], r["wall_s"], r["setup_s"], r["docs_per_s"], r["words_per_s"]]
               for r in results], header=header, divider=True, aligns=["l"] + ["r"] * 6)
    (msg.good if identical else msg.fail)(f"identical output across engines: {identical}")
    report = {
        "model": str(args.model), "input": str(args.input), "repeat": args.repeat,
        "batch_size": args.batch_size, "partition_size": args.partition_size, "identical": identical,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
                    "torch": torch.__version__, "torch_default_threads": default_threads},
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf8")
    msg.good(f"Wrote {args.output}")
    print("\n| engine | docs/s | words/s | wall s (incl. setup) |\n| --- | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r['engine']} | {r['docs_per_s']:,.0f} | {r['words_per_s']:,.0f} | {r['wall_s']} |")


if __name__ == "__main__":
    main()
