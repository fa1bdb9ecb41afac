"""Training steps/s and inference words/s of lstm_tagger's factory defaults at
1, 2 and all torch intra-op threads, on a free machine and beside a competing
CPU-bound process: the measurement behind the component's default ``threads``
(one per process, ``component.make_lstm_tagger``).

    python benchmarks/threads.py                  # ~3-5 minutes on 2 cores
    python benchmarks/threads.py --train-sents 300 --steps 30

Each (threads, competing) cell runs in a fresh child process (its own torch
thread pool) with no thread variables in its environment; the competitor is a
busy-loop child started before the cell and ended after it. Training: the
first ``--train-sents`` sentences of EWT train, the same batches (``--batch-words``
words each) in every cell, ``--warmup`` untimed steps then ``--steps`` timed
ones. Inference: ``nlp.pipe`` over the first ``--infer-sents`` sentences of EWT
dev (gold tokens), median of ``--repeats``. Writes
``benchmarks/results/threads.json`` (with the machine and its load average)
and prints a table.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import srsly

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_info import machine_info  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_EWT = ROOT.parent / "shared" / "data" / "ud-english-ewt"
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "threads.json"
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BLIS_NUM_THREADS")


def conllu_sentences(path: Path, limit: int) -> List[Dict[str, List[str]]]:
    """The first ``limit`` sentences of a CoNLL-U file: words, spaces, XPOS."""
    sentences, words, spaces, tags = [], [], [], []
    with path.open(encoding="utf8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                if words:
                    sentences.append({"words": words, "spaces": spaces, "tags": tags})
                    words, spaces, tags = [], [], []
                    if len(sentences) == limit:
                        break
                continue
            cols = line.split("\t")
            if line.startswith("#") or not cols[0].isdigit():
                continue  # comments, multi-word token ranges, empty nodes
            words.append(cols[1])
            spaces.append("SpaceAfter=No" not in cols[9])
            tags.append(cols[4] if cols[4] != "_" else cols[3])
    if words and len(sentences) < limit:
        sentences.append({"words": words, "spaces": spaces, "tags": tags})
    return sentences


def find_split(ewt_dir: Path, split: str) -> Path:
    found = sorted(ewt_dir.glob(f"*-ud-{split}.conllu"))
    if not found:
        raise SystemExit(f"[threads] no *-ud-{split}.conllu in {ewt_dir} (--ewt-dir: the UD English EWT folder)")
    return found[0]


def batches_of_words(n_sents: int, lengths: List[int], size: int) -> List[List[int]]:
    """Sentence indices in consecutive batches of about ``size`` words."""
    out, batch, words = [], [], 0
    for i in range(n_sents):
        batch.append(i)
        words += lengths[i]
        if words >= size:
            out.append(batch)
            batch, words = [], 0
    if batch:
        out.append(batch)
    return out


def measure(args: argparse.Namespace) -> Dict:
    """One cell, in this (child) process: lstm_tagger factory defaults with
    ``threads = args.measure``."""
    import spacy
    import torch
    from spacy.tokens import Doc
    from spacy.training import Example
    from spacy.util import fix_random_seed

    fix_random_seed(0)
    train = conllu_sentences(find_split(args.ewt_dir, "train"), args.train_sents)
    infer = conllu_sentences(find_split(args.ewt_dir, "dev"), args.infer_sents)
    nlp = spacy.blank("en")
    nlp.add_pipe("lstm_tagger", config={"threads": args.measure})
    examples = [Example.from_dict(Doc(nlp.vocab, words=s["words"], spaces=s["spaces"]), {"tags": s["tags"]})
                for s in train]
    optimizer = nlp.initialize(lambda: examples)
    threads = torch.get_num_threads()
    batches = batches_of_words(len(examples), [len(s["words"]) for s in train], args.batch_words)
    step_seconds = []
    for step in range(args.warmup + args.steps):
        batch = [examples[i] for i in batches[step % len(batches)]]
        start = time.perf_counter()
        nlp.update(batch, sgd=optimizer)
        if step >= args.warmup:
            step_seconds.append(time.perf_counter() - start)
    docs = lambda: (Doc(nlp.vocab, words=s["words"], spaces=s["spaces"]) for s in infer)  # noqa: E731
    list(nlp.pipe(docs(), batch_size=256))  # warm up
    infer_seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _doc in nlp.pipe(docs(), batch_size=256):
            pass
        infer_seconds.append(time.perf_counter() - start)
    n_words = sum(len(s["words"]) for s in infer)
    per_step = statistics.median(step_seconds)
    return {
        "threads": threads,
        "train_seconds_per_step": round(per_step, 4),
        "train_steps_per_s": round(1 / per_step, 2),
        "train_seconds_per_step_mean": round(statistics.mean(step_seconds), 4),
        "infer_words_per_s": round(n_words / statistics.median(infer_seconds), 0),
        "infer_words": n_words,
    }


def run_cell(args: argparse.Namespace, threads: int, competing: bool) -> Dict:
    """Measure one cell in a child process, with a busy-loop child beside it when ``competing``."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_ENV}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if competing else None
    try:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--measure", str(threads),
               *child_args(args)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    if out.returncode != 0:
        raise RuntimeError(f"[threads] the cell threads={threads} competing={competing} failed:\n{out.stderr[-3000:]}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    return {"threads_asked": threads, "competing_process": competing, **row}


def child_args(args: argparse.Namespace) -> List[str]:
    return ["--ewt-dir", str(args.ewt_dir), "--train-sents", str(args.train_sents),
            "--infer-sents", str(args.infer_sents), "--steps", str(args.steps), "--warmup", str(args.warmup),
            "--batch-words", str(args.batch_words), "--repeats", str(args.repeats)]


def thread_counts() -> List[int]:
    """1, 2 and all CPUs, each once."""
    return sorted({1, 2, os.cpu_count() or 1})


def run(args: argparse.Namespace) -> Dict:
    load_before = os.getloadavg()
    start = time.perf_counter()
    rows = []
    for competing in (False, True):
        for threads in thread_counts():
            row = run_cell(args, threads, competing)
            print(f"[threads] threads={threads} competing={competing}: {row['train_seconds_per_step']} s/step, "
                  f"{row['infer_words_per_s']:.0f} words/s", flush=True)
            rows.append(row)
    return {
        "machine": machine_info(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(),
        "settings": {k: getattr(args, k) for k in ("train_sents", "infer_sents", "steps", "warmup", "batch_words",
                                                   "repeats")},
        "model": "lstm_tagger factory defaults (threads = N per cell)",
        "competitor": "one busy-loop Python process",
        "total_seconds": round(time.perf_counter() - start, 1),
        "rows": rows,
    }


def print_table(result: Dict) -> None:
    print(f"{'threads':>7} {'competing':>9} {'s/step':>7} {'steps/s':>8} {'words/s':>8}")
    for row in result["rows"]:
        print(f"{row['threads']:>7} {str(row['competing_process']):>9} {row['train_seconds_per_step']:>7.3f} "
              f"{row['train_steps_per_s']:>8.2f} {row['infer_words_per_s']:>8.0f}")
    print(f"load average before: {result['load_average_before']}, after: {result['load_average_after']}")


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ewt-dir", type=Path, default=DEFAULT_EWT)
    parser.add_argument("--train-sents", type=int, default=300, help="training sentences (EWT train, first N)")
    parser.add_argument("--infer-sents", type=int, default=500, help="inference sentences (EWT dev, first N)")
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per cell")
    parser.add_argument("--warmup", type=int, default=3, help="untimed training steps first")
    parser.add_argument("--batch-words", type=int, default=500, help="words per training batch")
    parser.add_argument("--repeats", type=int, default=3, help="inference passes per cell (median)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--measure", type=int, default=None, help=argparse.SUPPRESS)  # child: one cell
    args = parser.parse_args(argv)
    if args.measure is not None:
        print(json.dumps(measure(args)))
        return
    result = run(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(args.output, result)
    print_table(result)


if __name__ == "__main__":
    main()
