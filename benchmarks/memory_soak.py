"""Resident memory while tagging many short documents with one pipeline.

    python benchmarks/memory_soak.py MODEL_DIR --n-docs 100000

Prints RSS every --every docs and writes benchmarks/results/memory_soak.json.
A flat curve means no growth from caches or autograd state.
"""
import argparse
import random
import time
from pathlib import Path

import psutil
import spacy
import srsly
import torch

WORDS = "the a dog cat ate saw green blue quickly yesterday I you they went to from with big small house 東京 🍕 naïve".split()


def synthetic_texts(n: int, seed: int = 0):
    rng = random.Random(seed)
    for _ in range(n):
        yield " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 25)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--n-docs", type=int, default=100_000)
    parser.add_argument("--every", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "memory_soak.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    nlp = spacy.load(args.model)
    process = psutil.Process()
    rows = [{"docs": 0, "rss_mb": round(process.memory_info().rss / 2**20, 1), "seconds": 0.0}]
    start = time.perf_counter()
    for i, _doc in enumerate(nlp.pipe(synthetic_texts(args.n_docs), batch_size=args.batch_size), 1):
        if i % args.every == 0:
            rows.append({"docs": i, "rss_mb": round(process.memory_info().rss / 2**20, 1),
                         "seconds": round(time.perf_counter() - start, 1)})
            print(rows[-1], flush=True)
    after_warmup = rows[1]["rss_mb"]
    result = {
        "model": args.model, "n_docs": args.n_docs, "batch_size": args.batch_size, "torch_threads": args.threads,
        "rss_after_first_chunk_mb": after_warmup, "rss_final_mb": rows[-1]["rss_mb"],
        "growth_after_first_chunk_mb": round(rows[-1]["rss_mb"] - after_warmup, 1), "curve": rows,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(args.output, result)
    print(f"RSS after {args.every} docs: {after_warmup} MB; after {args.n_docs}: {rows[-1]['rss_mb']} MB "
          f"(growth {result['growth_after_first_chunk_mb']} MB)")


if __name__ == "__main__":
    main()
