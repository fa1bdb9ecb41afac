"""Micro-benchmarks of the inference path's design choices, each in isolation.

    python benchmarks/microbench.py lstm MODEL_DIR --dev corpus/en_ewt-ud-dev.spacy
        the tagger's forward pass over the dev documents three ways: the
        sentence BiLSTM on packed sequences (PyTorch's usual way), on
        length-sorted padded chunks (``bilstm_by_length``), and each chunk
        run from ids to scores on its own (what inference uses); checks that
        they agree.
    python benchmarks/microbench.py chunks
        the sentence BiLSTM's inference time by chunk size (``chunk_tokens``
        of ``length_chunks``), on random sequences of several lengths.
    python benchmarks/microbench.py crf-loss
        the CRF loss of a fully annotated batch: constrained forward pass vs
        the gold path score (what the loss uses).
    python benchmarks/microbench.py kernels
        one LSTM layer's inference time by kernel: oneDNN (torch's default on
        CPU), torch's native kernel, bf16 (AMX where the CPU has it) and int8
        dynamic quantization, for the shapes of both configs. Run it under
        ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 to see a CPU
        without AVX-512.
    python benchmarks/microbench.py cache MODEL_OR_CONFIG --batch-size 16
        predict with the character-encoding cache off, cold (emptied before
        each timed run) and warm.
    python benchmarks/microbench.py int8 MODEL_OR_CONFIG
        predict with float vs int8 (model setting quantize) weights, and how
        often their argmax agrees.

All print the median of interleaved repeats, 1 torch thread.
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


def packed_bilstm(lstm, x, lengths):
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, _ = lstm(packed)
    return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


def bilstm_by_length(lstm, x, lengths, chunk_tokens=pytorch_model.INFERENCE_CHUNK_TOKENS):
    """The sentence BiLSTM on length-sorted padded chunks, whole-batch tensors around it."""
    out = x.new_zeros(x.shape[0], x.shape[1], 2 * lstm.hidden_size)
    return pytorch_model.fill_by_length(
        out, lengths, lambda ids, n: pytorch_model.bilstm_padded(lstm, x[ids, :n], lengths[ids]), chunk_tokens
    )


def whole_batch_path(bilstm):
    """The tagger's scores computed on the whole padded batch at once, with
    ``bilstm`` as the sentence encoder (the training path's layout)."""
    def predict(module, word_ids, chars, token_types, lengths, vectors):
        tokens = module._token_inputs(word_ids, chars, token_types, vectors)
        return module._heads(bilstm(module.lstm, tokens, lengths))
    return predict


def bench_lstm(model_dir: str, dev: str, repeats: int, batch_size: int = 256) -> None:
    import numpy
    import spacy
    from spacy.training import Corpus

    nlp = spacy.load(model_dir)
    tagger = nlp.get_pipe("lstm_tagger")
    module = pytorch_model.WordCharBiLSTMTagger
    docs = [nlp.make_doc(eg.reference.text) for eg in Corpus(dev)(nlp)]
    chunked = module._predict_by_length
    variants = {
        # PyTorch's usual way: packed sequences over the whole batch
        "packed": whole_batch_path(packed_bilstm),
        # length-sorted padded chunks for the LSTM, whole-batch tensors around it
        "by_length": whole_batch_path(bilstm_by_length),
        # what inference runs: each chunk from ids to scores on its own
        "chunked": chunked,
    }
    outputs = {}

    def run(name, impl):
        def tag():
            module._predict_by_length = impl
            try:
                outputs[name] = [tagger.model.predict(docs[i : i + batch_size]) for i in range(0, len(docs), batch_size)]
            finally:
                module._predict_by_length = chunked
        return tag

    medians = median_times({name: run(name, impl) for name, impl in variants.items()}, repeats)
    flat = {k: numpy.concatenate([s for batch in v for s in batch]) for k, v in outputs.items()}
    n_words = sum(len(doc) for doc in docs)
    for name, seconds in medians.items():
        print(f"{name:>10}: {seconds:.3f} s  ({n_words / seconds:,.0f} words/s, model forward only)")
    for name in ("by_length", "chunked"):
        print(f"{name}: speed-up {medians['packed'] / medians[name]:.2f}x over packed; max |difference| of "
              f"the probabilities {abs(flat['packed'] - flat[name]).max():.1e}; same argmax: "
              f"{bool((flat['packed'].argmax(1) == flat[name].argmax(1)).all())}")


def bench_chunks(repeats: int, n_tokens: int = 25600, hidden: int = 128) -> None:
    """Time bilstm_by_length on random sequences of one length for several
    chunk sizes (padded positions per chunk), the same number of tokens each."""
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(hidden, hidden, batch_first=True, bidirectional=True).eval()
    sizes = (1024, 2048, 4096, 8192, 16384)
    print(f"{'length':>6} " + " ".join(f"{size:>7}" for size in sizes) + "   (seconds per "
          f"{n_tokens:,} tokens, hidden {hidden}, by chunk_tokens)")
    with torch.inference_mode():
        for length in (32, 64, 128, 256):
            x = torch.randn(n_tokens // length, length, hidden)
            lengths = torch.full((len(x),), length)
            medians = median_times({
                size: (lambda size=size: bilstm_by_length(lstm, x, lengths, chunk_tokens=size))
                for size in sizes
            }, repeats)
            print(f"{length:>6} " + " ".join(f"{medians[size]:7.3f}" for size in sizes))


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


def bench_kernels(repeats: int) -> None:
    import warnings

    from spacy_lstm_tagger.quantize import DynamicInt8BiLSTM

    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    # (input, hidden, depth, length, sequences): ~4,000 positions, one inference chunk
    shapes = {
        "efficiency sentence": (128, 128, 1, 24, 170), "accuracy sentence": (228, 256, 2, 24, 170),
        "efficiency chars": (24, 32, 1, 7, 600), "accuracy chars": (32, 64, 1, 7, 600),
    }
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}")
    with torch.inference_mode():
        for name, (n_in, hidden, depth, length, n_seqs) in shapes.items():
            lstm = torch.nn.LSTM(n_in, hidden, num_layers=depth, batch_first=True, bidirectional=True).eval()
            x, lengths = torch.randn(n_seqs, length, n_in), torch.full((n_seqs,), length)
            bf16_lstm, bf16_x = copy_to_bf16(lstm), x.bfloat16()
            int8 = DynamicInt8BiLSTM(lstm)

            def native():
                with torch.backends.mkldnn.flags(enabled=False):
                    return pytorch_model.bilstm_padded(lstm, x, lengths)

            medians = median_times({
                "oneDNN": lambda: pytorch_model.bilstm_padded(lstm, x, lengths),
                "native": native,
                "bf16": lambda: pytorch_model.bilstm_padded(bf16_lstm, bf16_x, lengths),
                "int8": lambda: pytorch_model.bilstm_padded(int8, x, lengths),
            }, repeats)
            print(f"{name:>20}: " + "  ".join(f"{k} {1000 * v:7.1f} ms" for k, v in medians.items()))


def copy_to_bf16(lstm):
    import copy

    return copy.deepcopy(lstm).bfloat16()


def load_pipeline(model_or_config: str, dev: str, **model_settings):
    """A trained pipeline, or an untrained one built from a config's
    architecture (labels from ``dev``); ``model_settings`` override the model's."""
    from pathlib import Path

    import spacy
    from spacy.training import Corpus
    from spacy.util import load_config

    overrides = {"components": {"lstm_tagger": {"model": model_settings}}} if model_settings else {}
    if Path(model_or_config).is_dir():
        return spacy.load(model_or_config, config=overrides)
    config = load_config(model_or_config)
    nlp = spacy.blank(config["nlp"]["lang"])
    component = dict(config["components"]["lstm_tagger"])
    component.pop("factory")
    component["model"] = {**component["model"], **model_settings}
    nlp.add_pipe("lstm_tagger", config=component)
    examples = list(Corpus(dev)(nlp))
    nlp.initialize(lambda: examples)
    return nlp


def dev_docs(nlp, dev: str):
    from spacy.training import Corpus

    return [nlp.make_doc(eg.reference.text) for eg in Corpus(dev)(nlp)]



def bench_cache(model_or_config: str, dev: str, repeats: int, batch_size: int) -> None:
    from spacy_lstm_tagger.model import get_torch_module

    nlp = load_pipeline(model_or_config, dev)
    tagger = nlp.get_pipe("lstm_tagger")
    encoder = get_torch_module(tagger.model).char_encoder
    cache = encoder.cache
    docs = dev_docs(nlp, dev)
    batches = [docs[i : i + batch_size] for i in range(0, len(docs), batch_size)]

    def run(mode):
        def tag():
            encoder.cache = None if mode == "off" else cache
            if mode == "cold":
                cache.clear()
            for batch in batches:
                tagger.predict(batch)
        return tag

    medians = median_times({mode: run(mode) for mode in ("off", "cold", "warm")}, repeats)
    encoder.cache = cache
    print(f"char cache, batches of {batch_size} docs: " + ", ".join(f"{k} {v:.3f} s" for k, v in medians.items())
          + f"; speed-up cold {medians['off'] / medians['cold']:.2f}x, warm {medians['off'] / medians['warm']:.2f}x; "
          f"{len(cache):,} types cached")


def bench_int8(model_or_config: str, dev: str, repeats: int) -> None:
    import numpy

    nlp = load_pipeline(model_or_config, dev)
    quantized = load_pipeline(model_or_config, dev, quantize=True)
    if not __import__("pathlib").Path(model_or_config).is_dir():
        quantized.get_pipe("lstm_tagger").from_bytes(nlp.get_pipe("lstm_tagger").to_bytes())
    docs = dev_docs(nlp, dev)
    pipes = {"float": nlp.get_pipe("lstm_tagger"), "int8": quantized.get_pipe("lstm_tagger")}
    medians = median_times({name: (lambda pipe=pipe: pipe.predict(docs)) for name, pipe in pipes.items()}, repeats)
    guesses = {name: numpy.concatenate([s.argmax(axis=1) for s in pipe.model.predict(docs)]) for name, pipe in pipes.items()}
    print(f"float {medians['float']:.3f} s, int8 {medians['int8']:.3f} s: {medians['float'] / medians['int8']:.2f}x; "
          f"argmax agreement {numpy.mean(guesses['float'] == guesses['int8']):.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_lstm = sub.add_parser("lstm")
    p_lstm.add_argument("model_dir")
    p_lstm.add_argument("--dev", default="corpus/en_ewt-ud-dev.spacy")
    sub.add_parser("chunks")
    sub.add_parser("crf-loss")
    sub.add_parser("kernels")
    for name in ("cache", "int8"):
        p = sub.add_parser(name)
        p.add_argument("model_or_config")
        p.add_argument("--dev", default="corpus/en_ewt-ud-dev.spacy")
        p.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.command == "lstm":
        bench_lstm(args.model_dir, args.dev, args.repeats)
    elif args.command == "chunks":
        bench_chunks(args.repeats)
    elif args.command == "kernels":
        bench_kernels(args.repeats)
    elif args.command == "cache":
        bench_cache(args.model_or_config, args.dev, args.repeats, args.batch_size)
    elif args.command == "int8":
        bench_int8(args.model_or_config, args.dev, args.repeats)
    else:
        bench_crf_loss(args.repeats)


if __name__ == "__main__":
    main()
