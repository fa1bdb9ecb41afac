"""Micro-benchmarks behind two speed-ups recorded in benchmarks/NOTES.md.

    python benchmarks/microbench.py lstm MODEL_DIR --dev corpus/en_ewt-ud-dev.spacy
        the tagger's forward pass over the dev documents with the BiLSTMs run
        as packed sequences (PyTorch's usual way) vs ``bilstm_by_length``
        (length-sorted padded chunks, what inference uses); checks they agree.
    python benchmarks/microbench.py crf-loss
        the CRF loss of a fully annotated batch: constrained forward pass vs
        the gold path score (what the loss uses).

Both print the median of interleaved repeats, 1 torch thread.
"""
import argparse
import statistics
import time
from typing import Callable, Dict, List

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import spacy_lstm_tagger.pytorch_model as pytorch_model


def median_times(functions: Dict[str, Callable[[], object]], repeats: int) -> Dict[str, float]:
    times: Dict[str, List[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def packed_bilstm(lstm, x, lengths, chunk_size=64):
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, _ = lstm(packed)
    return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


def bench_lstm(model_dir: str, dev: str, repeats: int, batch_size: int = 256) -> None:
    import numpy
    import spacy
    from spacy.training import Corpus

    nlp = spacy.load(model_dir)
    tagger = nlp.get_pipe("lstm_tagger")
    docs = [nlp.make_doc(eg.reference.text) for eg in Corpus(dev)(nlp)]
    sorted_impl = pytorch_model.bilstm_by_length
    outputs = {}

    def run(name, impl):
        def tag():
            pytorch_model.bilstm_by_length = impl
            outputs[name] = [tagger.model.predict(docs[i : i + batch_size]) for i in range(0, len(docs), batch_size)]
            pytorch_model.bilstm_by_length = sorted_impl
        return tag

    medians = median_times({"packed": run("packed", packed_bilstm), "by_length": run("by_length", sorted_impl)}, repeats)
    flat = {k: numpy.concatenate([s for batch in v for s in batch]) for k, v in outputs.items()}
    n_words = sum(len(doc) for doc in docs)
    for name, seconds in medians.items():
        print(f"{name:>10}: {seconds:.3f} s  ({n_words / seconds:,.0f} words/s, model forward only)")
    print(f"speed-up {medians['packed'] / medians['by_length']:.2f}x; max |difference| of the "
          f"probabilities {abs(flat['packed'] - flat['by_length']).max():.1e}; same argmax: "
          f"{bool((flat['packed'].argmax(1) == flat['by_length'].argmax(1)).all())}")


def bench_crf_loss(repeats: int, n_seqs: int = 30, max_len: int = 50, n_tags: int = 50) -> None:
    torch.manual_seed(0)
    crf = pytorch_model.LinearChainCRF(n_tags)
    crf.reset_parameters()
    emissions = torch.randn(n_seqs, max_len, n_tags, requires_grad=True)
    lengths = torch.randint(5, max_len + 1, (n_seqs,))
    mask = torch.arange(max_len).unsqueeze(0) < lengths.unsqueeze(1)
    tags = torch.randint(0, n_tags, (n_seqs, max_len))
    allowed = torch.nn.functional.one_hot(tags, n_tags).bool() | ~mask.unsqueeze(-1)
    losses = {}

    def constrained_forward():
        constrained = emissions.masked_fill(~allowed, -1e4)
        loss = (crf.log_partition(emissions, mask) - crf.log_partition(constrained, mask)).sum()
        loss.backward()
        losses["constrained"] = float(loss.detach())

    def gold_path():
        loss = crf.negative_log_likelihood(emissions, allowed, mask)
        loss.backward()
        losses["gold_path"] = float(loss.detach())

    medians = median_times({"constrained": constrained_forward, "gold_path": gold_path}, repeats)
    for name, seconds in medians.items():
        print(f"{name:>12}: {1000 * seconds:.1f} ms per loss + backward ({n_seqs} sequences, {n_tags} tags)")
    print(f"speed-up {medians['constrained'] / medians['gold_path']:.1f}x; losses {losses}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_lstm = sub.add_parser("lstm")
    p_lstm.add_argument("model_dir")
    p_lstm.add_argument("--dev", default="corpus/en_ewt-ud-dev.spacy")
    sub.add_parser("crf-loss")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.command == "lstm":
        bench_lstm(args.model_dir, args.dev, args.repeats)
    else:
        bench_crf_loss(args.repeats)


if __name__ == "__main__":
    main()
